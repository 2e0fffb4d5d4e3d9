"""Record helpers of Figs. 6-8 (:mod:`gal.fig_analysis`, :mod:`gal.fig_ablation`,
:mod:`gal.fig8`): loading the classification records of one profile, keeping the complete runs,
a record's GAL settings, per-seed curves, the "Left out" section of a figure's md, writing a
figure's ``json``/``md``/``png``/``pdf``, and the error raised when there is nothing to draw."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gal.fig_provenance import footer, record_commits, stamp
from gal.fig_style import str_or_none as _str
from gal.fig_style import val_curve as _val_curve
from gal.records import NoRunsError, load_runs

__all__ = [
    "NoRunsError",
    "load_classification",
    "split_complete",
    "gal_setting",
    "runs_by_seed",
    "seed_curves",
    "excluded_lines",
    "write_figure",
    "no_runs",
]


def load_classification(
    runs_root: Path, key: str, profile: str
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """All records under ``<runs_root>/<key>/<profile>`` whose ``profile`` column is ``profile``
    (complete or not), and the records left out because their profile column differs."""
    df = load_runs(Path(runs_root) / key / profile)
    if df.empty:
        return df, []
    prof = df["profile"].map(_str)
    other = [{"path": str(p), "profile": q} for p, q in zip(df["path"], prof, strict=True)
             if q != profile]
    return df[prof == profile].reset_index(drop=True), other


def split_complete(df: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """``(complete runs, [{path, method, seed, status, reason} of the others])``."""
    if df.empty:
        return df, []
    ok = df["status"] == "complete"
    bad = [{"path": str(r["path"]), "method": _str(r.get("method")), "seed": _seed(r),
            "status": _str(r["status"]), "reason": _str(r.get("reason"))}
           for _, r in df[~ok].iterrows()]
    return df[ok].reset_index(drop=True), bad


def _seed(r: Mapping[str, Any]) -> int | None:
    s = r.get("seed")
    return None if _str(s) is None else int(s)


def gal_setting(row: Mapping[str, Any], name: str) -> Any:
    """GAL setting ``name`` (alpha, beta, arch, adjuster, noise_scaling, policy, granularity) of
    one record: its ``gal_<name>`` column, else ``settings.gal.<name>`` (older records); arch as
    ``"256-64-32"``; ``None`` where absent (baseline)."""
    v = row.get(f"gal_{name}")
    if _str(v) is None:
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
    curves = {c: [_val_curve(p, c) for p in runs.values()] for c in columns}
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



def _clean(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    return obj


def write_figure(fig: Any, summary: Mapping[str, Any], markdown: str, out_dir: Path,
                 stem: str) -> list[Path]:
    """Write ``<stem>.json`` (non-finite numbers as null), ``<stem>.md``, ``<stem>.png`` and
    ``<stem>.pdf`` (no creation date: reproducible bytes) into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.{ext}" for ext in ("json", "md", "png", "pdf")]
    prov = record_commits(summary)
    summary = {**summary, "records": prov}
    stamp(fig, prov)
    paths[0].write_text(json.dumps(_clean(summary), indent=2, allow_nan=False) + "\n")
    paths[1].write_text(markdown + f"\n{footer(prov)}.\n")
    fig.savefig(paths[2], dpi=150)
    fig.savefig(paths[3], metadata={"CreationDate": None})
    return paths


def no_runs(n: int, what: str, places: Iterable[str], profile: str, make: str) -> NoRunsError:
    """The error of a figure without records: what is missing, where, and how to make it."""
    return NoRunsError(f"Fig. {n}: no {what} for profile '{profile}' under "
                       f"{', '.join(places)}; create them with {make}, then render with "
                       f"`make fig{n}` / `gal figure {n} --profile {profile}`")
