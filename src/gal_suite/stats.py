"""Statistics over seeds (Tables I, II and V of the paper), with ``scipy.stats``.

* :func:`summarize` -- mean ± std over seeds. **std uses ddof=1** (sample standard deviation).
  Evidence: Table V of the paper reports mean±std over 5 seeds and the two-sample t-test of
  baseline vs. proposed. Feeding its mean/std (n=5) into the pooled Student test reproduces the
  paper's t and p only if the stds are ddof=1 stds (Boston MAE: t=5.03, p=1.02e-3 vs. the
  paper's (5.02, 1.02e-03); with ddof=0 stds it would be t=4.50, p=2.0e-3); all nine t-test cells
  agree the same way (checked in tests/test_stats.py).
* :func:`ttest_student` -- the paper's two-sample t-test (Table V), Student's, equal variances
  (``scipy.stats.ttest_ind``). Sign convention as the paper: ``t = (mean(a) - mean(b)) / se``
  with ``a`` = baseline, ``b`` = GAL, so a lower GAL error gives t > 0.
* :func:`ttest_welch` -- Welch's unequal-variance t-test.
* :func:`ttest_paired` -- paired t-test (``scipy.stats.ttest_rel``) over the seeds present in both
  arms (baseline and GAL runs of one seed share split, init and batch order).
* :func:`ci_mean_diff` -- 95% CI of ``mean(b) - mean(a)`` with the Welch-Satterthwaite df.
* :func:`ci_paired_diff` -- 95% CI of the mean paired difference ``mean(b_i - a_i)``, t(n-1).
* :func:`mde_paired` -- minimum detectable effect of the paired t-test (noncentral t): the
  smallest true mean difference that n pairs with the observed SD of the differences would detect
  with 80% power at alpha = 0.05. It says how large an effect a table cell could have seen at all
  (e.g. the paper's Table I/II gains of 0.1-0.4 points against our seed-to-seed noise).
* :func:`compare` -- all of the above for two sets of run records, per metric (``gal compare``).
* :func:`paired_verdict` -- the reproduction rule of every table (:data:`VERDICT_RULE`), on the
  points scale and (``verdict_rel``) on the relative scale GAL/baseline − 1; :func:`holm` adjusts
  a table's p-values for its many rows (``statsmodels``). Both live in :mod:`gal_suite.verdict` and are
  re-exported here.

Failed runs (``status != "complete"``, e.g. NaN/inf metrics) are excluded and counted, never
averaged.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as st

from gal_suite.verdict import (
    ALPHA,
    HOLM_NOTE,
    HOLM_NOTE_NO_ROW,
    SCALE_NOTE,
    VERDICT_RULE,
    VERDICTS,
    direction_verdict,
    holm,
    paired_verdict,
    relative_diffs,
    relative_paper_diff,
    survives_holm,
)

__all__ = [
    "DDOF", "ALPHA", "Summary", "TestResult", "summarize", "ttest_student", "ttest_welch",
    "ttest_paired", "ci_mean_diff", "paired_diffs", "t_interval", "ci_paired_diff", "mde_paired", "VERDICTS",
    "VERDICT_RULE", "HOLM_NOTE", "HOLM_NOTE_NO_ROW", "SCALE_NOTE", "paired_verdict", "direction_verdict", "primary_ci",
    "relative_diffs", "relative_paper_diff", "holm", "ttest_against", "survives_holm",
    "complete_runs", "compare_values", "compare"
]

#: ddof of the reported std (see module docstring for the evidence from Table V).
DDOF = 1


@dataclass(frozen=True)
class Summary:
    """n, mean and std (ddof=:data:`DDOF`) of one metric over seeds."""

    n: int
    mean: float
    std: float

    def fmt(self, digits: int = 4) -> str:
        if self.n == 0:
            return "—"
        if self.n == 1 or not math.isfinite(self.std):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass(frozen=True)
class TestResult:
    """A t-test result: statistic, two-sided p value, degrees of freedom, n used."""

    t: float
    p: float
    df: float
    n: int


def _clean(x: Iterable[Any]) -> np.ndarray:
    a = np.asarray(list(x), dtype=float).ravel()
    return a[np.isfinite(a)]


def summarize(values: Iterable[float], ddof: int = DDOF) -> Summary:
    """Mean ± std over seeds (Table V's "mean±std"); non-finite values are dropped."""
    a = _clean(values)
    n = int(a.size)
    if n == 0:
        return Summary(0, math.nan, math.nan)
    std = float(np.std(a, ddof=ddof)) if n > ddof else math.nan
    return Summary(n, float(np.mean(a)), std)


def _nan_test(n: int) -> TestResult:
    return TestResult(math.nan, math.nan, math.nan, n)


def _result(res: Any, n: int) -> TestResult:
    df = getattr(res, "df", math.nan)
    return TestResult(float(res.statistic), float(res.pvalue), float(df), n)


def _ttest_ind(a: Iterable[float], b: Iterable[float], equal_var: bool) -> TestResult:
    x, y = _clean(a), _clean(b)
    if x.size < 2 or y.size < 2:
        return _nan_test(int(x.size + y.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _result(st.ttest_ind(x, y, equal_var=equal_var), int(x.size + y.size))


def ttest_student(a: Iterable[float], b: Iterable[float]) -> TestResult:
    """The paper's two-sample t-test (Table V): Student's, pooled variance, two-sided.

    ``t = (mean(a) - mean(b)) / (s_p * sqrt(1/n_a + 1/n_b))``, df = n_a + n_b - 2.
    """
    return _ttest_ind(a, b, equal_var=True)


def ttest_welch(a: Iterable[float], b: Iterable[float]) -> TestResult:
    """Welch's two-sample t-test (unequal variances, Welch-Satterthwaite df), two-sided."""
    return _ttest_ind(a, b, equal_var=False)


def paired_diffs(a: Mapping[Any, float], b: Mapping[Any, float]) -> np.ndarray:
    """``b_i - a_i`` over the keys (seeds) present in both mappings with finite values, in key
    order (the pairs of :func:`ttest_paired`)."""
    keys = sorted(
        k for k in set(a) & set(b)
        if math.isfinite(float(a[k])) and math.isfinite(float(b[k]))
    )
    return np.array([float(b[k]) - float(a[k]) for k in keys], dtype=float)


def ttest_paired(a: Mapping[Any, float], b: Mapping[Any, float]) -> TestResult:
    """Paired t-test (``scipy.stats.ttest_rel``) over the keys (seeds) present in both mappings
    with finite values; ``t = mean(a_i - b_i) / (sd(a_i - b_i) / sqrt(n))``, df = n - 1."""
    keys = sorted(
        k for k in set(a) & set(b)
        if math.isfinite(float(a[k])) and math.isfinite(float(b[k]))
    )
    n = len(keys)
    if n < 2:
        return _nan_test(n)
    x = np.array([float(a[k]) for k in keys])
    y = np.array([float(b[k]) for k in keys])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _result(st.ttest_rel(x, y), n)


def t_interval(d: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Two-sided t interval of ``mean(d)``: ``mean(d) ± t_{(1+level)/2, n-1} * sd(d) / sqrt(n)``
    (sd ddof=1). Returns (nan, nan) with fewer than 2 values."""
    x = np.asarray(d, dtype=float)
    n = int(x.size)
    if n < 2:
        return (math.nan, math.nan)
    m = float(x.mean())
    se = float(x.std(ddof=1)) / math.sqrt(n)
    q = float(st.t.ppf(0.5 + level / 2.0, n - 1))
    return (m - q * se, m + q * se)


def ci_paired_diff(
    a: Mapping[Any, float], b: Mapping[Any, float], level: float = 0.95
) -> tuple[float, float]:
    """Confidence interval of the mean paired difference ``mean(b_i - a_i)`` over the seeds in
    both mappings (Tables I/II: GAL - baseline per seed), :func:`t_interval` of the differences in
    seed order. Returns (nan, nan) with fewer than 2 pairs."""
    return t_interval(paired_diffs(a, b), level)


def _paired_power(nc: float, df: int, t_crit: float) -> float:
    """Power of the two-sided one-sample t-test, ``P(|T| > t_crit)`` for T ~ nct(df, nc).

    The lower tail ``P(T < -t_crit)`` is computed as ``nct.sf(t_crit, df, -nc)`` (symmetry),
    which stays finite where ``nct.cdf`` far in the left tail returns NaN."""
    upper = float(st.nct.sf(t_crit, df, nc))
    lower = float(st.nct.sf(t_crit, df, -nc))
    return upper + (lower if math.isfinite(lower) else 0.0)


def mde_paired(sd_diff: float, n: int, alpha: float = ALPHA, power: float = 0.8) -> float:
    """Minimum detectable effect of a two-sided paired t-test with ``n`` pairs.

    The smallest true mean difference ``delta`` that the test at level ``alpha`` detects with
    probability ``power`` when the paired differences have standard deviation ``sd_diff``:
    solves ``P(|T| > t_{1-alpha/2, n-1}) = power`` for ``T ~ nct(df=n-1, nc=delta*sqrt(n)/sd_diff)``
    exactly (``scipy.stats.nct`` + ``scipy.optimize.brentq``), no normal approximation. For
    large n it tends to ``(z_{1-alpha/2} + z_{power}) * sd_diff / sqrt(n)``.

    Used as the "MDE (paired, 80% power)" row of Tables I, II and V: an MDE larger than the
    paper's improvement means our seeds could not have confirmed that improvement.
    Returns NaN when ``n < 2`` or ``sd_diff`` is not finite, and 0 when ``sd_diff == 0``.
    """
    if not 0.0 < alpha < 1.0 or not alpha < power < 1.0:
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    n = int(n)
    sd = float(sd_diff)
    if n < 2 or not math.isfinite(sd):
        return math.nan
    sd = abs(sd)
    if sd == 0.0:
        return 0.0
    df = n - 1
    t_crit = float(st.t.ppf(1.0 - alpha / 2.0, df))
    hi = max(1.0, 2.0 * (st.norm.ppf(1.0 - alpha / 2.0) + st.norm.ppf(power)))
    while _paired_power(hi, df, t_crit) < power:
        hi *= 2.0
        if hi > 1e8:  # pragma: no cover - cannot happen for df >= 1
            return math.nan
    nc = optimize.brentq(lambda x: _paired_power(x, df, t_crit) - power, 0.0, hi, xtol=1e-12, rtol=1e-12)
    return float(nc) * sd / math.sqrt(n)


def ci_mean_diff(a: Iterable[float], b: Iterable[float], level: float = 0.95) -> tuple[float, float]:
    """Confidence interval of ``mean(b) - mean(a)`` (Welch-Satterthwaite df).

    ``se = sqrt(s_a^2/n_a + s_b^2/n_b)``,
    ``df = se^4 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1))``,
    ``diff ± t_{(1+level)/2, df} * se``. Returns (nan, nan) with fewer than 2 runs per arm.
    """
    x, y = _clean(a), _clean(b)
    if x.size < 2 or y.size < 2:
        return (math.nan, math.nan)
    diff = float(y.mean() - x.mean())
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    if se == 0.0:
        return (diff, diff)
    df = se**4 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    q = float(st.t.ppf(0.5 + level / 2.0, df))
    return (diff - q * se, diff + q * se)


def primary_ci(
    a: Sequence[float], b: Sequence[float],
    a_by_seed: Mapping[Any, float] | None, b_by_seed: Mapping[Any, float] | None,
    level: float = 0.95,
) -> tuple[tuple[float, float], str]:
    """(the rule's CI of GAL − baseline, its kind "paired" or "welch"): the paired CI over the
    seeds in both arms when there are at least 2 such pairs, else Welch's CI."""
    if paired_diffs(a_by_seed or {}, b_by_seed or {}).size >= 2:
        return ci_paired_diff(a_by_seed or {}, b_by_seed or {}, level), "paired"
    return ci_mean_diff(a, b, level), "welch"


def ttest_against(d: Sequence[float], value: float) -> float:
    """Two-sided p of the one-sample t-test of mean(d) = ``value`` (NaN with < 2 values): the test
    behind 'not reproduced' (our paired differences against the paper's effect)."""
    x = _clean(d)
    if x.size < 2 or value is None or not math.isfinite(value):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(st.ttest_1samp(x, value).pvalue)


def complete_runs(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(complete runs, number of non-complete runs) of a load_runs frame. Failed runs are
    excluded from every aggregate and only counted."""
    if len(df) == 0:
        return df, 0
    ok = df["status"] == "complete"
    return df[ok], int((~ok).sum())


def by_seed(df: pd.DataFrame, metric: str, seed_col: str = "seed") -> dict[Any, float]:
    """``{seed: value}`` of one metric over the runs of a ``load_runs`` frame (NaNs skipped)."""
    out: dict[Any, float] = {}
    if seed_col not in df.columns or metric not in df.columns:
        return out
    for s, v in zip(df[seed_col], df[metric], strict=True):
        if pd.notna(s) and pd.notna(v):
            out[int(s) if float(s).is_integer() else s] = float(v)
    return out


def compare_values(
    a: Sequence[float],
    b: Sequence[float],
    higher_is_better: bool,
    a_by_seed: Mapping[Any, float] | None = None,
    b_by_seed: Mapping[Any, float] | None = None,
    paper_diff: float | None = None,
    paper_rel: float | None = None,
) -> dict[str, Any]:
    """All statistics for one metric, A (baseline) vs. B (GAL); keys as in :func:`compare`.

    ``paper_diff`` is the paper's GAL − baseline difference for this cell (points) and
    ``paper_rel`` the same on the relative scale (paper GAL / paper baseline − 1), if the paper
    has them. ``rule_ci_*`` is the rule's primary CI (:func:`primary_ci`, kind in ``ci_kind``),
    ``verdict`` its :func:`paired_verdict` against ``paper_diff``; ``rel_ci_*`` and
    ``verdict_rel`` the same on the per-seed relative differences (:func:`relative_diffs`) against
    ``paper_rel``; ``direction`` the :func:`direction_verdict` of the primary CI. ``sd_diff`` is
    the SD (ddof=1) of the paired differences and ``mde`` the paired test's minimum detectable
    effect at 80% power (:func:`mde_paired`), both NaN with fewer than 2 pairs; ``p_vs_paper`` the
    paired differences' t-test against ``paper_diff`` (what 'not reproduced' rests on)."""
    a_seed, b_seed = a_by_seed or {}, b_by_seed or {}
    sa, sb = summarize(a), summarize(b)
    stu, wel = ttest_student(a, b), ttest_welch(a, b)
    pair = ttest_paired(a_seed, b_seed)
    d = paired_diffs(a_seed, b_seed)
    sd_diff = float(d.std(ddof=1)) if d.size >= 2 else math.nan
    lo, hi = ci_mean_diff(a, b)
    rule_ci, kind = primary_ci(a, b, a_seed, b_seed)
    rel = relative_diffs(a_seed, b_seed)
    rel_ci = t_interval([rel[k] for k in sorted(rel)])
    return {
        "n_a": sa.n, "mean_a": sa.mean, "std_a": sa.std,
        "n_b": sb.n, "mean_b": sb.mean, "std_b": sb.std,
        "diff": sb.mean - sa.mean if sa.n and sb.n else math.nan,
        "ci_low": lo, "ci_high": hi,
        "t": stu.t, "p": stu.p,
        "welch_t": wel.t, "welch_p": wel.p, "welch_df": wel.df,
        "paired_n": pair.n, "paired_t": pair.t, "paired_p": pair.p,
        "sd_diff": sd_diff, "mde": mde_paired(sd_diff, pair.n),
        "higher_is_better": bool(higher_is_better),
        "ci_kind": kind, "rule_ci_low": rule_ci[0], "rule_ci_high": rule_ci[1],
        "rule_p": pair.p if kind == "paired" else wel.p,
        "p_vs_paper": ttest_against(d, paper_diff) if kind == "paired" and paper_diff is not None
        else math.nan,
        "rel_mean": float(np.mean(list(rel.values()))) if rel else math.nan,
        "rel_p": ttest_against(list(rel.values()), 0.0),
        "rel_p_vs_paper": ttest_against(list(rel.values()), paper_rel) if paper_rel is not None
        else math.nan,
        "rel_ci_low": rel_ci[0], "rel_ci_high": rel_ci[1],
        "paper_diff": math.nan if paper_diff is None else float(paper_diff),
        "paper_rel": math.nan if paper_rel is None else float(paper_rel),
        "verdict": paired_verdict(rule_ci, paper_diff),
        "verdict_rel": paired_verdict(rel_ci, paper_rel),
        "direction": direction_verdict(rule_ci, higher_is_better),
    }


def compare(
    df_a: pd.DataFrame,
    df_b: pd.DataFrame,
    metrics: Sequence[str],
    higher_is_better: Mapping[str, bool],
    seed_col: str = "seed",
) -> pd.DataFrame:
    """Compare two sets of run records (``load_runs`` frames), A = baseline, B = GAL.

    One row per metric with: ``metric, n_a, mean_a, std_a, n_b, mean_b, std_b, failed_a,
    failed_b, diff`` (= mean_b - mean_a), ``ci_low, ci_high`` (95% Welch CI of diff), ``t, p``
    (Student, the paper's Table V test, t sign = A - B), ``welch_t, welch_p, welch_df,
    paired_n, paired_t, paired_p`` (over seeds present in both), ``sd_diff, mde`` (SD of the
    paired differences and the paired test's minimum detectable effect, 80% power),
    ``higher_is_better``, ``ci_kind, rule_ci_low, rule_ci_high`` (the verdict rule's CI) and
    ``direction`` (:func:`direction_verdict`: no paper effect here, so no reproduction verdict).
    Failed runs are excluded and counted in ``failed_a``/``failed_b``.
    """
    ca, fa = complete_runs(df_a)
    cb, fb = complete_runs(df_b)
    rows = []
    for m in metrics:
        hib = bool(higher_is_better.get(m, False))
        va = ca[m].tolist() if m in ca.columns else []
        vb = cb[m].tolist() if m in cb.columns else []
        r = compare_values(
            va, vb, hib,
            by_seed(ca, m, seed_col) if m in ca.columns else {},
            by_seed(cb, m, seed_col) if m in cb.columns else {},
        )
        rows.append({"metric": m, **r, "failed_a": fa, "failed_b": fb})
    cols = ["metric", "n_a", "mean_a", "std_a", "n_b", "mean_b", "std_b", "failed_a", "failed_b",
            "diff", "ci_low", "ci_high", "t", "p", "welch_t", "welch_p", "welch_df",
            "paired_n", "paired_t", "paired_p", "sd_diff", "mde", "higher_is_better", "ci_kind",
            "rule_ci_low", "rule_ci_high", "direction"]
    return pd.DataFrame(rows, columns=cols)
