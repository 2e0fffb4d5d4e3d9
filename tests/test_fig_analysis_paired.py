"""Figs. 7 and 8 of the paper (Sec. VI-D, VI-E/F) as the paired design measures them: each
configuration's GAL − baseline with its paired 95% CI, the acceptance rate per policy and the
note when policies coincide; and Fig. 6 per epoch (Sec. VI-A)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fig_analysis_records import (
    EPOCHS,
    SGD,
    fig8_dataset,
    known_diagnostics,
    write,
)

from gal_suite import records
from gal_suite.figures import render_figure
from gal_suite.stats import ci_paired_diff


# --------------------------------------------------------------------------- paired design
def _pairs(base: list[float | None], other: list[float | None]) -> tuple[dict, dict]:
    a = {str(s): v for s, v in enumerate(base) if v is not None}
    b = {str(s): v for s, v in enumerate(other) if v is not None}
    return a, b


def test_fig7_paired_panel_is_ci_paired_diff(analysis_runs: Path, tmp_path: Path) -> None:
    render_figure(7, analysis_runs, tmp_path)
    summary = json.loads((tmp_path / "fig7-cpu.json").read_text())
    sgd = summary["datasets"][0]["optimizers"]["sgd"]
    methods = {"alpha": ["gal+alpha=0.0001", "gal", "gal+alpha=0.1", "gal+alpha=1"],
               "beta": ["gal+beta=0.5", "gal", "gal+beta=5"]}
    for key, ms in methods.items():
        for p, m in zip(sgd["panels"][key]["points"], ms, strict=True):
            a, b = _pairs(SGD["baseline"], SGD[m])
            seeds = sorted(set(a) & set(b), key=int)
            d = [b[s] - a[s] for s in seeds]
            pr = p["paired"]
            assert pr["seeds"] == [int(s) for s in seeds] and pr["n"] == len(seeds)
            assert pr["diff_per_seed"] == pytest.approx({s: x for s, x in zip(seeds, d,
                                                                                 strict=True)})
            assert pr["mean_diff"] == pytest.approx(np.mean(d), rel=1e-12)
            assert pr["ci95"] == pytest.approx(list(ci_paired_diff(a, b)), rel=1e-12)
            lo, hi = pr["ci95"]
            assert pr["ci_excludes_zero"] is (lo > 0 or hi < 0)
    # gal+alpha=1 lost seed 2: two pairs, still a CI (t with 1 df)
    assert sgd["panels"]["alpha"]["points"][3]["paired"]["n"] == 2
    # by hand for one point: mean ± t(0.975, 2) sd / sqrt(3)
    d = np.array(SGD["gal"]) - np.array(SGD["baseline"])
    half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)
    assert sgd["panels"]["alpha"]["points"][1]["paired"]["ci95"] == pytest.approx(
        [d.mean() - half, d.mean() + half], rel=1e-9)
    md = (tmp_path / "fig7-cpu.md").read_text()
    assert f"paired {d.mean():+.3g} [{d.mean() - half:+.3g}, {d.mean() + half:+.3g}] (n=3)" in md
    # the claims on the paired design: the best point a claim names minus the best it does not
    # (alpha: in [1e-4, 1e-2] -> gal (0.01, mean 38.58) vs 0.1 (44.0); beta: the paper's 1 = gal
    # vs 0.5 (41.5); arch: (256-64-32) = gal vs (256) (40.0)), t(0.975, 2) by hand
    for key, other, named_x, other_x, reading in (
            ("alpha", "gal+alpha=0.1", 0.01, 0.1, "supported"),
            ("beta", "gal+beta=0.5", 1.0, 0.5, "supported"),
            ("arch", "gal+arch=256", "256-64-32", "256", "not resolved")):
        d = np.array(SGD["gal"]) - np.array(SGD[other])
        half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)
        t = sgd["checks"][key]["paired_test"]
        assert (t["named_best"], t["other_best"], t["n"]) == (named_x, other_x, 3)
        assert t["mean_diff"] == pytest.approx(d.mean(), rel=1e-12)
        assert t["ci95"] == pytest.approx([d.mean() - half, d.mean() + half], rel=1e-9)
        assert t["reading"] == reading
    assert "paired: in-range best (0.01) − best other (0.1) -5.42 " in md


def test_fig8_paired_acceptance_and_no_coincidence(analysis_runs: Path, tmp_path: Path) -> None:
    render_figure(8, analysis_runs, tmp_path)
    summary = json.loads((tmp_path / "fig8-cpu.json").read_text())
    [ds] = summary["datasets"]
    for p in ds["policies"]:
        m = {"leq": "gal", "lt": "gal+policy=lt", "always": "gal+policy=always",
             "never": "gal+policy=never"}[p["policy"]]
        a, b = _pairs(SGD["baseline"], SGD[m])
        assert p["paired"]["ci95"] == pytest.approx(list(ci_paired_diff(a, b)), nan_ok=True) \
            if p["paired"]["ci95"] else math.isnan(ci_paired_diff(a, b)[0])
        acc = p["accept_rate"]  # 0.9 in every epoch of every run (_diag)
        assert acc["mean"] == pytest.approx(0.9) and acc["all_one"] is False
    # line 10 equals the baseline seed by seed: every difference 0, a zero-width CI
    never = next(p for p in ds["policies"] if p["policy"] == "never")
    assert never["paired"]["mean_diff"] == 0.0 and never["paired"]["ci95"] == [0.0, 0.0]
    assert ds["coincide"] == {"policies": [], "same_errors": None, "note": None}
    md = (tmp_path / "fig8-cpu.md").read_text()
    assert "| line 7 (≤) (`leq`) | " in md and "| 0.900 |" in md and "coincide" not in md


def _policy_runs(root: Path, epochs: int, errs: dict[str, list[float]],
                 accept: dict[str, float]) -> None:
    for method, vals in errs.items():
        pol = {"gal": "leq"}.get(method, method.split("=")[-1])
        for seed, err in enumerate(vals):
            write(root, "ablation", "one", "sgd", method, seed, err, epochs=epochs,
                   accept=accept.get(pol))


def test_fig8_coincidence_note_when_no_step_rejected(tmp_path: Path, records_root: Path) -> None:
    root = records_root
    same = [94.8, 93.7, 94.3]
    _policy_runs(root, 1, {"baseline": [94.8, 93.9, 94.2], "gal": same, "gal+policy=lt": same,
                           "gal+policy=always": same, "gal+policy=never": [94.7, 93.9, 93.9]},
                 {"leq": 1.0, "lt": 1.0, "always": 1.0, "never": 0.0})
    ds = fig8_dataset(root, tmp_path / "out", "one")
    co = ds["coincide"]
    assert co["policies"] == ["leq", "lt", "always"] and co["same_errors"] is True
    assert co["note"].startswith("line 7 (≤), line 7 (<), line 8 coincide: no step was rejected")
    assert {p["policy"]: p["accept_rate"]["mean"] for p in ds["policies"]} == {
        "leq": 1.0, "lt": 1.0, "always": 1.0, "never": 0.0}
    md = (tmp_path / "out" / "fig8-one.md").read_text()
    assert co["note"] in md and "| 1.000 |" in md and "| 0.000 |" in md
    # one epoch: the per-epoch panel says so; its band is the min-max of the seeds' values
    leq = ds["g_beats_grad"]["curves"]["leq"]
    vals = [known_diagnostics(s, 1, "leq")["g_beats_grad"] for s in range(3)]
    assert leq["epochs"] == [1]
    assert (leq["mean"], leq["min"], leq["max"]) == (pytest.approx([np.mean(vals)]),
                                                     [min(vals)], [max(vals)])


def test_coincidence_only_for_policies_that_never_reject() -> None:
    from gal_suite.fig8 import coincidence

    def pol(p: str, all_one: bool, errs: dict[str, float]) -> dict[str, Any]:
        return {"policy": p, "label": p, "per_seed": errs,
                "accept_rate": {"all_one": all_one}}

    e = {"0": 1.0, "1": 2.0}
    assert coincidence([pol("leq", True, e), pol("lt", False, e), pol("never", True, e)])[
        "note"] is None  # line 10 accepts nothing; only one g-policy left
    c = coincidence([pol("leq", True, e), pol("always", True, {"0": 1.0, "1": 2.5})])
    assert c["policies"] == ["leq", "always"] and c["same_errors"] is False
    assert c["note"].endswith("errors equal seed by seed: no")


def test_fig6_one_epoch_and_readings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "git_info", lambda: ("test", False))
    root = tmp_path / "runs"
    for seed in range(3):
        write(root, "ablation", "one", "sgd", "gal", seed, 90.0, epochs=1)
        write(root, "ablation", "multi", "sgd", "gal", seed, 90.0)
    s1 = json.loads(render_figure(6, root, tmp_path / "o1", profile="one")[0].read_text())
    [p] = s1["panels"]
    ln = p["lines"]["sgd"]
    r = [known_diagnostics(s, 1, "leq")["abs_remainder"] for s in range(3)]
    assert ln["epochs"] == [1]
    assert ln["abs_remainder"]["min"] == [min(r)] and ln["abs_remainder"]["max"] == [max(r)]
    assert ln["abs_remainder"]["mean"] == pytest.approx([np.mean(r)])
    assert p["reading"]["remainder"].endswith("here: one epoch: no evolution to show")
    assert p["reading"]["cosine"].startswith("paper: the cosine is positive")
    md = (tmp_path / "o1" / "fig6-one.md").read_text()
    assert "written on the left panel: paper: the remainder goes down" in md
    sm = json.loads(render_figure(6, root, tmp_path / "o2", profile="multi")[0].read_text())
    [p] = sm["panels"]
    r1 = np.mean([known_diagnostics(s, 1, "leq")["abs_remainder"] for s in range(3)])
    r4 = np.mean([known_diagnostics(s, EPOCHS, "leq")["abs_remainder"] for s in range(3)])
    cos = np.array([[known_diagnostics(s, e, "leq")["cosine"] for e in range(1, EPOCHS + 1)]
                    for s in range(3)]).mean(0)
    assert f"SGD: mean |r| {r1:.2g} (epoch 1) → {r4:.2g} (epoch {EPOCHS}): down" \
        in p["reading"]["remainder"]
    assert f"SGD: mean cos > 0 on {int((cos > 0).sum())}/{EPOCHS} epochs" in p["reading"]["cosine"]
    rs = np.array([[known_diagnostics(s, e, "leq")["abs_remainder"] for e in range(1, EPOCHS + 1)]
                   for s in range(3)])
    spread = max((rs[:, e].max() - rs[:, e].min()) / rs[:, e].mean() for e in range(EPOCHS))
    assert p["lines"]["sgd"]["trend"]["abs_remainder_seed_range"] == pytest.approx(spread)
    assert f"; seed range ≤ {spread:.0%} of the mean" in p["reading"]["remainder"]
    assert "no evolution" not in p["reading"]["remainder"]
