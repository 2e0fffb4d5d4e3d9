"""One constructor from a run's GAL settings to :class:`gal.GradientAdjuster`, for every task
(Table V regression, the 3D example of Fig. 4, classification, DETR).

A task's settings hold GAL's section as a mapping: ``alpha``, ``beta``, ``policy``,
``granularity``, ``first_order`` (always), and ``arch``, ``adjuster``, ``activation``,
``noise_scaling``, ``precision`` where the task sets them. A key a task does not set takes
:class:`~gal.GradientAdjuster`'s default (``arch`` none: the noise adjusters of Table VI have no
layers; ``precision`` none: z's dtype), so records made before a key existed build the same h.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from gal import GradientAdjuster

__all__ = ["gal_from_settings"]


def gal_from_settings(g: Mapping[str, Any], dim: int, seed: int,
                      arch: Sequence[int] | None = None) -> GradientAdjuster:
    """:class:`~gal.GradientAdjuster` of GAL settings ``g`` on ``dim`` features, h seeded by
    ``seed``; ``arch`` replaces ``g["arch"]`` (a task that names h's widths otherwise, e.g.
    Table V's ``adjuster_arch`` per dataset). ``precision`` is a torch dtype's name
    (``"float64"``)."""
    precision = g.get("precision")
    return GradientAdjuster(
        dim=dim, arch=tuple(g.get("arch", ()) if arch is None else arch), alpha=g["alpha"],
        beta=g["beta"], policy=g["policy"], granularity=g["granularity"],
        first_order=g["first_order"], adjuster=g.get("adjuster", "mlp"),
        activation=g.get("activation", "relu"), noise_scaling=g.get("noise_scaling", "eq4"),
        seed=seed, precision=getattr(torch, precision) if precision else None,
    )
