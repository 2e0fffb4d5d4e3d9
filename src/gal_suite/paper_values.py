"""The paper's reported numbers (Tables I-VIII) as data: loader for ``paper_values.yaml``.

These are *paper* values only; renderers put them beside ours, never in an "ours" column.

Keys: table (``"table1"`` .. ``"table8"``, or the int 1..8), row key (e.g. ``"boston/gal"`` in
Table V, ``"efficientnet_b1_sgd_gal"`` in Table I) and column key (e.g. ``"mae"``, ``"error"``).
A value is a number, ``{"mean": m, "std": s}`` ("m±s" in the paper), ``{"t": t, "p": p}``
(Table V's t-test rows) or ``None`` (printed "-" in the paper).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

__all__ = ["table", "row", "arm_row", "value", "table5_value", "table5_ttest"]


@lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    text = resources.files("gal_suite").joinpath("paper_values.yaml").read_text()
    return yaml.safe_load(text)


def _table_key(t: int | str) -> str:
    if isinstance(t, int):
        return f"table{t}"
    return t if t.startswith("table") else f"table{t}"


def table(t: int | str) -> dict[str, Any]:
    """One paper table: ``{"title", "caption", "n_runs", "columns", "rows": [...]}``."""
    data = _load()
    key = _table_key(t)
    if key not in data:
        raise KeyError(f"no paper table {t!r}; known: {sorted(data)}")
    return data[key]


def row(t: int | str, row_key: str) -> dict[str, Any]:
    """One row of a paper table by its key."""
    for r in table(t)["rows"]:
        if r["key"] == row_key:
            return r
    raise KeyError(f"no row {row_key!r} in paper {_table_key(t)}")


def arm_row(t: int | str, prefix: str | None, method: str) -> dict[str, Any] | None:
    """The paper's baseline or GAL row ``<prefix>_<method>`` of a table (Tables III, IV), or
    None: no prefix (no paper counterpart), another method (controls), or no such row."""
    if prefix is None or method not in ("baseline", "gal"):
        return None
    try:
        return row(t, f"{prefix}_{method}")
    except KeyError:
        return None


def value(t: int | str, row_key: str, column: str) -> Any:
    """The paper's value at (table, row, column): number, {mean, std}, {t, p} or None."""
    r = row(t, row_key)
    if column not in r["values"]:
        raise KeyError(f"no column {column!r} in paper {_table_key(t)} row {row_key!r}")
    return r["values"][column]


def table5_value(dataset: str, method: str, metric: str) -> dict[str, float] | None:
    """Paper Table V ``{"mean", "std"}`` for (dataset, method in {baseline, gal}, metric), or None
    when the paper has no such row (controls, reference rows, other variants)."""
    try:
        v = value(5, f"{dataset}/{method}", metric)
    except KeyError:
        return None
    return v if isinstance(v, dict) and "mean" in v else None


def table5_ttest(dataset: str, metric: str) -> dict[str, float] | None:
    """Paper Table V two-sample t-test ``{"t", "p"}`` (baseline vs proposed), or None."""
    try:
        return value(5, f"{dataset}/ttest", metric)
    except KeyError:
        return None
