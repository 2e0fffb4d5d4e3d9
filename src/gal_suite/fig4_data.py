"""Fig. 4 of the paper (Sec. IV-D, the 3D example), its numbers: the cost surface, the
convergence numbers of each path, the records read from ``<runs_root>/fig4/`` and the summary
written to ``fig4.json`` / ``fig4.md``. The drawing and :func:`render_fig4` are in
:mod:`gal_suite.figures`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gal_suite.fig_style import ordered as _ordered
from gal_suite.records import NoRunsError, load_history, load_runs
from gal_suite.vocab import FIG4_OPTIMIZER_ORDER

__all__ = [
    "FIG4_TOL",
    "FIG4_CONVENTION_ORDER",
    "toy3d_surface",
    "path_summary",
    "median_seed",
    "fig4_summary",
    "fig4_markdown",
]

#: Tolerance of the convergence step in fig4.json: |f_t - f_final| <= FIG4_TOL.
FIG4_TOL = 1e-3
FIG4_CONVENTION_ORDER = ("paper", "authors")


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
        raise NoRunsError(
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
