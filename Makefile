# The user interface of the suite. Every target creates/uses the local virtual environment .venv.
# PROFILE=cpu (default, runs on a 2-core CPU with data at hand) or PROFILE=paper (paper settings; GPUs, real data).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
SEEDS ?=
SEEDS_ARG = $(if $(SEEDS),--seeds $(SEEDS))
CONTROL_SEEDS ?= 3
SHARED ?= $(abspath ../shared)
export SCIKIT_LEARN_DATA ?= $(SHARED)/data/scikit_learn_data
export GAL_SHARED_DATA ?= $(SHARED)/data

.PHONY: venv test lint reproduce table1 table2 table5 fig4 fig4-gif fig5 compare benchmark \
	sweep table3 table4 table6 table7 table8 fig6 fig7 fig8

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

test: venv
	$(VENV)/bin/ruff check src experiments tests benchmarks
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check src experiments tests benchmarks

# Table V (regression): runs only the missing runs, then renders results/tables/table5.{md,csv,tex}
table5: venv
	$(PY) -m experiments.regression --profile $(PROFILE) $(SEEDS_ARG)
	$(VENV)/bin/gal table 5

# Tables I and II (classification): runs only the missing runs (baseline and GAL for SGD, Lookahead,
# AdaBound, plus the GAL alpha=0 control for SGD on CONTROL_SEEDS seeds), then renders results/tables/table{1,2}.*
# PROFILE=cpu: CIFAR-10 JPEG copy / Tiny-ImageNet-100 at 32 px; PROFILE=paper: real CIFAR, GPUs.
table1 table2: venv
	$(PY) -m experiments.classification --table $(subst table,,$@) --profile $(PROFILE) $(SEEDS_ARG)
	$(PY) -m experiments.classification --table $(subst table,,$@) --profile $(PROFILE) \
		--seeds $(CONTROL_SEEDS) --optimizers sgd --methods gal_alpha0
	$(VENV)/bin/gal table $(subst table,,$@)

# Fig. 5: validation loss curves, baseline vs GAL, from the records of one profile
fig5: venv
	$(VENV)/bin/gal figure 5 --profile $(PROFILE)

# Fig. 4 (3D example): runs the missing runs, then renders results/figures/fig4.{png,pdf,json}
fig4: venv
	$(PY) -m experiments.toy3d --profile $(PROFILE)
	$(VENV)/bin/gal figure 4

fig4-gif: fig4
	$(VENV)/bin/gal figure 4 --gif

# Everything the CPU profile supports (only missing runs are run; tables/figures re-rendered).
reproduce: table5 fig4 table1 table2 fig5

# Compare any two sets of run records: make compare A=results/runs/... B=results/runs/...
compare: venv
	$(VENV)/bin/gal compare $(A) $(B)

# GAL step overhead vs baseline (ratio measured side by side in one process)
benchmark: venv
	PYTHONPATH=. $(PY) benchmarks/classification_throughput.py --profile $(PROFILE)
	$(PY) benchmarks/overhead.py --out results/benchmarks/overhead_$(shell $(PY) -c "import torch;print('cuda' if torch.cuda.is_available() else 'cpu')").json

# Accuracy vs CPU-minutes of candidate cpu-profile networks (how the cpu profile was chosen)
sweep: venv
	PYTHONPATH=. $(PY) benchmarks/cpu_profile_sweep.py

# Tables and figures whose experiments need GPUs and datasets not at hand: each says so clearly.
table3 table4 table6 table7 table8: venv
	$(VENV)/bin/gal table $(subst table,,$@)

fig6 fig7 fig8: venv
	$(VENV)/bin/gal figure $(subst fig,,$@)
