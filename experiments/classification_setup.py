"""What one image-classification run is built from (paper Sec. V-B): schedule, loaders, model,
optimizer, GAL adjuster and (Table III) model EMA, seeded for the paired design (same
initialisation, batch order and augmentation in every arm of a seed). Used by
:mod:`experiments.classification` (Tables I-III, VI, VIII, Figs. 5-8) and its benchmarks.

Table III options (all off unless the config sets them; configs/imagenet.yaml): the ``step``
LR schedule, h in its own param group (``gal.h_optimizer: group``), timm's no-weight-decay
group for biases and norm parameters (``opt.filter_bias_and_bn``), ``timm.utils.ModelEmaV3``
(``train.ema_decay``), and the per-sample augmentation of :mod:`experiments.augment`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch

from experiments.augment import augment_from_settings
from experiments.common import seed_everything
from experiments.gal_settings import gal_from_settings
from experiments.image_data import ImageSet, TensorLoader
from experiments.models import build_model
from gal import GradientAdjuster
from gal.optim import build_optimizer, place_h
from gal_suite.config import ConfigError

__all__ = ["Run", "build_run", "check_world", "fixed_subset", "lr_lambda"]


def lr_lambda(schedule: Mapping[str, Any], steps_per_epoch: int, epochs: int,
              base_lr: float | None = None) -> Callable[[int], float]:
    """Per-step LR factor of a param group whose base lr is ``base_lr``:

    * ``multistep`` (x gamma at the milestone epochs, the authors' CIFAR schedule) or
      ``onecycle`` (linear warm-up to 1 then linear decay to 0), both with optional linear
      warm-up over ``warmup_epochs``;
    * ``step`` (Table III, timm's ``StepLRScheduler`` as the authors' ImageNet script ran it): at
      epoch t the lr is ``warmup_lr + t (base_lr - warmup_lr) / warmup_epochs`` while
      ``t < warmup_epochs``, then ``base_lr * decay_rate ** (t // decay_epochs)``; t is the
      integer epoch (``per_epoch: true``, timm's per-epoch stepping) or the fractional epoch
      ``step / steps_per_epoch`` (``per_epoch: false``).
    """
    kind = schedule["kind"]
    total = max(1, steps_per_epoch * epochs)
    warm = int(float(schedule.get("warmup_epochs", 0.0)) * steps_per_epoch)
    milestones = [int(m) * steps_per_epoch for m in schedule.get("milestones", [])]
    gamma = float(schedule.get("gamma", 0.1))
    if kind not in ("multistep", "onecycle", "step"):
        raise ConfigError(f"train.schedule.kind {kind!r}: choose multistep, onecycle or step")
    if kind == "step":
        return _step_lambda(schedule, steps_per_epoch, base_lr)

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if kind == "onecycle":
            return max(0.0, (total - step) / max(1, total - warm))
        return gamma ** sum(step >= m for m in milestones)

    return factor


def _step_lambda(schedule: Mapping[str, Any], steps_per_epoch: int,
                 base_lr: float | None) -> Callable[[int], float]:
    decay_rate = float(schedule.get("decay_rate", 0.97))
    decay_epochs = float(schedule.get("decay_epochs", 2.4))
    warmup = float(schedule.get("warmup_epochs", 0.0))
    warmup_lr = float(schedule.get("warmup_lr", 0.0))
    per_epoch = bool(schedule.get("per_epoch", True))
    if decay_epochs <= 0:
        raise ConfigError(f"train.schedule.decay_epochs {decay_epochs}: must be > 0")
    if warmup > 0 and base_lr is None:
        raise ConfigError("the step schedule's warm-up needs the param group's base lr")
    spe = max(1, int(steps_per_epoch))

    def factor(step: int) -> float:
        t: float = step // spe if per_epoch else step / spe
        if t < warmup:
            assert base_lr is not None
            return (warmup_lr + t * (base_lr - warmup_lr) / warmup) / base_lr if base_lr else 1.0
        return decay_rate ** (t // decay_epochs)

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
    ema: Any = None  # timm.utils.ModelEmaV3 of the unwrapped model (train.ema_decay > 0)


def fixed_subset(data: ImageSet, n: int) -> ImageSet:
    """``n`` images drawn at random with a fixed seed (the same in every run and arm), or all of
    ``data`` when ``n`` is 0 or at least its size."""
    if not n or n >= len(data):
        return data
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n]
    return ImageSet(data.images[pick], data.labels[pick], data.classes,
                    f"{data.source}[{n} fixed random images]")


def _loaders(settings: Mapping[str, Any], train: ImageSet, test: ImageSet, seed: int,
             device: torch.device) -> tuple[TensorLoader, TensorLoader, TensorLoader]:
    tr = settings["train"]
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    gen = torch.Generator().manual_seed(seed)
    train = fixed_subset(train, int(tr.get("train_subset") or 0))
    common = dict(mean=tr["mean"], std=tr["std"], resize=tr["image_size"], device=device,
                  channels_last=settings["channels_last"])
    try:
        augment = augment_from_settings(tr)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    train_loader = TensorLoader(train, tr["batch_size"], train=True, generator=gen, pad=tr["pad"],
                                flip=tr["flip"], drop_last=True, rank=rank, world=world,
                                augment=augment, **common)
    # a fixed random subset of the test set (test folders are sorted by class)
    val = fixed_subset(test, int(tr["val_subset"] or 0))
    ev: dict[str, Any] = dict(rank=rank, world=world) if world > 1 else {}
    ev["crop_pct"] = float(tr.get("test_crop_pct", 1.0))
    return (train_loader, TensorLoader(val, tr["test_batch_size"], train=False, **ev, **common),
            TensorLoader(test, tr["test_batch_size"], train=False, **ev, **common))


def check_world(settings: Mapping[str, Any], world: int | None = None) -> None:
    """Under torchrun the global batch ``train.batch_size`` is split evenly across the
    processes (DDP and GAL's global decisions assume equal shards): one ConfigError otherwise."""
    world = int(os.environ.get("WORLD_SIZE", 1)) if world is None else int(world)
    batch = int(settings["train"]["batch_size"])
    if world > 1 and batch % world:
        raise ConfigError(
            f"train.batch_size {batch} (the global batch) is not divisible by the torchrun world "
            f"size {world}: every process must get the same number of images. Fix: use a number of "
            f"processes (nodes x --nproc_per_node) that divides {batch}, or --set "
            f"train.batch_size=<a multiple of {world}>")


def _param_groups(settings: Mapping[str, Any], model: torch.nn.Module,
                  adjuster: GradientAdjuster | None, opt_kw: dict[str, Any],
                  lr: float) -> list[dict[str, Any]]:
    """The optimizer's param groups: the model's (split into no-decay / decay groups as timm's
    optimizer factory does when ``opt.filter_bias_and_bn``), with h's parameters in the last
    model group (``gal.h_optimizer: shared``, the CIFAR scripts) or in a group of their own with
    ``gal.h_lr`` / ``gal.h_weight_decay`` (``group``, the authors' ImageNet script). Group 0 is
    a model group, whose current lr GAL reads."""
    if opt_kw.pop("filter_bias_and_bn", False):
        from timm.optim import param_groups_weight_decay

        groups = param_groups_weight_decay(model, float(opt_kw.get("weight_decay", 0.0)))
    else:
        groups = [{"params": list(model.parameters())}]
    if adjuster is None:
        return groups
    g = settings["gal"]
    h = list(adjuster.parameters())
    if g["h_optimizer"] == "shared":  # one group holds model and h (same lr, schedule)
        return place_h(groups, h, "shared")[0]
    if g["h_optimizer"] != "group":
        raise ConfigError(f"gal.h_optimizer {g['h_optimizer']!r}: choose shared (the authors' CIFAR "
                          f"code) or group (their ImageNet code: h in its own param group)")
    h_lr, h_wd = g.get("h_lr"), g.get("h_weight_decay")
    groups, _ = place_h(groups, h, "group", h_lr=lr if h_lr is None else float(h_lr),
                        h_weight_decay=float(opt_kw.get("weight_decay", 0.0) if h_wd is None else h_wd))
    return groups


def build_run(settings: Mapping[str, Any], train: ImageSet, test: ImageSet, seed: int) -> Run:
    """Model, optimizer, schedule, adjuster, EMA and loaders of one run, seeded for the paired design."""
    device = torch.device(settings["device"])
    m = settings["model"]
    check_world(settings)
    seed_everything(seed)  # same init in every arm of this seed
    kw = {} if m["name"].startswith("convnet_") else {
        "drop_rate": m["drop_rate"], "drop_path_rate": m["drop_path_rate"], **(m.get("kwargs") or {})}
    model = build_model(m["name"], settings["num_classes"], pretrained=bool(m["pretrained"]),
                        pretrained_file=m["pretrained_file"], **kw).to(device)
    if settings["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    adjuster = None
    g = settings.get("gal")
    if g is not None:
        adjuster = gal_from_settings(g, dim=settings["num_classes"], seed=seed).to(device)
    tr = settings["train"]
    ema = None
    if float(tr.get("ema_decay", 0.0) or 0.0) > 0:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=float(tr["ema_decay"]))  # a copy of the initial weights
    opt_kw = dict(settings["opt"])
    lr = float(opt_kw.pop("lr"))
    if "betas" in opt_kw:
        opt_kw["betas"] = tuple(opt_kw["betas"])
    groups = _param_groups(settings, model, adjuster, opt_kw, lr)
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(settings["optimizer"], groups, lr, **opt_kw)
    train_loader, val_loader, test_loader = _loaders(settings, train, test, seed, device)
    spe, epochs = len(train_loader), int(tr["epochs"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, [lr_lambda(tr["schedule"], spe, epochs, base_lr=float(pg["lr"]))
                    for pg in optimizer.param_groups])
    scaler = torch.amp.GradScaler(device.type) if settings["amp"] else None
    return Run(model, optimizer, scheduler, adjuster, train_loader, val_loader, test_loader,
               scaler, device, ema)
