# The user interface of the suite. Every target creates/uses the local virtual environment .venv.
# PROFILE=cpu (default, runs on a 2-core CPU with data at hand) or PROFILE=paper (paper settings; GPUs, real data).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
# The analyses of Sec. VI (Tables VI, VIII, Figs. 6-8) run on the `analysis` profile when PROFILE=cpu
# (4 epochs over half of the CIFAR-10 JPEG copy, 16 configurations x 5 paired seeds, about 75 min on
# 2 idle cores, up to 7.5 h on shared ones; docs/analyses.md). APROFILE=ablation: the older 1-epoch
# profile (its records are kept).
APROFILE ?= $(if $(filter cpu,$(PROFILE)),analysis,$(PROFILE))
SEEDS ?=
SEEDS_ARG = $(if $(SEEDS),--seeds $(SEEDS))
CONTROL_SEEDS ?= 3
# Many runs at once (experiments/launch.py): JOBS runs at once, LAUNCHER=local (JOBS worker
# processes here, one GPU each where GPUs exist), slurm (a Slurm job array via submitit, at most
# JOBS tasks at once) or submitit-local (submitit's local executor). THREADS: torch threads per run
# (default: the config's num_threads, else cores / JOBS; results depend on it, not on JOBS).
# SLURM_*: override the profile's slurm: section (partition, account, qos, GPUs, minutes, memory).
JOBS ?= 1
LAUNCHER ?= local
THREADS ?=
SLURM_PARTITION ?=
SLURM_ACCOUNT ?=
SLURM_QOS ?=
SLURM_GPUS ?=
SLURM_TIME ?=
SLURM_MEM_GB ?=
LAUNCH_ARGS = --jobs $(JOBS) --launcher $(LAUNCHER) $(if $(THREADS),--threads $(THREADS)) \
	$(if $(SLURM_PARTITION),--slurm-partition $(SLURM_PARTITION)) \
	$(if $(SLURM_ACCOUNT),--slurm-account $(SLURM_ACCOUNT)) $(if $(SLURM_QOS),--slurm-qos $(SLURM_QOS)) \
	$(if $(SLURM_GPUS),--slurm-gpus $(SLURM_GPUS)) $(if $(SLURM_TIME),--slurm-time $(SLURM_TIME)) \
	$(if $(SLURM_MEM_GB),--slurm-mem-gb $(SLURM_MEM_GB))
SHARED ?= $(abspath ../shared)
export SCIKIT_LEARN_DATA ?= $(SHARED)/data/scikit_learn_data
export GAL_SHARED_DATA ?= $(SHARED)/data

.PHONY: venv test lint reproduce table1 table2 table5 fig4 fig4-gif fig5 compare benchmark \
	sweep table3 table4 table6 table7 table8 fig6 fig7 fig8 ablation

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[suite,dev]' -c constraints.txt
	touch $@

venv: $(VENV)/.installed

test: venv
	$(VENV)/bin/ruff check src experiments detr_gal tests benchmarks
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check src experiments detr_gal tests benchmarks

# Table V (regression): runs only the missing runs, then renders results/tables/table5.{md,csv,tex}
table5: venv
	$(PY) -m experiments.regression --profile $(PROFILE) $(SEEDS_ARG) $(LAUNCH_ARGS)
	$(VENV)/bin/gal table 5

# Tables I and II (classification): runs only the missing runs (baseline and GAL for SGD, Lookahead,
# AdaBound, plus the GAL alpha=0 control for SGD on CONTROL_SEEDS seeds), then renders results/tables/table{1,2}.*
# PROFILE=cpu: CIFAR-10 JPEG copy / Tiny-ImageNet-100 at 32 px; PROFILE=paper: real CIFAR, GPUs.
# DECIDE=1: instead of a fixed SEEDS, add paired seeds (baseline and GAL) in batches of DECIDE_BATCH
# until each optimizer row's verdict is decided or MAX_SEEDS pairs are reached (gal_suite.sequential:
# group-sequential, alpha spending; resumes from the records, works with JOBS and LAUNCHER).
DECIDE ?=
MAX_SEEDS ?= 60
DECIDE_BATCH ?= 5
table1 table2: venv
	$(PY) -m experiments.classification --table $(subst table,,$@) --profile $(PROFILE) \
		$(if $(DECIDE),--until-decided --max-seeds $(MAX_SEEDS) --decide-batch $(DECIDE_BATCH),$(SEEDS_ARG)) \
		$(LAUNCH_ARGS)
	$(PY) -m experiments.classification --table $(subst table,,$@) --profile $(PROFILE) \
		--seeds $(CONTROL_SEEDS) --optimizers sgd --methods gal_alpha0 $(LAUNCH_ARGS)
	$(VENV)/bin/gal table $(subst table,,$@)

# Table VII (GAL's cost): renders the committed benchmark report (make benchmark) and the per-image
# training times of the classification run records
table7: venv
	$(VENV)/bin/gal table 7

# Fig. 5: validation loss curves, baseline vs GAL, from the records of one profile
fig5: venv
	$(VENV)/bin/gal figure 5 --profile $(PROFILE)

# Fig. 4 (3D example): runs the missing runs, then renders results/figures/fig4.{png,pdf,json}
fig4: venv
	$(PY) -m experiments.toy3d --profile $(PROFILE) $(LAUNCH_ARGS)
	$(VENV)/bin/gal figure 4

fig4-gif: fig4
	$(VENV)/bin/gal figure 4 --gif

# Everything the CPU profile supports (only missing runs are run; tables/figures re-rendered,
# Fig. 6 and Table VII from the records and the committed benchmark report).
# JOBS defaults to 2 here: a fresh `make table5` took 0.597x the JOBS=1 wall time with JOBS=2 on
# this 2-core machine (results/benchmarks/jobs_speedup.json; target <= 0.6, met by a hair).
# `make reproduce JOBS=1` overrides it; results do not depend on JOBS.
reproduce: JOBS = 2
reproduce: table5 fig4 table1 table2 fig5 fig6 table7

# Compare any two sets of run records: make compare A=results/runs/... B=results/runs/...
compare: venv
	$(VENV)/bin/gal compare $(A) $(B)

# GAL step overhead vs baseline (ratio measured side by side in one process)
benchmark: venv
	PYTHONPATH=. $(PY) benchmarks/classification_throughput.py --profile $(PROFILE)
	PYTHONPATH=. $(PY) benchmarks/gal_cost.py --compile
	$(PY) benchmarks/overhead.py --out results/benchmarks/overhead_$(shell $(PY) -c "import torch;print('cuda' if torch.cuda.is_available() else 'cpu')").json

# Accuracy vs CPU-minutes of candidate cpu-profile networks (how the cpu profile was chosen)
sweep: venv
	PYTHONPATH=. $(PY) benchmarks/cpu_profile_sweep.py

# The analyses of Sec. VI (APROFILE=analysis: the CIFAR-10 JPEG copy with CIFAR-100's GAL
# settings; the paper: the Table II dataset; runs shared between them: a configuration used
# by two targets runs once): Table VI (noise instead of h), Table VIII (MLP vs CNN h), Fig. 7
# (alpha, beta, arch; SGD and Lookahead), Fig. 8 (update policies; g beats dl/dz).
table6 table8: venv
	$(PY) -m experiments.classification --table $(subst table,,$@) --profile $(APROFILE) $(SEEDS_ARG) \
		$(LAUNCH_ARGS)
	$(VENV)/bin/gal table $(subst table,,$@)

fig7 fig8: venv
	$(PY) -m experiments.classification --table $@ --profile $(APROFILE) $(SEEDS_ARG) $(LAUNCH_ARGS)
	$(VENV)/bin/gal figure $(subst fig,,$@) --profile $(APROFILE)

# All four in one plan (seed-major order: an interrupted batch leaves complete seeds), then Fig. 6
ablation: venv
	$(PY) -m experiments.classification --table ablation --profile $(APROFILE) $(SEEDS_ARG) \
		$(LAUNCH_ARGS)
	$(VENV)/bin/gal table 6
	$(VENV)/bin/gal table 8
	$(VENV)/bin/gal figure 7 --profile $(APROFILE)
	$(VENV)/bin/gal figure 8 --profile $(APROFILE)
	$(VENV)/bin/gal figure 6 --profile $(APROFILE)

# Fig. 6: remainder and cosine(v~, dl/dz) per epoch of the GAL runs of one profile (Tables I, II and
# the analyses): results/figures/fig6-<profile>.*, fig6.* for the analysis profile (make ablation)
fig6: venv
	$(VENV)/bin/gal figure 6 --profile $(PROFILE)

# Table III (ImageNet; experiments/configs/imagenet.yaml): missing runs, then results/tables/table3.*
# PROFILE=cpu: the ResNet-50 row filled by resnet10t at half width on Tiny-ImageNet-100 (64 px)
# PROFILE=paper: ResNet-50 + EfficientNet-B2 on real ImageNet (IMAGENET=/path) on NPROC GPUs via torchrun
IMAGENET ?=
NPROC ?= 8
TABLE3_RUN = $(if $(filter paper,$(PROFILE)),$(VENV)/bin/torchrun --standalone --nproc_per_node=$(NPROC),$(PY))
table3: venv
	$(TABLE3_RUN) -m experiments.classification --table 3 --profile $(PROFILE) $(SEEDS_ARG) \
		$(if $(IMAGENET),--set datasets.imagenet.data.root=$(IMAGENET)) \
		$(if $(filter paper,$(PROFILE)),,$(LAUNCH_ARGS))
	$(VENV)/bin/gal table 3

# Table IV (DETR + GAL on the predicted boxes): runs only the missing runs, then renders
# results/tables/table4.*. PROFILE=cpu: a small DETR on generated shapes (synthetic); PROFILE=paper:
# DETR-R50/R101 on COCO 2017 (COCO=/path/to/coco, torchrun over NPROC GPUs). DECIDE=1: baseline
# and GAL in batches of DECIDE_BATCH paired seeds until each model row's AP verdict is decided or
# MAX_SEEDS pairs are reached (as for Tables I and II).
COCO ?=
TABLE4_RUN = $(if $(filter paper,$(PROFILE)),$(VENV)/bin/torchrun --nproc_per_node=$(NPROC),$(PY))
table4: venv
	$(TABLE4_RUN) -m detr_gal.run --profile $(PROFILE) \
		$(if $(DECIDE),--until-decided --max-seeds $(MAX_SEEDS) --decide-batch $(DECIDE_BATCH),$(SEEDS_ARG)) \
		$(if $(COCO),--set datasets.coco.data.root=$(COCO)) \
		$(if $(filter paper,$(PROFILE)),,$(LAUNCH_ARGS))
	$(VENV)/bin/gal table 4
