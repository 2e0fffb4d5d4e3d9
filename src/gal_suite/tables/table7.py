"""Table VII of the paper (Sec. VI-C, training time per image with and without GAL) as a spec.

The paper reports seconds per training image, baseline vs GAL: ImageNet 0.3907 -> 0.4027
(8 NVIDIA V100), CIFAR-10 0.5292 -> 0.5444 and CIFAR-100 0.5355 -> 0.5465 (4 NVIDIA 2080 Ti), and
says GAL's extra time is h's forward and backward. Ours come from two sources, never from
training code:

* the benchmark reports ``<results>/benchmarks/gal_cost_<device>.json`` written by
  ``benchmarks/gal_cost.py``: per case the whole training step's median seconds per image,
  baseline vs GAL (interleaved in one process), the overhead with its spread, GAL's extra work
  (``adjust`` + h's backward) against the model's forward + backward, the FLOP bound and the
  operators one step dispatches, with the hardware named;
* the classification run records of Tables I/II (``<runs_root>/table1|table2``, config
  ``task: classification``, ``method`` baseline | gal), whose metric ``s_per_image`` is the
  training wall time per training image; mean ± std over complete seeds.

Rows are grouped under the paper's settings (ImageNet, CIFAR-10, CIFAR-100; cases the paper has
no row for, e.g. Table V's regression MLPs, under "—"), the paper's numbers repeated beside each of
ours. :data:`TABLE7` is its spec: :func:`cost_table` makes the grid, notes and numbers, and the
one renderer :func:`gal_suite.tables.render.render` writes ``table7.{md,csv,tex}`` and
``table7_numeric.csv`` (why Table VII brings its own grid: :mod:`gal_suite.tables.table7_spec`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gal_suite import stats as gs
from gal_suite.tables.cells import DASH
from gal_suite.tables.render import render
from gal_suite.tables.spec import NoRunsError
from gal_suite.tables.table7_bench import bench_rows, hardware, load_benchmarks
from gal_suite.tables.table7_records import load_time_records, record_rows
from gal_suite.tables.table7_spec import RECORD_METHODS, TABLE7_COLUMNS, CostTableSpec
from gal_suite.tables.table7_spec import PaperSetting as PaperSetting

# The spec type lives in gal_suite.tables.table7_spec, the benchmark rows in .table7_bench and the
# run-record rows in .table7_records; their public names stay importable from here.
__all__ = ["CostTableSpec", "TABLE7", "TABLE7_COLUMNS", "cost_grid", "cost_table",
           "render_cost_table"]


# --------------------------------------------------------------------------- grid
def cost_grid(spec: CostTableSpec, benchmarks: Sequence[tuple[Path, dict]], records: pd.DataFrame
              ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The Table VII grid (display strings, columns :data:`TABLE7_COLUMNS`) and facts for the
    notes (``numeric`` frame of unrounded numbers, failed record count, benchmark reports)."""
    rows: list[dict[str, str]] = []
    numeric: list[dict[str, Any]] = []
    n_failed = 0
    unmatched: list[tuple[Path, dict, dict]] = []
    blocks: dict[str, list[tuple[Path, dict, dict]]] = {s.label: [] for s in spec.settings}
    for path, rep in benchmarks:
        for case in rep["cases"]:
            lab = case.get("paper_setting")
            (blocks[lab] if lab in blocks else unmatched).append((path, rep, case))
    for setting in spec.settings:
        n_before = len(rows)
        for path, rep, case in blocks[setting.label]:
            r, n = bench_rows(spec, path, rep, case, setting)
            rows += r
            numeric += n
        subs = [s for s, lab in spec.record_subdirs.items() if lab == setting.label]
        if len(records) and subs:
            sel = records[records["subdir"].isin(subs)]
            if len(sel):
                r, n, nf = record_rows(spec, sel, setting)
                rows += r
                numeric += n
                n_failed += nf
        if len(rows) == n_before:  # the paper's row with nothing of ours beside it
            rows += [spec.method_row(setting, m, "not measured", f"paper: {setting.hardware}",
                                     DASH, DASH) for m in RECORD_METHODS]
    for path, rep, case in unmatched:
        r, n = bench_rows(spec, path, rep, case, None)
        rows += r
        numeric += n
    table = pd.DataFrame(rows, columns=TABLE7_COLUMNS).fillna("")
    facts = {"numeric": pd.DataFrame(numeric), "n_failed": n_failed, "benchmarks": benchmarks,
             "records": records}
    return table, facts


# --------------------------------------------------------------------------- notes
def _notes(spec: CostTableSpec, facts: Mapping[str, Any], runs_root: Path, bench_dir: Path) -> list[str]:
    benches = facts["benchmarks"]
    recs: pd.DataFrame = facts["records"]
    paper_hw = "; ".join(f"{s.label}: {s.hardware}" for s in spec.settings)
    if benches:
        ours_b = "; ".join(
            f"{p.name}: {hardware(r)}, torch {r.get('torch', '?')}, git commit "
            f"{str(r.get('git_commit', 'unknown'))[:10]}"
            + (" (uncommitted changes)" if r.get("git_dirty") is True else "")
            + f", measured {r.get('measured_at', '?')}" for p, r in benches)
    else:
        ours_b = f"no benchmark report in {bench_dir} (run `python benchmarks/gal_cost.py`)"
    if len(recs):
        ok, _ = gs.complete_runs(recs)
        commits = sorted({str(c)[:10] for c in recs["git_commit"].dropna()})
        ours_r = (f"{len(ok)} complete classification run records under {runs_root} "
                  f"({', '.join(spec.record_subdirs)}), git commit(s) {', '.join(commits) or 'unknown'}")
    else:
        ours_r = f"no classification run records under {runs_root} ({', '.join(spec.record_subdirs)})"
    notes = [
        "Table VII of the paper (training time per image with and without GAL, Sec. VI-C): the "
        "paper's seconds per image and overhead beside ours.",
        f"Ours: {ours_b}. Run records: {ours_r}.",
        f"Paper hardware: {paper_hw}. Ours are other hardware, models and batch sizes: compare the "
        "overhead (GAL / baseline − 1), not the seconds.",
        "Benchmark rows: the whole training step (forward, loss backward or "
        "GradientAdjuster.backward, per-step logging, optimizer step) per image, median over "
        "interleaved rounds (arms rotated each round, each on its own model copy, after warm-up); "
        "overhead ours = median of the per-round paired ratios GAL / baseline − 1, [quartiles]. "
        "FLOP bound = (FLOPs of the GAL step − FLOPs of the baseline step) / FLOPs of the baseline "
        "step (torch FlopCounterMode: matmuls and convolutions). Extra work / fwd+bwd = adjust() on "
        "fixed features + backward of h's objective, over the model's forward + backward. Ops = aten "
        "operators one forward + backward dispatches, baseline and GAL.",
        "Targets (printed by the benchmark): classification models, whole-step overhead <= max(1%, "
        "2 x FLOP bound); 'not resolved' when the quartile range of the GAL / baseline or of the A/A "
        "(baseline against itself) paired ratios is wider than that limit, or the A/A median is "
        "more than half the limit from 0 (the machine's noise then hides the limit); and GAL's "
        "extra work alone against the same limit. Regression MLPs: GAL step <= 1.5 x the "
        "baseline step.",
        "Run-record times are each run's own wall time, runs made one after another (not "
        "interleaved) on a possibly shared machine: their overhead mixes GAL's cost with the "
        "machine's load while each run ran.",
    ]
    for p, r in benches:
        load = r.get("load_average", {})
        extra = f"; load average {load.get('start')} -> {load.get('end')}" if load else ""
        if r.get("note") or extra:
            notes.append(f"{p.name}: {r.get('note') or 'no note'}{extra}.")
        for c in r["cases"]:
            notes.append(f"{p.name} case {c.get('name')}: {c.get('description', '')}.")
    notes.append(
        "Run-record rows: metric s_per_image = training wall time / training images of the run "
        "(data loading and augmentation included), mean ± std over complete seeds; overhead ours = "
        f"mean(GAL) / mean(baseline) − 1. Failed runs are excluded: {facts['n_failed']} excluded.")
    return notes


# --------------------------------------------------------------------------- tabulate
def cost_table(spec: CostTableSpec, runs_root: Path) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """Table VII's grid, header notes and unrounded numbers (its ``tabulate``) from the benchmark
    reports in ``spec.benchmarks_dir`` (default ``<runs_root>/../benchmarks``) and the
    classification run records under ``runs_root``. Raises :class:`NoRunsError` naming the
    command to run when there is neither a benchmark report nor a classification run record."""
    runs_root = Path(runs_root)
    bench_dir = (Path(spec.benchmarks_dir) if spec.benchmarks_dir is not None
                 else runs_root.parent / "benchmarks")
    benches = load_benchmarks(bench_dir, spec.benchmark_glob)
    records = load_time_records(spec, runs_root)
    if not benches and len(records) == 0:
        raise NoRunsError(f"no benchmark report ({bench_dir}/{spec.benchmark_glob}) and no "
                          f"classification run records under {runs_root}: run `{spec.make_target}`")
    table, facts = cost_grid(spec, benches, records)
    return table, _notes(spec, facts, runs_root, bench_dir), facts["numeric"]


#: Table VII (Sec. VI-C): training time per image, baseline vs GAL, ours beside the paper's.
TABLE7 = CostTableSpec(tabulate=cost_table)


def render_cost_table(
    spec: CostTableSpec = TABLE7,
    runs_root: str | os.PathLike[str] = "results/runs",
    out_dir: str | os.PathLike[str] = "results/tables",
    benchmarks_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Render Table VII into ``<out_dir>/table7.{md,csv,tex}`` and ``table7_numeric.csv`` with the
    one renderer (:func:`gal_suite.tables.render.render`), the benchmark reports read from
    ``benchmarks_dir`` (default ``<runs_root>/../benchmarks``)."""
    if benchmarks_dir is not None:
        spec = dataclasses.replace(spec, benchmarks_dir=str(benchmarks_dir))
    return render(spec, runs_root, out_dir)
