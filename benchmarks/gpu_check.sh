#!/usr/bin/env bash
# One GPU check of the paper profile, offline, in about 5 minutes on one GPU (cap 8): the CUDA
# tests, GAL's cost on CUDA, first epochs of Tables I and III, DETR steps -> one JSON report.
#
#   bash benchmarks/gpu_check.sh --wheels .whl [--out results/benchmarks/gpu_check] [--quick]
#   bash benchmarks/gpu_check.sh --dry-run      # the commands and the imports they need (CPU, CI)
#
# Data: $GAL_SHARED_DATA (default .gpu_data/ when it holds cifar10-jpeg.tar.gz) must hold the
# CIFAR-10 JPEG archive; everything else is generated. Provenance: without .git, a git bundle at
# .gpu_data/repo.bundle (or $GAL_GIT_BUNDLE) restores the commit. The project is not
# pip-installed: the steps run with PYTHONPATH=<wheels>:src:. ; see benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
