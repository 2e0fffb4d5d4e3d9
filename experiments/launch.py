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

The job, its claim and :func:`execute` are in :mod:`experiments.jobs`, the backends (this process,
a worker pool, submitit) in :mod:`experiments.launch_backends`; this module holds the scheduler
and the command-line options, and re-exports the names runners use.

Example::

    jobs = [Job("experiments.regression:run_one", (spec, cfg, root), {}, spec.run_dir(root),
                spec.label) for spec in specs]
    counts = run_jobs(jobs, jobs_n=2)            # {"complete": .., "failed": .., "skipped": ..}
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from experiments.jobs import (
    CLAIM_NAME,
    Claim,
    Job,
    LaunchError,
    claim_state,
    cpu_cores,
    execute,
    finished_for,
)
from experiments.launch_backends import Inline, Pool, Submitit, require_slurm, require_submitit

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
#: Slurm settings (the ``slurm:`` section of an experiment config; the command line overrides)
SLURM_DEFAULTS: dict[str, Any] = {
    "partition": None, "account": None, "qos": None, "gpus_per_node": 0, "cpus_per_task": 0,
    "mem_gb": 0, "time_min": 60, "folder": None,
}


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
        require_submitit(launcher)
    if launcher == "slurm":
        require_slurm()


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
        backend = Inline(n_threads)
    elif launcher == "local":
        backend = Pool(min(jobs_n, len(jobs)), n_threads)
    else:
        folder = Path(slurm["folder"] or ".submitit") / desc.replace(" ", "_")
        backend = Submitit(launcher, jobs_n, n_threads, slurm, folder)
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
                    if isinstance(backend, Inline):
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
                    if isinstance(backend, Inline):
                        raise
                    continue
                if outcome == "busy":
                    waiting.append(job)
                    continue
                counts[outcome] = counts.get(outcome, 0) + 1
                bar.set_postfix_str(job.label)
                bar.update(1)
            for job in list(waiting):  # runs held elsewhere: finished, or owner died?
                if finished_for(job):
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
