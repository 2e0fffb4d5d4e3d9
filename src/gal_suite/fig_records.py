"""How the paper's figures read run records (Figs. 5-8: :mod:`gal_suite.fig5`, :mod:`gal_suite.fig_analysis`,
:mod:`gal_suite.fig_ablation`, :mod:`gal_suite.fig8`): a record column, a run's per-epoch curve, the
statistics over seeds, the classification records of one profile, the complete runs, a record's
GAL settings, per-seed curves, the "Left out" section of a figure's md, and the error raised when
there is nothing to draw (:class:`gal_suite.records.NoRunsError`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gal_suite.records import NoRunsError, load_history, load_runs

__all__ = [
    "NoRunsError",
    "str_or_none",
    "col",
    "val_curve",
    "seed_stats",
    "load_classification",
    "split_complete",
    "gal_setting",
    "runs_by_seed",
    "seed_curves",
    "excluded_lines",
    "no_runs",
]


def str_or_none(v: Any) -> str | None:
    """``str(v)``, or None for None / NaN (a missing record column)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return str(v)


def col(df: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` of ``df``, or a column of None where the records lack it."""
    return df[name] if name in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)


def val_curve(path: str, column: str = "val_loss") -> pd.Series:
    """``column`` (default ``val_loss``) by epoch of one run (rows without a finite value are
    dropped; also used for the GAL diagnostics of Figs. 6 and 8b)."""
    h = load_history(path)
    if h.empty or column not in h.columns or "epoch" not in h.columns:
        return pd.Series(dtype=float)
    h = h[["epoch", column]].apply(pd.to_numeric, errors="coerce")
    h = h[np.isfinite(h[column]) & np.isfinite(h["epoch"])]
    s = pd.Series(h[column].to_numpy(float), index=h["epoch"].astype(int).to_numpy())
    return s[~s.index.duplicated(keep="last")].sort_index()


def seed_stats(mat: np.ndarray) -> dict[str, Any]:
    """Per column of ``mat`` (seeds x epochs): mean, min, max and std (ddof=1; None for one seed)."""
    n = mat.shape[0]
    return {
        "mean": mat.mean(axis=0).tolist(),
        "min": mat.min(axis=0).tolist(),
        "max": mat.max(axis=0).tolist(),
        "std": mat.std(axis=0, ddof=1).tolist() if n > 1 else None,
    }


def load_classification(
    runs_root: Path, key: str, profile: str
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """All records under ``<runs_root>/<key>/<profile>`` whose ``profile`` column is ``profile``
    (complete or not), and the records left out because their profile column differs."""
    df = load_runs(Path(runs_root) / key / profile)
    if df.empty:
        return df, []
    prof = df["profile"].map(str_or_none)
    other = [{"path": str(p), "profile": q} for p, q in zip(df["path"], prof, strict=True)
             if q != profile]
    return df[prof == profile].reset_index(drop=True), other


def split_complete(df: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """``(complete runs, [{path, method, seed, status, reason} of the others])``."""
    if df.empty:
        return df, []
    ok = df["status"] == "complete"
    bad = [{"path": str(r["path"]), "method": str_or_none(r.get("method")), "seed": _seed(r),
            "status": str_or_none(r["status"]), "reason": str_or_none(r.get("reason"))}
           for _, r in df[~ok].iterrows()]
    return df[ok].reset_index(drop=True), bad


def _seed(r: Mapping[str, Any]) -> int | None:
    s = r.get("seed")
    return None if str_or_none(s) is None else int(s)


def gal_setting(row: Mapping[str, Any], name: str) -> Any:
    """GAL setting ``name`` (alpha, beta, arch, adjuster, noise_scaling, policy, granularity) of
    one record: its ``gal_<name>`` column, else ``settings.gal.<name>`` (older records); arch as
    ``"256-64-32"``; ``None`` where absent (baseline)."""
    v = row.get(f"gal_{name}")
    if str_or_none(v) is None:
        v = row.get(f"settings.gal.{name}")
    if isinstance(v, list | tuple):
        return "-".join(str(int(w)) for w in v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if name in ("alpha", "beta"):
        return float(v)
    return str(v)


def runs_by_seed(rows: pd.DataFrame, what: str) -> dict[int, str]:
    """``{seed: path}`` of complete runs; two runs of one seed in ``what`` is an error."""
    out: dict[int, str] = {}
    for _, r in rows.iterrows():
        s = int(r["seed"])
        if s in out:
            raise ValueError(f"{what}: two complete runs for seed {s} ({out[s]} and {r['path']}); "
                             "remove one")
        out[s] = str(r["path"])
    return dict(sorted(out.items()))


def seed_curves(
    runs: Mapping[int, str], columns: Sequence[str]
) -> tuple[list[int], dict[str, np.ndarray]]:
    """Per-epoch ``columns`` of the runs ``{seed: path}`` on the epochs where every run has a
    finite value of every column: ``(epochs, {column: array seeds x epochs})``."""
    curves = {c: [val_curve(p, c) for p in runs.values()] for c in columns}
    sets = [set(s.index) for cs in curves.values() for s in cs]
    epochs = sorted(int(e) for e in set.intersection(*sets)) if sets else []
    if not epochs:
        return [], {}
    return epochs, {c: np.vstack([s.loc[epochs].to_numpy(float) for s in cs])
                    for c, cs in curves.items()}


def excluded_lines(excluded: Mapping[str, Any], stem: str) -> list[str]:
    """The "Left out" section of a figure's md: counts per kind, failed runs listed by path."""
    out: list[str] = []
    for k, v in excluded.items():
        if v:
            out.append(f"- {k.replace('_', ' ')}: {len(v)}")
        if k == "non_complete":
            out += [f"  - `{e['path']}` ({e['status']}: {e['reason']})" for e in v]
    if not out:
        return []
    return ["## Left out", "", *out, "", f"(paths and reasons in {stem}.json, `excluded`)", ""]



def no_runs(n: int, what: str, places: Iterable[str], profile: str, make: str) -> NoRunsError:
    """The error of a figure without records: what is missing, where, and how to make it."""
    return NoRunsError(f"Fig. {n}: no {what} for profile '{profile}' under "
                       f"{', '.join(places)}; create them with {make}, then render with "
                       f"`make fig{n}` / `gal figure {n} --profile {profile}`")
