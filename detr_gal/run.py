"""Table IV runs: DETR baseline vs GAL on boxes -> run records (``python -m detr_gal.run``).

One run = (profile, dataset, model, method, seed), recorded under
``<runs-root>/table4/<profile>/<dataset>/<model>/adamw/<method>/seed-<k>/`` with the same record
format, resume and launchers as every other table (:mod:`gal_suite.records`,
:func:`experiments.common.run_epochs`, :mod:`experiments.launch`). Both arms of one seed share
the initial weights (the global seed before the model is built; h has its own RNG), the batches
and the flips (the loader's own generator). AdamW with DETR's two learning rates, gradient
clipping, the learning rate times 0.1 after ``lr_drop_frac`` of the epochs (DETR: 100 of 150),
COCOeval on the validation split after every epoch; the final metrics are those of the last
epoch (no best-epoch selection).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from detr_gal.coco_data import CocoSet, DetectionLoader, check_splits, load_coco_split
from detr_gal.engine import AP_KEYS, evaluate, train_one_epoch
from detr_gal.model import backbone_of, build_detr, build_loss, count_parameters, param_groups
from detr_gal.pretrain import pretrained_backbone
from experiments.common import (
    RankWriter,
    TrainState,
    choose_device,
    config_hash,
    run_epochs,
    seed_everything,
)
from experiments.engine import unwrap
from experiments.gal_settings import gal_from_settings
from experiments.image_data import DataError, cache_dir
from experiments.runner import PathParts, RunRequest, Selector, Task
from experiments.until_decided import add_until_decided_arguments, decide_rows, metric_decision
from gal_suite import sequential as sq
from gal_suite.config import ConfigError, load_config
from gal_suite.records import RunWriter
from gal_suite.vocab.methods import DETECTION_METHODS, gal_overrides

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from experiments.runner import RunOptions

__all__ = ["TASK", "RunSpec", "METHODS", "load_data", "plan_runs", "run_one", "run_table", "main"]

REPO = Path(__file__).resolve().parents[1]
CONFIG_PATH = REPO / "experiments" / "configs" / "detr.yaml"
DEFAULT_RUNS_ROOT = REPO / "results" / "runs"
#: baseline, GAL with the paper's settings, GAL with alpha = 0 (the baseline's training in exact
#: arithmetic), and two controls that separate "any small bias on the boxes" from "GAL's learned
#: h": the N(0, 1) noise adjuster at GAL's alpha with Eq. 4 scaling (Table VI's control, no h),
#: and GAL with h frozen at its initialisation (h's direction field, never trained)
#: Table IV's optimizer (DETR's AdamW with its two learning rates), a key of gal_suite.vocab.OPTIMIZERS
OPTIMIZER = "adamw"
METHODS = DETECTION_METHODS
#: what each method changes in the profile's ``gal`` settings (gal_suite.vocab.methods)
METHOD_GAL: dict[str, dict[str, Any]] = {m: g for m in METHODS if (g := gal_overrides(m)) is not None}


@dataclasses.dataclass(frozen=True)
class RunSpec(PathParts):
    """One Table IV run."""

    profile: str
    dataset: str
    model: str
    method: str
    seed: int

    @property
    def _parts(self) -> list[str]:
        return ["table4", self.profile, self.dataset, self.model, OPTIMIZER, self.method, f"seed-{self.seed}"]


def run_settings(cfg: Mapping[str, Any], spec: RunSpec) -> dict[str, Any]:
    """The effective settings of one run (what its result depends on; hashed for resume)."""
    models = cfg.get("models") or {}
    if spec.model not in models:
        raise ConfigError(f"unknown model {spec.model!r}; choose from {', '.join(models)} (detr.yaml models:)")
    if spec.dataset not in cfg["datasets"]:
        raise ConfigError(f"unknown dataset {spec.dataset!r}; choose from {', '.join(cfg['datasets'])}")
    entry = {k: v for k, v in models[spec.model].items() if k != "label"}
    ds = cfg["datasets"][spec.dataset]
    s: dict[str, Any] = {
        "dataset": spec.dataset, "data": dict(ds["data"]), "synthetic": ds.get("synthetic"),
        "model": {**dict(cfg["model"]), **entry}, "train": dict(cfg["train"]), "loss": dict(cfg["loss"]),
        "device": str(choose_device(cfg["device"])),
    }
    if spec.method not in METHODS:
        raise ConfigError(f"unknown method {spec.method!r}; choose from {', '.join(METHODS)}")
    if spec.method != "baseline":
        s["gal"] = {**dict(cfg["gal"]), **METHOD_GAL[spec.method]}
    return s


def _data_section(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The ``data`` section, with a synthetic dataset generated (once) into the cache."""
    data = dict(settings["data"])
    syn = settings.get("synthetic")
    if syn:
        from detr_gal.synthetic import make_shapes_dataset

        key = hashlib.sha256(json.dumps(dict(syn), sort_keys=True).encode()).hexdigest()[:12]
        root = make_shapes_dataset(cache_dir() / "detr_shapes" / key, int(syn["n_train"]), int(syn["n_val"]),
                                   size=int(syn["size"]), seed=int(syn["seed"]),
                                   max_objects=int(syn["max_objects"]))
        data.update(root=str(root), archive=None)
    return data


def load_data(settings: Mapping[str, Any]) -> tuple[CocoSet, CocoSet]:
    """The run's train and val splits (:func:`detr_gal.coco_data.load_coco_split`), checked to
    list the same categories (:func:`detr_gal.coco_data.check_splits`)."""
    data = _data_section(settings)
    train, val = load_coco_split(data, "train"), load_coco_split(data, "val")
    check_splits(train, val)
    return train, val


def _record_config(cfg: Mapping[str, Any], spec: RunSpec, settings: Mapping[str, Any],
                   overrides: Mapping[str, Any] | None, n_params: int, h_params: int,
                   train: CocoSet) -> dict[str, Any]:
    entry = cfg["models"][spec.model]
    g = settings.get("gal") or {}
    return {
        "task": "detection", "table": 4, "dataset": spec.dataset,
        "dataset_label": cfg["datasets"][spec.dataset]["label"], "model_key": spec.model,
        "model_label": entry.get("label") or spec.model, "backbone": settings["model"]["backbone"],
        "optimizer": OPTIMIZER, "method": spec.method, "seed": spec.seed, "profile": spec.profile,
        "epochs": int(settings["train"]["epochs"]), "n_params": n_params, "h_params": h_params,
        "n_train_images": len(train), "skipped_annotations": dict(train.skipped),
        "gal_alpha": g.get("alpha"), "gal_beta": g.get("beta"), "gal_arch": g.get("arch"),
        "config_hash": config_hash(settings), "settings": dict(settings),
        "overrides": dict(overrides or {}),
    }


def _with_pretrained_backbone(settings: Mapping[str, Any], train: CocoSet
                              ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The model section, with ``backbone_weights`` pointing at the cached backbone pre-trained
    on the training split's image-level labels when ``model.pretrain`` is set
    (:mod:`detr_gal.pretrain`, the cpu profile's stand-in for DETR's ImageNet weights), and that
    pre-training's record (path, sha256, last-epoch bce and accuracy) or None."""
    model_cfg = dict(settings["model"])
    pretrain = model_cfg.get("pretrain")
    if not pretrain:
        return model_cfg, None
    if model_cfg.get("backbone_weights") or model_cfg.get("backbone_norm") != "batchnorm":
        raise ConfigError("model.pretrain trains the backbone from scratch on the training split: it needs "
                          "backbone_norm: batchnorm and no backbone_weights (set pretrain: null to use weights)")
    n_labels = len(train.cat_ids)
    bare = {**model_cfg, "pretrain": None}
    key = {k: model_cfg.get(k) for k in ("backbone", "backbone_kwargs", "backbone_norm")}
    key.update(data=settings["data"], synthetic=settings.get("synthetic"), n_labels=n_labels)
    pre = pretrained_backbone(lambda: backbone_of(build_detr(bare, n_labels, settings["loss"])),
                              pretrain, train, key)
    model_cfg["backbone_weights"] = pre["path"]
    return model_cfg, pre


def run_one(spec: RunSpec, cfg: Mapping[str, Any], runs_root: str | os.PathLike[str],
            overrides: Mapping[str, Any] | None = None, retry_failed: bool = False,
            progress: bool = False) -> str:
    """Run (or resume, or skip) one run; returns ``"skipped"``, ``"complete"`` or ``"failed"``."""
    settings = run_settings(cfg, spec)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    writer = RunWriter(spec.run_dir(runs_root), device=settings["device"])
    status = writer.status()
    if status == "complete" or (status == "failed" and not retry_failed):
        return "skipped"
    train, val = load_data(settings)
    device = torch.device(settings["device"])
    tr = settings["train"]
    model_cfg, pre = _with_pretrained_backbone(settings, train)
    seed_everything(spec.seed)  # same initial weights in both arms of this seed
    model = build_detr(model_cfg, len(train.cat_ids), settings["loss"]).to(device)
    loss = build_loss(model)
    adjuster = None
    if "gal" in settings:
        g = settings["gal"]
        adjuster = gal_from_settings(g, dim=4, seed=spec.seed).to(device)
        if g.get("freeze_h"):  # h keeps its initial weights: left out of the optimizer
            adjuster.h.requires_grad_(False)
    optimizer = torch.optim.AdamW(param_groups(model, float(tr["lr"]), float(tr["lr_backbone"]),
                                               float(tr["weight_decay"]), None if adjuster is None else adjuster.h))
    n_params = count_parameters(model)
    if world > 1:  # the global batch is split over the processes; h is not wrapped (GAL reduces it)
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    epochs = int(tr["epochs"])
    drop = max(1, round(float(tr["lr_drop_frac"]) * epochs))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=drop, gamma=0.1)
    train_loader = DetectionLoader(train, int(tr["batch_size"]), shuffle=True, seed=spec.seed,
                                   hflip=bool(tr["hflip"]), drop_last=True, device=device,
                                   rank=rank, world=world)
    val_loader = DetectionLoader(val, int(tr["test_batch_size"]), device=device, rank=rank, world=world)
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(val.ann_file)
    if rank == 0:
        rec = _record_config(cfg, spec, settings, overrides, n_params,
                             count_parameters(None if adjuster is None else adjuster.h), train)
        rec["backbone_pretrain"] = None if pre is None else {k: v for k, v in pre.items() if k != "path"}
        writer.start(rec, profile=spec.profile, seed=spec.seed)
    state = TrainState({"model": unwrap(model), "opt": optimizer, "sched": scheduler,
                        "adjuster": adjuster}, {"data": train_loader.generator}, {"train_seconds": 0.0})

    def train_epoch(epoch: int) -> dict[str, float]:
        out = train_one_epoch(model, loss, train_loader, optimizer, device, epoch, adjuster=adjuster,
                              max_norm=float(tr["max_norm"]))
        scheduler.step()
        state.counters["train_seconds"] += out["s_per_image"] * len(train_loader) * int(tr["batch_size"])
        return out

    def evaluate_val(epoch: int) -> dict[str, float]:
        out = evaluate(model, val_loader, coco_gt, val.image_ids, val.orig_sizes, val.cat_ids, device)
        return {("val_loss" if k == "val_loss" else f"val_{k}"): v for k, v in out.items()}

    last: dict[str, float] = {}

    def evaluate_and_keep(epoch: int) -> dict[str, float]:
        last.clear()
        last.update(evaluate_val(epoch))
        return last

    # under DDP rank 0 writes the record and every rank resumes from its checkpoint
    outcome = run_epochs(RankWriter(writer, rank) if world > 1 else writer,  # type: ignore[arg-type]
                         epochs=epochs, settings_hash=config_hash(settings), train_epoch=train_epoch,
                         evaluate=evaluate_and_keep, get_state=state.get, set_state=state.set,
                         checkpoint_every=int(tr["checkpoint_every"]),
                         fail_hint="lower train.lr or GAL's beta")
    if outcome == "failed":
        return "failed"
    if not last:  # resumed after the last epoch's checkpoint: evaluate the restored weights
        evaluate_and_keep(epochs)
    n_train = epochs * len(train_loader) * int(tr["batch_size"])
    seconds = state.counters["train_seconds"]
    metrics: dict[str, float] = {"val_loss": last["val_loss"], "train_time_s": seconds,
                                 "s_per_image": seconds / n_train}
    # COCOeval has no AP for an area range without ground truth (-1, NaN here): left out, not 0
    metrics.update({k: last[f"val_{k}"] for k in AP_KEYS if math.isfinite(last[f"val_{k}"])})
    return writer.finish(metrics) if rank == 0 else "complete"


def plan_runs(cfg: Mapping[str, Any], profile: str, seeds: int | Sequence[int] | None = None,
              models: Sequence[str] | None = None, methods: Sequence[str] | None = None,
              dataset: str | None = None) -> list[RunSpec]:
    """The runs of Table IV under ``profile``: every (model, method, seed), seeds 0..N-1, in
    seed-major order (an interrupted batch leaves every arm of its first seeds, i.e. pairs)."""
    plan = cfg["run"]["table4"]
    n = cfg["seeds"] if seeds is None else seeds
    seed_list = list(range(int(n))) if isinstance(n, int) else [int(s) for s in n]
    ds = dataset or plan["dataset"]
    return [RunSpec(profile, ds, m, meth, s) for s in seed_list for m in (models or plan["models"])
            for meth in (methods or plan["methods"])]


def _check_world(settings: Mapping[str, Any], world: int) -> None:
    """The global batch must split over the torchrun processes."""
    tr = settings["train"]
    if int(tr["batch_size"]) % world:
        raise ConfigError(f"train.batch_size={tr['batch_size']} (the global batch) is not divisible "
                          f"by the {world} torchrun processes; choose a multiple of {world}")


def _check_data(cfg: Mapping[str, Any], todo: Sequence[RunSpec]) -> None:
    load_data(run_settings(cfg, todo[0]))


def _until_decided(args: argparse.Namespace, req: RunRequest) -> int | None:
    """``--until-decided``: paired seeds of baseline and GAL in batches until each model row's
    AP verdict (relative scale, against the paper's effect for the row's DETR: R50 for the
    stand-ins, R101 for DETR-R101) is decided or at the cap
    (:func:`experiments.until_decided.decide_rows`); None without the flag. Refused under
    torchrun (one process decides; run the batches with --jobs or without --until-decided)."""
    if not args.until_decided:
        return None
    from gal_suite.tables.render import paper_effects
    from gal_suite.tables.table4 import TABLE4

    sel, arms = req.selection, ["baseline", "gal"]
    try:
        if int(os.environ.get("WORLD_SIZE", 1)) > 1:
            raise ConfigError("--until-decided runs in one process (its looks decide what runs "
                              "next): use it without torchrun, or run fixed --seeds under torchrun")
        cfg = load_config(req.config_path or CONFIG_PATH, req.profile, req.overrides)
        plan = plan_runs(cfg, req.profile, 1, sel["models"], arms, sel["dataset"])
        rows = {s.model: s.run_dir(req.runs_root or DEFAULT_RUNS_ROOT).parents[1] for s in plan}
        paper = {m: paper_effects(TABLE4, {"model_key": m}, UNTIL_DECIDED_METRIC)[1] for m in rows}
        if missing := sorted(m for m, v in paper.items() if v is None):
            raise ConfigError(f"--until-decided needs the paper's AP effect for each model row; "
                              f"none for {', '.join(missing)} (gal_suite.tables.table4.PAPER_MODEL)")
        design = sq.SequentialDesign(batch=args.decide_batch, max_pairs=args.max_seeds)
        opts = {k: v for k, v in dataclasses.asdict(req).items()
                if k not in ("profile", "seeds", "selection")}

        def run_rows(n: int, models: list[str]) -> Mapping[str, int]:
            return run_table(req.profile, n, models=models, methods=arms, dataset=sel["dataset"],
                             **opts)

        reasons = decide_rows(
            rows, lambda m, row: metric_decision(row, UNTIL_DECIDED_METRIC, paper[m], design),
            run_rows, design, f"table4 {req.profile}", metric=UNTIL_DECIDED_METRIC)
    except (ConfigError, DataError, FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for model, why in reasons.items():
        print(f"table4 {model}: {why}")
    return 0


#: the metric Table IV's rows are run until decided on (the paper's headline AP)
UNTIL_DECIDED_METRIC = "ap"

#: Table IV as a task of the shared runner (:mod:`experiments.runner`)
TASK = Task(
    name="table4", prog="python -m detr_gal.run",
    description="Table IV (Sec. V-B): DETR baseline vs GAL -> run records",
    config_path=CONFIG_PATH, runs_root=DEFAULT_RUNS_ROOT, plan=plan_runs, run_settings=run_settings,
    run_one="detr_gal.run:run_one",
    selectors=(Selector("models", "the config's models entries"),
               Selector("methods", f"from {', '.join(METHODS)}"),
               Selector("dataset", "dataset key: coco, coco_tiny, shapes (default: the profile's)",
                        many=False)),
    check_data=_check_data, check_settings=_check_world, torchrun=True, errors=(DataError,),
    profiles="cpu (default), cpu_cuda, paper or smoke",
    extra_arguments=lambda ap: add_until_decided_arguments(ap, "Table 4 (each model row, on AP)"),
    alt_main=_until_decided,
)


def run_table(profile: str = "cpu", seeds: int | Sequence[int] | None = None,
              models: Sequence[str] | None = None, methods: Sequence[str] | None = None,
              dataset: str | None = None, **options: Unpack[RunOptions]) -> dict[str, int]:
    """Run the missing runs of Table IV; returns counts ``{"complete", "failed", "skipped"}``
    (:func:`experiments.runner.run_task` with :data:`TASK`). A finished run made with other
    settings is refused (:class:`experiments.common.StaleRuns`, naming the differing keys)
    unless ``rerun_stale``, which sets it aside and runs it again."""
    return TASK.run(profile, seeds, {"models": models, "methods": methods, "dataset": dataset},
                    **options)


#: command line entry point (``python -m detr_gal.run``)
main = TASK.main


if __name__ == "__main__":
    sys.exit(main())
