#!/usr/bin/env bash
# Regenerates tests/fixtures/cast: the quickstart model trained by configs/recipes/cast.toml
# to draw whichever roster character is cast, on the quickstart world with every object a
# roster character. The test `a_cast_character_shows_in_its_clips_more_than_in_the_same_seeds_uncast`
# (tests/serve_characters.rs) serves it. Only what inference reads is kept: the manifest,
# the tokenizer and the EMA weights (the trained weights and the optimizer state are left
# out; inference verifies only the files it reads).
# About 25 minutes on 2 cores. Usage: bash scripts/make_cast_fixture.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d)}"
cargo build --bin sonora
bin=target/debug/sonora
"$bin" data synth --config configs/data/quickstart.toml --out "$work/data" --overwrite \
  --set synth.character_prob=1.0
"$bin" train configs/recipes/cast.toml --set data.path="$work/data" --set run.out_dir="$work/runs"
last="$(ls -d "$work"/runs/cast/checkpoints/step-* | sort | tail -1)"
out=tests/fixtures/cast
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
cp "$last"/manifest.json "$last"/tokenizer.json "$last"/ema.safetensors "$out.tmp"/
rm -rf "$out" && mv "$out.tmp" "$out"
echo "wrote $out from $last"
