"""Statistics of Tables I, II and V: scipy AND independent hand formulas on fixed data; paper data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from gal_suite import paper_values as pv
from gal_suite.stats import (
    ci_mean_diff,
    ci_paired_diff,
    compare,
    compare_values,
    mde_paired,
    summarize,
    ttest_paired,
    ttest_student,
    ttest_welch,
)

A = [3.91, 4.52, 3.40, 4.10, 3.84]  # "baseline"
B = [2.95, 2.61, 3.12, 2.70, 2.66]  # "gal"
SEEDS = [0, 1, 2, 3, 4]


def test_summarize_ddof1():
    s = summarize(A)
    assert s.n == 5
    assert s.mean == pytest.approx(sum(A) / 5, abs=1e-12)
    hand = math.sqrt(sum((x - s.mean) ** 2 for x in A) / 4)
    assert s.std == pytest.approx(hand, rel=1e-12)
    assert summarize([1.0, float("nan"), 3.0]).n == 2  # non-finite dropped
    assert summarize([]).n == 0


def _same_as_scipy(r, equal_var):
    ref = st.ttest_ind(A, B, equal_var=equal_var)
    assert r.t == pytest.approx(ref.statistic, rel=1e-12)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-12)


def test_student_equals_scipy_and_hand():
    r = ttest_student(A, B)
    _same_as_scipy(r, equal_var=True)
    a, b = np.array(A), np.array(B)
    na, nb = len(a), len(b)
    sp2 = (((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()) / (na + nb - 2)
    t_hand = (a.mean() - b.mean()) / math.sqrt(sp2 * (1 / na + 1 / nb))
    p_hand = 2 * st.t.sf(abs(t_hand), na + nb - 2)
    assert r.t == pytest.approx(t_hand, rel=1e-10)
    assert r.p == pytest.approx(p_hand, rel=1e-8)
    assert r.df == na + nb - 2
    assert r.t > 0  # paper's sign: baseline - gal


def test_welch_equals_scipy_and_hand():
    r = ttest_welch(A, B)
    _same_as_scipy(r, equal_var=False)
    a, b = np.array(A), np.array(B)
    va, vb = a.var(ddof=1) / 5, b.var(ddof=1) / 5
    t_hand = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df_hand = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 4)
    assert r.t == pytest.approx(t_hand, rel=1e-10)
    assert r.df == pytest.approx(df_hand, rel=1e-10)
    assert r.p == pytest.approx(2 * st.t.sf(abs(t_hand), df_hand), rel=1e-8)


def test_paired_uses_shared_seeds_only():
    a = dict(zip(SEEDS, A, strict=True))
    b = dict(zip(SEEDS, B, strict=True))
    b_missing = {k: v for k, v in b.items() if k != 2}
    b_missing[9] = 100.0  # seed absent from a: ignored
    r = ttest_paired(a, b_missing)
    keys = [0, 1, 3, 4]
    ref = st.ttest_rel([a[k] for k in keys], [b[k] for k in keys])
    assert r.n == 4
    assert r.t == pytest.approx(ref.statistic, rel=1e-12)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-12)
    d = np.array([a[k] - b[k] for k in keys])
    t_hand = d.mean() / (d.std(ddof=1) / math.sqrt(4))
    assert r.t == pytest.approx(t_hand, rel=1e-10)
    assert r.p == pytest.approx(2 * st.t.sf(abs(t_hand), 3), rel=1e-8)
    assert math.isnan(ttest_paired({0: 1.0}, {0: 2.0}).p)


def test_ci_hand_and_scipy():
    lo, hi = ci_mean_diff(A, B)
    a, b = np.array(A), np.array(B)
    va, vb = a.var(ddof=1) / 5, b.var(ddof=1) / 5
    se = math.sqrt(va + vb)
    df = se**4 / (va**2 / 4 + vb**2 / 4)
    q = st.t.ppf(0.975, df)
    d = b.mean() - a.mean()
    assert lo == pytest.approx(d - q * se, rel=1e-10)
    assert hi == pytest.approx(d + q * se, rel=1e-10)
    # scipy's Welch CI is for mean(x) - mean(y): call with (B, A)
    ref = st.ttest_ind(B, A, equal_var=False).confidence_interval(0.95)
    assert lo == pytest.approx(ref.low, rel=1e-8) and hi == pytest.approx(ref.high, rel=1e-8)
    assert hi < 0  # GAL lower error
    assert all(math.isnan(x) for x in ci_mean_diff([1.0], B))


def _runs(values, seeds, status=None):
    status = status or ["complete"] * len(values)
    return pd.DataFrame({"mae": values, "r2": [-v for v in values], "seed": seeds, "status": status})


def test_compare_excludes_failed_and_counts_them():
    da = _runs(A + [float("nan")], SEEDS + [5], ["complete"] * 5 + ["failed"])
    db = _runs(B + [1e9], SEEDS + [5], ["complete"] * 5 + ["failed"])
    out = compare(da, db, ["mae", "r2"], {"mae": False, "r2": True}).set_index("metric")
    m = out.loc["mae"]
    assert m["n_a"] == 5 and m["n_b"] == 5 and m["failed_a"] == 1 and m["failed_b"] == 1
    assert m["mean_b"] == pytest.approx(np.mean(B))  # the 1e9 failed run is not averaged
    assert m["p"] == pytest.approx(st.ttest_ind(A, B).pvalue, rel=1e-12)
    assert m["welch_p"] == pytest.approx(st.ttest_ind(A, B, equal_var=False).pvalue, rel=1e-12)
    assert m["paired_n"] == 5
    assert m["paired_p"] == pytest.approx(st.ttest_rel(A, B).pvalue, rel=1e-12)
    assert m["diff"] == pytest.approx(np.mean(B) - np.mean(A))
    assert m["ci_kind"] == "paired" and m["direction"] == "B better"
    lo, hi = ci_paired_diff(dict(zip(SEEDS, A, strict=True)), dict(zip(SEEDS, B, strict=True)))
    assert (m["rule_ci_low"], m["rule_ci_high"]) == (lo, hi)
    # r2 = -mae here: GAL higher r2 -> better in the higher-is-better direction
    assert out.loc["r2", "direction"] == "B better"
    flipped = compare(da, db, ["mae"], {"mae": True}).set_index("metric")
    assert flipped.loc["mae", "direction"] == "B worse"


def test_paper_table5_ttests_match_ddof1_stds():
    """Evidence for DDOF=1: the paper's own t/p follow from its mean±std only if std has ddof=1."""
    for ds in ("boston", "diabetes", "california"):
        for m in ("mae", "mse", "r2"):
            b, g = pv.table5_value(ds, "baseline", m), pv.table5_value(ds, "gal", m)
            tt = pv.table5_ttest(ds, m)
            r1 = st.ttest_ind_from_stats(b["mean"], b["std"], 5, g["mean"], g["std"], 5)
            c = math.sqrt(5 / 4)
            r0 = st.ttest_ind_from_stats(b["mean"], b["std"] * c, 5, g["mean"], g["std"] * c, 5)
            assert r1.statistic == pytest.approx(tt["t"], rel=0.01), (ds, m)
            assert r1.pvalue == pytest.approx(tt["p"], rel=0.05), (ds, m)
            assert abs(r0.statistic - tt["t"]) > 0.3  # ddof=0 reading does not fit


def test_paper_values_tables_complete_and_typed():
    counts = {1: 10, 2: 10, 3: 7, 4: 6, 5: 9, 6: 4, 7: 6, 8: 8}
    for t, n in counts.items():
        rows = pv.table(t)["rows"]
        assert len(rows) == n, t
        assert len({r["key"] for r in rows}) == n, t  # unique row keys
        for r in rows:
            assert set(r["values"]) <= set(pv.table(t)["columns"]), (t, r["key"])
    for ds in ("boston", "diabetes", "california"):
        for m in ("mae", "mse", "r2"):
            for meth in ("baseline", "gal"):
                v = pv.table5_value(ds, meth, m)
                assert isinstance(v["mean"], float) and isinstance(v["std"], float)
            tt = pv.table5_ttest(ds, m)
            assert isinstance(tt["t"], float) and isinstance(tt["p"], float) and tt["p"] < 0.05
    assert pv.table5_value("boston", "gal_alpha0", "mae") is None
    assert pv.value(2, "densenet121_adabound_ref", "error") is None  # "-" in the paper
    assert pv.value(6, "normal/eq4", "error") == 11.65
    assert pv.value(4, "detr_r50_gal", "ap") == 39.61


# --------------------------------------------------------------------------- MDE, paired CI
def test_mde_large_n_matches_normal_approximation():
    """Independent route: for large n the t-test MDE tends to (z_{1-a/2} + z_power) sd / sqrt(n)."""
    for sd, alpha, power in ((1.0, 0.05, 0.8), (0.37, 0.05, 0.9), (2.0, 0.01, 0.8)):
        z = st.norm.ppf(1 - alpha / 2) + st.norm.ppf(power)
        approx = z * sd / math.sqrt(1000)
        exact = mde_paired(sd, 1000, alpha=alpha, power=power)
        assert exact == pytest.approx(approx, rel=0.005)
        assert exact > approx  # t quantiles are wider than z quantiles
    # small n: the exact MDE is much larger than the normal approximation (t(4) tails)
    assert mde_paired(1.0, 5) > 1.25 * 2.8016 / math.sqrt(5)


def test_mde_monte_carlo_power_n5():
    """Independent route: simulate paired t-tests with true mean difference = MDE; the
    rejection rate must be the requested power."""
    sd, n = 0.7, 5
    mde = mde_paired(sd, n)
    rng = np.random.default_rng(12345)
    sims = 40_000
    d = rng.normal(mde, sd, size=(sims, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    rate = np.mean(np.abs(t) > st.t.ppf(0.975, n - 1))
    assert rate == pytest.approx(0.8, abs=0.012)  # MC se ~0.002
    # and at half the MDE the power is clearly lower
    d2 = rng.normal(mde / 2, sd, size=(sims, n))
    t2 = d2.mean(axis=1) / (d2.std(axis=1, ddof=1) / math.sqrt(n))
    assert np.mean(np.abs(t2) > st.t.ppf(0.975, n - 1)) < 0.4


def test_mde_edge_cases_and_scaling():
    assert math.isnan(mde_paired(1.0, 1))
    assert math.isnan(mde_paired(1.0, 0))
    assert math.isnan(mde_paired(math.nan, 5))
    assert math.isnan(mde_paired(math.inf, 5))
    assert mde_paired(0.0, 5) == 0.0
    assert mde_paired(3.0, 4) == pytest.approx(3 * mde_paired(1.0, 4), rel=1e-9)  # linear in sd
    assert mde_paired(1.0, 2) > mde_paired(1.0, 3) > mde_paired(1.0, 10)  # more pairs, smaller
    assert mde_paired(1.0, 5, power=0.9) > mde_paired(1.0, 5)
    with pytest.raises(ValueError):
        mde_paired(1.0, 5, power=0.01)


def test_ci_paired_diff_hand():
    a = dict(zip(SEEDS, A, strict=True))
    b = dict(zip(SEEDS, B, strict=True))
    lo, hi = ci_paired_diff(a, b)
    d = np.array(B) - np.array(A)
    half = st.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert lo == pytest.approx(d.mean() - half, rel=1e-10)
    assert hi == pytest.approx(d.mean() + half, rel=1e-10)
    ref = st.ttest_rel(B, A).confidence_interval(0.95)
    assert lo == pytest.approx(ref.low, rel=1e-8) and hi == pytest.approx(ref.high, rel=1e-8)
    assert all(math.isnan(x) for x in ci_paired_diff({0: 1.0}, {0: 2.0}))


def test_compare_values_reports_sd_diff_and_mde():
    a = dict(zip(SEEDS, A, strict=True))
    b = {k: v for k, v in zip(SEEDS, B, strict=True) if k != 4}  # 4 pairs
    c = compare_values(A, list(b.values()), False, a, b)
    d = np.array([b[k] - a[k] for k in range(4)])
    assert c["sd_diff"] == pytest.approx(d.std(ddof=1), rel=1e-12)
    assert c["mde"] == pytest.approx(mde_paired(d.std(ddof=1), 4), rel=1e-12)
    assert c["paired_n"] == 4
    c1 = compare_values(A, B, False, {0: 1.0}, {0: 2.0})
    assert math.isnan(c1["sd_diff"]) and math.isnan(c1["mde"])
    out = compare(_runs(A, SEEDS), _runs(B, SEEDS), ["mae"], {"mae": False}).set_index("metric")
    dd = np.array(B) - np.array(A)
    assert out.loc["mae", "mde"] == pytest.approx(mde_paired(dd.std(ddof=1), 5), rel=1e-12)
