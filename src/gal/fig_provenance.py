"""Which runs and commits a figure was drawn from: every figure names them (its JSON, its
Markdown and a footer on the image), as every table does in its notes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["record_commits", "footer", "stamp"]


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


def stamp(fig: Any, prov: Mapping[str, Any]) -> None:
    """Write :func:`footer` into the bottom right corner of a matplotlib figure."""
    fig.text(0.995, 0.002, footer(prov), ha="right", va="bottom", fontsize=6, color="0.35")
