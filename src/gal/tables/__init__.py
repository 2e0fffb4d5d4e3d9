"""Paper tables from run records only: ``results/tables/tableN.{md,csv,tex}`` (+ ``_numeric.csv``).

Each implemented table is a small :class:`~gal.tables.spec.TableSpec` rendered by the one
renderer :func:`gal.tables.render.render`:

* Table I (CIFAR-10) and Table II (CIFAR-100), image classification (Sec. V-A/V-C):
  :data:`~gal.tables.classification.TABLE1`, :data:`~gal.tables.classification.TABLE2`;
* Table V, regression (Sec. V-B/V-C): :data:`~gal.tables.table5.TABLE5`.

Ours are computed from ``load_runs(<runs_root>/tableN)`` (never from training code); the
paper's numbers come from ``paper_values.yaml`` and only ever land in the "paper" columns.
Entry point for the CLI: :func:`render_table` (``gal table N``).
"""

from __future__ import annotations

import os
from pathlib import Path

from gal.tables.classification import TABLE1, TABLE2, classification_spec
from gal.tables.render import alpha0_check, grid, render
from gal.tables.spec import GroupKey, Method, Metric, NoRunsError, TableSpec
from gal.tables.table5 import (
    MDE_LABEL,
    TABLE5,
    TABLE5_COLUMNS,
    TABLE5_METHODS,
    TABLE5_METRICS,
    render_table5,
    table5_grid,
)
from gal.tables.table5 import _alpha0_check as _alpha0_check  # re-export (tests, old callers)

__all__ = [
    "NoRunsError",
    "TableSpec",
    "GroupKey",
    "Method",
    "Metric",
    "SPECS",
    "TABLE1",
    "TABLE2",
    "TABLE5",
    "TABLE5_METRICS",
    "TABLE5_METHODS",
    "TABLE5_COLUMNS",
    "MDE_LABEL",
    "classification_spec",
    "alpha0_check",
    "grid",
    "render",
    "table5_grid",
    "render_table5",
    "render_table",
    "IMPLEMENTED_TABLES",
    "PLANNED_TABLES",
    "not_implemented_message",
]

#: table number -> its spec (what `gal table N` renders)
SPECS: dict[int, TableSpec] = {1: TABLE1, 2: TABLE2, 5: TABLE5}
IMPLEMENTED_TABLES = tuple(sorted(SPECS))

#: What each not-yet-implemented table needs (the suite's roadmap; see the README's status table).
PLANNED_TABLES: dict[int, str] = {
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
            f"Table {', '.join(map(str, IMPLEMENTED_TABLES))} "
            f"({', '.join(f'`make table{k}`' for k in IMPLEMENTED_TABLES)}).")


def render_table(
    n: int,
    runs_root: str | os.PathLike[str] = "results/runs",
    out_dir: str | os.PathLike[str] = "results/tables",
) -> dict[str, Path]:
    """Render paper table ``n`` (1, 2 or 5) from ``<runs_root>/table<n>`` into
    ``<out_dir>/table<n>.{md,csv,tex}`` and ``table<n>_numeric.csv``; returns {"md", "csv",
    "tex", "numeric"} -> path. Raises :class:`NoRunsError` (with the ``make`` target to run)
    when there are no records, NotImplementedError for the other tables."""
    spec = SPECS.get(int(n))
    if spec is None:
        raise NotImplementedError(not_implemented_message(int(n)))
    return render(spec, runs_root, out_dir)
