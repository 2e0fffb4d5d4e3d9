"""Table VII's benchmark rows: the reports ``gal_cost_<device>.json`` of ``benchmarks/gal_cost.py``
(whole-step seconds per image, baseline vs GAL arms, overhead with its spread, FLOP bound, extra
work, aten operators, the cost target) turned into grid rows and unrounded numbers."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gal_suite.tables.cells import DASH, fmt_frac_pct, fmt_pct, fmt_sec
from gal_suite.tables.table7_spec import TABLE7_COLUMNS, CostTableSpec, PaperSetting

__all__ = ["bench_rows", "hardware", "load_benchmarks", "target_text"]


def load_benchmarks(directory: str | os.PathLike[str], pattern: str) -> list[tuple[Path, dict]]:
    """The benchmark reports matching ``pattern`` in ``directory`` (sorted; bad JSON skipped)."""
    out = []
    d = Path(directory)
    if not d.is_dir():
        return out
    for p in sorted(d.glob(pattern)):
        try:
            rep = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rep, dict) and isinstance(rep.get("cases"), list):
            out.append((p, rep))
    return out


def hardware(rep: Mapping[str, Any]) -> str:
    hw = str(rep.get("hardware", rep.get("device", "unknown")))
    threads = rep.get("threads")
    return hw + (f", {threads} thread(s)" if threads else "")


def bench_rows(spec: CostTableSpec, path: Path, rep: Mapping[str, Any], case: Mapping[str, Any],
                setting: PaperSetting | None) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    rows, numeric = [], []
    step = case.get("step", {})
    times = step.get("s_per_image", {})
    ours = f"{case.get('name')} (benchmark {path.name}, batch {case.get('batch')})"
    hw = hardware(rep)
    skey = setting.key if setting else None
    p_base = spec.paper_time(skey, "baseline") if skey else None
    p_gal = spec.paper_time(skey, "gal") if skey else None
    p_over = spec.paper_overhead(skey) if skey else None
    flops, ops, extra, target = (case.get("flops", {}), case.get("ops", {}),
                                 case.get("extra_work", {}), case.get("target", {}))
    for arm, label in spec.arms.items():
        if arm not in times:
            continue
        med = times[arm].get("median")
        is_base = arm == "baseline"
        p_arm = p_base if arm.startswith("baseline") else p_gal
        r = {c: "" for c in TABLE7_COLUMNS}
        r.update({"Paper setting": setting.label if setting else DASH, "Ours": ours, "Hardware": hw,
                  "Method": label, "Time (s/image) ours": fmt_sec(med),
                  "Time (s/image) paper": fmt_sec(p_arm)})
        num: dict[str, Any] = {"source": "benchmark", "file": path.name, "case": case.get("name"),
                               "paper_setting": setting.label if setting else None, "method": arm,
                               "hardware": hw, "s_per_image": med, "paper_s_per_image": p_arm}
        if is_base:
            r["Ops (aten)"] = str(ops.get("baseline_step", DASH))
        else:
            a = step.get(arm, {})
            pr = a.get("paired_ratio", {})
            over = a.get("overhead_pct")
            over_f = None if over is None else over / 100.0
            lo, hi = pr.get("q25"), pr.get("q75")
            spread = (f" [{fmt_pct(lo - 1)}, {fmt_pct(hi - 1)}]"
                      if lo is not None and hi is not None else "")
            r["Overhead ours"] = fmt_pct(over_f) + spread
            r["Overhead paper"] = DASH if arm.startswith("baseline") else fmt_pct(p_over)
            if arm == "gal":
                r["FLOP bound"] = fmt_frac_pct(flops.get("bound"))
                r["Extra work / fwd+bwd"] = fmt_frac_pct(extra.get("ratio"))
                r["Ops (aten)"] = str(ops.get("gal_step", DASH))
                if target:
                    r["Target"] = target_text(target)
            elif arm == "gal_compiled" and "compiled_value" in target:
                r["Target"] = target_text({"limit": target["limit"], "value": target["compiled_value"],
                                            "met": target["compiled_met"]})
            num.update({"overhead": over_f, "overhead_q25": None if lo is None else lo - 1,
                        "overhead_q75": None if hi is None else hi - 1,
                        "ratio_of_medians": a.get("ratio_of_medians"),
                        "paper_overhead": None if arm.startswith("baseline") else p_over})
            if arm == "gal":
                num.update({"flop_bound": flops.get("bound"), "extra_ratio": extra.get("ratio"),
                            "ops_baseline": ops.get("baseline_step"), "ops_gal": ops.get("gal_step"),
                            "target_met": target.get("met")})
        rows.append(r)
        numeric.append(num)
    return rows, numeric


def target_text(t: Mapping[str, Any]) -> str:
    mark = "✓ met" if t.get("met") else "✗ not met"
    if "limit_pct" in t:
        text = f"{mark} (<= {t['limit_pct']:.2f}%)"
        iqr = t.get("iqr_pct")
        if iqr and not t.get("resolved", True):
            text += f", not resolved (IQR width {iqr[1] - iqr[0]:.2f}%)"
        if "extra_work_pct" in t:
            text += (f"; extra work {t['extra_work_pct']:.2f}% "
                     + ("✓" if t.get("extra_work_met") else "✗"))
        return text
    if "limit" in t:
        return f"{mark} (<= {t['limit']}x: {t.get('value', math.nan):.2f}x)"
    return mark
