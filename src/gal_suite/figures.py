"""Figures of the paper, rendered from run records only (docs/design.md; never from training code).

Each implemented figure is a small :class:`~gal_suite.fig_spec.FigureSpec` (the records it reads, the
function of those records that draws it, the files it writes), registered in :data:`FIGURES`:

* Fig. 4 (Sec. IV-D, the 3D example): :data:`~gal_suite.fig4.FIG4`, its numbers in :mod:`gal_suite.fig4_data`;
* Fig. 5 (Sec. VI-A, validation loss curves): :data:`~gal_suite.fig5.FIG5`;
* Fig. 6 (Sec. VI-A, remainder and cosine of GAL training): :data:`~gal_suite.fig_analysis.FIG6`;
* Fig. 7 (Sec. VI-D, alpha / beta / architecture of h): :data:`~gal_suite.fig_ablation.FIG7`;
* Fig. 8 (Sec. VI-E/F, update policies and g vs dl/dz): :data:`~gal_suite.fig8.FIG8`.

All share one style (:mod:`gal_suite.fig_style`), one way of reading records (:mod:`gal_suite.fig_records`),
one writer naming the runs drawn (:mod:`gal_suite.fig_provenance`) and one error when there are none
(:class:`gal_suite.records.NoRunsError`). Entry point for the CLI: :func:`render_figure`
(``gal figure N``), a lookup in :data:`FIGURES`.
"""

from __future__ import annotations

from pathlib import Path

from gal_suite.fig4 import FIG4, render_fig4

# Fig. 4's numbers (re-exported here: ``from gal_suite.figures import path_summary`` etc.)
from gal_suite.fig4_data import FIG4_TOL, fig4_summary, median_seed, path_summary, toy3d_surface
from gal_suite.fig5 import FIG5
from gal_suite.fig8 import FIG8
from gal_suite.fig_ablation import FIG7
from gal_suite.fig_analysis import FIG6
from gal_suite.fig_spec import FigureSpec
from gal_suite.records import NoRunsError

__all__ = [
    "FIGURES",
    "FigureSpec",
    "NoRunsError",
    "figure_spec",
    "not_implemented_message",
    "render_figure",
    "render_fig4",
    "fig4_summary",
    "path_summary",
    "median_seed",
    "toy3d_surface",
    "FIG4_TOL",
]

#: figure number -> its spec (what ``gal figure N`` renders)
FIGURES: dict[int, FigureSpec] = {s.number: s for s in (FIG4, FIG5, FIG6, FIG7, FIG8)}


def not_implemented_message(n: object) -> str:
    """One clear line for a figure the suite does not render, naming those it does."""
    known = [f"{s.number} (Sec. {s.section}, {s.subject}; `{s.make_target}`)"
             for s in FIGURES.values()]
    return (f"gal figure {n}: Fig. {n} of the paper is not implemented; implemented figures: "
            f"{', '.join(known[:-1])} and {known[-1]}.")


def figure_spec(n: int | str) -> FigureSpec:
    """The spec of figure ``n`` (``5`` or ``"5"``); ``NotImplementedError`` naming the
    implemented figures for any other."""
    try:
        return FIGURES[int(n)]
    except (KeyError, ValueError, TypeError):
        raise NotImplementedError(not_implemented_message(n)) from None


def render_figure(
    n: int | str, runs_root: Path, out_dir: Path, gif: bool = False, profile: str = "cpu"
) -> list[Path]:
    """Render figure ``n`` of the paper from the run records under ``runs_root`` into ``out_dir``
    (:data:`FIGURES`; ``profile`` for the figures drawn per profile, ``gif`` for Fig. 4's
    animation). Returns the paths written. Raises ``NotImplementedError`` naming the implemented
    figures for any other ``n`` and :class:`~gal_suite.records.NoRunsError` (naming the ``make`` target)
    when there are no records to draw from."""
    return figure_spec(n).render(Path(runs_root), Path(out_dir), profile=profile, gif=gif)
