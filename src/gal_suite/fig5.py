"""Fig. 5 of the paper (Sec. VI-A): validation loss curves, baseline vs GAL, from run records only.

Sec. VI-A plots "the loss curves on all validation (or test) set" to show that models trained with
adjusted gradients generalize better. :func:`render_fig5` draws, for one profile at a time, one
panel per task that has runs:

- classification (Tables I/II): ``<runs_root>/table{1,2}/<profile>/<dataset>/<optimizer>/<method>/
  seed-<k>/``, one panel per (table, dataset, optimizer);
- regression (Table V): ``<runs_root>/table5/<profile>/<variant>/<dataset>/<method>/seed-<k>/``,
  one panel per dataset, variant ``paper`` (the paper's protocol) by default.

Only complete runs of the methods ``baseline`` and ``gal`` are used (``gal_alpha0`` and the other
controls are excluded), paired by seed: a seed enters a panel only if both arms have a complete
run for it. Curves are the ``val_loss`` column of ``history.csv`` (regression: the MSE on the
held-out test split, the paper's "validation/test" loss) on the epochs that every paired run
has; each arm is drawn as its mean over seeds with a min-max band over seeds.

Outputs in ``out_dir``: ``fig5.png`` / ``fig5.pdf`` (PDF without creation date: reproducible
bytes), ``fig5.json`` (the plotted numbers per panel) and ``fig5.md`` (a readable summary).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gal_suite.fig_provenance import write_figure
from gal_suite.fig_records import col as _col
from gal_suite.fig_records import seed_stats as _stats
from gal_suite.fig_records import str_or_none as _str
from gal_suite.fig_records import val_curve as _val_curve
from gal_suite.fig_spec import FigureSpec
from gal_suite.fig_style import (
    BAND,
    BLUE,
    LOG_Y_RATIO,
    OPTIMIZER_LABELS,
    OPTIMIZER_ORDER,
    RED,
    epoch_ranges,
)
from gal_suite.fig_style import new_figure as _new_figure
from gal_suite.records import NoRunsError, load_runs

__all__ = [
    "FIG5",
    "FIG5_METHODS",
    "fig5_panels",
    "fig5_summary",
    "fig5_markdown",
    "render_fig5",
    "epoch_ranges",
]

#: The two arms of Fig. 5 (Sec. VI-A): vanilla gradients vs adjusted gradients.
FIG5_METHODS = ("baseline", "gal")
FIG5_CLASSIFICATION_TABLES = (1, 2)
FIG5_REGRESSION_TABLE = 5
REGRESSION_ORDER = ("boston", "diabetes", "california")
REGRESSION_LABELS = {
    "boston": "Boston housing",
    "diabetes": "Diabetes",
    "california": "California housing",
}
ROMAN = {1: "I", 2: "II", 5: "V"}


def fig5_panels(
    runs_root: Path, profile: str = "cpu", variant: str = "paper"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Load and pair the records of Fig. 5 (Sec. VI-A) for one ``profile``.

    Returns ``(panels, excluded)``. Each panel is a dict with ``key``, ``table``, ``task``,
    ``dataset``, ``dataset_label``, ``optimizer``, ``optimizer_label``, ``model``, ``seeds``
    (paired), ``epochs`` (common to all paired runs) and, per method of :data:`FIG5_METHODS`,
    ``runs`` ({seed: path}) and ``curves`` (array seeds x epochs). ``excluded`` lists the
    records left out (non-complete, other profile, unpaired) and the panels skipped, with why.
    """
    runs_root = Path(runs_root)
    excluded: dict[str, Any] = {"non_complete": [], "other_profile": [], "unpaired": [],
                                "skipped_panels": []}
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for table in (*FIG5_CLASSIFICATION_TABLES, FIG5_REGRESSION_TABLE):
        df = load_runs(runs_root / f"table{table}" / profile)
        if df.empty:
            continue
        regression = table == FIG5_REGRESSION_TABLE
        df = df[_col(df, "method").isin(FIG5_METHODS)]
        if regression:
            df = df[_col(df, "variant").astype(str) == variant]
        for _, r in df.iterrows():
            if r["status"] != "complete":
                excluded["non_complete"].append({"path": r["path"], "status": r["status"]})
                continue
            if _str(r.get("profile")) != profile:  # never mix profiles, whatever the directory says
                excluded["other_profile"].append({"path": r["path"], "profile": _str(r.get("profile"))})
                continue
            dataset = str(r["dataset"])
            if regression:
                key: tuple[Any, ...] = (table, dataset)
                optimizer = _str(r.get("optimizer")) or _str(r.get("config.train.optimizer"))
                label = REGRESSION_LABELS.get(dataset, dataset)
            else:
                optimizer = str(r["optimizer"])
                key = (table, dataset, optimizer)
                label = _str(r.get("dataset_label")) or dataset
            g = groups.setdefault(key, {
                "table": table,
                "task": "regression" if regression else "classification",
                "dataset": dataset,
                "dataset_label": label,
                "optimizer": optimizer,
                "optimizer_label": OPTIMIZER_LABELS.get(optimizer or "", optimizer),
                "model": _str(r.get("model")),
                "variant": variant if regression else None,
                "runs": {m: {} for m in FIG5_METHODS},
            })
            seed = int(r["seed"])
            arm = g["runs"][str(r["method"])]
            if seed in arm:
                raise ValueError(
                    f"Fig. 5: two complete {r['method']} runs for seed {seed} in one panel "
                    f"({arm[seed]} and {r['path']}); remove one"
                )
            arm[seed] = str(r["path"])

    panels: list[dict[str, Any]] = []
    for key in sorted(groups, key=_panel_order):
        g = groups[key]
        name = _panel_name(g)
        seeds = sorted(set(g["runs"]["baseline"]) & set(g["runs"]["gal"]))
        for m in FIG5_METHODS:
            for s, p in sorted(g["runs"][m].items()):
                if s not in seeds:
                    excluded["unpaired"].append({"path": p, "method": m, "seed": s})
            g["runs"][m] = {s: g["runs"][m][s] for s in seeds}
        if not seeds:
            excluded["skipped_panels"].append({"panel": name, "reason": "no seed with complete "
                                               "baseline and gal runs"})
            continue
        curves = {m: [_val_curve(g["runs"][m][s]) for s in seeds] for m in FIG5_METHODS}
        common = set.intersection(*(set(c.index) for cs in curves.values() for c in cs))
        epochs = sorted(int(e) for e in common)
        if not epochs:
            excluded["skipped_panels"].append({"panel": name, "reason": "no epoch with val_loss "
                                               "common to all paired runs"})
            continue
        g.update(key=name, seeds=seeds, epochs=epochs,
                 curves={m: np.vstack([c.loc[epochs].to_numpy(float) for c in cs])
                         for m, cs in curves.items()})
        panels.append(g)
    return panels, excluded


def _panel_order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    table, dataset = key[0], key[1]
    if table == FIG5_REGRESSION_TABLE:
        rank = REGRESSION_ORDER.index(dataset) if dataset in REGRESSION_ORDER else len(REGRESSION_ORDER)
        return (table, rank, dataset, 0, "")
    opt = key[2]
    orank = OPTIMIZER_ORDER.index(opt) if opt in OPTIMIZER_ORDER else len(OPTIMIZER_ORDER)
    return (table, 0, dataset, orank, opt)


def _panel_name(g: Mapping[str, Any]) -> str:
    parts = [f"table{g['table']}", g["dataset"]]
    if g["task"] == "classification":
        parts.append(str(g["optimizer"]))
    return "/".join(parts)


def _title(g: Mapping[str, Any], profile: str) -> str:
    n = len(g["seeds"])
    head = f"Table {ROMAN.get(g['table'], g['table'])}: {g['dataset_label']}"
    bits = [g["optimizer_label"] or "", f"n={n} seed{'s' if n != 1 else ''}", f"profile {profile}"]
    if g["task"] == "regression":
        bits.append(f"variant {g['variant']}")
    elif g.get("model"):
        bits.insert(0, str(g["model"]))
    return head + "\n" + ", ".join(b for b in bits if b)


def fig5_summary(
    panels: Sequence[Mapping[str, Any]], runs_root: Path, profile: str,
    excluded: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The numbers of ``fig5.json`` (Fig. 5, Sec. VI-A) from the panels of :func:`fig5_panels`.

    Per panel: the epochs, per method the mean/min/max/std (ddof=1) over seeds at each epoch and
    the run paths by seed, and a comparison at the final common epoch (mean per arm, per-seed
    values, the number of seeds whose GAL val loss is lower than the same seed's baseline) plus
    the epochs at which GAL's mean curve is strictly below the baseline's.
    """
    out_panels: list[dict[str, Any]] = []
    for g in panels:
        b, gl = g["curves"]["baseline"], g["curves"]["gal"]
        epochs = list(g["epochs"])
        below = [e for e, mb, mg in zip(epochs, b.mean(0), gl.mean(0), strict=True) if mg < mb]
        per_seed = {str(s): {"baseline": float(b[i, -1]), "gal": float(gl[i, -1])}
                    for i, s in enumerate(g["seeds"])}
        out_panels.append({
            "panel": g["key"],
            "title": _title(g, profile),
            "table": g["table"],
            "task": g["task"],
            "dataset": g["dataset"],
            "dataset_label": g["dataset_label"],
            "optimizer": g["optimizer"],
            "model": g["model"],
            "variant": g["variant"],
            "seeds": list(g["seeds"]),
            "epochs": epochs,
            "methods": {
                m: {**_stats(g["curves"][m]),
                    "runs": {str(s): g["runs"][m][s] for s in g["seeds"]}}
                for m in FIG5_METHODS
            },
            "final": {
                "epoch": epochs[-1],
                "mean_baseline": float(b[:, -1].mean()),
                "mean_gal": float(gl[:, -1].mean()),
                "per_seed": per_seed,
                "seeds_gal_lower": int(np.sum(gl[:, -1] < b[:, -1])),
                "n_seeds": len(g["seeds"]),
            },
            "epochs_gal_mean_below_baseline": below,
        })
    return {
        "figure": 5,
        "paper_section": "VI-A",
        "profile": profile,
        "source": str(Path(runs_root)),
        "band": BAND,
        "definitions": {
            "curve": "val_loss column of history.csv per epoch (regression, Table V: MSE on the "
            "held-out test split in training units)",
            "epochs": "epochs with a finite val_loss in every paired run of the panel",
            "seeds": "seeds with a complete run of both baseline and gal (paired by seed)",
            "mean/min/max/std": "over seeds at each epoch; std with ddof=1 (null for one seed)",
            "seeds_gal_lower": "seeds whose gal val_loss at the final epoch is strictly lower "
            "than the same seed's baseline",
            "epochs_gal_mean_below_baseline": "epochs where mean gal < mean baseline",
        },
        "panels": out_panels,
        "excluded": dict(excluded or {}),
    }


def fig5_markdown(summary: Mapping[str, Any]) -> str:
    """A readable per-panel summary of ``fig5.json`` (Fig. 5, Sec. VI-A): is GAL's validation loss
    lower than the baseline's?"""
    lines = [
        f"# Fig. 5 (Sec. VI-A): validation loss, baseline vs GAL (profile `{summary['profile']}`)",
        "",
        f"Rendered from the run records under `{summary['source']}`. Curves: mean over seeds "
        f"(paired by seed), band: {summary['band']}. Only complete `baseline` and `gal` runs; "
        "`gal_alpha0` and other controls are excluded.",
        "",
    ]
    for p in summary["panels"]:
        f = p["final"]
        below = p["epochs_gal_mean_below_baseline"]
        lines += [
            f"## {p['title'].replace(chr(10), ' — ')}",
            "",
            f"- panel `{p['panel']}`, seeds {', '.join(map(str, p['seeds']))}, epochs "
            f"{p['epochs'][0]}-{p['epochs'][-1]} ({len(p['epochs'])} with val_loss in every run)",
            "",
            f"| arm | final val loss (epoch {f['epoch']}), mean over {f['n_seeds']} seeds |",
            "|---|---|",
            f"| baseline | {f['mean_baseline']:.6g} |",
            f"| GAL | {f['mean_gal']:.6g} |",
            "",
            f"- seeds where GAL's final val loss is lower: {f['seeds_gal_lower']}/{f['n_seeds']}",
            f"- epochs where GAL's mean curve is below the baseline's: {len(below)}/"
            f"{len(p['epochs'])} ({epoch_ranges(below)})",
            "",
        ]
    ex = summary.get("excluded") or {}
    notes = [f"{k.replace('_', ' ')}: {len(v)}" for k, v in ex.items() if v]
    if notes:
        lines += ["## Left out", "", *[f"- {n}" for n in notes], "",
                  "(paths and reasons in fig5.json, `excluded`)", ""]
    return "\n".join(lines)


def _draw(panels: Sequence[Mapping[str, Any]], profile: str) -> Any:
    n = len(panels)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = _new_figure((4.2 * ncols, 3.4 * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, g in zip(axes.flat, panels, strict=False):
        ep = np.asarray(g["epochs"])
        for m, color, label in (("baseline", BLUE, "baseline (vanilla gradients)"),
                                ("gal", RED, "GAL (adjusted gradients)")):
            mat = g["curves"][m]
            ax.fill_between(ep, mat.min(0), mat.max(0), color=color, alpha=0.2, lw=0,
                            label=f"{label.split()[0]}: {BAND}")
            ax.plot(ep, mat.mean(0), color=color, lw=1.5, marker="o" if len(ep) == 1 else None,
                    label=f"{label}: mean over seeds")
        allv = np.concatenate([g["curves"][m].ravel() for m in FIG5_METHODS])
        if allv.min() > 0 and allv.max() / allv.min() > LOG_Y_RATIO:
            ax.set_yscale("log")
        ax.set_title(_title(g, profile), fontsize=8.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation loss" if g["task"] == "classification"
                      else "validation/test loss (MSE)")
        ax.grid(alpha=0.3)
        ax.margins(x=0)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8,
               frameon=False)
    fig.suptitle(f"Fig. 5 (Sec. VI-A): validation loss per epoch, baseline (blue) vs GAL (red); "
                 f"profile {profile}; lines: mean over seeds, bands: {BAND}", fontsize=9.5)
    return fig


def render_fig5(
    runs_root: Path, out_dir: Path, profile: str = "cpu", variant: str = "paper"
) -> list[Path]:
    """Render Fig. 5 (Sec. VI-A) for one ``profile``: ``fig5.{png,pdf,json,md}`` in ``out_dir``.

    ``variant`` selects the Table V regression variant (default ``paper``, the paper's protocol).
    Raises :class:`gal_suite.records.NoRunsError` (a ``FileNotFoundError``) naming the ``make``
    targets that create runs if no panel has a pair of complete baseline/GAL runs for ``profile``.
    """
    runs_root, out_dir = Path(runs_root), Path(out_dir)
    panels, excluded = fig5_panels(runs_root, profile=profile, variant=variant)
    if not panels:
        raise NoRunsError(
            f"Fig. 5: no complete baseline + GAL runs paired by seed for profile '{profile}' under "
            f"{runs_root}/table1/{profile}, {runs_root}/table2/{profile} or "
            f"{runs_root}/table5/{profile}/{variant}; create them with `make table5 "
            f"PROFILE={profile}` (regression, Table V) or `make table1 PROFILE={profile}` / "
            f"`make table2 PROFILE={profile}` (classification, Tables I/II)"
        )
    summary = fig5_summary(panels, runs_root, profile, excluded)
    # provenance: the runs drawn (the panels), not those left out
    return write_figure(_draw(panels, profile), summary, fig5_markdown(summary), out_dir, "fig5",
                        drawn_from={"panels": summary["panels"]}, clean=False)


#: Fig. 5 (Sec. VI-A): the records of Tables I, II (classification) and V (regression).
FIG5 = FigureSpec(number=5, section="VI-A", subject="validation loss curves",
                  records=(*(f"table{n}" for n in FIG5_CLASSIFICATION_TABLES),
                           f"table{FIG5_REGRESSION_TABLE}"),
                  draw=render_fig5)
