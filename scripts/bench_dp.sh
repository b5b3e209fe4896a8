#!/usr/bin/env bash
# Data-parallel scaling: 2 ranks × 1 thread against 1 rank × 1 thread (the anchor), the same
# per-rank batch (weak scaling), for the quickstart and small recipes on data/quickstart.
# Prints samples/s, the efficiency (2-rank samples/s over twice the 1-rank figure) and the
# seconds a step spends in collectives (comm_s in metrics.jsonl).
#   scripts/bench_dp.sh [--steps N]      (default 12 timed steps after 2 warm-up steps)
set -euo pipefail
steps=12
[ "${1:-}" = "--steps" ] && steps="$2"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# the dev build optimises the framework and every dependency (Cargo.toml's profiles)
bin="${CARGO_TARGET_DIR:-$root/target}/debug/sonora"
cargo build --bin sonora >/dev/null 2>&1
[ -d data/quickstart ] || "$bin" data synth --config configs/data/quickstart.toml --out data/quickstart >/dev/null
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
total=$((steps + 2))
export RAYON_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

run() { # NAME RECIPE WORLD EXTRA...
  local name="$1" recipe="$2" world="$3"; shift 3
  local args=(train "$recipe" --set "run.name=$name" --set "run.out_dir=$out" --set "train.steps=$total"
    --set sample.every=0 --set "checkpoint.every=$total" --set data.loader.workers=1
    --set tracking.tensorboard=false --set data.path=data/quickstart "$@")
  if [ "$world" = 1 ]; then
    "$bin" "${args[@]}" >/dev/null 2>&1
  else
    mpirun --oversubscribe -np "$world" "$bin" "${args[@]}" --set distributed.backend=mpi >/dev/null 2>&1
  fi
}

summary() { # RUN_DIR PER_RANK_BATCH WORLD -> "samples/s step_s comm_s"
  python3 - "$1/metrics.jsonl" "$2" "$3" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][2:]   # 2 warm-up steps
b, w = int(sys.argv[2]), int(sys.argv[3])
s = statistics.median(r["step_s"] for r in rows)
c = statistics.median(r.get("comm_s", 0.0) for r in rows)
print(f"{b * w / s:.3f} {s:.3f} {c:.4f}")
PY
}

printf '%-12s %6s %10s %10s %10s %10s %10s\n' recipe batch "1×1 s/st" "2×1 s/st" "1×1 smp/s" "2×1 smp/s" efficiency
for spec in "quickstart configs/recipes/quickstart.toml 4" "small configs/recipes/pretrain-small.toml 2"; do
  set -- $spec
  name="$1" recipe="$2" b="$3"
  extra=(--set "data.loader.batch_size=$b" --set train.grad_accum=1)
  run "$name-1" "$recipe" 1 "${extra[@]}"
  run "$name-2" "$recipe" 2 "${extra[@]}"
  read -r s1 t1 _ <<<"$(summary "$out/$name-1" "$b" 1)"
  read -r s2 t2 c2 <<<"$(summary "$out/$name-2" "$b" 2)"
  eff=$(python3 -c "print(f'{$s2 / (2 * $s1):.2f}')")
  printf '%-12s %6s %10s %10s %10s %10s %10s   (comm %s s/step)\n' "$name" "$b" "$t1" "$t2" "$s1" "$s2" "$eff" "$c2"
done
echo "(median step time over $steps steps after 2 warm-up steps; RAYON_NUM_THREADS=1 per rank; efficiency = 2-rank samples/s / (2 × 1-rank samples/s))"
