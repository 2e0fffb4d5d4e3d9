"""What a paper figure is made of: :class:`FigureSpec` (no drawing here).

A figure is a small spec, as a table is a :class:`gal_suite.tables.spec.TableSpec`: the paper's figure
number and section, the run records it reads (directories under the runs root), the function of
those records that draws it and writes its files, the options that function takes (``profile``:
the records of one profile, never mixed; ``gif``: an animation where there is one) and the names
of the files it writes. The specs (``FIG4`` in :mod:`gal_suite.fig4`, ``FIG5`` in :mod:`gal_suite.fig5`,
``FIG6`` in :mod:`gal_suite.fig_analysis`, ``FIG7`` in :mod:`gal_suite.fig_ablation`, ``FIG8`` in
:mod:`gal_suite.fig8`) are registered in :data:`gal_suite.figures.FIGURES`, and ``gal figure N``
(:func:`gal_suite.figures.render_figure`) is a lookup there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FigureSpec", "FIGURE_FILES", "OPTIONS"]

#: The files of a figure (:func:`gal_suite.fig_provenance.write_figure`): its numbers, a readable
#: summary and the image as png and pdf; ``{stem}`` is :meth:`FigureSpec.stem`.
FIGURE_FILES = ("{stem}.json", "{stem}.md", "{stem}.png", "{stem}.pdf")
#: The options of ``gal figure N`` a figure's draw function may take.
OPTIONS = ("profile", "gif")


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the paper, rendered from run records only by its ``draw`` function.

    Args:
        number: the paper's figure number (``gal figure <number>``, ``make fig<number>``).
        section: the paper's section that shows it, e.g. ``"VI-A"``.
        subject: what it shows, in a few words (messages name it).
        records: the directories under the runs root whose records it reads, e.g.
            ``("table1", "table2", "table5")``.
        draw: ``(runs_root, out_dir, **options) -> paths written``: reads the records, draws the
            figure and writes its files.
        options: the keyword options ``draw`` takes, of :data:`OPTIONS`.
        outputs: the names of the files ``draw`` always writes (``{stem}`` filled in).
        optional_outputs: files it writes only with an option or where records exist (Fig. 4:
            the authors' conventions, the animation).
        home_profile: the profile whose files are ``fig<number>.*``; any other profile's are
            ``fig<number>-<profile>.*`` (Fig. 6: ``cpu``, so the cpu and analysis profiles are two
            figures; Figs. 7, 8: ``analysis``); ``None``: always ``fig<number>``.
    """

    number: int
    section: str
    subject: str
    records: tuple[str, ...]
    draw: Callable[..., list[Path]]
    options: tuple[str, ...] = ("profile",)
    outputs: tuple[str, ...] = FIGURE_FILES
    optional_outputs: tuple[str, ...] = ()
    home_profile: str | None = None

    def __post_init__(self) -> None:
        bad = [o for o in self.options if o not in OPTIONS]
        if bad:
            raise ValueError(f"Fig. {self.number}: unknown option(s) {bad}; known: {OPTIONS}")

    @property
    def name(self) -> str:
        """How messages name it, e.g. ``"Fig. 5"``."""
        return f"Fig. {self.number}"

    @property
    def make_target(self) -> str:
        """The ``make`` target that runs its missing runs and renders it."""
        return f"make fig{self.number}"

    def stem(self, profile: str = "cpu") -> str:
        """The stem of its files for ``profile`` (see ``home_profile``)."""
        base = f"fig{self.number}"
        home = self.home_profile
        return base if home is None or profile == home else f"{base}-{profile}"

    def output_names(self, profile: str = "cpu", optional: bool = False) -> list[str]:
        """The names of the files it writes for ``profile``; with ``optional`` also those it may
        write (:attr:`optional_outputs`)."""
        names = (*self.outputs, *(self.optional_outputs if optional else ()))
        return [n.format(stem=self.stem(profile)) for n in names]

    def render(self, runs_root: Path, out_dir: Path, profile: str = "cpu",
               gif: bool = False) -> list[Path]:
        """Draw it from the records under ``runs_root`` into ``out_dir`` with the options it
        takes; returns the paths written."""
        given = {"profile": profile, "gif": gif}
        return self.draw(Path(runs_root), Path(out_dir), **{o: given[o] for o in self.options})
