#!/usr/bin/env bash
# The main job: build sonora, then `sonora quickstart` — synthesise data/quickstart if absent,
# train the quickstart recipe on the CPU (about 5 minutes on 2 cores), sample clips to MP4,
# and print where everything is. Rerunning continues an interrupted quickstart.
# Uses the dev profile (dependencies optimised, see Cargo.toml) so it shares the test build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --bin sonora
exec "${CARGO_TARGET_DIR:-target}/debug/sonora" quickstart "$@"
