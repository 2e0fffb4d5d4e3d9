"""Fig. 6 of the paper (Sec. VI-A) from run records only, and the record helpers of Figs. 6-8.

Fig. 6 plots, per epoch, the remainder of Eq. 7 (left) and the cosine similarity between the
adjustment ``v~`` and the vanilla gradient ``dl/dz`` (right) of GAL training (the paper: ImageNet
with EfficientNet-B2; positive cosine, remainder going down once the warm-up is over).
:func:`render_fig6` draws, for one profile, one row of two panels per task with GAL runs:

- ``table1`` / ``table2`` (Tables I/II): ``<runs_root>/table{1,2}/<profile>/<dataset>/<optimizer>/
  gal/seed-<k>/``, one row per dataset, one line per optimizer;
- ``ablation`` (Sec. VI-D/E runs): ``<runs_root>/ablation/<profile>/<dataset>/<optimizer>/gal/
  seed-<k>/``, the paper's default GAL setting of each optimizer, one row per dataset.

Only complete runs of the method ``gal`` are used (variants ``gal+...`` and the ``gal_alpha0``
control are not). The left panel is the ``abs_remainder`` column of ``history.csv``: the epoch
mean of ``|r|`` (Eq. 7, the objective (6) that trains h); the signed ``remainder`` column is in
``fig6.json`` and ``fig6.md``. The right panel is the ``cosine`` column. Lines: mean over seeds
on the epochs every seed has, band: min-max over seeds (as Fig. 5, :mod:`gal_suite.fig5`).

Outputs in ``out_dir``: ``fig6.png`` / ``fig6.pdf`` (no creation date: reproducible bytes),
``fig6.json`` (the plotted numbers) and ``fig6.md`` (summary, with the paper's claim beside ours)
for the ``analysis`` profile (the analyses of Sec. VI run long enough for the per-epoch evolution
the figure is about), ``fig6-<profile>.*`` for any other.
Figs. 7 and 8 (Sec. VI-D/E/F, the ablation records) are in :mod:`gal_suite.fig_ablation`; the record
helpers the three share are in :mod:`gal_suite.fig_records` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# the record, writing and drawing helpers of Figs. 6-8 are re-exported from here (older code and
# the tests use them as ``gal_suite.fig_analysis.<name>``)
from gal_suite.fig_provenance import write_figure
from gal_suite.fig_records import (
    NoRunsError,
    excluded_lines,
    gal_setting,
    load_classification,
    no_runs,
    runs_by_seed,
    seed_curves,
    split_complete,
)
from gal_suite.fig_records import col as _col
from gal_suite.fig_records import seed_stats as _stats
from gal_suite.fig_records import str_or_none as _str
from gal_suite.fig_spec import FigureSpec
from gal_suite.fig_style import (
    BAND,
    LOG_Y_RATIO,
    ONE_EPOCH,
    OPTIMIZER_LABELS,
    OPTIMIZER_ORDER,
    draw_band,
    epoch_axis,
    epoch_ranges,
    note,
    one_epoch,
    optimizer_colour,
)
from gal_suite.fig_style import new_figure as _new_figure
from gal_suite.fig_style import ordered as _ordered

__all__ = [
    "NoRunsError",
    "FIG6",
    "FIG6_TASKS",
    "FIG6_COLUMNS",
    "load_classification",
    "gal_setting",
    "seed_curves",
    "fig6_panels",
    "fig6_summary",
    "fig6_markdown",
    "render_fig6",
    "write_figure",
    "split_complete",
    "runs_by_seed",
    "excluded_lines",
    "draw_band",
    "epoch_axis",
    "one_epoch",
    "fig6_readings",
    "no_runs",
]

#: Record keys (directories under the runs root) whose ``gal`` runs enter Fig. 6.
FIG6_TASKS = ("table1", "table2", "table3", "ablation")
TASK_LABELS = {"table1": "Table I", "table2": "Table II", "table3": "Table III",
               "ablation": "ablation (Sec. VI-D/E)"}
#: history.csv columns of Fig. 6: |r| (left panel), signed r (json/md) and cosine (right panel).
FIG6_COLUMNS = ("abs_remainder", "remainder", "cosine")
#: The paper's reading of each panel of Fig. 6, written on the axes.
FIG6_READING = {"remainder": "the remainder goes down (warm-up fluctuations early)",
                "cosine": "the cosine is positive (v~ within 90° of dl/dz)"}
FIG6_PAPER = ("ImageNet with EfficientNet-B2 (Fig. 6): the cosine similarity is positive (the "
              "adjustment is within 90 degrees of the vanilla gradient) and the remainder goes "
              "down; a warm-up causes fluctuations in the early epochs, stable after epoch 20.")


def fig6_panels(
    runs_root: Path, profile: str = "cpu"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Load the ``gal`` runs of Fig. 6 (Sec. VI-A) for one ``profile``.

    Returns ``(panels, excluded)``; a panel is one (task, dataset) with ``lines`` per optimizer
    (``runs`` {seed: path}, ``seeds``, ``epochs``, ``curves`` {column: seeds x epochs}).
    """
    excluded: dict[str, Any] = {"non_complete": [], "other_profile": [], "skipped_lines": []}
    panels: list[dict[str, Any]] = []
    for key in FIG6_TASKS:
        df, other = load_classification(runs_root, key, profile)
        excluded["other_profile"] += other
        if df.empty:
            continue
        df, bad = split_complete(df[_col(df, "method").astype(str) == "gal"])
        excluded["non_complete"] += bad
        # Table III varies the model: one panel per (dataset, model row)
        models = df["model_key"].astype(str) if "model_key" in df.columns else None
        for dataset, model_key in sorted({(str(d), None if models is None else m)
                                          for d, m in zip(df["dataset"], models if models is not None
                                                          else [None] * len(df), strict=True)},
                                         key=str):
            sub = df[df["dataset"].astype(str) == dataset]
            if model_key is not None:
                sub = sub[sub["model_key"].astype(str) == model_key]
            where = dataset if model_key in (None, "nan") else f"{dataset}/{model_key}"
            lines: dict[str, Any] = {}
            for opt in _ordered(sorted(set(sub["optimizer"].astype(str))), OPTIMIZER_ORDER):
                name = f"{key}/{where}/{opt}"
                runs = runs_by_seed(sub[sub["optimizer"].astype(str) == opt], f"Fig. 6 {name}")
                epochs, curves = seed_curves(runs, FIG6_COLUMNS)
                if not epochs:
                    why = f"no epoch with finite {', '.join(FIG6_COLUMNS)} in every run"
                    excluded["skipped_lines"].append({"line": name, "reason": why})
                    continue
                lines[opt] = {"runs": runs, "seeds": list(runs), "epochs": epochs,
                              "curves": curves}
            if lines:
                r0 = sub.iloc[0]
                panels.append({"panel": f"{key}/{where}", "task": key, "dataset": dataset,
                               "dataset_label": _str(r0.get("dataset_label")) or dataset,
                               "model": _str(r0.get("model")), "lines": lines})
    return panels, excluded


def _title(p: Mapping[str, Any], profile: str) -> str:
    bits = [b for b in (p["model"], f"profile {profile}") if b]
    return f"{TASK_LABELS.get(p['task'], p['task'])}: {p['dataset_label']}\n" + ", ".join(bits)


def _relative_range(curves: np.ndarray) -> float:
    """Largest (max − min) / mean over seeds of any epoch (rows: seeds, columns: epochs): how wide
    the min-max band of a line is; on a log axis a band of a few per cent is thinner than the line."""
    c = np.asarray(curves, float)
    return float(np.max((c.max(0) - c.min(0)) / np.abs(c.mean(0))))


def fig6_summary(panels: Sequence[Mapping[str, Any]], runs_root: Path, profile: str,
                 excluded: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The numbers of ``fig6.json`` (Fig. 6, Sec. VI-A): per panel and optimizer the epochs, the
    mean/min/max/std over seeds of each column of :data:`FIG6_COLUMNS`, the runs, and the trend
    (mean |r| at the first vs last epoch, mean cosine, epochs with a positive mean cosine)."""
    out: list[dict[str, Any]] = []
    for p in panels:
        lines: dict[str, Any] = {}
        for opt, ln in p["lines"].items():
            r, c = ln["curves"]["abs_remainder"].mean(0), ln["curves"]["cosine"].mean(0)
            lines[opt] = {
                "label": OPTIMIZER_LABELS.get(opt, opt),
                "seeds": list(ln["seeds"]),
                "epochs": list(ln["epochs"]),
                **{col: _stats(ln["curves"][col]) for col in FIG6_COLUMNS},
                "runs": {str(s): q for s, q in ln["runs"].items()},
                "trend": {
                    "abs_remainder_first": float(r[0]), "abs_remainder_last": float(r[-1]),
                    "abs_remainder_decreased": bool(r[-1] < r[0]),
                    "abs_remainder_seed_range": _relative_range(ln["curves"]["abs_remainder"]),
                    "cosine_mean": float(c.mean()), "cosine_last": float(c[-1]),
                    "epochs_cosine_positive": [e for e, v in zip(ln["epochs"], c, strict=True)
                                               if v > 0],
                },
            }
        panel = {"panel": p["panel"], "title": _title(p, profile), "task": p["task"],
                 "task_label": TASK_LABELS.get(p["task"], p["task"]), "dataset": p["dataset"],
                 "dataset_label": p["dataset_label"], "model": p["model"], "lines": lines}
        out.append({**panel, "reading": fig6_readings(panel)})
    return {
        "figure": 6, "paper_section": "VI-A", "profile": profile, "source": str(Path(runs_root)),
        "band": BAND, "paper": FIG6_PAPER,
        "definitions": {
            "abs_remainder": "left panel: epoch mean of |r| over training steps, r of Eq. 7 "
            "(the objective (6) of h)",
            "remainder": "epoch mean of the signed r of Eq. 7 (not drawn)",
            "cosine": "right panel: epoch mean of cos(v~, dl/dz)",
            "epochs": "epochs with finite values of all three columns in every run of the line",
            "mean/min/max/std": "over seeds at each epoch; std with ddof=1 (null for one seed)",
        },
        "panels": out, "excluded": dict(excluded or {}),
    }


def fig6_markdown(summary: Mapping[str, Any]) -> str:
    """A readable summary of ``fig6.json`` (Fig. 6, Sec. VI-A), the paper's claim beside ours."""
    lines = [
        f"# Fig. 6 (Sec. VI-A): remainder (Eq. 7) and cos(v~, dl/dz) of GAL training "
        f"(profile `{summary['profile']}`)", "",
        f"Rendered from the run records under `{summary['source']}`; complete `gal` runs only. "
        f"Left: mean |r| per epoch (`abs_remainder`), right: `cosine`; lines: mean over seeds, "
        f"band: {summary['band']}.", "", f"**Paper:** {summary['paper']}", "",
        "**Here:** the tasks below (none of them is ImageNet / EfficientNet-B2).", "",
        "**Precision:** a run whose GAL step was computed in float32 (the default for float32 "
        "features) cannot resolve a remainder below about 1e-7 times its loss (float32's "
        "resolution): mean |r| of order 1e-7 is then mostly rounding, and it falls as the loss "
        "itself falls. `GradientAdjuster(precision=torch.float64)` computes the step in float64 "
        "and resolves it (the DETR runs of Table IV use it).", "",
    ]
    for p in summary["panels"]:
        lines += [f"## {p['title'].replace(chr(10), ' — ')}", "",
                  "| optimizer | seeds | epochs | mean \\|r\\| first → last | signed r last | "
                  "mean cosine | epochs with mean cosine > 0 |", "|---|---|---|---|---|---|---|"]
        for ln in p["lines"].values():
            t = ln["trend"]
            pos = t["epochs_cosine_positive"]
            lines.append(
                f"| {ln['label']} | {', '.join(map(str, ln['seeds']))} | "
                f"{epoch_ranges(ln['epochs'])} | {t['abs_remainder_first']:.4g} → "
                f"{t['abs_remainder_last']:.4g} "
                f"({'down' if t['abs_remainder_decreased'] else 'not down'}) "
                f"| {ln['remainder']['mean'][-1]:.4g} | {t['cosine_mean']:.4g} | "
                f"{len(pos)}/{len(ln['epochs'])} ({epoch_ranges(pos)}) |")
        lines += ["", *(f"- written on the {side} panel: {p['reading'][k]}".replace("\n", "; ")
                        for side, k in (("left", "remainder"), ("right", "cosine"))), ""]
    return "\n".join(lines + excluded_lines(summary["excluded"], "fig6"))


def fig6_readings(p: Mapping[str, Any]) -> dict[str, str]:
    """The paper's reading of Fig. 6 and ours, per panel (drawn on the axes, kept in the json):
    ``remainder`` (left panel) and ``cosine`` (right)."""
    lines = list(p["lines"].values())
    if one_epoch(lines):
        here = "here: " + ONE_EPOCH.split(" (")[0]
        return {"remainder": f"paper: {FIG6_READING['remainder']}\n{here}",
                "cosine": f"paper: {FIG6_READING['cosine']}\n{here}"}
    rem, cos = [], []
    for ln in lines:
        t, name, ep = ln["trend"], ln["label"], ln["epochs"]
        rem.append(f"{name}: mean |r| {t['abs_remainder_first']:.2g} (epoch {ep[0]}) → "
                   f"{t['abs_remainder_last']:.2g} (epoch {ep[-1]}): "
                   f"{'down' if t['abs_remainder_decreased'] else 'not down'}; "
                   f"seed range ≤ {t['abs_remainder_seed_range']:.0%} of the mean")
        cos.append(f"{name}: mean cos > 0 on {len(t['epochs_cosine_positive'])}/{len(ep)} "
                   f"epochs (mean {t['cosine_mean']:.2g})")
    return {"remainder": "\n".join([f"paper: {FIG6_READING['remainder']}", "here:", *rem]),
            "cosine": "\n".join([f"paper: {FIG6_READING['cosine']}", "here:", *cos])}


def _draw_fig6(summary: Mapping[str, Any]) -> Any:
    panels = summary["panels"]
    profile = summary["profile"]
    fig = _new_figure((10.5, 3.6 * len(panels) + 0.9))
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for (left, right), p in zip(axes, panels, strict=True):
        for opt, ln in p["lines"].items():
            label = f"{ln['label']} (seeds {epoch_ranges(ln['seeds'])})"
            color = optimizer_colour(opt)
            draw_band(left, ln["epochs"], ln["abs_remainder"], color, label)
            draw_band(right, ln["epochs"], ln["cosine"], color, label)
        allr = np.concatenate([np.asarray(ln["abs_remainder"][k], float)
                               for ln in p["lines"].values() for k in ("min", "max")])
        if allr.min() > 0 and allr.max() / allr.min() > LOG_Y_RATIO:
            left.set_yscale("log")
        right.axhline(0.0, color="k", lw=0.6)
        left.set_ylabel("mean |r| (Eq. 7)")
        right.set_ylabel("cos(v~, dl/dz)")
        epochs = [e for ln in p["lines"].values() for e in ln["epochs"]]
        for ax, what in ((left, "remainder"), (right, "cosine")):
            ax.set_title(f"{p['title']}: {what}", fontsize=8)
            epoch_axis(ax, epochs)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6.5, frameon=False, loc="lower right")
            note(ax, p["reading"][what])
    single = one_epoch(ln for p in panels for ln in p["lines"].values())
    fig.suptitle(f"Fig. 6 (Sec. VI-A): remainder |r| of Eq. 7 (left) and cos(v~, dl/dz) (right) "
                 f"of GAL runs, profile {profile}\nlines: mean over seeds, bands: {BAND}"
                 + (f"; {ONE_EPOCH}" if single else ""), fontsize=9.5)
    return fig


def render_fig6(runs_root: Path, out_dir: Path, profile: str = "cpu") -> list[Path]:
    """Render Fig. 6 (Sec. VI-A) for one ``profile``: ``fig6.{json,md,png,pdf}`` in ``out_dir``
    for the analysis profile, ``fig6-<profile>.*`` for any other (the cpu profile's float32 runs
    of Tables I/II and the analysis profile's float64 runs are two figures, neither overwrites
    the other).

    Raises :class:`NoRunsError` (a ``FileNotFoundError``) naming the ``make`` targets if no
    complete ``gal`` run of Tables I/II or of the ablation has the diagnostics columns.
    """
    runs_root = Path(runs_root)
    panels, excluded = fig6_panels(runs_root, profile)
    if not panels:
        raise no_runs(6, "complete `gal` runs with remainder/cosine histories",
                      [f"{runs_root}/{k}/{profile}" for k in FIG6_TASKS], profile,
                      f"`make table1 PROFILE={profile}` / `make table2 PROFILE={profile}` "
                      f"(Tables I/II) or the ablation runs (`make fig7 PROFILE={profile}`)")
    summary = fig6_summary(panels, runs_root, profile, excluded)
    return write_figure(_draw_fig6(summary), summary, fig6_markdown(summary), out_dir,
                        FIG6.stem(profile))


#: Fig. 6 (Sec. VI-A): the ``gal`` runs of Tables I-III and of the analyses; one figure per profile,
#: the analysis profile's is ``fig6.*`` (as for Figs. 7 and 8).
FIG6 = FigureSpec(number=6, section="VI-A", subject="remainder and cosine", records=FIG6_TASKS,
                  draw=render_fig6, home_profile="analysis")
