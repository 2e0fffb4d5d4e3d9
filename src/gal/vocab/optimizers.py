"""The optimizers of the paper (Sec. V-B, Fig. 4 of Sec. IV-D, Tables I-V), one entry each: the
suite's key, its label in tables and figures, the paper's row key in ``paper_values.yaml``, its
colour in figures and its builder (maintained libraries only). Where h's parameters go is not a
property of the optimizer but of the task's code (a config's ``gal.h_optimizer``, hashed with
the run's settings): :data:`H_PLACEMENTS` names the three layouts, which
:func:`gal.optim.place_h` builds for every optimizer here.

Adding an optimizer is one :class:`OptimizerEntry` in :data:`OPTIMIZERS` plus its config values
(the ``optimizers:`` section of the experiment's config: lr, momentum, ...). ``pytorch_optimizer``
and ``timm`` are imported only by the builders that need them, so ``import gal`` needs torch
alone.

| key             | class                                             | paper use                    |
|-----------------|---------------------------------------------------|------------------------------|
| ``sgd``         | ``torch.optim.SGD``                               | CIFAR (Tables I, II), Fig. 4 |
| ``lookahead_sgd`` | ``pytorch_optimizer.Lookahead`` around SGD       | CIFAR, Fig. 4                |
| ``adabound``    | ``pytorch_optimizer.AdaBound`` (coupled L2 decay, as the original AdaBound) | CIFAR, Fig. 4 |
| ``rmsprop``     | ``torch.optim.RMSprop``                           | Fig. 4                       |
| ``rmsproptf``   | ``timm.optim.RMSpropTF`` (TF-style, eps inside sqrt) | ImageNet (Table III)      |
| ``adam``        | ``torch.optim.Adam``                              | regression (Table V), Fig. 4 |
| ``adamw``       | ``torch.optim.AdamW``                             | DETR (Table IV)              |
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gal.vocab.registry import Registry

if TYPE_CHECKING:  # torch is imported by the builders themselves
    import torch

__all__ = ["FIG4_OPTIMIZER_ORDER", "H_PLACEMENTS", "OPTIMIZERS", "OPTIMIZER_LABELS", "OPTIMIZER_ORDER",
           "PAPER_OPTIMIZER", "OptimizerEntry", "OptimizerName", "optimizer_colour"]

Params = Iterable[Any]
Builder = Callable[..., "torch.optim.Optimizer"]

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
    import torch

    return torch.optim.SGD(params, lr=lr, **kw)


def _lookahead_sgd(params: Params, lr: float, **kw: Any) -> torch.optim.Optimizer:
    """``k`` and ``la_alpha`` (Lookahead's interpolation factor) configure the wrapper; the
    rest goes to SGD."""
    import torch
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
    import torch

    return torch.optim.RMSprop(params, lr=lr, **kw)


def _rmsproptf(params: Params, lr: float, **kw: Any) -> torch.optim.Optimizer:
    from timm.optim import RMSpropTF  # optional: only Table III's optimizer needs timm

    return RMSpropTF(params, lr=lr, **kw)


def _adam_family(cls_name: str) -> Builder:
    def build(params: Params, lr: float, **kw: Any) -> torch.optim.Optimizer:
        import torch

        # multi-tensor ("foreach") update on every device: the same numbers as the per-tensor
        # loop (tests/test_core_training.py), a few kernels per step instead of several per tensor
        kw.setdefault("foreach", True)
        return getattr(torch.optim, cls_name)(params, lr=lr, **kw)

    build.__name__ = f"_{cls_name.lower()}"
    return build


@dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer: ``label`` in tables and figures; ``paper`` the key of its rows in the
    paper's values (None: the paper has none); ``colour`` its matplotlib colour in figures that
    compare optimizers (Figs. 6, 7; None: the figure's fallback); ``build(params, lr, **kw)``
    the optimizer (keyword arguments: the config's values for it)."""

    label: str
    paper: str | None
    build: Builder
    colour: str | None = None


#: in the order of the paper's Tables I-II, then the others the suite runs
OPTIMIZERS: Registry[OptimizerEntry] = Registry("optimizer", "gal.vocab.optimizers.OPTIMIZERS", {
    "sgd": OptimizerEntry("SGD", "sgd", _sgd, "tab:red"),
    "lookahead_sgd": OptimizerEntry("Lookahead (SGD)", "lookahead", _lookahead_sgd, "tab:blue"),
    "adabound": OptimizerEntry("AdaBound", "adabound", _adabound, "tab:green"),
    "adam": OptimizerEntry("Adam", None, _adam_family("Adam")),
    "rmsproptf": OptimizerEntry("RMSprop (TF style)", "rmsprop", _rmsproptf),
    "rmsprop": OptimizerEntry("RMSprop", "rmsprop", _rmsprop),
    "adamw": OptimizerEntry("AdamW", None, _adam_family("AdamW")),
})
#: the former name of an entry (labels and paper keys only)
OptimizerName = OptimizerEntry
OPTIMIZER_LABELS = {k: v.label for k, v in OPTIMIZERS.items()}
PAPER_OPTIMIZER = {k: v.paper for k, v in OPTIMIZERS.items() if v.paper is not None}
#: the classification tables' optimizers (Tables I-II, Figs. 5-7)
OPTIMIZER_ORDER = ("sgd", "lookahead_sgd", "adabound")
#: the optimizers of Fig. 4 (Sec. IV-D, the 3D example) in the figure's column order, the paper's
#: (GD, Lookahead(GD), RMSprop, Adam, AdaBound; ``experiments/configs/toy3d.yaml`` lists them so)
FIG4_OPTIMIZER_ORDER = ("sgd", "lookahead_sgd", "rmsprop", "adam", "adabound")


def optimizer_colour(key: str, fallback: str = "tab:purple") -> str:
    """The figure colour of optimizer ``key`` (``fallback`` when it has none)."""
    entry = OPTIMIZERS.get(key)
    return fallback if entry is None or entry.colour is None else entry.colour
