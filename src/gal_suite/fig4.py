"""Fig. 4 of the paper (Sec. IV-D, the 3D example) drawn from run records only: convergence
paths and f against steps for GD, Lookahead(GD), RMSprop, Adam and AdaBound, standard process in
blue and GAL in red, read from ``<runs_root>/fig4/<convention>/<optimizer>/<arm>/seed-<k>/`` as
written by ``python -m experiments.toy3d``; its numbers (``fig4.json``, ``fig4.md``) are computed
in :mod:`gal_suite.fig4_data`.

Outputs in ``out_dir``:

- ``fig4.png`` / ``fig4.pdf``: the paper-convention runs (Eq. 7 as written, h in its own optimizer);
- ``fig4-authors.png`` / ``.pdf``: the same under the authors' 3D-code conventions;
- ``fig4.json``: per convention and optimizer, for the baseline and for GAL (every seed of h's
  initialisation and the median over seeds): final f, the first step within ``1e-3`` of the run's
  own final f, the first step from which it *stays* within it, and the minimum f reached;
- ``fig4.gif`` (``gif=True``): an animation of the GD paths (baseline vs GAL median seed).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gal_suite.fig4_data import (
    FIG4_CONVENTION_ORDER,
    _load_fig4,
    fig4_markdown,
    fig4_summary,
    toy3d_surface,
)
from gal_suite.fig_provenance import record_commits, stamp, write_numbers
from gal_suite.fig_spec import FigureSpec
from gal_suite.fig_style import BLUE, RED, save_images
from gal_suite.fig_style import new_figure as _new_figure
from gal_suite.fig_style import ordered as _ordered
from gal_suite.records import load_runs
from gal_suite.vocab import FIG4_OPTIMIZER_ORDER

__all__ = ["FIG4", "render_fig4"]


def _contour(ax: Any, levels: int = 30) -> None:
    g = np.linspace(-1.5, 1.5, 301)
    xx, yy = np.meshgrid(g, g)
    zz = toy3d_surface(xx, yy)
    ax.contourf(xx, yy, zz, levels=levels, cmap="Greys_r", alpha=0.55)
    ax.contour(xx, yy, zz, levels=levels, colors="k", linewidths=0.3, alpha=0.35)
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")


def _draw_fig4(conv: str, data: Mapping[str, Any], summary: Mapping[str, Any], out: Path,
               prov: Mapping[str, Any] | None = None) -> list[Path]:
    names = _ordered(list(data), FIG4_OPTIMIZER_ORDER)
    n = len(names)
    fig = _new_figure((3.1 * n, 6.4))
    axes = fig.subplots(2, n, squeeze=False, gridspec_kw={"height_ratios": [1.0, 0.72]})
    for j, name in enumerate(names):
        e, s = data[name], summary[name]
        top, bot = axes[0, j], axes[1, j]
        _contour(top)
        top.set_title(e["label"], fontsize=11)
        med = s["gal"]["median_seed"] if "gal" in s else None
        if "gal" in s:
            for k, h in sorted(e["gal"].items()):
                if k != med:
                    top.plot(h["x"], h["y"], color=RED, lw=0.8, alpha=0.3,
                             label="GAL (other seeds of h)")
            h = e["gal"][med]
            top.plot(h["x"], h["y"], color=RED, lw=1.6, label="GAL (median seed)")
            top.plot(h["x"].iloc[-1], h["y"].iloc[-1], "o", color=RED, ms=4)
            steps = np.asarray(h["step"])
            fmat = np.vstack([np.asarray(hh["f"]) for hh in e["gal"].values()])
            bot.fill_between(steps, fmat.min(0), fmat.max(0), color=RED, alpha=0.18, lw=0,
                             label="GAL min-max over seeds")
            bot.plot(steps, h["f"], color=RED, lw=1.4, label="GAL (median seed)")
            fw = s["gal"]["seeds"][str(med)]["first_within"]
            bot.axvline(fw, color=RED, ls=":", lw=1.0)
            top.text(0.03, 0.03, f"median seed: {med} (of {len(e['gal'])} seeds)",
                     transform=top.transAxes, fontsize=7, color=RED)
        if "baseline" in e:
            h = e["baseline"]
            top.plot(h["x"], h["y"], color=BLUE, lw=1.6, label="standard")
            top.plot(h["x"].iloc[-1], h["y"].iloc[-1], "o", color=BLUE, ms=4)
            top.plot(h["x"].iloc[0], h["y"].iloc[0], "k*", ms=8, label="start")
            bot.plot(h["step"], h["f"], color=BLUE, lw=1.4, label="standard")
            bot.axvline(s["baseline"]["first_within"], color=BLUE, ls=":", lw=1.0)
        top.set_xlabel("x")
        if j == 0:
            top.set_ylabel("y")
            bot.set_ylabel("f(x, y)")
        bot.set_xlabel("step")
        bot.grid(alpha=0.3)
        bot.margins(x=0)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    h2, l2 = axes[1, 0].get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    for lab, hd in zip(l2, h2, strict=True):
        seen.setdefault(lab, hd)
    fig.legend(list(seen.values()), list(seen.keys()), loc="outside lower center",
               ncol=len(seen), fontsize=9, frameon=False)
    title = {
        "paper": "Fig. 4 (Sec. IV-D): standard (blue) vs GAL (red); paper conventions "
        "(Eq. 7 inner product, h in its own optimizer)",
        "authors": "Fig. 4 (Sec. IV-D): standard (blue) vs GAL (red); authors' 3D-code conventions "
        "(first-order term averaged over coordinates, h in the same optimizer)",
    }.get(conv, f"Fig. 4 (Sec. IV-D), convention {conv}")
    fig.suptitle(title + "; faint: other seeds of h; dotted: first step within 1e-3 of final f",
                 fontsize=9.5)
    if prov is not None:
        stamp(fig, prov)
    return save_images(fig, out, "fig4" if conv == "paper" else f"fig4-{conv}")


def _draw_gif(data: Mapping[str, Any], summary: Mapping[str, Any], path: Path,
              optimizer: str = "sgd") -> Path:
    from matplotlib.animation import FuncAnimation, PillowWriter

    e, s = data[optimizer], summary[optimizer]
    fig = _new_figure((4.6, 4.8))
    ax = fig.subplots()
    _contour(ax)
    ax.set_title(f"Fig. 4 (Sec. IV-D), {e['label']}: standard (blue) vs GAL (red)", fontsize=9)
    b = e["baseline"]
    g = e["gal"][s["gal"]["median_seed"]]
    (lb,) = ax.plot([], [], color=BLUE, lw=1.6)
    (lg,) = ax.plot([], [], color=RED, lw=1.6)
    (pb,) = ax.plot([], [], "o", color=BLUE, ms=5)
    (pg,) = ax.plot([], [], "o", color=RED, ms=5)
    ax.plot(b["x"].iloc[0], b["y"].iloc[0], "k*", ms=8)
    txt = ax.text(-1.4, 1.35, "", fontsize=9, va="top")
    n = max(len(b), len(g))
    stride = max(1, n // 150)
    frames = list(range(0, n, stride)) + [n - 1]

    def update(i: int) -> tuple[Any, ...]:
        ib, ig = min(i, len(b) - 1), min(i, len(g) - 1)
        lb.set_data(b["x"][: ib + 1], b["y"][: ib + 1])
        lg.set_data(g["x"][: ig + 1], g["y"][: ig + 1])
        pb.set_data([b["x"].iloc[ib]], [b["y"].iloc[ib]])
        pg.set_data([g["x"].iloc[ig]], [g["y"].iloc[ig]])
        txt.set_text(f"step {i}")
        return lb, lg, pb, pg, txt

    anim = FuncAnimation(fig, update, frames=frames, blit=False)
    anim.save(path, writer=PillowWriter(fps=15))
    return path


def render_fig4(runs_root: Path, out_dir: Path, gif: bool = False) -> list[Path]:
    """Render Fig. 4 (Sec. IV-D) from ``<runs_root>/fig4`` records: ``fig4.{png,pdf,json}``, the
    authors'-convention figure ``fig4-authors.{png,pdf}`` and, with ``gif``, ``fig4.gif``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = _load_fig4(runs_root)
    summary = fig4_summary(runs_root, data=data)
    df = load_runs(Path(runs_root) / "fig4")
    prov = record_commits({}, df["path"].tolist() if len(df) else [])
    written = write_numbers(summary, fig4_markdown(summary), out_dir, "fig4", prov, clean=False)
    for conv in _ordered(list(data), FIG4_CONVENTION_ORDER):
        written += _draw_fig4(conv, data[conv], summary["conventions"][conv], out_dir, prov)
    if gif:
        conv = "paper" if "paper" in data else next(iter(data))
        opt = "sgd" if "sgd" in data[conv] else next(iter(data[conv]))
        written.append(_draw_gif(data[conv], summary["conventions"][conv], out_dir / "fig4.gif", opt))
    return written


#: Fig. 4 (Sec. IV-D), the 3D example: every convention's runs, not one profile's.
FIG4 = FigureSpec(number=4, section="IV-D", subject="the 3D example", records=("fig4",),
                  draw=render_fig4, options=("gif",),
                  optional_outputs=("{stem}-authors.png", "{stem}-authors.pdf", "{stem}.gif"))
