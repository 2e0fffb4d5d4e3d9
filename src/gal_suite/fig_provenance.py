"""What every figure of the paper writes (Figs. 4-8) and which runs and commits it was drawn
from: the figure names them in its JSON (``records``), its Markdown (a last line) and a footer on
each image, as every table does in its notes. :func:`write_figure` writes ``<stem>.json``,
``<stem>.md``, ``<stem>.png`` and ``<stem>.pdf``; :func:`write_numbers` the first two alone (Fig. 4
draws two images besides them)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gal_suite.fig_style import save_images

__all__ = ["record_commits", "footer", "stamp", "write_numbers", "write_figure"]


def _run_paths(obj: Any, out: set[str]) -> None:
    if isinstance(obj, Mapping):
        for v in obj.values():
            _run_paths(v, out)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _run_paths(v, out)
    elif isinstance(obj, str) and len(obj) < 4096 and "\n" not in obj and _is_run(obj):
        out.add(obj)


def _is_run(path: str) -> bool:
    """True for a run directory; a string that is no path (a caption, too long a name) is not."""
    try:
        return (Path(path) / "provenance.json").is_file()
    except OSError:
        return False


def record_commits(summary: Mapping[str, Any], extra_paths: Iterable[str] = ()) -> dict[str, Any]:
    """``{"n_runs", "commits", "dirty"}`` of the run records a figure's summary names (every
    string in it that is a run directory), plus ``extra_paths``."""
    paths: set[str] = set(map(str, extra_paths))
    _run_paths(summary, paths)
    commits: set[str] = set()
    dirty = False
    for p in paths:
        prov = json.loads((Path(p) / "provenance.json").read_text())
        commits.add(str(prov.get("git_commit", "unknown"))[:10])
        dirty = dirty or prov.get("git_dirty") is True
    return {"n_runs": len(paths), "commits": sorted(commits), "dirty": dirty}


def footer(prov: Mapping[str, Any]) -> str:
    """One line: how many runs, made at which commits."""
    return (f"records: {prov['n_runs']} runs made at git commit(s) "
            f"{', '.join(prov['commits']) or 'unknown'}"
            + (" (some with uncommitted changes)" if prov["dirty"] else ""))


#: Height (inches) of the strip kept free below the axes for the :func:`footer`.
FOOTER_IN = 0.14


def stamp(fig: Any, prov: Mapping[str, Any]) -> None:
    """Write :func:`footer` into the bottom right corner of a matplotlib figure, in a strip that a
    constrained layout keeps clear of the axes (their labels never run under it)."""
    strip = FOOTER_IN / fig.get_figheight()
    engine = fig.get_layout_engine()
    if engine is not None and hasattr(engine, "set") and "rect" in engine.get():
        engine.set(rect=(0.0, strip, 1.0, 1.0 - strip))
    fig.text(0.995, 0.002, footer(prov), ha="right", va="bottom", fontsize=6, color="0.35")


def _clean(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    return obj


def write_numbers(summary: Mapping[str, Any], markdown: str, out_dir: Path, stem: str,
                  prov: Mapping[str, Any], clean: bool = True) -> list[Path]:
    """Write ``<stem>.json`` (``summary`` with ``records``: ``prov`` last) and ``<stem>.md``
    (``markdown`` and the :func:`footer` line) into ``out_dir``; returns the two paths.

    ``clean``: non-finite numbers as null and numpy scalars as Python numbers (Figs. 6-8);
    False writes the summary as it is, a NaN as ``NaN`` (Figs. 4, 5)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md"]
    summary = {**summary, "records": prov}
    text = (json.dumps(_clean(summary), indent=2, allow_nan=False) if clean
            else json.dumps(summary, indent=2))
    paths[0].write_text(text + "\n")
    paths[1].write_text(markdown + f"\n{footer(prov)}.\n")
    return paths


def write_figure(fig: Any, summary: Mapping[str, Any], markdown: str, out_dir: Path, stem: str,
                 drawn_from: Mapping[str, Any] | None = None, clean: bool = True) -> list[Path]:
    """Write ``<stem>.json``, ``<stem>.md`` (:func:`write_numbers`), ``<stem>.png`` and
    ``<stem>.pdf`` (:func:`gal_suite.fig_style.save_images`, stamped with the :func:`footer`) into
    ``out_dir``; returns the paths. The provenance counts the runs that ``drawn_from`` names
    (default: every run the summary names, those left out included)."""
    prov = record_commits(summary if drawn_from is None else drawn_from)
    paths = write_numbers(summary, markdown, out_dir, stem, prov, clean)
    stamp(fig, prov)
    return paths + save_images(fig, out_dir, stem)
