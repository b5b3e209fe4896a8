"""A PyTorch twin of sonora's model: `SonoraDit`, the flow-matching loss and the sampler.

Written from sonora's own architecture (framework/src/model, framework/src/diffusion), not
from any other codebase, so that the two can be compared tensor for tensor:

* the parameters carry sonora's names and layouts (`blocks.0.attn.q.weight`, Linear weights
  stored `[in, out]` as burn stores them), so `load_sonora(path)` reads a sonora
  checkpoint's `model.safetensors` as it is, and `save_sonora(path)` writes one sonora loads;
* `positions`, RoPE, the absolute embedding, the timestep embedding and the AdaLN time
  levels are computed the way sonora computes them (float64 on the host where sonora does);
* `flow_loss` is sonora's masked velocity MSE and `sample_from` its Euler/Heun sampler with
  text and reference guidance, started from given noisy tokens.

Used by `make_parity_fixture.py` (the fixture sonora's parity test reads) and `bench.py`
(`scripts/bench_torch.sh`: the side-by-side speed comparison).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

T_MIN = 0.05  # smallest t in the x-prediction → velocity conversion (dit.rs)
MAX_TIME_LEVELS = 8  # levels.rs
PAD_ID = 0


# --------------------------------------------------------------------------- config


@dataclass
class ModelConfig:
    """sonora's `ModelConfig` (framework/src/model/config.rs): the fields the model reads."""

    name: str
    frames: int
    height: int
    width: int
    fps: float
    sample_rate: int
    patch_t: int
    patch_h: int
    patch_w: int
    audio_patch: int
    ref_size: int
    d_model: int
    depth: int
    heads: int
    mlp_ratio: int
    text_dim: int
    text_depth: int
    text_heads: int
    text_max_len: int
    vocab_size: int
    shift: float | None = None
    audio_codec: str = "waveform"
    audio_hop: int = 125
    audio_bands: int | None = None
    image_cond: str = "hold"
    extra: dict = field(default_factory=dict)

    @staticmethod
    def from_toml(path: str | Path) -> "ModelConfig":
        with open(path, "rb") as f:
            raw = tomllib.load(f)
        known = {k: raw.pop(k) for k in list(raw) if k in ModelConfig.__dataclass_fields__}
        return ModelConfig(**known, extra=raw)

    def video_grid(self) -> tuple[int, int, int]:
        return (
            self.frames // self.patch_t,
            self.height // self.patch_h,
            self.width // self.patch_w,
        )

    def video_tokens(self) -> int:
        t, h, w = self.video_grid()
        return t * h * w

    def image_tokens(self) -> int:
        _, h, w = self.video_grid()
        return h * w

    def video_patch_dim(self) -> int:
        return self.patch_t * self.patch_h * self.patch_w * 3

    def audio_samples(self) -> int:
        return math.floor(self.frames / self.fps * self.sample_rate + 0.5)  # Rust's f64::round

    def audio_tokens(self) -> int:
        return self.audio_samples() // self.audio_patch

    def audio_token_dim(self) -> int:
        if self.audio_codec == "waveform":
            return self.audio_patch
        hop = self.audio_hop
        return self.audio_patch // hop * (self.audio_bands or hop + 1)

    def ref_tokens(self) -> int:
        return (self.ref_size // self.patch_h) * (self.ref_size // self.patch_w)

    def ref_patch_dim(self) -> int:
        return self.patch_h * self.patch_w * 3

    def head_dim(self) -> int:
        return self.d_model // self.heads

    def shift_for(self, tokens: int) -> float:
        if self.shift is not None:
            return self.shift
        return max(math.sqrt(tokens / 256.0), 1.0)


def positions(c: ModelConfig, refs: int, image: bool) -> list[tuple[float, float, float]]:
    """`(t, h, w)` of every token: video, audio, references, in-context image (patchify.rs)."""
    gt, gh, gw = c.video_grid()
    p = [(a + 0.5, float(b), float(d)) for a in range(gt) for b in range(gh) for d in range(gw)]
    per_patch = c.sample_rate / c.fps * c.patch_t
    for i in range(c.audio_tokens()):
        centre = (i + 0.5) * c.audio_patch
        p.append((float(torch.tensor(centre / per_patch, dtype=torch.float32)), 0.0, 0.0))
    g, g2 = c.ref_size // c.patch_h, c.ref_size // c.patch_w
    for _ in range(refs):
        p.extend((0.0, float(b), float(d)) for b in range(g) for d in range(g2))
    if image:
        p.extend(p[: c.image_tokens()])
    return p


# --------------------------------------------------------------------------- position codes


class Rope:
    """3D rotary embedding (rope.rs): half the pairs on time, a quarter on each spatial axis;
    pairs are `(i, i + P)`. Also the fixed absolute `(t, h, w)` embedding."""

    def __init__(self, pos, head_dim: int, d_model: int, device="cpu"):
        p = head_dim // 2
        nh = nw = p // 4
        nt = p - nh - nw
        theta = [(0, 100.0 ** (-j / nt)) for j in range(nt)]
        theta += [(1, 100.0 ** (-j / nh)) for j in range(nh)]
        theta += [(2, 100.0 ** (-j / nw)) for j in range(nw)]
        ang = torch.tensor(
            [[float(pp[axis]) * f for axis, f in theta] for pp in pos], dtype=torch.float64
        )
        n = len(pos)
        self.cos = ang.cos().float().reshape(1, 1, n, p).to(device)
        self.sin = ang.sin().float().reshape(1, 1, n, p).to(device)
        self.absolute = absolute_embedding(pos, d_model).to(device)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        # [B, H, N, hd] → same
        p = x.shape[-1] // 2
        x1, x2 = x[..., :p], x[..., p:]
        return torch.cat([x1 * self.cos - x2 * self.sin, x1 * self.sin + x2 * self.cos], dim=-1)


def absolute_embedding(pos, d: int) -> torch.Tensor:
    per_axis = (d // 6) * 2
    half = per_axis // 2
    rows = []
    for pp in pos:
        row = []
        for x in pp:
            for j in range(half):
                f = 100.0 ** (-j / half)
                row += [math.sin(float(x) * f), math.cos(float(x) * f)]
        row += [0.0] * (d - len(row))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64).float().reshape(1, len(pos), d)


# --------------------------------------------------------------------------- layers


class Linear(nn.Module):
    """burn's Linear: `y = x·W + b` with `W` stored `[in, out]`."""

    def __init__(self, d_in: int, d_out: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        self.bias = nn.Parameter(torch.empty(d_out)) if bias else None
        bound = 1.0 / math.sqrt(d_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight.t(), self.bias)


class LayerNorm(nn.Module):
    """burn's LayerNorm (`gamma`, `beta`, biased variance)."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(d))
        self.beta = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta, self.eps)


def attention(q, k, v, key_mask=None):
    """Scaled dot-product attention; `key_mask` `[B, M]` true = ignore."""
    mask = None
    if key_mask is not None:
        b, m = key_mask.shape
        mask = (~key_mask).reshape(b, 1, 1, m)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class Attention(nn.Module):
    """Multi-head attention, queries from `x`, keys/values from `ctx` (layers.rs)."""

    def __init__(self, d_model: int, d_ctx: int, heads: int):
        super().__init__()
        self.q = Linear(d_model, d_model)
        self.kv = Linear(d_ctx, 2 * d_model)
        self.out = Linear(d_model, d_model)
        self.heads = heads

    def forward(self, x, ctx, rope: Rope | None = None, key_mask=None):
        b, n, d = x.shape
        m = ctx.shape[1]
        h, hd = self.heads, d // self.heads
        q = self.q(x).reshape(b, n, h, hd).transpose(1, 2)  # [B, H, N, hd]
        kv = self.kv(ctx).reshape(b, m, 2, h, hd)
        k = kv[:, :, 0].transpose(1, 2)
        v = kv[:, :, 1].transpose(1, 2)
        if rope is not None:
            q, k = rope.apply(q), rope.apply(k)
        o = attention(q, k, v, key_mask)
        return self.out(o.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, d: int, ratio: int):
        super().__init__()
        self.fc1 = Linear(d, d * ratio)
        self.fc2 = Linear(d * ratio, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class TimestepEmbedding(nn.Module):
    def __init__(self, d: int, freq_dim: int = 128):
        super().__init__()
        self.fc1 = Linear(freq_dim, d)
        self.fc2 = Linear(d, d)
        half = freq_dim // 2
        j = torch.arange(half, dtype=torch.float32)
        self.register_buffer(
            "freqs", torch.exp(-torch.log(torch.tensor(10000.0)) * j / half), persistent=False
        )

    def forward(self, t):
        # [B, N] → [B, N, d]
        args = (t * 1000.0).unsqueeze(-1) * self.freqs
        return self.fc2(F.silu(self.fc1(torch.cat([args.cos(), args.sin()], dim=-1))))


class TimeLevels:
    """Each example's distinct timesteps (levels.rs): the AdaLN conditioning is computed
    once per value `[B, K, ·]` and spread to the tokens by a one-hot matmul."""

    def __init__(self, values, assign):
        self.values, self.assign = values, assign

    @staticmethod
    def factor(t) -> "TimeLevels | None":
        """`None` when some row has more than MAX_TIME_LEVELS distinct values. The values'
        order differs from sonora's (sorted here, first appearance there); the spread rows
        are the same."""
        rows = [torch.unique(r, return_inverse=True) for r in t.detach()]
        k = max(len(v) for v, _ in rows)
        if k > MAX_TIME_LEVELS:
            return None
        values = torch.stack([torch.cat([v, v[:1].expand(k - len(v))]) for v, _ in rows])
        assign = F.one_hot(torch.stack([i for _, i in rows]), k).to(t.dtype)
        return TimeLevels(values, assign)

    def spread(self, x):
        return self.assign @ x


class Conditioning:
    def __init__(self, c, levels: TimeLevels | None):
        self.c, self.levels = c, levels

    def modulation(self, linear: Linear):
        out = linear(F.silu(self.c))
        return out if self.levels is None else self.levels.spread(out)


class JointBlock(nn.Module):
    def __init__(self, d: int, d_text: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = LayerNorm(d, 1e-6)
        self.attn = Attention(d, d, heads)
        self.norm_x = LayerNorm(d, 1e-6)
        self.cross = Attention(d, d_text, heads)
        self.norm2 = LayerNorm(d, 1e-6)
        self.mlp = Mlp(d, mlp_ratio)
        self.ada = Linear(d, 6 * d)

    def forward(self, x, c: Conditioning, text, text_mask, rope: Rope, token_mask=None):
        m = c.modulation(self.ada).chunk(6, dim=2)
        h = self.norm1(x) * (m[1] + 1.0) + m[0]
        x = x + m[2] * self.attn(h, h, rope, token_mask)
        x = x + self.cross(self.norm_x(x), text, None, text_mask)
        h = self.norm2(x) * (m[4] + 1.0) + m[3]
        return x + m[5] * self.mlp(h)


# --------------------------------------------------------------------------- text encoder


class Mha(nn.Module):
    """burn's MultiHeadAttention (query, key, value, output)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.query, self.key, self.value, self.output = (Linear(d, d) for _ in range(4))
        self.heads = heads

    def forward(self, x, pad):
        b, n, d = x.shape
        h, hd = self.heads, d // self.heads

        def split(y):
            return y.reshape(b, n, h, hd).transpose(1, 2)

        o = attention(split(self.query(x)), split(self.key(x)), split(self.value(x)), pad)
        return self.output(o.transpose(1, 2).reshape(b, n, d))


class Pwff(nn.Module):
    def __init__(self, d: int, d_ff: int):
        super().__init__()
        self.linear_inner = Linear(d, d_ff)
        self.linear_outer = Linear(d_ff, d)

    def forward(self, x):
        return self.linear_outer(F.gelu(self.linear_inner(x)))


class EncoderLayer(nn.Module):
    """burn's TransformerEncoderLayer with `norm_first = true`, no dropout."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.mha = Mha(d, heads)
        self.pwff = Pwff(d, 4 * d)
        self.norm_1 = LayerNorm(d, 1e-5)
        self.norm_2 = LayerNorm(d, 1e-5)

    def forward(self, x, pad):
        # burn's pre-norm layer: `norm_2` before attention, `norm_1` before the MLP
        x = x + self.mha(self.norm_2(x), pad)
        return x + self.pwff(self.norm_1(x))


class Encoder(nn.Module):
    def __init__(self, d: int, heads: int, depth: int):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d, heads) for _ in range(depth))

    def forward(self, x, pad):
        for layer in self.layers:
            x = layer(x, pad)
        return x


class Embedding(nn.Module):
    def __init__(self, n: int, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, d))

    def forward(self, ids):
        return F.embedding(ids, self.weight)


class TextEncoder(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        d = c.text_dim
        self.embed = Embedding(c.vocab_size, d)
        self.pos = nn.Parameter(torch.randn(c.text_max_len, d) * 0.02)
        self.encoder = Encoder(d, c.text_heads, max(c.text_depth, 1))
        self.norm = LayerNorm(d, 1e-5)

    def forward(self, ids, pad):
        x = self.embed(ids) + self.pos[: ids.shape[1]].unsqueeze(0)
        return self.norm(self.encoder(x, pad))


# --------------------------------------------------------------------------- the model


@dataclass
class DitInput:
    """One forward pass's inputs (dit.rs `DitInput`)."""

    video: torch.Tensor  # [B, Nv, pv]
    audio: torch.Tensor  # [B, Na, pa]
    t: torch.Tensor  # [B, N]
    text_ids: torch.Tensor  # [B, L] int64
    text_pad: torch.Tensor  # [B, L] bool, true = pad
    refs: torch.Tensor | None = None  # [B, Nr, pr]
    image: torch.Tensor | None = None  # [B, Ni, pv]
    token_mask: torch.Tensor | None = None  # [B, N] bool, true = ignore


class SonoraDit(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        d = c.d_model
        self.cfg = c
        self.text = TextEncoder(c)
        self.video_in = Linear(c.video_patch_dim(), d)
        self.audio_in = Linear(c.audio_token_dim(), d)
        self.ref_in = Linear(c.ref_patch_dim(), d)
        self.modality = nn.Parameter(torch.randn(3, d) * 0.02)
        self.image_emb = nn.Parameter(torch.randn(1, d) * 0.02) if c.image_cond == "context" else None
        self.time = TimestepEmbedding(d)
        self.text_pool = Linear(c.text_dim, d)
        self.blocks = nn.ModuleList(
            JointBlock(d, c.text_dim, c.heads, c.mlp_ratio) for _ in range(c.depth)
        )
        self.final_norm = LayerNorm(d, 1e-6)
        self.final_ada = Linear(d, 2 * d)
        self.video_out = Linear(d, c.video_patch_dim())
        self.audio_out = Linear(d, c.audio_token_dim())
        self.per_token = False

    def forward(self, x: DitInput, rope: Rope):
        nv, na = x.video.shape[1], x.audio.shape[1]
        parts = [self.video_in(x.video) + self.modality[0], self.audio_in(x.audio) + self.modality[1]]
        if x.refs is not None:
            parts.append(self.ref_in(x.refs) + self.modality[2])
        if x.image is not None:
            img = self.video_in(x.image) + self.modality[0]
            if self.image_emb is not None:
                img = img + self.image_emb
            parts.append(img)
        h = torch.cat(parts, dim=1) + rope.absolute  # [B, N, d]
        text = self.text(x.text_ids, x.text_pad)  # [B, L, text_dim]
        keep = (~x.text_pad).float().unsqueeze(-1)
        pooled = (text * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True).clamp_min(1.0)
        text_c = self.text_pool(pooled)  # [B, 1, d]
        levels = None if self.per_token else TimeLevels.factor(x.t)
        if levels is not None:
            c = Conditioning(self.time(levels.values) + text_c, levels)
        else:
            c = Conditioning(self.time(x.t) + text_c, None)
        for block in self.blocks:
            h = block(h, c, text, x.text_pad, rope, x.token_mask)
        m = c.modulation(self.final_ada).chunk(2, dim=2)
        h = self.final_norm(h) * (m[1] + 1.0) + m[0]
        x0_video = self.video_out(h[:, :nv])
        x0_audio = self.audio_out(h[:, nv : nv + na])
        tv = x.t[:, :nv].clamp_min(T_MIN).unsqueeze(-1)
        ta = x.t[:, nv : nv + na].clamp_min(T_MIN).unsqueeze(-1)
        return (x.video - x0_video) / tv, (x.audio - x0_audio) / ta

    # ---- sonora checkpoints

    def sonora_state(self) -> dict[str, torch.Tensor]:
        """Parameters under sonora's tensor names."""
        return {k: v.detach().contiguous() for k, v in self.named_parameters()}

    def load_sonora(self, path: str | Path) -> None:
        """Loads a sonora `model.safetensors`; every tensor must match by name and shape."""
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        mine = dict(self.named_parameters())
        missing = sorted(set(mine) - set(tensors))
        unused = sorted(set(tensors) - set(mine))
        bad = [k for k in mine if k in tensors and tuple(tensors[k].shape) != tuple(mine[k].shape)]
        if missing or unused or bad:
            raise ValueError(f"{path}: missing {missing}, not in the twin {unused}, misshapen {bad}")
        with torch.no_grad():
            for k, p in mine.items():
                p.copy_(tensors[k].float())

    def save_sonora(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file(self.sonora_state(), str(path))


def flow_loss(out, target_video, target_audio, mask_video, mask_audio, video_weight=1.0, audio_weight=1.0):
    """Masked velocity MSE (flow.rs `flow_loss`): `Σ mask·(v̂ − v)² / (Σ mask · dim)`."""

    def sse(pred, target, mask):
        den = max(float(mask.sum()) * target.shape[2], 1.0)
        return ((pred - target) ** 2 * mask).sum() / den

    video = sse(out[0], target_video, mask_video)
    audio = sse(out[1], target_audio, mask_audio)
    return video * video_weight + audio * audio_weight, video, audio


# --------------------------------------------------------------------------- sampler


def shift_t(t: float, s: float) -> float:
    return s * t / (1.0 + (s - 1.0) * t)


@dataclass
class SampleBatch:
    """What sonora's `sample_pass` holds for a batch of requests (sampler.rs), with the
    noisy start `x` given instead of drawn."""

    x_video: torch.Tensor  # [B, Nv, pv] start state
    x_audio: torch.Tensor  # [B, Na, pa]
    clean_video: torch.Tensor  # [B, Nv] bool, given tokens
    clean_audio: torch.Tensor  # [B, Na] bool
    given_video: torch.Tensor  # [B, Nv, pv] values of given tokens
    given_audio: torch.Tensor  # [B, Na, pa]
    text_ids: torch.Tensor  # [B, L]
    null_ids: torch.Tensor  # [L]
    refs: torch.Tensor | None = None  # [B, Nr, pr]
    start: float = 1.0  # remix strength


def text_pad_of(ids: torch.Tensor) -> torch.Tensor:
    """Padding mask (text.rs `text_batch`): pad ids after position 0."""
    pad = ids == PAD_ID
    pad[:, 0] = False
    return pad


@torch.no_grad()
def sample_from(
    model: SonoraDit,
    s: SampleBatch,
    steps: int,
    text_scale: float,
    audio_scale: float,
    ref_scale: float,
    shift: float | None = None,
    heun: bool = False,
):
    """sonora's sampler from a given start (no in-context image rows)."""
    cfg = model.cfg
    b, nv, _ = s.x_video.shape
    na = s.x_audio.shape[1]
    nr = 0 if s.refs is None else s.refs.shape[1]
    refs = nr // cfg.ref_tokens() if nr else 0
    shift = shift if shift is not None else cfg.shift_for(nv + na + nr)
    rope = Rope(positions(cfg, refs, False), cfg.head_dim(), cfg.d_model, s.x_video.device)
    with_refs = nr > 0 and abs(ref_scale - 1.0) > 1e-9
    guided_text = abs(text_scale - 1.0) > 1e-9 or abs(audio_scale - 1.0) > 1e-9
    passes = [(True, True)]
    if guided_text or with_refs:
        passes.append((False, True))
    if with_refs:
        passes.append((False, False))

    def velocity(xv, xa, t):
        p = len(passes)
        ids, masks = [], []
        for text, use_refs in passes:
            ids.append(s.text_ids if text else s.null_ids.expand(b, -1))
            m = torch.zeros(b, nv + na + nr, dtype=torch.bool)
            if not use_refs:
                m[:, nv + na :] = True
            masks.append(m)
        tt = torch.cat(
            [
                torch.where(s.clean_video, 0.0, t),
                torch.where(s.clean_audio, 0.0, t),
                torch.zeros(b, nr),
            ],
            dim=1,
        ).float()
        text_ids = torch.cat(ids)
        inp = DitInput(
            video=xv.repeat(p, 1, 1),
            audio=xa.repeat(p, 1, 1),
            t=tt.repeat(p, 1),
            text_ids=text_ids,
            text_pad=text_pad_of(text_ids),
            refs=None if s.refs is None else s.refs.repeat(p, 1, 1),
            token_mask=torch.cat(masks) if nr > 0 else None,
        )
        ov, oa = model(inp, rope)

        def combine(o, scale):
            chunks = o.chunk(p)
            if p == 1:
                return chunks[0]
            cond, no_text = chunks[0], chunks[1]
            base = chunks[2] + ref_scale * (no_text - chunks[2]) if p == 3 else no_text
            return base + scale * (cond - no_text)

        return combine(ov, text_scale), combine(oa, audio_scale)

    def step(xv, xa, v, dt):
        xv = torch.where(s.clean_video.unsqueeze(-1), s.given_video, xv + dt * v[0])
        xa = torch.where(s.clean_audio.unsqueeze(-1), s.given_audio, xa + dt * v[1])
        return xv, xa

    grid = [s.start * shift_t(1.0 - k / steps, shift) for k in range(steps + 1)]
    xv, xa = s.x_video, s.x_audio
    for k in range(steps):
        t0, t1 = grid[k], grid[k + 1]
        v0 = velocity(xv, xa, t0)
        if heun and k + 1 < steps:
            pv, pa = step(xv, xa, v0, t1 - t0)
            v1 = velocity(pv, pa, t1)
            xv, xa = step(xv, xa, ((v0[0] + v1[0]) * 0.5, (v0[1] + v1[1]) * 0.5), t1 - t0)
        else:
            xv, xa = step(xv, xa, v0, t1 - t0)
    return xv, xa
