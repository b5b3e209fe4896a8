"""sonora against its PyTorch twin on the same shapes, in one run (`scripts/bench_torch.sh`).

For each model config: sonora's train step and sampler step (`sonora bench train-step /
sample --json`, on every backend given with --device) and the twin's in PyTorch eager (and
`torch.compile` with --compile), each in its own process so each peak memory is its own.
Prints ms/step, tokens/s, GFLOP/s (sonora's matmul FLOP count for both sides, the same
shapes) and the ratio of each row's speed to PyTorch eager's, then writes every row as JSON
to --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_json(cmd: list[str], timeout: float) -> dict | list | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  (timed out after {timeout:.0f} s: {' '.join(cmd)})", file=sys.stderr)
        return None
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        print(f"  (failed: {' '.join(cmd)}: {' | '.join(tail)})", file=sys.stderr)
        return None
    text = p.stdout.strip()
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    if not starts:
        print(f"  (no JSON from {' '.join(cmd)})", file=sys.stderr)
        return None
    return json.loads(text[min(starts):])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sonora", required=True, help="the sonora binary")
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", nargs="+", default=["flex"], help="sonora backends")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--checkpointing", action="store_true", help="also time activation checkpointing on both sides")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", default=".bench/torch-compare.json")
    a = ap.parse_args()
    rows = []
    for model in a.models:
        for what in ("train", "sample"):
            sub = "train-step" if what == "train" else "sample"
            eager = run_json(
                [sys.executable, str(HERE / "bench.py"), "--model", model, "--batch", str(a.batch),
                 "--steps", str(a.steps), "--what", what], a.timeout)
            if eager is None:
                continue
            eager["side"] = "pytorch eager"
            group = [eager]
            flop = None
            for dev in a.device:
                extra = ["--grad-checkpointing"] if (a.checkpointing and what == "train") else []
                rep = run_json([a.sonora, "bench", sub, "--models", model, "--batch", str(a.batch),
                                "--steps", str(a.steps), "--device", dev, "--json", *extra], a.timeout)
                if rep is None:
                    continue
                for r in rep:
                    # the train-step anchor row (per-token AdaLN) is sonora's own comparison
                    if "per-token" in r["what"]:
                        continue
                    r["side"] = f"sonora {dev}"
                    flop = r["gflop_per_step"]
                    group.append(r)
            variants = []
            if a.compile:
                variants.append(["--compile"])
            if a.checkpointing and what == "train":
                variants.append(["--checkpointing"])
            for v in variants:
                r = run_json([sys.executable, str(HERE / "bench.py"), "--model", model, "--batch", str(a.batch),
                              "--steps", str(a.steps), "--what", what, *v], a.timeout)
                if r is not None:
                    r["side"] = "pytorch " + ("compile" if v == ["--compile"] else "eager ckpt")
                    group.append(r)
            for r in group:
                r["kind"] = what
                if flop is not None:
                    r["gflops"] = flop / (r["ms_per_step"] / 1e3)
                r["speed_vs_eager"] = eager["ms_per_step"] / r["ms_per_step"]
                # sonora's counter sees the Rust heap only: libtorch allocates outside it
                mem = r.get("peak_heap_mib", r.get("peak_rss_above_start_mib"))
                r["memory_mib"] = None if r["side"] == "sonora libtorch" else mem
            rows += group

    print(f"batch {a.batch}, median of {a.steps} timed steps; train = forward + backward + clip + AdamW + EMA, "
          "sample = one Euler step with text guidance (2 passes)")
    print(f"{'model':<11} {'step':<7} {'side':<28} {'ms/step':>9} {'tokens/s':>9} {'GFLOP/s':>8} "
          f"{'× eager':>8} {'mem MiB':>8}")
    for r in rows:
        label = r["side"]
        if label.startswith("sonora") and r.get("what", "") not in ("train-step", "sample", ""):
            label += ", " + r["what"]
        print(f"{r['model']:<11} {r['kind']:<7} {label:<28.28} "
              f"{r['ms_per_step']:>9.1f} {r['tokens_per_s']:>9.0f} {r.get('gflops', float('nan')):>8.1f} "
              f"{r['speed_vs_eager']:>8.2f} {'—' if r['memory_mib'] is None else format(r['memory_mib'], '.0f'):>8}")
    print("(× eager: PyTorch eager's ms/step over the row's, same shapes and process layout; "
          "mem: sonora's live-heap peak during the step (— on libtorch, whose allocations it "
          "cannot see), PyTorch's peak RSS above its start)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rows, indent=1))
    print(f"rows written to {a.out}")


if __name__ == "__main__":
    main()
