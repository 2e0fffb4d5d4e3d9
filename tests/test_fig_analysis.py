"""Figs. 6, 7 and 8 of the paper (Sec. VI-A, VI-D, VI-E/F) from synthetic run records with known
final errors and per-epoch GAL diagnostics (gal_suite.fig_analysis, gal_suite.fig_ablation)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gal_suite import records
from gal_suite.fig8 import render_fig8
from gal_suite.fig_analysis import NoRunsError
from gal_suite.figures import render_figure
from gal_suite.records import RunWriter
from gal_suite.stats import ci_paired_diff

EPOCHS = 4
DS, LABEL = "tiny100_32", "Tiny-ImageNet-100 at 32 px (CIFAR-100 stand-in)"
DEFAULTS = {"sgd": {"alpha": 0.01, "beta": 1.0, "arch": "256-64-32"},
            "lookahead_sgd": {"alpha": 0.001, "beta": 5.0, "arch": "256-64-32"},
            "adabound": {"alpha": 0.01, "beta": 10.0, "arch": "256-64-32"}}
#: sgd errors per method and seed (seed 0, 1, 2); None = a failed run
SGD = {
    "baseline": [40.0, 41.0, 42.5],
    "gal": [38.0, 39.5, 38.25],
    "gal+alpha=0.0001": [39.0, 38.0, 39.75],
    "gal+alpha=0.1": [44.0, 45.0, 43.0],
    "gal+alpha=1": [60.0, 62.0, None],
    "gal+beta=0.5": [41.0, 42.0, 41.5],
    "gal+beta=5": [43.0, 43.5, 44.0],
    "gal+arch=256": [39.0, 40.0, 41.0],
    "gal+arch=256-64-32-16": [40.5, 39.5, 41.5],
    "gal+adjuster=cnn+arch=256": [99.0, 99.0, 99.0],  # Table VIII: in no Fig. 7 panel
    "gal+adjuster=uniform+noise_scaling=unit": [None, None, 97.0],  # Table VI: diverged
    "gal+policy=lt": [38.5, 39.75, 38.5],
    "gal+policy=always": [39.0, 40.0, 40.0],
    "gal+policy=never": [40.0, 41.0, 42.5],  # = baseline, seed by seed
}
LA = {
    "baseline": [45.0, 44.0, 46.0],
    "gal": [43.0, 44.5, 43.5],
    "gal+alpha=0.01": [44.0, 46.0, 45.0],
    "gal+beta=1": [47.0, 46.5, 46.0],
}


def _settings(optimizer: str, method: str) -> dict[str, Any] | None:
    if method == "baseline":
        return None
    g = {**DEFAULTS[optimizer], "adjuster": "mlp", "noise_scaling": "eq4", "policy": "leq"}
    for part in method.split("+")[1:]:
        k, v = part.split("=")
        g[k] = float(v) if k in ("alpha", "beta") else v
    return g


def _diag(seed: int, e: int, policy: str) -> dict[str, float]:
    """Known per-epoch GAL diagnostics of one run."""
    k = {"leq": 1.0, "lt": 1.1, "always": 1.3, "never": 0.7}[policy]
    return {"tentative_loss": 2.0 / e, "remainder": (-1) ** e * 1e-3 * k / (e + seed),
            "abs_remainder": 1e-2 * k / (e + seed) ** 2, "accept_rate": 0.9,
            "cosine": 0.05 * k * (seed + 1) - 0.01 * e, "g_beats_grad": 0.5 * k / (e + seed)}


def _write(root: Path, key: str, profile: str, optimizer: str, method: str, seed: int,
           err: float | None, *, diag: bool = True, nan_beats: bool = False,
           record_profile: str | None = None, epochs: int = EPOCHS,
           accept: float | None = None) -> Path:
    g = _settings(optimizer, method)
    cfg: dict[str, Any] = {
        "task": "classification", "table": 1 if key == "table1" else key, "dataset": DS,
        "dataset_label": LABEL, "optimizer": optimizer, "method": method, "seed": seed,
        "profile": record_profile or profile, "model": "convnet_tiny", "epochs": EPOCHS,
        "h_params": 0 if g is None else 100,
        **{f"gal_{k}": (None if g is None else g[k])
           for k in ("alpha", "beta", "arch", "adjuster", "noise_scaling", "policy")},
        "settings": {"gal": None if g is None else {"granularity": "batch", "policy": g["policy"]}},
    }
    if key == "table1":  # an older record: no gal_* keys
        cfg = {k: v for k, v in cfg.items() if not k.startswith("gal_")}
    d = root / key / profile / DS / optimizer / method / f"seed-{seed}"
    w = RunWriter(d, device="cpu")
    w.start(cfg, profile=cfg["profile"], seed=seed)
    for e in range(1, epochs + 1):
        row = {"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.1 / e, "lr": 0.1}
        if g is not None and diag:
            row.update(_diag(seed, e, g["policy"]))
            if accept is not None:
                row["accept_rate"] = accept
            if nan_beats:
                row["g_beats_grad"] = math.nan
        w.log(row)
    if err is None:
        w.fail("diverged: non-finite loss")
    else:
        w.finish({"error_top1": err, "error_top5": err / 4, "val_loss": 1.0})
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(records, "git_info", lambda: ("test", False))  # no git subprocesses per run
        yield _make_runs(tmp_path_factory.mktemp("figs") / "runs")


def _make_runs(root: Path) -> Path:
    for opt, table in (("sgd", SGD), ("lookahead_sgd", LA)):
        for method, errs in table.items():
            for seed, err in enumerate(errs):
                _write(root, "ablation", "cpu", opt, method, seed, err)
    # a run filed under cpu whose record says another profile: never used
    _write(root, "ablation", "cpu", "sgd", "gal+alpha=0.5", 7, 1.0, record_profile="gpu")
    # Table I: GAL runs of two optimizers (older records without gal_* columns), a baseline,
    # a failed GAL run and a GAL run without diagnostics (a line with no epochs)
    for seed in range(2):
        _write(root, "table1", "cpu", "sgd", "gal", seed, 30.0)
        _write(root, "table1", "cpu", "lookahead_sgd", "gal", seed, 31.0)
        _write(root, "table1", "cpu", "sgd", "baseline", seed, 32.0)
        _write(root, "table1", "cpu", "adabound", "gal", seed, 33.0, diag=False)
    _write(root, "table1", "cpu", "sgd", "gal", 2, None)
    return root


def _ms(values: list[float | None]) -> tuple[float, float, int]:
    v = np.array([x for x in values if x is not None])
    return float(v.mean()), float(v.std(ddof=1)), len(v)


def _check_point(p: dict, values: list[float | None]) -> None:
    mean, std, n = _ms(values)
    assert p["n"] == n
    assert p["mean"] == pytest.approx(mean, rel=1e-12)
    assert p["std"] == pytest.approx(std, rel=1e-12)
    ok = [(s, v) for s, v in enumerate(values) if v is not None]
    assert p["per_seed"] == {str(s): v for s, v in ok}


def _written(out: Path, written: list[Path], n: int) -> None:
    for ext in ("png", "pdf", "json", "md"):
        path = out / f"fig{n}.{ext}"
        assert path in written and path.stat().st_size > 0
    assert (out / f"fig{n}.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / f"fig{n}.pdf").read_bytes()[:4] == b"%PDF"


def test_fig7_points_baselines_and_exclusions(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    written = render_figure(7, runs, out)
    _written(out, written, 7)
    summary = json.loads((out / "fig7.json").read_text())
    assert summary["figure"] == 7 and summary["profile"] == "cpu"
    [ds] = summary["datasets"]
    assert ds["dataset_label"] == LABEL and list(ds["optimizers"]) == ["sgd", "lookahead_sgd"]
    sgd, la = ds["optimizers"]["sgd"], ds["optimizers"]["lookahead_sgd"]
    _check_point(sgd["baseline"], SGD["baseline"])
    _check_point(la["baseline"], LA["baseline"])
    assert sgd["fixed"] == DEFAULTS["sgd"] and sgd["fixed_matches_paper"] is True

    alpha = sgd["panels"]["alpha"]["points"]
    assert [p["x"] for p in alpha] == [1e-4, 0.01, 0.1, 1.0]
    for p, m in zip(alpha, ["gal+alpha=0.0001", "gal", "gal+alpha=0.1", "gal+alpha=1"],
                    strict=True):
        assert p["methods"] == [m]
        _check_point(p, SGD[m])
    assert [p["default"] for p in alpha] == [False, True, False, False]
    assert alpha[3]["n"] == 2  # the failed seed 2 is out
    # Lookahead's gal run lands at its own default alpha, read from its gal_alpha column
    la_alpha = la["panels"]["alpha"]["points"]
    assert [(p["x"], p["methods"]) for p in la_alpha] == [(0.001, ["gal"]),
                                                          (0.01, ["gal+alpha=0.01"])]
    _check_point(la_alpha[0], LA["gal"])
    assert [(p["x"], p["methods"]) for p in la["panels"]["beta"]["points"]] == [
        (1.0, ["gal+beta=1"]), (5.0, ["gal"])]
    assert la["checks"]["beta"]["best"] == 5.0 and la["checks"]["beta"]["agrees"] is True

    beta = sgd["panels"]["beta"]["points"]
    assert [p["x"] for p in beta] == [0.5, 1.0, 5.0]
    _check_point(beta[1], SGD["gal"])
    arch = sgd["panels"]["arch"]["points"]
    assert [p["x"] for p in arch] == ["256", "256-64-32", "256-64-32-16"]  # no CNN run
    assert arch[0]["methods"] == ["gal+arch=256"]
    _check_point(arch[0], SGD["gal+arch=256"])
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
    md = (out / "fig7.md").read_text()
    assert "gal+alpha=1/seed-2" in md and "non complete: 1" in md
    assert "failed outside figure: 2" in md and "seeds (any point): 0, 1, 2" in md
    assert "beta = 1 is best with SGD" in md and "(256-64-32)" in md


def test_fig8_policies_line10_and_g_beats_grad(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    written = render_figure(8, runs, out)
    _written(out, written, 8)
    summary = json.loads((out / "fig8.json").read_text())
    [ds] = summary["datasets"]
    _check_point(ds["baseline"], SGD["baseline"])
    pol = {p["policy"]: p for p in ds["policies"]}
    assert [p["label"] for p in ds["policies"]] == ["line 7 (≤)", "line 7 (<)", "line 8",
                                                    "line 10"]
    for policy, method in (("leq", "gal"), ("lt", "gal+policy=lt"),
                           ("always", "gal+policy=always"), ("never", "gal+policy=never")):
        assert pol[policy]["methods"] == [method]
        _check_point(pol[policy], SGD[method])
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
        mat = np.array([[_diag(s, e, policy)["g_beats_grad"] for e in range(1, EPOCHS + 1)]
                        for s in range(3)])
        assert cv["epochs"] == list(range(1, EPOCHS + 1)) and cv["seeds"] == [0, 1, 2]
        np.testing.assert_allclose(cv["mean"], mat.mean(0), rtol=1e-12)
        np.testing.assert_allclose(cv["min"], mat.min(0), rtol=1e-12)
        np.testing.assert_allclose(cv["max"], mat.max(0), rtol=1e-12)
        assert cv["mean"][0] == pytest.approx(0.5 * k[policy] * np.mean([1, 1 / 2, 1 / 3]))
    md = (out / "fig8.md").read_text()
    assert "errors equal to the baseline seed by seed: yes" in md
    assert "line 7 (≤) is best; line 8 is better than line 10" in md
    assert "fraction of mini-batches" in md and "line 10 ≤ baseline" in md
    assert "failed outside figure: 3" in md  # gal+alpha=1 seed 2 and the two noise runs


def test_fig8_line10_differs_and_nan_g_beats_grad(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "git_info", lambda: ("test", False))
    root = tmp_path / "runs"
    for seed, (b, n) in enumerate([(40.0, 40.0), (41.0, 41.5)]):
        _write(root, "ablation", "p2", "sgd", "baseline", seed, b)
        _write(root, "ablation", "p2", "sgd", "gal+policy=never", seed, n)
        _write(root, "ablation", "p2", "sgd", "gal", seed, 39.0, nan_beats=seed == 1)
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
    md = (tmp_path / "out" / "fig8.md").read_text()
    assert "errors equal to the baseline seed by seed: no" in md
    assert "seed 1: line 10 41.5, baseline 41 (differ)" in md


def test_fig6_remainder_and_cosine(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    written = render_figure(6, runs, out)
    _written(out, written, 6)
    summary = json.loads((out / "fig6.json").read_text())
    assert [p["panel"] for p in summary["panels"]] == [f"table1/{DS}", f"ablation/{DS}"]
    t1, ab = summary["panels"]
    assert list(t1["lines"]) == ["sgd", "lookahead_sgd"] and t1["task_label"] == "Table I"
    assert list(ab["lines"]) == ["sgd", "lookahead_sgd"]
    for line in (t1["lines"]["sgd"], ab["lines"]["sgd"], ab["lines"]["lookahead_sgd"]):
        seeds = [int(s) for s in line["seeds"]]
        assert line["epochs"] == list(range(1, EPOCHS + 1))
        for col in ("abs_remainder", "remainder", "cosine"):
            mat = np.array([[_diag(s, e, "leq")[col] for e in range(1, EPOCHS + 1)] for s in seeds])
            np.testing.assert_allclose(line[col]["mean"], mat.mean(0), rtol=1e-12)
            np.testing.assert_allclose(line[col]["min"], mat.min(0), rtol=1e-12)
            np.testing.assert_allclose(line[col]["max"], mat.max(0), rtol=1e-12)
        cos = np.array([[_diag(s, e, "leq")["cosine"] for e in range(1, EPOCHS + 1)]
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
    md = (out / "fig6.md").read_text()
    assert "ImageNet with EfficientNet-B2" in md and "Table I: " + LABEL in md
    assert "ablation (Sec. VI-D/E)" in md and "/table1/cpu/" in md


def test_missing_records_raise_clear_error(runs: Path, tmp_path: Path) -> None:
    for n in (7, 8):
        with pytest.raises(NoRunsError, match=rf"make fig{n}.*--profile paper"):
            render_figure(n, runs, tmp_path / "out", profile="paper")
    with pytest.raises(FileNotFoundError, match=r"make table1 PROFILE=cpu.*--profile cpu"):
        render_figure(6, tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(NotImplementedError, match="implemented figures: 4.*8"):
        render_figure(9, runs, tmp_path / "out")


def test_pdf_reproducible(runs: Path, tmp_path: Path) -> None:
    render_figure(7, runs, tmp_path)
    first = (tmp_path / "fig7.pdf").read_bytes()
    render_figure(7, runs, tmp_path)
    assert (tmp_path / "fig7.pdf").read_bytes() == first


# --------------------------------------------------------------------------- paired design
def _pairs(base: list[float | None], other: list[float | None]) -> tuple[dict, dict]:
    a = {str(s): v for s, v in enumerate(base) if v is not None}
    b = {str(s): v for s, v in enumerate(other) if v is not None}
    return a, b


def test_fig7_paired_panel_is_ci_paired_diff(runs: Path, tmp_path: Path) -> None:
    render_figure(7, runs, tmp_path)
    summary = json.loads((tmp_path / "fig7.json").read_text())
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
    md = (tmp_path / "fig7.md").read_text()
    assert f"paired {d.mean():+.3g} [{d.mean() - half:+.3g}, {d.mean() + half:+.3g}] (n=3)" in md


def test_fig8_paired_acceptance_and_no_coincidence(runs: Path, tmp_path: Path) -> None:
    render_figure(8, runs, tmp_path)
    summary = json.loads((tmp_path / "fig8.json").read_text())
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
    md = (tmp_path / "fig8.md").read_text()
    assert "| line 7 (≤) (`leq`) | " in md and "| 0.900 |" in md and "coincide" not in md


def _policy_runs(root: Path, epochs: int, errs: dict[str, list[float]],
                 accept: dict[str, float]) -> None:
    for method, vals in errs.items():
        pol = {"gal": "leq"}.get(method, method.split("=")[-1])
        for seed, err in enumerate(vals):
            _write(root, "ablation", "one", "sgd", method, seed, err, epochs=epochs,
                   accept=accept.get(pol))


def test_fig8_coincidence_note_when_no_step_rejected(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "git_info", lambda: ("test", False))
    root = tmp_path / "runs"
    same = [94.8, 93.7, 94.3]
    _policy_runs(root, 1, {"baseline": [94.8, 93.9, 94.2], "gal": same, "gal+policy=lt": same,
                           "gal+policy=always": same, "gal+policy=never": [94.7, 93.9, 93.9]},
                 {"leq": 1.0, "lt": 1.0, "always": 1.0, "never": 0.0})
    paths = render_fig8(root, tmp_path / "out", profile="one")
    summary = json.loads(next(p for p in paths if p.suffix == ".json").read_text())
    [ds] = summary["datasets"]
    co = ds["coincide"]
    assert co["policies"] == ["leq", "lt", "always"] and co["same_errors"] is True
    assert co["note"].startswith("line 7 (≤), line 7 (<), line 8 coincide: no step was rejected")
    assert {p["policy"]: p["accept_rate"]["mean"] for p in ds["policies"]} == {
        "leq": 1.0, "lt": 1.0, "always": 1.0, "never": 0.0}
    md = (tmp_path / "out" / "fig8.md").read_text()
    assert co["note"] in md and "| 1.000 |" in md and "| 0.000 |" in md
    # one epoch: the per-epoch panel says so; its band is the min-max of the seeds' values
    leq = ds["g_beats_grad"]["curves"]["leq"]
    vals = [_diag(s, 1, "leq")["g_beats_grad"] for s in range(3)]
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
        _write(root, "ablation", "one", "sgd", "gal", seed, 90.0, epochs=1)
        _write(root, "ablation", "multi", "sgd", "gal", seed, 90.0)
    s1 = json.loads(render_figure(6, root, tmp_path / "o1", profile="one")[0].read_text())
    [p] = s1["panels"]
    ln = p["lines"]["sgd"]
    r = [_diag(s, 1, "leq")["abs_remainder"] for s in range(3)]
    assert ln["epochs"] == [1]
    assert ln["abs_remainder"]["min"] == [min(r)] and ln["abs_remainder"]["max"] == [max(r)]
    assert ln["abs_remainder"]["mean"] == pytest.approx([np.mean(r)])
    assert p["reading"]["remainder"].endswith("here: one epoch: no evolution to show")
    assert p["reading"]["cosine"].startswith("paper: the cosine is positive")
    md = (tmp_path / "o1" / "fig6-one.md").read_text()
    assert "written on the left panel: paper: the remainder goes down" in md
    sm = json.loads(render_figure(6, root, tmp_path / "o2", profile="multi")[0].read_text())
    [p] = sm["panels"]
    r1 = np.mean([_diag(s, 1, "leq")["abs_remainder"] for s in range(3)])
    r4 = np.mean([_diag(s, EPOCHS, "leq")["abs_remainder"] for s in range(3)])
    cos = np.array([[_diag(s, e, "leq")["cosine"] for e in range(1, EPOCHS + 1)]
                    for s in range(3)]).mean(0)
    assert f"SGD: mean |r| {r1:.2g} (epoch 1) → {r4:.2g} (epoch {EPOCHS}): down" \
        in p["reading"]["remainder"]
    assert f"SGD: mean cos > 0 on {int((cos > 0).sum())}/{EPOCHS} epochs" in p["reading"]["cosine"]
    assert "no evolution" not in p["reading"]["remainder"]
