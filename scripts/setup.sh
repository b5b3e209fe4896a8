#!/usr/bin/env bash
# Installs what sonora needs on a fresh Debian machine (idempotent; skips what is there).
#   scripts/setup.sh          build + run: cmake (bundled libopus), nasm (fast openh264),
#                             OpenBLAS (flex's linear layers, loaded at run time),
#                             FFmpeg's libraries and libclang (the `ffmpeg` feature's decoders),
#                             OpenMPI (the `mpi` feature: `mpirun -np N sonora train …`)
#   scripts/setup.sh --test   also the test judges: ffmpeg/ffprobe, Chromium, pyarrow, polars,
#                             DuckDB, Hugging Face datasets, safetensors, tensorboard, mlflow,
#                             the openai SDK, playwright-core
set -euo pipefail
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v nasm >/dev/null || need+=(nasm)
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
for lib in libavcodec libavformat libavutil libswscale; do
  pkg-config --exists "$lib" 2>/dev/null || need+=("$lib-dev")
done
# bindgen needs libclang itself (libclang.so / libclang-N.so), not libclang-cpp, which
# other packages bring
compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null \
  || compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null \
  || compgen -G '/usr/lib/*-linux-gnu/libclang-[0-9]*.so*' >/dev/null || need+=(libclang-dev)
pkg-config --exists ompi 2>/dev/null || need+=(libopenmpi-dev)
# OpenBLAS's GEMM for flex's linear layers (loaded at run time; burn's matmul without it)
compgen -G '/usr/lib/*-linux-gnu/libopenblas.so*' >/dev/null || need+=(libopenblas0-pthread)
command -v mpirun >/dev/null || need+=(openmpi-bin)
if [ "$want_test" = 1 ]; then
  command -v ffprobe >/dev/null || need+=(ffmpeg)
  command -v chromium >/dev/null || need+=(chromium)
  command -v curl >/dev/null || need+=(curl)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing ${need[*]} (apt-get)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "$want_test" = 1 ]; then
  if ! python3 -c 'import pyarrow, polars, duckdb, datasets, safetensors.numpy, tensorboard' 2>/dev/null; then
    echo "setup: installing pyarrow polars duckdb datasets safetensors tensorboard (pip)"
    python3 -m pip install -q pyarrow polars duckdb datasets safetensors numpy tensorboard
  fi
  if ! python3 -c 'import mlflow' 2>/dev/null; then
    echo "setup: installing mlflow (pip) for the tracking-server test"
    python3 -m pip install -q mlflow==3.17.2
  fi
  if ! python3 -c 'import openai, sys; sys.exit(openai.__version__ != "3.57.0")' 2>/dev/null; then
    echo "setup: installing openai==3.57.0 (pip) for the server's SDK test"
    python3 -m pip install -q openai==3.57.0
  fi
  root="$(cd "$(dirname "$0")/.." && pwd)"
  if [ ! -d "$root/tests/browser/node_modules/playwright-core" ]; then
    echo "setup: installing playwright-core (npm) for the browser playback test"
    (cd "$root/tests/browser" && npm install --silent --no-audit --no-fund >/dev/null)
  fi
fi
echo "setup: ok"
