"""Tables I, II and III of the paper (Sec. V-B) and its analyses (Sec. VI): image
classification runs -> run records.

A task here is data (:mod:`experiments.image_data`) + model (:mod:`experiments.models`) + loss +
config (``configs/cifar.yaml``; Table III: ``configs/imagenet.yaml``) on the shared engine
(:mod:`experiments.engine`). Each run is one record under
``<runs-root>/table<N>/<profile>/<dataset>/<optimizer>/<method>/seed-<k>/``:

* ``baseline`` - standard training;
* ``gal`` - GAL on the logits z (d = number of classes), h's arch and (alpha, beta) per dataset
  and optimizer as in Sec. V-B;
* ``gal_alpha0`` - GAL with alpha = 0, a control that must equal ``baseline`` bit for bit.

Table III (ImageNet; ``--table 3``) varies the model instead of the optimizer: its runs sit under
``<runs-root>/table3/<profile>/<dataset>/<model>/<optimizer>/<method>/seed-<k>/`` with ``<model>``
an entry of the config's ``models:`` (:mod:`experiments.classification_spec`); with a model EMA
(``train.ema_decay``) the reported numbers are the EMA weights' (as timm's train.py validates
and reports the EMA model), the raw weights' are recorded beside them (``*_raw``).

The analyses of Sec. VI (Tables VI, VIII, Figs. 7, 8; ``--table 6|8|fig7|fig8|ablation``) run GAL
variants named ``gal+<key>=<value>[+...]`` (:mod:`experiments.gal_variants`: noise adjusters,
CNN adjusters, other alpha / beta / arch / update policy) on the Table II dataset, all under
``<runs-root>/ablation/<profile>/<dataset>/<optimizer>/<method>/seed-<k>/``.

Paired design: for one seed every arm has the same initialisation (global RNG seeded before the
model is built), the same batch order and the same augmentation draws (one data generator seeded
by the seed); h draws from its own generator, so the arms differ only by GAL.

Usage::

    python -m experiments.classification --table 1|2|3|6|8|fig7|fig8|ablation --profile cpu [--seeds 5]
        [--optimizers sgd,adabound] [--methods baseline,gal] [--models resnet50] [--runs-root results/runs]
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
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.classification_plan import METHODS, OPTIMIZERS, TABLES, plan_name, plan_runs
from experiments.classification_setup import build_run, check_world, lr_lambda
from experiments.classification_spec import (
    RunSpec,
    default_gal,
    gal_columns,
    model_config,
    record_config,
    run_settings,
)
from experiments.common import RankWriter, ResumeMismatch, TrainState, config_hash, run_epochs
from experiments.engine import evaluate, make_criterion, train_one_epoch, unwrap
from experiments.image_data import DataError, ImageSet, check_pair, load_split
from experiments.launch import LaunchError
from experiments.models import count_parameters
from experiments.runner import Selector, Task
from experiments.until_decided import add_until_decided_arguments, run_until_decided
from gal_suite.config import ConfigError, load_config
from gal_suite.records import RunWriter

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from experiments.runner import RunOptions, RunRequest

REPO = Path(__file__).resolve().parents[1]
CONFIG_PATH = REPO / "experiments" / "configs" / "cifar.yaml"
#: Table III's config (picked by ``--table 3`` unless ``--config`` is given)
IMAGENET_CONFIG_PATH = REPO / "experiments" / "configs" / "imagenet.yaml"
DEFAULT_RUNS_ROOT = Path("results/runs")

__all__ = ["TASK", "RunSpec", "build_run", "config_for", "default_gal", "gal_columns", "lr_lambda", "main",
           "model_config", "plan_runs", "record_config", "run_one", "run_settings", "run_table"]


def config_for(table: int | str) -> Path:
    """The default config of ``--table``: imagenet.yaml for Table III, cifar.yaml otherwise."""
    return IMAGENET_CONFIG_PATH if str(table) == "3" else CONFIG_PATH


_DATA_CACHE: dict[str, tuple[ImageSet, ImageSet]] = {}


def load_data(cfg: Mapping[str, Any], dataset: str) -> tuple[ImageSet, ImageSet]:
    """Train and test splits of a dataset key (decoded once per process), checked."""
    if dataset not in cfg["datasets"]:
        raise ConfigError(f"unknown dataset {dataset!r}; choose from {', '.join(cfg['datasets'])}")
    if dataset not in _DATA_CACHE:
        os.environ.setdefault("GAL_SHARED_DATA", str((REPO / ".." / "shared" / "data").resolve()))
        ds = cfg["datasets"][dataset]
        data = dict(ds["data"])
        if not (data.get("root") or data.get("archive")):
            raise DataError(f"no data for dataset {dataset!r}: set datasets.{dataset}.data.root to "
                            f"its folder, e.g. --set datasets.{dataset}.data.root=/path/to/{dataset}")
        for k in ("root", "archive"):
            if data.get(k):
                p = Path(os.path.expandvars(str(data[k]))).expanduser()
                data[k] = str(p if p.is_absolute() else REPO / p)
        train, test = load_split(data, "train"), load_split(data, "test")
        check_pair(train, test, int(ds["num_classes"]), f"datasets.{dataset}.num_classes")
        _DATA_CACHE[dataset] = (train, test)
    return _DATA_CACHE[dataset]


def run_one(spec: RunSpec, cfg: Mapping[str, Any], runs_root: str | os.PathLike[str],
            overrides: Mapping[str, Any] | None = None, retry_failed: bool = False,
            progress: bool = False) -> str:
    """Run (or resume, or skip) one run; returns ``"skipped"``, ``"complete"`` or ``"failed"``."""
    settings = run_settings(cfg, spec)
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
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
    state = TrainState({"model": unwrap(run.model), "opt": run.optimizer, "sched": run.scheduler,
                        "adjuster": run.adjuster, "scaler": run.scaler, "ema": run.ema},
                       {"data": run.train_loader.generator}, {"train_seconds": 0.0})

    def train_epoch(epoch: int) -> dict[str, float]:
        out = train_one_epoch(run.model, crit, run.train_loader, run.optimizer, run.device, epoch,
                              adjuster=run.adjuster, scheduler=run.scheduler, scaler=run.scaler,
                              amp=amp, max_norm=float(tr["max_norm"]), ema=run.ema,
                              progress=bar.update if bar is not None else None)
        state.counters["train_seconds"] += out["s_per_image"] * len(run.train_loader) * tr["batch_size"]
        return out

    def evaluate_all(loader: Any, tta: bool) -> dict[str, float]:
        """The reported weights' numbers (the EMA's when there is one) plus ``*_raw`` = the
        trained weights' when an EMA exists. Under DDP the BN statistics are first averaged
        (``train.dist_bn: reduce``) or taken from rank 0 (``broadcast``), as timm's train.py."""
        if world > 1 and tr.get("dist_bn"):
            from timm.utils import distribute_bn

            for m in (run.model, None if run.ema is None else run.ema.module):
                if m is not None:
                    distribute_bn(m, world, reduce=tr["dist_bn"] == "reduce")
        if run.ema is None:
            return evaluate(run.model, crit, loader, run.device, amp=amp, tta_flip=tta)
        out = evaluate(run.ema.module, crit, loader, run.device, amp=amp, tta_flip=tta)
        raw = evaluate(run.model, crit, loader, run.device, amp=amp, tta_flip=tta)
        return {**out, **{f"{k}_raw": v for k, v in raw.items()}}

    # under DDP rank 0 writes the record and every rank resumes from its checkpoint
    outcome = run_epochs(
        RankWriter(writer, rank) if world > 1 else writer,  # type: ignore[arg-type]
        epochs=epochs, settings_hash=config_hash(settings), train_epoch=train_epoch,
        evaluate=lambda epoch: evaluate_all(run.val_loader, False),
        get_state=state.get, set_state=state.set,
        checkpoint_every=int(tr["checkpoint_every"]),
        fail_hint="lower the learning rate (optimizers.<name>.lr) or GAL's beta",
    )
    if bar is not None:
        bar.close()
    if outcome == "failed":
        return "failed"
    final = evaluate_all(run.test_loader, bool(tr["tta_flip"]))
    n_train = epochs * len(run.train_loader) * tr["batch_size"]
    seconds = state.counters["train_seconds"]
    metrics = {"error_top1": final["val_error_top1"], "error_top5": final["val_error_top5"],
               "val_loss": final["val_loss"], "train_time_s": seconds,
               "s_per_image": seconds / n_train, "images_per_s": n_train / seconds}
    if run.ema is not None:  # the trained (non-averaged) weights beside the EMA's
        metrics.update({"error_top1_raw": final["val_error_top1_raw"],
                        "error_top5_raw": final["val_error_top5_raw"],
                        "val_loss_raw": final["val_loss_raw"]})
    if spec.model is not None:  # Table III reports accuracy (%) = 100 - error
        metrics.update({"acc_top1": 100.0 - metrics["error_top1"],
                        "acc_top5": 100.0 - metrics["error_top5"]})
    if rank != 0:
        return "complete"
    return writer.finish(metrics, keep_checkpoint=bool(tr.get("keep_checkpoint", False)))


def _check_data(cfg: Mapping[str, Any], todo: Sequence[RunSpec]) -> None:
    load_data(cfg, todo[0].dataset)


def _until_decided(args: argparse.Namespace, req: RunRequest) -> int | None:
    """``--until-decided`` (Tables I and II): paired seeds in batches until each optimizer row's
    verdict is decided (:func:`experiments.until_decided.run_until_decided`); None otherwise."""
    if not args.until_decided:
        return None
    table = req.selection["table"]
    try:
        cfg = load_config(config_for(table) if req.config_path is None else req.config_path,
                          req.profile, req.overrides)
        plan = plan_runs(cfg, table, req.profile, 1, req.selection["optimizers"],
                         ["baseline", "gal"], req.selection["dataset"]) if table in ("1", "2") else []
        reasons = run_until_decided(table, run_table, plan, req.profile, args.max_seeds,
                                    args.decide_batch, req.selection["dataset"], req.runs_root,
                                    req.overrides, req.config_path, progress=req.progress,
                                    retry_failed=req.retry_failed, rerun_stale=req.rerun_stale,
                                    jobs=req.jobs, launcher=req.launcher, threads=req.threads,
                                    slurm=req.slurm)
    except (ConfigError, DataError, ResumeMismatch, FileNotFoundError, LaunchError,
            RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for opt, why in reasons.items():
        print(f"{plan_name(table)} {opt}: {why}")
    return 0


def _until_decided_arguments(ap: argparse.ArgumentParser) -> None:
    add_until_decided_arguments(ap, "Tables 1 and 2 (each optimizer row)")


#: Tables I-III and the analyses of Sec. VI as a task of the shared runner
#: (:mod:`experiments.runner`); ``--table`` picks the plan, its name and its default config
TASK = Task(
    name=lambda sel: plan_name(sel["table"]), prog="python -m experiments.classification",
    description="Tables I-III (Sec. V-B) and the analyses of Sec. VI: classification runs -> "
                "run records",
    config_path=lambda sel: config_for(sel["table"]), runs_root=DEFAULT_RUNS_ROOT,
    plan=lambda cfg, profile, seeds, table, **sel: plan_runs(cfg, table, profile, seeds, **sel),
    run_settings=run_settings, run_one="experiments.classification:run_one",
    selectors=(
        Selector("table", "1, 2, 3 (Tables I, II, III); 6, 8, fig7, fig8 (the analyses of Sec. VI) "
                          "or ablation (all four, one shared set of runs)",
                 many=False, choices=TABLES, required=True),
        Selector("optimizers", f"from the config's optimizers ({','.join(OPTIMIZERS)}; Table III: "
                               "rmsproptf)"),
        Selector("methods", f"{', '.join(METHODS)} or gal+<key>=<value>[+...] "
                            "(experiments.gal_variants)"),
        Selector("models", "Table III: the config's models entries (default: the profile's "
                           "run.table3.models)"),
        Selector("dataset", "dataset key (default: the profile's run.table<N>.dataset)", many=False),
    ),
    job_options=("overrides", "retry_failed", "progress"), check_data=_check_data,
    check_settings=check_world, torchrun=True, errors=(DataError,),
    profiles="cpu (default), paper or smoke", extra_arguments=_until_decided_arguments,
    alt_main=_until_decided,
)


def run_table(table: int | str, profile: str = "cpu", seeds: int | Sequence[int] | None = None,
              optimizers: Sequence[str] | None = None, methods: Sequence[str] | None = None,
              dataset: str | None = None, *, models: Sequence[str] | None = None,
              **options: Unpack[RunOptions]) -> dict[str, int]:
    """Run the missing runs of Table ``table``; returns counts ``{"complete", "failed", "skipped"}``.

    :func:`experiments.runner.run_task` with :data:`TASK`. ``config_path`` None:
    :func:`config_for` (imagenet.yaml for Table III, else cifar.yaml). Under torchrun
    (``WORLD_SIZE > 1``) the runs go one after another in every rank, without claims; a world
    size that does not divide a run's global batch is one ConfigError, before any process
    group is made. A finished run made with other settings is refused
    (:class:`experiments.common.StaleRuns`, naming the differing keys) unless ``rerun_stale``,
    which sets it aside and runs it again.
    """
    return TASK.run(profile, seeds, {"table": table, "optimizers": optimizers, "methods": methods,
                                     "models": models, "dataset": dataset}, **options)


#: command line entry point (``python -m experiments.classification``)
main = TASK.main


if __name__ == "__main__":
    sys.exit(main())
