# The user interface of the suite. Every target creates/uses the local virtual environment .venv.
# PROFILE=cpu (default, runs on a 2-core CPU with data at hand) or PROFILE=paper (paper settings; GPUs, real data).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
SEEDS ?= 5
SHARED ?= $(abspath ../shared)
export SCIKIT_LEARN_DATA ?= $(SHARED)/data/scikit_learn_data

.PHONY: venv test lint reproduce table5 fig4 fig4-gif compare clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

test: venv
	$(VENV)/bin/ruff check src experiments tests benchmarks detr_gal
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check src experiments tests benchmarks detr_gal

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
