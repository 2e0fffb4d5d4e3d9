"""Job targets for tests/test_launch.py (importable by worker processes: tests/ is on sys.path)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from experiments.launch import Job, run_jobs


def marker_run(run_dir: str, marker: str, sleep_s: float = 0.05) -> str:
    """A minimal run record written as :class:`gal_suite.records.RunWriter` does (work in
    ``<run_dir>.partial``, then one atomic rename), without importing torch (fast scheduler
    processes); appends the run's name to ``marker`` once per execution."""
    partial = Path(run_dir + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    with open(marker, "a") as f:  # O_APPEND: one short line per write, never interleaved
        f.write(f"{Path(run_dir).name} {os.getpid()}\n")
    time.sleep(sleep_s)
    (partial / "metrics.json").write_text('{"x": 1.0}\n')
    (partial / "status.json").write_text('{"status": "complete", "reason": null}\n')
    os.replace(partial, run_dir)
    return "complete"


def marker_jobs(root: Path, marker: Path, n: int) -> list[Job]:
    return [Job("launch_helpers:marker_run", (str(root / f"run-{i}"), str(marker)), {},
                root / f"run-{i}", f"run-{i}") for i in range(n)]


def scheduler(root: str, marker: str, ready: str, go: str, n: int, jobs_n: int) -> None:
    """One scheduler process: wait for ``go`` (so that two start at once), run, print counts."""
    jobs = marker_jobs(Path(root), Path(marker), n)
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.005)
    counts = run_jobs(jobs, jobs_n=jobs_n, progress=False, poll_s=0.05)
    print(json.dumps(counts), flush=True)


def run_one_killed_at(spec: Any, cfg: Any, runs_root: str, epoch: int) -> str:
    """Table V's run_one whose process SIGKILLs itself right after the checkpoint of ``epoch``."""
    import experiments.regression as reg

    real = reg.run_epochs

    def run_epochs(writer: Any, **kw: Any) -> str:
        def on_epoch(e: int) -> None:
            if e == epoch:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)

        return real(writer, on_epoch=on_epoch, **kw)

    reg.run_epochs = run_epochs
    return reg.run_one(spec, cfg, runs_root)


def slow_scheduler(root: str, marker: str, n: int, jobs_n: int, sleep_s: float) -> None:
    """A scheduler whose ``n`` runs each sleep ``sleep_s`` (for killing it while they run)."""
    jobs = [Job("launch_helpers:marker_run", (str(Path(root) / f"run-{i}"), marker, sleep_s), {},
                Path(root) / f"run-{i}", f"run-{i}") for i in range(n)]
    run_jobs(jobs, jobs_n=jobs_n, progress=False, poll_s=0.05)
