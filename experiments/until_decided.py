"""Rows run until decided (Tables I, II and IV): paired seeds are added in batches until each
row's verdict is decided or the cap is reached (:mod:`gal_suite.sequential`, a group-sequential
design with alpha spending; never a naive t-test repeated after every batch).

A row is one (profile, dataset, optimizer) of Table I or II, or one (profile, dataset, model) of
Table IV, its arms ``baseline`` and ``gal``; it is decided on one metric (top-1 error, AP) on the
relative scale GAL/baseline − 1. Before its first look the design is written to
``<row>/sequential.json`` (``<row>`` holds the method folders), so the table renders that row
with the design's repeated CIs and names its looks and stopping reason; a row keeps the design
it started with (a different ``--max-seeds`` or batch for a row that has one is an error). At
every look the decision is recomputed from the run records alone (the first ``n`` seeds in seed
order), so an interrupted batch resumes where it stopped, and finished runs are never repeated.
The runs themselves go through the table runner's ``run_table`` (``--jobs``, ``--launcher
slurm``, resume), which the runner passes in (:func:`decide_rows`), so this module imports no
runner (``python -m experiments.classification --until-decided`` and ``python -m detr_gal.run
--until-decided`` call it).
"""

from __future__ import annotations

import argparse
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

__all__ = ["add_until_decided_arguments", "decide_rows", "metric_decision", "row_decision", "run_until_decided"]

#: the metric the rule decides on (the paper's Tables I and II report top-1 error)
METRIC = "error_top1"


def _paper_rel(table: int, optimizer: str) -> float | None:
    return paper_effects(classification_spec(table), {"optimizer": optimizer}, METRIC)[1]


def row_decision(row_dir: str | os.PathLike[str], table: int, optimizer: str,
                 design: sq.SequentialDesign) -> sq.Decision:
    """The decision of one row of Tables I/II from its complete records (relative scale, the
    summary scale)."""
    return metric_decision(row_dir, METRIC, _paper_rel(table, optimizer), design)


def metric_decision(row_dir: str | os.PathLike[str], metric: str, paper_rel: float | None,
                    design: sq.SequentialDesign) -> sq.Decision:
    """The decision of one row (its ``baseline`` and ``gal`` records under ``row_dir``) on
    ``metric`` against the paper's relative effect, on the relative scale GAL/baseline − 1 per
    seed (the summary scale), from the first pairs in seed order."""
    df = load_runs(row_dir)
    if len(df):
        df, _ = gs.complete_runs(df)
    arms = {m: gs.by_seed(df[df["method"] == m], metric) if len(df) else {} for m in ("baseline", "gal")}
    rel = gs.relative_diffs(arms["baseline"], arms["gal"])
    return sq.decide([rel[k] for k in sorted(rel)], design, paper_rel)


def _write_design(row_dir: Path, design: sq.SequentialDesign, metric: str = METRIC) -> None:
    f = row_dir / DESIGN_FILE
    old = read_design(row_dir)
    if old is not None:
        if old != design:
            raise ConfigError(f"{row_dir} was started under another design ({old}); a row keeps its "
                              f"design: run it with --max-seeds {old.max_pairs} --decide-batch {old.batch}")
        return
    row_dir.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps({"design": design.to_dict(), "metric": metric,
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

    def run_rows(n: int, opts: list[str]) -> Mapping[str, int]:
        return run_table(t, profile, n, optimizers=opts, methods=["baseline", "gal"],
                         dataset=dataset, runs_root=runs_root, overrides=overrides,
                         config_path=config_path, progress=progress, **launch)

    return decide_rows(rows, lambda opt, row: row_decision(row, t, opt, design), run_rows, design,
                       f"table{t} {profile}")


def decide_rows(rows: Mapping[str, Path], decision: Callable[[str, Path], sq.Decision],
                run_rows: Callable[[int, list[str]], Mapping[str, int]],
                design: sq.SequentialDesign, name: str, metric: str = METRIC) -> dict[str, str]:
    """The loop of every run-until-decided task: write ``design`` beside each row's method
    folders (``rows``: key -> row directory), then look at every row (``decision(key, row)``),
    run the next batch of the rows that need one (``run_rows(n, keys)`` runs the missing runs of
    seeds 0..n-1) and look again, until every row is decided or at its cap; returns
    ``{key: stopping reason}``."""
    for row in rows.values():
        _write_design(row, design, metric)
    while True:
        need: dict[int, list[str]] = {}
        reasons = {}
        for key, row in rows.items():
            dec = decision(key, row)
            reasons[key] = dec.reason
            print(f"{name} {key}: {dec.reason}; verdict (relative) {dec.verdict or '—'}", flush=True)
            if dec.next_n is not None:
                need.setdefault(dec.next_n, []).append(key)
        if not need:
            return reasons
        for n, keys in sorted(need.items()):
            c = run_rows(n, keys)
            for key in keys:
                dec = decision(key, rows[key])
                if dec.next_n == n:  # seeds 0..n-1 ran, yet fewer than n complete pairs
                    raise RuntimeError(
                        f"{name} {key}: fewer than {n} complete pairs after running seeds "
                        f"0..{n - 1} ({c}): a run failed (see its status.json under {rows[key]}; "
                        "--retry-failed runs it again), or a baseline value is 0, which leaves "
                        "GAL/baseline − 1 undefined")


def add_until_decided_arguments(ap: argparse.ArgumentParser, rows: str) -> None:
    """``--until-decided``, ``--max-seeds``, ``--decide-batch`` of a runner whose ``rows`` (e.g.
    "Tables 1 and 2: ... optimizer row") are run until decided."""
    ap.add_argument("--until-decided", action="store_true",
                    help=f"{rows}: add paired seeds (baseline and GAL) in batches until each row's "
                         "verdict is decided or --max-seeds is reached (group-sequential design, "
                         "gal_suite.sequential; ignores --seeds and --methods)")
    ap.add_argument("--max-seeds", type=int, default=60, metavar="N",
                    help="--until-decided: the cap, in paired seeds (default 60)")
    ap.add_argument("--decide-batch", type=int, default=5, metavar="B",
                    help="--until-decided: paired seeds added per look (default 5)")
