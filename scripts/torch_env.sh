# Sourced by bench_torch.sh and build_tch.sh: the PyTorch they need, installed if missing.
# Sets PY (a python with torch 2.11.0, safetensors, numpy: SONORA_TORCH_PYTHON, else
# .bench/torch-venv, created from PyPI), TORCH_DIR (the wheel's torch/, whose lib/ and
# include/ are a libtorch) and puts $TORCH_DIR/lib on LD_LIBRARY_PATH, so a `--features tch`
# binary finds its libraries. Run from the repository root.
PY="${SONORA_TORCH_PYTHON:-.bench/torch-venv/bin/python}"
if ! "$PY" -c 'import torch, safetensors, numpy' 2>/dev/null; then
  echo "torch_env: installing torch==2.11.0 safetensors numpy into .bench/torch-venv (pip)"
  python3 -m venv .bench/torch-venv
  .bench/torch-venv/bin/pip install -q torch==2.11.0 safetensors numpy
  PY=.bench/torch-venv/bin/python
fi
TORCH_DIR="$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
export LD_LIBRARY_PATH="$TORCH_DIR/lib:${LD_LIBRARY_PATH:-}"
