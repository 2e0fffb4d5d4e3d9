"""One vocabulary of the optimizers the suite's tables and figures name: our key -> display
label, the paper's row key (``paper_values.yaml``) and the order rows and panels follow.
Adding an optimizer to the suite is one entry here plus its config values (and its builder in
:mod:`gal.optim`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OptimizerName", "OPTIMIZERS", "OPTIMIZER_LABELS", "OPTIMIZER_ORDER", "PAPER_OPTIMIZER"]


@dataclass(frozen=True)
class OptimizerName:
    """How the suite names one optimizer: ``label`` in tables and figures, ``paper`` the key of
    its rows in the paper's values (None: the paper has none)."""

    label: str
    paper: str | None


#: in the order of the paper's Tables I-II, then the others the suite runs
OPTIMIZERS: dict[str, OptimizerName] = {
    "sgd": OptimizerName("SGD", "sgd"),
    "lookahead_sgd": OptimizerName("Lookahead (SGD)", "lookahead"),
    "adabound": OptimizerName("AdaBound", "adabound"),
    "adam": OptimizerName("Adam", None),
    "rmsproptf": OptimizerName("RMSprop (TF style)", "rmsprop"),
    "rmsprop": OptimizerName("RMSprop", "rmsprop"),
}
OPTIMIZER_LABELS = {k: v.label for k, v in OPTIMIZERS.items()}
PAPER_OPTIMIZER = {k: v.paper for k, v in OPTIMIZERS.items() if v.paper is not None}
#: the classification tables' optimizers (Tables I-II, Figs. 5-7)
OPTIMIZER_ORDER = ("sgd", "lookahead_sgd", "adabound")
