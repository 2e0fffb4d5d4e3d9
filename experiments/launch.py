"""Many runs at once: a local worker pool, Slurm (through submitit), and run claims.

Every table of the paper is dozens to hundreds of independent runs (Table V: 180 per profile;
Tables I-II: optimizers x arms x seeds; Fig. 4: conventions x optimizers x arms x seeds). Each
entry point (``experiments.regression``, ``experiments.classification``, ``experiments.toy3d``)
enumerates its *missing* runs as :class:`Job` objects and hands them to :func:`run_jobs`, which
runs them

* ``launcher="local"``: in ``jobs_n`` worker processes (``spawn`` start method); each worker uses
  ``threads`` torch threads (default: cores // jobs_n) and, where GPUs exist, one GPU
  (``CUDA_VISIBLE_DEVICES``, round robin). ``jobs_n == 1`` runs the jobs in this process.
* ``launcher="slurm"``: as one Slurm job array through submitit's ``AutoExecutor``
  (``slurm_array_parallelism = jobs_n``); partition, account, QoS, GPUs, time, memory and CPUs come
  from the profile's ``slurm:`` section of the experiment config or the command line. The Slurm job
  id is recorded in each run's ``provenance.json`` (``launch.slurm_job_id``).
* ``launcher="submitit-local"``: submitit's local executor (a subprocess per job, at most
  ``jobs_n`` at once): the Slurm code path without Slurm, for CI.

Claims (concurrency safety). Before a job runs, its worker claims the run: it creates
``<run_dir>.partial/claim`` atomically (written to a temporary file first, then hard-linked into
place; the link fails if a claim exists, like ``O_CREAT | O_EXCL``) holding the owner's host, pid,
the pid's start time, the start time and a token. A claim whose owner is dead (same host: the pid
is gone, a zombie, or a different process now; another host: no heartbeat for
``STALE_AFTER_S``) is taken over (under an ``flock`` of the ``.partial`` directory, so two takers
cannot both win) and the run resumes from its checkpoint; a claim whose owner is alive makes the
scheduler wait for that run (it counts as skipped once finished elsewhere, and is taken over if its
owner dies). A finished run is never re-run; the claim is removed when the run finishes or fails
(it moves with ``.partial`` into the finished directory on the atomic rename and is deleted there).

Determinism: a run's result depends on its seed, its settings and its torch thread count, never on
which worker or launcher ran it (each run seeds every generator itself; workers are fresh
processes). The thread count is ``threads`` when given, else the caller passes the experiment
config's ``num_threads`` when set, else cores // jobs_n; it is recorded in provenance
(``launch.num_threads``).

Example::

    jobs = [Job("experiments.regression:run_one", (spec, cfg, root), {}, spec.run_dir(root),
                spec.label) for spec in specs]
    counts = run_jobs(jobs, jobs_n=2)            # {"complete": .., "failed": .., "skipped": ..}
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import contextlib
import dataclasses
import datetime as _dt
import importlib
import json
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

__all__ = [
    "CLAIM_NAME",
    "LAUNCHERS",
    "Claim",
    "Job",
    "LaunchError",
    "SLURM_DEFAULTS",
    "add_launch_arguments",
    "check_launch",
    "claim_state",
    "cpu_cores",
    "execute",
    "launch_kwargs",
    "run_jobs",
]

LAUNCHERS = ("local", "slurm", "submitit-local")
#: file name of a run's claim inside ``<run_dir>.partial/``
CLAIM_NAME = "claim"
#: seconds between heartbeats (mtime updates) of a held claim
HEARTBEAT_S = 30.0
#: a claim from another host without a heartbeat for this long is dead (node lost)
STALE_AFTER_S = float(os.environ.get("GAL_CLAIM_STALE_S", "600"))
#: Slurm settings (the ``slurm:`` section of an experiment config; the command line overrides)
SLURM_DEFAULTS: dict[str, Any] = {
    "partition": None, "account": None, "qos": None, "gpus_per_node": 0, "cpus_per_task": 0,
    "mem_gb": 0, "time_min": 60, "folder": None,
}
_REPO = Path(__file__).resolve().parents[1]


class LaunchError(RuntimeError):
    """Bad launch options, a missing launcher, or jobs that ended without a record."""


# --------------------------------------------------------------------------- jobs
@dataclasses.dataclass(frozen=True, eq=False)
class Job:
    """One run to execute, picklable (it travels to worker processes and Slurm nodes).

    Args:
        target: ``"module:function"``; called as ``function(*args, **kwargs)`` and returns the
            run's outcome (``"complete"``, ``"failed"``, ``"skipped"``, ...).
        args, kwargs: its arguments (picklable: specs, the resolved config, paths).
        run_dir: the run's record directory; claimed before ``target`` is called.
        label: short name for the progress bar and messages.
        skip_if: record statuses that make the job a no-op (``("complete",)`` re-runs failed runs).
        since: epoch seconds when the scheduler planned the job: a record finished after it (by
            another scheduler) is not run again.
    """

    target: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    run_dir: str | os.PathLike[str]
    label: str
    skip_if: tuple[str, ...] = ("complete", "failed")
    since: float = dataclasses.field(default_factory=time.time)

    def resolve(self) -> Callable[..., str]:
        module, _, name = self.target.partition(":")
        if not name:
            raise LaunchError(f"job target {self.target!r} is not 'module:function'")
        return getattr(importlib.import_module(module), name)


def _record_status(run_dir: Path) -> tuple[str | None, float]:
    """(status of the finished record or None, mtime of its status.json or 0)."""
    p = run_dir / "status.json"
    try:
        mtime = p.stat().st_mtime
        with open(p) as f:
            return json.load(f).get("status"), mtime
    except (OSError, ValueError):
        return None, 0.0


def _finished_for(job: Job) -> bool:
    """True when ``job`` must not run: its record is finished with a status in ``skip_if``, or was
    (re)written by someone else after the job was planned."""
    st, mtime = _record_status(Path(job.run_dir))
    return st is not None and (st in job.skip_if or mtime >= job.since)


# --------------------------------------------------------------------------- claims
def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a local pid from /proc, or None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return rest[0], rest[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, pid_start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    st = _proc_stat(pid)
    if st is None:
        return True
    state, start = st
    return state not in ("Z", "X") and (pid_start is None or start == pid_start)


def _owner_alive(info: Mapping[str, Any] | None, mtime: float) -> bool:
    """Whether the owner of a claim is alive (see the module docstring)."""
    age = time.time() - mtime
    if info is None:  # unreadable: trust it while it is young
        return age < STALE_AFTER_S
    if info.get("host") == socket.gethostname():
        try:
            return _pid_alive(int(info["pid"]), info.get("pid_start"))
        except (KeyError, TypeError, ValueError):
            return age < STALE_AFTER_S
    return age < STALE_AFTER_S


def _read_claim(path: Path) -> tuple[dict[str, Any] | None, float] | None:
    """(content or None if unreadable, mtime) of a claim file, or None if there is none."""
    try:
        mtime = path.stat().st_mtime
        with open(path) as f:
            return json.load(f), mtime
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None, mtime


def _partial(run_dir: str | os.PathLike[str]) -> Path:
    return Path(str(run_dir) + ".partial")


def claim_state(run_dir: str | os.PathLike[str]) -> str:
    """``"none"`` (no claim), ``"alive"`` (held by a live owner) or ``"dead"`` (takeable)."""
    got = _read_claim(_partial(run_dir) / CLAIM_NAME)
    if got is None:
        return "none"
    return "alive" if _owner_alive(*got) else "dead"


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """An exclusive ``flock`` of a directory (released by the kernel if the holder dies)."""
    import fcntl

    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class Claim:
    """A held claim on one run (see the module docstring); :meth:`acquire` makes one."""

    def __init__(self, run_dir: Path, token: str) -> None:
        self.run_dir = run_dir
        self.token = token
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                      name=f"claim-heartbeat {run_dir.name}")
        self._beat.start()

    @property
    def paths(self) -> tuple[Path, Path]:
        """Where the claim file is: in ``.partial/`` while running, in the record once finished."""
        return _partial(self.run_dir) / CLAIM_NAME, self.run_dir / CLAIM_NAME

    @classmethod
    def acquire(cls, run_dir: str | os.PathLike[str], **extra: Any) -> Claim | None:
        """Claim ``run_dir``; None when a live owner holds it. A dead owner's claim is taken over."""
        run_dir = Path(run_dir)
        partial = _partial(run_dir)
        token = uuid.uuid4().hex
        st = _proc_stat(os.getpid())
        info = {"host": socket.gethostname(), "pid": os.getpid(),
                "pid_start": st[1] if st else None, "token": token,
                "start_time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                **{k: v for k, v in extra.items() if v is not None}}
        for _ in range(20):  # the .partial dir may vanish under us (a claimant cleaning up)
            try:
                partial.mkdir(parents=True, exist_ok=True)
                # written beside the run, not inside .partial/: if another claimant finishes the
                # run and renames .partial/ meanwhile, no temporary file ends up in its record
                tmp = partial.parent / f".{run_dir.name}.{CLAIM_NAME}.{token}.tmp"
                with open(tmp, "w") as f:
                    json.dump(info, f)
                try:
                    if cls._link(tmp, partial / CLAIM_NAME) or cls._take_over(partial, tmp):
                        return cls(run_dir, token)
                    return None
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
            except FileNotFoundError:
                time.sleep(0.01)
        raise LaunchError(f"could not claim {run_dir}: its .partial directory keeps disappearing")

    @staticmethod
    def _link(tmp: Path, claim: Path) -> bool:
        try:
            os.link(tmp, claim)  # atomic, fails if the claim exists (as O_CREAT | O_EXCL)
            return True
        except FileExistsError:
            return False

    @classmethod
    def _take_over(cls, partial: Path, tmp: Path) -> bool:
        """Replace a dead owner's claim by ours (serialised by a lock of the directory)."""
        claim = partial / CLAIM_NAME
        with _dir_lock(partial):
            got = _read_claim(claim)
            if got is not None:
                if _owner_alive(*got):
                    return False
                claim.unlink()
            return cls._link(tmp, claim)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            for p in self.paths:
                with contextlib.suppress(OSError):
                    os.utime(p)
                    break

    def release(self) -> None:
        """Remove the claim (wherever it is now) and an empty ``.partial`` directory."""
        self._stop.set()
        for p in self.paths:
            got = _read_claim(p)
            if got is not None and got[0] is not None and got[0].get("token") == self.token:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        with contextlib.suppress(OSError):
            _partial(self.run_dir).rmdir()  # only if empty (a run that was skipped after claiming)


# --------------------------------------------------------------------------- one job
def cpu_cores() -> int:
    """CPU cores this process may use (its affinity mask: a Slurm or cgroup allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _env(values: Mapping[str, str | None]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _job_id(launcher: str) -> str | None:
    if launcher not in ("slurm", "submitit-local"):
        return None
    try:
        import submitit

        return str(submitit.JobEnvironment().job_id)
    except Exception:  # not inside a submitit job
        return os.environ.get("SLURM_JOB_ID")


def execute(job: Job, threads: int, launcher: str = "local") -> str:
    """Run one job here: set the torch thread count, claim the run, call the target, release.

    Returns the target's outcome, ``"skipped"`` (finished meanwhile) or ``"busy"`` (claimed by a
    live owner). The launcher and job id go into the environment that
    :class:`gal.records.RunWriter` records in ``provenance.json`` (``launch``).
    """
    target = job.resolve()  # imports the entry point (and torch with it) before threads are set
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    job_id = _job_id(launcher)
    # OMP_NUM_THREADS: the thread count of a torch that the target imports only later
    with _env({"GAL_LAUNCHER": launcher, "GAL_JOB_ID": job_id, "OMP_NUM_THREADS": str(threads)}):
        if _finished_for(job):
            return "skipped"
        claim = Claim.acquire(job.run_dir, launcher=launcher, job_id=job_id)
        if claim is None:
            return "busy"
        try:
            if _finished_for(job):  # finished between the check and the claim
                return "skipped"
            return target(*job.args, **dict(job.kwargs))
        finally:
            claim.release()


def _watch_parent(parent: int, poll_s: float = 0.5) -> None:
    """End this process as soon as its parent ``parent`` is gone (``kill -9`` of a ``--jobs N``
    scheduler): the worker's ppid changes to init or a subreaper. A run in progress stops as if
    killed; its checkpoint and claim let the next scheduler resume it. (Polling rather than
    Linux's ``PR_SET_PDEATHSIG``, which fires when the parent *thread* that forked the worker
    ends: the pool may start workers from a helper thread.)"""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="gal-parent-watch", daemon=True).start()


def _init_worker(gpu_queue: Any, gpus: Sequence[str], parent: int | None = None) -> None:
    """Pool worker start: one GPU per worker (round robin) where GPUs exist; the worker exits
    when the scheduler that started it (``parent``) dies (:func:`_watch_parent`)."""
    if parent is not None:
        _watch_parent(parent)
    index = gpu_queue.get()
    os.environ["GAL_WORKER"] = str(index)
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]


def _visible_gpus() -> list[str]:
    """GPU ids visible to this process (``CUDA_VISIBLE_DEVICES`` or all), without starting CUDA."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in (x.strip() for x in env.split(",")) if g and g != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


# --------------------------------------------------------------------------- backends
class _Inline:
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


class _Pool:
    """Local worker processes (spawn), one thread budget and one GPU each."""

    def __init__(self, jobs_n: int, threads: int) -> None:
        import multiprocessing as mp

        self.cap: int | None = jobs_n  # submit as workers free up: nothing queued to cancel
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        for i in range(jobs_n):
            queue.put(i)
        self.threads = threads
        self.pool = cf.ProcessPoolExecutor(jobs_n, mp_context=ctx, initializer=_init_worker,
                                           initargs=(queue, _visible_gpus(), os.getpid()))

    def submit(self, jobs: Sequence[Job]) -> list[Any]:
        return [self.pool.submit(execute, j, self.threads, "local") for j in jobs]

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Any) -> str:
        return handle.result()

    def close(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)


def _require_submitit(launcher: str) -> Any:
    try:
        import submitit
    except ImportError:
        raise LaunchError(
            f"--launcher {launcher} needs the 'submitit' package, which is not installed; install "
            f"it (.venv/bin/pip install submitit, or `make venv`), or use --launcher local"
        ) from None
    return submitit


def _require_slurm() -> None:
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if missing:
        raise LaunchError(
            f"--launcher slurm needs Slurm, but there is no {' or '.join(f'`{t}`' for t in missing)} "
            f"on PATH (run on a Slurm login node); here use --launcher local --jobs N "
            f"(or submitit-local)"
        )


class _Submitit:
    """submitit: Slurm job arrays, or its local executor (a subprocess per job)."""

    def __init__(self, launcher: str, jobs_n: int, threads: int, slurm: Mapping[str, Any],
                 folder: Path) -> None:
        submitit = _require_submitit(launcher)
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
        with _env({"PYTHONPATH": path}):  # the jobs import `experiments` from this checkout
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


# --------------------------------------------------------------------------- scheduler
def check_launch(jobs_n: int, launcher: str, threads: int | None = None) -> None:
    """Refuse bad launch options with one clear :class:`LaunchError` (before any run starts)."""
    if isinstance(jobs_n, bool) or not isinstance(jobs_n, int) or jobs_n < 1:
        raise LaunchError(f"--jobs/JOBS must be a positive integer (the number of runs at once), "
                          f"got {jobs_n!r}")
    if launcher not in LAUNCHERS:
        raise LaunchError(f"unknown launcher {launcher!r}; choose from {', '.join(LAUNCHERS)}")
    if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
        raise LaunchError(f"--threads must be a positive integer, got {threads!r}")
    if launcher in ("slurm", "submitit-local"):
        _require_submitit(launcher)
    if launcher == "slurm":
        _require_slurm()


def run_jobs(
    jobs: Sequence[Job],
    jobs_n: int = 1,
    launcher: str = "local",
    threads: int | None = None,
    slurm_opts: Mapping[str, Any] | None = None,
    *,
    progress: bool = True,
    desc: str = "runs",
    poll_s: float = 1.0,
) -> dict[str, int]:
    """Run ``jobs`` with ``jobs_n`` at once; returns ``{"complete", "failed", "skipped", ...}``.

    One progress bar over all jobs. A job whose run is claimed by a live owner (another worker or
    another scheduler) is waited for: it counts as ``skipped`` once finished elsewhere and is
    taken over if its owner dies. The first exception raised by a job (e.g. a checkpoint made
    with other settings) stops the scheduling of new jobs and is re-raised once the running ones
    end; jobs whose worker died (SIGKILL, lost Slurm job) raise :class:`LaunchError` at the end
    (their claims are dead: the next call takes them over and resumes them).

    Args:
        jobs: the runs to do (normally only the missing ones).
        jobs_n: runs at once (local worker processes; Slurm array parallelism).
        launcher: ``"local"``, ``"slurm"`` or ``"submitit-local"``.
        threads: torch threads per run; default cores // jobs_n (at least 1).
        slurm_opts: keys of :data:`SLURM_DEFAULTS` (``folder``: where submitit keeps its pickles
            and logs; default ``.submitit/`` in the working directory).
        progress: show the progress bar.
        desc: the bar's label.
        poll_s: seconds between checks of runs held by another owner.
    """
    check_launch(jobs_n, launcher, threads)
    counts: dict[str, int] = {"complete": 0, "failed": 0, "skipped": 0}
    if not jobs:
        return counts
    slurm = {**SLURM_DEFAULTS, **{k: v for k, v in (slurm_opts or {}).items() if v is not None}}
    if threads:
        n_threads = int(threads)
    elif launcher == "slurm":  # the nodes' cores are not ours: the allocation's CPUs, or 1
        n_threads = int(slurm["cpus_per_task"] or 1)
    else:
        n_threads = max(1, cpu_cores() // jobs_n)
    backend: Any
    if launcher == "local" and jobs_n == 1:
        backend = _Inline(n_threads)
    elif launcher == "local":
        backend = _Pool(min(jobs_n, len(jobs)), n_threads)
    else:
        folder = Path(slurm["folder"] or ".submitit") / desc.replace(" ", "_")
        backend = _Submitit(launcher, jobs_n, n_threads, slurm, folder)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="run", disable=not progress, dynamic_ncols=True)
    pending: collections.deque[Job] = collections.deque(jobs)
    inflight: list[tuple[Any, Job]] = []  # (backend handle, job)
    waiting: list[Job] = []  # claimed by a live owner elsewhere
    errors: list[BaseException] = []
    lost: list[str] = []
    cancel = False
    try:
        while pending or inflight or waiting:
            if pending and not errors and not lost:
                room = len(pending) if backend.cap is None else backend.cap - len(inflight)
                batch = [pending.popleft() for _ in range(max(0, min(room, len(pending))))]
                if batch:
                    if isinstance(backend, _Inline):
                        bar.set_postfix_str(batch[0].label)
                    inflight.extend(zip(backend.submit(batch), batch, strict=True))
            elif errors or lost:
                pending.clear()
                waiting.clear()
            if inflight:
                done_handles = backend.wait([h for h, _ in inflight], timeout=poll_s)
            else:
                done_handles = []
                time.sleep(poll_s)
            done = [(h, j) for h, j in inflight if any(h is d for d in done_handles)]
            inflight = [(h, j) for h, j in inflight if not any(h is d for d in done_handles)]
            for h, job in done:
                try:
                    outcome = backend.result(h)
                except BrokenProcessPool:
                    lost.append(job.label)
                    continue
                except LaunchError as e:
                    lost.append(f"{job.label} ({e})")
                    continue
                except BaseException as e:  # the job's own error: stop, report after the rest
                    errors.append(e)
                    if isinstance(backend, _Inline):
                        raise
                    continue
                if outcome == "busy":
                    waiting.append(job)
                    continue
                counts[outcome] = counts.get(outcome, 0) + 1
                bar.set_postfix_str(job.label)
                bar.update(1)
            for job in list(waiting):  # runs held elsewhere: finished, or owner died?
                if _finished_for(job):
                    waiting.remove(job)
                    counts["skipped"] += 1
                    bar.update(1)
                elif claim_state(job.run_dir) != "alive":
                    waiting.remove(job)
                    pending.append(job)
    except BaseException:
        cancel = True
        raise
    finally:
        bar.close()
        backend.close(cancel=cancel or bool(errors) or bool(lost))
    if errors:
        raise errors[0]
    if lost:
        raise LaunchError(
            f"{len(lost)} run(s) ended without a record (worker killed, or its job failed): "
            f"{'; '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}. Run the same command again: "
            f"finished runs are skipped and these resume from their checkpoints")
    return counts


# --------------------------------------------------------------------------- command line
def add_launch_arguments(ap: argparse.ArgumentParser) -> None:
    """The launch flags every experiment entry point takes (``--jobs``, ``--launcher``, ...)."""
    g = ap.add_argument_group("launch (many runs at once)")
    g.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="runs at once: local worker processes, or the Slurm array's parallelism "
                        "(default 1)")
    g.add_argument("--launcher", default="local", choices=LAUNCHERS,
                   help="local (default): worker processes here; slurm: a Slurm job array via "
                        "submitit; submitit-local: submitit's local executor (CI)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads per run (default: the config's num_threads if set, else "
                        "cores / jobs); results depend on it")
    g.add_argument("--slurm-partition", help="Slurm partition (default: the profile's slurm.partition)")
    g.add_argument("--slurm-account", help="Slurm account")
    g.add_argument("--slurm-qos", help="Slurm QoS")
    g.add_argument("--slurm-gpus", type=int, metavar="N", help="GPUs per run")
    g.add_argument("--slurm-time", type=int, metavar="MIN", help="time limit per run, minutes")
    g.add_argument("--slurm-mem-gb", type=float, metavar="GB", help="memory per run")
    g.add_argument("--slurm-cpus", type=int, metavar="N", help="CPUs per run (default: --threads)")
    g.add_argument("--slurm-folder", help="submitit's folder for job pickles and logs "
                                          "(default .submitit/)")


def launch_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``jobs, launcher, threads, slurm`` keyword arguments of a ``run_table`` from parsed flags."""
    slurm = {"partition": args.slurm_partition, "account": args.slurm_account,
             "qos": args.slurm_qos, "gpus_per_node": args.slurm_gpus,
             "time_min": args.slurm_time, "mem_gb": args.slurm_mem_gb,
             "cpus_per_task": args.slurm_cpus, "folder": args.slurm_folder}
    return {"jobs": args.jobs, "launcher": args.launcher, "threads": args.threads,
            "slurm": {k: v for k, v in slurm.items() if v is not None}}


def slurm_options(cfg: Mapping[str, Any], cli: Mapping[str, Any] | None) -> dict[str, Any]:
    """The profile's ``slurm:`` section overridden by the command line's Slurm flags."""
    out = dict(SLURM_DEFAULTS)
    out.update({k: v for k, v in dict(cfg.get("slurm") or {}).items() if v is not None})
    out.update({k: v for k, v in dict(cli or {}).items() if v is not None})
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit("experiments.launch is a library; run python -m experiments.regression --jobs N ...")
