"""The reproduction rule of every table (:data:`VERDICT_RULE`) and its multiple-comparison and
relative-scale helpers.

* :func:`paired_verdict` -- the verdict class of a CI of GAL − baseline against the paper's own
  difference; :func:`direction_verdict` -- where a CI lies when there is no paper effect.
* :func:`relative_diffs`, :func:`relative_paper_diff` -- the relative scale GAL/baseline − 1.
* :func:`holm`, :func:`survives_holm` -- Holm's adjustment across a table's verdicts.

The t-tests and intervals the rule is applied to are in :mod:`gal_suite.stats`, which re-exports
everything here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ALPHA",
    "VERDICTS",
    "VERDICT_RULE",
    "HOLM_NOTE",
    "HOLM_NOTE_NO_ROW",
    "SCALE_NOTE",
    "paired_verdict",
    "direction_verdict",
    "relative_diffs",
    "relative_paper_diff",
    "holm",
    "survives_holm",
]

#: significance level of the verdict rule.
ALPHA = 0.05

_HOLM_NOTE_HEAD = (
    "Multiple comparisons: every verdict of this table is one test; '(Holm ✓)' = the verdict "
    "survives Holm's adjustment across all of them (the tests it rests on: against 0 for "
    "'reproduced', 'opposite' and 'same direction, …', against the paper's Δ for 'not reproduced' "
    "and 'same direction, …'), '(Holm ✗)' = it does not and reads as a lead only; "
)
#: header note on Holm's adjustment (tables with verdicts and a 'Holm p' row)
HOLM_NOTE = (_HOLM_NOTE_HEAD + "the 'Holm p' row gives the adjusted p-values of the paired tests "
             "(against 0; against the paper's Δ).")
#: the same for tables without a 'Holm p' row (Tables VI, VIII): where the adjusted p-values are
HOLM_NOTE_NO_ROW = (_HOLM_NOTE_HEAD + "the adjusted p-values of the paired tests (against 0; "
                    "against the paper's Δ) are in the table's _numeric.csv.")
#: header note on the two scales (tables with a "verdict rel." column)
SCALE_NOTE = (
    "Two scales: 'verdict' compares GAL − baseline in points with the paper's difference in "
    "points; 'verdict rel.' compares the per-seed GAL/baseline − 1 with the paper's "
    "GAL/baseline − 1. Our stand-ins' baselines are far from the paper's (e.g. about 24% vs 1.9% "
    "top-1 error), where a fixed number of points does not mean the same gain, so the summary "
    "(README) and the run-until-decided rule use the relative scale."
)

#: the verdict classes of :func:`paired_verdict`, in the order tables list them
VERDICTS = ("reproduced", "same direction, smaller", "same direction, larger", "not reproduced",
            "opposite", "inconclusive")

VERDICT_RULE = (
    "Verdict (one rule for every table and `gal compare`): the primary interval is the 95% CI of "
    "GAL − baseline over the paired seeds (baseline and GAL of one seed share initialisation, data "
    "order and augmentation; Welch's CI of the difference of means where the arms share fewer than "
    "2 seeds; the repeated CI of the stopping look where a row was run until decided). Against the "
    "paper's own GAL − baseline difference Δ: 'reproduced' = the CI excludes 0 on Δ's side and holds "
    "Δ; 'same direction, smaller' / 'same direction, larger' = it excludes 0 on Δ's side and "
    "excludes Δ (lying between 0 and Δ / beyond Δ); 'not reproduced' = it holds 0 and excludes Δ; "
    "'opposite' = it excludes 0 on the other side; 'inconclusive' = it holds both 0 and Δ. No "
    "verdict without a paper Δ. Student t (the paper's test) and Welch are shown as columns, they "
    "do not decide."
)


def paired_verdict(ci: tuple[float, float], paper_diff: float | None) -> str:
    """The verdict of :data:`VERDICT_RULE` from a CI of GAL − baseline and the paper's ``paper_diff``.

    The paper's direction is the sign of ``paper_diff`` (so a row the paper reports as *worse*,
    e.g. Table VI's unit noise, is "reproduced" when ours is worse too); the interval is closed
    (a bound equal to 0 or to ``paper_diff`` holds it). Returns "" without a finite, non-zero
    ``paper_diff`` (nothing to compare with) and "inconclusive" without a finite CI.
    """
    if paper_diff is None or not math.isfinite(paper_diff) or paper_diff == 0.0:
        return ""
    lo, hi = float(ci[0]), float(ci[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    sign = 1.0 if paper_diff > 0 else -1.0
    # in the paper's direction: positive = the way the paper moved
    lo_s, hi_s = sorted((sign * lo, sign * hi))
    eff = abs(paper_diff)
    if hi_s < 0.0:
        return "opposite"
    if lo_s > 0.0:
        if lo_s <= eff <= hi_s:
            return "reproduced"
        return "same direction, smaller" if hi_s < eff else "same direction, larger"
    return "inconclusive" if lo_s <= eff <= hi_s else "not reproduced"


def direction_verdict(ci: tuple[float, float], higher_is_better: bool) -> str:
    """Where a CI of B − A lies when there is no paper effect to test (``gal compare``): "B better",
    "B worse" (the CI excludes 0) or "no difference resolved"."""
    lo, hi = float(ci[0]), float(ci[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "no difference resolved"
    if lo > 0.0 or hi < 0.0:
        return "B better" if (lo > 0.0) == higher_is_better else "B worse"
    return "no difference resolved"


def relative_diffs(a: Mapping[Any, float], b: Mapping[Any, float]) -> dict[Any, float]:
    """Per-seed relative differences ``b_i / a_i − 1`` (GAL/baseline − 1) over the seeds in both
    mappings with a finite, non-zero ``a_i``: the relative scale of the verdict."""
    out = {}
    for k in set(a) & set(b):
        x, y = float(a[k]), float(b[k])
        if math.isfinite(x) and math.isfinite(y) and x != 0.0:
            out[k] = y / x - 1.0
    return out


def relative_paper_diff(paper_base: float | None, paper_gal: float | None) -> float | None:
    """The paper's effect on the relative scale, ``paper_gal / paper_base − 1`` (None if unknown)."""
    if paper_base is None or paper_gal is None or not paper_base:
        return None
    return float(paper_gal) / float(paper_base) - 1.0


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Holm-adjusted p-values (``statsmodels.stats.multitest.multipletests(method="holm")``) over
    the finite entries of ``pvalues``; non-finite entries stay NaN and do not count as tests."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=alpha, method="holm")[1]
    return [float(x) for x in out]


def survives_holm(verdict: str, p_zero_holm: float, p_paper_holm: float, alpha: float = ALPHA) -> bool:
    """Does a decided verdict survive Holm's adjustment across its table? Each verdict rests on
    the tests behind it: excluding 0 (Holm-adjusted p of the test against 0) for 'reproduced',
    'opposite' and 'same direction, …', excluding the paper's effect (Holm-adjusted p of the
    test against it) for 'not reproduced' and 'same direction, …'."""
    zero = math.isfinite(p_zero_holm) and p_zero_holm < alpha
    paper = math.isfinite(p_paper_holm) and p_paper_holm < alpha
    if verdict in ("reproduced", "opposite"):
        return zero
    if verdict.startswith("same direction"):
        return zero and paper
    if verdict == "not reproduced":
        return paper
    return False
