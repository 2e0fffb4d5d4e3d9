"""The optimizers of the paper (Sec. V-B, Fig. 4 of Sec. IV-D, Tables I-V) as the suite names
them, one entry each: the suite's key, its label in tables and figures, the paper's row key in
``paper_values.yaml`` and its colour in figures. Each key is one of the library's optimizers
(:data:`gal.optim.BUILDERS`, which builds them: :func:`gal.optim.build_optimizer`); where h's
parameters go is not a property of the optimizer but of the task's code (a config's
``gal.h_optimizer``, hashed with the run's settings, one of :data:`gal.optim.H_PLACEMENTS`).

Adding an optimizer is one builder in :data:`gal.optim.BUILDERS`, one :class:`OptimizerEntry`
in :data:`OPTIMIZERS` (same key) plus its config values (the ``optimizers:`` section of the
experiment's config: lr, momentum, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from gal.registry import Registry

__all__ = ["FIG4_OPTIMIZER_ORDER", "OPTIMIZERS", "OPTIMIZER_LABELS", "OPTIMIZER_ORDER",
           "PAPER_OPTIMIZER", "OptimizerEntry", "OptimizerName", "optimizer_colour"]


@dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer: ``label`` in tables and figures; ``paper`` the key of its rows in the
    paper's values (None: the paper has none); ``colour`` its matplotlib colour in figures that
    compare optimizers (Figs. 6, 7; None: the figure's fallback)."""

    label: str
    paper: str | None
    colour: str | None = None


#: in the order of the paper's Tables I-II, then the others the suite runs (the order of
#: :data:`gal.optim.BUILDERS`)
OPTIMIZERS: Registry[OptimizerEntry] = Registry("optimizer", "gal_suite.vocab.optimizers.OPTIMIZERS", {
    "sgd": OptimizerEntry("SGD", "sgd", "tab:red"),
    "lookahead_sgd": OptimizerEntry("Lookahead (SGD)", "lookahead", "tab:blue"),
    "adabound": OptimizerEntry("AdaBound", "adabound", "tab:green"),
    "adam": OptimizerEntry("Adam", None),
    "rmsproptf": OptimizerEntry("RMSprop (TF style)", "rmsprop"),
    "rmsprop": OptimizerEntry("RMSprop", "rmsprop"),
    "adamw": OptimizerEntry("AdamW", None),
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
