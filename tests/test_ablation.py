"""The analyses of Sec. VI: GAL variants as method names, the ablation plan, Tables VI and VIII
(rendered from records; statistics and parameter counts checked against values computed here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from experiments import classification as C
from experiments.gal_variants import apply_method, canonical_method, parse_method
from gal.adjuster import CNNAdjuster, MLPAdjuster, count_parameters
from gal_suite.config import ConfigError, load_config
from gal_suite.records import RunWriter
from gal_suite.tables import TABLE6, TABLE8, render_table
from gal_suite.tables.ablation import paper_count_reading
from gal_suite.tables.render import grid
from tests.test_classification import _smoke

pytestmark = pytest.mark.usefixtures("gal_cache")  # tests/conftest.py
SGD_DEFAULTS = {"adjuster": "mlp", "noise_scaling": "eq4", "arch": [256, 64, 32], "alpha": 0.01,
                "beta": 1.0, "policy": "leq", "granularity": "batch"}


# --------------------------------------------------------------------------- method names
def test_parse_and_canonical_names():
    assert parse_method("baseline") is None and parse_method("gal") == {}
    assert parse_method("gal_alpha0") == {"alpha": 0.0}
    assert parse_method("gal+adjuster=cnn+arch=256-64") == {"adjuster": "cnn", "arch": [256, 64]}
    c = lambda m: canonical_method(m, SGD_DEFAULTS)  # noqa: E731
    assert c("gal+alpha=0.010") == "gal"                       # the default point is the gal run
    assert c("gal+beta=1.0+policy=lt") == "gal+policy=lt"
    assert c("gal+alpha=1e-5") == "gal+alpha=1e-05"
    assert c("gal+arch=256-64+adjuster=cnn") == "gal+adjuster=cnn+arch=256-64"  # key order fixed
    assert c("gal+adjuster=cnn") == "gal+adjuster=cnn+arch=256-64-32"  # a CNN names its arch
    assert c("gal+adjuster=normal+noise_scaling=unit") == "gal+adjuster=normal+noise_scaling=unit"
    g = apply_method(SGD_DEFAULTS, "gal+adjuster=uniform+noise_scaling=unit+alpha=0.5")
    assert (g["adjuster"], g["noise_scaling"], g["alpha"], g["beta"]) == ("uniform", "unit", 0.5, 1.0)
    assert apply_method(SGD_DEFAULTS, "baseline") is None


@pytest.mark.parametrize("bad,msg", [
    ("gal+alpha=big", "must be a number"), ("gal+arch=256-x", "widths joined by"),
    ("gal+policy=maybe", "policy must be one of"), ("gal+adjuster=rnn", "adjuster must be"),
    ("gal+noise_scaling=unit", "noise adjusters"), ("gal+alpha=1+alpha=2", "given twice"),
    ("gal+lr=1", "unknown or malformed"), ("galaxy", "unknown method"), ("gal+alpha=-1", ">= 0"),
])
def test_bad_method_names_say_how_to_fix(bad, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        parse_method(bad)
    assert "gal+<key>=<value>" in str(e.value)


def test_ablation_plan_dedupes_configurations():
    cfg = load_config(C.CONFIG_PATH, "ablation")
    plan = C.plan_runs(cfg, "ablation", "ablation")
    configs = {(s.optimizer, s.method) for s in plan}
    assert len(configs) == 37 and len(plan) == 37 * 3  # 24 SGD + 13 Lookahead, 3 seeds
    assert {s.dataset for s in plan} == {"tiny100_32"} and {s.table for s in plan} == {"ablation"}
    sgd = [m for o, m in configs if o == "sgd"]
    la = [m for o, m in configs if o == "lookahead_sgd"]
    # SGD's alpha=0.01 / beta=1 / MLP (256-64-32) / policy leq are all the one `gal` run
    assert "gal" in sgd and not any(m in sgd for m in ("gal+alpha=0.01", "gal+beta=1"))
    assert "gal+alpha=0.01" in la and "gal+beta=1" in la and "gal+beta=5" not in la  # LA: 1e-3, 5
    parts = {t: {(s.optimizer, s.method) for s in C.plan_runs(cfg, t, "ablation", seeds=1)}
             for t in ("6", "8", "fig7", "fig8")}
    assert [len(parts[t]) for t in ("6", "8", "fig7", "fig8")] == [6, 9, 26, 5]
    assert set().union(*parts.values()) == configs
    # seeds outermost within an optimizer: a partial batch leaves complete seeds
    first = [s.seed for s in plan[:24]]
    assert first == [0] * 24
    runs = plan[0].run_dir("R")
    assert runs == Path("R/ablation/ablation/tiny100_32/sgd/baseline/seed-0")


def test_ablation_profile_settings():
    cfg = load_config(C.CONFIG_PATH, "ablation")
    cpu = load_config(C.CONFIG_PATH, "cpu")
    assert cfg["train"]["epochs"] == 1 and cfg["train"]["train_subset"] == 25000
    assert cfg["seeds"] == 3 and cfg["model"] == cpu["model"] and cfg["optimizers"] == cpu["optimizers"]
    for k in ("batch_size", "label_smoothing", "tta_flip", "pad", "val_subset"):
        assert cfg["train"][k] == cpu["train"][k]
    s = C.run_settings(cfg, C.RunSpec("ablation", "ablation", "tiny100_32", "sgd",
                                      "gal+adjuster=cnn+arch=256", 0))
    assert s["gal"]["adjuster"] == "cnn" and s["gal"]["arch"] == [256] and s["gal"]["alpha"] == 0.01


def test_analysis_profile_is_its_committed_plan():
    """The analysis profile: >= 4 epochs, float64 GAL step, channels_last, 5 paired seeds on every
    row of Table VI and Fig. 8(a); its plan is the one committed with its measured cost."""
    cfg = load_config(C.CONFIG_PATH, "analysis")
    cpu = load_config(C.CONFIG_PATH, "cpu")
    assert cfg["train"]["epochs"] >= 4 and cfg["gal"]["precision"] == "float64"
    assert cfg["train"]["channels_last"] is True and cfg["num_threads"] == 1
    assert cfg["model"] == cpu["model"] and cfg["optimizers"] == cpu["optimizers"]
    # the ablation profile and its committed one-epoch records are kept as they were
    abl = load_config(C.CONFIG_PATH, "ablation")
    assert abl["train"]["epochs"] == 1 and abl["run"]["ablation"]["dataset"] == "tiny100_32"
    plan = C.plan_runs(cfg, "ablation", "analysis")
    committed = json.loads((C.REPO / "results/benchmarks/analysis_plan.json").read_text())
    got = {(s.optimizer, s.method): [] for s in plan}
    for s in plan:
        got[(s.optimizer, s.method)].append(s.seed)
    assert {(c["optimizer"], c["method"]): c["seeds"] for c in committed["plan"]} == got
    assert committed["runs"] == len(plan) == 185 and {s.dataset for s in plan} == {"cifar10_jpeg"}
    assert committed["left_out"] == {}
    # the whole plan fits the 8-hour budget at the per-run time measured in its first batch ...
    assert committed["total_hours_jobs2"] <= committed["budget_hours"] == 8
    assert committed["total_hours_jobs2"] == pytest.approx(
        len(plan) * committed["per_run_s"] / 2 / 3600, abs=0.01)
    first = committed["first_batch"]
    assert committed["per_run_s"] == first["measured_in_batch"]["wall_s_per_run_median"]
    # ... and the first batch (80 runs) fitted it at the busy-core estimate made before any run
    assert first["runs"] == 80 and first["total_hours_jobs2_at_B"] <= 8
    assert first["total_hours_jobs2_at_B"] == pytest.approx(
        first["runs"] * first["per_run_estimate_s"] / 2 / 3600, abs=0.01)
    assert {(c["optimizer"], c["method"]) for c in first["plan"]} < set(got)
    five = list(range(5))
    assert all(seeds == five for seeds in got.values())
    sweep = {m for (o, m) in got if o == "lookahead_sgd"}
    # Fig. 7: every alpha, beta and arch of the paper's sweep; the point equal to the optimizer's
    # GAL setting is its `gal` run
    default = {"sgd": {"alpha=0.01", "beta=1"}, "lookahead_sgd": {"alpha=0.001", "beta=5"}}
    for opt in ("sgd", "lookahead_sgd"):
        for m in ("alpha=1e-05", "alpha=0.0001", "alpha=0.001", "alpha=0.01", "alpha=0.1",
                  "beta=0.5", "beta=1", "beta=2", "beta=5", "beta=10",
                  "arch=256", "arch=256-64", "arch=256-64-32-16"):
            assert ((opt, f"gal+{m}") in got) != (m in default[opt]), (opt, m)
    assert len(sweep) == 13  # baseline, gal (alpha 1e-3, beta 5, (256-64-32)) and 11 sweep points
    for m in ("baseline", "gal", "gal+adjuster=uniform", "gal+adjuster=uniform+noise_scaling=unit",
              "gal+adjuster=normal", "gal+adjuster=normal+noise_scaling=unit", "gal+policy=lt",
              "gal+policy=always", "gal+policy=never", "gal+arch=256-64",
              "gal+adjuster=cnn+arch=256-64", "gal+adjuster=cnn+arch=256-64-32-16"):
        assert got[("sgd", m)] == five, m
    s = C.run_settings(cfg, next(p for p in plan if p.method == "gal"))
    assert s["gal"]["arch"] == [256, 64, 32] and (s["gal"]["alpha"], s["gal"]["beta"]) == (0.01, 1.0)
    assert s["gal"]["precision"] == "float64"


# --------------------------------------------------------------------------- parameter counts
def _mlp_by_hand(d: int, widths: list[int]) -> int:
    w = [d, *widths, d]
    return sum(a * b + b for a, b in zip(w[:-1], w[1:], strict=False))


def _cnn_by_hand(d: int, chans: list[int]) -> int:
    c = [1, *chans]
    return sum(9 * a * b + b for a, b in zip(c[:-1], c[1:], strict=False)) + chans[-1] * d + d


@pytest.mark.parametrize("arch", [[256], [256, 64], [256, 64, 32], [256, 64, 32, 16]])
def test_adjuster_parameter_counts_d100(arch):
    assert count_parameters(MLPAdjuster(100, arch)) == _mlp_by_hand(100, arch)
    assert count_parameters(CNNAdjuster(100, arch)) == _cnn_by_hand(100, arch)
    assert _mlp_by_hand(100, [256]) == 51556 and _cnn_by_hand(100, [256, 64]) == 156580


def test_paper_counts_are_weights_without_linear_biases():
    paper = {"mlp/256": 51.2, "mlp/256-64": 48.3, "mlp/256-64-32": 47.2, "mlp/256-64-32-16": 46.1,
             "cnn/256": 28.1, "cnn/256-64": 156.4, "cnn/256-64-32": 171.7, "cnn/256-64-32-16": 174.7}
    for key, total, _weights, reading in paper_count_reading():
        kind, arch = key.split("/")
        widths = [int(w) for w in arch.split("-")]
        full = _mlp_by_hand(100, widths) if kind == "mlp" else _cnn_by_hand(100, widths)
        assert total == full
        no_lin_bias = full - (sum(widths) + 100 if kind == "mlp" else 100)
        assert reading == no_lin_bias
        assert math.floor(reading / 100) / 10 == paper[key]
        assert round(total / 1000, 1) != paper[key] or kind == "cnn" and arch == "256"


# --------------------------------------------------------------------------- Tables VI / VIII
ERR = {  # method -> errors of seeds 0, 1, 2 (None = failed run)
    "baseline": [60.0, 61.0, 62.5],
    "gal": [59.0, 60.5, 61.5],
    "gal+adjuster=uniform": [60.5, 61.0, 62.0],
    "gal+adjuster=uniform+noise_scaling=unit": [90.0, 92.0, None],
    "gal+adjuster=normal+noise_scaling=unit": [95.0, 96.0, 96.5],
    "gal+arch=256": [61.0, 61.0, 63.0],
    "gal+adjuster=cnn+arch=256-64": [62.0, 62.5, 63.5],
    "gal+alpha=0.1": [70.0, 70.0, 70.0],  # in neither table
}
ARCH = {"gal": "256-64-32", "gal+arch=256": "256", "gal+adjuster=cnn+arch=256-64": "256-64"}


def _records(root: Path) -> Path:
    for method, errs in ERR.items():
        for seed, err in enumerate(errs):
            d = root / "ablation" / "ablation" / "tiny100_32" / "sgd" / method / f"seed-{seed}"
            w = RunWriter(d, device="cpu")
            w.start({"task": "classification", "table": "ablation", "dataset": "tiny100_32",
                     "dataset_label": "Tiny-ImageNet-100 at 32 px (CIFAR-100 stand-in)",
                     "optimizer": "sgd", "method": method, "seed": seed, "profile": "ablation",
                     "model": "convnet_32_64_128_s2", "pretrained": False, "epochs": 1,
                     "h_params": 47684 if method == "gal" else 1234,
                     "gal_arch": ARCH.get(method)}, profile="ablation", seed=seed)
            if err is None:
                w.fail("non-finite loss")
            else:
                w.finish({"error_top1": err})
    return root


def _cell(g, method_label: str, col: str) -> str:
    return g.loc[g["Method"] == method_label, col].iloc[0]


def test_table6_rows_statistics_and_verdicts(tmp_path):
    from gal_suite.records import load_runs

    df = load_runs(_records(tmp_path) / "ablation")
    g, facts = grid(df, TABLE6)
    E = "Top-1 error %↓"
    assert list(g["Method"]) == [m.label for m in TABLE6.methods]
    assert _cell(g, "Baseline", f"{E} ours") == f"{np.mean(ERR['baseline']):.2f} ± {np.std(ERR['baseline'], ddof=1):.2f}"
    assert _cell(g, "Baseline", f"{E} paper") == "11.81" and _cell(g, "GAL (proposed, h = MLP)", f"{E} paper") == "11.37"
    # unit-scaled uniform noise: one failed run counted, the paired Δ over the 2 shared seeds
    uni = "U(-1, 1); ṽ = α v/|v|"
    assert _cell(g, uni, "n") == "2 (+1 failed)" and _cell(g, uni, f"{E} paper") == "97.20"
    d = np.array([90.0 - 60.0, 92.0 - 61.0])
    half = scipy.stats.t.ppf(0.975, 1) * d.std(ddof=1) / math.sqrt(2)
    assert _cell(g, uni, f"{E} Δ vs baseline") == f"{d.mean():+.2f} [{d.mean() - half:.2f}, {d.mean() + half:.2f}] n=2"
    # normal unit noise: worse, as the paper reports, but by far less than the paper's +85 points
    # (paired CI by hand against the paper's row − baseline difference)
    nrm = "N(0, 1); ṽ = α v/|v|"
    dn = np.array([95.0, 96.0, 96.5]) - np.array(ERR["baseline"])
    hn = scipy.stats.t.ppf(0.975, 2) * dn.std(ddof=1) / math.sqrt(3)
    assert 0 < dn.mean() - hn and dn.mean() + hn < 98.36 - 11.81
    assert _cell(g, nrm, f"{E} verdict").split(" (Holm")[0] == "same direction, smaller"
    assert _cell(g, "N(0, 1); ṽ = α|∂l/∂z| v/|v| (Eq. 4)", "n") == "not run"
    assert "gal+alpha=0.1" not in set(facts["records"]["method"])  # in neither table
    assert facts["n_failed"] == 1


def test_table8_rows_params_and_render(tmp_path):
    runs = _records(tmp_path)
    paths = render_table(8, runs, tmp_path / "tables")
    csv = __import__("pandas").read_csv(paths["csv"], dtype=str).fillna("")
    labels = list(csv["Method"])
    assert labels == [m.label for m in TABLE8.methods]
    row = csv[csv["Method"] == "MLP (256-64-32)"].iloc[0]
    assert row["Parameters ours"] == "47.7K (47,684)" and row["Parameters paper"] == "47.2K"
    assert row["n"] == "3" and csv[csv["Method"] == "CNN (256-64)"].iloc[0]["n"] == "3"
    assert csv[csv["Method"] == "MLP (256-64)"].iloc[0]["n"] == "not run"
    md = Path(paths["md"]).read_text()
    assert "matches every paper count" in md and "Table VIII" in md
    numeric = __import__("pandas").read_csv(paths["numeric"])
    r = numeric[numeric["method"] == "mlp/256-64-32_vs_baseline"].iloc[0]
    assert r["paired_mean_diff"] == pytest.approx(np.mean(np.subtract(ERR["gal"], ERR["baseline"])))


# --------------------------------------------------------------------------- smoke, end to end
def test_smoke_ablation_end_to_end(tmp_path, monkeypatch):
    """The smoke profile runs the Table VI and Fig. 8 parts (1 seed) and every target renders;
    line 10 (policy never) sends dl/dz to the model, so it equals the baseline exactly."""
    _, over = _smoke(tmp_path, "imagefolder", monkeypatch)
    runs = tmp_path / "runs"
    for part in ("6", "fig8"):
        counts = C.run_table(part, "smoke", seeds=1, runs_root=runs, overrides=over, progress=False)
        assert counts["failed"] == 0
    assert C.run_table("8", "smoke", seeds=1, runs_root=runs, overrides=over, progress=False,
                       methods=["baseline", "gal+adjuster=cnn+arch=8-4"])["complete"] == 1
    base = runs / "ablation/smoke/smoke/sgd"
    mb = json.loads((base / "baseline/seed-0/metrics.json").read_text())
    mn = json.loads((base / "gal+policy=never/seed-0/metrics.json").read_text())
    assert mb["error_top1"] == mn["error_top1"] and mb["val_loss"] == mn["val_loss"]
    cfg = json.loads(json.dumps(__import__("yaml").safe_load(
        (base / "gal+adjuster=uniform+noise_scaling=unit/seed-0/config.yaml").read_text())))
    assert cfg["gal_adjuster"] == "uniform" and cfg["gal_noise_scaling"] == "unit" and cfg["h_params"] == 0
    for n in (6, 8):
        assert Path(render_table(n, runs, tmp_path / "tables")["md"]).exists()
    from gal_suite.figures import render_figure

    for n in (7, 8):
        if n == 7:
            C.run_table("fig7", "smoke", seeds=1, runs_root=runs, overrides=over, progress=False,
                        optimizers=["sgd"], methods=["gal+alpha=0.1", "gal+beta=5"])
        paths = render_figure(n, runs, tmp_path / "figs", profile="smoke")
        assert any(str(p).endswith(".png") for p in paths)


def test_ablation_profile_steps_in_float64_and_tables_i_ii_keep_their_settings():
    """The analyses read |r|, cos and g-beats-grad, which float32 cannot resolve: the ablation
    profile computes GAL's step in float64; Tables I-II keep their recorded settings."""
    from experiments.classification import config_for, plan_runs
    from experiments.classification_spec import run_settings
    from gal_suite.config import load_config

    abl = load_config(config_for("ablation"), "ablation")
    spec = next(s for s in plan_runs(abl, "ablation", "ablation") if s.method == "gal")
    assert run_settings(abl, spec)["gal"]["precision"] == "float64"
    cpu = load_config(config_for(1), "cpu")
    spec = next(s for s in plan_runs(cpu, 1, "cpu") if s.method == "gal")
    assert "precision" not in run_settings(cpu, spec)["gal"]
