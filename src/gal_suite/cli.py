"""The ``gal`` console script.

    gal table N [--runs results/runs] [--out results/tables]      render paper table N (1-8)
    gal compare RUNS_A RUNS_B [--metrics mae mse r2] [--higher-is-better r2 ...]
                                                                  A (baseline) vs B (GAL), per metric:
                                                                  mean±std, n, t-test, Welch, paired, CI
    gal figure N [--gif] [--profile cpu] [--runs results/runs] [--out results/figures]

Errors are one line on stderr saying how to fix them; exit code 1 (2 = not implemented / usage).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

#: metric names for which larger is better when --higher-is-better is not given
HIGHER_IS_BETTER_DEFAULT = {"r2", "acc", "accuracy", "top1", "top5", "ap", "ap50", "ap75",
                            "ap_s", "ap_m", "ap_l", "cosine", "accept_rate", "images_per_s",
                            "g_beats_grad"}


def _err(msg: str, code: int = 1) -> int:
    print(f"gal: error: {msg}", file=sys.stderr)
    return code


def _cmd_table(args: argparse.Namespace) -> int:
    from gal_suite.tables import (
        IMPLEMENTED_TABLES,
        NoRunsError,
        not_implemented_message,
        render_table,
    )
    from gal_suite.tables.spec import MixedSettingsError

    if args.n not in IMPLEMENTED_TABLES:
        return _err(not_implemented_message(args.n), 2)
    try:
        paths = render_table(args.n, args.runs, args.out)
    except NoRunsError as e:
        msg = str(e)
        if "make table" not in msg:
            msg += f": run `make table{args.n}`"
        return _err(msg)
    except MixedSettingsError as e:
        return _err(str(e))
    for kind, p in paths.items():
        print(f"wrote {p}" if kind != "numeric" else f"wrote {p} (unrounded numbers)")
    return 0


def _metric_names(paths: Sequence[str]) -> list[str]:
    names: dict[str, None] = {}
    for p in paths:
        f = Path(p) / "metrics.json"
        if f.is_file():
            try:
                for k, v in json.loads(f.read_text()).items():
                    if isinstance(v, int | float) and not isinstance(v, bool):
                        names.setdefault(k, None)
            except ValueError:
                continue
    return list(names)


def _fmt(x: float, digits: int = 4) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _fp(p: float) -> str:
    return "—" if p is None or not math.isfinite(p) else f"{p:.2e}"


def _cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from gal_suite.records import load_runs
    from gal_suite.stats import compare, complete_runs

    frames = []
    for d in (args.runs_a, args.runs_b):
        if not Path(d).is_dir():
            return _err(f"{d} is not a directory: pass two run-record directories (e.g. results/runs/table5/paper/boston/baseline)")
        df = load_runs(d)
        if len(df) == 0:
            return _err(f"no runs found under {d}: point at a directory holding run records (status.json)")
        frames.append(df)
    a, b = frames
    for name, df in (("A", a), ("B", b)):  # one set should be one arm: say so if it is not
        keys = [k for k in ("profile", "variant", "dataset", "method", "convention", "optimizer", "arm")
                if k in df.columns and df[k].nunique(dropna=True) > 1]
        if keys:
            print(f"warning: set {name} mixes runs with different {', '.join(keys)}; point at one "
                  f"arm's directory to compare like with like", file=sys.stderr)
    if args.metrics:
        metrics = args.metrics
    else:
        ca, _ = complete_runs(a)
        cb, _ = complete_runs(b)
        ma, mb = _metric_names(ca["path"].tolist()), _metric_names(cb["path"].tolist())
        metrics = [m for m in ma if m in mb]
        if not metrics:
            return _err("no metric shared by complete runs of A and B: pass --metrics NAME ...")
    missing = [m for m in metrics if m not in a.columns or m not in b.columns]
    if missing:
        return _err(f"metric(s) {', '.join(missing)} not in both run sets; available: "
                    f"{', '.join(sorted(set(_metric_names(a['path'])) & set(_metric_names(b['path']))))}")
    hib = {m: (m in HIGHER_IS_BETTER_DEFAULT or m in (args.higher_is_better or []))
           and m not in (args.lower_is_better or []) for m in metrics}
    res = compare(a, b, metrics, hib)
    print(f"A = {args.runs_a}  ({int(res['n_a'].iloc[0]) if len(res) else 0} complete runs, "
          f"{int(res['failed_a'].iloc[0]) if len(res) else 0} failed excluded)")
    print(f"B = {args.runs_b}  ({int(res['n_b'].iloc[0]) if len(res) else 0} complete runs, "
          f"{int(res['failed_b'].iloc[0]) if len(res) else 0} failed excluded)")
    rows = []
    for _, r in res.iterrows():
        rows.append({
            "metric": r["metric"] + (" ↑" if r["higher_is_better"] else " ↓"),
            "A mean±std": f"{_fmt(r['mean_a'])} ± {_fmt(r['std_a'])}",
            "n_A": int(r["n_a"]),
            "B mean±std": f"{_fmt(r['mean_b'])} ± {_fmt(r['std_b'])}",
            "n_B": int(r["n_b"]),
            "Δ=B−A": _fmt(r["diff"]),
            "95% CI Δ (rule)": f"[{_fmt(r['rule_ci_low'])}, {_fmt(r['rule_ci_high'])}] {r['ci_kind']}",
            "t-test t": _fmt(r["t"], 3), "p": _fp(r["p"]),
            "Welch t": _fmt(r["welch_t"], 3), "Welch p": _fp(r["welch_p"]),
            "paired t": _fmt(r["paired_t"], 3), "paired p": _fp(r["paired_p"]),
            "pairs": int(r["paired_n"]),
            "B vs A": r["direction"],
        })
    with pd.option_context("display.width", 250, "display.max_columns", 50):
        print(pd.DataFrame(rows).to_string(index=False))
    print("t-test = Student two-sample (the paper's Table V test; t sign = A − B); Welch = unequal "
          "variances; paired = over seeds in both; std ddof=1. 95% CI Δ (rule) = the suite's verdict "
          "interval: paired over the shared seeds (Welch–Satterthwaite where fewer than 2 are "
          "shared); 'B vs A' = B better / B worse where it excludes 0 (by each metric's direction), "
          "else no difference resolved. No paper effect here, so no reproduction verdict.")
    return 0


def _cmd_figure(args: argparse.Namespace) -> int:
    try:
        from gal_suite.figures import render_figure
    except ImportError as e:
        return _err(f"figures are not available ({e}); is gal installed with `make venv`?")
    try:
        paths = render_figure(args.n, Path(args.runs), Path(args.out), gif=args.gif,
                              profile=args.profile)
    except NotImplementedError as e:
        return _err(str(e), 2)
    except FileNotFoundError as e:
        msg = str(e)
        return _err(msg if "make" in msg else f"{msg}: run `make fig{args.n}`")
    for p in paths or []:
        print(f"wrote {p}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``gal``."""
    ap = argparse.ArgumentParser(prog="gal", description="GAL suite: tables, figures and comparisons from run records.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("table", help="render paper table N from run records (1-8)")
    t.add_argument("n", type=int, help="table number (1-8)")
    t.add_argument("--runs", default="results/runs", help="runs root (default results/runs)")
    t.add_argument("--out", default="results/tables", help="output dir (default results/tables)")
    t.set_defaults(func=_cmd_table)

    c = sub.add_parser("compare", help="compare two sets of runs (A = baseline, B = GAL) per metric")
    c.add_argument("runs_a", help="directory of run records A (searched recursively)")
    c.add_argument("runs_b", help="directory of run records B (searched recursively)")
    c.add_argument("--metrics", nargs="+", help="metric names (default: all numeric metrics in both)")
    c.add_argument("--higher-is-better", nargs="+", metavar="METRIC",
                   help=f"metrics where larger is better (default: {', '.join(sorted(HIGHER_IS_BETTER_DEFAULT))})")
    c.add_argument("--lower-is-better", nargs="+", metavar="METRIC", help="override a default above")
    c.set_defaults(func=_cmd_compare)

    f = sub.add_parser("figure", help="render paper figure N from run records (gal_suite.figures)")
    f.add_argument("n", type=int, help="figure number")
    f.add_argument("--gif", action="store_true", help="also write an animation where supported")
    f.add_argument("--profile", default="cpu",
                   help="profile of the runs to plot (Fig. 5; profiles are never mixed)")
    f.add_argument("--runs", default="results/runs", help="runs root (default results/runs)")
    f.add_argument("--out", default="results/figures", help="output dir (default results/figures)")
    f.set_defaults(func=_cmd_figure)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gal`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
