"""What a paper table is made of: :class:`TableSpec` and its parts (no rendering here).

A spec says which run records belong to the table, how they are grouped into blocks of rows,
which methods form the rows, which metrics form the columns (with the paper's value beside
ours), which statistics rows compare baseline and GAL, and what the header notes say. One
renderer, :func:`gal_suite.tables.render.render`, turns any spec into ``tableN.{md,csv,tex}`` and
``tableN_numeric.csv``. Specs: Tables I and II (:mod:`gal_suite.tables.classification`), III
(:mod:`gal_suite.tables.table3`), IV (:mod:`gal_suite.tables.table4`), V (:mod:`gal_suite.tables.table5`), VI and
VIII (:mod:`gal_suite.tables.ablation`); the record grid of :func:`gal_suite.tables.render.grid` tabulates
them. Table VII (Sec. VI-C, :mod:`gal_suite.tables.table7`) lists benchmark cases beside run-record
groups, rows no record grid makes: its spec brings its own :data:`Tabulate`, and the same
renderer writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gal_suite.records import NoRunsError

__all__ = [
    "NoRunsError",
    "GroupKey",
    "Method",
    "Metric",
    "TableSpec",
    "STAT_KINDS",
    "PaperValue",
    "PaperTtest",
    "NotesFn",
    "Tabulate",
    "InfoColumn",
]


class MixedSettingsError(ValueError):
    """Runs with different settings would be pooled into one table cell."""


@dataclass(frozen=True)
class GroupKey:
    """One grouping level of a table (a leading column of the grid), e.g. profile or dataset.

    Args:
        column: config key in the run records (``load_runs`` column), e.g. ``"dataset"``.
        header: column header in the grid, e.g. ``"Dataset"``.
        standard: values always listed, in this order (a missing one shows its rows as "not
            run"); observed values not in it follow, sorted.
        preferred: order of observed values when ``standard`` is empty (rest sorted).
        labels: value -> display label.
        label_column: record column holding the display label (e.g. ``"dataset_label"``);
            used when the value has no entry in ``labels``.
    """

    column: str
    header: str
    standard: tuple[str, ...] = ()
    preferred: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    label_column: str | None = None


@dataclass(frozen=True)
class Method:
    """One method row: record value of ``method``, its row label, and whether the row is listed
    even when no run exists ("not run"); controls that are optional use ``always=False``."""

    key: str
    label: str
    always: bool = True


@dataclass(frozen=True)
class Metric:
    """One metric: record key, column label (with its arrow), direction."""

    key: str
    label: str
    higher_is_better: bool


@dataclass(frozen=True)
class InfoColumn:
    """A descriptive column taken from the records (not a metric), e.g. h's parameter count in
    Table VIII: ``key`` is the record column, ``fmt`` turns the values of a row's runs into the
    "ours" cell, ``paper`` gives the paper's cell for (group, method) or None."""

    key: str
    label: str
    fmt: Callable[[list[Any]], str]
    paper: Callable[[Mapping[str, Any], str], str | None]


#: statistics row kinds the renderer knows (baseline vs. GAL; see :func:`gal_suite.tables.render.grid`)
STAT_KINDS = ("ttest", "welch", "paired", "ci", "paired_ci", "mde", "rule_ci", "rel_ci", "holm",
              "sequential")

#: (group values by column, method key, metric key) -> the paper's {"mean", "std"} or None
PaperValue = Callable[[Mapping[str, Any], str, str], dict[str, float] | None]
#: (group values by column, metric key) -> the paper's {"t", "p"} of baseline vs. GAL, or None
PaperTtest = Callable[[Mapping[str, Any], str], dict[str, float] | None]
#: facts of a rendered grid -> header notes (one bullet each)
NotesFn = Callable[[Mapping[str, Any]], list[str]]
#: (spec, runs root) -> (grid of display strings, header notes, unrounded numbers) of a table
#: whose rows are not the record grid (Table VII); ``None`` on a spec: the record grid
Tabulate = Callable[[Any, Path], "tuple[Any, list[str], Any]"]


def _no_ttest(group: Mapping[str, Any], metric: str) -> dict[str, float] | None:
    return None


@dataclass(frozen=True)
class TableSpec:
    """Everything table-specific about one paper table; rendered by :func:`gal_suite.tables.render.render`.

    Args:
        number: the paper's table number (output files ``table<number>.*``).
        name: how messages name it, e.g. ``"Table V"``.
        subdir: directory under the runs root holding its records (e.g. ``"table5"``).
        make_target: what to run when there are no records (e.g. ``"make table5"``).
        title: Markdown heading.
        tex_comment: first comment line of the LaTeX file.
        tex_caption: caption prefix (the second note, on the runs, is appended).
        record_filter: config key -> required value; records lacking the key pass (compared as
            strings), so older records without ``task``/``table`` still count.
        required_columns: config keys that must exist in the records (else :class:`NoRunsError`).
        groups: grouping levels, outermost first; the grid lists the cartesian product, except
            that levels without ``standard`` values only appear in combinations seen in records.
        methods: method rows in order; ``baseline``/``gal`` name the compared pair.
        metrics: metric columns (each gets "ours", "paper", "verdict").
        stat_rows: (kind in :data:`STAT_KINDS`, row label) after the method rows of each group.
        paper_value: the paper's ``{"mean", "std"}`` for (group, method, metric) or None.
        paper_ttest: the paper's ``{"t", "p"}`` for (group, metric) or None (the "ttest" row).
        digits: decimals of our numbers; ``paper_digits``: of the paper's.
        control: method key of the GAL alpha=0 control (must equal ``baseline`` seed by seed).
        check_metrics: metrics compared exactly for the control (default: ``metrics``).
        relative: also give each metric a "verdict rel." column: the rule on the relative scale
            (per-seed GAL/baseline − 1 against the paper's GAL/baseline − 1), for tables whose
            stand-in baselines are far from the paper's.
        sequential: records of one group -> the :class:`gal_suite.sequential.SequentialDesign` its
            rows were run under (``--until-decided``), or None for fixed seeds.
        notes: facts -> header notes.
        compare_rows: every method row other than ``baseline`` is compared with the baseline
            (Tables VI, VIII): a "Δ vs baseline" column per metric (mean paired difference and
            its 95% CI) and the verdict of :func:`gal_suite.stats.verdict` with ``follow_paper=True`` against the paper's
            own row − baseline difference (so a row the paper reports as worse is "reproduced"
            when ours is significantly worse).
        info: descriptive columns from the records (:class:`InfoColumn`) after ``n``.
        contrasts: paired differences of two method rows shown as rows after the statistics
            (:class:`gal_suite.tables.contrasts.Contrast`; Table IV's controls), where both arms ran.
        row_key: record (a dict of its config keys) -> the method key of its row, or None to
            leave it out; default: the record's ``method``.
        tabulate: ``None`` (every table here): the renderer's record grid
            (:func:`gal_suite.tables.render.grid`) and ``notes``; a :data:`Tabulate` replaces both.
    """

    number: int
    name: str
    subdir: str
    make_target: str
    title: str
    tex_comment: str
    tex_caption: str
    record_filter: Mapping[str, str]
    required_columns: tuple[str, ...]
    groups: tuple[GroupKey, ...]
    methods: tuple[Method, ...]
    metrics: tuple[Metric, ...]
    stat_rows: tuple[tuple[str, str], ...]
    paper_value: PaperValue
    notes: NotesFn
    paper_ttest: PaperTtest = _no_ttest
    baseline: str = "baseline"
    gal: str = "gal"
    control: str | None = "gal_alpha0"
    check_metrics: tuple[str, ...] | None = None
    digits: int = 4
    paper_digits: int = 4
    relative: bool = False
    sequential: Callable[[Any], Any] | None = None
    compare_rows: bool = False
    info: tuple[InfoColumn, ...] = ()
    contrasts: tuple[Any, ...] = ()
    row_key: Callable[[Mapping[str, Any]], str | None] | None = None
    tabulate: Tabulate | None = None

    def __post_init__(self) -> None:
        bad = [k for k, _ in self.stat_rows if k not in STAT_KINDS]
        if bad:
            raise ValueError(f"unknown stat row kind(s) {bad}; known: {STAT_KINDS}")

    @property
    def columns(self) -> list[str]:
        """Grid columns: group headers, Method, n, (ours, paper, verdict) per metric, check."""
        kinds = ("ours", "paper", "Δ vs baseline", "verdict") if self.compare_rows else (
            "ours", "paper", "verdict")
        if self.relative:
            kinds = (*kinds, "verdict rel.")
        return ([g.header for g in self.groups] + ["Method", "n"]
                + [f"{c.label} {kind}" for c in self.info for kind in ("ours", "paper")]
                + [f"{m.label} {kind}" for m in self.metrics for kind in kinds]
                + ["check"])

    @property
    def method_labels(self) -> dict[str, str]:
        return {m.key: m.label for m in self.methods}

    @property
    def stem(self) -> str:
        return f"table{self.number}"
