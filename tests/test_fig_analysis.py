"""Figs. 6, 7 and 8 of the paper (Sec. VI-A, VI-D, VI-E/F) from synthetic run records with known
final errors and per-epoch GAL diagnostics (gal_suite.fig_analysis, gal_suite.fig_ablation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fig_analysis_records import (
    DEFAULTS,
    DS,
    EPOCHS,
    LA,
    LABEL,
    SGD,
    check_point,
    known_diagnostics,
    rendered,
    write,
)

from gal_suite.fig8 import render_fig8
from gal_suite.fig_analysis import NoRunsError
from gal_suite.figures import FIGURES, render_figure


def test_fig7_points_baselines_and_exclusions(analysis_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    summary = rendered(7, analysis_runs, out)
    assert summary["figure"] == 7 and summary["profile"] == "cpu"
    [ds] = summary["datasets"]
    assert ds["dataset_label"] == LABEL and list(ds["optimizers"]) == ["sgd", "lookahead_sgd"]
    sgd, la = ds["optimizers"]["sgd"], ds["optimizers"]["lookahead_sgd"]
    check_point(sgd["baseline"], SGD["baseline"])
    check_point(la["baseline"], LA["baseline"])
    assert sgd["fixed"] == DEFAULTS["sgd"] and sgd["fixed_matches_paper"] is True

    alpha = sgd["panels"]["alpha"]["points"]
    assert [p["x"] for p in alpha] == [1e-4, 0.01, 0.1, 1.0]
    for p, m in zip(alpha, ["gal+alpha=0.0001", "gal", "gal+alpha=0.1", "gal+alpha=1"],
                    strict=True):
        assert p["methods"] == [m]
        check_point(p, SGD[m])
    assert [p["default"] for p in alpha] == [False, True, False, False]
    assert alpha[3]["n"] == 2  # the failed seed 2 is out
    # Lookahead's gal run lands at its own default alpha, read from its gal_alpha column
    la_alpha = la["panels"]["alpha"]["points"]
    assert [(p["x"], p["methods"]) for p in la_alpha] == [(0.001, ["gal"]),
                                                          (0.01, ["gal+alpha=0.01"])]
    check_point(la_alpha[0], LA["gal"])
    assert [(p["x"], p["methods"]) for p in la["panels"]["beta"]["points"]] == [
        (1.0, ["gal+beta=1"]), (5.0, ["gal"])]
    assert la["checks"]["beta"]["best"] == 5.0 and la["checks"]["beta"]["agrees"] is True

    beta = sgd["panels"]["beta"]["points"]
    assert [p["x"] for p in beta] == [0.5, 1.0, 5.0]
    check_point(beta[1], SGD["gal"])
    arch = sgd["panels"]["arch"]["points"]
    assert [p["x"] for p in arch] == ["256", "256-64-32", "256-64-32-16"]  # no CNN run
    assert arch[0]["methods"] == ["gal+arch=256"]
    check_point(arch[0], SGD["gal+arch=256"])
    assert sgd["checks"]["arch"] == {**sgd["checks"]["arch"], "best": "256-64-32", "agrees": True}

    means = {p["x"]: np.mean([v for v in SGD[m] if v is not None])
             for p, m in zip(alpha, ["gal+alpha=0.0001", "gal", "gal+alpha=0.1", "gal+alpha=1"],
                             strict=True)}
    best = min(means, key=means.__getitem__)
    assert sgd["panels"]["alpha"]["best"] == best
    assert sgd["checks"]["alpha"]["best_in_paper_range"] is (1e-4 <= best <= 1e-2)

    ex = summary["excluded"]
    failed = {(e["method"], e["seed"]) for e in ex["non_complete"]}
    assert ("gal+alpha=1", 2) in failed
    assert all("noise_scaling" not in m for m, _ in failed)  # not part of Fig. 7: counted apart
    noise = "gal+adjuster=uniform+noise_scaling=unit"
    assert sorted((e["method"], e["seed"]) for e in ex["failed_outside_figure"]) == [(noise, 0),
                                                                                     (noise, 1)]
    assert [e["profile"] for e in ex["other_profile"]] == ["gpu"]
    assert all("adjuster=cnn" not in path and "alpha=0.5" not in path
               for o in ds["optimizers"].values() for pn in o["panels"].values()
               for p in pn["points"] for path in p["runs"].values())
    md = (out / "fig7-cpu.md").read_text()
    assert "gal+alpha=1/seed-2" in md and "non complete: 1" in md
    assert "failed outside figure: 2" in md and "seeds (any point): 0, 1, 2" in md
    assert "beta = 1 is best with SGD" in md and "(256-64-32)" in md


def test_fig8_policies_line10_and_g_beats_grad(analysis_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    summary = rendered(8, analysis_runs, out)
    [ds] = summary["datasets"]
    check_point(ds["baseline"], SGD["baseline"])
    pol = {p["policy"]: p for p in ds["policies"]}
    assert [p["label"] for p in ds["policies"]] == ["line 7 (≤)", "line 7 (<)", "line 8",
                                                    "line 10"]
    for policy, method in (("leq", "gal"), ("lt", "gal+policy=lt"),
                           ("always", "gal+policy=always"), ("never", "gal+policy=never")):
        assert pol[policy]["methods"] == [method]
        check_point(pol[policy], SGD[method])
    t = ds["line10_vs_baseline"]
    assert t["all_equal"] is True and t["seeds"] == [0, 1, 2] and t["max_abs_diff"] == 0.0
    c = ds["checks"]
    assert c["line7_leq_best"] is True and c["line8_better_than_line10"] is True
    assert c["line7_leq_better_than_line7_lt"] is True
    assert c["ranking"][0] == "line 7 (≤)"

    b = ds["g_beats_grad"]
    assert b["granularity"] == "batch" and "mini-batches" in b["unit"]
    assert list(b["curves"]) == ["leq", "lt", "always", "never"]
    k = {"leq": 1.0, "lt": 1.1, "always": 1.3, "never": 0.7}
    for policy, cv in b["curves"].items():
        mat = np.array([[known_diagnostics(s, e, policy)["g_beats_grad"] for e in range(1, EPOCHS + 1)]
                        for s in range(3)])
        assert cv["epochs"] == list(range(1, EPOCHS + 1)) and cv["seeds"] == [0, 1, 2]
        np.testing.assert_allclose(cv["mean"], mat.mean(0), rtol=1e-12)
        np.testing.assert_allclose(cv["min"], mat.min(0), rtol=1e-12)
        np.testing.assert_allclose(cv["max"], mat.max(0), rtol=1e-12)
        assert cv["mean"][0] == pytest.approx(0.5 * k[policy] * np.mean([1, 1 / 2, 1 / 3]))
    md = (out / "fig8-cpu.md").read_text()
    assert "errors equal to the baseline seed by seed: yes" in md
    assert "line 7 (≤) is best; line 8 is better than line 10" in md
    assert "fraction of mini-batches" in md and "line 10 ≤ baseline" in md
    assert "failed outside figure: 3" in md  # gal+alpha=1 seed 2 and the two noise runs


def test_fig8_line10_differs_and_nan_g_beats_grad(tmp_path: Path, records_root: Path) -> None:
    root = records_root
    for seed, (b, n) in enumerate([(40.0, 40.0), (41.0, 41.5)]):
        write(root, "ablation", "p2", "sgd", "baseline", seed, b)
        write(root, "ablation", "p2", "sgd", "gal+policy=never", seed, n)
        write(root, "ablation", "p2", "sgd", "gal", seed, 39.0, nan_beats=seed == 1)
    summary_paths = render_fig8(root, tmp_path / "out", profile="p2")
    summary = json.loads(next(p for p in summary_paths if p.suffix == ".json").read_text())
    [ds] = summary["datasets"]
    t = ds["line10_vs_baseline"]
    assert t["all_equal"] is False and t["max_abs_diff"] == pytest.approx(0.5)
    assert t["per_seed"]["0"]["equal"] is True and t["per_seed"]["1"]["equal"] is False
    assert ds["checks"]["line7_leq_better_than_line7_lt"] is None  # no lt runs
    cv = ds["g_beats_grad"]["curves"]
    assert cv["leq"]["seeds"] == [0]  # seed 1's g_beats_grad column is all NaN: skipped
    assert [e["path"].endswith("gal/seed-1") for e in summary["excluded"]["no_g_beats_grad"]] \
        == [True]
    md = (tmp_path / "out" / "fig8-p2.md").read_text()
    assert "errors equal to the baseline seed by seed: no" in md
    assert "seed 1: line 10 41.5, baseline 41 (differ)" in md


def test_fig6_remainder_and_cosine(analysis_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    summary = rendered(6, analysis_runs, out)
    assert [p["panel"] for p in summary["panels"]] == [f"table1/{DS}", f"ablation/{DS}"]
    t1, ab = summary["panels"]
    assert list(t1["lines"]) == ["sgd", "lookahead_sgd"] and t1["task_label"] == "Table I"
    assert list(ab["lines"]) == ["sgd", "lookahead_sgd"]
    for line in (t1["lines"]["sgd"], ab["lines"]["sgd"], ab["lines"]["lookahead_sgd"]):
        seeds = [int(s) for s in line["seeds"]]
        assert line["epochs"] == list(range(1, EPOCHS + 1))
        for col in ("abs_remainder", "remainder", "cosine"):
            mat = np.array([[known_diagnostics(s, e, "leq")[col] for e in range(1, EPOCHS + 1)] for s in seeds])
            np.testing.assert_allclose(line[col]["mean"], mat.mean(0), rtol=1e-12)
            np.testing.assert_allclose(line[col]["min"], mat.min(0), rtol=1e-12)
            np.testing.assert_allclose(line[col]["max"], mat.max(0), rtol=1e-12)
        cos = np.array([[known_diagnostics(s, e, "leq")["cosine"] for e in range(1, EPOCHS + 1)]
                        for s in seeds]).mean(0)
        tr = line["trend"]
        assert tr["abs_remainder_decreased"] is True
        assert tr["epochs_cosine_positive"] == [e for e, c in zip(range(1, 5), cos, strict=True)
                                                if c > 0]
        assert tr["cosine_mean"] == pytest.approx(cos.mean(), rel=1e-12)
    assert t1["lines"]["sgd"]["seeds"] == [0, 1]  # failed seed 2 out
    assert all("/baseline/" not in p and "/gal+" not in p for pn in summary["panels"]
               for ln in pn["lines"].values() for p in ln["runs"].values())
    ex = summary["excluded"]
    assert [(e["method"], e["seed"]) for e in ex["non_complete"]] == [("gal", 2)]
    assert [e["line"] for e in ex["skipped_lines"]] == [f"table1/{DS}/adabound"]
    md = (out / f"{FIGURES[6].stem('cpu')}.md").read_text()
    assert "ImageNet with EfficientNet-B2" in md and "Table I: " + LABEL in md
    assert "ablation (Sec. VI-D/E)" in md and "/table1/cpu/" in md


def test_missing_records_raise_clear_error(analysis_runs: Path, tmp_path: Path) -> None:
    for n in (7, 8):
        with pytest.raises(NoRunsError, match=rf"make fig{n}.*--profile paper"):
            render_figure(n, analysis_runs, tmp_path / "out", profile="paper")
    with pytest.raises(FileNotFoundError, match=r"make table1 PROFILE=cpu.*--profile cpu"):
        render_figure(6, tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(NotImplementedError, match="implemented figures: 4.*8"):
        render_figure(9, analysis_runs, tmp_path / "out")


def test_pdf_reproducible(analysis_runs: Path, tmp_path: Path) -> None:
    render_figure(7, analysis_runs, tmp_path)
    first = (tmp_path / "fig7-cpu.pdf").read_bytes()
    render_figure(7, analysis_runs, tmp_path)
    assert (tmp_path / "fig7-cpu.pdf").read_bytes() == first
