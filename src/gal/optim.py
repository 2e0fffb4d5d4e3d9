"""Optimizer factory for the paper's optimizer set (Sec. V-B), from maintained libraries only:
:func:`build_optimizer` builds an entry of :data:`gal.vocab.optimizers.OPTIMIZERS` (the table of
keys, classes and paper uses is there; adding an optimizer is one entry there).

h's parameters either join the model's optimizer (authors' CIFAR code: same lr, momentum, weight
decay and schedule), get their own param group with their own lr / weight decay (authors'
ImageNet code) or their own optimizer instance (Alg. 1 line 14); :func:`param_groups` builds the
first two layouts from a model, :func:`place_h` all three (:data:`gal.vocab.H_PLACEMENTS`) from
given groups. ``pytorch_optimizer`` and ``timm`` are imported only by the optimizers that need
them, so ``import gal`` needs torch alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from gal.vocab.optimizers import H_PLACEMENTS
from gal.vocab.optimizers import OPTIMIZERS as _REGISTRY
from gal.vocab.registry import UnknownName

__all__ = ["OPTIMIZERS", "build_optimizer", "param_groups", "place_h"]

#: the keys :func:`build_optimizer` accepts (the registry's order)
OPTIMIZERS = tuple(_REGISTRY)

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def build_optimizer(name: str, params: Params, lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    """Build one of :data:`OPTIMIZERS` (the registry entry's builder).

    Keyword arguments go to the underlying class; for ``lookahead_sgd`` the keys ``k`` and
    ``la_alpha`` (Lookahead's interpolation factor) configure the wrapper and the rest go to SGD.
    For ``adabound``, ``weight_decouple`` defaults to ``False`` (L2 decay as in Luo et al. 2019).
    An unknown name raises :class:`gal.vocab.UnknownName` (a ``ValueError``).
    """
    return _REGISTRY[name.lower()].build(params, lr, **kwargs)


def place_h(groups: Sequence[dict[str, Any]], h_params: Sequence[torch.Tensor], placement: str, *,
            h_lr: float | None = None,
            h_weight_decay: float | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the model optimizer's param groups, h's own optimizer's groups) for h's parameters placed
    as ``placement`` (:data:`gal.vocab.H_PLACEMENTS`): ``shared`` adds them to the last of
    ``groups``; ``group`` adds a group of their own with ``lr`` / ``weight_decay`` set where
    ``h_lr`` / ``h_weight_decay`` are given; ``separate`` leaves ``groups`` and returns h's
    groups for an optimizer of their own (Alg. 1 line 14). The second list is empty unless
    ``separate`` with parameters (an empty ``group`` is still added: its optimizer's state
    layout does not depend on whether h has parameters)."""
    if placement not in H_PLACEMENTS:
        raise UnknownName(f"unknown h placement (gal.h_optimizer) {placement!r}; choose one of "
                          f"{', '.join(H_PLACEMENTS)}")
    out = [dict(g) for g in groups]
    h = list(h_params)
    if placement == "shared":
        out[-1] = {**out[-1], "params": list(out[-1]["params"]) + h}
        return out, []
    if placement == "separate":
        return out, [{"params": h}] if h else []
    group: dict[str, Any] = {"params": h}
    if h_lr is not None:
        group["lr"] = h_lr
    if h_weight_decay is not None:
        group["weight_decay"] = h_weight_decay
    return out + [group], []


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
    shared = h_lr is None and h_weight_decay is None
    groups, _ = place_h([{"params": params}], h_params, "shared" if shared else "group",
                        h_lr=h_lr, h_weight_decay=h_weight_decay)
    return groups
