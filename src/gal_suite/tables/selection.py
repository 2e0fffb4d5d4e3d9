"""Which run records a table averages: :func:`select` keeps a spec's records, :func:`mixed_settings`
names the settings that differ between the runs of one cell (they must not be averaged)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from gal_suite.records import IGNORED_SETTINGS, IMPLICIT_SETTINGS
from gal_suite.tables.spec import NoRunsError, TableSpec

__all__ = ["mixed_settings", "select"]


def mixed_settings(runs: pd.DataFrame) -> list[str]:
    """``"key: v1 | v2"`` for each ``settings.*`` column whose value differs between the runs of
    one cell (they would be averaged together). Not counted: :data:`gal_suite.records.IGNORED_SETTINGS`
    (the device), a key that follows the seed (Table V's ``split_seed`` = the run's seed), and a
    key a record lacks where :data:`gal_suite.records.IMPLICIT_SETTINGS` gives its value."""
    out = []
    if len(runs) < 2:
        return out
    for col in sorted(c for c in runs.columns if c.startswith("settings.")):
        key = col[len("settings."):]
        if key.split(".")[0] in IGNORED_SETTINGS:
            continue
        vals = runs[col]
        if key in IMPLICIT_SETTINGS and vals.notna().any():
            vals = vals.map(lambda v, d=IMPLICIT_SETTINGS[key]: d if _missing(v) else v)
        texts = vals.map(lambda v: "(absent)" if _missing(v) else json.dumps(v, default=str,
                                                                              sort_keys=True))
        if texts.nunique() < 2:
            continue
        if "seed" in runs.columns and (texts == runs["seed"].map(lambda s: json.dumps(
                None if _missing(s) else int(s)))).all():
            continue
        out.append(f"{key}: {' | '.join(sorted(set(texts)))}")
    return out


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def select(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """The records of ``spec``'s table (``record_filter``; records lacking a key pass)."""
    if len(df) == 0:
        return df
    for key, want in spec.record_filter.items():
        if key in df.columns:
            df = df[df[key].isna() | (df[key].astype(str) == str(want))]
    for c in spec.required_columns:
        if c not in df.columns:
            expected = ", ".join(f"{k}={v}" for k, v in spec.record_filter.items())
            raise NoRunsError(f"run records lack the config key {c!r} (expected {expected})")
    return df
