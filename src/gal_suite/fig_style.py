"""The one style of the paper's figures (Figs. 4-8: :mod:`gal_suite.fig4`, :mod:`gal_suite.fig5`,
:mod:`gal_suite.fig_analysis`, :mod:`gal_suite.fig_ablation`, :mod:`gal_suite.fig8`): colours (standard process in
blue, GAL in red, as the paper's Fig. 4; an optimizer's colour, label and order are the
registry's, :mod:`gal_suite.vocab.optimizers`, re-exported here), the band rule, the figure factory,
how images are saved, the readings written on the axes and the mean-and-band / epoch-axis
drawing helpers. It reads no records (:mod:`gal_suite.fig_records` does) and imports no
figure module."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gal_suite.vocab import OPTIMIZER_LABELS, OPTIMIZER_ORDER, optimizer_colour  # noqa: F401  (re-exported)

__all__ = ["BLUE", "RED", "optimizer_colour", "POLICY_COLORS", "BAND", "LOG_Y_RATIO", "OPTIMIZER_ORDER",
           "OPTIMIZER_LABELS", "ONE_EPOCH", "DPI", "note", "new_figure", "save_images", "ordered",
           "epoch_ranges", "draw_band", "epoch_axis", "one_epoch"]

BLUE, RED = "tab:blue", "tab:red"
#: One colour per update policy of Algorithm 1 lines 7-10 (Fig. 8, ``gal_policy``).
POLICY_COLORS = {"leq": RED, "lt": "tab:orange", "always": "tab:purple", "never": "tab:gray"}
#: The band drawn around each mean curve (also stated in the captions and the figures' json).
BAND = "min-max over seeds"
#: A panel uses a log y-axis when its curves span more than this factor (all values > 0).
LOG_Y_RATIO = 10.0


def new_figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot state), constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


#: Resolution of the png images (the pdf is vector graphics).
DPI = 150


def save_images(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` (:data:`DPI`) and ``<stem>.pdf`` in ``out_dir`` (the pdf
    without a creation date: reproducible bytes); returns the two paths."""
    paths = [Path(out_dir) / f"{stem}.png", Path(out_dir) / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=DPI)
    fig.savefig(paths[1], metadata={"CreationDate": None})
    return paths


def ordered(keys: Sequence[str], order: Sequence[str]) -> list[str]:
    """``keys`` in ``order`` first, the others after, sorted."""
    return [k for k in order if k in keys] + sorted(k for k in keys if k not in order)


def epoch_ranges(epochs: Sequence[int]) -> str:
    """``[1, 2, 3, 7, 9, 10] -> "1-3, 7, 9-10"`` (consecutive integers collapsed); "none" if empty."""
    es = sorted(int(e) for e in epochs)
    if not es:
        return "none"
    out: list[str] = []
    start = prev = es[0]
    for e in [*es[1:], None]:
        if e is not None and e == prev + 1:
            prev = e
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if e is not None:
            start = prev = e
    return ", ".join(out)


#: What a per-epoch figure says when its runs have a single epoch (nothing evolves).
ONE_EPOCH = "one epoch: no evolution to show (point: mean over seeds, bar: min-max over seeds)"


def note(ax: Any, text: str, loc: str = "upper left", fontsize: float = 6.5) -> None:
    """A reading written on the axes (a boxed text in one corner, axes coordinates); call it after
    the data are drawn: the y-axis is extended on the note's side so the box covers no data."""
    upper = "upper" in loc
    height_pt = ax.get_position().height * ax.figure.get_figheight() * 72
    box = min(0.6, ((text.count("\n") + 1) * fontsize * 1.25 + 8) / max(height_pt, 1.0))
    lo, hi = ax.get_ylim()
    log = ax.get_yscale() == "log"
    a, b = (np.log10(lo), np.log10(hi)) if log else (lo, hi)
    grow = (b - a) * box / (1 - box)
    a, b = (a, b + grow) if upper else (a - grow, b)
    ax.set_ylim(*((10 ** a, 10 ** b) if log else (a, b)))
    x = 0.02 if "left" in loc else 0.98
    y = 0.98 if "upper" in loc else 0.02
    ax.text(x, y, text, transform=ax.transAxes, ha="left" if "left" in loc else "right",
            va="top" if "upper" in loc else "bottom", fontsize=fontsize, zorder=5,
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.6", "alpha": 0.85})


def draw_band(ax: Any, epochs: Sequence[int], stats: Mapping[str, Any], color: str,
              label: str) -> None:
    """The ``mean`` over seeds (line) with the ``min``-``max`` band over seeds (Figs. 6, 8b); a
    run of one epoch has no band to draw: its point carries a min-max bar instead."""
    ep = np.asarray(epochs)
    mean, lo, hi = (np.asarray(stats[k], float) for k in ("mean", "min", "max"))
    if len(ep) == 1:
        ax.errorbar(ep, mean, np.vstack([mean - lo, hi - mean]), color=color, marker="o",
                    capsize=4, lw=1.5, label=label)
        return
    ax.fill_between(ep, lo, hi, color=color, alpha=0.2, lw=0)
    ax.plot(ep, mean, color=color, lw=1.5, marker="o" if len(ep) <= 12 else None, label=label)


def epoch_axis(ax: Any, epochs: Iterable[int]) -> None:
    """Integer epochs on the x-axis: every epoch a tick when there are few, one epoch centred."""
    from matplotlib.ticker import MaxNLocator

    es = sorted({int(e) for e in epochs})
    if es and len(es) <= 15:
        ax.set_xticks(es)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(es) == 1:
        ax.set_xlim(es[0] - 1, es[0] + 1)
    ax.set_xlabel("epoch")


def one_epoch(lines: Iterable[Mapping[str, Any]]) -> bool:
    """True when every line has at most one epoch (nothing evolves to show)."""
    return all(len(ln["epochs"]) <= 1 for ln in lines)
