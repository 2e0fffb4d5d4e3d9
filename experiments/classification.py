"""Tables I and II of the paper (Sec. V-B): image classification, baseline vs GAL, as run records.

A task here is data (:mod:`experiments.image_data`) + model (:mod:`experiments.models`) + loss +
config (``configs/cifar.yaml``) on the shared engine (:mod:`experiments.engine`). Each run is one
record under ``<runs-root>/table<N>/<profile>/<dataset>/<optimizer>/<method>/seed-<k>/``:

* ``baseline`` - standard training;
* ``gal`` - GAL on the logits z (d = number of classes), h's arch and (alpha, beta) per dataset
  and optimizer as in Sec. V-B;
* ``gal_alpha0`` - GAL with alpha = 0, a control that must equal ``baseline`` bit for bit.

Paired design: for one seed every arm has the same initialisation (global RNG seeded before the
model is built), the same batch order and the same augmentation draws (one data generator seeded
by the seed); h draws from its own generator, so the arms differ only by GAL.

Usage::

    python -m experiments.classification --table 1 --profile cpu [--seeds 5]
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

from experiments.common import (
    ResumeMismatch,
    add_run_arguments,
    check_choice,
    choose_device,
    config_hash,
    csv_list,
    run_epochs,
    seed_everything,
    set_threads,
)
from experiments.engine import evaluate, make_criterion, train_one_epoch
from experiments.image_data import DataError, ImageSet, TensorLoader, check_pair, load_split
from experiments.launch import (
    Job,
    LaunchError,
    check_launch,
    launch_kwargs,
    run_jobs,
    slurm_options,
)
from experiments.models import build_model, count_parameters
from gal import GradientAdjuster
from gal.config import ConfigError, load_config, parse_overrides
from gal.optim import build_optimizer
from gal.records import RunWriter

REPO = Path(__file__).resolve().parents[1]
CONFIG_PATH = REPO / "experiments" / "configs" / "cifar.yaml"
DEFAULT_RUNS_ROOT = Path("results/runs")
OPTIMIZERS = ("sgd", "lookahead_sgd", "adabound")
METHODS = ("baseline", "gal", "gal_alpha0")

__all__ = ["RunSpec", "build_run", "main", "plan_runs", "run_one", "run_settings", "run_table"]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of Table I or II."""

    table: int
    profile: str
    dataset: str
    optimizer: str
    method: str
    seed: int

    def run_dir(self, root: str | os.PathLike[str]) -> Path:
        return (Path(root) / f"table{self.table}" / self.profile / self.dataset / self.optimizer
                / self.method / f"seed-{self.seed}")

    @property
    def label(self) -> str:
        return f"table{self.table}/{self.profile}/{self.dataset}/{self.optimizer}/{self.method}/seed-{self.seed}"


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
    if spec.method != "baseline":
        g = dict(cfg["gal"])
        g.update(ds["gal"][spec.optimizer])
        if spec.method == "gal_alpha0":
            g["alpha"] = 0.0
        s["gal"] = {**g, "arch": list(ds["gal_arch"])}
    return s


def _lr_lambda(schedule: Mapping[str, Any], steps_per_epoch: int, epochs: int):
    """Per-step LR factor: ``multistep`` (x gamma at the milestone epochs, the authors' CIFAR
    schedule) or ``onecycle`` (linear warm-up to 1 then linear decay to 0), both with optional
    linear warm-up over ``warmup_epochs``."""
    kind = schedule["kind"]
    total = max(1, steps_per_epoch * epochs)
    warm = int(float(schedule.get("warmup_epochs", 0.0)) * steps_per_epoch)
    milestones = [int(m) * steps_per_epoch for m in schedule.get("milestones", [])]
    gamma = float(schedule.get("gamma", 0.1))
    if kind not in ("multistep", "onecycle"):
        raise ConfigError(f"train.schedule.kind {kind!r}: choose multistep or onecycle")

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if kind == "onecycle":
            return max(0.0, (total - step) / max(1, total - warm))
        return gamma ** sum(step >= m for m in milestones)

    return factor


@dataclasses.dataclass
class Run:
    """Everything one training run holds (built by :func:`build_run`)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    adjuster: GradientAdjuster | None
    train_loader: TensorLoader
    val_loader: TensorLoader
    test_loader: TensorLoader
    scaler: torch.amp.GradScaler | None
    device: torch.device


def _loaders(settings: Mapping[str, Any], train: ImageSet, test: ImageSet, seed: int,
             device: torch.device) -> tuple[TensorLoader, TensorLoader, TensorLoader]:
    tr = settings["train"]
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    gen = torch.Generator().manual_seed(seed)
    common = dict(mean=tr["mean"], std=tr["std"], resize=tr["image_size"], device=device,
                  channels_last=settings["channels_last"])
    train_loader = TensorLoader(train, tr["batch_size"], train=True, generator=gen, pad=tr["pad"],
                                flip=tr["flip"], drop_last=True, rank=rank, world=world, **common)
    n_val = int(tr["val_subset"] or 0)
    val = test
    if n_val and n_val < len(test):  # a fixed random subset (test folders are sorted by class)
        pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:n_val]
        val = ImageSet(test.images[pick], test.labels[pick], test.classes,
                       f"{test.source}[{n_val} fixed random images]")
    ev = dict(rank=rank, world=world) if world > 1 else {}
    return (train_loader, TensorLoader(val, tr["test_batch_size"], train=False, **ev, **common),
            TensorLoader(test, tr["test_batch_size"], train=False, **ev, **common))


def build_run(settings: Mapping[str, Any], train: ImageSet, test: ImageSet, seed: int) -> Run:
    """Model, optimizer, schedule, adjuster and loaders of one run, seeded for the paired design."""
    device = torch.device(settings["device"])
    m = settings["model"]
    seed_everything(seed)  # same init in every arm of this seed
    kw = {} if m["name"].startswith("convnet_") else {
        "drop_rate": m["drop_rate"], "drop_path_rate": m["drop_path_rate"]}
    model = build_model(m["name"], settings["num_classes"], pretrained=bool(m["pretrained"]),
                        pretrained_file=m["pretrained_file"], **kw).to(device)
    if settings["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    adjuster = None
    params: list[torch.Tensor] = list(model.parameters())
    h_groups: list[dict[str, Any]] = []
    g = settings.get("gal")
    if g is not None:
        adjuster = GradientAdjuster(
            dim=settings["num_classes"], arch=tuple(g["arch"]), alpha=g["alpha"], beta=g["beta"],
            policy=g["policy"], granularity=g["granularity"], first_order=g["first_order"],
            activation=g["activation"], seed=seed,
        ).to(device)
        if g["h_optimizer"] != "shared":
            raise ConfigError("gal.h_optimizer: only 'shared' (the authors' CIFAR code) is "
                              "supported for classification")
        h_groups = [{"params": list(adjuster.parameters())}]
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    opt_kw = dict(settings["opt"])
    lr = float(opt_kw.pop("lr"))
    if "betas" in opt_kw:
        opt_kw["betas"] = tuple(opt_kw["betas"])
    groups = [{"params": params}] + h_groups
    if len(groups) == 2:  # shared optimizer: one group holds model and h (same lr, schedule)
        groups = [{"params": params + h_groups[0]["params"]}]
    optimizer = build_optimizer(settings["optimizer"], groups, lr, **opt_kw)
    train_loader, val_loader, test_loader = _loaders(settings, train, test, seed, device)
    tr = settings["train"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(tr["schedule"], len(train_loader), int(tr["epochs"])))
    scaler = torch.amp.GradScaler(device.type) if settings["amp"] else None
    return Run(model, optimizer, scheduler, adjuster, train_loader, val_loader, test_loader,
               scaler, device)


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
        "config_hash": config_hash(settings), "settings": dict(settings),
        "overrides": dict(overrides or {}), "config": dict(cfg),
    }


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


def plan_runs(cfg: Mapping[str, Any], table: int, profile: str,
              seeds: int | Sequence[int] | None = None, optimizers: Sequence[str] | None = None,
              methods: Sequence[str] | None = None, dataset: str | None = None) -> list[RunSpec]:
    """All runs of a table in a stable order (optimizer, seed, method): the arms of one seed
    run back to back, so a partial batch still yields complete pairs."""
    key = f"table{table}"
    if key not in cfg["run"]:
        raise ConfigError(f"no run.{key} in {CONFIG_PATH.name}; tables: {', '.join(cfg['run'])}")
    plan = cfg["run"][key]
    ds = dataset or plan["dataset"]
    if ds not in cfg["datasets"]:
        raise ConfigError(f"unknown dataset {ds!r}; choose from {', '.join(cfg['datasets'])}")
    opts = check_choice("optimizers", optimizers or plan["optimizers"], OPTIMIZERS)
    meths = check_choice("methods", methods or plan["methods"], METHODS)
    seeds = int(cfg["seeds"]) if seeds is None else seeds
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    return [RunSpec(int(table), profile, ds, o, m, s) for o in opts for s in seed_list for m in meths]


def run_table(table: int, profile: str = "cpu", seeds: int | Sequence[int] | None = None,
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
        bar = tqdm(todo, desc=f"table{table} runs", unit="run",
                   disable=not (progress and rank0 and todo), dynamic_ncols=True)
        for spec in bar:
            outcome = run_one(spec, cfg, runs_root, overrides, retry_failed, progress=progress)
            counts[outcome] = counts.get(outcome, 0) + 1
        bar.close()
        return counts
    skip_if = ("complete",) if retry_failed else ("complete", "failed")
    inline = jobs == 1 and launcher == "local"  # per-run image bar only when runs go one by one
    job_list = [
        Job("experiments.classification:run_one", (spec, cfg, str(runs_root)),
            {"overrides": dict(overrides or {}), "retry_failed": retry_failed,
             "progress": progress and inline},
            spec.run_dir(runs_root), spec.label, skip_if)
        for spec in todo
    ]
    done = run_jobs(job_list, jobs, launcher, threads or cfg["num_threads"] or None,
                    slurm_options(cfg, slurm), progress=progress, desc=f"table{table} runs")
    for k, v in done.items():
        counts[k] = counts.get(k, 0) + v
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (``python -m experiments.classification``)."""
    ap = argparse.ArgumentParser(prog="python -m experiments.classification",
                                 description="Tables I-II (Sec. V-B) classification runs -> run records")
    ap.add_argument("--table", type=int, required=True, choices=(1, 2))
    ap.add_argument("--optimizers", help=f"comma list from {','.join(OPTIMIZERS)}")
    ap.add_argument("--methods", help=f"comma list from {','.join(METHODS)}")
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
    print(f"table{args.table} runs: {counts['complete']} complete, {counts['failed']} failed, "
          f"{counts['skipped']} skipped (already done); {dt:.1f}s ({math.ceil(dt / 60)} min) "
          f"-> {args.runs_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
