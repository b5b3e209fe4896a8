#!/usr/bin/env bash
# sonora against its PyTorch twin (bench/torch/) on the same shapes, in one run: the train
# step (forward + backward + clip + AdamW + EMA) and the sampler step (Euler, text guidance)
# of the quickstart, tiny and small configs; ms/step, tokens/s, GFLOP/s and each row's speed
# as a ratio to PyTorch eager's.
#
#   scripts/bench_torch.sh [--batch 4] [--steps 5] [--compile] [--checkpointing]
#                          [--models configs/model/tiny.toml …] [--device flex libtorch]
#
# Installs the PyTorch it needs itself (never in the test command): torch 2.11.0 from PyPI
# into .bench/torch-venv (about 4.7 GB with its CUDA runtime wheels; PyTorch's CPU-only index
# is not reachable here). SONORA_TORCH_PYTHON=/path/to/python uses an existing one instead.
# SONORA_BIN picks the sonora binary (default: the dev build, whose model crates are
# optimised; SONORA_BIN=target/tch/sonora, built by scripts/build_tch.sh, adds
# `--device libtorch`, its libraries found through the same torch).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch_env.sh
if [ -z "${SONORA_BIN:-}" ]; then
  cargo build -q --bin sonora
  SONORA_BIN=target/debug/sonora
fi
args=()
[[ " $* " == *" --models "* ]] || args=(--models configs/model/quickstart.toml configs/model/tiny.toml configs/model/small.toml)
exec "$PY" bench/torch/compare.py --sonora "$SONORA_BIN" "${args[@]}" "$@"
