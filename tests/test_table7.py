"""Table VII (training time per image, Sec. VI-C): rendered from a synthetic benchmark report and
synthetic classification run records with known numbers; every cell recomputed by hand."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd
import pytest

import gal_suite.records as records
from gal_suite import paper_values as pv
from gal_suite.cli import main as gal_main
from gal_suite.records import RunWriter
from gal_suite.tables import IMPLEMENTED_TABLES, NoRunsError, render_table
from gal_suite.tables.table7 import TABLE7, TABLE7_COLUMNS

COMMIT = "fedcba9876543210"
# seed -> s_per_image of the run records (Table I, cpu profile, SGD)
REC_BASE = {0: 1.00e-3, 1: 1.10e-3, 2: 0.90e-3}
REC_GAL = {0: 1.02e-3, 1: 1.12e-3, 2: 0.95e-3}


def _case(name, kind, setting, base, gal, paired, flop_bound, extra_ratio, ops, target):
    return {
        "name": name, "kind": kind, "description": f"{name} synthetic", "paper_setting": setting,
        "batch": 8,
        "step": {
            "rounds": 5, "inner": 1,
            "s_per_image": {"baseline": {"median": base}, "gal": {"median": gal},
                            "gal_no_compare": {"median": gal * 0.99}},
            "gal": {"ratio": paired[1], "overhead_pct": 100 * (paired[1] - 1),
                    "ratio_of_medians": gal / base,
                    "paired_ratio": {"q25": paired[0], "median": paired[1], "q75": paired[2]}},
            "gal_no_compare": {"ratio": 1.0, "overhead_pct": 0.0, "ratio_of_medians": 0.99 * gal / base,
                               "paired_ratio": {"q25": 0.99, "median": 1.0, "q75": 1.01}},
        },
        "extra_work": {"ratio": extra_ratio},
        "flops": {"baseline": 1000, "gal": 1000 * (1 + flop_bound), "bound": flop_bound},
        "ops": {"baseline_step": ops[0], "gal_step": ops[1]},
        "target": target,
    }


def _record(root: Path, method: str, seed: int) -> RunWriter:
    """The started writer of a Table I run record (cpu profile, CIFAR-10 JPEG copy, SGD)."""
    d = root / "runs" / "table1" / "cpu" / "cifar10_jpeg" / "sgd" / method / f"seed-{seed}"
    w = RunWriter(d, device="cpu")
    w.start({"task": "classification", "table": 1, "dataset": "cifar10_jpeg", "optimizer": "sgd",
             "method": method}, profile="cpu", seed=seed)
    return w


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(records, "git_info", lambda: (COMMIT, False))
    root = tmp_path / "results"
    report = {
        "benchmark": "gal_cost", "device": "cpu", "hardware": "CPU: Test CPU (2 logical cores)",
        "threads": 1, "torch": "9.9", "git_commit": COMMIT, "git_dirty": False,
        "command": "python benchmarks/gal_cost.py", "measured_at": "2026-01-01T00:00:00",
        "load_average": {"start": [1.5, 1.0, 0.5], "end": [1.6, 1.1, 0.6]},
        "note": "a background batch shared the cores",
        "cases": [
            _case("resnet50", "classification", "ImageNet", 0.5, 0.5025, (0.998, 1.004, 1.01),
                  2e-5, 3e-3, (900, 1060),
                  {"rule": "r", "limit_pct": 1.0, "value_pct": 0.4, "met": True,
                   "iqr_pct": [-0.2, 1.0], "resolved": False, "extra_work_pct": 0.3,
                   "extra_work_met": True}),
            _case("boston", "regression", "-", 1e-5, 2.4e-5, (2.3, 2.4, 2.5), 0.013, 1.8,
                  (45, 150), {"rule": "r", "limit": 1.5, "value": 2.4, "met": False}),
        ],
    }
    rn = report["cases"][0]["step"]  # the A/A arm: the baseline against itself
    rn["s_per_image"]["baseline_repeat"] = {"median": 0.501}
    rn["baseline_repeat"] = {"ratio": 1.002, "overhead_pct": 0.2,
                             "paired_ratio": {"q25": 0.995, "median": 1.002, "q75": 1.01}}
    (root / "benchmarks").mkdir(parents=True)
    (root / "benchmarks" / "gal_cost_cpu.json").write_text(json.dumps(report))
    (root / "benchmarks" / "other.json").write_text("{}")  # not a gal_cost report: ignored
    for method, vals in (("baseline", REC_BASE), ("gal", REC_GAL)):
        for seed, v in vals.items():
            _record(root, method, seed).finish({"error_top1": 10.0, "s_per_image": v})
    # a failed GAL run and an alpha=0 control: neither enters the times
    _record(root, "gal", 3).fail("non-finite loss")
    _record(root, "gal_alpha0", 0).finish({"s_per_image": 9.0})
    return root


def _rows(grid: pd.DataFrame, ours_prefix: str, method: str) -> pd.Series:
    sel = grid[grid["Ours"].str.startswith(ours_prefix) & (grid["Method"] == method)]
    assert len(sel) == 1, (ours_prefix, method, len(sel))
    return sel.iloc[0]


def test_table7_cells(results: Path, tmp_path: Path) -> None:
    assert 7 in IMPLEMENTED_TABLES
    paths = render_table(7, results / "runs", tmp_path / "tables")
    assert {p.name for p in paths.values()} == {"table7.md", "table7.csv", "table7.tex",
                                                 "table7_numeric.csv"}
    grid = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    assert list(grid.columns) == TABLE7_COLUMNS
    # the paper's values and overheads, from paper_values.yaml
    p_in_b, p_in_g = pv.value(7, "imagenet/baseline", "time_s"), pv.value(7, "imagenet/gal", "time_s")
    assert (p_in_b, p_in_g) == (0.3907, 0.4027)
    over_in = f"+{100 * (p_in_g / p_in_b - 1):.2f}%"
    assert over_in == "+3.07%"

    # benchmark, ImageNet block
    b = _rows(grid, "resnet50 (benchmark gal_cost_cpu.json", "Baseline")
    g = _rows(grid, "resnet50 (benchmark gal_cost_cpu.json", "GAL (proposed)")
    assert b["Paper setting"] == g["Paper setting"] == "ImageNet"
    assert b["Hardware"] == "CPU: Test CPU (2 logical cores), 1 thread(s)"
    assert (b["Time (s/image) ours"], b["Time (s/image) paper"]) == ("5.000e-01", "3.907e-01")
    assert (g["Time (s/image) ours"], g["Time (s/image) paper"]) == ("5.025e-01", "4.027e-01")
    assert g["Overhead ours"] == "+0.40% [−0.20%, +1.00%]"
    assert g["Overhead paper"] == over_in
    assert g["FLOP bound"] == "0.0020%" and g["Extra work / fwd+bwd"] == "0.3000%"
    assert (b["Ops (aten)"], g["Ops (aten)"]) == ("900", "1060")
    assert g["Target"] == "✓ met (<= 1.00%), not resolved (IQR width 1.20%); extra work 0.30% ✓"
    aa = _rows(grid, "resnet50 (benchmark", "Baseline again (A/A: the measurement's noise)")
    assert aa["Overhead ours"] == "+0.20% [−0.50%, +1.00%]" and aa["Overhead paper"] == "—"
    assert aa["Time (s/image) paper"] == "3.907e-01" and aa["Target"] == ""
    nc = _rows(grid, "resnet50 (benchmark", "GAL, compare_vanilla=False")
    assert nc["Overhead ours"] == "+0.00% [−1.00%, +1.00%]" and nc["FLOP bound"] == ""

    # benchmark case without a paper row (Table V MLP)
    g = _rows(grid, "boston (benchmark", "GAL (proposed)")
    assert g["Paper setting"] == "—" and g["Time (s/image) paper"] == "—"
    assert g["Overhead ours"] == "+140.00% [+130.00%, +150.00%]" and g["Overhead paper"] == "—"
    assert g["Target"] == "✗ not met (<= 1.5x: 2.40x)" and g["FLOP bound"] == "1.3%"

    # run records, CIFAR-10 block: mean ± std over complete seeds; failed and controls excluded
    rb = _rows(grid, "run records table1/cpu/cifar10_jpeg/sgd", "Baseline")
    rg = _rows(grid, "run records table1/cpu/cifar10_jpeg/sgd", "GAL (proposed)")
    assert rb["Paper setting"] == "CIFAR-10" and rb["Hardware"] == "cpu"
    mb, sb = statistics.mean(REC_BASE.values()), statistics.stdev(REC_BASE.values())
    mg, sg = statistics.mean(REC_GAL.values()), statistics.stdev(REC_GAL.values())
    assert rb["Time (s/image) ours"] == f"{mb:.3e} ± {sb:.3e}"
    assert rg["Time (s/image) ours"] == f"{mg:.3e} ± {sg:.3e}"
    assert rb["Ours"].endswith("(n = 3)") and rg["Ours"].endswith("(n = 3)")
    assert rg["Overhead ours"] == f"+{100 * (mg / mb - 1):.2f}%"
    assert rg["Time (s/image) paper"] == "5.444e-01" and rg["Overhead paper"] == "+2.87%"

    # CIFAR-100: nothing of ours -> the paper's rows, "not measured"
    cg = grid[(grid["Paper setting"] == "CIFAR-100") & (grid["Method"] == "GAL (proposed)")].iloc[0]
    assert cg["Ours"] == "not measured" and cg["Overhead paper"] == "+2.05%"
    assert cg["Hardware"] == "paper: 4x NVIDIA 2080 Ti"

    # order: ImageNet, CIFAR-10, CIFAR-100 blocks, then the cases the paper has no row for
    order = list(dict.fromkeys(grid["Paper setting"]))
    assert order == ["ImageNet", "CIFAR-10", "CIFAR-100", "—"]

    num = pd.read_csv(paths["numeric"])
    sel = num[(num["case"] == "resnet50") & (num["method"] == "gal")].iloc[0]
    assert sel["s_per_image"] == 0.5025 and sel["flop_bound"] == 2e-5
    assert sel["overhead"] == pytest.approx(0.004) and sel["paper_overhead"] == pytest.approx(
        0.4027 / 0.3907 - 1)
    rec = num[(num["source"] == "run records") & (num["method"] == "gal")].iloc[0]
    assert rec["n"] == 3 and rec["failed"] == 1 and rec["s_per_image"] == pytest.approx(mg)

    md = paths["md"].read_text()
    assert "a background batch shared the cores" in md and "load average [1.5, 1.0, 0.5]" in md
    assert "Failed runs are excluded: 1 excluded" in md
    assert "8x NVIDIA V100" in md and COMMIT[:10] in md
    tex = paths["tex"].read_text()
    assert r"\begin{tabular}" in tex and "≤" not in tex and "×" not in tex


def test_table7_from_the_cli_and_with_one_source(results: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert gal_main(["table", "7", "--runs", str(results / "runs"), "--out", str(out)]) == 0
    assert (out / "table7.md").is_file() and "wrote" in capsys.readouterr().out
    # benchmark only (no records): CIFAR-10 and CIFAR-100 show the paper's rows alone
    import shutil

    from gal_suite.tables.table7 import render_cost_table

    shutil.copytree(results / "benchmarks", tmp_path / "bonly" / "benchmarks")
    paths = render_table(7, tmp_path / "bonly" / "runs", tmp_path / "t2")
    grid = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    assert len(grid) == 4 + 2 + 2 + 3  # resnet50 arms, CIFAR-10, CIFAR-100, boston arms
    assert list(grid.loc[grid["Paper setting"] == "CIFAR-10", "Ours"]) == ["not measured"] * 2

    paths = render_cost_table(TABLE7, tmp_path / "empty" / "runs", tmp_path / "t3",
                              benchmarks_dir=results / "benchmarks")
    grid = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    assert "resnet50 (benchmark gal_cost_cpu.json, batch 8)" in set(grid["Ours"])


def test_table7_without_anything_names_the_fix(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(NoRunsError, match="benchmarks/gal_cost.py"):
        render_table(7, tmp_path / "runs", tmp_path / "out")
    assert gal_main(["table", "7", "--runs", str(tmp_path / "runs"), "--out",
                     str(tmp_path / "out")]) == 1
    assert "benchmarks/gal_cost.py" in capsys.readouterr().err


def test_table7_is_a_spec_of_the_one_renderer(results: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Table VII (Sec. VI-C) is registered like every table and written by the one renderer
    (gal_suite.tables.render.render); its only special part is its tabulate (the cost grid)."""
    import dataclasses

    import gal_suite.tables as T
    from gal_suite.tables.render import render
    from gal_suite.tables.table7 import cost_table

    assert T.SPECS[7] is TABLE7 and TABLE7.tabulate is cost_table
    assert all(T.SPECS[n].tabulate is None for n in T.SPECS if n != 7)
    one = render(TABLE7, results / "runs", tmp_path / "one")
    via = render_table(7, results / "runs", tmp_path / "via")
    assert {k: p.read_bytes() for k, p in one.items()} == {k: p.read_bytes() for k, p in via.items()}
    elsewhere = dataclasses.replace(TABLE7, benchmarks_dir=str(results / "benchmarks"))
    moved = render(elsewhere, tmp_path / "no" / "runs", tmp_path / "moved")
    assert "resnet50 (benchmark gal_cost_cpu.json" in moved["md"].read_text()
    seen = []
    monkeypatch.setattr(T, "render", lambda spec, runs, out: seen.append(spec) or {})
    for n in T.IMPLEMENTED_TABLES:
        T.render_table(n, tmp_path, tmp_path)
    assert seen == [T.SPECS[n] for n in T.IMPLEMENTED_TABLES]
