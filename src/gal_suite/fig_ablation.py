"""Fig. 7 of the paper (Sec. VI-D) from the ablation run records only (Fig. 8, Sec. VI-E/F, is
:mod:`gal_suite.fig8`; the record helpers both use are :mod:`gal_suite.fig_sweeps`).

Records: ``<runs_root>/ablation/<profile>/<dataset>/<optimizer>/<method>/seed-<k>/`` with method
``baseline``, ``gal`` (the paper's default GAL setting of that optimizer) or a variant
``gal+<key>=<value>[+...]``. The value a run was trained with is read from its ``gal_<key>``
column (``gal_alpha``, ``gal_beta``, ``gal_arch``, ``gal_policy``), never from the method name,
so the ``gal`` run is the default point of every sweep. Only complete runs whose ``profile``
column is the requested profile are used; failed runs are listed in the md and json.

- Fig. 7 (Sec. VI-D): final ``error_top1`` against alpha (log x), beta and the MLP architecture
  of h, for SGD and Lookahead (SGD). A panel holds the runs with method ``gal`` or
  ``gal+<key>=<v>`` (only that key changed). Points: mean over seeds, error bars: std (ddof=1);
  the baseline of the optimizer is a horizontal band, mean ± std.
- Fig. 8 (Sec. VI-E/F, :mod:`gal_suite.fig8`), SGD: (a) ``error_top1`` of the update policies of Algorithm 1 lines 7-10
  (``gal_policy`` leq = "line 7 (≤)", lt = "line 7 (<)", always = "line 8", never = "line 10")
  and of the baseline, mean ± std over seeds; line 10 feeds dl/dz to the model at every step,
  so its errors are compared with the baseline's seed by seed. (b) the per-epoch fraction
  ``g_beats_grad`` (l(z - eta~ g) < l(z - eta~ dl/dz)) per policy, mean with min-max band.

Outputs per figure: ``figN.{png,pdf,json,md}`` (:func:`gal_suite.fig_provenance.write_figure`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gal_suite.fig_provenance import write_figure
from gal_suite.fig_records import col as _col
from gal_suite.fig_records import excluded_lines, gal_setting, no_runs
from gal_suite.fig_spec import FigureSpec
from gal_suite.fig_style import (
    OPTIMIZER_LABELS,
    OPTIMIZER_ORDER,
    epoch_ranges,
    note,
    optimizer_colour,
)
from gal_suite.fig_style import new_figure as _new_figure
from gal_suite.fig_sweeps import (
    by_dataset,
    close_excluded,
    dataset_head,
    draw_paired,
    error_stats,
    load_ablation,
    mean_std_cell,
    paired_cell,
    paired_vs_baseline,
    sweep_points,
    sweep_rows,
    usable,
    x_order,
    yes_no,
)

__all__ = ["FIG7", "FIG7_OPTIMIZERS", "FIG7_KEYS", "PAPER_FIXED", "fig7_summary", "fig7_markdown",
           "render_fig7"]

FIG7_KEYS = ("alpha", "beta", "arch")
#: The fixed settings of Fig. 7's caption (CIFAR-100) per optimizer (keys of the registry
#: :data:`gal_suite.vocab.OPTIMIZERS`): each sweep varies one of them. The paper's values, not a copy
#: of the runs' settings (those are the config's; ``fixed_matches_paper`` compares the two).
PAPER_FIXED = {"sgd": {"alpha": 0.01, "beta": 1.0, "arch": "256-64-32"},
               "lookahead_sgd": {"alpha": 0.001, "beta": 5.0, "arch": "256-64-32"}}
#: The optimizers of Fig. 7 (those of its caption), in the registry's order of Tables I-II.
FIG7_OPTIMIZERS = tuple(k for k in OPTIMIZER_ORDER if k in PAPER_FIXED)
PAPER_ALPHA_RANGE = (1e-4, 1e-2)
FIG7_CLAIMS = {
    "alpha": "alpha in [1e-4, 1e-2] consistently gives lower errors",
    "beta": "errors are sensitive to beta: beta = 1 is best with SGD, beta = 5 with Lookahead",
    "arch": "(256-64-32) gives lower errors than (256), (256-64), (256-64-32-16)",
}


def _best(points: Sequence[Mapping[str, Any]]) -> Any:
    return min(points, key=lambda p: p["mean"])["x"] if points else None


def _claim_test(points: Sequence[Mapping[str, Any]], in_claim: Any) -> dict[str, Any] | None:
    """The paired test of a Fig. 7 claim "the points ``in_claim`` selects give lower errors": the
    best (lowest mean) point the claim names against the best point it does not, seed by seed
    (the same seed shares initialisation and data order across configurations), with the paired
    95% CI of that difference; ``supported`` if it lies below 0, ``contradicted`` if above,
    ``not resolved`` if it holds 0. None when either side has no point."""
    named = [q for q in points if in_claim(q["x"])]
    other = [q for q in points if not in_claim(q["x"])]
    if not named or not other:
        return None
    qa, qb = (min(side, key=lambda q: q["mean"]) for side in (named, other))
    pr = paired_vs_baseline(qb, qa)
    ci = pr["ci95"]
    reading = ("not resolved" if ci is None or ci[0] <= 0 <= ci[1]
               else "supported" if ci[1] < 0 else "contradicted")
    return {"named_best": qa["x"], "other_best": qb["x"], "n": pr["n"], "mean_diff": pr["mean_diff"],
            "ci95": ci, "reading": reading}


def _fig7_checks(opt: str, panels: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in FIG7_KEYS:
        pts, best = panels[key]["points"], panels[key]["best"]
        c: dict[str, Any] = {"paper": FIG7_CLAIMS[key], "best": best}
        if key == "alpha":
            lo, hi = PAPER_ALPHA_RANGE
            c["best_in_paper_range"] = None if best is None else bool(lo <= best <= hi)
            c["paired_test"] = _claim_test(pts, lambda x, lo=lo, hi=hi: lo <= x <= hi)
        else:
            c["paper_best"] = PAPER_FIXED[opt][key]
            c["agrees"] = None if best is None else best == c["paper_best"]
            c["paired_test"] = _claim_test(pts, lambda x, pb=c["paper_best"]: x == pb)
        out[key] = c
    return out


def _claim_cell(t: Mapping[str, Any] | None, named: str) -> str:
    """The markdown of :func:`_claim_test`'s result."""
    if t is None:
        return "no paired test (no point on one side)"
    ci = "n/a" if t["ci95"] is None else f"[{t['ci95'][0]:+.2f}, {t['ci95'][1]:+.2f}]"
    a, b = (f"{v:g}" if isinstance(v, float) else str(v) for v in (t["named_best"], t["other_best"]))
    return f"{named} best ({a}) − best other ({b}) {t['mean_diff']:+.2f} {ci} ({t['n']} pairs): " \
        f"{t['reading']}"


def fig7_summary(runs_root: Path, profile: str = "cpu") -> dict[str, Any]:
    """The numbers of ``fig7.json`` (Fig. 7, Sec. VI-D) from the ablation records of
    ``profile``: per dataset and optimizer the baseline (mean, std over seeds), the GAL setting
    of the ``gal`` runs, and per sweep (alpha, beta, arch) the points (x, mean, std, per-seed
    errors, runs) with the best x and the paper's claim beside ours."""
    df, excluded = load_ablation(runs_root, profile, 7)
    datasets = []
    for _, sub in by_dataset(df):
        opts: dict[str, Any] = {}
        for opt in FIG7_OPTIMIZERS:
            o = sub[sub["optimizer"].astype(str) == opt]
            what = f"Fig. 7 {sub['dataset'].iloc[0]}/{opt}"
            base = usable(o[_col(o, "method").astype(str) == "baseline"], excluded)
            panels = {}
            for key in FIG7_KEYS:
                pts = sweep_points(usable(sweep_rows(o, key), excluded), key, what, excluded)
                panels[key] = {"points": pts, "best": _best(pts)}
            if not any(p["points"] for p in panels.values()):
                continue
            bstats = error_stats(base, f"{what} baseline") if len(base) else None
            for p in panels.values():
                for q in p["points"]:
                    q["paired"] = paired_vs_baseline(bstats, q)
            gal = usable(o[_col(o, "method").astype(str) == "gal"], excluded)
            fixed = {k: gal_setting(gal.iloc[0], k) for k in FIG7_KEYS} if len(gal) else None
            opts[opt] = {"label": OPTIMIZER_LABELS.get(opt, opt),
                         "baseline": bstats,
                         "fixed": fixed, "paper_fixed": PAPER_FIXED[opt],
                         "fixed_matches_paper": fixed == PAPER_FIXED[opt] if fixed else None,
                         "panels": panels, "checks": _fig7_checks(opt, panels)}
        if opts:
            datasets.append({**dataset_head(sub), "optimizers": opts})
    if not datasets:
        raise no_runs(7, "complete `gal` / `gal+alpha|beta|arch=...` ablation runs of SGD or "
                      "Lookahead", [f"{Path(runs_root)}/ablation/{profile}"], profile,
                      f"`make fig7 PROFILE={profile}`")
    return {"figure": 7, "paper_section": "VI-D", "profile": profile,
            "source": str(Path(runs_root) / "ablation" / profile), "metric": "error_top1 (%)",
            "definitions": {
                "x": "the run's gal_alpha / gal_beta / gal_arch column (the `gal` run is the "
                "default point)", "mean/std": "over seeds; std with ddof=1 (null for one seed)",
                "baseline": "band mean ± std of the optimizer's baseline runs",
                "paired": "per point: error minus the baseline's error of the same seed; "
                "mean_diff and its paired 95% CI (t, n-1 df; gal_suite.stats.ci_paired_diff)",
                "best": "x with the lowest mean error",
                "paired_test": "the claim tested on the paired design: the best point the "
                "paper's claim names (alpha in [1e-4, 1e-2]; the paper's best beta / arch) minus "
                "the best point it does not, per seed, mean and paired 95% CI; 'supported' if "
                "the CI lies below 0, 'contradicted' above, 'not resolved' if it holds 0; the "
                "two points are picked from the same runs (best on each side), so a resolved "
                "reading is a lead, not corrected for that choice"},
            "paper": {"fixed": PAPER_FIXED, "claims": FIG7_CLAIMS},
            "datasets": datasets, "excluded": close_excluded(excluded)}


def _setting(g: Mapping[str, Any] | None) -> str:
    return "n/a" if not g else ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} ({v})"
                                        for k, v in g.items())


def fig7_markdown(summary: Mapping[str, Any]) -> str:
    """A readable summary of ``fig7.json`` (Fig. 7, Sec. VI-D), the paper's claims beside ours."""
    lines = [f"# Fig. 7 (Sec. VI-D): effects of alpha, beta and the architecture of h "
             f"(profile `{summary['profile']}`)", "",
             f"Rendered from `{summary['source']}`; test error top-1 (%), mean ± std over seeds."
             " x values are the runs' `gal_*` columns. 'paired:' tests a claim on the paired"
             " design, the best point it names minus the best it does not (picked from the same"
             " runs: a resolved reading is a lead, not corrected for that choice).", ""]
    for ds in summary["datasets"]:
        lines += [f"## {ds['dataset_label']} ({ds['model']})", ""]
        for o in ds["optimizers"].values():
            seeds = sorted({s for p in o["panels"].values() for q in p["points"]
                            for s in q["seeds"]})
            lines += [f"### {o['label']}", "", f"- baseline: {mean_std_cell(o['baseline'])}",
                      f"- seeds (any point): {', '.join(map(str, seeds))}",
                      f"- fixed GAL setting of the `gal` runs: {_setting(o['fixed'])} (paper: "
                      f"{_setting(o['paper_fixed'])}; same: {yes_no(o['fixed_matches_paper'])})", ""]
            for key in FIG7_KEYS:
                p, c = o["panels"][key], o["checks"][key]
                if not p["points"]:
                    continue
                row = "; ".join(f"{q['label']}{'*' if q['default'] else ''}: {mean_std_cell(q)}, "
                                f"paired {paired_cell(q['paired'])}" for q in p["points"])
                if key == "alpha":
                    ours = f"lowest mean at alpha {c['best']:g}, in [1e-4, 1e-2]: " \
                           f"{yes_no(c['best_in_paper_range'])}; paired: " \
                           f"{_claim_cell(c['paired_test'], 'in-range')}"
                else:
                    ours = f"lowest mean at {key} {c['best']}, paper's best {c['paper_best']}: " \
                           f"{yes_no(c['agrees'])}; paired: " \
                           f"{_claim_cell(c['paired_test'], 'paper')}"
                lines += [f"- **{key}** ({row}; * = `gal` run)", f"  - paper: {c['paper']}",
                          f"  - here: {ours}"]
            lines.append("")
    return "\n".join(lines + excluded_lines(summary["excluded"], "fig7"))


def _baseline_band(ax: Any, st: Mapping[str, Any] | None, color: str, label: str) -> None:
    if not st:
        return
    if st["std"] is not None:
        ax.axhspan(st["mean"] - st["std"], st["mean"] + st["std"], color=color, alpha=0.12, lw=0)
    ax.axhline(st["mean"], color=color, ls="--", lw=1.0, label=label)


def _draw_fig7(summary: Mapping[str, Any]) -> Any:
    n = len(summary["datasets"])
    fig = _new_figure((13.0, 6.6 * n + 0.9))
    axes = fig.subplots(2 * n, 3, squeeze=False)
    for i_ds, ds in enumerate(summary["datasets"]):
        raw, paired = axes[2 * i_ds], axes[2 * i_ds + 1]
        archs = x_order("arch", list({q["x"] for o in ds["optimizers"].values()
                                      for q in o["panels"]["arch"]["points"]}))
        for ax, pax, key in zip(raw, paired, FIG7_KEYS, strict=True):
            for i, (opt, o) in enumerate(ds["optimizers"].items()):
                color, pts = optimizer_colour(opt), o["panels"][key]["points"]
                _baseline_band(ax, o["baseline"], color, f"{o['label']} baseline (mean ± std)")
                if not pts:
                    continue
                xs = ([archs.index(q["x"]) + 0.08 * i for q in pts] if key == "arch"
                      else [q["x"] for q in pts])
                ax.errorbar(xs, [q["mean"] for q in pts], [q["std"] or 0.0 for q in pts],
                            color=color, marker="o", capsize=3, label=f"{o['label']} GAL")
                for x, q in zip(xs, pts, strict=True):
                    if q["default"]:
                        ax.plot([x], [q["mean"]], "*", color=color, ms=11)
                npair = sorted({q["paired"]["n"] for q in pts})
                draw_paired(pax, xs, pts, color,
                            f"{o['label']} (pairs per point: {', '.join(map(str, npair))})")
            for a in (ax, pax):
                if key == "alpha":
                    a.set_xscale("log")
                if key == "arch":
                    a.set_xticks(range(len(archs)), [f"({x})" for x in archs], fontsize=7)
                a.set_xlabel({"alpha": "alpha (log)", "beta": "beta", "arch": "MLP of h"}[key])
                a.grid(alpha=0.3)
            ax.set_ylabel("test error top-1 (%)")
            pax.set_ylabel("GAL − baseline, paired (points)")
            claim = textwrap.fill(f"paper: {summary['paper']['claims'][key]}", 62)
            ax.set_title(f"{ds['dataset_label']}: effect of {key}\n{claim}", fontsize=7.5)
            pax.set_title(f"effect of {key}: error − baseline's, paired by seed, mean and 95% CI",
                          fontsize=7.5)
            if pax.get_legend_handles_labels()[0]:  # none when no configuration has a pair
                pax.legend(fontsize=6.5, frameon=False, loc="upper left")
            note(pax, "below 0: lower error than the baseline;\n"
                 "a CI clear of 0 is resolved by the paired runs", loc="lower right", fontsize=6)
        raw[0].legend(fontsize=7, frameon=False)
    seeds = sorted({int(s) for ds in summary["datasets"] for o in ds["optimizers"].values()
                    for p in o["panels"].values() for q in p["points"] for s in q["seeds"]})
    fig.suptitle(f"Fig. 7 (Sec. VI-D), profile {summary['profile']}, seeds "
                 f"{epoch_ranges(seeds)}\ntop: mean ± std over seeds, star: the `gal` run "
                 "(default setting), dashed + band: baseline mean ± std; bottom: the paired "
                 "design, GAL − baseline per seed, mean and paired 95% CI", fontsize=9)
    return fig


def render_fig7(runs_root: Path, out_dir: Path, profile: str = "cpu") -> list[Path]:
    """Render Fig. 7 (Sec. VI-D) for one ``profile``: ``fig7.{json,md,png,pdf}`` in ``out_dir``
    for the analysis profile, ``fig7-<profile>.*`` for any other (never mixed, neither overwrites
    the other).
    Raises :class:`gal_suite.records.NoRunsError` naming ``make fig7`` if there are no records."""
    summary = fig7_summary(Path(runs_root), profile)
    return write_figure(_draw_fig7(summary), summary, fig7_markdown(summary), out_dir,
                        FIG7.stem(profile))


#: Fig. 7 (Sec. VI-D): the ablation records (alpha, beta and the architecture of h swept).
FIG7 = FigureSpec(number=7, section="VI-D", subject="alpha / beta / architecture",
                  records=("ablation",), draw=render_fig7,
                  home_profile="analysis")
