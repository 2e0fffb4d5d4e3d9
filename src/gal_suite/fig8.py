"""Fig. 8 of the paper (Sec. VI-E, VI-F) from the ablation run records only, SGD: (a) final
``error_top1`` of the update policies of Algorithm 1 lines 7-10 (``gal_policy`` leq = "line 7
(≤)", lt = "line 7 (<)", always = "line 8", never = "line 10") beside the baseline, mean ± std over
seeds; line 10 feeds dl/dz to the model at every step, so its errors are compared with the
baseline's seed by seed. (b) the per-epoch fraction ``g_beats_grad`` (l(z - eta~ g) <
l(z - eta~ dl/dz)) per policy, mean with min-max band. Record selection and shared helpers:
:mod:`gal_suite.fig_sweeps`. Outputs: ``fig8.{png,pdf,json,md}`` (the analysis
profile; ``fig8-<profile>.*`` for another).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gal_suite.fig_provenance import write_figure
from gal_suite.fig_records import col as _col
from gal_suite.fig_records import (
    excluded_lines,
    gal_setting,
    no_runs,
    runs_by_seed,
    seed_curves,
)
from gal_suite.fig_records import seed_stats as _stats
from gal_suite.fig_spec import FigureSpec
from gal_suite.fig_style import (
    BAND,
    BLUE,
    ONE_EPOCH,
    POLICY_COLORS,
    RED,
    draw_band,
    epoch_axis,
    epoch_ranges,
    note,
    one_epoch,
)
from gal_suite.fig_style import new_figure as _new_figure
from gal_suite.fig_sweeps import (
    POLICY_LABELS,
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

__all__ = ["FIG8", "fig8_summary", "fig8_markdown", "render_fig8", "acceptance", "coincidence"]

FIG8_CLAIMS = {
    "a": "line 7 (≤) is best; line 8 is better than line 10; line 7 (≤) is slightly better "
    "than line 7 (<)",
    "b": "g beats dl/dz (lower tentative loss) on a considerable amount of samples in the "
    "early stage",
}
GRANULARITY_UNITS = {"batch": "fraction of mini-batches (one decision per step on the batch loss)",
                     "sample": "fraction of samples"}
#: Policies that use g whenever it is accepted; with every step accepted they train one model.
_USES_G = ("leq", "lt", "always")


def acceptance(runs: Mapping[int, str]) -> dict[str, Any] | None:
    """The acceptance rate of g (history column ``accept_rate``: per epoch, the fraction of steps
    whose update used g) of one policy's runs: mean over all (seed, epoch) values, min, max, and
    ``all_one`` (g accepted on every step of every run); None without the column."""
    epochs, mats = seed_curves(runs, ["accept_rate"]) if runs else ([], {})
    if not epochs:
        return None
    m = mats["accept_rate"]
    return {"mean": float(m.mean()), "min": float(m.min()), "max": float(m.max()),
            "all_one": bool(np.all(m == 1.0)), "seeds": list(runs), "epochs": epochs}


def coincidence(policies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Which of line 7 (≤), line 7 (<) and line 8 trained the same models because no step was
    rejected (acceptance rate 1 in every epoch of every run), whether their errors are then
    equal seed by seed, and the note written on Fig. 8(a)."""
    same = [p for p in policies if p["policy"] in _USES_G and p.get("accept_rate")
            and p["accept_rate"]["all_one"]]
    if len(same) < 2:
        return {"policies": [p["policy"] for p in same], "same_errors": None, "note": None}
    seeds = set.intersection(*(set(p["per_seed"]) for p in same))
    equal = all(len({p["per_seed"][s] for p in same}) == 1 for s in seeds) if seeds else None
    labels = ", ".join(p["label"] for p in same)
    text = (f"{labels} coincide: no step was rejected (acceptance rate 1 in every epoch of "
            f"every run), so they trained the same models"
            + ("" if equal is None else f"; errors equal seed by seed: {yes_no(equal)}"))
    return {"policies": [p["policy"] for p in same], "same_errors": equal, "note": text}


def _line10(policies: Sequence[Mapping[str, Any]], base: Mapping[str, Any] | None) -> dict:
    never = next((p for p in policies if p["policy"] == "never"), None)
    if not never or not base:
        return {"seeds": [], "per_seed": {}, "all_equal": None, "max_abs_diff": None}
    seeds = [s for s in never["per_seed"] if s in base["per_seed"]]
    per = {s: {"line10": never["per_seed"][s], "baseline": base["per_seed"][s],
               "equal": never["per_seed"][s] == base["per_seed"][s]} for s in seeds}
    diffs = [abs(v["line10"] - v["baseline"]) for v in per.values()]
    return {"seeds": [int(s) for s in seeds], "per_seed": per,
            "all_equal": all(v["equal"] for v in per.values()) if per else None,
            "max_abs_diff": max(diffs) if diffs else None}


def _fig8_checks(policies: Sequence[Mapping[str, Any]], base: Mapping[str, Any] | None) -> dict:
    m = {p["policy"]: p["mean"] for p in policies}

    def lower(a: str, b: str) -> bool | None:
        return bool(m[a] < m[b]) if a in m and b in m else None

    allm = {**m, **({"baseline": base["mean"]} if base else {})}
    return {"paper": FIG8_CLAIMS["a"],
            "ranking": [POLICY_LABELS.get(k, k) for k in sorted(allm, key=allm.__getitem__)],
            "line7_leq_best": bool(min(allm, key=allm.__getitem__) == "leq") if "leq" in m
            else None,
            "line8_better_than_line10": lower("always", "never"),
            "line7_leq_better_than_line7_lt": lower("leq", "lt")}


def _fig8_beats(rows: pd.DataFrame, what: str, excluded: dict[str, Any]) -> dict[str, Any]:
    curves: dict[str, Any] = {}
    pols = [gal_setting(r, "policy") for _, r in rows.iterrows()]
    for pol in x_order("policy", list({p for p in pols if p})):
        runs = runs_by_seed(rows[[p == pol for p in pols]], f"{what} policy {pol}")
        keep = {}
        for s, p in runs.items():
            if seed_curves({s: p}, ["g_beats_grad"])[0]:
                keep[s] = p
            else:
                excluded["no_g_beats_grad"].append({"path": p, "reason": "g_beats_grad all NaN"})
        epochs, mats = seed_curves(keep, ["g_beats_grad"]) if keep else ([], {})
        if epochs:
            curves[pol] = {"label": POLICY_LABELS.get(pol, pol), "seeds": list(keep),
                           "epochs": epochs, **_stats(mats["g_beats_grad"]),
                           "runs": {str(s): p for s, p in keep.items()}}
    grans = sorted({g for _, r in rows.iterrows() if (g := gal_setting(r, "granularity"))})
    return {"granularity": grans[0] if len(grans) == 1 else grans,
            "unit": "; ".join(GRANULARITY_UNITS.get(g, g) for g in grans) or "unknown",
            "paper": FIG8_CLAIMS["b"], "band": BAND, "curves": curves}


def fig8_summary(runs_root: Path, profile: str = "cpu") -> dict[str, Any]:
    """The numbers of ``fig8.json`` (Fig. 8, Sec. VI-E/F) from the SGD ablation records of
    ``profile``: (a) per policy and for the baseline the error over seeds, the seed-by-seed
    comparison of line 10 with the baseline, and the paper's claims beside ours; (b) per policy
    the per-epoch ``g_beats_grad`` (mean/min/max/std over seeds) and the granularity."""
    df, excluded = load_ablation(runs_root, profile, 8)
    excluded["no_g_beats_grad"] = []
    df = df[df["optimizer"].astype(str) == "sgd"]
    datasets = []
    for _, sub in by_dataset(df):
        what = f"Fig. 8 {sub['dataset'].iloc[0]}/sgd"
        rows = usable(sweep_rows(sub, "policy"), excluded)
        pts = sweep_points(rows, "policy", what, excluded)
        if not pts:
            continue
        policies = [{"policy": q["x"], "label": POLICY_LABELS.get(q["x"], q["x"]),
                     **{k: v for k, v in q.items() if k not in ("x", "label")}} for q in pts]
        base_rows = usable(sub[_col(sub, "method").astype(str) == "baseline"], excluded)
        base = error_stats(base_rows, f"{what} baseline") if len(base_rows) else None
        for p in policies:
            p["paired"] = paired_vs_baseline(base, p)
            p["accept_rate"] = acceptance({int(s): q for s, q in p["runs"].items()})
        datasets.append({**dataset_head(sub), "optimizer": "sgd", "baseline": base,
                         "policies": policies, "line10_vs_baseline": _line10(policies, base),
                         "checks": _fig8_checks(policies, base),
                         "coincide": coincidence(policies),
                         "g_beats_grad": _fig8_beats(rows, what, excluded)})
    if not datasets:
        raise no_runs(8, "complete SGD `gal` / `gal+policy=...` ablation runs",
                      [f"{Path(runs_root)}/ablation/{profile}"], profile,
                      f"`make fig8 PROFILE={profile}`")
    return {"figure": 8, "paper_section": "VI-E, VI-F", "profile": profile,
            "source": str(Path(runs_root) / "ablation" / profile), "metric": "error_top1 (%)",
            "definitions": {
                "policy": "the run's gal_policy column: leq = line 7 (≤), lt = line 7 (<), "
                "always = line 8, never = line 10 (Algorithm 1)",
                "line10_vs_baseline": "line 10 sends dl/dz to the model at every step, so its "
                "model trajectory is the baseline's bit for bit when GAL's step runs in z's dtype; "
                "a float64 step rounds dl/dz once more, so the trajectories then drift apart from "
                "rounding alone: error_top1 compared seed by seed (exact)",
                "paired": "per policy: its error minus the baseline's of the same seed; "
                "mean_diff and its paired 95% CI (t, n-1 df; gal_suite.stats.ci_paired_diff)",
                "accept_rate": "history column accept_rate (per epoch, the fraction of steps "
                "whose update used g): mean, min, max over every (seed, epoch)",
                "g_beats_grad": "per epoch, the fraction of training steps' decisions where "
                "l(z - eta~ g) < l(z - eta~ dl/dz); mean over seeds, band min-max"},
            "paper": FIG8_CLAIMS, "datasets": datasets, "excluded": close_excluded(excluded)}


def fig8_markdown(summary: Mapping[str, Any]) -> str:
    """A readable summary of ``fig8.json`` (Fig. 8, Sec. VI-E/F), the paper's claims beside ours."""
    lines = [f"# Fig. 8 (Sec. VI-E/F): update policies and g vs dl/dz, SGD "
             f"(profile `{summary['profile']}`)", "",
             f"Rendered from `{summary['source']}`; test error top-1 (%), mean ± std over seeds.",
             ""]
    for ds in summary["datasets"]:
        c, t, b = ds["checks"], ds["line10_vs_baseline"], ds["g_beats_grad"]
        lines += [f"## {ds['dataset_label']} ({ds['model']})", "", "### (a) update policy", "",
                  "| policy | error (%) | − baseline, paired: mean [95% CI] | acceptance rate "
                  "of g | seeds |", "|---|---|---|---|---|",
                  f"| baseline | {mean_std_cell(ds['baseline'])} | | | "
                  f"{', '.join(map(str, (ds['baseline'] or {}).get('seeds', [])))} |"]
        lines += [f"| {p['label']} (`{p['policy']}`) | {mean_std_cell(p)} | {paired_cell(p['paired'])} | "
                  f"{_acc(p['accept_rate'])} | {', '.join(map(str, p['seeds']))} |"
                  for p in ds["policies"]]
        if ds["coincide"]["note"]:
            lines += ["", f"- {ds['coincide']['note']}"]
        eq = ", ".join(f"seed {s}: line 10 {v['line10']:g}, baseline {v['baseline']:g} "
                       f"({'equal' if v['equal'] else 'differ'})" for s, v in t["per_seed"].items())
        lines += ["", f"- paper: {c['paper']}",
                  f"- here: ranking (lowest error first) {' ≤ '.join(c['ranking'])}; "
                  f"line 7 (≤) best: {yes_no(c['line7_leq_best'])}; line 8 better than line 10: "
                  f"{yes_no(c['line8_better_than_line10'])}; line 7 (≤) better than line 7 (<): "
                  f"{yes_no(c['line7_leq_better_than_line7_lt'])}",
                  "- line 10 sends dl/dz to the model at every step, so its model trajectory "
                  "equals the baseline's bit for bit when GAL's step runs in z's dtype (a float64 "
                  "step differs from it by rounding alone, which grows over training); errors "
                  "equal to the baseline seed by seed: "
                  f"{yes_no(t['all_equal'])} ({eq or 'no paired seed'})", "",
                  f"### (b) g beats dl/dz ({b['unit']}; granularity {b['granularity']})", "",
                  f"- paper: {b['paper']}"]
        for cv in b["curves"].values():
            m, ep = cv["mean"], cv["epochs"]
            lines.append(f"- {cv['label']}: seeds {', '.join(map(str, cv['seeds']))}; mean over "
                         f"seeds {m[0]:.3f} at epoch {ep[0]}, {m[-1]:.3f} at epoch {ep[-1]}, "
                         f"{np.mean(m):.3f} over epochs {epoch_ranges(ep)}")
        lines.append("")
    return "\n".join(lines + excluded_lines(summary["excluded"], "fig8"))


def _acc(a: Mapping[str, Any] | None) -> str:
    if not a:
        return "n/a"
    return f"{a['mean']:.3f}" + ("" if a["min"] == a["max"] else f" ({a['min']:.3f}-{a['max']:.3f})")


def _beats_reading(ds: Mapping[str, Any]) -> str:
    """The paper's reading of Fig. 8(b) and ours, written on the panel."""
    curves = list(ds["g_beats_grad"]["curves"].values())
    head = f"paper: {FIG8_CLAIMS['b']}"
    if not curves:
        return head
    if one_epoch(curves):
        return f"{head}\nhere: {ONE_EPOCH.split(' (')[0]}"
    here = [f"{cv['label']}: {cv['mean'][0]:.2f} at epoch {cv['epochs'][0]} → "
            f"{cv['mean'][-1]:.2f} at epoch {cv['epochs'][-1]}" for cv in curves]
    return "\n".join([head, "here (mean over seeds):", *here])


def _draw_fig8(summary: Mapping[str, Any]) -> Any:
    n = len(summary["datasets"])
    fig = _new_figure((15.0, 4.4 * n + 0.9))
    axes = fig.subplots(n, 3, squeeze=False)
    for (a, pa, b), ds in zip(axes, summary["datasets"], strict=True):
        bars = ([("baseline", ds["baseline"], BLUE)] if ds["baseline"] else []) + [
            (p["label"], p, POLICY_COLORS.get(p["policy"], RED)) for p in ds["policies"]]
        for i, (_, st, color) in enumerate(bars):
            a.errorbar([i], [st["mean"]], [st["std"] or 0.0], color=color, marker="o", ms=7,
                       capsize=4)
            acc = st.get("accept_rate")
            if acc:
                a.annotate(f"accept {_acc(acc)}", (i, st["mean"]), xytext=(0, -16),
                           textcoords="offset points", ha="center", fontsize=6.5, color=color)
        a.set_xticks(range(len(bars)), [lb for lb, _, _ in bars], fontsize=8)
        a.set_xlim(-0.6, len(bars) - 0.4)
        a.margins(y=0.25)
        a.set_ylabel("test error top-1 (%)")
        a.set_title(f"(a) {ds['dataset_label']}, SGD: update policy\n(mean ± std over seeds; "
                    "acceptance rate of g under each point)", fontsize=8)
        co = ds["coincide"]["note"]
        note(a, textwrap.fill(f"paper: {FIG8_CLAIMS['a']}", 60)
             + ("" if not co else "\n" + textwrap.fill(co, 60)), fontsize=6)
        pols = ds["policies"]
        for i, p in enumerate(pols):
            draw_paired(pa, [i], [p], POLICY_COLORS.get(p["policy"], RED), "_nolegend_")
        pa.set_xticks(range(len(pols)), [p["label"] for p in pols], fontsize=8)
        pa.set_xlim(-0.6, len(pols) - 0.4)
        npair = sorted({p["paired"]["n"] for p in pols})
        pa.set_ylabel("policy − baseline, paired (points)")
        pa.set_title(f"(a) paired by seed: error − baseline's error\nmean and paired 95% CI "
                     f"(pairs: {', '.join(map(str, npair))})", fontsize=8)
        for pol, cv in ds["g_beats_grad"]["curves"].items():
            draw_band(b, cv["epochs"], cv, POLICY_COLORS.get(pol, RED),
                         f"{cv['label']} (seeds {epoch_ranges(cv['seeds'])})")
        epoch_axis(b, [e for cv in ds["g_beats_grad"]["curves"].values() for e in cv["epochs"]])
        b.set_ylabel(f"g beats dl/dz ({ds['g_beats_grad']['granularity']})")
        b.set_title(f"(b) fraction with l(z-η̃g) < l(z-η̃∂l/∂z): "
                    f"{ds['g_beats_grad']['unit'].split(' (')[0]}", fontsize=8)
        b.legend(fontsize=6.5, frameon=False, loc="lower right")
        co_b = "" if not ds["coincide"]["note"] else (
            "\n" + " and ".join(POLICY_LABELS[q] for q in ds["coincide"]["policies"])
            + ": one line (they coincide, see (a))")
        note(b, _beats_reading(ds) + co_b, fontsize=6)
        for ax in (a, pa, b):
            ax.grid(alpha=0.3)
    single = one_epoch(cv for ds in summary["datasets"]
                          for cv in ds["g_beats_grad"]["curves"].values())
    fig.suptitle(f"Fig. 8 (Sec. VI-E/F), profile {summary['profile']}; (b) lines: mean over "
                 f"seeds, bands: {BAND}" + (f"; {ONE_EPOCH}" if single else ""), fontsize=9.5)
    return fig


def render_fig8(runs_root: Path, out_dir: Path, profile: str = "cpu") -> list[Path]:
    """Render Fig. 8 (Sec. VI-E/F) for one ``profile``: ``fig8.{json,md,png,pdf}`` in ``out_dir``
    for the analysis profile, ``fig8-<profile>.*`` for any other (never mixed, neither overwrites
    the other).
    Raises :class:`gal_suite.records.NoRunsError` naming ``make fig8`` if there are no records."""
    summary = fig8_summary(Path(runs_root), profile)
    return write_figure(_draw_fig8(summary), summary, fig8_markdown(summary), out_dir,
                        FIG8.stem(profile))


#: Fig. 8 (Sec. VI-E/F): the SGD ablation records (the update policies of Algorithm 1).
FIG8 = FigureSpec(number=8, section="VI-E/F", subject="update policies and g vs dl/dz",
                  records=("ablation",), draw=render_fig8,
                  home_profile="analysis")
