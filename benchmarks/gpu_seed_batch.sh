#!/usr/bin/env bash
# Many paired seeds of Table I's cpu-profile network on one CUDA GPU: the `cpu_cuda` profile (the
# cpu profile's settings, float32, channels_last; its own rows, never pooled with CPU runs), run
# until each optimizer row is decided (gal_suite.sequential; looks every DECIDE_BATCH pairs up to
# MAX_SEEDS) or BUDGET seconds have passed. The finished run records (no checkpoints) are packed
# into OUT/runs_cpu_cuda.tar.gz, laid out as results/runs (extract with tar -C results/runs -xzf).
#
#   GAL_SHARED_DATA=.gpu_data bash benchmarks/gpu_seed_batch.sh [OUT]    (env: JOBS, BUDGET, ...)
#   bash benchmarks/gpu_seed_batch.sh --dry-run                         (the command, no run)
#
# Needs what benchmarks/gpu_check.sh needs (torch with CUDA, pytorch_optimizer as a wheel on
# PYTHONPATH); without .git a bundle at .gpu_data/repo.bundle restores the commit for provenance.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT=${1:-results/benchmarks/gpu_batch}
JOBS=${JOBS:-12}
BUDGET=${BUDGET:-270}
MAX_SEEDS=${MAX_SEEDS:-60}
DECIDE_BATCH=${DECIDE_BATCH:-10}
TABLE=${TABLE:-1}
RUNS=${RUNS:-/tmp/gal_gpu_runs}
PY=${PYTHON:-python3}
CMD=("$PY" -m experiments.classification --table "$TABLE" --profile cpu_cuda --until-decided
     --max-seeds "$MAX_SEEDS" --decide-batch "$DECIDE_BATCH" --jobs "$JOBS" --threads 1
     --runs-root "$RUNS" --no-progress)
if [ "$DRY" = 1 ]; then echo "timeout -k 10 $BUDGET ${CMD[*]}"; exit 0; fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/src:$PWD"
export GAL_SHARED_DATA="${GAL_SHARED_DATA:-.gpu_data}" GAL_CACHE="${GAL_CACHE:-$HOME/.cache/gal}"
if [ -f .gpu_data/repo.bundle ]; then  # the bundle names the commit these files were sent from
  git rev-parse HEAD >/dev/null 2>&1 || { rm -rf .git && git init -q; }
  git config core.fileMode false
  git fetch -q .gpu_data/repo.bundle HEAD && git reset -q FETCH_HEAD
fi
echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown); dirty: $(git status --porcelain -- . ':(exclude)results' 2>/dev/null | wc -l) files"
mkdir -p "$OUT" "$RUNS"
t0=$(date +%s)
rc=0
timeout -k 10 "$BUDGET" "${CMD[@]}" || rc=$?
echo "batch exit $rc after $(( $(date +%s) - t0 )) s (124 = budget reached; finished runs are kept)"
tar -C "$RUNS" --exclude='*.partial' --exclude='checkpoint*' --exclude='*.lock' -czf "$OUT/runs_cpu_cuda.tar.gz" .
echo "runs: $(find "$RUNS" -name status.json -not -path '*.partial*' | wc -l) finished -> $OUT/runs_cpu_cuda.tar.gz"
