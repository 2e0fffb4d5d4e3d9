"""One run of a scheduler (:mod:`experiments.launch`): the :class:`Job`, the run's
:class:`Claim` (the claims described in :mod:`experiments.launch`), and :func:`execute`, which
runs a job in this process, with the start-up of a pool worker (:func:`init_worker`)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import importlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CLAIM_NAME", "Claim", "Job", "LaunchError", "claim_state", "cpu_cores", "env_vars", "execute",
           "finished_for", "init_worker", "visible_gpus", "watch_parent"]

#: file name of a run's claim inside ``<run_dir>.partial/``
CLAIM_NAME = "claim"
#: seconds between heartbeats (mtime updates) of a held claim
HEARTBEAT_S = 30.0
#: a claim from another host without a heartbeat for this long is dead (node lost)
STALE_AFTER_S = float(os.environ.get("GAL_CLAIM_STALE_S", "600"))


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


def finished_for(job: Job) -> bool:
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


def _set_env(values: Mapping[str, str | None]) -> None:
    """Set each variable of ``values``; None unsets it."""
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def env_vars(values: Mapping[str, str | None]) -> Iterator[None]:
    """The environment with ``values`` set (None: unset) for the block, restored after it."""
    old = {k: os.environ.get(k) for k in values}
    _set_env(values)
    try:
        yield
    finally:
        _set_env(old)


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
    :class:`gal_suite.records.RunWriter` records in ``provenance.json`` (``launch``).
    """
    target = job.resolve()  # imports the entry point (and torch with it) before threads are set
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    job_id = _job_id(launcher)
    # OMP_NUM_THREADS: the thread count of a torch that the target imports only later
    with env_vars({"GAL_LAUNCHER": launcher, "GAL_JOB_ID": job_id, "OMP_NUM_THREADS": str(threads)}):
        if finished_for(job):
            return "skipped"
        claim = Claim.acquire(job.run_dir, launcher=launcher, job_id=job_id)
        if claim is None:
            return "busy"
        try:
            if finished_for(job):  # finished between the check and the claim
                return "skipped"
            return target(*job.args, **dict(job.kwargs))
        finally:
            claim.release()


def watch_parent(parent: int, poll_s: float = 0.5) -> None:
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


def init_worker(gpu_queue: Any, gpus: Sequence[str], parent: int | None = None) -> None:
    """Pool worker start: one GPU per worker (round robin) where GPUs exist; the worker exits
    when the scheduler that started it (``parent``) dies (:func:`watch_parent`)."""
    if parent is not None:
        watch_parent(parent)
    index = gpu_queue.get()
    os.environ["GAL_WORKER"] = str(index)
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]


def visible_gpus() -> list[str]:
    """GPU ids visible to this process (``CUDA_VISIBLE_DEVICES`` or all), without starting CUDA."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in (x.strip() for x in env.split(",")) if g and g != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []
