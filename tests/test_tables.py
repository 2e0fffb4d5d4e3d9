"""Table V renderer (spec-driven) and the `gal` CLI: paper and ours land in the right cells."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

import gal_suite.records as records
from gal_suite import paper_values as pv
from gal_suite.cli import main
from gal_suite.records import RunWriter
from gal_suite.stats import mde_paired, paired_verdict
from gal_suite.tables import TABLE5_COLUMNS, render_table5

COMMIT = "abcdef1234567890"

# paper variant, boston: known per-seed metrics
BASE = {0: (4.0, 24.0, 0.70), 1: (4.4, 26.0, 0.68), 2: (3.9, 22.0, 0.75)}
GAL = {0: (3.0, 14.0, 0.85), 1: (2.9, 13.0, 0.86), 2: (3.2, 15.0, 0.83)}
OLS = {0: (3.5, 21.0, 0.72)}
# standardized variant, diabetes
SBASE = {0: (43.0, 3000.0, 0.40), 1: (44.0, 3100.0, 0.38)}
SGAL = {0: (44.5, 3150.0, 0.37), 1: (45.0, 3200.0, 0.36)}
SA0 = {0: (43.0, 3000.0, 0.40), 1: (44.0, 3100.0, 0.3800001)}  # seed 1 differs


def _write(root, variant, dataset, method, seed, metrics, nan=False):
    d = root / "table5" / variant / dataset / method / f"seed-{seed}"
    w = RunWriter(d, device="cpu")
    cfg = {"task": "regression", "table": 5, "dataset": dataset, "method": method,
           "variant": variant}
    w.start(cfg, profile="cpu", seed=seed)
    w.log({"epoch": 0, "train_loss": 1.0})
    mae, mse, r2 = metrics
    w.finish({"mae": float("nan") if nan else mae, "mse": mse, "r2": r2})


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "git_info", lambda: (COMMIT, False))
    root = tmp_path / "runs"
    for s, m in BASE.items():
        _write(root, "paper", "boston", "baseline", s, m)
        _write(root, "paper", "boston", "gal_alpha0", s, m)  # identical: the control passes
    for s, m in GAL.items():
        _write(root, "paper", "boston", "gal", s, m)
    _write(root, "paper", "boston", "gal", 3, (1.0, 1.0, 1.0), nan=True)  # failed, excluded
    for s, m in OLS.items():
        _write(root, "paper", "boston", "ols", s, m)
    for s, m in SBASE.items():
        _write(root, "standardized", "diabetes", "baseline", s, m)
    for s, m in SGAL.items():
        _write(root, "standardized", "diabetes", "gal", s, m)
    for s, m in SA0.items():
        _write(root, "standardized", "diabetes", "gal_alpha0", s, m)
    # a killed run: ignored
    k = RunWriter(root / "table5" / "paper" / "boston" / "gal" / "seed-9", device="cpu")
    k.start({"task": "regression", "table": 5, "dataset": "boston", "method": "gal",
             "variant": "paper"}, "cpu", 9)
    return root


def _ms(vals, i):
    a = np.array([v[i] for v in vals.values()])
    return f"{a.mean():.4f} ± {a.std(ddof=1):.4f}"


def _cell(grid, variant, dataset, method, col):
    sel = grid[(grid["Variant"] == variant) & (grid["Dataset"] == dataset) & (grid["Method"] == method)]
    assert len(sel) == 1, (variant, dataset, method, len(sel))
    return sel.iloc[0][col]


def test_table5_cells(runs, tmp_path):
    out = tmp_path / "tables"
    paths = render_table5(runs, out)
    for k in ("md", "csv", "tex"):
        assert paths[k].is_file()
    grid = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    assert list(grid.columns) == TABLE5_COLUMNS
    B, G = "Boston housing", "Diabetes"

    # ours beside paper (paper variant): means ± std (ddof=1) from the runs, paper from the yaml
    assert _cell(grid, "paper", B, "Baseline", "MAE↓ ours") == _ms(BASE, 0)
    assert _cell(grid, "paper", B, "Baseline", "MAE↓ paper") == "3.9535 ± 0.4307"
    assert _cell(grid, "paper", B, "Baseline", "MSE↓ paper") == "23.0956 ± 4.1695"
    assert _cell(grid, "paper", B, "GAL (proposed)", "R²↑ ours") == _ms(GAL, 2)
    assert _cell(grid, "paper", B, "GAL (proposed)", "R²↑ paper") == "0.8699 ± 0.0206"
    assert _cell(grid, "paper", B, "GAL (proposed)", "MAE↓ ours") == "3.0333 ± 0.1528"
    # failed run excluded and counted
    assert _cell(grid, "paper", B, "GAL (proposed)", "n") == "3 (+1 failed)"
    assert _cell(grid, "paper", B, "Baseline", "n") == "3"
    # the paper has nothing for controls / references
    assert _cell(grid, "paper", B, "GAL α=0 (control)", "MAE↓ paper") == "—"
    assert _cell(grid, "paper", B, "OLS (reference)", "MAE↓ ours") == "3.5000"  # n=1: no std
    assert _cell(grid, "paper", B, "OLS (reference)", "MAE↓ paper") == "—"
    # not run
    assert _cell(grid, "paper", B, "N(0,1) noise, Eq. 4 (control)", "n") == "not run"
    assert _cell(grid, "paper", B, "N(0,1) noise, Eq. 4 (control)", "MSE↓ ours") == "—"
    assert _cell(grid, "paper", B, "MLPRegressor (reference)", "R²↑ ours") == "—"
    # alpha=0 control equals the baseline exactly
    assert _cell(grid, "paper", B, "GAL α=0 (control)", "check").startswith("✓")
    assert "3/3" in _cell(grid, "paper", B, "GAL α=0 (control)", "check")

    # t-test row: ours from scipy (baseline first, as the paper), paper's (t, p)
    a = [v[0] for v in BASE.values()]
    g = [v[0] for v in GAL.values()]
    ref = st.ttest_ind(a, g)
    assert _cell(grid, "paper", B, "t-test (t, p)", "MAE↓ ours") == f"({ref.statistic:.2f}, {ref.pvalue:.2e})"
    assert _cell(grid, "paper", B, "t-test (t, p)", "MAE↓ paper") == "(5.02, 1.02e-03)"
    assert _cell(grid, "paper", B, "t-test (t, p)", "R²↑ paper") == "(-4.92, 1.16e-03)"
    w = st.ttest_ind(a, g, equal_var=False)
    assert _cell(grid, "paper", B, "Welch (t, p)", "MAE↓ ours") == f"({w.statistic:.2f}, {w.pvalue:.2e})"
    pr = st.ttest_rel(a, g)
    assert _cell(grid, "paper", B, "paired (t, p)", "MAE↓ ours") == f"({pr.statistic:.2f}, {pr.pvalue:.2e}) n=3"
    ci = st.ttest_ind(g, a, equal_var=False).confidence_interval(0.95)
    assert _cell(grid, "paper", B, "95% CI Δ (GAL − baseline)", "MAE↓ ours") == f"[{ci.low:.4f}, {ci.high:.4f}]"

    # MDE row: the paired test's MDE from the SD of the per-seed differences; paper effect beside
    d = np.array(g) - np.array(a)
    assert _cell(grid, "paper", B, "MDE (paired, 80% power)", "MAE↓ ours") == f"{mde_paired(d.std(ddof=1), 3):.4f}"
    pdiff = pv.table5_value("boston", "gal", "mae")["mean"] - pv.table5_value("boston", "baseline", "mae")["mean"]
    assert _cell(grid, "paper", B, "MDE (paired, 80% power)", "MAE↓ paper") == f"paper Δ = {pdiff:.4f}"
    assert _cell(grid, "standardized", G, "MDE (paired, 80% power)", "MAE↓ paper") == "—"

    # verdict on the GAL row: the paired 95% CI of GAL − baseline (by hand) against the paper's Δ
    n = len(d)
    half = st.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
    lo, hi = d.mean() - half, d.mean() + half
    assert _cell(grid, "paper", B, "95% CI paired Δ (GAL − baseline)", "MAE↓ ours") == f"[{lo:.4f}, {hi:.4f}]"
    want = paired_verdict((lo, hi), pdiff)
    assert want in ("reproduced", "same direction, smaller", "same direction, larger")  # GAL better
    assert _cell(grid, "paper", B, "GAL (proposed)", "MAE↓ verdict").startswith(want + " (Holm ")
    assert _cell(grid, "paper", B, "Baseline", "MAE↓ verdict") == ""

    # standardized variant: no paper values at all, so no paper effect to test: no verdict;
    # alpha0 flagged
    assert _cell(grid, "standardized", G, "Baseline", "MAE↓ ours") == _ms(SBASE, 0)
    assert _cell(grid, "standardized", G, "Baseline", "MAE↓ paper") == "—"
    assert _cell(grid, "standardized", G, "t-test (t, p)", "MAE↓ paper") == "—"
    sa, sg = [v[0] for v in SBASE.values()], [v[0] for v in SGAL.values()]
    assert st.ttest_ind(sg, sa, equal_var=False).pvalue >= 0.05
    assert _cell(grid, "standardized", G, "GAL (proposed)", "MAE↓ verdict") == ""
    assert _cell(grid, "standardized", G, "GAL (proposed)", "R²↑ verdict") == ""
    assert _cell(grid, "standardized", G, "GAL α=0 (control)", "check").startswith("✗ differs from baseline on 1/2")

    # rows: 6 methods + 7 statistics rows per (variant, dataset); all 2 x 3 are listed
    assert len(grid) == 2 * 3 * 13
    assert _cell(grid, "paper", "California housing", "Baseline", "n") == "not run"
    assert _cell(grid, "paper", "California housing", "Baseline", "MAE↓ paper") == "1.0910 ± 0.1297"
    assert _cell(grid, "paper", "California housing", "t-test (t, p)", "MAE↓ ours") == "—"
    assert _cell(grid, "paper", "California housing", "GAL (proposed)", "MAE↓ verdict") == ""
    assert (grid["Profile"] == "cpu").all()

    # markdown: header note and the same cells in the pipe table
    md = paths["md"].read_text()
    assert "profile(s) cpu" in md
    assert "1 excluded" in md
    assert COMMIT[:10] in md
    assert "3 seeds (0, 1, 2)" in md
    assert "reproduced" in md and "Welch" in md and "holds 0" in md and "Holm" in md
    assert "NOT every seed equals the baseline" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| cpu | paper | Boston housing | Baseline |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[TABLE5_COLUMNS.index("MAE↓ ours")] == _ms(BASE, 0)
    assert cells[TABLE5_COLUMNS.index("MAE↓ paper")] == "3.9535 ± 0.4307"
    tex = paths["tex"].read_text()
    assert r"3.9535 $\pm$ 0.4307" in tex and r"\toprule" in tex

    num = pd.read_csv(paths["numeric"])
    sel = num[(num["variant"] == "paper") & (num["method"] == "gal") & (num["metric"] == "mae")]
    assert sel["n"].iloc[0] == 3 and sel["failed"].iloc[0] == 1
    assert math.isclose(sel["mean"].iloc[0], np.mean(g))
    cmp_ = num[(num["variant"] == "paper") & (num["method"] == "gal_vs_baseline") & (num["metric"] == "mae")]
    assert math.isclose(cmp_["sd_diff"].iloc[0], d.std(ddof=1), rel_tol=1e-12)
    assert math.isclose(cmp_["mde"].iloc[0], mde_paired(d.std(ddof=1), 3), rel_tol=1e-12)


def test_cli_table_and_errors(runs, tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["table", "5", "--runs", str(runs), "--out", str(out)]) == 0
    assert (out / "table5.md").is_file()
    assert main(["table", "9", "--runs", str(runs), "--out", str(out)]) == 2
    assert "the paper has no Table 9" in capsys.readouterr().err
    assert main(["table", "5", "--runs", str(tmp_path / "empty"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "no runs found under" in err and "make table5" in err and "\n" not in err


def test_cli_compare(runs, capsys):
    a = runs / "table5" / "paper" / "boston" / "baseline"
    b = runs / "table5" / "paper" / "boston" / "gal"
    assert main(["compare", str(a), str(b)]) == 0
    captured = capsys.readouterr()
    outp = captured.out
    assert "warning" not in captured.err
    for m in ("mae", "mse", "r2"):
        assert m in outp
    ref = st.ttest_ind([v[1] for v in BASE.values()], [v[1] for v in GAL.values()])
    assert f"{ref.pvalue:.2e}" in outp
    assert "1 failed excluded" in outp
    assert "B better" in outp and "paired" in outp  # GAL lowers MAE on every seed
    assert main(["compare", str(a), str(runs / "nope")]) == 1
    capsys.readouterr()
    assert main(["compare", str(runs / "table5" / "paper" / "boston"), str(b)]) == 0
    assert "set A mixes runs with different method" in capsys.readouterr().err


def test_cli_figure_dispatch(monkeypatch, tmp_path, capsys):
    import gal_suite.figures

    calls = {}

    def fake(n, runs_root, out_dir, gif=False, profile="cpu"):
        calls.update(n=n, runs=runs_root, out=out_dir, gif=gif, profile=profile)
        return [out_dir / "figX.png"]

    monkeypatch.setattr(gal_suite.figures, "render_figure", fake)
    assert main(["figure", "4", "--gif", "--runs", str(tmp_path), "--out", str(tmp_path / "f")]) == 0
    assert calls == {"n": 4, "runs": tmp_path, "out": tmp_path / "f", "gif": True, "profile": "cpu"}
    assert main(["figure", "5", "--profile", "paper", "--runs", str(tmp_path)]) == 0
    assert calls["n"] == 5 and calls["profile"] == "paper"


def test_alpha0_check_flags_missing_alpha0_seeds():
    """A baseline seed whose alpha=0 run is missing (or failed) must not pass the control."""
    from gal_suite.tables import TABLE5_METRICS, alpha0_check

    def _alpha0_check(base, a0):  # Table V's control check on MAE, MSE and R²
        return alpha0_check(base, a0, list(TABLE5_METRICS))

    base = pd.DataFrame({"seed": [0, 1, 2], "mae": [1.0, 2.0, 3.0], "mse": [1.0, 4.0, 9.0],
                         "r2": [0.1, 0.2, 0.3]})
    text, ok = _alpha0_check(base, base.iloc[:2])
    assert ok is False and "1 baseline seed(s) without a complete α=0 run" in text
    text, ok = _alpha0_check(base, base)
    assert ok is True and text.startswith("✓ = baseline exactly on 3/3")
    changed = base.copy()
    changed.loc[1, "mse"] = 4.0000001
    text, ok = _alpha0_check(base, changed)
    assert ok is False and text.startswith("✗ differs from baseline on 1/3")


def test_alpha0_header_tells_a_gap_from_a_difference():
    """The header note says ✗ only when a shared seed differs; a baseline seed without an α=0
    run (controls on fewer seeds by design) is named, not called a failure."""
    from gal_suite.tables.render import alpha0_text

    assert alpha0_text({"alpha0_all_exact": None}) == "not run"
    assert alpha0_text({"alpha0_all_exact": True}).startswith("✓ every seed")
    gap = alpha0_text({"alpha0_all_exact": False, "alpha0_any_differs": False})
    assert gap.startswith("✓ every α=0 run equals") and "not every baseline seed" in gap
    assert alpha0_text({"alpha0_all_exact": False, "alpha0_any_differs": True}).startswith("✗ NOT")


def test_rule_notes_stand_verbatim_in_every_committed_table():
    """The verdict rule and its companion notes are constants (gal_suite.verdict, Table V's MDE note)
    written as they are into every table with verdicts: no table edits their text."""
    from pathlib import Path

    from gal_suite import stats as gs
    from gal_suite.tables import SPECS
    from gal_suite.tables.spec import TableSpec
    from gal_suite.tables.table5 import MDE_NOTE

    root = Path(__file__).resolve().parents[1] / "results" / "tables"
    for n, spec in SPECS.items():
        md = root / f"table{n}.md"
        if not isinstance(spec, TableSpec) or not md.is_file():
            continue  # Table VII has no verdict
        text = md.read_text()
        holm_row = any(k == "holm" for k, _ in spec.stat_rows)  # where the adjusted p-values are
        wanted = [gs.VERDICT_RULE, gs.HOLM_NOTE if holm_row else gs.HOLM_NOTE_NO_ROW]
        wanted += [gs.SCALE_NOTE] if spec.relative else []
        wanted += [MDE_NOTE] if any(k == "mde" for k, _ in spec.stat_rows) else []
        for note in wanted:
            assert f"\n- {note}\n" in text, (n, note[:40])
