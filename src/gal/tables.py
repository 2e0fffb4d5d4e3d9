"""Table renderers: ``results/tables/tableN.{md,csv,tex}`` from run records only.

Implemented: Table V of the paper (regression, Sec. V-B/V-C), :func:`render_table5`. Ours are
computed from ``load_runs(<runs_root>/table5)`` (never from training code); the paper's numbers
come from ``paper_values.yaml`` and are only ever put in the "paper" columns.

Table V layout (one grid, also written as CSV; the Markdown/LaTeX versions add a header note)::

    Profile | Variant | Dataset | Method | n | MAE↓ ours | MAE↓ paper | MAE↓ verdict |
        MSE↓ ours | MSE↓ paper | MSE↓ verdict | R²↑ ours | R²↑ paper | R²↑ verdict | check

Per (profile, variant, dataset) the rows are, in order: ``Baseline``, ``GAL (proposed)``,
``GAL α=0 (control)``, ``N(0,1) noise, Eq. 4 (control)``, ``OLS (reference)``,
``MLPRegressor (reference)``, then the statistics of baseline vs. GAL: ``t-test (t, p)`` (the
paper's two-sample Student test, t sign = baseline − GAL as in the paper), ``Welch (t, p)``,
``paired (t, p)``, ``95% CI Δ (GAL − baseline)``. A metric cell of a method row is
"mean ± std" over seeds (std ddof=1, see :mod:`gal.stats`); "—" means not run (n = "not run") or,
in a paper column, not reported by the paper (the paper reports only Baseline/Proposed and the
t-test, for the ``paper`` variant = unscaled inputs). The verdict columns are filled on the GAL
row by :func:`gal.stats.verdict` (rule: :data:`gal.stats.VERDICT_RULE`). The ``check`` column of
the α=0 row says whether every seed matched the baseline metrics exactly (✓) or not (✗).
Failed runs (NaN/inf, crashes) are excluded from every number and counted in ``n``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gal import paper_values as pv
from gal import stats as gs
from gal.records import load_runs

__all__ = [
    "NoRunsError",
    "TABLE5_METRICS",
    "TABLE5_METHODS",
    "TABLE5_COLUMNS",
    "table5_grid",
    "render_table5",
    "render_table",
    "IMPLEMENTED_TABLES",
]


class NoRunsError(FileNotFoundError):
    """No (usable) run records under the given root."""


IMPLEMENTED_TABLES = (5,)

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
STAT_ROWS = {
    "ttest": "t-test (t, p)",
    "welch": "Welch (t, p)",
    "paired": "paired (t, p)",
    "ci": "95% CI Δ (GAL − baseline)",
}
DASH = "—"
TABLE5_COLUMNS = (
    ["Profile", "Variant", "Dataset", "Method", "n"]
    + [f"{lab} {kind}" for lab, _ in TABLE5_METRICS.values() for kind in ("ours", "paper", "verdict")]
    + ["check"]
)


# --------------------------------------------------------------------------- formatting
def _f(x: float, digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return DASH
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0.0 else s  # no "-0.00"


def _p(p: float) -> str:
    return DASH if p is None or not math.isfinite(p) else f"{p:.2e}"


def _tp(t: float, p: float) -> str:
    if not (math.isfinite(t) and math.isfinite(p)):
        return DASH
    return f"({_f(t, 2)}, {_p(p)})"


def _ordered(values: Sequence[Any], preferred: Sequence[Any]) -> list[Any]:
    vals = [v for v in dict.fromkeys(values) if pd.notna(v)]
    head = [v for v in preferred if v in vals]
    return head + sorted((v for v in vals if v not in preferred), key=str)


def _paper_cell(variant: str, dataset: str, method: str, metric: str) -> str:
    if variant != "paper":
        return DASH
    v = pv.table5_value(dataset, method, metric)
    if v is None:
        return DASH
    return f"{v['mean']:.4f} ± {v['std']:.4f}"


def _paper_diff(variant: str, dataset: str, metric: str) -> float | None:
    """The paper's Table V effect, GAL mean - baseline mean (paper protocol only)."""
    if variant != "paper":
        return None
    base, gal = pv.table5_value(dataset, "baseline", metric), pv.table5_value(dataset, "gal", metric)
    return None if base is None or gal is None else gal["mean"] - base["mean"]


def _paper_ttest_cell(variant: str, dataset: str, metric: str) -> str:
    if variant != "paper":
        return DASH
    v = pv.table5_ttest(dataset, metric)
    return DASH if v is None else f"({v['t']:.2f}, {v['p']:.2e})"


def _alpha0_check(base: pd.DataFrame, a0: pd.DataFrame) -> tuple[str, bool | None]:
    """Did GAL with alpha=0 reproduce the baseline metrics exactly, seed by seed?

    Both frames hold complete runs only; a baseline seed without a complete alpha=0 run (missing
    or failed) and an alpha=0 seed without a baseline both count against the check.
    """
    if len(a0) == 0:
        return "", None
    if len(base) == 0:
        return "✗ no baseline runs to compare", False
    base_seeds, a0_seeds = set(gs.by_seed(base, "mae")), set(gs.by_seed(a0, "mae"))
    shared = sorted(base_seeds & a0_seeds)
    if not shared:
        return "✗ no seed shared with baseline", False
    differ = [s for s in shared
              if any(gs.by_seed(base, m).get(s) != gs.by_seed(a0, m).get(s) for m in TABLE5_METRICS)]
    notes = []
    if a0_seeds - base_seeds:
        notes.append(f"{len(a0_seeds - base_seeds)} seed(s) without baseline")
    if base_seeds - a0_seeds:
        notes.append(f"{len(base_seeds - a0_seeds)} baseline seed(s) without a complete α=0 run")
    extra = "".join(f"; {n}" for n in notes)
    if differ:
        return f"✗ differs from baseline on {len(differ)}/{len(shared)} seeds{extra}", False
    return f"✓ = baseline exactly on {len(shared)}/{len(shared)} seeds{extra}", not notes


# --------------------------------------------------------------------------- table V
def _select_table5(df: pd.DataFrame) -> pd.DataFrame:
    if len(df) == 0:
        return df
    if "task" in df.columns:
        df = df[df["task"].isna() | (df["task"] == "regression")]
    if "table" in df.columns:
        df = df[df["table"].isna() | (df["table"].astype(str) == "5")]
    for c in ("variant", "dataset", "method"):
        if c not in df.columns:
            raise NoRunsError(f"run records lack the config key {c!r} (expected task=regression, table=5)")
    return df


def table5_grid(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Build the Table V grid (display strings, columns :data:`TABLE5_COLUMNS`) from a
    ``load_runs`` frame, plus a dict of facts for the header note (profiles, seeds, commits,
    failed count, alpha0 check, numeric statistics)."""
    df = _select_table5(df)
    if len(df) == 0:
        raise NoRunsError("no Table V runs")
    df = df.copy()
    df["profile"] = df["profile"].fillna("unknown")
    rows: list[dict[str, str]] = []
    numeric: list[dict[str, Any]] = []
    alpha0_ok: list[bool] = []
    profiles = _ordered(df["profile"].tolist(), ["paper", "cpu"])
    # every standard variant/dataset/method is listed, so a missing one shows as "not run"
    variants = _ordered([*TABLE5_VARIANTS, *df["variant"].tolist()], TABLE5_VARIANTS)
    datasets = _ordered([*TABLE5_DATASETS, *df["dataset"].tolist()], TABLE5_DATASETS)
    methods = _ordered(list(TABLE5_METHODS) + df["method"].tolist(), list(TABLE5_METHODS))
    for prof in profiles:
        for var in variants:
            for ds in datasets:
                grp = df[(df["profile"] == prof) & (df["variant"] == var) & (df["dataset"] == ds)]
                ok_by_method = {}
                for meth in methods:
                    sub = grp[grp["method"] == meth]
                    ok, nfail = gs.complete_runs(sub)
                    ok_by_method[meth] = ok
                    if len(sub) == 0 and meth not in TABLE5_METHODS:
                        continue
                    r = {"Profile": prof, "Variant": var, "Dataset": DATASET_LABELS.get(ds, ds),
                         "Method": TABLE5_METHODS.get(meth, meth), "check": ""}
                    if len(sub) == 0:
                        r["n"] = "not run"
                    else:
                        r["n"] = str(len(ok)) + (f" (+{nfail} failed)" if nfail else "")
                    for m, (lab, _) in TABLE5_METRICS.items():
                        s = gs.summarize(ok[m] if m in ok.columns else [])
                        r[f"{lab} ours"] = s.fmt(4) if s.n else DASH
                        r[f"{lab} paper"] = _paper_cell(var, ds, meth, m)
                        r[f"{lab} verdict"] = ""
                        numeric.append({"profile": prof, "variant": var, "dataset": ds, "method": meth,
                                        "metric": m, "n": s.n, "failed": nfail, "mean": s.mean,
                                        "std": s.std})
                    if meth == "gal_alpha0":
                        text, flag = _alpha0_check(ok_by_method.get("baseline", ok.iloc[0:0]), ok)
                        r["check"] = text
                        if flag is not None:
                            alpha0_ok.append(flag)
                    rows.append(r)
                # statistics baseline vs GAL
                base = ok_by_method.get("baseline", pd.DataFrame())
                gal = ok_by_method.get("gal", pd.DataFrame())
                stat_rows = {k: {"Profile": prof, "Variant": var, "Dataset": DATASET_LABELS.get(ds, ds),
                                 "Method": lab, "n": "", "check": ""} for k, lab in STAT_ROWS.items()}
                gal_row = next((r for r in rows[::-1] if r["Method"] == TABLE5_METHODS["gal"]
                                and r["Variant"] == var and r["Profile"] == prof
                                and r["Dataset"] == DATASET_LABELS.get(ds, ds)), None)
                for m, (lab, hib) in TABLE5_METRICS.items():
                    a = base[m].tolist() if m in base.columns else []
                    b = gal[m].tolist() if m in gal.columns else []
                    c = gs.compare_values(a, b, hib, gs.by_seed(base, m), gs.by_seed(gal, m),
                                          paper_diff=_paper_diff(var, ds, m))
                    stat_rows["ttest"][f"{lab} ours"] = _tp(c["t"], c["p"])
                    stat_rows["ttest"][f"{lab} paper"] = _paper_ttest_cell(var, ds, m)
                    stat_rows["welch"][f"{lab} ours"] = _tp(c["welch_t"], c["welch_p"])
                    stat_rows["paired"][f"{lab} ours"] = (
                        f"{_tp(c['paired_t'], c['paired_p'])} n={c['paired_n']}"
                        if math.isfinite(c["paired_p"]) else DASH)
                    lo, hi = c["ci_low"], c["ci_high"]
                    stat_rows["ci"][f"{lab} ours"] = (
                        f"[{_f(lo)}, {_f(hi)}]" if math.isfinite(lo) else DASH)
                    for k in ("welch", "paired", "ci"):
                        stat_rows[k][f"{lab} paper"] = DASH
                    for k in STAT_ROWS:
                        stat_rows[k][f"{lab} verdict"] = ""
                    if gal_row is not None and c["n_a"] and c["n_b"]:
                        gal_row[f"{lab} verdict"] = c["verdict"]
                    numeric.append({"profile": prof, "variant": var, "dataset": ds,
                                    "method": "gal_vs_baseline", "metric": m,
                                    **{k: v for k, v in c.items() if k != "higher_is_better"}})
                rows.extend(stat_rows.values())
    grid = pd.DataFrame(rows, columns=TABLE5_COLUMNS).fillna("")
    ok_all, nfail_all = gs.complete_runs(df)
    commits = sorted({str(c)[:10] for c in df["git_commit"].dropna()})
    dirty = bool(df.get("git_dirty", pd.Series(dtype=object)).astype(str).eq("True").any())
    seeds = sorted({int(s) for s in ok_all["seed"].dropna()}) if "seed" in ok_all.columns else []
    facts = {
        "profiles": profiles,
        "n_runs": len(df),
        "n_complete": len(ok_all),
        "n_failed": nfail_all,
        "failed_paths": df.loc[df["status"] != "complete", "path"].tolist(),
        "seeds": seeds,
        "commits": commits,
        "dirty": dirty,
        "alpha0_all_exact": (all(alpha0_ok) if alpha0_ok else None),
        "numeric": pd.DataFrame(numeric),
    }
    return grid, facts


def _notes(facts: dict[str, Any]) -> list[str]:
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
        gs.VERDICT_RULE,
        f"Control GAL α=0 must equal the baseline exactly: {a0_txt}. "
        "Control N(0,1) noise = Table VI's normal noise adjuster with Eq. 4 scaling.",
    ]


def _md(grid: pd.DataFrame, notes: list[str]) -> str:
    lines = ["# Table V: regression (Boston housing, diabetes, California housing)", ""]
    lines += [f"- {n}" for n in notes]
    lines += ["", "| " + " | ".join(grid.columns) + " |",
              "|" + "|".join("---" for _ in grid.columns) + "|"]
    for _, r in grid.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in r.tolist()) + " |")
    return "\n".join(lines) + "\n"


_TEX_REPL = [
    ("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"), ("_", r"\_"),
    ("{", r"\{"), ("}", r"\}"), ("±", r"$\pm$"), ("—", "---"), ("−", "$-$"), ("α", r"$\alpha$"),
    ("Δ", r"$\Delta$"), ("↓", r"$\downarrow$"), ("↑", r"$\uparrow$"), ("²", r"$^2$"),
    ("✓", r"\checkmark{}"), ("✗", r"$\times$"), ("–", "--"),
]


def _tex_escape(s: str) -> str:
    out = []
    for ch in str(s):
        for a, b in _TEX_REPL:
            if ch == a:
                out.append(b)
                break
        else:
            out.append(ch)
    return "".join(out)


def _tex(grid: pd.DataFrame, notes: list[str]) -> str:
    cols = "l" * len(grid.columns)
    lines = ["% Table V (regression): generated by `gal table 5`; requires booktabs and amssymb.",
             *[f"% {n}" for n in notes],
             r"\begin{table*}[t]", r"\centering", r"\scriptsize",
             r"\caption{Regression (Table V): ours beside the paper. " + _tex_escape(notes[1]) + "}",
             r"\begin{tabular}{" + cols + "}", r"\toprule",
             " & ".join(_tex_escape(c) for c in grid.columns) + r" \\", r"\midrule"]
    for _, r in grid.iterrows():
        lines.append(" & ".join(_tex_escape(v) for v in r.tolist()) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
    return "\n".join(lines) + "\n"


def render_table5(
    runs_root: str | os.PathLike[str] = "results/runs",
    out_dir: str | os.PathLike[str] = "results/tables",
) -> dict[str, Path]:
    """Render Table V from ``load_runs(<runs_root>/table5)`` into ``<out_dir>/table5.{md,csv,tex}``
    (plus ``table5_numeric.csv``: unrounded means/stds/tests). Returns {"md", "csv", "tex",
    "numeric"} -> path. Raises :class:`NoRunsError` if there are no Table V runs.

    Verdict rule: :data:`gal.stats.VERDICT_RULE` (reproduced / not reproduced / inconclusive).
    """
    root = Path(runs_root) / "table5"
    df = load_runs(root)
    if len(df) == 0:
        raise NoRunsError(f"no runs found under {root}: run `make table5`")
    grid, facts = table5_grid(df)
    notes = _notes(facts)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "table5.md", "csv": out / "table5.csv", "tex": out / "table5.tex",
             "numeric": out / "table5_numeric.csv"}
    paths["md"].write_text(_md(grid, notes))
    grid.to_csv(paths["csv"], index=False)
    paths["tex"].write_text(_tex(grid, notes))
    facts["numeric"].to_csv(paths["numeric"], index=False)
    return paths


#: What each not-yet-implemented table needs (the suite's roadmap; see the README's status table).
PLANNED_TABLES: dict[int, str] = {
    1: "Table I (CIFAR-10, EfficientNet-B1; SGD/Lookahead/AdaBound)",
    2: "Table II (CIFAR-100, EfficientNet-B1; SGD/Lookahead/AdaBound)",
    3: "Table III (ImageNet, ResNet-50 / EfficientNet-B2; RMSprop, 8 GPUs)",
    4: "Table IV (MS COCO, DETR-R50/R101 + GAL; AdamW, 4 GPUs)",
    6: "Table VI (CIFAR-100, random-noise adjusters)",
    7: "Table VII (training time per image, ImageNet/CIFAR)",
    8: "Table VIII (CIFAR-100, MLP vs CNN adjusters)",
}


def not_implemented_message(n: int) -> str:
    """One clear line for a table whose experiment is not in the suite yet."""
    what = PLANNED_TABLES.get(n, f"Table {n}")
    return (f"{what} is not implemented in the suite yet (its experiment needs GPU training "
            f"runs); the paper's values are in gal/paper_values.yaml. Implemented: "
            f"Table {', '.join(map(str, IMPLEMENTED_TABLES))} (`make table5`).")


def render_table(
    n: int,
    runs_root: str | os.PathLike[str] = "results/runs",
    out_dir: str | os.PathLike[str] = "results/tables",
) -> dict[str, Path]:
    """Render paper table ``n`` (only 5 so far; others raise NotImplementedError)."""
    if int(n) == 5:
        return render_table5(runs_root, out_dir)
    raise NotImplementedError(not_implemented_message(int(n)))
