"""Gradient Adjustment Learning (GAL), Luo, Wong, Kankanhalli and Zhao,
"Learning to Minimize the Remainder in Supervised Learning".

The core is :mod:`gal.adjuster` (h, Eq. 3), :mod:`gal.algorithm` (Eqs. 3-7 and lines 7-10 of
Algorithm 1 as functions of tensors), :mod:`gal.eager_step` and :mod:`gal.compiled_step` (the
paths that compose them), :mod:`gal.step` (:class:`GradientAdjuster`, Algorithm 1) and
:mod:`gal.optim` (the paper's optimizers, :mod:`gal.registry` their names). The package needs
torch alone; the experiment suite (records, statistics, tables, figures, configs, the ``gal``
command) is the separate package ``gal_suite``, built on this one.
"""

from gal.adjuster import CNNAdjuster, MLPAdjuster, NoiseAdjuster, build_adjuster, count_parameters
from gal.optim import build_optimizer, param_groups
from gal.step import GALStats, GradientAdjuster

__all__ = [
    "CNNAdjuster",
    "GALStats",
    "GradientAdjuster",
    "MLPAdjuster",
    "NoiseAdjuster",
    "build_adjuster",
    "build_optimizer",
    "count_parameters",
    "param_groups",
]
__version__ = "0.1.0"
