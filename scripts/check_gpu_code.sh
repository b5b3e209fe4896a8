#!/usr/bin/env bash
# Type-checks the GPU code paths (libtorch backend + NCCL) that no CI machine can link or
# run: tch's `doc-only` skips libtorch, cudarc loads CUDA/NCCL at run time, so neither needs
# to be installed. All the feature-gated code is in sonora-framework (device.rs,
# distributed/). Run it after touching that code: it is not part of `.ci/run`, whose fresh
# clone already takes most of its hour building and testing the default features (the
# check compiles the burn stack again in check mode, 5–10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo check -p sonora-framework --all-targets --features nccl,tch-doc-only
