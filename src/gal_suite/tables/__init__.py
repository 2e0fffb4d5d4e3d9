"""Paper tables from run records only: ``results/tables/tableN.{md,csv,tex}`` (+ ``_numeric.csv``).

Each implemented table is a small :class:`~gal_suite.tables.spec.TableSpec` rendered by the one
renderer :func:`gal_suite.tables.render.render`:

* Table I (CIFAR-10) and Table II (CIFAR-100), image classification (Sec. V-A/V-C):
  :data:`~gal_suite.tables.classification.TABLE1`, :data:`~gal_suite.tables.classification.TABLE2`;
* Table III (ImageNet, ResNet-50 / EfficientNet-B2, top-1 / top-5 accuracy):
  :data:`~gal_suite.tables.table3.TABLE3`;
* Table IV (MS COCO, DETR, the six COCO APs): :data:`~gal_suite.tables.table4.TABLE4`;
* Table V, regression (Sec. V-B/V-C): :data:`~gal_suite.tables.table5.TABLE5`;
* Tables VI (noise instead of h) and VIII (MLP vs CNN adjusters), Sec. VI:
  :data:`~gal_suite.tables.ablation.TABLE6`, :data:`~gal_suite.tables.ablation.TABLE8`, from the records of
  the analyses (``<runs_root>/ablation``), each row compared with the baseline;
* Table VII, training time per image (Sec. VI-C): :data:`~gal_suite.tables.table7.TABLE7`, a
  :class:`~gal_suite.tables.table7_spec.CostTableSpec` whose own ``tabulate`` reads the benchmark
  reports (``results/benchmarks/gal_cost_*.json``) and the classification run records'
  ``s_per_image``; the same renderer writes it.

Ours are computed from ``load_runs(<runs_root>/tableN)`` (never from training code); the
paper's numbers come from ``paper_values.yaml`` and only ever land in the "paper" columns.
Entry point for the CLI: :func:`render_table` (``gal table N``).
"""

from __future__ import annotations

import os
from pathlib import Path

from gal_suite.tables.ablation import TABLE6, TABLE8
from gal_suite.tables.classification import TABLE1, TABLE2, classification_spec
from gal_suite.tables.render import alpha0_check, grid, render
from gal_suite.tables.spec import GroupKey, Method, Metric, NoRunsError, TableSpec
from gal_suite.tables.table3 import TABLE3
from gal_suite.tables.table4 import TABLE4
from gal_suite.tables.table5 import TABLE5, TABLE5_COLUMNS, TABLE5_METRICS, render_table5
from gal_suite.tables.table7 import TABLE7, CostTableSpec, render_cost_table

__all__ = [
    "NoRunsError",
    "TableSpec",
    "GroupKey",
    "Method",
    "Metric",
    "SPECS",
    "TABLE1",
    "TABLE6",
    "TABLE8",
    "TABLE2",
    "TABLE3",
    "TABLE4",
    "TABLE5",
    "TABLE7",
    "CostTableSpec",
    "render_cost_table",
    "TABLE5_METRICS",
    "TABLE5_COLUMNS",
    "classification_spec",
    "alpha0_check",
    "grid",
    "render",
    "render_table5",
    "render_table",
    "IMPLEMENTED_TABLES",
    "not_implemented_message",
]

#: table number -> its spec (what `gal table N` renders, all with :func:`render`)
SPECS: dict[int, TableSpec | CostTableSpec] = {1: TABLE1, 2: TABLE2, 3: TABLE3, 4: TABLE4,
                                               5: TABLE5, 6: TABLE6, 7: TABLE7, 8: TABLE8}
IMPLEMENTED_TABLES = tuple(sorted(SPECS))

def not_implemented_message(n: int) -> str:
    """One clear line for a table number the suite does not render."""
    return (f"the paper has no Table {n}: its tables are I-VIII. Implemented: "
            f"Table {', '.join(map(str, IMPLEMENTED_TABLES))} "
            f"({', '.join(f'`make table{k}`' for k in IMPLEMENTED_TABLES)}).")


def render_table(
    n: int,
    runs_root: str | os.PathLike[str] = "results/runs",
    out_dir: str | os.PathLike[str] = "results/tables",
) -> dict[str, Path]:
    """Render paper table ``n`` (1-8) from ``<runs_root>/<spec.subdir>`` into
    ``<out_dir>/table<n>.{md,csv,tex}`` and ``table<n>_numeric.csv`` (:func:`render`, a lookup
    in :data:`SPECS`); returns {"md", "csv", "tex", "numeric"} -> path. Table VII reads
    ``<runs_root>/../benchmarks/gal_cost_*.json`` and the records of Tables I/II. Raises
    :class:`NoRunsError` (with the command to run) when there is nothing to render,
    NotImplementedError for the other tables."""
    spec = SPECS.get(int(n))
    if spec is None:
        raise NotImplementedError(not_implemented_message(int(n)))
    return render(spec, runs_root, out_dir)
