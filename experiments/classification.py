"""Tables I and II of the paper (Sec. V-B) and its analyses (Sec. VI): image classification runs
-> run records.

A task here is data (:mod:`experiments.image_data`) + model (:mod:`experiments.models`) + loss +
config (``configs/cifar.yaml``) on the shared engine (:mod:`experiments.engine`). Each run is one
record under ``<runs-root>/table<N>/<profile>/<dataset>/<optimizer>/<method>/seed-<k>/``:

* ``baseline`` - standard training;
* ``gal`` - GAL on the logits z (d = number of classes), h's arch and (alpha, beta) per dataset
  and optimizer as in Sec. V-B;
* ``gal_alpha0`` - GAL with alpha = 0, a control that must equal ``baseline`` bit for bit.

The analyses of Sec. VI (Tables VI, VIII, Figs. 7, 8; ``--table 6|8|fig7|fig8|ablation``) run GAL
variants named ``gal+<key>=<value>[+...]`` (:mod:`experiments.gal_variants`: noise adjusters,
CNN adjusters, other alpha / beta / arch / update policy) on the Table II dataset, all under
``<runs-root>/ablation/<profile>/<dataset>/<optimizer>/<method>/seed-<k>/``.

Paired design: for one seed every arm has the same initialisation (global RNG seeded before the
model is built), the same batch order and the same augmentation draws (one data generator seeded
by the seed); h draws from its own generator, so the arms differ only by GAL.

Usage::

    python -m experiments.classification --table 1|2|6|8|fig7|fig8|ablation --profile cpu [--seeds 5]
        [--optimizers sgd,adabound] [--methods baseline,gal] [--runs-root results/runs]
        [--set train.epochs=2 ...] [--retry-failed]
        [--jobs N] [--launcher local|slurm|submitit-local] [--threads N] [--slurm-partition P ...]

Only missing runs are executed; an interrupted run resumes from its checkpoint. ``--jobs N`` runs
N at once (worker processes with one GPU each where GPUs exist, or a Slurm job array with
``--launcher slurm``; :mod:`experiments.launch`); each run is claimed, so concurrent invocations
never run the same run. Under ``torchrun --nproc_per_node=N`` every process runs the same plan
with DDP (rank 0 writes the records), one run after another, without claims: start one torchrun
per runs root.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from experiments.classification_setup import build_run, lr_lambda
from experiments.common import (
    ResumeMismatch,
    add_run_arguments,
    check_choice,
    choose_device,
    config_hash,
    csv_list,
    run_epochs,
    run_specs,
    set_threads,
)
from experiments.engine import evaluate, make_criterion, train_one_epoch
from experiments.gal_variants import apply_method, canonical_method
from experiments.image_data import DataError, ImageSet, check_pair, load_split
from experiments.launch import (
    LaunchError,
    check_launch,
    launch_kwargs,
)
from experiments.models import count_parameters
from gal.config import ConfigError, load_config, parse_overrides
from gal.records import RunWriter

REPO = Path(__file__).resolve().parents[1]
CONFIG_PATH = REPO / "experiments" / "configs" / "cifar.yaml"
DEFAULT_RUNS_ROOT = Path("results/runs")
OPTIMIZERS = ("sgd", "lookahead_sgd", "adabound")
METHODS = ("baseline", "gal", "gal_alpha0")
#: the analyses of Sec. VI run as parts of one plan (``run.ablation`` in the config); their runs
#: share one directory, so a configuration used by two of them runs once
ABLATION_PARTS = ("table6", "table8", "fig7", "fig8")
TABLES = ("1", "2", "6", "8", "fig7", "fig8", "ablation")

__all__ = ["RunSpec", "build_run", "lr_lambda", "main", "plan_runs", "run_one", "run_settings",
           "run_table"]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run: of Table I or II (``table`` 1 or 2) or of the analyses (``table="ablation"``,
    Tables VI, VIII and Figs. 7, 8, all in ``<root>/ablation/``)."""

    table: int | str
    profile: str
    dataset: str
    optimizer: str
    method: str
    seed: int

    @property
    def subdir(self) -> str:
        return f"table{self.table}" if isinstance(self.table, int) else str(self.table)

    def run_dir(self, root: str | os.PathLike[str]) -> Path:
        return (Path(root) / self.subdir / self.profile / self.dataset / self.optimizer
                / self.method / f"seed-{self.seed}")

    @property
    def label(self) -> str:
        return f"{self.subdir}/{self.profile}/{self.dataset}/{self.optimizer}/{self.method}/seed-{self.seed}"


def _auto(flag: Any, device: torch.device) -> bool:
    return device.type == "cuda" if flag == "auto" else bool(flag)


def run_settings(cfg: Mapping[str, Any], spec: RunSpec) -> dict[str, Any]:
    """The effective settings of one run (what its result depends on; hashed for resume)."""
    ds = cfg["datasets"][spec.dataset]
    device = choose_device(cfg["device"])
    s: dict[str, Any] = {
        "dataset": spec.dataset, "data": dict(ds["data"]), "num_classes": int(ds["num_classes"]),
        "model": dict(cfg["model"]), "train": dict(cfg["train"]),
        "optimizer": spec.optimizer, "opt": dict(cfg["optimizers"][spec.optimizer]),
        "device": str(device), "amp": _auto(cfg["train"]["amp"], device),
        "channels_last": _auto(cfg["train"]["channels_last"], device),
    }
    g = apply_method(default_gal(cfg, spec.dataset, spec.optimizer), spec.method)
    if g is not None:
        s["gal"] = g
    return s


def default_gal(cfg: Mapping[str, Any], dataset: str, optimizer: str) -> dict[str, Any]:
    """The paper's GAL settings for (dataset, optimizer) (Sec. V-B): ``cfg.gal`` with the
    dataset's ``gal.<optimizer>`` (alpha, beta) and ``gal_arch``."""
    ds = cfg["datasets"][dataset]
    return {**dict(cfg["gal"]), **dict(ds["gal"][optimizer]), "arch": list(ds["gal_arch"])}


def record_config(cfg: Mapping[str, Any], spec: RunSpec, settings: Mapping[str, Any],
                  overrides: Mapping[str, Any] | None, n_params: int, h_params: int) -> dict[str, Any]:
    """config.yaml of a run: identifiers the tables select on, settings and the full config."""
    ds = cfg["datasets"][spec.dataset]
    return {
        "task": "classification", "table": spec.table, "dataset": spec.dataset,
        "dataset_label": ds["label"], "optimizer": spec.optimizer, "method": spec.method,
        "seed": spec.seed, "profile": spec.profile, "model": cfg["model"]["name"],
        "pretrained": bool(cfg["model"]["pretrained"] or cfg["model"]["pretrained_file"]),
        "epochs": int(cfg["train"]["epochs"]), "n_params": n_params, "h_params": h_params,
        "train_subset": int(cfg["train"]["train_subset"] or 0),
        **gal_columns(settings.get("gal")),
        "config_hash": config_hash(settings), "settings": dict(settings),
        "overrides": dict(overrides or {}), "config": dict(cfg),
    }


def gal_columns(g: Mapping[str, Any] | None) -> dict[str, Any]:
    """The GAL settings the analyses select and plot on (Tables VI, VIII, Figs. 7, 8) as flat
    record keys ``gal_alpha``, ``gal_beta``, ``gal_arch`` (``"256-64-32"``), ``gal_adjuster``,
    ``gal_noise_scaling``, ``gal_policy``; all ``None`` for the baseline."""
    if g is None:
        return {f"gal_{k}": None for k in ("alpha", "beta", "arch", "adjuster", "noise_scaling", "policy")}
    return {"gal_alpha": float(g["alpha"]), "gal_beta": float(g["beta"]),
            "gal_arch": "-".join(str(int(w)) for w in g["arch"]),
            "gal_adjuster": g.get("adjuster", "mlp"), "gal_noise_scaling": g.get("noise_scaling", "eq4"),
            "gal_policy": g["policy"]}


_DATA_CACHE: dict[str, tuple[ImageSet, ImageSet]] = {}


def load_data(cfg: Mapping[str, Any], dataset: str) -> tuple[ImageSet, ImageSet]:
    """Train and test splits of a dataset key (decoded once per process), checked."""
    if dataset not in cfg["datasets"]:
        raise ConfigError(f"unknown dataset {dataset!r}; choose from {', '.join(cfg['datasets'])}")
    if dataset not in _DATA_CACHE:
        os.environ.setdefault("GAL_SHARED_DATA", str((REPO / ".." / "shared" / "data").resolve()))
        ds = cfg["datasets"][dataset]
        data = dict(ds["data"])
        for k in ("root", "archive"):
            if data.get(k):
                p = Path(os.path.expandvars(str(data[k]))).expanduser()
                data[k] = str(p if p.is_absolute() else REPO / p)
        train, test = load_split(data, "train"), load_split(data, "test")
        check_pair(train, test, int(ds["num_classes"]))
        _DATA_CACHE[dataset] = (train, test)
    return _DATA_CACHE[dataset]


def run_one(spec: RunSpec, cfg: Mapping[str, Any], runs_root: str | os.PathLike[str],
            overrides: Mapping[str, Any] | None = None, retry_failed: bool = False,
            progress: bool = False) -> str:
    """Run (or resume, or skip) one run; returns ``"skipped"``, ``"complete"`` or ``"failed"``."""
    settings = run_settings(cfg, spec)
    rank = int(os.environ.get("RANK", 0))
    writer = RunWriter(spec.run_dir(runs_root), device=settings["device"])
    status = writer.status()
    if status == "complete" or (status == "failed" and not retry_failed):
        return "skipped"
    train, test = load_data(cfg, spec.dataset)
    run = build_run(settings, train, test, spec.seed)
    crit = make_criterion(float(settings["train"]["label_smoothing"]))
    n_params = count_parameters(run.model)
    h_params = 0 if run.adjuster is None else count_parameters(run.adjuster)
    if rank == 0:
        writer.start(record_config(cfg, spec, settings, overrides, n_params, h_params),
                     profile=spec.profile, seed=spec.seed)
    tr = settings["train"]
    epochs = int(tr["epochs"])
    amp = bool(settings["amp"])
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * len(run.train_loader) * tr["batch_size"], unit="img",
                   unit_scale=True, desc=spec.label, leave=False, dynamic_ncols=True)
    train_seconds = [0.0]

    def train_epoch(epoch: int) -> dict[str, float]:
        out = train_one_epoch(run.model, crit, run.train_loader, run.optimizer, run.device, epoch,
                              adjuster=run.adjuster, scheduler=run.scheduler, scaler=run.scaler,
                              amp=amp, max_norm=float(tr["max_norm"]),
                              progress=bar.update if bar is not None else None)
        train_seconds[0] += out["s_per_image"] * len(run.train_loader) * tr["batch_size"]
        return out

    def evaluate_epoch(epoch: int) -> dict[str, float]:
        return evaluate(run.model, crit, run.val_loader, run.device, amp=amp, tta_flip=False)

    def get_state() -> dict[str, Any]:
        st = {"model": run.model.state_dict(), "opt": run.optimizer.state_dict(),
              "sched": run.scheduler.state_dict(), "data": run.train_loader.generator.get_state(),
              "train_seconds": train_seconds[0]}
        if run.adjuster is not None:
            st["adjuster"] = run.adjuster.state_dict()
        if run.scaler is not None:
            st["scaler"] = run.scaler.state_dict()
        return st

    def set_state(st: dict[str, Any]) -> None:
        run.model.load_state_dict(st["model"])
        run.optimizer.load_state_dict(st["opt"])
        run.scheduler.load_state_dict(st["sched"])
        run.train_loader.generator.set_state(st["data"])
        train_seconds[0] = float(st["train_seconds"])
        if run.adjuster is not None:
            run.adjuster.load_state_dict(st["adjuster"])
        if run.scaler is not None:
            run.scaler.load_state_dict(st["scaler"])

    if rank != 0:  # other ranks train alongside rank 0 but write nothing
        writer = _NullWriter()  # type: ignore[assignment]
    outcome = run_epochs(
        writer, epochs=epochs, settings_hash=config_hash(settings), train_epoch=train_epoch,
        evaluate=evaluate_epoch, get_state=get_state, set_state=set_state,
        checkpoint_every=int(tr["checkpoint_every"]),
        fail_hint="lower the learning rate (optimizers.<name>.lr) or GAL's beta",
    )
    if bar is not None:
        bar.close()
    if outcome == "failed":
        return "failed"
    final = evaluate(run.model, crit, run.test_loader, run.device, amp=amp,
                     tta_flip=bool(tr["tta_flip"]))
    n_train = epochs * len(run.train_loader) * tr["batch_size"]
    metrics = {"error_top1": final["val_error_top1"], "error_top5": final["val_error_top5"],
               "val_loss": final["val_loss"], "train_time_s": train_seconds[0],
               "s_per_image": train_seconds[0] / n_train, "images_per_s": n_train / train_seconds[0]}
    return writer.finish(metrics) if rank == 0 else "complete"


class _NullWriter:
    """What ranks > 0 write: nothing (rank 0 holds the record)."""

    def load_checkpoint(self) -> None:
        return None

    def log(self, row: Mapping[str, Any]) -> None:
        pass

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        pass

    def fail(self, reason: str) -> str:
        return "failed"

    partial_dir = "(rank > 0)"


def _table_key(table: int | str) -> tuple[int | str, list[str]]:
    """(RunSpec.table, plan parts) of a ``--table`` value: 1 / 2 -> Tables I / II; 6, 8,
    ``fig7``, ``fig8`` -> that part of the analyses' plan; ``ablation`` -> all of its parts."""
    t = str(table)
    if t in ("1", "2"):
        return int(t), []
    part = f"table{t}" if t in ("6", "8") else t
    if part == "ablation":
        return "ablation", list(ABLATION_PARTS)
    if part not in ABLATION_PARTS:
        raise ConfigError(f"--table {table!r}: choose from {', '.join(TABLES)}")
    return "ablation", [part]


def _plan_name(table: int | str) -> str:
    return f"table{table}" if str(table) in ("1", "2", "6", "8") else str(table)


def plan_runs(cfg: Mapping[str, Any], table: int | str, profile: str,
              seeds: int | Sequence[int] | None = None, optimizers: Sequence[str] | None = None,
              methods: Sequence[str] | None = None, dataset: str | None = None) -> list[RunSpec]:
    """All runs of a table in a stable order (optimizer, seed, method): the arms of one seed
    run back to back, so a partial batch still yields complete pairs.

    ``table`` 1 or 2: ``run.table<N>`` of the config. 6, 8, ``fig7``, ``fig8`` or ``ablation``:
    the parts of ``run.ablation`` (Sec. VI), whose method names are made canonical per optimizer
    (:func:`experiments.gal_variants.canonical_method`) and deduplicated across parts.
    """
    key, parts = _table_key(table)
    plan = cfg["run"]["ablation" if parts else f"table{key}"]
    ds = dataset or plan["dataset"]
    if ds not in cfg["datasets"]:
        raise ConfigError(f"unknown dataset {ds!r}; choose from {', '.join(cfg['datasets'])}")
    seeds = int(cfg["seeds"]) if seeds is None else seeds
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not parts:
        opts = check_choice("optimizers", optimizers or plan["optimizers"], OPTIMIZERS)
        meths = check_choice("methods", methods or plan["methods"], METHODS)
        return [RunSpec(key, profile, ds, o, m, s) for o in opts for s in seed_list for m in meths]
    by_opt: dict[str, list[str]] = {}
    for part in parts:
        for o in plan[part]["optimizers"]:
            by_opt.setdefault(o, []).extend(plan[part]["methods"])
    if optimizers:
        by_opt = {o: by_opt.get(o, list(methods or ["baseline", "gal"]))
                  for o in check_choice("optimizers", optimizers, OPTIMIZERS)}
    out = []
    for o in check_choice("optimizers", list(by_opt), OPTIMIZERS):
        defaults = default_gal(cfg, ds, o)
        names = list(dict.fromkeys(canonical_method(m, defaults) for m in (methods or by_opt[o])))
        out += [RunSpec(key, profile, ds, o, m, s) for s in seed_list for m in names]
    return out


def run_table(table: int | str, profile: str = "cpu", seeds: int | Sequence[int] | None = None,
              optimizers: Sequence[str] | None = None, methods: Sequence[str] | None = None,
              dataset: str | None = None, runs_root: str | os.PathLike[str] = DEFAULT_RUNS_ROOT,
              overrides: Mapping[str, Any] | None = None,
              config_path: str | os.PathLike[str] = CONFIG_PATH, progress: bool = True,
              retry_failed: bool = False, jobs: int = 1, launcher: str = "local",
              threads: int | None = None,
              slurm: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Run the missing runs of Table ``table``; returns counts ``{"complete", "failed", "skipped"}``.

    The missing runs go to :func:`experiments.launch.run_jobs` (``jobs`` at once with
    ``launcher``; ``threads`` torch threads per run, default the config's ``num_threads`` or
    cores / jobs; the profile's ``slurm:`` settings overridden by ``slurm``). Under torchrun
    (``WORLD_SIZE > 1``) the runs go one after another in every rank, without claims.
    """
    check_launch(jobs, launcher, threads)
    cfg = load_config(config_path, profile, overrides)
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and (jobs > 1 or launcher != "local"):
        raise LaunchError("under torchrun (WORLD_SIZE > 1) runs go one after another: use "
                          "--jobs 1 --launcher local, or --jobs N without torchrun")
    if world > 1:
        set_threads(threads or cfg["num_threads"])
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            cfg["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.distributed.init_process_group(backend)
    plan = plan_runs(cfg, table, profile, seeds, optimizers, methods, dataset)
    counts = {"complete": 0, "failed": 0, "skipped": 0}
    todo = []
    for spec in plan:
        st = RunWriter(spec.run_dir(runs_root)).status()
        if st == "complete" or (st == "failed" and not retry_failed):
            counts["skipped"] += 1
        else:
            todo.append(spec)
    if todo:
        load_data(cfg, todo[0].dataset)  # fail fast, before any run starts
    if world > 1:  # DDP: every rank runs the same plan in step
        from tqdm.auto import tqdm

        rank0 = int(os.environ.get("RANK", 0)) == 0
        bar = tqdm(todo, desc=f"{_plan_name(table)} runs", unit="run",
                   disable=not (progress and rank0 and todo), dynamic_ncols=True)
        for spec in bar:
            outcome = run_one(spec, cfg, runs_root, overrides, retry_failed, progress=progress)
            counts[outcome] = counts.get(outcome, 0) + 1
        bar.close()
        return counts
    inline = jobs == 1 and launcher == "local"  # per-run image bar only when runs go one by one
    return run_specs("experiments.classification:run_one", todo, cfg, runs_root,
                     {"overrides": dict(overrides or {}), "retry_failed": retry_failed,
                      "progress": progress and inline}, counts, retry_failed=retry_failed,
                     jobs=jobs, launcher=launcher, threads=threads, slurm=slurm,
                     progress=progress, desc=f"{_plan_name(table)} runs")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (``python -m experiments.classification``)."""
    ap = argparse.ArgumentParser(prog="python -m experiments.classification",
                                 description="Tables I-II (Sec. V-B) and the analyses of Sec. VI: classification runs -> run records")
    ap.add_argument("--table", required=True, choices=TABLES,
                    help="1, 2 (Tables I, II); 6, 8, fig7, fig8 (the analyses of Sec. VI) or "
                         "ablation (all four, one shared set of runs)")
    ap.add_argument("--optimizers", help=f"comma list from {','.join(OPTIMIZERS)}")
    ap.add_argument("--methods", help=f"comma list: {', '.join(METHODS)} or gal+<key>=<value>[+...] "
                                      "(experiments.gal_variants)")
    ap.add_argument("--dataset", help="dataset key (default: the profile's run.table<N>.dataset)")
    add_run_arguments(ap, profiles="cpu (default), paper or smoke",
                      runs_root=str(DEFAULT_RUNS_ROOT), config=str(CONFIG_PATH),
                      set_example="train.epochs=2")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        counts = run_table(args.table, args.profile, args.seeds, csv_list(args.optimizers),
                           csv_list(args.methods), args.dataset, args.runs_root,
                           parse_overrides(args.overrides), args.config,
                           progress=not args.no_progress, retry_failed=args.retry_failed,
                           **launch_kwargs(args))
    except (ConfigError, DataError, ResumeMismatch, FileNotFoundError, LaunchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dt = time.monotonic() - t0
    print(f"{_plan_name(args.table)} runs: {counts['complete']} complete, {counts['failed']} failed, "
          f"{counts['skipped']} skipped (already done); {dt:.1f}s ({math.ceil(dt / 60)} min) "
          f"-> {args.runs_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
