"""Reading and writing the files of run records (:mod:`gal_suite.records`): JSON-safe values, atomic
JSON files, and the readers :func:`load_runs` and :func:`load_history` that tables and figures
use."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

__all__ = ["NoRunsError", "RECORD_COLUMNS", "SET_ASIDE_SUFFIXES", "flatten", "load_history", "load_runs",
           "read_json", "read_status", "scalar", "to_builtin", "write_json"]


class NoRunsError(FileNotFoundError):
    """No (usable) run records to render a paper table or figure from; the message names the
    command that makes them. The one such error of the suite: tables (:mod:`gal_suite.tables`) and
    figures (:mod:`gal_suite.figures`) raise it alike."""


#: Columns load_runs always provides (besides flattened config keys and metric names).
RECORD_COLUMNS = ["status", "reason", "path", "profile", "seed", "wall_time_s", "git_commit", "device"]

#: Directory suffixes :func:`load_runs` never reads: unfinished runs (``.partial``) and finished
#: records set aside because they were made with other settings (``.stale``, the runners'
#: ``--rerun-stale``).
SET_ASIDE_SUFFIXES = (".partial", ".stale")


# --------------------------------------------------------------------------- helpers
def scalar(v: Any) -> Any:
    """Convert a python/numpy/0-dim torch scalar to a python int/float/bool; other values unchanged."""
    if isinstance(v, bool | int | float | str) or v is None:
        return v
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # torch tensor (import-free check)
        t = v.detach().cpu()
        if t.numel() != 1:
            raise TypeError(f"expected a scalar tensor, got shape {tuple(t.shape)}")
        return t.item()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        if v.size != 1:
            raise TypeError(f"expected a scalar array, got shape {v.shape}")
        return v.reshape(()).item()
    return v


def to_builtin(obj: Any) -> Any:
    """Recursively convert config/metric values to YAML/JSON-safe builtins (tuples -> lists,
    numpy/torch scalars -> python numbers, Paths -> str)."""
    if isinstance(obj, Mapping):
        return {str(k): to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_builtin(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray) and obj.size != 1:
        return obj.tolist()
    return scalar(obj)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a nested mapping: ``{"a": {"b": 1}} -> {"a.b": 1}``. Lists are kept as values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON next to ``path`` and rename it into place (never half written)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(to_builtin(obj), f, indent=2, sort_keys=True, allow_nan=True)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """A run directory's ``status.json``, or None when it is missing or unreadable."""
    p = run_dir / "status.json"
    if not p.is_file():
        return None
    try:
        return read_json(p)
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- readers
def _load_one(run_dir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {}
    cfg_path = run_dir / "config.yaml"
    if cfg_path.is_file():
        with open(cfg_path) as f:
            cfg = yaml.safe_load(f) or {}
        row.update(flatten(cfg))
    prov: dict[str, Any] = {}
    if (run_dir / "provenance.json").is_file():
        prov = read_json(run_dir / "provenance.json")
    metrics: dict[str, Any] = {}
    if (run_dir / "metrics.json").is_file():
        metrics = read_json(run_dir / "metrics.json")
    row.update(metrics)
    st = read_status(run_dir) or {}
    row["status"] = st.get("status", "unknown")
    row["reason"] = st.get("reason")
    row["path"] = str(run_dir)
    row.setdefault("profile", prov.get("profile"))
    row.setdefault("seed", prov.get("seed"))
    row["wall_time_s"] = prov.get("wall_time_s")
    row["git_commit"] = prov.get("git_commit", "unknown")
    row["git_dirty"] = prov.get("git_dirty", "unknown")
    row["device"] = prov.get("device")
    row["resumed"] = bool(prov.get("resumed", False))
    return row


def load_runs(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Load every finished run record under ``root`` into a DataFrame (one row per run dir).

    A run dir is any directory containing ``status.json``; ``*.partial`` directories (unfinished
    or killed runs) and ``*.stale`` ones (records set aside by ``--rerun-stale``) are ignored. Columns: flattened config keys (``a.b`` for nested dicts), the
    metric names from metrics.json, and ``status, reason, path, profile, seed, wall_time_s,
    git_commit, device`` (plus ``git_dirty``). Failed runs are included (``status == "failed"``);
    aggregation code must exclude them. Returns an empty frame (with those columns) if none.
    """
    root = Path(root)
    rows: list[dict[str, Any]] = []
    if root.is_dir():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.endswith(SET_ASIDE_SUFFIXES))
            if "status.json" in filenames and not dirpath.endswith(SET_ASIDE_SUFFIXES):
                rows.append(_load_one(Path(dirpath)))
                dirnames[:] = []  # a run dir does not contain other runs
    df = pd.DataFrame(rows)
    for c in [*RECORD_COLUMNS, "git_dirty"]:
        if c not in df.columns:
            df[c] = pd.Series(dtype=object)
    if len(df):
        df = df.sort_values("path", kind="stable").reset_index(drop=True)
    return df


def load_history(run_path: str | os.PathLike[str]) -> pd.DataFrame:
    """The per-epoch/step history (``history.csv``) of one run directory; empty frame if none."""
    p = Path(run_path) / "history.csv"
    if not p.is_file():
        return pd.DataFrame()
    try:
        return pd.read_csv(p)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
