"""The paired verdict rule, Holm's adjustment, the relative scale and the run-until-decided
procedure (gal_suite.stats, gal_suite.sequential), against hand-made intervals and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gal_suite import sequential as sq
from gal_suite.stats import (
    compare_values,
    direction_verdict,
    holm,
    paired_verdict,
    primary_ci,
    relative_diffs,
    relative_paper_diff,
    ttest_against,
)


# --------------------------------------------------------------------------- five classes
@pytest.mark.parametrize(
    ("ci", "paper", "want"),
    [
        # paper: GAL lowers the error by 0.3 points (negative direction)
        ((-0.45, -0.13), -0.32, "reproduced"),
        ((-0.20, -0.05), -0.32, "same direction, smaller"),
        ((-0.90, -0.50), -0.32, "same direction, larger"),
        ((-0.10, 0.20), -0.32, "not reproduced"),
        ((0.05, 0.40), -0.32, "opposite"),
        ((-0.50, 0.10), -0.32, "inconclusive"),
        # paper: the row moves up (e.g. Table VI's unit noise is worse): directions flip
        ((2.2, 4.2), 85.0, "same direction, smaller"),
        ((60.0, 100.0), 85.0, "reproduced"),
        ((-3.0, -1.0), 85.0, "opposite"),
        ((-1.0, 1.0), 85.0, "not reproduced"),
        ((-1.0, 90.0), 85.0, "inconclusive"),
    ],
)
def test_paired_verdict_classes(ci, paper, want):
    assert paired_verdict(ci, paper) == want


def test_paired_verdict_boundaries_are_closed():
    # a bound equal to 0 holds 0; a bound equal to the paper's effect holds it
    assert paired_verdict((-0.5, 0.0), -0.3) == "inconclusive"
    assert paired_verdict((0.0, 0.2), -0.3) == "not reproduced"
    assert paired_verdict((-0.3, -0.1), -0.3) == "reproduced"
    assert paired_verdict((-0.6, -0.3), -0.3) == "reproduced"
    assert paired_verdict((-0.2999, -0.1), -0.3) == "same direction, smaller"
    assert paired_verdict((-0.3, 0.0), -0.3) == "inconclusive"
    # just off 0 on either side
    assert paired_verdict((-0.5, -1e-12), -0.3) == "reproduced"
    assert paired_verdict((1e-12, 0.5), -0.3) == "opposite"


def test_paired_verdict_without_paper_effect_or_ci():
    assert paired_verdict((-1.0, -0.5), None) == ""
    assert paired_verdict((-1.0, -0.5), 0.0) == ""
    assert paired_verdict((-1.0, -0.5), math.nan) == ""
    assert paired_verdict((math.nan, math.nan), -0.3) == "inconclusive"


def test_direction_verdict_knows_the_metric_direction():
    assert direction_verdict((10.0, 20.0), higher_is_better=True) == "B better"  # images/s up
    assert direction_verdict((10.0, 20.0), higher_is_better=False) == "B worse"  # error up
    assert direction_verdict((-2.0, -1.0), higher_is_better=False) == "B better"
    assert direction_verdict((-1.0, 1.0), higher_is_better=False) == "no difference resolved"


def test_primary_ci_is_paired_with_pairs_and_welch_without():
    a = {0: 10.0, 1: 12.0, 2: 14.0}
    b = {0: 9.5, 1: 11.4, 2: 13.6}
    ci, kind = primary_ci(list(a.values()), list(b.values()), a, b)
    d = np.array([-0.5, -0.6, -0.4])
    half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)  # t_{0.975, 2}
    assert kind == "paired"
    assert ci == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-9)
    ci2, kind2 = primary_ci([10.0, 12.0, 14.0], [9.5, 11.4, 13.6], {0: 10.0}, {1: 9.5})
    assert kind2 == "welch" and ci2[0] < -0.4 < ci2[1] and ci2[1] - ci2[0] > 2 * half


def test_compare_values_uses_the_paired_rule_not_welch():
    # Table II AdaBound's shape: a large seed spread shared by both arms, a small steady gain
    a = {s: 89.0 + 0.6 * s for s in range(5)}
    b = {s: a[s] - 0.3 + 0.05 * (-1) ** s for s in range(5)}
    c = compare_values(list(a.values()), list(b.values()), False, a, b, paper_diff=-0.32,
                       paper_rel=-0.32 / 20.0)
    assert c["welch_p"] > 0.05  # the unpaired test cannot see it
    assert c["ci_kind"] == "paired" and c["rule_ci_high"] < 0
    assert c["verdict"] == "reproduced"
    # relative scale: about -0.33% on an 89% baseline, far below the paper's -1.6%
    assert c["rel_ci_high"] < 0 and c["rel_ci_low"] > -0.016
    assert c["verdict_rel"] == "same direction, smaller"


def test_relative_scale():
    assert relative_diffs({0: 2.0, 1: 4.0, 2: 0.0}, {0: 1.0, 1: 5.0, 2: 1.0}) == {0: -0.5, 1: 0.25}
    assert relative_paper_diff(1.9, 1.8) == pytest.approx(1.8 / 1.9 - 1)
    assert relative_paper_diff(None, 1.8) is None


def test_holm_against_hand_computation():
    p = [0.01, 0.04, 0.03, math.nan, 0.005]
    # sorted finite: 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1), running max
    want = [0.03, 0.06, 0.06, math.nan, 0.02]
    got = holm(p)
    for g, w in zip(got, want, strict=True):
        assert (math.isnan(g) and math.isnan(w)) or g == pytest.approx(w)
    assert holm([0.9, 0.8]) == [1.0, 1.0]


def test_ttest_against_the_papers_effect():
    d = [-0.30, -0.25, -0.35, -0.28, -0.32]
    assert ttest_against(d, -0.30) > 0.5
    assert ttest_against(d, 0.0) < 1e-4
    assert math.isnan(ttest_against([1.0], 0.0))


# --------------------------------------------------------------------------- sequential
def test_design_spends_exactly_alpha():
    for spending in sq.SPENDING:
        d = sq.SequentialDesign(batch=5, max_pairs=60, alpha=0.05, spending=spending)
        assert d.looks() == list(range(5, 61, 5))
        a = d.look_alphas()
        assert sum(a) == pytest.approx(0.05, abs=1e-15) and all(x >= 0 for x in a)
    d = sq.SequentialDesign(batch=5, max_pairs=12)
    assert d.looks() == [5, 10, 12]
    # Pocock: alpha * ln(1 + (e - 1) t)
    assert d.look_alphas()[0] == pytest.approx(0.05 * math.log(1 + (math.e - 1) * 5 / 12))
    with pytest.raises(ValueError):
        sq.SequentialDesign(batch=1)
    with pytest.raises(ValueError):
        sq.SequentialDesign(spending="naive")


def _simulate(design, mean, paper, rows, naive=False, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rows):
        d = rng.normal(mean, 1.0, design.max_pairs)
        if naive:  # the wrong way: a plain 95% CI at every look
            for n in design.looks():
                ci = sq.repeated_ci(d[:n], 0.95)
                v = paired_verdict(ci, paper)
                if v not in ("", "inconclusive"):
                    break
            out.append((v, n))
        else:
            r = sq.decide(list(d), design, paper)
            out.append((r.verdict, r.looks[-1].n))
    return out


def test_sequential_type_one_error_under_no_effect():
    design = sq.SequentialDesign(batch=5, max_pairs=40)
    res = _simulate(design, 0.0, -0.5, rows=2000)
    false = sum(v in ("reproduced", "same direction, smaller", "same direction, larger", "opposite")
                for v, _ in res) / len(res)
    assert false <= 0.05
    # the naive repeated t-test exceeds its level under the same data (why the design exists)
    naive = _simulate(design, 0.0, -0.5, rows=2000, naive=True)
    nfalse = sum(v in ("reproduced", "same direction, smaller", "same direction, larger", "opposite")
                 for v, _ in naive) / len(naive)
    assert nfalse > 0.08 and nfalse > 1.5 * false


def test_sequential_coverage_of_the_true_mean():
    design = sq.SequentialDesign(batch=4, max_pairs=24, spending="obrien_fleming")
    rng = np.random.default_rng(1)
    miss = 0
    for _ in range(1500):
        d = rng.normal(0.7, 2.0, design.max_pairs)
        looks = sq.decide(list(d), design, paper_diff=1e9).looks  # never decided: all looks
        miss += any(not (lk.ci[0] <= 0.7 <= lk.ci[1]) for lk in looks)
    assert miss / 1500 <= 0.05


def test_sequential_stops_on_a_planted_effect():
    design = sq.SequentialDesign(batch=5, max_pairs=60)
    res = _simulate(design, -1.0, -1.0, rows=300, seed=2)
    assert sum(v == "reproduced" for v, _ in res) / len(res) > 0.8
    assert np.median([n for _, n in res]) <= 15  # most rows stop within 3 looks


def test_decide_running_and_cap():
    design = sq.SequentialDesign(batch=5, max_pairs=10)
    r = sq.decide([0.1, -0.1, 0.2, -0.2, 0.0, 0.05, -0.05], design, -0.2)
    assert not r.stopped and r.next_n == 10 and len(r.looks) == 1
    assert r.reason.startswith("running")
    r = sq.decide([0.1, -0.1, 0.2, -0.2, 0.0, 0.05, -0.05, 0.1, -0.1, 0.0], design, -0.1)
    assert r.stopped and r.next_n is None and r.reason.startswith("cap reached")
    r = sq.decide([-1.0, -1.1, -0.9, -1.05, -0.95], design, -1.0)
    assert r.stopped and r.verdict == "reproduced" and r.reason.startswith("decided at look 1")
