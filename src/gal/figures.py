"""Figures of the paper, rendered from run records only (docs/design.md; never from training code).

``gal figure N [--gif] [--profile P]`` calls :func:`render_figure` (Figs. 4-8; Fig. 5 in
:mod:`gal.fig5`, Fig. 6 in :mod:`gal.fig_analysis`, Figs. 7 and 8 in :mod:`gal.fig_ablation` and :mod:`gal.fig8`,
each with its own outputs ``figN.{png,pdf,json,md}``). This module holds Fig. 4 (Sec. IV-D, the 3D
example: convergence paths and f against steps for GD, Lookahead(GD), RMSprop, Adam and AdaBound,
standard process in blue and GAL in red), read from ``<runs_root>/fig4/<convention>/<optimizer>/
<arm>/seed-<k>/`` as written by ``python -m experiments.toy3d``.

Outputs of Fig. 4 in ``out_dir``:

- ``fig4.png`` / ``fig4.pdf``: the paper-convention runs (Eq. 7 as written, h in its own optimizer);
- ``fig4-authors.png`` / ``.pdf``: the same under the authors' 3D-code conventions;
- ``fig4.json``: per convention and optimizer, for the baseline and for GAL (every seed of h's
  initialisation and the median over seeds): final f, the first step within ``1e-3`` of the run's
  own final f, the first step from which it *stays* within it, and the minimum f reached;
- ``fig4.gif`` (``gif=True``): an animation of the GD paths (baseline vs GAL median seed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gal.fig_provenance import footer, record_commits, stamp
from gal.fig_style import BLUE, RED
from gal.fig_style import new_figure as _new_figure
from gal.fig_style import ordered as _ordered
from gal.records import load_history, load_runs

__all__ = [
    "render_figure",
    "render_fig4",
    "fig4_summary",
    "path_summary",
    "median_seed",
    "toy3d_surface",
    "FIG4_TOL",
]

#: Tolerance of the convergence step in fig4.json: |f_t - f_final| <= FIG4_TOL.
FIG4_TOL = 1e-3
FIG4_OPTIMIZER_ORDER = ("sgd", "lookahead_sgd", "rmsprop", "adam", "adabound")
FIG4_CONVENTION_ORDER = ("paper", "authors")


def render_figure(
    n: int, runs_root: Path, out_dir: Path, gif: bool = False, profile: str = "cpu"
) -> list[Path]:
    """Render figure ``n`` of the paper from the run records under ``runs_root`` into ``out_dir``.

    Returns the paths written. Implemented: Fig. 4 (Sec. IV-D), Fig. 5 (Sec. VI-A, validation
    loss curves of the runs of ``profile``; see :mod:`gal.fig5`), Fig. 6 (Sec. VI-A, remainder
    and cosine of GAL runs; :mod:`gal.fig_analysis`), Figs. 7 and 8 (Sec. VI-D/E/F, alpha / beta
    / architecture sweeps and update policies from the ablation records of ``profile``;
    :mod:`gal.fig_ablation`); any other ``n`` raises ``NotImplementedError`` naming what exists.
    """
    if int(n) == 4:
        return render_fig4(Path(runs_root), Path(out_dir), gif=gif)
    # the modules below import helpers from this one: imported here, not at the top
    if int(n) == 5:
        from gal.fig5 import render_fig5

        return render_fig5(Path(runs_root), Path(out_dir), profile=profile)
    if int(n) == 6:
        from gal.fig_analysis import render_fig6

        return render_fig6(Path(runs_root), Path(out_dir), profile=profile)
    if int(n) in (7, 8):
        from gal.fig8 import render_fig8
        from gal.fig_ablation import render_fig7

        render = render_fig7 if int(n) == 7 else render_fig8
        return render(Path(runs_root), Path(out_dir), profile=profile)
    raise NotImplementedError(
        f"gal figure {n}: Fig. {n} of the paper is not implemented; implemented figures: 4 "
        "(Sec. IV-D, the 3D example; `make fig4`), 5 (Sec. VI-A, validation loss curves), 6 "
        "(Sec. VI-A, remainder and cosine), 7 (Sec. VI-D, alpha / beta / architecture) and 8 "
        "(Sec. VI-E/F, update policies and g vs dl/dz)."
    )


# --------------------------------------------------------------------------- Fig. 4 numbers
def toy3d_surface(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """The 3D cost of Sec. IV-D / Fig. 4: ``-sin(x^2) cos(3y^2) exp(-(xy)^2) - exp(-(x+y)^2)``
    (only used for the contour background; the paths come from the records)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    return -np.sin(x**2) * np.cos(3 * y**2) * np.exp(-((x * y) ** 2)) - np.exp(-((x + y) ** 2))


def path_summary(
    steps: Sequence[int],
    f: Sequence[float],
    tol: float = FIG4_TOL,
    reference_f: float | None = None,
) -> dict[str, Any]:
    """Convergence numbers of one path of Fig. 4 (Sec. IV-D), from its history (step, f).

    ``first_within``: the first step whose f is within ``tol`` of the path's final f;
    ``settled_within``: the first step from which f stays within ``tol`` of the final f;
    ``min_f`` / ``min_step``: the minimum f reached and the first step reaching it;
    ``reached_reference`` (with ``reference_f``, the baseline's final f): the first step with
    ``f <= reference_f + tol``, or ``None`` if never (a path stuck in a worse local minimum
    "converges" quickly to its own final value, so this is the fair speed comparison).
    """
    s = np.asarray(steps, dtype=int)
    fv = np.asarray(f, dtype=float)
    if fv.size == 0:
        raise ValueError("empty history")
    final = float(fv[-1])
    close = np.abs(fv - final) <= tol
    first = int(s[int(np.argmax(close))])
    # the last index that is *not* close; settled is the one after it
    far = np.nonzero(~close)[0]
    settled = int(s[0]) if far.size == 0 else int(s[far[-1] + 1])
    imin = int(np.argmin(fv))
    out: dict[str, Any] = {
        "final_f": final,
        "first_within": first,
        "settled_within": settled,
        "min_f": float(fv[imin]),
        "min_step": int(s[imin]),
        "steps": int(s[-1]),
    }
    if reference_f is not None:
        hit = np.nonzero(fv <= reference_f + tol)[0]
        out["reached_reference"] = int(s[hit[0]]) if hit.size else None
    return out


def _never(v: Any) -> float:
    return math.inf if v is None else float(v)


def median_seed(per_seed: Mapping[int, Mapping[str, Any]]) -> int:
    """The seed drawn in Fig. 4: the median of the seeds ordered by (``reached_reference``
    (never = last), ``first_within``, seed); the lower median for an even number of seeds."""
    order = sorted(
        per_seed,
        key=lambda k: (
            _never(per_seed[k].get("reached_reference", per_seed[k]["first_within"])),
            per_seed[k]["first_within"],
            k,
        ),
    )
    return int(order[(len(order) - 1) // 2])


def _median_of(per_seed: Mapping[int, Mapping[str, Any]]) -> dict[str, float | None]:
    keys = ["final_f", "first_within", "settled_within", "min_f"]
    if all("reached_reference" in v for v in per_seed.values()):
        keys.append("reached_reference")
    out: dict[str, float | None] = {}
    for k in keys:
        m = float(np.median([_never(v[k]) for v in per_seed.values()]))
        out[k] = m if math.isfinite(m) else None  # None: the median seed never got there
    return out


def _fig4_records(runs_root: Path) -> pd.DataFrame:
    root = Path(runs_root) / "fig4"
    df = load_runs(root)
    if df.empty:
        raise FileNotFoundError(
            f"no Fig. 4 run records under {root}; run `python -m experiments.toy3d` (or `make fig4`)"
        )
    bad = df[df["status"] != "complete"]
    if len(bad):
        print(f"[gal figure 4] ignoring {len(bad)} non-complete run(s): {list(bad['path'])}")
    return df[df["status"] == "complete"].reset_index(drop=True)


def _load_fig4(runs_root: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{convention: {optimizer: {"label", "baseline": history, "gal": {seed: history}}}}."""
    df = _fig4_records(runs_root)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for _, r in df.iterrows():
        hist = load_history(r["path"])
        entry = out.setdefault(str(r["convention"]), {}).setdefault(
            str(r["optimizer"]), {"label": str(r.get("label", r["optimizer"])), "gal": {}}
        )
        if r["arm"] == "baseline":
            entry["baseline"] = hist
        else:
            entry["gal"][int(r["seed"])] = hist
    return out


def fig4_summary(
    runs_root: Path, tol: float = FIG4_TOL, data: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The numbers of ``fig4.json`` (Sec. IV-D / Fig. 4), computed from the records' histories
    (``data``: the already loaded records of ``runs_root``, if the caller has them)."""
    data = _load_fig4(runs_root) if data is None else data
    conv_out: dict[str, Any] = {}
    for conv in _ordered(list(data), FIG4_CONVENTION_ORDER):
        opts: dict[str, Any] = {}
        for name in _ordered(list(data[conv]), FIG4_OPTIMIZER_ORDER):
            e = data[conv][name]
            item: dict[str, Any] = {"label": e["label"]}
            ref = None
            if "baseline" in e:
                h = e["baseline"]
                ref = float(h["f"].iloc[-1])
                item["baseline"] = path_summary(h["step"], h["f"], tol, ref)
            if e["gal"]:
                per = {
                    k: path_summary(h["step"], h["f"], tol, ref) for k, h in sorted(e["gal"].items())
                }
                med = median_seed(per)
                item["gal"] = {
                    "seeds": {str(k): v for k, v in per.items()},
                    "median": _median_of(per),
                    "median_seed": med,
                    "mean_accept_rate": {
                        str(k): float(np.nanmean(h["accept_rate"])) if "accept_rate" in h else None
                        for k, h in sorted(e["gal"].items())
                    },
                }
            if "baseline" in item and "gal" in item:
                b, g = item["baseline"], item["gal"]["median"]
                seeds = item["gal"]["seeds"].values()
                item["comparison"] = {
                    "median_first_within_gal_minus_baseline": g["first_within"] - b["first_within"],
                    "median_final_f_gal_minus_baseline": g["final_f"] - b["final_f"],
                    "n_seeds": len(item["gal"]["seeds"]),
                    "seeds_reaching_baseline_final_earlier": sum(
                        _never(v["reached_reference"]) < _never(b["reached_reference"]) for v in seeds
                    ),
                    "seeds_never_reaching_baseline_final": sum(
                        v["reached_reference"] is None for v in seeds
                    ),
                }
            opts[name] = item
        conv_out[conv] = opts
    return {
        "figure": 4,
        "paper_section": "IV-D",
        "source": str(Path(runs_root) / "fig4"),
        "tolerance": tol,
        "definitions": {
            "step": "number of optimizer updates taken; step 0 is the start (0.75, 1.0)",
            "final_f": "f at the last step",
            "first_within": "first step t with |f_t - final_f| <= tolerance",
            "settled_within": "first step t with |f_s - final_f| <= tolerance for all s >= t",
            "min_f": "minimum f over the path (min_step: first step reaching it)",
            "reached_reference": "first step t with f_t <= (baseline final_f) + tolerance; "
            "null if never (e.g. stuck in a worse local minimum)",
            "median": "per-metric median over the seeds of h's initialisation",
            "median_seed": "the seed drawn in the figure: median by (reached_reference, never "
            "last; then first_within)",
        },
        "conventions": conv_out,
    }


def fig4_markdown(summary: Mapping[str, Any]) -> str:
    """A readable table of ``fig4.json``: does GAL reach the baseline's final f sooner (Fig. 4)?"""

    def step(v: Any) -> str:
        return "never" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:g}"

    lines = [
        "# Fig. 4 (Sec. IV-D): convergence summary, rendered from the run records",
        "",
        f"Steps until f first comes within {summary['tolerance']:g} of the *baseline's* final f "
        "(`reached_reference` in fig4.json); GAL: median over the seeds of h's initialisation, "
        "then every seed. 'earlier' counts seeds that get there before the baseline.",
        "",
    ]
    for conv, opts in summary["conventions"].items():
        lines += [f"## Convention: {conv}", "",
                  "| optimizer | baseline | GAL median | GAL per seed | seeds earlier | seeds never |",
                  "|---|---|---|---|---|---|"]
        for item in opts.values():
            if "comparison" not in item:
                continue
            per = [step(v["reached_reference"]) for v in item["gal"]["seeds"].values()]
            med = sorted(_never(v["reached_reference"]) for v in item["gal"]["seeds"].values())
            c = item["comparison"]
            lines.append(
                f"| {item['label']} | {step(item['baseline']['reached_reference'])} | "
                f"{step(float(np.median(med)))} | {', '.join(per)} | "
                f"{c['seeds_reaching_baseline_final_earlier']}/{c['n_seeds']} | "
                f"{c['seeds_never_reaching_baseline_final']}/{c['n_seeds']} |")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- Fig. 4 drawing
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
    stem = "fig4" if conv == "paper" else f"fig4-{conv}"
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1], metadata={"CreationDate": None})  # reproducible bytes
    return paths


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
    summary["records"] = prov
    written: list[Path] = []
    jpath = out_dir / "fig4.json"
    with open(jpath, "w") as fh:
        json.dump(summary, fh, indent=2, allow_nan=True)
        fh.write("\n")
    written.append(jpath)
    mpath = out_dir / "fig4.md"
    mpath.write_text(fig4_markdown(summary) + f"\n{footer(prov)}.\n")
    written.append(mpath)
    for conv in _ordered(list(data), FIG4_CONVENTION_ORDER):
        written += _draw_fig4(conv, data[conv], summary["conventions"][conv], out_dir, prov)
    if gif:
        conv = "paper" if "paper" in data else next(iter(data))
        opt = "sgd" if "sgd" in data[conv] else next(iter(data[conv]))
        written.append(_draw_gif(data[conv], summary["conventions"][conv], out_dir / "fig4.gif", opt))
    return written
