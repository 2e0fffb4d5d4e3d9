"""Paired contrasts between two method rows of a table, beyond GAL − baseline.

A control (Table IV: the noise adjuster at GAL's α, GAL with h frozen at its initialisation)
answers its own question by a paired difference: "noise − baseline" asks whether any small bias
on the boxes moves the result, "GAL − GAL with frozen h" whether the learned h does. Each
contrast is the mean of the per-seed differences B − A over the seeds both arms share, its 95%
paired t interval (:func:`gal_suite.stats.ci_paired_diff`) and where that interval lies
(:func:`gal_suite.verdict.direction_verdict`; the paper has no value for a control, so there is no
verdict against a paper effect). Every contrast of a table is one test of Holm's adjustment
(:func:`gal_suite.verdict.holm`), apart from the family of GAL − baseline verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from gal_suite import stats as gs
from gal_suite.tables.cells import fmt_num

__all__ = ["Contrast", "contrast_cell", "contrast_rows", "contrast_stats", "holm_contrasts", "CONTRAST_NOTE"]

CONTRAST_NOTE = (
    "Contrasts (rows 'Δ B − A'): mean of the per-seed differences B − A over the seeds both arms "
    "share, [95% paired t CI], n; then where the CI lies ('B better' / 'B worse': it excludes 0; "
    "'no difference resolved': it holds 0) and '(Holm ✓/✗)': whether a resolved difference "
    "survives Holm's adjustment across all contrasts of the table. The paper has no control rows, "
    "so contrasts have no verdict against a paper effect.")


@dataclass(frozen=True)
class Contrast:
    """The paired difference ``b − a`` of two method keys, shown as a row labelled ``label``."""

    b: str
    a: str
    label: str


def contrast_stats(a: pd.DataFrame, b: pd.DataFrame, metric: str, higher_is_better: bool
                   ) -> dict[str, Any]:
    """``{"n", "mean", "ci", "p", "direction"}`` of ``b − a`` on ``metric``, paired by seed."""
    d = gs.paired_diffs(gs.by_seed(a, metric), gs.by_seed(b, metric))
    n = int(len(d))
    ci = gs.t_interval(d)  # (nan, nan) below 2 pairs
    p = math.nan
    if n >= 2:
        from scipy import stats as st

        p = float(st.ttest_1samp(d, 0.0).pvalue) if float(d.std()) > 0 else (0.0 if d.mean() else 1.0)
    return {"n": n, "mean": float(d.mean()) if n else math.nan, "ci": ci, "p": p,
            "direction": gs.direction_verdict(ci, higher_is_better) if n >= 2 else ""}


def contrast_cell(c: Mapping[str, Any], contrast: Contrast, digits: int) -> str:
    """The display cell of one contrast (Holm's mark added later by :func:`holm_contrasts`)."""
    if not c["n"]:
        return "—"
    lo, hi = c["ci"]
    ci = f" [{fmt_num(lo, digits)}, {fmt_num(hi, digits)}]" if math.isfinite(lo) else ""
    where = c["direction"].replace("B ", f"{contrast.b} ") if c["direction"] else ""
    return f"{c['mean']:+.{digits}f}{ci} n={c['n']}" + (f"; {where}" if where else "")


def holm_contrasts(cells: Sequence[tuple[dict[str, Any], dict[str, str], str]]) -> None:
    """Mark every resolved contrast cell ``(stats, row, column)`` with "(Holm ✓/✗)", Holm's
    adjustment across all contrasts of the table at α = 0.05."""
    adj = gs.holm([c["p"] for c, _, _ in cells])
    for (c, row, col), p in zip(cells, adj, strict=True):
        c["holm_p"] = p
        if c["direction"] and c["direction"] != "no difference resolved":
            row[col] += f" (Holm {'✓' if p < gs.ALPHA else '✗'})"


def contrast_rows(spec: Any, shown: Mapping[str, str], group: Mapping[str, Any],
                   ok_by_method: Mapping[str, pd.DataFrame], cells: list[Any],
                   comparisons: list[Any]) -> list[dict[str, str]]:
    """One row per contrast of ``spec`` (a :class:`gal_suite.tables.spec.TableSpec`) whose two arms
    both have complete runs in this group; each metric's cell goes to ``cells`` (for
    :func:`holm_contrasts`) and its numbers to ``comparisons`` (the numeric table)."""
    rows = []
    for con in spec.contrasts:
        a, b = ok_by_method.get(con.a), ok_by_method.get(con.b)
        if a is None or b is None or not len(a) or not len(b):
            continue
        r = {**shown, "Method": con.label, "n": "", "check": ""}
        for m in spec.metrics:
            c = contrast_stats(a, b, m.key, m.higher_is_better)
            r[f"{m.label} ours"] = contrast_cell(c, con, spec.digits)
            if c["n"]:
                cells.append((c, r, f"{m.label} ours"))
                comparisons.append(({**group, "method": f"{con.b}_vs_{con.a}", "metric": m.key},
                                    {"paired_mean_diff": c["mean"], "ci_low": c["ci"][0],
                                     "ci_high": c["ci"][1], "p": c["p"], "n": c["n"],
                                     "direction": c["direction"]}))
        rows.append(r)
    return rows
