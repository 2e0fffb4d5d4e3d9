"""The suite's vocabularies, one registry each, read by runners, tables and figures:

* :mod:`gal_suite.vocab.optimizers`: the optimizers of Sec. V-B and Fig. 4 (label, the paper's
  row key, figure colour; the order of Tables I-II and of Fig. 4's columns; each built by the
  library, :data:`gal.optim.BUILDERS`, where :data:`gal.optim.H_PLACEMENTS` names where h's
  parameters go);
* :mod:`gal_suite.vocab.datasets`: the paper's datasets and their stand-ins (table name, the paper
  dataset a stand-in replaces, loader);
* :mod:`gal_suite.vocab.methods`: the named methods (arms) of Tables I-VIII (row label, what each
  changes in the task's GAL settings);

An unknown key raises :class:`UnknownName` (a ``KeyError`` and a ``ValueError``) naming the
known keys and the registry to extend (:mod:`gal.registry`). Adding an optimizer to the suite is
one builder in :data:`gal.optim.BUILDERS`, one entry in :data:`OPTIMIZERS` plus its config
values.
"""

from __future__ import annotations

from gal.registry import Registry, UnknownName
from gal_suite.vocab.datasets import (
    DATASET_LABELS,
    DATASETS,
    LOADERS,
    DatasetEntry,
    datasets_of,
    with_stand_ins,
)
from gal_suite.vocab.methods import (
    CLASSIFICATION_METHODS,
    DETECTION_METHODS,
    METHOD_LABELS,
    METHODS,
    REGRESSION_METHODS,
    MethodEntry,
    gal_overrides,
)
from gal_suite.vocab.optimizers import (
    FIG4_OPTIMIZER_ORDER,
    OPTIMIZER_LABELS,
    OPTIMIZER_ORDER,
    OPTIMIZERS,
    PAPER_OPTIMIZER,
    OptimizerEntry,
    OptimizerName,
    optimizer_colour,
)

__all__ = ["DATASETS", "DATASET_LABELS", "LOADERS", "DatasetEntry", "datasets_of", "with_stand_ins",
           "CLASSIFICATION_METHODS", "DETECTION_METHODS", "METHODS", "METHOD_LABELS", "MethodEntry",
           "REGRESSION_METHODS", "gal_overrides", "FIG4_OPTIMIZER_ORDER", "OPTIMIZERS",
           "OPTIMIZER_LABELS", "OPTIMIZER_ORDER", "PAPER_OPTIMIZER", "OptimizerEntry", "OptimizerName",
           "Registry", "UnknownName", "optimizer_colour"]
