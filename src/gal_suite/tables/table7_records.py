"""Table VII's run-record rows: the classification run records of Tables I/II (``method`` baseline
| gal) and their metric ``s_per_image`` (training wall time per training image), mean ± std over
complete seeds, turned into grid rows and unrounded numbers."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from gal_suite import stats as gs
from gal_suite.records import load_runs
from gal_suite.tables.cells import DASH, fmt_pct, fmt_sec
from gal_suite.tables.table7_spec import RECORD_METHODS, CostTableSpec, PaperSetting

__all__ = ["load_time_records", "record_rows"]


def load_time_records(spec: CostTableSpec, runs_root: str | os.PathLike[str]) -> pd.DataFrame:
    """Classification run records (baseline / gal) of ``spec.record_subdirs``, with ``subdir``."""
    frames = []
    for sub in spec.record_subdirs:
        df = load_runs(Path(runs_root) / sub)
        if len(df) == 0:
            continue
        for key, want in spec.record_filter.items():
            if key in df.columns:
                df = df[df[key].isna() | (df[key].astype(str) == str(want))]
        if "method" not in df.columns:
            continue
        df = df[df["method"].isin(RECORD_METHODS)].copy()
        df["subdir"] = sub
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def record_rows(spec: CostTableSpec, df: pd.DataFrame, setting: PaperSetting
                 ) -> tuple[list[dict[str, str]], list[dict[str, Any]], int]:
    rows, numeric = [], []
    n_failed = 0
    keys = [k for k in ("subdir", "profile", "dataset", "optimizer") if k in df.columns]
    for combo, grp in df.groupby(keys, sort=True, dropna=False):
        combo = combo if isinstance(combo, tuple) else (combo,)
        ok, nfail = gs.complete_runs(grp)
        n_failed += nfail
        by = {m: ok[ok["method"] == m] for m in RECORD_METHODS}
        vals = {m: (d[spec.time_metric].tolist() if spec.time_metric in d.columns else [])
                for m, d in by.items()}
        summ = {m: gs.summarize(v) for m, v in vals.items()}
        ours = "run records " + "/".join(str(c) for c in combo)
        devices = sorted({str(d) for d in grp.get("device", pd.Series(dtype=object)).dropna()})
        hw = ", ".join(devices) or "unknown"
        p_base, p_gal = spec.paper_time(setting.key, "baseline"), spec.paper_time(setting.key, "gal")
        over = (summ["gal"].mean / summ["baseline"].mean - 1.0
                if summ["gal"].n and summ["baseline"].n else None)
        for m in RECORD_METHODS:
            s = summ[m]
            cell = DASH if not s.n else (
                f"{fmt_sec(s.mean)} ± {fmt_sec(s.std)}" if math.isfinite(s.std) else fmt_sec(s.mean))
            rows.append(spec.method_row(setting, m, f"{ours} (n = {s.n})", hw, cell, fmt_pct(over)))
            numeric.append({"source": "run records", "case": ours, "paper_setting": setting.label,
                            "method": m, "hardware": hw, "n": s.n, "failed": nfail,
                            "s_per_image": s.mean, "s_per_image_std": s.std,
                            "paper_s_per_image": p_base if m == "baseline" else p_gal,
                            "overhead": over if m == "gal" else None,
                            "paper_overhead": spec.paper_overhead(setting.key) if m == "gal" else None})
    return rows, numeric, n_failed
