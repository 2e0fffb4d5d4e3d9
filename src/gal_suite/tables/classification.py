"""Tables I and II of the paper (image classification on CIFAR-10 / CIFAR-100, Sec. V-A/V-C)
as :class:`~gal_suite.tables.spec.TableSpec` s.

Records: ``<runs_root>/table1/<profile>/<dataset>/<optimizer>/<method>/seed-<k>/`` (table2
likewise) with config keys ``task: classification``, ``table``, ``dataset``, ``dataset_label``,
``optimizer`` (``sgd``, ``lookahead_sgd``, ``adabound``), ``method`` (``baseline``, ``gal``,
``gal_alpha0``), ``seed``, ``profile``, ``model``, ``pretrained``, ``epochs`` and metrics
``error_top1``, ``error_top5`` (percent, lower is better), ``val_loss``.

Per (profile, dataset, optimizer) the rows are ``Baseline``, ``GAL (proposed)``, ``GAL α=0
(control)`` (only when run; must equal the baseline exactly, seed by seed), then Student t (the
paper's test style), Welch, paired t, the 95% CI of the mean paired difference GAL − baseline
(t(n−1)) and the MDE of the paired test at 80% power. The paper's values are EfficientNet-B1 on
the real CIFAR-10/100 (rows ``efficientnet_b1_{sgd,lookahead,adabound}_{baseline,gal}``, top-1
error only); ours are on whatever dataset and model the records name, and the notes say so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gal_suite import paper_values as pv
from gal_suite import sequential as sq
from gal_suite import stats as gs
from gal_suite.tables.notes import alpha0_text, failed_note, ours_note
from gal_suite.tables.spec import GroupKey, Method, Metric, NotesFn, PaperValue, TableSpec
from gal_suite.tables.table5 import MDE_LABEL, MDE_NOTE
from gal_suite.vocab import (
    DATASET_LABELS,
    METHOD_LABELS,
    OPTIMIZER_LABELS,
    OPTIMIZER_ORDER,
    PAPER_OPTIMIZER,
    with_stand_ins,
)

__all__ = ["ARM_METHODS", "PAIRED_STAT_NOTES", "PAIRED_STAT_ROWS", "TABLE1", "TABLE2",
           "CLASSIFICATION_METRICS", "OPTIMIZER_LABELS", "classification_spec", "setup_facts"]

OPTIMIZERS = OPTIMIZER_ORDER
CLASSIFICATION_METRICS = (
    Metric("error_top1", "Top-1 error %↓", higher_is_better=False),
    Metric("error_top5", "Top-5 error %↓", higher_is_better=False),
)
#: the rows of a paired baseline-vs-GAL image table (Tables I-III) and its statistics rows
ARM_METHODS = (
    Method("baseline", METHOD_LABELS["baseline"]),
    Method("gal", METHOD_LABELS["gal"]),
    Method("gal_alpha0", METHOD_LABELS["gal_alpha0"], always=False),
)
PAIRED_STAT_ROWS = (
    ("ttest", "Student t (t, p)"),
    ("welch", "Welch (t, p)"),
    ("paired", "paired t (t, p)"),
    ("paired_ci", "95% CI paired Δ (GAL − baseline)"),
    ("rel_ci", "95% CI relative Δ (GAL/baseline − 1)"),
    ("mde", MDE_LABEL),
    ("holm", "Holm p (vs 0; vs paper Δ)"),
)
#: the header notes explaining those rows (Tables I-III): the MDE row, the verdict rule, the
#: relative scale and Holm's correction
PAIRED_STAT_NOTES = (MDE_NOTE, gs.VERDICT_RULE, gs.SCALE_NOTE, gs.HOLM_NOTE)
#: Tables I and II also say how each row's seeds were chosen (fixed, or until decided)
SEQUENTIAL_STAT_ROWS = (*PAIRED_STAT_ROWS, ("rule_ci", "verdict CI (GAL − baseline)"),
                        ("sequential", "seeds: stopping"))
#: the file beside a row's method folders that records its run-until-decided design
DESIGN_FILE = "sequential.json"
_ROMAN = {1: "I", 2: "II"}
_PAPER_KEY = {1: "cifar10", 2: "cifar100"}
_PAPER_DATASET = {t: DATASET_LABELS[k] for t, k in _PAPER_KEY.items()}
_DATASETS = {t: with_stand_ins(k) for t, k in _PAPER_KEY.items()}


def _paper_value_fn(table: int) -> PaperValue:
    def paper_value(group: Mapping[str, Any], method: str, metric: str) -> dict[str, float] | None:
        """Paper Table I/II error (%) of EfficientNet-B1 for (optimizer, baseline|gal); top-1 only."""
        if metric != "error_top1" or method not in ("baseline", "gal"):
            return None
        opt = PAPER_OPTIMIZER.get(str(group.get("optimizer")))
        if opt is None:
            return None
        try:
            v = pv.value(table, f"efficientnet_b1_{opt}_{method}", "error")
        except KeyError:
            return None
        return v if isinstance(v, dict) and "mean" in v else None

    return paper_value


def _uniq(s: pd.Series) -> list[Any]:
    return sorted({v for v in s.dropna().tolist()}, key=str)


def _num(v: Any) -> str:
    """``8.0`` -> ``"8"``; anything else as is."""
    return str(int(v)) if isinstance(v, int | float) and float(v).is_integer() else str(v)


def _pretrained_txt(values: list[Any]) -> str:
    flags = {str(v).lower() for v in values}
    if flags == {"true"}:
        return "pretrained"
    if flags == {"false"}:
        return "trained from scratch"
    return "pretrained: unknown" if not flags else "pretrained: mixed"


def setup_facts(df: pd.DataFrame, keys: Sequence[str]) -> Iterator[tuple[tuple, dict[str, str]]]:
    """Per group of the records of a classification table (Tables I-III) by ``keys`` (``profile``,
    ``dataset`` and, Table III, the model row): the group's key values and the texts of its
    setup line, ``dataset`` (its label), ``model`` (network built), ``pretrained``, ``epochs``
    and ``seeds`` (its complete seeds and their number)."""
    ok, _ = gs.complete_runs(df)
    for combo, g in df.groupby(list(keys), sort=True):
        label = _uniq(g["dataset_label"]) if "dataset_label" in g.columns else []
        models = _uniq(g["model"]) if "model" in g.columns else []
        pre = _pretrained_txt(_uniq(g["pretrained"])) if "pretrained" in g.columns else "pretrained: unknown"
        epochs = _uniq(g["epochs"]) if "epochs" in g.columns else []
        okg = ok[np.logical_and.reduce([ok[k] == v for k, v in zip(keys, combo, strict=True)])]
        seeds = sorted({int(s) for s in okg["seed"].dropna()}) if "seed" in okg.columns else []
        yield combo, {
            "dataset": ", ".join(map(str, label)) or dict(zip(keys, combo, strict=True))["dataset"],
            "model": ", ".join(map(str, models)) or "unknown", "pretrained": pre,
            "epochs": ", ".join(map(_num, epochs)) or "?",
            "seeds": f"seeds {', '.join(map(str, seeds)) or 'none'} (n = {len(seeds)})"}


def _setup(df: pd.DataFrame) -> list[str]:
    """One line per (profile, dataset): dataset label, model, pretrained, epochs, seeds."""
    return [f"profile `{prof}`, dataset `{ds}` = {f['dataset']}: model {f['model']} "
            f"({f['pretrained']}), {f['epochs']} epoch(s), {f['seeds']}"
            for (prof, ds), f in setup_facts(df, ("profile", "dataset"))]


def _references(table: int) -> str:
    refs = []
    for r in pv.table(table)["rows"]:
        if r.get("kind") == "reference":
            v = r["values"].get("error")
            refs.append(f"{r['label']} {'—' if v is None else f'{v:.2f}'}")
    return "; ".join(refs)


def read_design(row_dir: Path) -> sq.SequentialDesign | None:
    """The design in ``<row_dir>/``:data:`DESIGN_FILE`, or None when there is none."""
    f = Path(row_dir) / DESIGN_FILE
    return sq.SequentialDesign.from_dict(json.loads(f.read_text())["design"]) if f.is_file() else None


def row_design(records: pd.DataFrame) -> sq.SequentialDesign | None:
    """The run-until-decided design of one row (Tables I/II: profile, dataset, optimizer; Table
    IV: profile, dataset, model) of a table: the
    :data:`DESIGN_FILE` that ``--until-decided`` writes beside the row's method folders
    (``<row>/<method>/seed-<k>``), or None when the row's seeds were fixed in advance."""
    if "path" not in records.columns:
        return None
    for row_dir in sorted({Path(str(p)).parents[1] for p in records["path"].dropna()}):
        design = read_design(row_dir)
        if design is not None:
            return design
    return None


def sequential_notes(facts: Mapping[str, Any],
                     keys: tuple[str, ...] = ("profile", "dataset", "optimizer")) -> list[str]:
    """The design of the rows (records grouped by ``keys``) run until decided (none: one line
    saying the seeds were fixed)."""
    designs = {}
    recs = facts["records"]
    for _, g in recs.groupby(list(keys), sort=True):
        d = row_design(g)
        if d is not None:
            designs.setdefault(d.describe(), []).append("/".join(str(g[k].iloc[0]) for k in keys))
    if not designs:
        return ["Seeds: fixed in advance for every row (none was run until decided)."]
    out = [f"Run until decided ({', '.join(rows)}): {text}. A row stops at the first look whose "
           "relative-scale verdict is decided (not 'inconclusive') or at the cap; its verdicts "
           "then use the repeated CIs of that look (row 'verdict CI'), row 'seeds: stopping' says "
           "why it stopped. The other rows' seeds were fixed in advance."
           for text, rows in designs.items()]
    return out


def _notes_fn(table: int) -> NotesFn:
    roman, paper_ds = _ROMAN[table], _PAPER_DATASET[table]

    def notes(facts: Mapping[str, Any]) -> list[str]:
        a0_txt = alpha0_text(facts)
        return [
            f"Table {roman} of the paper (image classification, {paper_ds}): ours (from run records) "
            "beside the paper's numbers.",
            ours_note(facts),
            "Our setup: " + "; ".join(_setup(facts["records"])) + ".",
            failed_note(facts),
            f"Paper: Table {roman}, EfficientNet-B1 on the real {paper_ds}, error (%) mean ± std over 3 "
            "runs, reported for the reproduced baseline and GAL with SGD, Lookahead (wrapped around "
            "SGD) and AdaBound; top-1 only ('—' for top-5, controls and statistics it does not report). "
            "OURS ARE NOT THAT SETTING: they are on the dataset named in the Dataset column (a copy or "
            "stand-in is named as such) with the model named above, so compare the direction and size "
            "of the GAL − baseline difference with the paper's, not absolute errors.",
            f"Paper reference rows (not run here): {_references(table)}.",
            "Cells: mean ± std over seeds (std ddof=1). Student t = two-sample t-test with pooled "
            "variance as in the paper's Table V (t sign = baseline − GAL); Welch = unequal variances; "
            "paired t = over seeds present in both arms (a seed fixes data order and initialisation); "
            "95% CI paired Δ = mean of the per-seed differences GAL − baseline ± t(n−1)·sd/√n.",
            *PAIRED_STAT_NOTES,
            *sequential_notes(facts),
            f"Control GAL α=0 must equal the baseline exactly (top-1, top-5 error and validation loss, "
            f"seed by seed): {a0_txt}.",
        ]

    return notes


def classification_spec(table: int) -> TableSpec:
    """The spec of Table I (``table=1``, CIFAR-10) or Table II (``table=2``, CIFAR-100)."""
    if table not in _ROMAN:
        raise ValueError(f"classification tables are 1 and 2, not {table}")
    roman, paper_ds = _ROMAN[table], _PAPER_DATASET[table]
    return TableSpec(
        number=table,
        name=f"Table {roman}",
        subdir=f"table{table}",
        make_target=f"make table{table}",
        title=f"# Table {roman}: image classification, {paper_ds} (top-1 / top-5 error)",
        tex_comment=f"Table {roman} (classification, {paper_ds}): generated by `gal table {table}`; "
                    "requires booktabs and amssymb.",
        tex_caption=f"Image classification (Table {roman}, paper: {paper_ds}): ours beside the paper.",
        record_filter={"task": "classification", "table": str(table)},
        required_columns=("dataset", "optimizer", "method"),
        groups=(
            GroupKey("profile", "Profile", preferred=("paper", "cpu", "smoke")),
            GroupKey("dataset", "Dataset", preferred=_DATASETS[table], label_column="dataset_label"),
            GroupKey("optimizer", "Optimizer", standard=OPTIMIZERS, labels=OPTIMIZER_LABELS),
        ),
        methods=ARM_METHODS,
        metrics=CLASSIFICATION_METRICS,
        stat_rows=SEQUENTIAL_STAT_ROWS,
        paper_value=_paper_value_fn(table),
        notes=_notes_fn(table),
        check_metrics=("error_top1", "error_top5", "val_loss"),
        digits=2,
        paper_digits=2,
        relative=True,
        sequential=row_design,
    )


TABLE1 = classification_spec(1)
TABLE2 = classification_spec(2)
