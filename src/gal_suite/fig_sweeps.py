"""The ablation records of Figs. 7 and 8 (Sec. VI-D, VI-E, VI-F) and what both figures make of
them: the records of one profile with what is left out, the runs of one sweep (method ``gal`` or
``gal+<key>=<value>``, the value read from the run's ``gal_<key>`` column), the error over seeds
of each setting, its paired difference from the baseline (drawn with its 95% CI) and the md
cells of both. Fig. 7 is :mod:`gal_suite.fig_ablation`, Fig. 8 :mod:`gal_suite.fig8`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gal_suite.fig_records import col as _col
from gal_suite.fig_records import (
    gal_setting,
    load_classification,
    no_runs,
    runs_by_seed,
    split_complete,
)
from gal_suite.fig_records import str_or_none as _str
from gal_suite.fig_style import ordered as _ordered
from gal_suite.stats import ci_paired_diff, paired_diffs

__all__ = ["PAPER_ARCHS", "POLICY_ORDER", "POLICY_LABELS", "load_ablation", "close_excluded",
           "sweep_rows", "usable", "error_stats", "paired_vs_baseline", "draw_paired", "x_order",
           "sweep_points", "by_dataset", "dataset_head", "mean_std_cell", "paired_cell", "yes_no"]

#: The architectures of h in Fig. 7 (Sec. VI-D), in the paper's order.
PAPER_ARCHS = ("256", "256-64", "256-64-32", "256-64-32-16")
#: The update policies of Algorithm 1 lines 7-10 (``gal_policy``), Fig. 8's order and labels.
POLICY_ORDER = ("leq", "lt", "always", "never")
POLICY_LABELS = {"leq": "line 7 (≤)", "lt": "line 7 (<)", "always": "line 8", "never": "line 10"}


def load_ablation(runs_root: Path, profile: str, n: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The ablation records of ``profile`` for Fig. ``n`` (7 or 8) and the ``excluded`` lists the
    figure fills in; :class:`gal_suite.records.NoRunsError` naming ``make fig<n>`` if there are none."""
    df, other = load_classification(runs_root, "ablation", profile)
    if df.empty:
        raise no_runs(n, "ablation run records", [f"{Path(runs_root)}/ablation/{profile}"],
                      profile, f"`make fig{n} PROFILE={profile}` (`python -m "
                      f"experiments.classification --table fig{n} --profile {profile}`)")
    return df, {"non_complete": [], "other_profile": other, "no_error_top1": [],
                "no_setting": [], "failed_outside_figure": split_complete(df)[1]}


def close_excluded(excluded: dict[str, Any]) -> dict[str, Any]:
    """Keep in ``failed_outside_figure`` only the failed ablation runs no panel wanted (e.g. the
    diverging unit-scaled noise runs of Table VI): counted, not hidden."""
    mine = {e["path"] for e in excluded["non_complete"]}
    excluded["failed_outside_figure"] = [e for e in excluded["failed_outside_figure"]
                                         if e["path"] not in mine]
    return excluded


def sweep_rows(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """The runs of the ``key`` sweep: method ``gal`` or ``gal+<key>=<value>`` (nothing else
    changed); where ``gal`` lands is read from the ``gal_<key>`` column (Figs. 7, 8a)."""
    m = _col(df, "method").astype(str)
    return df[(m == "gal") | m.str.fullmatch(rf"gal\+{re.escape(key)}=[^+]+")]


def usable(rows: pd.DataFrame, excluded: dict[str, Any]) -> pd.DataFrame:
    """Complete runs with a finite error_top1; the rest goes to ``excluded``."""
    rows, bad = split_complete(rows)
    excluded["non_complete"] += bad
    if rows.empty:
        return rows
    err = pd.to_numeric(_col(rows, "error_top1"), errors="coerce")
    excluded["no_error_top1"] += [str(p) for p in rows.loc[~np.isfinite(err), "path"]]
    return rows[np.isfinite(err)]


def error_stats(rows: pd.DataFrame, what: str) -> dict[str, Any]:
    """``error_top1`` of complete runs over seeds: n, mean, std (ddof=1, null for one seed),
    seeds, per_seed, runs, methods (Figs. 7, 8a)."""
    runs = runs_by_seed(rows, what)
    err = {int(r["seed"]): float(r["error_top1"]) for _, r in rows.iterrows()}
    v = np.array([err[s] for s in runs])
    return {"n": len(v), "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else None, "seeds": list(runs),
            "per_seed": {str(s): err[s] for s in runs},
            "runs": {str(s): p for s, p in runs.items()},
            "methods": sorted(set(rows["method"].astype(str)))}


def paired_vs_baseline(base: Mapping[str, Any] | None, point: Mapping[str, Any]) -> dict[str, Any]:
    """What the paired design measures (Figs. 7, 8a): the configuration's error minus the
    baseline's, seed by seed, with the paired 95% CI of its mean
    (:func:`gal_suite.stats.ci_paired_diff`; null with fewer than 2 pairs)."""
    a = {} if not base else base["per_seed"]
    b = point["per_seed"]
    seeds = sorted((s for s in set(a) & set(b)), key=int)
    d = paired_diffs(a, b)
    lo, hi = ci_paired_diff(a, b)
    ok = bool(np.isfinite(lo) and np.isfinite(hi))
    return {"n": len(seeds), "seeds": [int(s) for s in seeds],
            "diff_per_seed": {s: float(b[s]) - float(a[s]) for s in seeds},
            "mean_diff": float(d.mean()) if len(d) else None,
            "ci95": [float(lo), float(hi)] if ok else None,
            "ci_excludes_zero": bool(lo > 0 or hi < 0) if ok else None}


def draw_paired(ax: Any, xs: Sequence[float], points: Sequence[Mapping[str, Any]], color: str,
                label: str) -> None:
    """Mean paired difference (configuration − baseline) per point with its 95% CI as error bar
    (a point without a CI, fewer than 2 pairs, is drawn hollow without a bar)."""
    for x, q in zip(xs, points, strict=True):
        pr = q["paired"]
        if pr["mean_diff"] is None:
            continue
        if pr["ci95"] is None:
            ax.plot([x], [pr["mean_diff"]], "o", mfc="none", color=color)
            continue
        lo, hi = pr["ci95"]
        ax.errorbar([x], [pr["mean_diff"]], [[pr["mean_diff"] - lo], [hi - pr["mean_diff"]]],
                    color=color, marker="o", capsize=3, label=label)
        label = "_nolegend_"
    ax.axhline(0.0, color="k", lw=0.7)


def x_order(key: str, xs: Sequence[Any]) -> list[Any]:
    """The values of setting ``key`` in plotting order: architectures by depth in the paper's
    order (Fig. 7), policies in Algorithm 1's order (Fig. 8a), numbers ascending."""
    if key == "arch":
        return _ordered(sorted(xs, key=lambda a: (a.count("-"), a)), PAPER_ARCHS)
    if key == "policy":
        return _ordered(sorted(xs), POLICY_ORDER)
    return sorted(xs)


def sweep_points(rows: pd.DataFrame, key: str, what: str, excluded: dict[str, Any]) -> list[dict]:
    """The points of the ``key`` sweep: per value of the runs' ``gal_<key>`` column (runs without
    one go to ``excluded``), x, its label, whether the ``gal`` run is there (the default point)
    and :func:`error_stats` (Figs. 7, 8a)."""
    xs = [gal_setting(r, key) for _, r in rows.iterrows()]
    excluded["no_setting"] += [{"path": str(p), "setting": key} for p, x in
                               zip(rows["path"], xs, strict=True) if x is None]
    out = []
    for x in x_order(key, list({x for x in xs if x is not None})):
        sel = rows[[v == x for v in xs]]
        st = error_stats(sel, f"{what} {key}={x}")
        label = f"({x})" if key == "arch" else x if isinstance(x, str) else f"{x:g}"
        out.append({"x": x, "label": label, "default": "gal" in st["methods"], **st})
    return out


def by_dataset(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``[(dataset, its records)]``, datasets sorted: one block of panels each (Figs. 7, 8)."""
    return [(d, df[df["dataset"].astype(str) == d]) for d in sorted(set(df["dataset"].astype(str)))]


def dataset_head(sub: pd.DataFrame) -> dict[str, Any]:
    """The dataset, its label and the model of one block of records (Figs. 7, 8)."""
    r0 = sub.iloc[0]
    return {"dataset": str(r0["dataset"]), "dataset_label": _str(r0.get("dataset_label")) or
            str(r0["dataset"]), "model": _str(r0.get("model"))}


def mean_std_cell(st: Mapping[str, Any] | None) -> str:
    """``mean ± std (n=k)`` of :func:`error_stats` for the md of Figs. 7 and 8; "n/a" if none."""
    if not st:
        return "n/a"
    sd = "" if st["std"] is None else f" ± {st['std']:.3g}"
    return f"{st['mean']:.4g}{sd} (n={st['n']})"


def paired_cell(pr: Mapping[str, Any]) -> str:
    """``GAL − baseline`` paired by seed: mean [95% CI] (n pairs)."""
    if pr["mean_diff"] is None:
        return "n/a (no paired seed)"
    ci = "no CI" if pr["ci95"] is None else f"[{pr['ci95'][0]:+.3g}, {pr['ci95'][1]:+.3g}]"
    return f"{pr['mean_diff']:+.3g} {ci} (n={pr['n']})"


def yes_no(v: Any) -> str:
    """``True``/``False``/``None`` as "yes"/"no"/"n/a" (the checks in the md of Figs. 7, 8)."""
    return {True: "yes", False: "no", None: "n/a"}[v]
