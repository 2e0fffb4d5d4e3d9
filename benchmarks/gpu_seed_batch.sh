#!/usr/bin/env bash
# Many paired seeds on one CUDA GPU, each task on its own CUDA profile (the CPU profile's settings,
# float32 without autocast, though cuDNN may use TF32 for convolutions as PyTorch does by default;
# its own rows: never pooled with CPU runs), under one time budget (BUDGET seconds for the whole
# list; TABLE=N alone still means WHAT=tableN). WHAT, a comma list run in order (default table1):
#   table1, table2  the cpu profile's network (`cpu_cuda`), until each optimizer row is decided
#                   (gal_suite.sequential; looks every DECIDE_BATCH pairs up to MAX_SEEDS);
#   analysis        the analyses of Sec. VI on `analysis_cuda` (Tables VI, VIII, Figs. 7, 8);
#   table4          the DETR stand-in on `cpu_cuda` (Conditional DETR), baseline and GAL until
#                   each model row's AP verdict is decided (as table1);
#   table4_controls its controls (GAL alpha = 0, the noise adjuster, h frozen) on the profile's seeds.
# The finished run records (no checkpoints) are packed into OUT/runs_cuda.tar.gz, laid out as
# results/runs (extract with tar -C results/runs -xzf).
#
#   GAL_SHARED_DATA=.gpu_data bash benchmarks/gpu_seed_batch.sh [OUT]    (env: WHAT, JOBS, BUDGET, ...)
#   bash benchmarks/gpu_seed_batch.sh --dry-run                         (the commands, no run)
#
# Needs what benchmarks/gpu_check.sh needs (torch with CUDA, pytorch_optimizer as a wheel on
# PYTHONPATH; transformers and pycocotools for table4); without .git a bundle at
# .gpu_data/repo.bundle restores the commit for provenance.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT=${1:-results/benchmarks/gpu_batch}
JOBS=${JOBS:-12}
BUDGET=${BUDGET:-270}
MAX_SEEDS=${MAX_SEEDS:-60}
DECIDE_BATCH=${DECIDE_BATCH:-10}
WHAT=${WHAT:-table${TABLE:-1}}  # TABLE=2: the older way to ask for table2
RUNS=${RUNS:-/tmp/gal_gpu_runs}
PY=${PYTHON:-python3}
COMMON=(--jobs "$JOBS" --threads 1 --runs-root "$RUNS" --no-progress)
set_command() {  # CMD: the command line of one WHAT item (an array: paths may hold spaces)
  case "$1" in
    table1|table2) CMD=("$PY" -m experiments.classification --table "${1#table}" --profile cpu_cuda
                        --until-decided --max-seeds "$MAX_SEEDS" --decide-batch "$DECIDE_BATCH" "${COMMON[@]}") ;;
    analysis) CMD=("$PY" -m experiments.classification --table ablation --profile analysis_cuda "${COMMON[@]}") ;;
    table4) CMD=("$PY" -m detr_gal.run --profile cpu_cuda --until-decided --max-seeds "$MAX_SEEDS"
                 --decide-batch "$DECIDE_BATCH" "${COMMON[@]}") ;;
    table4_controls) CMD=("$PY" -m detr_gal.run --profile cpu_cuda
                          --methods gal_alpha0,gal_noise,gal_frozen_h "${COMMON[@]}") ;;
    *) echo "unknown WHAT item '$1' (table1, table2, analysis, table4, table4_controls)" >&2; return 2 ;;
  esac
}
IFS=, read -r -a ITEMS <<< "$WHAT"
for item in "${ITEMS[@]}"; do set_command "$item"; done
if [ "$DRY" = 1 ]; then
  for item in "${ITEMS[@]}"; do set_command "$item"; echo "timeout -k 10 <budget left> ${CMD[*]}"; done
  exit 0
fi
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
for item in "${ITEMS[@]}"; do
  left=$(( BUDGET - ($(date +%s) - t0) ))
  if [ "$left" -le 10 ]; then echo "$item: skipped, no time left in the budget"; continue; fi
  rc=0
  set_command "$item"
  timeout -k 10 "$left" "${CMD[@]}" || rc=$?
  echo "$item: exit $rc after $(( $(date +%s) - t0 )) s (124 = budget reached; finished runs are kept)"
done
tar -C "$RUNS" --exclude='*.partial' --exclude='checkpoint*' --exclude='*.lock' -czf "$OUT/runs_cuda.tar.gz" .
echo "runs: $(find "$RUNS" -name status.json -not -path '*.partial*' | wc -l) finished -> $OUT/runs_cuda.tar.gz"
