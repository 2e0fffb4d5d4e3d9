"""Tables I and II (image classification, CIFAR-10/100): spec-driven grid from synthetic run
records with known numbers; every statistic recomputed independently (scipy / by hand)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

import gal_suite.records as records
from gal_suite import paper_values as pv
from gal_suite.records import RunWriter
from gal_suite.stats import mde_paired, paired_verdict
from gal_suite.tables import IMPLEMENTED_TABLES, TABLE1, NoRunsError, render_table

COMMIT = "0123456789abcdef"
LABEL = "CIFAR-10 (JPEG q75 copy)"
# seed -> (top-1 %, top-5 %, val_loss)
SGD_BASE = {0: (6.1, 0.30, 0.21), 1: (6.5, 0.42, 0.23), 2: (5.9, 0.25, 0.20)}
SGD_GAL = {0: (5.0, 0.20, 0.18), 1: (5.2, 0.31, 0.19), 2: (4.9, 0.22, 0.17)}
# AdaBound: GAL ~ baseline with tight per-seed differences (the paired CI excludes the paper's
# effect of -0.12 points while the Welch CI does not)
ADA_BASE = {0: (8.00, 0.50, 0.30), 1: (8.40, 0.55, 0.31), 2: (7.80, 0.45, 0.29)}
ADA_GAL = {0: (8.01, 0.50, 0.30), 1: (8.42, 0.56, 0.31), 2: (7.79, 0.46, 0.29)}
ADA_A0 = {0: (8.00, 0.50, 0.30), 1: (8.40, 0.55, 0.31), 2: (7.80, 0.45, 0.2900001)}  # seed 2 differs


def _write(root, table, dataset, label, optimizer, method, seed, metrics, failed=False):
    d = root / f"table{table}" / "cpu" / dataset / optimizer / method / f"seed-{seed}"
    w = RunWriter(d, device="cpu")
    cfg = {"task": "classification", "table": table, "dataset": dataset, "dataset_label": label,
           "optimizer": optimizer, "method": method, "model": "airbench_s", "pretrained": False,
           "epochs": 8, "settings": {"batch_size": 512}}
    w.start(cfg, profile="cpu", seed=seed)
    top1, top5, loss = metrics
    w.finish({"error_top1": float("nan") if failed else top1, "error_top5": top5, "val_loss": loss,
              "images_per_s": 1000.0, "s_per_image": 1e-3, "train_time_s": 10.0})


def _sgd_root(tmp_path, monkeypatch, twin):
    """A runs root holding Table I's SGD baseline seeds and the same numbers under ``twin``."""
    monkeypatch.setattr(records, "git_info", lambda: (COMMIT, False))
    root = tmp_path / "runs"
    for s, m in SGD_BASE.items():
        _write(root, 1, "cifar10_jpeg", LABEL, "sgd", "baseline", s, m)
        _write(root, 1, "cifar10_jpeg", LABEL, "sgd", twin, s, m)
    return root


@pytest.fixture
def runs(tmp_path, monkeypatch):
    root = _sgd_root(tmp_path, monkeypatch, "gal_alpha0")  # identical to the baseline: passes
    for s, m in SGD_GAL.items():
        _write(root, 1, "cifar10_jpeg", LABEL, "sgd", "gal", s, m)
    _write(root, 1, "cifar10_jpeg", LABEL, "sgd", "gal", 3, (1.0, 1.0, 1.0), failed=True)
    for s, m in ADA_BASE.items():
        _write(root, 1, "cifar10_jpeg", LABEL, "adabound", "baseline", s, m)
    for s, m in ADA_GAL.items():
        _write(root, 1, "cifar10_jpeg", LABEL, "adabound", "gal", s, m)
    for s, m in ADA_A0.items():
        _write(root, 1, "cifar10_jpeg", LABEL, "adabound", "gal_alpha0", s, m)
    return root


def _ms(vals, i):
    a = np.array([v[i] for v in vals.values()])
    return f"{a.mean():.2f} ± {a.std(ddof=1):.2f}"


def _cell(grid, optimizer, method, col):
    sel = grid[(grid["Optimizer"] == optimizer) & (grid["Method"] == method)]
    assert len(sel) == 1, (optimizer, method, len(sel))
    return sel.iloc[0][col]


def _col(vals, i):
    return [v[i] for v in vals.values()]


def test_table1_cells(runs, tmp_path):
    paths = render_table(1, runs, tmp_path / "tables")
    assert {p.name for p in paths.values()} == {"table1.md", "table1.csv", "table1.tex", "table1_numeric.csv"}
    grid = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    assert list(grid.columns) == TABLE1.columns
    assert list(grid.columns[:5]) == ["Profile", "Dataset", "Optimizer", "Method", "n"]
    T1, T5 = "Top-1 error %↓", "Top-5 error %↓"
    assert (grid["Dataset"] == LABEL).all() and (grid["Profile"] == "cpu").all()

    # means ± std (ddof=1) from the runs; paper's EfficientNet-B1 values beside them (top-1 only)
    assert _cell(grid, "SGD", "Baseline", f"{T1} ours") == _ms(SGD_BASE, 0)
    assert _cell(grid, "SGD", "Baseline", f"{T5} ours") == _ms(SGD_BASE, 1)
    assert _cell(grid, "SGD", "GAL (proposed)", f"{T1} ours") == _ms(SGD_GAL, 0)
    assert _cell(grid, "SGD", "Baseline", f"{T1} paper") == "1.92 ± 0.12"
    assert _cell(grid, "SGD", "GAL (proposed)", f"{T1} paper") == "1.84 ± 0.06"
    assert _cell(grid, "AdaBound", "GAL (proposed)", f"{T1} paper") == "3.03 ± 0.01"
    assert _cell(grid, "SGD", "Baseline", f"{T5} paper") == "—"
    assert _cell(grid, "SGD", "GAL α=0 (control)", f"{T1} paper") == "—"
    # Lookahead not run: listed with the paper's values; no control row when not run
    assert _cell(grid, "Lookahead (SGD)", "Baseline", "n") == "not run"
    assert _cell(grid, "Lookahead (SGD)", "Baseline", f"{T1} paper") == "2.01 ± 0.02"
    assert _cell(grid, "Lookahead (SGD)", "Student t (t, p)", f"{T1} ours") == "—"
    assert len(grid[(grid["Optimizer"] == "Lookahead (SGD)") & (grid["Method"] == "GAL α=0 (control)")]) == 0
    assert len(grid) == 3 * 9 + 2 * 3 + 2  # stat rows x optimizers + method rows

    # failed run excluded and counted
    assert _cell(grid, "SGD", "GAL (proposed)", "n") == "3 (+1 failed)"
    assert _cell(grid, "SGD", "Baseline", "n") == "3"

    # statistics, SGD top-1, recomputed independently
    b, g = _col(SGD_BASE, 0), _col(SGD_GAL, 0)
    ref = st.ttest_ind(b, g)
    assert _cell(grid, "SGD", "Student t (t, p)", f"{T1} ours") == f"({ref.statistic:.2f}, {ref.pvalue:.2e})"
    assert _cell(grid, "SGD", "Student t (t, p)", f"{T1} paper") == "—"
    w = st.ttest_ind(b, g, equal_var=False)
    assert _cell(grid, "SGD", "Welch (t, p)", f"{T1} ours") == f"({w.statistic:.2f}, {w.pvalue:.2e})"
    pr = st.ttest_rel(b, g)
    assert _cell(grid, "SGD", "paired t (t, p)", f"{T1} ours") == f"({pr.statistic:.2f}, {pr.pvalue:.2e}) n=3"
    d = np.array(g) - np.array(b)
    half = st.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    ci_lab = "95% CI paired Δ (GAL − baseline)"
    assert _cell(grid, "SGD", ci_lab, f"{T1} ours") == f"[{d.mean() - half:.2f}, {d.mean() + half:.2f}]"
    mde = mde_paired(d.std(ddof=1), 3)
    assert _cell(grid, "SGD", "MDE (paired, 80% power)", f"{T1} ours") == f"{mde:.2f}"
    assert _cell(grid, "SGD", "MDE (paired, 80% power)", f"{T1} paper") == "paper Δ = -0.08"
    assert _cell(grid, "SGD", "MDE (paired, 80% power)", f"{T5} paper") == "—"

    # alpha=0 control: exact equality seed by seed
    assert _cell(grid, "SGD", "GAL α=0 (control)", "check") == "✓ = baseline exactly on 3/3 seeds"
    assert _cell(grid, "AdaBound", "GAL α=0 (control)", "check").startswith("✗ differs from baseline on 1/3")

    # verdicts: the paired CI (by hand above) against the paper's Δ = -0.08; GAL clearly better
    want = paired_verdict((d.mean() - half, d.mean() + half), -0.08)
    assert d.mean() + half < 0 and want != "inconclusive"
    assert _cell(grid, "SGD", "GAL (proposed)", f"{T1} verdict").startswith(want + " (Holm ")
    assert _cell(grid, "SGD", "Baseline", f"{T1} verdict") == ""
    # AdaBound: not significant; the paper's -0.12 lies outside the paired CI (but inside Welch's)
    ab, ag = _col(ADA_BASE, 0), _col(ADA_GAL, 0)
    assert st.ttest_ind(ag, ab, equal_var=False).pvalue >= 0.05
    ad = np.array(ag) - np.array(ab)
    ahalf = st.t.ppf(0.975, 2) * ad.std(ddof=1) / math.sqrt(3)
    assert not ad.mean() - ahalf <= -0.12 <= ad.mean() + ahalf
    wci = st.ttest_ind(ag, ab, equal_var=False).confidence_interval(0.95)
    assert wci.low <= -0.12 <= wci.high
    assert ad.mean() - ahalf <= 0 <= ad.mean() + ahalf  # holds 0, excludes the paper's effect
    assert _cell(grid, "AdaBound", "GAL (proposed)", f"{T1} verdict").startswith("not reproduced (Holm ")
    # top-5: the paper has no top-5 effect, so there is nothing to reproduce: no verdict
    assert _cell(grid, "AdaBound", "GAL (proposed)", f"{T5} verdict") == ""
    # the relative scale: per-seed GAL/baseline - 1 against the paper's GAL/baseline - 1
    rel = np.array(g) / np.array(b) - 1
    rhalf = st.t.ppf(0.975, 2) * rel.std(ddof=1) / math.sqrt(3)
    prel = pv.value(1, "efficientnet_b1_sgd_gal", "error")["mean"] / pv.value(
        1, "efficientnet_b1_sgd_baseline", "error")["mean"] - 1
    assert _cell(grid, "SGD", "95% CI relative Δ (GAL/baseline − 1)", f"{T1} ours") == (
        f"[{rel.mean() - rhalf:+.2%}, {rel.mean() + rhalf:+.2%}]")
    want_rel = paired_verdict((rel.mean() - rhalf, rel.mean() + rhalf), prel)
    assert _cell(grid, "SGD", "GAL (proposed)", f"{T1} verdict rel.").split(" (Holm")[0] == want_rel
    assert _cell(grid, "SGD", "seeds: stopping", f"{T1} ours") == "fixed seeds (not run until decided)"

    # numeric CSV: unrounded, with the paired CI and MDE
    num = pd.read_csv(paths["numeric"])
    sel = num[(num["optimizer"] == "sgd") & (num["method"] == "gal") & (num["metric"] == "error_top1")]
    assert sel["n"].iloc[0] == 3 and sel["failed"].iloc[0] == 1
    assert math.isclose(sel["mean"].iloc[0], np.mean(g))
    c = num[(num["optimizer"] == "sgd") & (num["method"] == "gal_vs_baseline") & (num["metric"] == "error_top1")]
    assert math.isclose(c["paired_ci_low"].iloc[0], d.mean() - half, rel_tol=1e-10)
    assert math.isclose(c["paired_ci_high"].iloc[0], d.mean() + half, rel_tol=1e-10)
    assert math.isclose(c["mde"].iloc[0], mde, rel_tol=1e-12)
    assert math.isclose(c["p"].iloc[0], ref.pvalue, rel_tol=1e-10)

    # header notes: profile, dataset label, model, pretrained, seeds, n, commits, paper setting
    md = paths["md"].read_text()
    assert md.startswith("# Table I: image classification, CIFAR-10")
    for text in ("profile(s) cpu", LABEL, "`cifar10_jpeg`", "airbench_s", "trained from scratch",
                 "8 epoch(s)", "3 seeds (0, 1, 2)", "(n = 3)", COMMIT[:10], "1 excluded",
                 "EfficientNet-B1 on the real CIFAR-10", "NOT every seed equals the baseline",
                 "PreResNet-110 (Lookahead) [29] 4.73", "MDE (paired, 80% power)",
                 "over the paired seeds", "Holm", "Two scales", "fixed in advance"):
        assert text in md, text
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| cpu | {LABEL} | SGD | Baseline |"))
    cells = [x.strip() for x in line.strip("|").split("|")]
    assert cells[TABLE1.columns.index(f"{T1} ours")] == _ms(SGD_BASE, 0)
    tex = paths["tex"].read_text()
    assert r"1.92 $\pm$ 0.12" in tex and r"\toprule" in tex and "Table I" in tex


def test_table2_paper_values_and_stand_in_label(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "git_info", lambda: (COMMIT, False))
    root = tmp_path / "runs"
    lab = "Tiny-ImageNet-100 at 32 px (CIFAR-100 stand-in)"
    for s in (0, 1):
        _write(root, 2, "tiny100_32", lab, "lookahead_sgd", "baseline", s, (40.0 + s, 15.0, 2.0))
        _write(root, 2, "tiny100_32", lab, "lookahead_sgd", "gal", s, (39.0 + s, 14.5, 1.9))
    # a Table I record under the Table II root is not Table II
    _write(root, 1, "cifar10_jpeg", LABEL, "sgd", "baseline", 0, (6.0, 0.3, 0.2))
    paths = render_table(2, root, tmp_path / "out")
    grid = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    assert set(grid["Dataset"]) == {lab}
    T1 = "Top-1 error %↓"
    sel = grid[(grid["Optimizer"] == "Lookahead (SGD)") & (grid["Method"] == "Baseline")]
    assert sel.iloc[0][f"{T1} paper"] == "11.70 ± 0.01"
    assert sel.iloc[0][f"{T1} ours"] == "40.50 ± 0.71"
    sel = grid[(grid["Optimizer"] == "SGD") & (grid["Method"] == "GAL (proposed)")]
    assert sel.iloc[0][f"{T1} paper"] == "11.37 ± 0.10" and sel.iloc[0]["n"] == "not run"
    # all paired differences equal (-1.0): sd 0 -> MDE 0, CI collapses to the point
    sel = grid[(grid["Optimizer"] == "Lookahead (SGD)") & (grid["Method"] == "MDE (paired, 80% power)")]
    assert sel.iloc[0][f"{T1} ours"] == "0.00"
    md = paths["md"].read_text()
    assert "EfficientNet-B1 on the real CIFAR-100" in md and "4 complete runs" in md
    assert "Table II" in md and "`tiny100_32`" in md


def test_dispatch_and_missing_runs(tmp_path):
    assert IMPLEMENTED_TABLES == (1, 2, 3, 4, 5, 6, 7, 8)
    with pytest.raises(NoRunsError, match="make table1"):
        render_table(1, tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(NoRunsError, match="make table4"):
        render_table(4, tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(NotImplementedError, match="the paper has no Table 9"):
        render_table(9, tmp_path, tmp_path / "out")
    # records present but none of this table (wrong task): a NoRunsError naming the fix
    d = tmp_path / "runs" / "table2" / "x" / "seed-0"
    w = RunWriter(d, device="cpu")
    w.start({"task": "regression", "table": 2, "dataset": "a", "optimizer": "sgd", "method": "gal"}, "cpu", 0)
    w.finish({"error_top1": 1.0})
    with pytest.raises(NoRunsError, match="make table2"):
        render_table(2, tmp_path / "runs", tmp_path / "out")


def test_notes_name_resumed_runs_and_mixed_devices(tmp_path, monkeypatch):
    root = _sgd_root(tmp_path, monkeypatch, "gal")
    # seed 1 of GAL was resumed; seed 2 of GAL ran on another device
    prov = root / "table1" / "cpu" / "cifar10_jpeg" / "sgd" / "gal" / "seed-1" / "provenance.json"
    p = json.loads(prov.read_text())
    prov.write_text(json.dumps({**p, "resumed": True}))
    prov2 = prov.parents[1] / "seed-2" / "provenance.json"
    prov2.write_text(json.dumps({**json.loads(prov2.read_text()), "device": "cuda"}))
    md = render_table(1, runs_root=root, out_dir=tmp_path / "t")["md"].read_text()
    note = next(ln for ln in md.splitlines() if ln.startswith("- Ours"))
    assert "1 run(s) resumed from a checkpoint" in note and "sgd/gal/seed-1" in note
    assert "device(s) cpu, cuda" in note and "✗ rows that mix devices: cpu/cifar10_jpeg/sgd" in note


def test_a_cell_never_pools_runs_made_with_different_settings(runs, tmp_path, capsys):
    """After one seed was added at 4 epochs, `gal table 1` pooled 2- and 4-epoch runs in one cell
    (only a note said "2, 4 epoch(s)"). Now the table is refused, naming the cell and the key."""
    from gal_suite.cli import main
    from gal_suite.tables.spec import MixedSettingsError

    render_table(1, runs, tmp_path / "ok")  # one setting per cell (split_seed-like keys aside)
    d = runs / "table1" / "cpu" / "cifar10_jpeg" / "sgd" / "gal" / "seed-5"
    w = RunWriter(d, device="cpu")
    w.start({"task": "classification", "table": 1, "dataset": "cifar10_jpeg", "dataset_label": LABEL,
             "optimizer": "sgd", "method": "gal", "model": "airbench_s", "pretrained": False,
             "epochs": 4, "settings": {"batch_size": 512, "train": {"epochs": 4}}},
            profile="cpu", seed=5)
    w.finish({"error_top1": 5.0, "error_top5": 0.2, "val_loss": 0.2, "images_per_s": 1000.0,
              "s_per_image": 1e-3, "train_time_s": 10.0})
    with pytest.raises(MixedSettingsError) as e:
        render_table(1, runs, tmp_path / "mixed")
    msg = str(e.value)
    assert "sgd" in msg and "train.epochs: (absent) | 4" in msg and "averaged together" in msg
    assert main(["table", "1", "--runs", str(runs), "--out", str(tmp_path / "cli")]) == 1
    assert "different settings" in capsys.readouterr().err


def test_mixed_settings_ignores_the_device_seeds_and_implicit_defaults():
    from gal_suite.tables.render import mixed_settings

    df = pd.DataFrame({"seed": [0, 1, 2], "settings.device": ["cpu", "cuda:0", "cpu"],
                       "settings.split_seed": [0, 1, 2], "settings.lr": [0.1, 0.1, 0.1],
                       "settings.train.train_subset": [np.nan, 0, 0],
                       "settings.train.epochs": [2, 2, 4]})
    assert mixed_settings(df) == ["train.epochs: 2 | 4"]
    assert mixed_settings(df.iloc[:2]) == []
