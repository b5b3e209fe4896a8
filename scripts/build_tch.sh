#!/usr/bin/env bash
# Builds sonora with the libtorch backend (`--device libtorch`, and `cuda[:N]` on a GPU host)
# against the libtorch inside PyPI's torch 2.11.0 wheel, then runs the model tests on it.
#
#   scripts/build_tch.sh            build target/tch/sonora, run the model + parity tests on libtorch
#   scripts/build_tch.sh --no-test  build only
#
# Why 2.11.0 and LIBTORCH_BYPASS_VERSION_CHECK: burn-tch 0.22.1 pins PyTorch 2.9.0 (tch /
# torch-sys 0.22), but the GPU machine has PyTorch 2.11 and a binary must run against the
# libtorch it was built with; 2.11's headers and libraries compile with the check bypassed
# (2.15's do not: a c10::List<SymInt> error in the generated shim). Nothing is downloaded
# outside PyPI: the wheel carries libtorch (about 4.7 GB with its CUDA runtime wheels, shared
# with scripts/bench_torch.sh's .bench/torch-venv). SONORA_TORCH_PYTHON picks another python
# that has torch 2.11. The build shares target/ with the default build (burn and the
# workspace compile a second time with the feature: about 20 minutes on 2 cores); the binary
# is copied to target/tch/sonora and runs with LD_LIBRARY_PATH=<torch>/lib.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch_env.sh
echo "build_tch: libtorch from $TORCH_DIR ($("$PY" -c 'import torch; print(torch.__version__)'))"
export LIBTORCH="$TORCH_DIR" LIBTORCH_BYPASS_VERSION_CHECK=1
# whatever happens below, put the default binary back where the other scripts look for it
trap 'cargo build -q --bin sonora' EXIT
cargo build --bin sonora --features tch
mkdir -p target/tch
cp target/debug/sonora target/tch/sonora
echo "build_tch: built target/tch/sonora (run it with LD_LIBRARY_PATH=$TORCH_DIR/lib)"
if [ "${1:-}" != "--no-test" ]; then
  # the library's unit tests (torch_autograd's against burn's operations among them), the
  # model tests (forward in every mode, gradients, overfitting, sampler determinism,
  # checkpoints) and the PyTorch-twin parity on libtorch
  SONORA_TEST_DEVICE=libtorch cargo test -p sonora-framework --features tch --lib --test model --test parity
fi
