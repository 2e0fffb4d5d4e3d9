"""GAL variants of the analyses (paper Sec. VI: Tables VI, VIII, Figs. 7, 8) as method names.

A classification run's ``method`` is ``baseline``, ``gal`` (the paper's GAL settings of that
dataset and optimizer, Sec. V-B), ``gal_alpha0`` (the alpha = 0 control), or a variant of GAL
written ``gal+<key>=<value>[+<key>=<value>...]`` with keys

* ``adjuster``: ``mlp`` | ``cnn`` (Table VIII) | ``uniform`` | ``normal`` (Table VI noise);
* ``noise_scaling``: ``eq4`` (``alpha |dl/dz| v/|v|``, Eq. 4) | ``unit`` (``alpha v/|v|``);
* ``arch``: h's widths joined by ``-`` (``256-64-32``, Sec. V-B notation);
* ``alpha``, ``beta``: Eq. 4's magnitude ratio and the tentative-rate scalar (Fig. 7);
* ``policy``: ``leq`` | ``lt`` | ``always`` | ``never`` (Alg. 1 lines 7-10, Fig. 8a).

:func:`canonical_method` drops every key equal to the run's default GAL settings and orders the
rest (a CNN adjuster always names its ``arch``), so one configuration has one name (and one
run directory): ``gal+alpha=0.01`` with SGD on
CIFAR-100 *is* ``gal``, and a sweep's default point is the ``gal`` run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gal.step import NOISE_SCALING, POLICIES
from gal_suite.config import ConfigError
from gal_suite.vocab.methods import CLASSIFICATION_METHODS, gal_overrides

__all__ = ["ADJUSTERS", "VARIANT_KEYS", "apply_method", "canonical_method", "parse_method"]

ADJUSTERS = ("mlp", "cnn", "uniform", "normal")
#: variant keys in the order they appear in a canonical name
VARIANT_KEYS = ("adjuster", "noise_scaling", "arch", "alpha", "beta", "policy")


def _bad(method: str, why: str) -> ConfigError:
    return ConfigError(
        f"method {method!r}: {why}. Write {', '.join(CLASSIFICATION_METHODS)} or gal+<key>=<value>[+...] with "
        f"keys {', '.join(VARIANT_KEYS)} (e.g. gal+alpha=0.001, gal+adjuster=cnn+arch=256-64, "
        f"gal+policy=lt)")


#: the variant keys whose value is one of a fixed set of names (Sec. VI: h's kind, the noise
#: scaling of Table VI, the update policy of Algorithm 1 lines 7-10)
_CHOICES = {"adjuster": ADJUSTERS, "noise_scaling": NOISE_SCALING, "policy": POLICIES}


def _parse_value(method: str, key: str, raw: str) -> Any:
    if key in _CHOICES:
        if raw not in _CHOICES[key]:
            raise _bad(method, f"{key} must be one of {', '.join(_CHOICES[key])}, not {raw!r}")
        return raw
    if key == "arch":
        try:
            widths = [int(w) for w in raw.split("-")]
        except ValueError:
            raise _bad(method, f"arch must be widths joined by '-', e.g. 256-64-32, not {raw!r}") from None
        if not widths or any(w <= 0 for w in widths):
            raise _bad(method, "arch widths must be positive")
        return widths
    try:
        x = float(raw)
    except ValueError:
        raise _bad(method, f"{key} must be a number, not {raw!r}") from None
    if not x >= 0:
        raise _bad(method, f"{key} must be >= 0")
    return x


def parse_method(method: str) -> dict[str, Any] | None:
    """GAL overrides of a method name: a named method's (:data:`gal_suite.vocab.METHODS`: ``None``
    for ``baseline``, ``{}`` for ``gal``, ``{"alpha": 0.0}`` for ``gal_alpha0``), else the
    parsed ``gal+key=value`` pairs."""
    if method in CLASSIFICATION_METHODS:
        return gal_overrides(method)
    if not method.startswith("gal+"):
        raise _bad(method, "unknown method")
    out: dict[str, Any] = {}
    for part in method[len("gal+"):].split("+"):
        key, sep, raw = part.partition("=")
        if not sep or key not in VARIANT_KEYS:
            raise _bad(method, f"unknown or malformed part {part!r}")
        if key in out:
            raise _bad(method, f"key {key!r} given twice")
        out[key] = _parse_value(method, key, raw)
    if out.get("noise_scaling") == "unit" and out.get("adjuster") not in ("uniform", "normal"):
        raise _bad(method, "noise_scaling=unit applies to the noise adjusters (adjuster=uniform|normal)")
    return out


def _fmt(key: str, value: Any) -> str:
    if key == "arch":
        return "-".join(str(int(w)) for w in value)
    if key in ("alpha", "beta"):
        return format(float(value), "g")
    return str(value)


def _same(key: str, a: Any, b: Any) -> bool:
    if key == "arch":
        return [int(w) for w in a] == [int(w) for w in b]
    if key in ("alpha", "beta"):
        return float(a) == float(b)
    return a == b


def apply_method(defaults: Mapping[str, Any], method: str) -> dict[str, Any] | None:
    """The GAL settings of ``method`` (``None`` for the baseline): ``defaults`` (the run's GAL
    settings, with keys ``adjuster``, ``noise_scaling``, ``arch``, ``alpha``, ``beta``,
    ``policy``, ...) overridden by the method's pairs."""
    over = parse_method(method)
    if over is None:
        return None
    return {**dict(defaults), **over}


def canonical_method(method: str, defaults: Mapping[str, Any]) -> str:
    """One name per configuration: pairs equal to ``defaults`` dropped, keys in
    :data:`VARIANT_KEYS` order, numbers in shortest form (``gal+alpha=1e-05``); ``gal`` when
    nothing differs. The named methods (``baseline``, ``gal``, ``gal_alpha0``) are returned as they
    are."""
    over = parse_method(method)
    if over is None or method in CLASSIFICATION_METHODS:
        return method
    full = {**{k: defaults[k] for k in VARIANT_KEYS}, **over}
    keep = {"arch"} if full["adjuster"] == "cnn" else set()  # CNN (256-64-32) keeps its arch
    parts = [f"{k}={_fmt(k, full[k])}" for k in VARIANT_KEYS
             if (k in over or k in keep) and (k in keep or not _same(k, over[k], defaults[k]))]
    return "gal+" + "+".join(parts) if parts else "gal"
