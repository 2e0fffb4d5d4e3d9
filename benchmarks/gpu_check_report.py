"""The report of ``benchmarks/gpu_check.sh`` (see :mod:`benchmarks.gpu_check`): the run records
it collects (``read_runs``, ``summarize_runs``), the summary of GAL's cost on CUDA and the tarball
of the records. Standard library only.
"""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path
from typing import Any


# --------------------------------------------------------------------------- collecting
def _num(v: str) -> Any:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return v
    return int(x) if x.is_integer() and "." not in v and "e" not in v.lower() else x


def read_runs(root: Path) -> list[dict[str, Any]]:
    """Every run record under ``root``: its path parts, status, metrics and history rows."""
    out = []
    for status_file in sorted(root.rglob("status.json")):
        d = status_file.parent
        rec: dict[str, Any] = {"run": str(d.relative_to(root)).replace(".partial", "")}
        for name in ("status", "metrics"):
            p = d / f"{name}.json"
            if p.is_file():
                try:
                    rec[name] = json.loads(p.read_text())
                except ValueError:
                    rec[name] = "unreadable"
        h = d / "history.csv"
        if h.is_file():
            with open(h, newline="") as f:
                rec["history"] = [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(f)]
        prov = d / "provenance.json"
        if prov.is_file():
            try:
                p = json.loads(prov.read_text())
                rec["git_commit"], rec["git_dirty"] = p.get("git_commit"), p.get("git_dirty")
            except ValueError:
                pass
        out.append(rec)
    return out


def _arm(run: str) -> tuple[str, str]:
    """(group, arm) of a run path: the method (and model for Tables III/IV), and the seed."""
    parts = run.split("/")
    seed = parts[-1]
    if parts[0] == "table1" or parts[0] == "ablation":
        return parts[-2], seed
    if parts[0] == "table3":  # table3/paper/imagenet/<model>/rmsproptf/<method>/seed-k
        return f"{parts[3]}/{parts[5]}", seed
    if parts[0] == "table4":  # table4/paper/shapes/<model>/adamw/<method>/seed-k
        return f"{parts[3]}/{parts[5]}", seed
    return run, seed


FIRST_EPOCH_KEYS = ("train_loss", "val_loss", "val_error_top1", "val_error_top5", "images_per_s",
                    "accept_rate", "abs_remainder", "cosine", "g_beats_grad")


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per table: each run's first-epoch row and final metrics; per arm the last epoch's
    images/s (the warm throughput: epoch 1 includes cuDNN's autotuning); GAL / baseline."""
    tables: dict[str, Any] = {}
    for r in runs:
        table = r["run"].split("/")[0]
        group, seed = _arm(r["run"])
        hist = r.get("history") or []
        first = {k: hist[0][k] for k in FIRST_EPOCH_KEYS if hist and k in hist[0]}
        last = hist[-1] if hist else {}
        t = tables.setdefault(table, {"runs": [], "throughput": {}})
        t["runs"].append({"group": group, "seed": seed, "status": (r.get("status") or {}).get("status"),
                          "epochs": len(hist), "first_epoch": first,
                          "last_epoch_images_per_s": last.get("images_per_s"),
                          "metrics": r.get("metrics"), "git_commit": r.get("git_commit"),
                          "git_dirty": r.get("git_dirty")})
        if last.get("images_per_s"):
            t["throughput"].setdefault(group, []).append(float(last["images_per_s"]))
    for t in tables.values():
        tp = {g: sum(v) / len(v) for g, v in t["throughput"].items()}
        t["throughput"] = {g: round(v, 1) for g, v in tp.items()}
        ratios = {}
        for g, v in tp.items():
            base = g.rsplit("/", 1)[0] + "/baseline" if "/" in g else "baseline"
            if g != base and base in tp:
                ratios[g] = round(100.0 * (tp[base] / v - 1.0), 2)  # time per image, GAL vs baseline
        t["time_overhead_pct_vs_baseline"] = ratios
    return tables


def summarize_cost(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    rep = json.loads(path.read_text())
    out: dict[str, Any] = {"hardware": rep.get("hardware"), "torch": rep.get("torch"),
                           "git_commit": rep.get("git_commit"), "complete": rep.get("complete"),
                           "cases": {}}
    for c in rep.get("cases", []):
        s = c["step"]
        row = {"baseline_us_per_img": 1e6 * s["s_per_image"]["baseline"]["median"],
               "gal_us_per_img": 1e6 * s["s_per_image"]["gal"]["median"],
               "overhead_pct": s["gal"]["overhead_pct"],
               "overhead_iqr_pct": c["target"].get("iqr_pct"), "aa_pct": c["target"].get("aa_pct"),
               "extra_work_pct": c["target"].get("extra_work_pct"),
               "flop_bound_pct": 100 * c["flops"]["bound"], "limit_pct": c["target"].get("limit_pct"),
               "met": c["target"].get("met"), "resolved": c["target"].get("resolved"),
               "ops_baseline": c["ops"]["baseline_step"], "ops_gal": c["ops"]["gal_step"]}
        for arm in ("gal_compiled", "gal_no_compare"):
            if arm in s:
                row[f"{arm}_overhead_pct"] = s[arm]["overhead_pct"]
                if "compile_s" in s[arm]:
                    row[f"{arm}_compile_s"] = s[arm]["compile_s"]
        if "compiled_extra_work" in c:
            row["compiled_extra_work_pct"] = 100 * c["compiled_extra_work"]["ratio"]
        out["cases"][c["name"]] = row
    out["full_report"] = rep
    return out


def tar_runs(runs: Path, dest: Path, limit: int = 15 * 2**20) -> dict[str, Any]:
    """The run records (no checkpoints) as one tarball under ``limit`` bytes."""
    if not runs.is_dir():
        return {"written": False, "note": "no runs"}
    files = [p for p in sorted(runs.rglob("*")) if p.is_file() and not p.name.endswith((".pt", ".lock"))]
    with tarfile.open(dest, "w:gz") as tar:
        for p in files:
            tar.add(p, arcname=str(Path("runs") / p.relative_to(runs)))
    size = dest.stat().st_size
    if size > limit:
        dest.unlink()
        return {"written": False, "note": f"tarball {size} bytes > {limit}: left out"}
    return {"written": True, "bytes": size, "files": len(files)}
