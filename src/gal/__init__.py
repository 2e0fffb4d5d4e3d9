"""Gradient Adjustment Learning (GAL), Luo, Wong, Kankanhalli and Zhao,
"Learning to Minimize the Remainder in Supervised Learning".

The core is three modules: :mod:`gal.adjuster` (h, Eq. 3), :mod:`gal.step` (Algorithm 1,
Eqs. 4-7) and :mod:`gal.optim` (the paper's optimizers). Everything else in the package
(records, stats, tables, figures, cli, config) is the experiment suite built on top.
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
