"""The report of ``benchmarks/gal_cost.py`` (Table VII, Sec. VI-C): the JSON it writes after
every case (``complete`` false until the last, so a run cut short by a time limit keeps the
cases it finished) and the one-line verdict per case it prints."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gal_suite.provenance import cpu_model
from gal_suite.records import git_info

__all__ = ["hardware", "target_line", "write_report"]

def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"1x {torch.cuda.get_device_name(device)}"
    return f"CPU: {cpu_model()} ({os.cpu_count()} logical cores)"


def write_report(out: Path, cases: Sequence[dict[str, Any]], *, device: torch.device,
                 argv: Sequence[str] | None, note: str, load_start: tuple[float, ...],
                 t_start: float, complete: bool, targets: dict[str, str]) -> None:
    """Write the report of ``cases`` to ``out`` atomically (a temporary file, then rename)."""
    commit, dirty = git_info()
    report = {
        "benchmark": "gal_cost",
        "what": "GAL's cost per training step (Table VII, Sec. VI-C): baseline vs GAL interleaved "
                "in one process; GAL's extra work; FLOP bound; operator counts",
        "device": device.type, "hardware": hardware(device),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "git_commit": commit, "git_dirty": dirty,
        "command": "PYTHONPATH=. python benchmarks/gal_cost.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_s": round(time.monotonic() - t_start, 1),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "note": note, "complete": complete, "targets": targets, "cases": list(cases),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def target_line(c: dict[str, Any]) -> str:
    t, s = c["target"], c["step"]["gal"]
    state = _met(t["met"])
    if c["kind"] == "regression":
        line = (f"[target] {c['name']}: GAL step {t['value']:.2f}x baseline "
                f"(<= {t['limit']}x): {state}; compare_vanilla=False "
                f"{c['step']['gal_no_compare']['ratio']:.2f}x")
        if "compiled_value" in t:
            line += (f"; compile_step={t['compile_step']} {t['compiled_value']:.2f}x: "
                     + _met(t["compiled_met"]))
        return line
    line = (f"[target] {c['name']}: overhead {t['value_pct']:+.2f}% (paired-ratio IQR "
            f"{100 * (s['paired_ratio']['q25'] - 1):+.2f}% .. {100 * (s['paired_ratio']['q75'] - 1):+.2f}%)"
            f" vs limit {t['limit_pct']:.2f}% (FLOP bound {100 * c['flops']['bound']:.4f}%): {state}")
    if "aa_pct" in t:
        line += (f"; A/A baseline vs itself {t['aa_pct']:+.2f}% (IQR {t['aa_iqr_pct'][0]:+.2f}% .. "
                 f"{t['aa_iqr_pct'][1]:+.2f}%), "
                 + ("resolved" if t["resolved"] else "NOT resolved at this limit on this machine")
                 + f"; GAL's extra work alone {t['extra_work_pct']:.2f}% of fwd+bwd: "
                 + _met(t["extra_work_met"]))
    if "compiled_value_pct" in t:
        line += (f"; compile_step={t['compile_step']}: overhead {t['compiled_value_pct']:+.2f}% "
                 + _met(t["compiled_met"])
                 + f", extra work {t['compiled_extra_work_pct']:.2f}% "
                 + _met(t["compiled_extra_work_met"]))
    return line
