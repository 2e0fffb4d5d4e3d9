"""Tables I and II run until decided: paired seeds are added in batches until each row's verdict
is decided or the cap is reached (:mod:`gal_suite.sequential`, a group-sequential design with alpha
spending; never a naive t-test repeated after every batch).

A row is one (profile, dataset, optimizer) of the table, its arms ``baseline`` and ``gal``. Before
its first look the design is written to ``<row>/sequential.json`` (``<row>`` holds the method
folders), so the table renders that row with the design's repeated CIs and names its looks and
stopping reason; a row keeps the design it started with (a different ``--max-seeds`` or batch
for a row that has one is an error). At every look the decision is recomputed from the run
records alone (the first ``n`` seeds in seed order), so an interrupted batch resumes where it
stopped, and finished runs are never repeated. The runs themselves go through the table
runner's ``run_table`` (:func:`experiments.classification.run_table`: ``--jobs``, ``--launcher
slurm``, resume), which the runner passes in together with its planner, so this module imports
no runner (``python -m experiments.classification --until-decided`` calls it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gal_suite import sequential as sq
from gal_suite import stats as gs
from gal_suite.config import ConfigError
from gal_suite.records import load_runs
from gal_suite.tables.classification import DESIGN_FILE, classification_spec, read_design
from gal_suite.tables.render import paper_effects

__all__ = ["row_decision", "run_until_decided"]

#: the metric the rule decides on (the paper's Tables I and II report top-1 error)
METRIC = "error_top1"


def _paper_rel(table: int, optimizer: str) -> float | None:
    return paper_effects(classification_spec(table), {"optimizer": optimizer}, METRIC)[1]


def row_decision(row_dir: str | os.PathLike[str], table: int, optimizer: str,
                 design: sq.SequentialDesign) -> sq.Decision:
    """The decision of one row from its complete records (relative scale, the summary scale)."""
    df = load_runs(row_dir)
    if len(df):
        df, _ = gs.complete_runs(df)
    arms = {m: gs.by_seed(df[df["method"] == m], METRIC) if len(df) else {} for m in ("baseline", "gal")}
    rel = gs.relative_diffs(arms["baseline"], arms["gal"])
    return sq.decide([rel[k] for k in sorted(rel)], design, _paper_rel(table, optimizer))


def _write_design(row_dir: Path, design: sq.SequentialDesign) -> None:
    f = row_dir / DESIGN_FILE
    old = read_design(row_dir)
    if old is not None:
        if old != design:
            raise ConfigError(f"{row_dir} was started under another design ({old}); a row keeps its "
                              f"design: run it with --max-seeds {old.max_pairs} --decide-batch {old.batch}")
        return
    row_dir.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps({"design": design.to_dict(), "metric": METRIC,
                               "scale": "relative (GAL/baseline - 1)"}, indent=1) + "\n")
    tmp.replace(f)


def run_until_decided(table: int | str, run_table: Callable[..., Mapping[str, int]],
                      plan: Sequence[Any], profile: str = "cpu", max_seeds: int = 60,
                      batch: int = 5, dataset: str | None = None,
                      runs_root: str | os.PathLike[str] = "results/runs",
                      overrides: Mapping[str, Any] | None = None,
                      config_path: str | os.PathLike[str] | None = None,
                      progress: bool = True, **launch: Any) -> dict[str, str]:
    """Add paired seeds to each row of Table ``table`` (1 or 2) until its verdict is decided or
    ``max_seeds`` pairs are reached; returns ``{optimizer: stopping reason}``.

    ``plan``: the runner's plan of one seed of the rows (its specs give each row's directory,
    ``spec.run_dir(runs_root)``); ``run_table(table, profile, n, optimizers=..., methods=...,
    dataset=..., runs_root=..., overrides=..., config_path=..., progress=..., **launch)`` runs
    the missing runs of seeds 0..n-1."""
    if str(table) not in ("1", "2"):
        raise ConfigError(f"--until-decided is for Tables 1 and 2, not {table}")
    t = int(table)
    design = sq.SequentialDesign(batch=batch, max_pairs=max_seeds)
    rows = {s.optimizer: s.run_dir(runs_root).parents[1] for s in plan}
    for row in rows.values():
        _write_design(row, design)
    while True:
        need: dict[int, list[str]] = {}
        reasons = {}
        for opt, row in rows.items():
            dec = row_decision(row, t, opt, design)
            reasons[opt] = dec.reason
            print(f"table{t} {profile} {opt}: {dec.reason}; verdict (relative) "
                  f"{dec.verdict or '—'}", flush=True)
            if dec.next_n is not None:
                need.setdefault(dec.next_n, []).append(opt)
        if not need:
            return reasons
        for n, opts in sorted(need.items()):
            c = run_table(t, profile, n, optimizers=opts, methods=["baseline", "gal"],
                          dataset=dataset, runs_root=runs_root, overrides=overrides,
                          config_path=config_path, progress=progress, **launch)
            for opt in opts:
                dec = row_decision(rows[opt], t, opt, design)
                if dec.next_n == n:  # seeds 0..n-1 ran, yet fewer than n complete pairs
                    raise RuntimeError(
                        f"table{t} {opt}: fewer than {n} complete pairs after running seeds "
                        f"0..{n - 1} ({c}): a run failed, see its status.json under {rows[opt]} "
                        "(--retry-failed runs it again)")
