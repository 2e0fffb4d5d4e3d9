"""The classification engine shared by every image task (CIFAR Tables I-II, ImageNet Table III).

Two plain functions, in the style of DETR's ``engine.py``:

* :func:`train_one_epoch` - one pass over the training batches; the gradient of the loss with
  respect to the logits goes through :meth:`gal.GradientAdjuster.backward` when an adjuster is
  given (Algorithm 1), else through ``loss.backward()``; optional autocast (AMP) with a
  ``GradScaler``, gradient clipping, a per-step LR scheduler and a model EMA (Table III: timm's
  ``ModelEmaV3``, updated after every optimizer step). Returns the epoch's mean train
  loss, GAL's diagnostics (Eq. 7 remainder, acceptance rate, cosine, g-beats-grad), images/s and
  seconds per image.
* :func:`evaluate` - loss and top-1/top-5 error (%) on a held-out loader, optionally with
  horizontal-flip test-time augmentation.

Logging, checkpoints and records live in the task (:mod:`experiments.classification`); models
and data in :mod:`experiments.models` and :mod:`experiments.image_data`. Under DDP the adjuster
makes global decisions itself; the per-step values here stay on the device and are reduced to
Python floats once per epoch (one host sync).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from experiments.common import DIAGNOSTICS, EpochAverager
from gal import GradientAdjuster

__all__ = ["make_criterion", "optimizer_step", "train_one_epoch", "evaluate", "topk_errors", "unwrap"]

Criterion = Callable[..., torch.Tensor]


def make_criterion(label_smoothing: float = 0.0) -> Criterion:
    """Cross-entropy on the logits z (the loss l of Eq. 7), mean-reduced by default;
    ``reduction="none"`` gives per-sample losses (GAL's ``granularity="sample"``)."""

    def criterion(z: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(z, y, label_smoothing=label_smoothing, reduction=reduction)

    return criterion


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    scaler: torch.amp.GradScaler | None = None,
    max_norm: float = 0.0,
    h_optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    ema: Any = None,
) -> None:
    """Everything after the backward pass of one training step (Alg. 1 lines 13-14): unscale
    (AMP), clip the model's gradient norm to ``max_norm`` (0: no clipping), step ``optimizer``
    and ``h_optimizer`` (h's own optimizer when h is not in ``optimizer``), zero the gradients,
    update the scaler, step the per-step ``scheduler`` and update the ``ema``. Shared by every
    engine (classification here, DETR in ``detr_gal.engine``)."""
    if scaler is not None:
        if max_norm > 0:
            scaler.unscale_(optimizer)
        if h_optimizer is not None:
            scaler.unscale_(h_optimizer)
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    for opt in (optimizer, h_optimizer):
        if opt is None:
            continue
        if scaler is not None:
            scaler.step(opt)
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.update()
    if scheduler is not None:
        scheduler.step()
    if ema is not None:
        ema.update(unwrap(model))


def train_one_epoch(
    model: nn.Module,
    criterion: Criterion,
    data_loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epoch: int,
    *,
    adjuster: GradientAdjuster | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool = False,
    max_norm: float = 0.0,
    h_optimizer: torch.optim.Optimizer | None = None,
    ema: Any = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Train one epoch; returns ``{"train_loss", [GAL diagnostics], "images_per_s",
    "s_per_image", "lr"}`` (means over the epoch's steps; ``lr`` at the epoch's start).

    ``lr`` passed to GAL is the model group's current learning rate (``eta~ = beta * lr``,
    Algorithm 1), read after the scheduler's last step. ``h_optimizer`` steps h's parameters
    when they are not in ``optimizer`` (Alg. 1 line 14). ``ema`` (e.g. ``timm.utils.ModelEmaV3``
    of the unwrapped model) is updated after every optimizer step, as in timm's train.py.
    """
    model.train()
    names = ("train_loss", *DIAGNOSTICS) if adjuster is not None else ("train_loss",)
    avg = EpochAverager(names)
    lr0 = float(optimizer.param_groups[0]["lr"])
    n_images = 0
    _sync(device)
    t0 = time.perf_counter()
    for x, y in data_loader:
        with torch.autocast(device_type=device.type, enabled=amp):
            z = model(x)
        if adjuster is None:
            loss = criterion(z.float(), y)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            avg.add({"train_loss": loss})
        else:
            lr = optimizer.param_groups[0]["lr"]
            avg.add_stats(adjuster.backward(z, y, criterion, lr=lr, scaler=scaler))
        optimizer_step(model, optimizer, scaler=scaler, max_norm=max_norm,
                       h_optimizer=h_optimizer, scheduler=scheduler, ema=ema)
        n_images += int(y.shape[0])
        if progress is not None:
            progress(int(y.shape[0]))
    _sync(device)
    seconds = time.perf_counter() - t0
    out = avg.means()
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    n_global = n_images * world
    out.update({
        "lr": lr0,
        "images_per_s": n_global / seconds if seconds > 0 else float("nan"),
        "s_per_image": seconds / n_global if n_global else float("nan"),
    })
    return out


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (else ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def topk_errors(logits: torch.Tensor, y: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """Number of samples whose label is not among the top-k logits, for each k (a tensor)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hit = top.eq(y.view(-1, 1))
    return torch.stack([(~hit[:, :min(k, kmax)].any(dim=1)).sum() for k in ks])


@torch.no_grad()
def evaluate(
    model: nn.Module,
    criterion: Criterion,
    data_loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    *,
    amp: bool = False,
    tta_flip: bool = False,
) -> dict[str, float]:
    """``{"val_loss", "val_error_top1", "val_error_top5"}`` (errors in %) over the loader.

    With ``tta_flip`` the logits are the mean of the image's and its mirror's logits. Under
    DDP the sums are all-reduced, so every rank returns the global numbers.
    """
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss*n, err1, err5, n
    for x, y in data_loader:
        with torch.autocast(device_type=device.type, enabled=amp):
            z = model(x)
            if tta_flip:
                z = 0.5 * (z + model(x.flip(-1)))
        z = z.float()
        n = y.shape[0]
        if n == 0:  # an empty DDP slice of the last batch (the forward above keeps ranks in step)
            continue
        sums[0] += criterion(z, y).double() * n
        sums[1:3] += topk_errors(z, y).double()
        sums[3] += n
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    loss, e1, e5, n = sums.tolist()
    return {"val_loss": loss / n, "val_error_top1": 100.0 * e1 / n, "val_error_top5": 100.0 * e5 / n}
