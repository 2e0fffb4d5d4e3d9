"""Where a scheduler's jobs run (:func:`experiments.launch.run_jobs`): in this process
(:class:`Inline`), in local worker processes (:class:`Pool`) or through submitit (Slurm job arrays
or its local executor, :class:`Submitit`). Each backend has ``submit``, ``wait``, ``result`` and
``close``, and ``cap``: how many jobs it takes at once (None: all)."""

from __future__ import annotations

import concurrent.futures as cf
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.jobs import Job, LaunchError, env_vars, execute, init_worker, visible_gpus

__all__ = ["Inline", "Pool", "Submitit", "require_slurm", "require_submitit"]

_REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- backends
class Inline:
    """``jobs_n == 1``, local: each job runs in this process (no start-up cost)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.cap: int | None = 1

    def submit(self, jobs: Sequence[Job]) -> list[Any]:
        return list(jobs)  # the job is its own handle

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        return list(handles[:1])

    def result(self, handle: Any) -> str:
        return execute(handle, self.threads, "local")

    def close(self, cancel: bool = False) -> None:
        pass


class Pool:
    """Local worker processes (spawn), one thread budget and one GPU each."""

    def __init__(self, jobs_n: int, threads: int) -> None:
        import multiprocessing as mp

        self.cap: int | None = jobs_n  # submit as workers free up: nothing queued to cancel
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        for i in range(jobs_n):
            queue.put(i)
        self.threads = threads
        self.pool = cf.ProcessPoolExecutor(jobs_n, mp_context=ctx, initializer=init_worker,
                                           initargs=(queue, visible_gpus(), os.getpid()))

    def submit(self, jobs: Sequence[Job]) -> list[Any]:
        return [self.pool.submit(execute, j, self.threads, "local") for j in jobs]

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Any) -> str:
        return handle.result()

    def close(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)


def require_submitit(launcher: str) -> Any:
    try:
        import submitit
    except ImportError:
        raise LaunchError(
            f"--launcher {launcher} needs the 'submitit' package, which is not installed; install "
            f"it (.venv/bin/pip install submitit, or `make venv`), or use --launcher local"
        ) from None
    return submitit


def require_slurm() -> None:
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if missing:
        raise LaunchError(
            f"--launcher slurm needs Slurm, but there is no {' or '.join(f'`{t}`' for t in missing)} "
            f"on PATH (run on a Slurm login node); here use --launcher local --jobs N "
            f"(or submitit-local)"
        )


class Submitit:
    """submitit: Slurm job arrays, or its local executor (a subprocess per job)."""

    def __init__(self, launcher: str, jobs_n: int, threads: int, slurm: Mapping[str, Any],
                 folder: Path) -> None:
        submitit = require_submitit(launcher)
        self.launcher, self.threads = launcher, threads
        self.cap = jobs_n if launcher == "submitit-local" else None
        self.ex = submitit.AutoExecutor(folder=folder,
                                        cluster="slurm" if launcher == "slurm" else "local")
        params: dict[str, Any] = {
            "timeout_min": int(slurm.get("time_min") or 60),
            "cpus_per_task": int(slurm.get("cpus_per_task") or threads),
            "gpus_per_node": int(slurm.get("gpus_per_node") or 0),
            "tasks_per_node": 1, "nodes": 1, "name": "gal",
        }
        if slurm.get("mem_gb"):
            params["mem_gb"] = float(slurm["mem_gb"])
        if launcher == "slurm":
            params["slurm_array_parallelism"] = jobs_n
            for key in ("partition", "account", "qos"):
                if slurm.get(key):
                    params[f"slurm_{key}"] = str(slurm[key])
        self.ex.update_parameters(**params)

    def submit(self, jobs: Sequence[Job]) -> list[Any]:
        path = os.pathsep.join(p for p in (str(_REPO), os.environ.get("PYTHONPATH")) if p)
        with env_vars({"PYTHONPATH": path}):  # the jobs import `experiments` from this checkout
            if self.launcher == "slurm":
                return list(self.ex.map_array(execute, list(jobs), [self.threads] * len(jobs),
                                              [self.launcher] * len(jobs)))
            return [self.ex.submit(execute, j, self.threads, self.launcher) for j in jobs]

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        end = time.monotonic() + timeout
        while True:
            done = [h for h in handles if h.done()]
            if done or time.monotonic() >= end:
                return done
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

    def result(self, handle: Any) -> str:
        try:
            return handle.result()
        except Exception as e:  # submitit wraps the job's error (FailedJobError, UncompletedJobError)
            lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
            raise LaunchError(f"job {handle.job_id} failed: {lines[-1] if lines else e} "
                              f"(log: {handle.paths.stderr})") from None

    def close(self, cancel: bool = False) -> None:
        pass
