"""Optimizer factory for the paper's optimizer set (Sec. V-B), from maintained libraries only.

| name            | class                                             | paper use                    |
|-----------------|---------------------------------------------------|------------------------------|
| ``sgd``         | ``torch.optim.SGD``                               | CIFAR (Tables I, II), Fig. 4 |
| ``lookahead_sgd`` | ``pytorch_optimizer.Lookahead`` around SGD       | CIFAR, Fig. 4                |
| ``adabound``    | ``pytorch_optimizer.AdaBound`` (coupled L2 decay, as the original AdaBound) | CIFAR, Fig. 4 |
| ``rmsprop``     | ``torch.optim.RMSprop``                           | Fig. 4                       |
| ``rmsproptf``   | ``timm.optim.RMSpropTF`` (TF-style, eps inside sqrt) | ImageNet (Table III)      |
| ``adam``        | ``torch.optim.Adam``                              | regression (Table V), Fig. 4 |
| ``adamw``       | ``torch.optim.AdamW``                             | DETR (Table IV)              |

h's parameters either join the model's optimizer (authors' CIFAR code: same lr, momentum, weight
decay and schedule) or get their own param group with their own lr / weight decay (authors'
ImageNet code); :func:`param_groups` builds both layouts. ``pytorch_optimizer`` and ``timm`` are
imported only by the optimizers that need them, so ``import gal`` needs torch alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("sgd", "lookahead_sgd", "adabound", "rmsprop", "rmsproptf", "adam", "adamw")

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def build_optimizer(name: str, params: Params, lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    """Build one of :data:`OPTIMIZERS`.

    Keyword arguments go to the underlying class; for ``lookahead_sgd`` the keys ``k`` and
    ``la_alpha`` (Lookahead's interpolation factor) configure the wrapper and the rest go to SGD.
    For ``adabound``, ``weight_decouple`` defaults to ``False`` (L2 decay as in Luo et al. 2019).
    """
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, **kwargs)
    if name == "lookahead_sgd":
        k = int(kwargs.pop("k", 5))
        la_alpha = float(kwargs.pop("la_alpha", 0.5))
        from pytorch_optimizer import Lookahead  # optional: only these optimizers need it

        return Lookahead(torch.optim.SGD(params, lr=lr, **kwargs), k=k, alpha=la_alpha)
    if name == "adabound":
        kwargs.setdefault("weight_decouple", False)
        from pytorch_optimizer import AdaBound

        return AdaBound(params, lr=lr, **kwargs)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, **kwargs)
    if name == "rmsproptf":
        from timm.optim import RMSpropTF  # optional: only Table III's optimizer needs timm

        return RMSpropTF(params, lr=lr, **kwargs)
    if name in ("adam", "adamw"):
        # multi-tensor ("foreach") update on every device: the same numbers as the per-tensor loop
        # (tests/test_core_training.py), a few kernels per step instead of several per tensor
        kwargs.setdefault("foreach", True)
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def param_groups(
    model: nn.Module | Iterable[torch.Tensor],
    adjuster: nn.Module | None = None,
    *,
    h_lr: float | None = None,
    h_weight_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Param groups for the model and h.

    With ``h_lr`` and ``h_weight_decay`` both ``None``, h's parameters join the model's group
    (authors' CIFAR scripts); otherwise h gets its own group with those settings (ImageNet:
    ``--gal_lr``). Group 0 is always the model's, so ``opt.param_groups[0]["lr"]`` is the model's
    current learning rate, the ``lr`` that ``GradientAdjuster.backward`` needs.
    """
    params = list(model.parameters()) if isinstance(model, nn.Module) else list(model)
    h_params = [] if adjuster is None else [p for p in adjuster.parameters() if p.requires_grad]
    if not h_params:
        return [{"params": params}]
    if h_lr is None and h_weight_decay is None:
        return [{"params": params + h_params}]
    group: dict[str, Any] = {"params": h_params}
    if h_lr is not None:
        group["lr"] = h_lr
    if h_weight_decay is not None:
        group["weight_decay"] = h_weight_decay
    return [{"params": params}, group]
