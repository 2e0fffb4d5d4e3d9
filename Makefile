# The user interface of the suite. Every target creates/uses the local virtual environment .venv.
# PROFILE=cpu (default, runs on a 2-core CPU with data at hand) or PROFILE=paper (paper settings; GPUs, real data).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
SEEDS ?= 5
SHARED ?= $(abspath ../shared)
export SCIKIT_LEARN_DATA ?= $(SHARED)/data/scikit_learn_data

.PHONY: venv test lint reproduce table5 fig4 fig4-gif compare benchmark \
	table1 table2 table3 table4 table6 table7 table8 fig5 fig6 fig7 fig8

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
	$(PY) -m experiments.regression --profile $(PROFILE) --seeds $(SEEDS)
	$(VENV)/bin/gal table 5

# Fig. 4 (3D example): runs the missing runs, then renders results/figures/fig4.{png,pdf,json}
fig4: venv
	$(PY) -m experiments.toy3d --profile $(PROFILE)
	$(VENV)/bin/gal figure 4

fig4-gif: fig4
	$(VENV)/bin/gal figure 4 --gif

# Everything the CPU profile supports.
reproduce: table5 fig4

# Compare any two sets of run records: make compare A=results/runs/... B=results/runs/...
compare: venv
	$(VENV)/bin/gal compare $(A) $(B)

# GAL step overhead vs baseline (ratio measured side by side in one process)
benchmark: venv
	$(PY) benchmarks/overhead.py --out results/benchmarks/overhead_$(shell $(PY) -c "import torch;print('cuda' if torch.cuda.is_available() else 'cpu')").json

# Tables and figures whose experiments need GPUs and datasets not at hand: each says so clearly.
table1 table2 table3 table4 table6 table7 table8: venv
	$(VENV)/bin/gal table $(subst table,,$@)

fig5 fig6 fig7 fig8: venv
	$(VENV)/bin/gal figure $(subst fig,,$@)
