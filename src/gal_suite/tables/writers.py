"""Writers of a rendered grid: ``tableN.md`` (notes + pipe table), ``tableN.csv``, ``tableN.tex``
(booktabs) and ``tableN_numeric.csv``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from gal_suite.tables.cells import tex_escape

__all__ = ["to_markdown", "to_latex", "write_table"]


def to_markdown(table: pd.DataFrame, notes: list[str], title: str) -> str:
    """Heading, the notes as bullets, then a pipe table ("|" in cells escaped)."""
    lines = [title, ""]
    lines += [f"- {n}" for n in notes]
    lines += ["", "| " + " | ".join(table.columns) + " |",
              "|" + "|".join("---" for _ in table.columns) + "|"]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in r.tolist()) + " |")
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame, notes: list[str], comment: str, caption: str) -> str:
    """booktabs ``table*``; the notes as comments, ``caption`` + the second note as caption."""
    cols = "l" * len(table.columns)
    lines = [f"% {comment}",
             *[f"% {n}" for n in notes],
             r"\begin{table*}[t]", r"\centering", r"\scriptsize",
             r"\caption{" + caption + " " + tex_escape(notes[1]) + "}",
             r"\begin{tabular}{" + cols + "}", r"\toprule",
             " & ".join(tex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    for _, r in table.iterrows():
        lines.append(" & ".join(tex_escape(v) for v in r.tolist()) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
    return "\n".join(lines) + "\n"


def write_table(
    spec: Any, table: pd.DataFrame, notes: list[str], numeric: pd.DataFrame,
    out_dir: str | os.PathLike[str],
) -> dict[str, Path]:
    """Write ``<out_dir>/<spec.stem>.{md,csv,tex}`` and ``<stem>_numeric.csv``; ``spec`` gives
    ``stem``, ``title``, ``tex_comment`` and ``tex_caption``. Returns kind -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = spec.stem
    paths = {"md": out / f"{stem}.md", "csv": out / f"{stem}.csv", "tex": out / f"{stem}.tex",
             "numeric": out / f"{stem}_numeric.csv"}
    paths["md"].write_text(to_markdown(table, notes, spec.title))
    table.to_csv(paths["csv"], index=False)
    paths["tex"].write_text(to_latex(table, notes, spec.tex_comment, spec.tex_caption))
    numeric.to_csv(paths["numeric"], index=False)
    return paths
