"""Wall time of a fresh ``make table5`` (Table V of the paper) with ``JOBS=1`` vs ``JOBS=2``.

    PYTHONPATH=. python benchmarks/jobs_speedup.py [--profile cpu] [--jobs 1,2] [--repeats 1]
        [--out results/benchmarks/jobs_speedup.json] [--smoke] [--keep]

For each ``JOBS`` value this times, in a fresh temporary runs root (``results/runs`` is never
touched), exactly what ``make table5 JOBS=<n>`` runs::

    python -m experiments.regression --profile <p> --runs-root <tmp>/runs/table5 --jobs <n>
    gal table 5 --runs <tmp>/runs --out <tmp>/tables

and checks that every run's ``metrics.json`` is byte-identical across the ``JOBS`` values (a run's
result must not depend on how many ran at once). The report stores the wall times, the ratio
``JOBS=2 / JOBS=1`` against the target (<= 0.6 on a 2-core machine), the machine (cores, load
average before and after each command: the measurement is only meaningful on an idle machine), the
git commit, and the ``JOBS`` value that ``make reproduce`` should default to (2 where the target is
met, else 1). With ``--repeats R`` the ``JOBS`` values alternate (1 2 2 1 ...) and the median is
used. ``--smoke`` runs a tiny table (diabetes, unscaled variant, 1 seed, 2 epochs) to check the
script itself; its report says so and must not be committed as the measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.6
SMOKE_ARGS = ["--datasets", "diabetes", "--variants", "paper", "--seeds", "1",
              "--set", "datasets.diabetes.epochs=2"]


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _timed(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    load_before = _load()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return {"cmd": cmd, "wall_s": round(wall, 3), "load_before": load_before,
            "load_after": _load(), "stdout_tail": proc.stdout.strip().splitlines()[-1:]}


def _metrics(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("metrics.json"))}


def run_once(jobs: int, profile: str, extra: list[str], work: Path, env: dict[str, str]) -> dict:
    """One fresh ``make table5 JOBS=<jobs>`` in ``work``: (timings, metrics by run)."""
    runs = work / "runs"
    gal = Path(sys.executable).with_name("gal")
    steps = [
        _timed([sys.executable, "-m", "experiments.regression", "--profile", profile,
                "--runs-root", str(runs / "table5"), "--jobs", str(jobs), "--no-progress",
                *extra], env),
        _timed([str(gal) if gal.exists() else sys.executable, *([] if gal.exists() else
                ["-m", "gal_suite.cli"]), "table", "5", "--runs", str(runs), "--out",
                str(work / "tables")], env),
    ]
    return {"jobs": jobs, "wall_s": round(sum(s["wall_s"] for s in steps), 3), "steps": steps,
            "metrics": _metrics(runs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--jobs", default="1,2", help="comma list of JOBS values (first = reference)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "results" / "benchmarks" / "jobs_speedup.json"))
    ap.add_argument("--smoke", action="store_true", help="tiny table: checks the script only")
    ap.add_argument("--keep", action="store_true", help="keep the temporary runs roots")
    args = ap.parse_args(argv)
    values = [int(j) for j in args.jobs.split(",")]
    extra = SMOKE_ARGS if args.smoke else []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    order: list[int] = []
    for r in range(args.repeats):
        order += values if r % 2 == 0 else values[::-1]
    results: dict[int, list[dict]] = {j: [] for j in values}
    base = Path(tempfile.mkdtemp(prefix="gal-jobs-speedup-"))
    try:
        for i, j in enumerate(order):
            res = run_once(j, args.profile, extra, base / f"{i}-jobs{j}", env)
            print(f"JOBS={j}: {res['wall_s']:.1f} s (load before {res['steps'][0]['load_before']})",
                  flush=True)
            results[j].append(res)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    ref = results[values[0]][0]["metrics"]
    identical = all(r["metrics"] == ref for rs in results.values() for r in rs)
    median = {j: statistics.median(r["wall_s"] for r in rs) for j, rs in results.items()}
    ratios = {f"jobs{j}_over_jobs{values[0]}": round(median[j] / median[values[0]], 3)
              for j in values[1:]}
    ratio2 = median[2] / median[1] if 1 in median and 2 in median else None
    met = ratio2 is not None and ratio2 <= TARGET
    start_load = results[values[0]][0]["steps"][0]["load_before"]
    report = {
        "benchmark": "fresh `make table5` (Table V) wall time vs JOBS",
        "smoke": bool(args.smoke),
        "profile": args.profile,
        "extra_args": extra,
        "jobs_values": values,
        "order": order,
        "median_wall_s": {str(j): round(v, 3) for j, v in median.items()},
        "ratios": ratios,
        "target_jobs2_over_jobs1": TARGET,
        "target_met": met,
        "recommended_reproduce_jobs": 2 if met else 1,
        "records_identical_across_jobs": identical,
        "n_runs": len(ref),
        "runs": {str(j): [{k: v for k, v in r.items() if k != "metrics"} for r in rs]
                 for j, rs in results.items()},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "load_at_start": start_load,
                    "idle_at_start": bool(start_load) and start_load[0] < 0.5},
        "git_commit": _git_commit(),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"median wall: {report['median_wall_s']}; {ratios}; target <= {TARGET}: "
          f"{'met' if met else 'not met'}; records identical: {identical}; "
          f"make reproduce should use JOBS={report['recommended_reproduce_jobs']} -> {out}")
    if not identical:
        print("error: metrics differ between JOBS values", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
