"""A pre-trained backbone for the small DETR of the cpu profile (Table IV stand-in, Sec. V-B).

DETR starts from an ImageNet-pretrained ResNet; the cpu profile has no such weights at hand
(offline) and, trained from scratch on 2 cores, a small DETR's class loss stays at the
no-information prior for thousands of steps (measured: the class term at the prior for 14
epochs of 2,000 images). Its stand-in for ImageNet pre-training is a short supervised
pre-training of the same backbone on the *training split* only: image-level labels, "which
categories appear in this image" (multi-label, one logit per category on the globally pooled
last feature map, binary cross-entropy). No box and no validation image is seen.

The weights are made once per (backbone, data, pre-training settings) with a fixed seed, cached
as a timm state dict of the backbone (``<cache>/detr_backbones/<key>.pth``, written atomically
under a file lock), and shared by every run and both arms of every seed, as ImageNet weights
are. Each run records the file's sha256 and the pre-training's last-epoch loss and accuracy.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from detr_gal.coco_data import CocoSet, DetectionLoader
from experiments.image_data import cache_dir, sha256_file

__all__ = ["presence_targets", "pretrain_backbone", "pretrained_backbone"]


def presence_targets(targets: list[dict[str, torch.Tensor]], num_classes: int) -> torch.Tensor:
    """``[B, num_classes]`` float: 1 where the category appears in the image (image-level labels)."""
    y = torch.zeros(len(targets), num_classes)
    for i, t in enumerate(targets):
        y[i, t["class_labels"].long()] = 1.0
    return y


def pretrain_backbone(backbone: nn.Module, train: CocoSet, *, epochs: int, lr: float,
                      batch_size: int, weight_decay: float, seed: int) -> dict[str, float]:
    """Train ``backbone`` (a timm ``features_only`` model; its last feature map is pooled) with a
    linear multi-label head on :func:`presence_targets` of ``train``, AdamW, random flips.
    Returns the last epoch's mean ``bce`` and per-label ``accuracy``."""
    backbone.train()
    head = nn.Linear(backbone.feature_info.channels()[-1], len(train.cat_ids))
    nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=lr, weight_decay=weight_decay)
    loader = DetectionLoader(train, batch_size, shuffle=True, seed=seed, hflip=True, drop_last=True)
    bce = acc = 0.0
    for _ in range(epochs):
        total = correct = n = 0.0
        for x, _, targets, _ in loader:
            y = presence_targets(targets, len(train.cat_ids))
            logits = head(backbone(x)[-1].mean((2, 3)))
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(y)
            correct += float(((logits.detach() > 0) == (y > 0)).float().mean()) * len(y)
            n += len(y)
        bce, acc = total / max(n, 1), correct / max(n, 1)
    return {"bce": bce, "accuracy": acc}


def pretrained_backbone(make_backbone: Callable[[], nn.Module], pretrain: Mapping[str, Any],
                        train: CocoSet, key_parts: Mapping[str, Any]) -> dict[str, Any]:
    """The cached pre-trained backbone (made on first use): returns ``{"path", "sha256", "bce",
    "accuracy"}``. ``make_backbone()`` builds a fresh, untrained backbone of the run's
    architecture (called under ``pretrain["seed"]``, the caller's RNG state left untouched);
    ``pretrain`` holds ``epochs``, ``lr``, ``batch_size``, ``weight_decay``, ``seed``;
    ``key_parts`` (backbone, data) name the cache entry together with it."""
    spec = {"pretrain": dict(pretrain), **dict(key_parts), "format": 1}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]
    folder = cache_dir() / "detr_backbones"
    folder.mkdir(parents=True, exist_ok=True)
    path, meta = folder / f"{key}.pth", folder / f"{key}.json"
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process trains it, the others wait and reuse it
        if not (path.is_file() and meta.is_file()):
            with torch.random.fork_rng():
                torch.manual_seed(int(pretrain["seed"]))
                backbone = make_backbone()
                stats = pretrain_backbone(backbone, train, epochs=int(pretrain["epochs"]),
                                          lr=float(pretrain["lr"]), batch_size=int(pretrain["batch_size"]),
                                          weight_decay=float(pretrain["weight_decay"]),
                                          seed=int(pretrain["seed"]))
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
            torch.save(backbone.state_dict(), tmp)
            os.replace(tmp, path)
            tmp = meta.with_name(f"{meta.name}.tmp{os.getpid()}")
            tmp.write_text(json.dumps({**stats, "spec": spec}, indent=1, default=str))
            os.replace(tmp, meta)
        stats = json.loads(meta.read_text())
    return {"path": str(path), "sha256": sha256_file(path), "bce": stats["bce"], "accuracy": stats["accuracy"]}
