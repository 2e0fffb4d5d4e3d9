"""The named methods (arms) of the paper's experiments, one entry each: the row label in tables
and what the method changes in the run's GAL settings (Sec. V-B's defaults of that task).

* Tables I-III (classification, Sec. V-C) and the analyses (Sec. VI): ``baseline``, ``gal``,
  ``gal_alpha0``; their variants ``gal+<key>=<value>`` are parsed by
  :mod:`experiments.gal_variants` on top of these.
* Table IV (DETR): those three plus ``gal_noise`` (Table VI's N(0, 1) adjuster, Eq. 4 scaling,
  no h) and ``gal_frozen_h`` (h kept at its initialisation).
* Table V (regression, Sec. V-A): ``baseline``, ``gal``, ``gal_alpha0``, ``noise_normal`` (its
  adjuster from the config's ``noise:`` section) and the references ``ols``, ``mlp_sklearn``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gal.registry import Registry

__all__ = ["CLASSIFICATION_METHODS", "DETECTION_METHODS", "METHODS", "METHOD_LABELS",
           "REGRESSION_METHODS", "MethodEntry", "gal_overrides"]


@dataclass(frozen=True)
class MethodEntry:
    """One method: ``label`` its table row; ``gal`` what it changes in the task's GAL settings
    (None: the run has no GAL; ``{}``: the task's GAL settings as they are); ``gal_section`` a
    config section whose keys it applies instead (``noise``); ``reference`` a row that is not
    trained with the task's network (OLS, scikit-learn)."""

    label: str
    gal: Mapping[str, Any] | None = field(default=None)
    gal_section: str | None = None
    reference: bool = False


METHODS: Registry[MethodEntry] = Registry("method", "gal_suite.vocab.methods.METHODS", {
    "baseline": MethodEntry("Baseline"),
    "gal": MethodEntry("GAL (proposed)", {}),
    "gal_alpha0": MethodEntry("GAL α=0 (control)", {"alpha": 0.0}),
    "gal_noise": MethodEntry("N(0,1) noise at GAL's α, Eq. 4 (control)",
                             {"adjuster": "normal", "noise_scaling": "eq4", "arch": []}),
    "gal_frozen_h": MethodEntry("GAL, h frozen at its initialisation (control)", {"freeze_h": True}),
    "noise_normal": MethodEntry("N(0,1) noise, Eq. 4 (control)", {}, gal_section="noise"),
    "ols": MethodEntry("OLS (reference)", reference=True),
    "mlp_sklearn": MethodEntry("MLPRegressor (reference)", reference=True),
})
METHOD_LABELS = {k: v.label for k, v in METHODS.items()}
#: the named methods of each task, in row order
CLASSIFICATION_METHODS = ("baseline", "gal", "gal_alpha0")
DETECTION_METHODS = ("baseline", "gal", "gal_alpha0", "gal_noise", "gal_frozen_h")
REGRESSION_METHODS = ("baseline", "gal", "gal_alpha0", "noise_normal", "ols", "mlp_sklearn")


def gal_overrides(method: str) -> dict[str, Any] | None:
    """A fresh copy of what ``method`` changes in the GAL settings (None: no GAL); an unknown
    name raises :class:`gal_suite.vocab.UnknownName`."""
    g = METHODS[method].gal
    return None if g is None else copy.deepcopy(dict(g))
