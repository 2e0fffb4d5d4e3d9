"""Optimizer factory for the paper's optimizer set (Sec. V-B, Fig. 4 of Sec. IV-D, Tables I-V),
from maintained libraries only: :func:`build_optimizer` builds an entry of :data:`BUILDERS`
(adding an optimizer is one builder there).

| key             | class                                             | paper use                    |
|-----------------|---------------------------------------------------|------------------------------|
| ``sgd``         | ``torch.optim.SGD``                               | CIFAR (Tables I, II), Fig. 4 |
| ``lookahead_sgd`` | ``pytorch_optimizer.Lookahead`` around SGD       | CIFAR, Fig. 4                |
| ``adabound``    | ``pytorch_optimizer.AdaBound`` (coupled L2 decay, as the original AdaBound) | CIFAR, Fig. 4 |
| ``rmsprop``     | ``torch.optim.RMSprop``                           | Fig. 4                       |
| ``rmsproptf``   | ``timm.optim.RMSpropTF`` (TF-style, eps inside sqrt) | ImageNet (Table III)      |
| ``adam``        | ``torch.optim.Adam``                              | regression (Table V), Fig. 4 |
| ``adamw``       | ``torch.optim.AdamW``                             | DETR (Table IV)              |

h's parameters either join the model's optimizer (authors' CIFAR code: same lr, momentum, weight
decay and schedule), get their own param group with their own lr / weight decay (authors'
ImageNet code) or their own optimizer instance (Alg. 1 line 14); :func:`param_groups` builds the
first two layouts from a model, :func:`place_h` all three (:data:`H_PLACEMENTS`) from given
groups. ``pytorch_optimizer`` and ``timm`` are imported only by the optimizers that need them,
so ``import gal`` needs torch alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from gal.registry import Registry, UnknownName

__all__ = ["BUILDERS", "H_PLACEMENTS", "OPTIMIZERS", "build_optimizer", "param_groups", "place_h"]

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]
Builder = Callable[..., torch.optim.Optimizer]

#: where h's parameters go (a config's ``gal.h_optimizer``): in the model's param group
#: (authors' CIFAR and 3D-example code), in a param group of their own with their own lr / weight
#: decay (authors' ImageNet code, Table III), or in an optimizer instance of their own of the same
#: type and settings (Alg. 1 line 14, Phi(.; Theta); Fig. 4's paper convention, Table V)
H_PLACEMENTS: dict[str, str] = {
    "shared": "h's parameters in the model's param group (same lr, schedule, weight decay)",
    "group": "h's parameters in a param group of their own (gal.h_lr, gal.h_weight_decay)",
    "separate": "h's parameters in an optimizer of their own, same type and settings (Alg. 1 line 14)",
}


def _sgd(params: Params, lr: float, **kw: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, **kw)


def _lookahead_sgd(params: Params, lr: float, **kw: Any) -> torch.optim.Optimizer:
    """``k`` and ``la_alpha`` (Lookahead's interpolation factor) configure the wrapper; the
    rest goes to SGD."""
    from pytorch_optimizer import Lookahead  # optional: only these optimizers need it

    k = int(kw.pop("k", 5))
    la_alpha = float(kw.pop("la_alpha", 0.5))
    return Lookahead(torch.optim.SGD(params, lr=lr, **kw), k=k, alpha=la_alpha)


def _adabound(params: Params, lr: float, **kw: Any) -> torch.optim.Optimizer:
    """``weight_decouple`` defaults to ``False`` (L2 decay as in Luo et al. 2019)."""
    from pytorch_optimizer import AdaBound

    kw.setdefault("weight_decouple", False)
    return AdaBound(params, lr=lr, **kw)


def _rmsprop(params: Params, lr: float, **kw: Any) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=lr, **kw)


def _rmsproptf(params: Params, lr: float, **kw: Any) -> torch.optim.Optimizer:
    from timm.optim import RMSpropTF  # optional: only Table III's optimizer needs timm

    return RMSpropTF(params, lr=lr, **kw)


def _adam_family(cls_name: str) -> Builder:
    def build(params: Params, lr: float, **kw: Any) -> torch.optim.Optimizer:
        # multi-tensor ("foreach") update on every device: the same numbers as the per-tensor
        # loop (tests/test_core_training.py), a few kernels per step instead of several per tensor
        kw.setdefault("foreach", True)
        return getattr(torch.optim, cls_name)(params, lr=lr, **kw)

    build.__name__ = f"_{cls_name.lower()}"
    return build


#: ``build(params, lr, **kw)`` of each optimizer (keyword arguments: the config's values for it),
#: in the order of the paper's Tables I-II, then the others the experiments run
BUILDERS: Registry[Builder] = Registry("optimizer", "gal.optim.BUILDERS", {
    "sgd": _sgd,
    "lookahead_sgd": _lookahead_sgd,
    "adabound": _adabound,
    "adam": _adam_family("Adam"),
    "rmsproptf": _rmsproptf,
    "rmsprop": _rmsprop,
    "adamw": _adam_family("AdamW"),
})
#: the keys :func:`build_optimizer` accepts (the registry's order)
OPTIMIZERS = tuple(BUILDERS)


def build_optimizer(name: str, params: Params, lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    """Build one of :data:`OPTIMIZERS` (its builder in :data:`BUILDERS`).

    Keyword arguments go to the underlying class; for ``lookahead_sgd`` the keys ``k`` and
    ``la_alpha`` (Lookahead's interpolation factor) configure the wrapper and the rest go to SGD.
    For ``adabound``, ``weight_decouple`` defaults to ``False`` (L2 decay as in Luo et al. 2019).
    An unknown name raises :class:`gal.registry.UnknownName` (a ``ValueError``).
    """
    return BUILDERS[name.lower()](params, lr, **kwargs)


def place_h(groups: Sequence[dict[str, Any]], h_params: Sequence[torch.Tensor], placement: str, *,
            h_lr: float | None = None,
            h_weight_decay: float | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the model optimizer's param groups, h's own optimizer's groups) for h's parameters placed
    as ``placement`` (:data:`H_PLACEMENTS`): ``shared`` adds them to the last of
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
