"""Table V of the paper (regression, Sec. V-B/V-C) as a :class:`~gal.tables.spec.TableSpec`.

Layout (one grid, also written as CSV; the Markdown/LaTeX versions add a header note)::

    Profile | Variant | Dataset | Method | n | MAE↓ ours | MAE↓ paper | MAE↓ verdict |
        MSE↓ ours | MSE↓ paper | MSE↓ verdict | R²↑ ours | R²↑ paper | R²↑ verdict | check

Per (profile, variant, dataset) the rows are, in order: ``Baseline``, ``GAL (proposed)``,
``GAL α=0 (control)``, ``N(0,1) noise, Eq. 4 (control)``, ``OLS (reference)``,
``MLPRegressor (reference)``, then the statistics of baseline vs. GAL: ``t-test (t, p)`` (the
paper's two-sample Student test, t sign = baseline − GAL as in the paper), ``Welch (t, p)``,
``paired (t, p)``, ``95% CI Δ (GAL − baseline)`` and ``MDE (paired, 80% power)``. The paper
reports only Baseline/Proposed and the t-test, for the ``paper`` variant (unscaled inputs);
everything else has "—" in its paper column.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from gal import paper_values as pv
from gal import stats as gs
from gal.tables.render import alpha0_check, grid, render
from gal.tables.spec import GroupKey, Method, Metric, TableSpec

__all__ = [
    "TABLE5",
    "TABLE5_METRICS",
    "TABLE5_METHODS",
    "TABLE5_COLUMNS",
    "MDE_LABEL",
    "MDE_NOTE",
    "table5_grid",
    "render_table5",
]

#: metric key -> (label, higher_is_better)  (Table V: MAE↓, MSE↓, R²↑)
TABLE5_METRICS: dict[str, tuple[str, bool]] = {
    "mae": ("MAE↓", False),
    "mse": ("MSE↓", False),
    "r2": ("R²↑", True),
}
#: method key -> row label, in row order
TABLE5_METHODS: dict[str, str] = {
    "baseline": "Baseline",
    "gal": "GAL (proposed)",
    "gal_alpha0": "GAL α=0 (control)",
    "noise_normal": "N(0,1) noise, Eq. 4 (control)",
    "ols": "OLS (reference)",
    "mlp_sklearn": "MLPRegressor (reference)",
}
TABLE5_VARIANTS = ("paper", "standardized")
TABLE5_DATASETS = ("boston", "diabetes", "california")
DATASET_LABELS = {"boston": "Boston housing", "diabetes": "Diabetes", "california": "California housing"}

MDE_LABEL = "MDE (paired, 80% power)"
#: header note explaining the MDE row (shared by every table that has one)
MDE_NOTE = (
    f"{MDE_LABEL} = the smallest true GAL − baseline difference a two-sided paired t-test "
    "(α = 0.05) over these seeds would detect with 80% power, from the observed SD of the per-seed "
    "differences (exact, noncentral t); its paper column shows the paper's own difference "
    "(paper GAL − paper baseline): an MDE larger than that means our seeds are too few to "
    "confirm an effect of the paper's size."
)


def _paper_value(group: Mapping[str, Any], method: str, metric: str) -> dict[str, float] | None:
    """Paper Table V mean ± std; only under the paper's protocol (variant ``paper``)."""
    if group.get("variant") != "paper":
        return None
    return pv.table5_value(group["dataset"], method, metric)


def _paper_ttest(group: Mapping[str, Any], metric: str) -> dict[str, float] | None:
    if group.get("variant") != "paper":
        return None
    return pv.table5_ttest(group["dataset"], metric)


def _notes(facts: Mapping[str, Any]) -> list[str]:
    seeds = facts["seeds"]
    seed_txt = f"{len(seeds)} seeds ({', '.join(map(str, seeds))})" if seeds else "no seeds"
    a0 = facts["alpha0_all_exact"]
    a0_txt = ("not run" if a0 is None else "✓ every seed equals the baseline exactly" if a0
              else "✗ NOT every seed equals the baseline (see the check column)")
    fail = facts["n_failed"]
    return [
        "Table V of the paper (regression): ours (from run records) beside the paper's numbers.",
        f"Ours: profile(s) {', '.join(map(str, facts['profiles']))}; {seed_txt}, n per row in column n; "
        f"{facts['n_complete']} complete runs; git commit(s) {', '.join(facts['commits']) or 'unknown'}"
        + (" (some with uncommitted changes)" if facts["dirty"] else "") + ".",
        f"Failed runs (NaN/inf or crashed) are excluded from every number: {fail} excluded"
        + (f" ({', '.join(facts['failed_paths'])})" if fail else "") + ".",
        "Paper: Table V (5 seeds), reported only for Baseline and Proposed under the paper's protocol "
        "(variant `paper` = unscaled inputs); '—' = not reported / not run. "
        "`standardized` = features and target standardised on the training split (metrics in original units).",
        "Cells: mean ± std over seeds (std with ddof=1, which is what the paper's own t-tests imply). "
        "t-test = the paper's two-sample Student t-test (t sign = baseline − GAL); Welch = unequal "
        "variances; paired = over seeds present in both arms; 95% CI of mean(GAL) − mean(baseline), "
        "Welch–Satterthwaite df.",
        MDE_NOTE,
        gs.VERDICT_RULE,
        f"Control GAL α=0 must equal the baseline exactly: {a0_txt}. "
        "Control N(0,1) noise = Table VI's normal noise adjuster with Eq. 4 scaling.",
    ]


TABLE5 = TableSpec(
    number=5,
    name="Table V",
    subdir="table5",
    make_target="make table5",
    title="# Table V: regression (Boston housing, diabetes, California housing)",
    tex_comment="Table V (regression): generated by `gal table 5`; requires booktabs and amssymb.",
    tex_caption="Regression (Table V): ours beside the paper.",
    record_filter={"task": "regression", "table": "5"},
    required_columns=("variant", "dataset", "method"),
    groups=(
        GroupKey("profile", "Profile", preferred=("paper", "cpu")),
        GroupKey("variant", "Variant", standard=TABLE5_VARIANTS),
        GroupKey("dataset", "Dataset", standard=TABLE5_DATASETS, labels=DATASET_LABELS),
    ),
    methods=tuple(Method(k, lab) for k, lab in TABLE5_METHODS.items()),
    metrics=tuple(Metric(k, lab, hib) for k, (lab, hib) in TABLE5_METRICS.items()),
    stat_rows=(
        ("ttest", "t-test (t, p)"),
        ("welch", "Welch (t, p)"),
        ("paired", "paired (t, p)"),
        ("ci", "95% CI Δ (GAL − baseline)"),
        ("mde", MDE_LABEL),
    ),
    paper_value=_paper_value,
    paper_ttest=_paper_ttest,
    notes=_notes,
    digits=4,
    paper_digits=4,
    verdict_ci="welch",
)

TABLE5_COLUMNS = TABLE5.columns


def table5_grid(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The Table V grid (columns :data:`TABLE5_COLUMNS`) and its facts from a ``load_runs`` frame."""
    return grid(df, TABLE5)


def render_table5(
    runs_root: str | os.PathLike[str] = "results/runs",
    out_dir: str | os.PathLike[str] = "results/tables",
) -> dict[str, Path]:
    """Render Table V into ``<out_dir>/table5.{md,csv,tex}`` and ``table5_numeric.csv``
    (see :func:`gal.tables.render.render`)."""
    return render(TABLE5, runs_root, out_dir)


def _alpha0_check(base: pd.DataFrame, a0: pd.DataFrame) -> tuple[str, bool | None]:
    """Table V's alpha=0 control check on MAE, MSE and R² (:func:`gal.tables.render.alpha0_check`)."""
    return alpha0_check(base, a0, list(TABLE5_METRICS))
