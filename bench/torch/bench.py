"""Times the PyTorch twin's train step and sampler step on sonora's benchmark shapes.

    python bench/torch/bench.py --model configs/model/tiny.toml --batch 4 --steps 5 \
        [--compile] [--checkpointing] [--what train|sample]

Prints one JSON object: ms/step (median of the timed steps), tokens/s, and the process's
peak resident memory above what it held after importing torch (MiB). One model per process,
so the peak belongs to that model. The shapes are those of `sonora bench train-step` and
`sonora bench sample` (framework/src/perf.rs): text → video + audio, `batch` clips, a
`text_max_len` caption without padding; the train step is the recipes' (forward, masked
flow-matching loss, backward, global-norm clip at 1.0, AdamW, EMA 0.999), the sampler step
one Euler step with text guidance (two passes in one batch of 2·batch).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import torch

from sonora_twin import DitInput, ModelConfig, Rope, SonoraDit, flow_loss, positions, text_pad_of


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def batch_of(c: ModelConfig, b: int, t: float | list[float]):
    nv, na = c.video_tokens(), c.audio_tokens()
    ts = t if isinstance(t, list) else [t] * b
    tt = torch.tensor(ts, dtype=torch.float32).unsqueeze(1).expand(b, nv + na).contiguous()
    ids = torch.full((b, c.text_max_len), 2, dtype=torch.long)
    return DitInput(
        video=torch.randn(b, nv, c.video_patch_dim()),
        audio=torch.randn(b, na, c.audio_token_dim()) * 0.2,
        t=tt,
        text_ids=ids,
        text_pad=text_pad_of(ids),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--what", choices=["train", "sample"], default="train")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--checkpointing", action="store_true", help="activation checkpointing per block")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.zeros(1) + 1  # settle the runtime before the baseline
    base = rss_mib()
    c = ModelConfig.from_toml(args.model)
    model = SonoraDit(c)
    rope = Rope(positions(c, 0, False), c.head_dim(), c.d_model)
    fwd = model
    if args.checkpointing:
        from torch.utils.checkpoint import checkpoint

        for blk in model.blocks:
            inner = blk.forward
            blk.forward = lambda *a, _f=inner, **k: checkpoint(_f, *a, use_reentrant=False, **k)
    if args.compile:
        fwd = torch.compile(model)
    b = args.batch
    times = []
    if args.what == "train":
        params = list(model.parameters())
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)
        ema = [p.detach().clone() for p in params]
        x = batch_of(c, b, [0.3 + 0.4 * i / max(b - 1, 1) for i in range(b)])
        target_v, target_a = torch.randn_like(x.video), torch.randn_like(x.audio)
        mask_v = torch.ones(b, x.video.shape[1], 1)
        mask_a = torch.ones(b, x.audio.shape[1], 1)
        for i in range(args.steps + 1):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            out = fwd(x, rope)
            loss = flow_loss(out, target_v, target_a, mask_v, mask_a)[0]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - 0.999)
            loss.detach().item()
            if i > 0:
                times.append(time.perf_counter() - t0)
    else:
        model.eval()
        x = batch_of(c, 2 * b, 0.8)
        x.text_ids[b:] = 0
        x.text_pad = text_pad_of(x.text_ids)
        with torch.no_grad():
            for i in range(args.steps + 1):
                t0 = time.perf_counter()
                ov, oa = fwd(x, rope)
                # guidance + Euler step on the first half
                v = ov[b:] + 3.0 * (ov[:b] - ov[b:])
                a = oa[b:] + 1.0 * (oa[:b] - oa[b:])
                nxt = (x.video[:b] - 0.04 * v, x.audio[:b] - 0.04 * a)
                float(nxt[0].sum())
                if i > 0:
                    times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    tokens = c.video_tokens() + c.audio_tokens()
    print(json.dumps({
        "model": c.name,
        "what": args.what + (" compiled" if args.compile else "") + (" ckpt" if args.checkpointing else ""),
        "batch": b,
        "tokens": tokens,
        "ms_per_step": s * 1e3,
        "tokens_per_s": tokens * b / s,
        "peak_rss_above_start_mib": peak_rss_mib() - base,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    sys.exit(main())
