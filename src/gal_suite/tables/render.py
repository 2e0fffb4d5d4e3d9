"""The one table renderer: a :class:`~gal_suite.tables.spec.TableSpec` + run records -> table files.

``render(spec, runs_root, out_dir)`` reads ``load_runs(<runs_root>/<spec.subdir>)`` (never
training code), builds the grid with :func:`grid` and writes ``tableN.md`` (header notes + pipe
table), ``tableN.csv`` (the grid), ``tableN.tex`` (booktabs) and ``tableN_numeric.csv``
(unrounded means/stds and every statistic). A spec with its own ``tabulate`` (Table VII,
Sec. VI-C: benchmark cases and per-image times, :mod:`gal_suite.tables.table7`) makes its grid, notes
and numbers itself; the writing is the same. The paper's numbers come only from the spec's
``paper_value``/``paper_ttest`` (i.e. ``paper_values.yaml``) and only land in "paper" columns.

Per group (e.g. Table V: profile, variant, dataset; Table I: profile, dataset, optimizer) the
rows are the spec's methods, then its statistics rows, baseline vs. GAL (Tables I, II and V):

* ``ttest``: the paper's two-sample Student t-test (t sign = baseline − GAL), ``welch``,
  ``paired`` (over seeds in both arms), ``ci`` (95% CI of mean(GAL) − mean(baseline), Welch df),
  ``paired_ci`` (95% CI of the mean per-seed difference GAL − baseline, t(n−1)) and ``mde``
  (minimum detectable effect of the paired test at 80% power, :func:`gal_suite.stats.mde_paired`;
  its paper column shows the paper's own GAL − baseline difference for comparison).

Cells are "mean ± std" over complete runs (std ddof=1); failed runs are excluded and counted in
``n``. The verdict (:func:`gal_suite.stats.verdict`) goes on the GAL row; the ``check`` column of the
alpha=0 control says whether every seed equals the baseline exactly.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gal_suite import sequential as sq
from gal_suite import stats as gs
from gal_suite.records import load_runs
from gal_suite.tables import contrasts as ct
from gal_suite.tables.cells import DASH, fmt_num, fmt_p, fmt_tp
from gal_suite.tables.cells import tex_escape as tex_escape
from gal_suite.tables.notes import alpha0_check, alpha0_text, failed_note, ours_note
from gal_suite.tables.selection import mixed_settings, select
from gal_suite.tables.spec import MixedSettingsError, NoRunsError, TableSpec, Tabulate
from gal_suite.tables.writers import to_latex, to_markdown, write_table

# DASH, the note helpers and the writers moved to gal_suite.tables.cells / .notes / .writers and
# select / mixed_settings to gal_suite.tables.selection; they stay importable from here.
__all__ = ["DASH", "paper_effects", "record_table", "alpha0_check", "alpha0_text", "failed_note", "ours_note", "select", "grid", "render", "to_markdown", "to_latex"]


def _ordered(values: Sequence[Any], preferred: Sequence[Any]) -> list[Any]:
    vals = [v for v in dict.fromkeys(values) if pd.notna(v)]
    head = [v for v in preferred if v in vals]
    return head + sorted((v for v in vals if v not in preferred), key=str)


def _group_values(df: pd.DataFrame, spec: TableSpec) -> list[list[Any]]:
    out = []
    for g in spec.groups:
        if g.standard:
            out.append(_ordered([*g.standard, *df[g.column].tolist()], g.standard))
        else:
            out.append(_ordered(df[g.column].tolist(), g.preferred))
    return out


def _group_label(df: pd.DataFrame, spec: TableSpec, level: int, value: Any) -> str:
    g = spec.groups[level]
    if value in g.labels:
        return g.labels[value]
    if g.label_column and g.label_column in df.columns:
        labs = df.loc[df[g.column] == value, g.label_column].dropna()
        if len(labs):
            return str(labs.iloc[0])
    return str(value)


def _paper_cell(spec: TableSpec, group: Mapping[str, Any], method: str, metric: str) -> str:
    v = spec.paper_value(group, method, metric)
    if v is None:
        return DASH
    d = spec.paper_digits
    if v.get("std") is None:  # the paper gives one number (Tables VI, VIII)
        return f"{v['mean']:.{d}f}"
    return f"{v['mean']:.{d}f} ± {v['std']:.{d}f}"


def paper_effects(spec: TableSpec, group: Mapping[str, Any], metric: str,
                  method: str | None = None) -> tuple[float | None, float | None]:
    """The paper's effect of ``method`` (default GAL) on ``metric``: (paper mean − paper baseline
    mean, paper mean / paper baseline mean − 1), each None where the paper gives no number."""
    base = spec.paper_value(group, spec.baseline, metric)
    gal = spec.paper_value(group, spec.gal if method is None else method, metric)
    if base is None or gal is None:
        return None, None
    return gal["mean"] - base["mean"], gs.relative_paper_diff(base["mean"], gal["mean"])


def _row_compare(spec: TableSpec, base: pd.DataFrame, row: pd.DataFrame, group: Mapping[str, Any],
                 metric: str, hib: bool, method: str) -> tuple[str, str, dict[str, Any]]:
    """(Δ cell, verdict, statistics) of one method row against the baseline (``compare_rows``)."""
    c = _compare(spec, base, row, metric, hib, *paper_effects(spec, group, metric, method))
    diffs = gs.paired_diffs(gs.by_seed(base, metric), gs.by_seed(row, metric))
    c["paired_mean_diff"] = float(diffs.mean()) if len(diffs) else float("nan")
    if not len(diffs):
        return DASH, "", c
    d = spec.digits
    lo, hi = c["rule_ci_low"], c["rule_ci_high"]
    ci = f" [{fmt_num(lo, d)}, {fmt_num(hi, d)}]" if math.isfinite(lo) else ""
    cell = f"{c['paired_mean_diff']:+.{d}f}{ci} n={len(diffs)}"
    return cell, c["verdict"], c


def _stat_cells(kind: str, spec: TableSpec, c: Mapping[str, Any], group: Mapping[str, Any],
                metric: str, paper_diff: float | None) -> tuple[str, str]:
    """(ours, paper) cells of one statistics row for one metric."""
    d = spec.digits
    if kind == "ttest":
        v = spec.paper_ttest(group, metric)
        paper = DASH if v is None else f"({v['t']:.2f}, {v['p']:.2e})"
        return fmt_tp(c["t"], c["p"]), paper
    if kind == "welch":
        return fmt_tp(c["welch_t"], c["welch_p"]), DASH
    if kind == "paired":
        ours = (f"{fmt_tp(c['paired_t'], c['paired_p'])} n={c['paired_n']}"
                if math.isfinite(c["paired_p"]) else DASH)
        return ours, DASH
    if kind in ("ci", "paired_ci"):
        lo, hi = (c["ci_low"], c["ci_high"]) if kind == "ci" else (c["paired_ci_low"], c["paired_ci_high"])
        return (f"[{fmt_num(lo, d)}, {fmt_num(hi, d)}]" if math.isfinite(lo) else DASH), DASH
    if kind == "mde":
        paper = DASH if paper_diff is None else f"paper Δ = {fmt_num(paper_diff, spec.paper_digits)}"
        return fmt_num(c["mde"], d), paper
    if kind == "rule_ci":
        lo, hi = c["rule_ci_low"], c["rule_ci_high"]
        ours = f"[{fmt_num(lo, d)}, {fmt_num(hi, d)}] ({c['ci_kind']})" if math.isfinite(lo) else DASH
        paper = DASH if paper_diff is None else f"paper Δ = {fmt_num(paper_diff, spec.paper_digits)}"
        return ours, paper
    if kind == "rel_ci":
        lo, hi = c["rel_ci_low"], c["rel_ci_high"]
        ours = f"[{lo:+.2%}, {hi:+.2%}]" if math.isfinite(lo) else DASH
        rel = c["paper_rel"]
        return ours, (DASH if not math.isfinite(rel) else f"paper {rel:+.2%}")
    if kind in ("holm", "sequential"):
        return "", DASH  # filled in once the whole table is known (holm) / by the design
    raise ValueError(kind)  # pragma: no cover - TableSpec validates kinds


def _compare(spec: TableSpec, base: pd.DataFrame, gal: pd.DataFrame, metric: str, hib: bool,
             paper_diff: float | None, paper_rel: float | None = None,
             design: sq.SequentialDesign | None = None) -> dict[str, Any]:
    """Statistics of ``gal`` vs ``base`` on ``metric`` (:func:`gal_suite.stats.compare_values`, the
    verdict rule on both scales), plus ``paired_ci_*``. With a sequential ``design`` (a row run
    until decided) the rule's intervals are the repeated CIs of the look where the row stopped
    (:func:`gal_suite.sequential.decide` on the relative scale, the summary scale), ``sequential`` says
    why it stopped."""
    a = base[metric].tolist() if metric in base.columns else []
    b = gal[metric].tolist() if metric in gal.columns else []
    a_seed, b_seed = gs.by_seed(base, metric), gs.by_seed(gal, metric)
    c = gs.compare_values(a, b, hib, a_seed, b_seed, paper_diff=paper_diff, paper_rel=paper_rel)
    c["paired_ci_low"], c["paired_ci_high"] = gs.ci_paired_diff(a_seed, b_seed)
    c["sequential"] = ""
    if design is not None:
        rel = gs.relative_diffs(a_seed, b_seed)
        seeds = sorted(rel)
        dec = sq.decide([rel[k] for k in seeds], design, paper_rel)
        c["sequential"] = dec.reason
        if dec.looks:
            look = dec.looks[-1]
            pts = gs.paired_diffs({k: a_seed[k] for k in seeds[:look.n]},
                                  {k: b_seed[k] for k in seeds[:look.n]})
            ci = sq.repeated_ci(pts, look.level)
            c["ci_kind"] = f"repeated CI, look {len(dec.looks)}, n={look.n}, level {look.level:.4f}"
            c["rule_ci_low"], c["rule_ci_high"] = ci
            c["verdict"] = gs.paired_verdict(ci, paper_diff)
            c["rel_ci_low"], c["rel_ci_high"] = look.ci
            c["verdict_rel"] = look.verdict
    return c


def _holm_fill(cells: list[tuple[dict[str, Any], dict[str, str], str, dict[str, str] | None, str]]) -> None:
    """Holm across a table's verdicts: every comparison that has a verdict (on either scale) is
    one test; the verdict cells get "(Holm ✓)" / "(Holm ✗)" and the "holm" stat rows their
    adjusted p-values (against 0; against the paper's effect)."""
    for scale, p0_key, pp_key in (("verdict", "rule_p", "p_vs_paper"),
                                  ("verdict_rel", "rel_p", "rel_p_vs_paper")):
        fam = [x for x in cells if x[0].get(scale)]
        h0 = gs.holm([x[0][p0_key] for x in fam])
        hp = gs.holm([x[0][pp_key] for x in fam])
        for (c, row, col, holm_row, holm_col), p0, pp in zip(fam, h0, hp, strict=True):
            v = c[scale]
            col_v = col if scale == "verdict" else f"{col} rel."
            if v != "inconclusive" and col_v in row:
                row[col_v] = f"{v} (Holm {'✓' if gs.survives_holm(v, p0, pp) else '✗'})"
            c[f"{scale}_holm_p0"], c[f"{scale}_holm_p_paper"] = p0, pp
            if holm_row is not None and scale == "verdict":
                holm_row[holm_col] = f"{fmt_p(p0)}; {fmt_p(pp)}"


def grid(df: pd.DataFrame, spec: TableSpec) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Build the grid (display strings, columns ``spec.columns``) from a ``load_runs`` frame,
    plus a dict of facts for the header notes (profiles, seeds, commits, failed runs, the alpha=0
    check, the selected ``records`` and the ``numeric`` frame of unrounded statistics)."""
    df = select(df, spec)
    if len(df) == 0:
        raise NoRunsError(f"no {spec.name} runs")
    df = df.copy()
    if spec.row_key is not None:
        keys = [spec.row_key(r) for r in df.to_dict("records")]
        df["method"] = keys
        df = df[df["method"].notna()]
        if len(df) == 0:
            raise NoRunsError(f"no {spec.name} runs")
    for g in spec.groups:
        df[g.column] = df[g.column].fillna("unknown") if g.column in df.columns else "unknown"
    cols = [g.column for g in spec.groups]
    headers = [g.header for g in spec.groups]
    free = [i for i, g in enumerate(spec.groups) if not g.standard]
    seen = {tuple(r) for r in df[[cols[i] for i in free]].itertuples(index=False, name=None)}
    labels = spec.method_labels
    always = {m.key for m in spec.methods if m.always}
    methods = _ordered([*labels, *df["method"].tolist()], list(labels))
    check_metrics = list(spec.check_metrics or [m.key for m in spec.metrics])
    rows: list[dict[str, str]] = []
    numeric: list[dict[str, Any]] = []
    alpha0_ok: list[bool] = []
    alpha0_differs: list[bool] = []  # a shared seed differs (or nothing to compare), not only gaps
    verdict_cells: list[tuple[dict[str, Any], dict[str, str], str, dict[str, str] | None, str]] = []
    comparisons: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (numeric keys, statistics)
    contrast_cells: list[tuple[dict[str, Any], dict[str, str], str]] = []
    mixed_devices: list[str] = []
    values = _group_values(df, spec)
    for combo in itertools.product(*values):
        if tuple(combo[i] for i in free) not in seen:
            continue
        group = dict(zip(cols, combo, strict=True))
        shown = {h: _group_label(df, spec, i, v) for i, (h, v) in enumerate(zip(headers, combo, strict=True))}
        mask = pd.Series(True, index=df.index)
        for c, v in group.items():
            mask &= df[c] == v
        grp = df[mask]
        if "device" in grp.columns and grp["device"].dropna().nunique() > 1:
            mixed_devices.append("/".join(map(str, combo)))
        ok_by_method = {meth: gs.complete_runs(grp[grp["method"] == meth])[0] for meth in methods}
        gal_row: dict[str, str] | None = None
        for meth in methods:
            sub = grp[grp["method"] == meth]
            ok, nfail = gs.complete_runs(sub)
            mixed = mixed_settings(ok)
            if mixed:
                where = ", ".join(f"{c}={v}" for c, v in group.items())
                raise MixedSettingsError(
                    f"{spec.name}: the {len(ok)} {meth} runs of {where} were made with different "
                    f"settings ({'; '.join(mixed[:4])}) and would be averaged together. Keep one "
                    f"setting per runs root: move the others to another --runs root (or re-run "
                    f"them with --rerun-stale).")
            if len(sub) == 0 and meth not in always:
                continue
            r = {**shown, "Method": labels.get(meth, meth), "check": ""}
            r["n"] = "not run" if len(sub) == 0 else str(len(ok)) + (f" (+{nfail} failed)" if nfail else "")
            for col in spec.info:
                vals = sub[col.key].dropna().tolist() if col.key in sub.columns else []
                r[f"{col.label} ours"] = col.fmt(vals) if vals else DASH
                r[f"{col.label} paper"] = col.paper(group, meth) or DASH
            for m in spec.metrics:
                s = gs.summarize(ok[m.key] if m.key in ok.columns else [])
                r[f"{m.label} ours"] = s.fmt(spec.digits) if s.n else DASH
                r[f"{m.label} paper"] = _paper_cell(spec, group, meth, m.key)
                r[f"{m.label} verdict"] = ""
                if spec.relative:
                    r[f"{m.label} verdict rel."] = ""
                numeric.append({**group, "method": meth, "metric": m.key, "n": s.n, "failed": nfail,
                                "mean": s.mean, "std": s.std})
                if spec.compare_rows:
                    r[f"{m.label} Δ vs baseline"] = ""
                    if meth != spec.baseline and s.n:
                        cell, verdict, c = _row_compare(spec, ok_by_method.get(spec.baseline, ok.iloc[0:0]),
                                                        ok, group, m.key, m.higher_is_better, meth)
                        r[f"{m.label} Δ vs baseline"], r[f"{m.label} verdict"] = cell, verdict
                        if spec.relative:
                            r[f"{m.label} verdict rel."] = c["verdict_rel"]
                        verdict_cells.append((c, r, f"{m.label} verdict", None, ""))
                        comparisons.append(({**group, "method": f"{meth}_vs_{spec.baseline}",
                                             "metric": m.key}, c))
            if spec.control is not None and meth == spec.control:
                text, flag = alpha0_check(ok_by_method.get(spec.baseline, ok.iloc[0:0]), ok, check_metrics)
                r["check"] = text
                if flag is not None:
                    alpha0_ok.append(flag)
                    alpha0_differs.append(not text.startswith("✓"))
            rows.append(r)
            if meth == spec.gal:
                gal_row = r
        base = ok_by_method.get(spec.baseline, pd.DataFrame())
        gal = ok_by_method.get(spec.gal, pd.DataFrame())
        stat_rows = {k: {**shown, "Method": lab, "n": "", "check": ""} for k, lab in spec.stat_rows}
        design = spec.sequential(grp) if spec.sequential is not None else None
        for i, m in enumerate(spec.metrics):
            pdiff, prel = paper_effects(spec, group, m.key)
            c = _compare(spec, base, gal, m.key, m.higher_is_better, pdiff, prel,
                         design if i == 0 else None)
            for k in stat_rows:
                ours, paper = _stat_cells(k, spec, c, group, m.key, pdiff)
                if k == "sequential":
                    ours = c["sequential"] or ("fixed seeds (not run until decided)" if i == 0 else DASH)
                stat_rows[k][f"{m.label} ours"] = ours
                stat_rows[k][f"{m.label} paper"] = paper
                stat_rows[k][f"{m.label} verdict"] = ""
                if spec.relative:
                    stat_rows[k][f"{m.label} verdict rel."] = ""
            if spec.compare_rows:
                continue
            if gal_row is not None and c["n_a"] and c["n_b"]:
                gal_row[f"{m.label} verdict"] = c["verdict"]
                if spec.relative:
                    gal_row[f"{m.label} verdict rel."] = c["verdict_rel"]
                verdict_cells.append((c, gal_row, f"{m.label} verdict", stat_rows.get("holm"),
                                      f"{m.label} ours"))
            comparisons.append(({**group, "method": f"{spec.gal}_vs_{spec.baseline}", "metric": m.key}, c))
        rows.extend(stat_rows.values())
        rows.extend(ct.contrast_rows(spec, shown, group, ok_by_method, contrast_cells, comparisons))
    _holm_fill(verdict_cells)
    ct.holm_contrasts(contrast_cells)
    for keys, c in comparisons:
        numeric.append({**keys, **{k: v for k, v in c.items() if k != "higher_is_better"}})
    table = pd.DataFrame(rows, columns=spec.columns).fillna("")
    ok_all, nfail_all = gs.complete_runs(df)
    commits = sorted({str(c)[:10] for c in df["git_commit"].dropna()})
    dirty = bool(df.get("git_dirty", pd.Series(dtype=object)).astype(str).eq("True").any())
    seeds = sorted({int(s) for s in ok_all["seed"].dropna()}) if "seed" in ok_all.columns else []
    facts = {
        "profiles": values[cols.index("profile")] if "profile" in cols else [],
        "n_runs": len(df),
        "n_complete": len(ok_all),
        "n_failed": nfail_all,
        "failed_paths": df.loc[df["status"] != "complete", "path"].tolist(),
        "seeds": seeds,
        "commits": commits,
        "dirty": dirty,
        "devices": sorted({str(d) for d in df["device"].dropna()}) if "device" in df.columns else [],
        "mixed_devices": mixed_devices,
        "resumed_paths": (df.loc[df["resumed"].fillna(False).astype(bool), "path"].tolist()
                          if "resumed" in df.columns else []),
        "alpha0_all_exact": (all(alpha0_ok) if alpha0_ok else None),
        "alpha0_any_differs": any(alpha0_differs),
        "records": df,
        "numeric": pd.DataFrame(numeric),
    }
    return table, facts


def record_table(spec: TableSpec, runs_root: Path) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """The record grid of ``spec`` (:func:`grid` of ``load_runs(<runs_root>/<spec.subdir>)``),
    its header notes and its unrounded numbers. Raises :class:`NoRunsError` (naming the ``make``
    target to run) if there are no records of this table."""
    root = Path(runs_root) / spec.subdir
    df = load_runs(root)
    if len(df) == 0:
        raise NoRunsError(f"no runs found under {root}: run `{spec.make_target}`")
    try:
        table, facts = grid(df, spec)
    except NoRunsError as e:
        raise NoRunsError(f"{e} under {root}: run `{spec.make_target}`") from e
    return table, spec.notes(facts), facts["numeric"]


def render(
    spec: Any,
    runs_root: str | os.PathLike[str] = "results/runs",
    out_dir: str | os.PathLike[str] = "results/tables",
) -> dict[str, Path]:
    """Render a table spec (a :class:`TableSpec`, or Table VII's
    :class:`~gal_suite.tables.table7_spec.CostTableSpec`) into ``<out_dir>/tableN.{md,csv,tex}`` and
    ``tableN_numeric.csv`` (unrounded numbers): its own ``tabulate`` where it has one, else the
    record grid (:func:`record_table`).

    Returns {"md", "csv", "tex", "numeric"} -> path. Raises :class:`NoRunsError` (naming the
    command to run) if there is nothing to render.
    """
    tabulate: Tabulate = spec.tabulate or record_table
    table, notes, numeric = tabulate(spec, Path(runs_root))
    return write_table(spec, table, notes, numeric, out_dir)
