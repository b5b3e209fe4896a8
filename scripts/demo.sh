#!/usr/bin/env bash
# The main job (for now): build sonora, synthesise the quickstart dataset, inspect and validate it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --bin sonora
bin=target/release/sonora
$bin data synth --config configs/data/quickstart.toml --out data/quickstart --overwrite
$bin data stats data/quickstart
$bin data validate data/quickstart
echo "dataset: data/quickstart (Parquet shards + manifest.json; characters/ holds reference images)"
