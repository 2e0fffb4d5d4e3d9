"""The figure registry (gal_suite.figures.FIGURES, Figs. 4-8 of the paper as specs): it covers every
figure the Makefile renders and every committed figure file, an unknown figure is one clear error,
and tables and figures share one NoRunsError and read records in one direction only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import gal_suite.fig_analysis
import gal_suite.figures
import gal_suite.records
import gal_suite.tables
from gal_suite.cli import main
from gal_suite.fig_spec import FigureSpec
from gal_suite.figures import FIGURES, figure_spec, render_figure

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "gal_suite"


def _makefile_figures() -> set[int]:
    text = (ROOT / "Makefile").read_text()
    explicit = {int(n) for n in re.findall(r"gal figure (\d+)", text)}
    targets = {int(n) for n in re.findall(r"^(?:\S+ )*fig(\d+)(?: \S+)*:", text, re.M)}
    return explicit | targets


def test_registry_covers_every_figure_the_makefile_renders() -> None:
    made = _makefile_figures()
    assert made >= {4, 5, 6, 7, 8}
    assert made <= set(FIGURES), f"Makefile renders figures without a spec: {made - set(FIGURES)}"
    for n, spec in FIGURES.items():
        assert isinstance(spec, FigureSpec) and spec.number == n
        assert spec.records and all(re.fullmatch(r"[a-z0-9]+", r) for r in spec.records)
        assert re.fullmatch(r"[IVX]+-[A-F](/[A-F])?", spec.section)


def test_registry_names_every_committed_figure_file() -> None:
    committed = {p.name for p in (ROOT / "results" / "figures").iterdir() if p.is_file()}
    if not committed:
        pytest.skip("no committed figures")
    named = set()
    for n, profile in ((4, "cpu"), (5, "cpu"), (6, "cpu"), (6, "ablation"), (6, "analysis"),
                       (7, "analysis"), (7, "ablation"), (8, "analysis"), (8, "ablation")):
        named |= set(FIGURES[n].output_names(profile, optional=True))
    assert committed <= named, committed - named
    assert FIGURES[6].stem("analysis") == "fig6" and FIGURES[6].stem("cpu") == "fig6-cpu"
    assert FIGURES[6].stem("ablation") == "fig6-ablation"
    assert FIGURES[7].stem("analysis") == "fig7" and FIGURES[8].stem("analysis") == "fig8"
    assert FIGURES[7].stem("ablation") == "fig7-ablation"
    assert FIGURES[8].stem("ablation") == "fig8-ablation" and FIGURES[5].stem("x") == "fig5"


@pytest.mark.parametrize("name", [9, 0, "9", "fig5", None])
def test_unknown_figure_is_one_clear_error(name: object, tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError) as e:
        render_figure(name, tmp_path, tmp_path / "out")  # type: ignore[arg-type]
    msg = str(e.value)
    assert "\n" not in msg and f"Fig. {name} of the paper is not implemented" in msg
    for n in FIGURES:
        assert f"`make fig{n}`" in msg
    assert not (tmp_path / "out").exists()
    with pytest.raises(NotImplementedError):
        figure_spec(name)  # type: ignore[arg-type]


def test_cli_unknown_figure_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    assert main(["figure", "9", "--runs", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gal: error: gal figure 9:")
    assert main(["figure", "5", "--runs", str(tmp_path / "none"), "--out", str(tmp_path)]) == 1
    assert "make table5" in capsys.readouterr().err


def test_spec_render_passes_only_its_options(tmp_path: Path) -> None:
    calls: list[tuple] = []

    def draw(runs_root: Path, out_dir: Path, **kw: object) -> list[Path]:
        calls.append((runs_root, out_dir, kw))
        return []

    FigureSpec(9, "VI-A", "x", ("table1",), draw).render(tmp_path, tmp_path, "paper", True)
    FigureSpec(9, "IV-D", "x", ("fig4",), draw, options=("gif",)).render(
        str(tmp_path), tmp_path, "paper", True)
    assert calls == [(tmp_path, tmp_path, {"profile": "paper"}),
                     (tmp_path, tmp_path, {"gif": True})]
    with pytest.raises(ValueError, match="unknown option"):
        FigureSpec(9, "VI-A", "x", ("table1",), draw, options=("dpi",))


def test_one_no_runs_error(tmp_path: Path) -> None:
    err = gal_suite.records.NoRunsError
    assert gal_suite.tables.NoRunsError is err and gal_suite.figures.NoRunsError is err
    assert gal_suite.fig_analysis.NoRunsError is err and issubclass(err, FileNotFoundError)
    for n, spec in FIGURES.items():
        with pytest.raises(err, match=spec.make_target if n != 5 else "make table"):
            render_figure(n, tmp_path / "empty", tmp_path / "out", profile="cpu")


def _gal_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gal"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("gal")}
    return out


def test_dependencies_run_one_way() -> None:
    figure_modules = sorted(SRC.glob("fig*.py"))
    assert len(figure_modules) >= 10
    for p in figure_modules:
        imps = _gal_imports(p)
        assert not any(i.startswith(("gal_suite.tables", "gal_suite.cli")) for i in imps), p.name
        if p.name != "figures.py":  # the registry is on top: no figure module imports it
            assert "gal_suite.figures" not in imps, p.name
    style = _gal_imports(SRC / "fig_style.py")
    assert not any(i.startswith(("gal_suite.fig", "gal_suite.records", "gal_suite.record_io")) for i in style)
    for p in sorted((SRC / "tables").glob("*.py")):
        assert not any(i.startswith("gal_suite.fig") for i in _gal_imports(p)), p.name
    for p in [*SRC.glob("fig*.py"), *(SRC / "tables").glob("*.py")]:
        assert len(p.read_text().splitlines()) <= 400, p.name
