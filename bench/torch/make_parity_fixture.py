"""Writes the parity fixture that sonora's `framework/tests/parity.rs` checks against.

    python bench/torch/make_parity_fixture.py [--out framework/tests/fixtures/parity]

The fixture is a micro model (`config.toml`), its weights in sonora's layout
(`model.safetensors`: every tensor random, none of the zero-initialised AdaLN gates or
heads left at zero, so every path of the model shows in the outputs), and `cases.safetensors`:
for each case the inputs and what this twin computed from them (fp32).

Cases: forward passes in every conditioning mode (text, image held and in context,
extension, video → audio, character references with a dropped-reference row, per-token
timesteps beyond the time-level factoring), the flow-matching loss of a masked batch, and
sampler runs from a given start (Euler with text guidance; Heun with text and reference
guidance; Euler on an extension). The metadata says what each case is.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from sonora_twin import (
    DitInput,
    ModelConfig,
    Rope,
    SampleBatch,
    SonoraDit,
    flow_loss,
    positions,
    sample_from,
    text_pad_of,
)

CONFIG = """\
# The parity fixture's micro model (written by bench/torch/make_parity_fixture.py).
name = "parity-micro"
frames = 4
height = 8
width = 8
fps = 8.0
sample_rate = 1000
patch_t = 2
patch_h = 4
patch_w = 4
audio_patch = 125
ref_size = 8
d_model = 32
depth = 2
heads = 2
mlp_ratio = 2
text_dim = 16
text_depth = 1
text_heads = 2
text_max_len = 6
vocab_size = 20
image_cond = "context"
"""

B = 2


def clean_tokens(c: ModelConfig, mode: dict):
    """Which tokens a mode gives (conditioning.rs `clean_tokens`), for the sampler cases."""
    nv, na = c.video_tokens(), c.audio_tokens()
    _, gh, gw = c.video_grid()
    kind = mode["mode"]
    if kind in ("text_to_av", "character"):
        return [False] * nv, [False] * na
    if kind == "extension":
        patches = mode["prefix_frames"] // c.patch_t
        given = patches * c.patch_t / c.fps * c.sample_rate
        video = [i // (gh * gw) < patches for i in range(nv)]
        audio = [(i + 1) * c.audio_patch <= given + 0.5 for i in range(na)]
        return video, audio
    if kind == "video_to_audio":
        return [True] * nv, [False] * na
    raise ValueError(kind)


def main() -> None:
    ap = argparse.ArgumentParser()
    here = Path(__file__).resolve().parent
    ap.add_argument("--out", default=str(here.parents[1] / "framework/tests/fixtures/parity"))
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(CONFIG)
    torch.manual_seed(args.seed)
    c = ModelConfig.from_toml(out / "config.toml")
    model = SonoraDit(c).eval()
    # random weights everywhere: sonora starts the gates and heads at zero, which would hide
    # the blocks from the outputs; norms near 1 so activations keep their scale
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".gamma"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * (0.5 / max(p.shape[0], 1) ** 0.5 if p.dim() == 2 else 0.1))
    model.save_sonora(out / "model.safetensors")

    nv, na, pv, pa = c.video_tokens(), c.audio_tokens(), c.video_patch_dim(), c.audio_token_dim()
    nr1, pr, ni = c.ref_tokens(), c.ref_patch_dim(), c.image_tokens()
    L = c.text_max_len
    # two captions: a full one and a short padded one; the null caption for guidance
    captions = torch.tensor([[3, 7, 11, 2, 5, 9], [4, 8, 0, 0, 0, 0]])
    null = torch.zeros(L, dtype=torch.long)
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, dict] = {}

    def t_rows(*rows):
        return torch.tensor(rows, dtype=torch.float32)

    def forward_case(name, t, refs=0, image=False, token_mask=None, ids=captions, note=""):
        n = nv + na + refs * nr1 + (ni if image else 0)
        assert t.shape == (B, n), (name, t.shape, n)
        inp = DitInput(
            video=torch.randn(B, nv, pv),
            audio=torch.randn(B, na, pa),
            t=t,
            text_ids=ids,
            text_pad=text_pad_of(ids),
            refs=torch.randn(B, refs * nr1, pr) if refs else None,
            image=torch.randn(B, ni, pv) if image else None,
            token_mask=token_mask,
        )
        rope = Rope(positions(c, refs, image), c.head_dim(), c.d_model)
        with torch.no_grad():
            ov, oa = model(inp, rope)
        fields = {
            "video": inp.video,
            "audio": inp.audio,
            "t": inp.t,
            "text_ids": inp.text_ids,
            "refs": inp.refs,
            "image": inp.image,
            "token_mask": None if token_mask is None else token_mask.to(torch.uint8),
            "out_video": ov,
            "out_audio": oa,
        }
        for k, v in fields.items():
            if v is not None:
                tensors[f"{name}.{k}"] = v.contiguous().clone()
        meta[name] = {"kind": "forward", "refs": refs, "image": image, "note": note}
        return inp, (ov, oa)

    def mode_t(video_t, audio_t, extra=0):
        return torch.cat([video_t, audio_t, torch.zeros(B, extra)], dim=1)

    full = lambda v: torch.full((B, 1), v)  # noqa: E731
    forward_case("text", mode_t(full(0.7).expand(B, nv), torch.tensor([[0.7], [0.3]]).expand(B, na)),
                 note="text → video + audio, one noise level per example")
    # image held over the first token row (given, t = 0), the rest at 0.4
    first_row = torch.arange(nv) < ni
    tv = torch.where(first_row, 0.0, 0.4).expand(B, nv)
    forward_case("image_hold", mode_t(tv, full(0.4).expand(B, na)), note="the timestep layout of image → video under image_cond = hold (first row given); "
                 "the fixture's model is built with context, which the forward pass does not read")
    # in-context image row: example 1 has no image (a zero row no token attends to)
    mask = torch.zeros(B, nv + na + ni, dtype=torch.bool)
    mask[1, nv + na :] = True
    forward_case("image_context", mode_t(full(0.6).expand(B, nv), full(0.6).expand(B, na), ni),
                 image=True, token_mask=mask, note="image → video with the in-context image row")
    # extension: the first token row and the audio under it given
    a_given = torch.arange(na) < na // 2
    forward_case("extension", mode_t(torch.where(first_row, 0.0, 0.5).expand(B, nv), torch.where(a_given, 0.0, 0.5).expand(B, na)),
                 note="extension: prefix given")
    forward_case("video_to_audio", mode_t(torch.zeros(B, nv), full(0.55).expand(B, na)),
                 note="video → audio: every video token given")
    # a character reference; example 1's references dropped (the guidance pass without them)
    mask = torch.zeros(B, nv + na + nr1, dtype=torch.bool)
    mask[1, nv + na :] = True
    forward_case("character", mode_t(full(0.8).expand(B, nv), full(0.8).expand(B, na), nr1), refs=1,
                 token_mask=mask, note="character references, dropped in example 1")
    forward_case("character_two_refs", mode_t(full(0.35).expand(B, nv), full(0.35).expand(B, na), 2 * nr1), refs=2,
                 ids=torch.stack([captions[0], null]), note="two references, a null caption")
    # per-token timesteps: more distinct values than the time levels factor
    forward_case("per_token", torch.rand(B, nv + na), note="every token its own timestep (per-token AdaLN path)")

    # the loss of a masked batch (some tokens given, motion-like weights on the rest)
    _, loss_out = forward_case("loss", mode_t(torch.where(first_row, 0.0, 0.45).expand(B, nv), full(0.45).expand(B, na)),
                            note="flow-matching loss")
    target_v, target_a = torch.randn(B, nv, pv), torch.randn(B, na, pa)
    mask_v = torch.where(first_row, 0.0, 1.0 + torch.rand(nv)).expand(B, nv).unsqueeze(-1).contiguous()
    mask_a = (1.0 + 0.5 * torch.rand(B, na, 1)).contiguous()
    total, lv, la = flow_loss(loss_out, target_v, target_a, mask_v, mask_a, video_weight=1.0, audio_weight=0.5)
    tensors.update({
        "loss.target_video": target_v, "loss.target_audio": target_a,
        "loss.mask_video": mask_v, "loss.mask_audio": mask_a,
        "loss.losses": torch.stack([total, lv, la]),
    })
    meta["loss"]["video_weight"], meta["loss"]["audio_weight"] = 1.0, 0.5

    # sampler runs from a given start
    def sample_case(name, mode, steps, kind, text_scale, audio_scale, ref_scale, refs=0, shift=None):
        cv, ca = clean_tokens(c, mode)
        cv, ca = torch.tensor(cv).expand(B, nv), torch.tensor(ca).expand(B, na)
        gv, ga = torch.randn(B, nv, pv), torch.randn(B, na, pa)
        xv = torch.where(cv.unsqueeze(-1), gv, torch.randn(B, nv, pv))
        xa = torch.where(ca.unsqueeze(-1), ga, torch.randn(B, na, pa))
        r = torch.randn(B, refs * nr1, pr) if refs else None
        sb = SampleBatch(xv, xa, cv, ca, gv, ga, captions, null, r)
        ov, oa = sample_from(model, sb, steps, text_scale, audio_scale, ref_scale, shift=shift, heun=kind == "heun")
        for k, v in {"x_video": xv, "x_audio": xa, "given_video": gv, "given_audio": ga, "text_ids": captions,
                     "refs": r, "out_video": ov, "out_audio": oa}.items():
            if v is not None:
                tensors[f"{name}.{k}"] = v.contiguous().clone()
        meta[name] = {"kind": "sample", "mode": mode, "refs": refs, "sampler": {
            "kind": kind, "steps": steps, "text_scale": text_scale, "audio_scale": audio_scale, "ref_scale": ref_scale,
            "shift": shift}}

    sample_case("sample_text", {"mode": "text_to_av"}, 2, "euler", 3.0, 1.5, 1.0, shift=3.0)
    sample_case("sample_character", {"mode": "character"}, 2, "heun", 2.0, 1.0, 1.5, refs=1)
    sample_case("sample_extension", {"mode": "extension", "prefix_frames": 2}, 1, "euler", 1.0, 1.0, 1.0)

    save_file(tensors, str(out / "cases.safetensors"), metadata={"cases": json.dumps(meta)})
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {len(meta)} cases to {out} ({size / 1024:.0f} KiB, torch {torch.__version__})")


if __name__ == "__main__":
    main()
