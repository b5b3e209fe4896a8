#!/usr/bin/env bash
# The main job (for now): build sonora, synthesise the quickstart dataset, inspect and validate it.
# Uses the dev profile (dependencies optimised, see Cargo.toml) so it shares the test build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --bin sonora
bin=target/debug/sonora
$bin data synth --config configs/data/quickstart.toml --out data/quickstart --overwrite
$bin data stats data/quickstart
$bin data validate data/quickstart
echo
echo "dataset: data/quickstart (Parquet shards + manifest.json; characters/ holds reference images)"
echo "next: $bin data filter data/quickstart --where \"split = 'train' AND caption LIKE '%bounce%'\" --out data/bouncy"
echo "      $bin bench loader    # loader clips/s (1 vs 2 workers); $bin bench parquet: read MB/s vs pyarrow"
