"""What one image-classification run is built from (paper Sec. V-B): schedule, loaders, model,
optimizer and GAL adjuster, seeded for the paired design (same initialisation, batch order and
augmentation in every arm of a seed). Used by :mod:`experiments.classification` (Tables I-II, VI,
VIII, Figs. 5-8) and its benchmarks.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch

from experiments.common import seed_everything
from experiments.image_data import ImageSet, TensorLoader
from experiments.models import build_model
from gal import GradientAdjuster
from gal.config import ConfigError
from gal.optim import build_optimizer

__all__ = ["Run", "build_run", "fixed_subset", "lr_lambda"]


def lr_lambda(schedule: Mapping[str, Any], steps_per_epoch: int,
              epochs: int) -> Callable[[int], float]:
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
    train_loader = TensorLoader(train, tr["batch_size"], train=True, generator=gen, pad=tr["pad"],
                                flip=tr["flip"], drop_last=True, rank=rank, world=world, **common)
    # a fixed random subset of the test set (test folders are sorted by class)
    val = fixed_subset(test, int(tr["val_subset"] or 0))
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
            activation=g["activation"], adjuster=g.get("adjuster", "mlp"),
            noise_scaling=g.get("noise_scaling", "eq4"), seed=seed,
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
        optimizer, lr_lambda(tr["schedule"], len(train_loader), int(tr["epochs"])))
    scaler = torch.amp.GradScaler(device.type) if settings["amp"] else None
    return Run(model, optimizer, scheduler, adjuster, train_loader, val_loader, test_loader,
               scaler, device)
