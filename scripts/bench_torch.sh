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
# optimised; a `--features tch` build from scripts/build_tch.sh adds `--device libtorch`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${SONORA_TORCH_PYTHON:-.bench/torch-venv/bin/python}"
if ! "$PY" -c 'import torch, safetensors, numpy' 2>/dev/null; then
  echo "bench_torch: installing torch==2.11.0 safetensors numpy into .bench/torch-venv (pip)"
  python3 -m venv .bench/torch-venv
  .bench/torch-venv/bin/pip install -q torch==2.11.0 safetensors numpy
  PY=.bench/torch-venv/bin/python
fi
if [ -z "${SONORA_BIN:-}" ]; then
  cargo build -q --bin sonora
  SONORA_BIN=target/debug/sonora
fi
args=()
[[ " $* " == *" --models "* ]] || args=(--models configs/model/quickstart.toml configs/model/tiny.toml configs/model/small.toml)
exec "$PY" bench/torch/compare.py --sonora "$SONORA_BIN" "${args[@]}" "$@"
