"""One run machinery for every runner of the paper's experiments: Table V (Sec. V-B,
:mod:`experiments.regression`), Tables I-III and the analyses of Sec. VI (Tables VI, VIII, Figs.
7, 8; :mod:`experiments.classification`), Table IV (:mod:`detr_gal.run`) and Fig. 4 (Sec. IV-D,
:mod:`experiments.toy3d`).

A runner describes its runs as a :class:`Task` (its config, plan, per-run settings, the function
that makes one run record, its data check and its selectors such as ``--methods``);
:func:`run_task` runs the missing runs of a plan and :func:`task_main` is its command line. Both
are the same for every task:

1. the launch options are checked, the config is loaded with the ``--set`` overrides and the
   plan made; every planned run's settings are computed (every config error before any run);
2. finished runs are skipped; a finished run made with other settings than requested is refused
   (:class:`experiments.stale_runs.StaleRuns`) unless ``--rerun-stale`` sets it aside;
3. the data of the missing runs is loaded once (fail fast, before any run starts);
4. under torchrun (``WORLD_SIZE > 1``, tasks with ``torchrun``) every process runs the same
   missing runs in step with DDP; otherwise they go to :func:`experiments.launch.run_jobs`
   (``--jobs``, ``--launcher``, ``--threads``; each run claimed, resumed from its checkpoint);
5. one summary line; a configuration, data or launch error is one ``error:`` line and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from experiments.common import ResumeMismatch, csv_list, init_distributed, set_threads
from experiments.launch import (
    Job,
    LaunchError,
    add_launch_arguments,
    check_launch,
    launch_kwargs,
    run_jobs,
    slurm_options,
)
from experiments.stale_runs import pending, stale_keys
from gal_suite.config import ConfigError, load_config, parse_overrides

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["PathParts", "RunOptions", "RunRequest", "Selector", "Task", "add_run_arguments", "run_specs", "run_task",
           "task_main"]

#: arguments a task's ``run_one`` may take besides ``(spec, cfg, runs_root)`` (``Task.job_options``)
JOB_OPTIONS = ("overrides", "retry_failed", "config_path", "progress", "force")


class PathParts:
    """A run spec whose record directory is ``<runs root>/<part>/<part>/...`` and whose label is
    its parts joined by ``/`` (the spec defines the property ``_parts``)."""

    _parts: Sequence[str]

    def run_dir(self, root: str | os.PathLike[str]) -> Path:
        return Path(root).joinpath(*self._parts)

    @property
    def label(self) -> str:
        return "/".join(self._parts)


@dataclasses.dataclass(frozen=True)
class Selector:
    """A command-line selector of a task's plan (``--methods a,b``); ``name`` is the keyword of
    ``Task.plan`` and the flag (``_`` -> ``-``). ``many``: a comma list, repeatable (``None``:
    the config's); else one value."""

    name: str
    help: str
    many: bool = True
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None
    required: bool = False


@dataclasses.dataclass(frozen=True)
class Task:
    """What a runner tells :func:`run_task` and :func:`task_main` (one per table or figure).

    ``plan(cfg, profile, seeds, **selection)`` -> the specs (each with ``run_dir(root)`` and
    ``label``); ``run_settings(cfg, spec)`` -> the settings a run's result depends on (hashed
    into its record, compared for stale runs by ``stale_of(run_dir, settings)``); ``run_one``:
    ``"module:function"`` called as ``function(spec, cfg, runs_root, **options)`` with the
    ``job_options`` named; ``check_data(cfg, todo)`` loads the missing runs' data;
    ``check_settings(settings, world)`` refuses a run's settings (e.g. for the torchrun world
    size). ``name`` and ``config_path`` may depend on the selection (the classification
    runner's ``--table``).
    """

    name: str | Callable[[Mapping[str, Any]], str]
    prog: str
    description: str
    config_path: Path | Callable[[Mapping[str, Any]], Path]
    runs_root: Path
    plan: Callable[..., list[Any]]
    run_settings: Callable[[Mapping[str, Any], Any], Mapping[str, Any]]
    run_one: str
    selectors: tuple[Selector, ...] = ()
    job_options: tuple[str, ...] = ("overrides", "retry_failed")
    check_data: Callable[[Mapping[str, Any], Sequence[Any]], Any] | None = None
    check_settings: Callable[[Mapping[str, Any], int], None] | None = None
    #: ``load(path, profile, overrides, seeds)`` -> cfg; default :func:`gal_suite.config.load_config`
    load: Callable[[Any, str, Mapping[str, Any] | None, Any], Mapping[str, Any]] | None = None
    stale_of: Callable[[Path, Mapping[str, Any]], list[str]] = stale_keys
    torchrun: bool = False
    #: False: a failed run is run again by every invocation (Fig. 4's paths take < 1 s)
    keep_failed: bool = True
    #: torch threads per run unless ``--threads`` (None: the config's ``num_threads``)
    default_threads: int | None = None
    #: offer ``--force`` (re-run every planned run; the task's ``run_one`` replaces the record)
    force: bool = False
    errors: tuple[type[BaseException], ...] = ()
    #: exit status when runs failed (0: failed runs are recorded and reported, not an error)
    failed_exit: int = 0
    profiles: str = "cpu (default) or paper"
    set_example: str = "train.epochs=2"
    extra_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    #: ``alt_main(args, request)`` -> exit status, or None for the plain run (``--until-decided``)
    alt_main: Callable[[argparse.Namespace, RunRequest], int | None] | None = None

    def label(self, selection: Mapping[str, Any]) -> str:
        return self.name(selection) if callable(self.name) else self.name

    def config_for(self, selection: Mapping[str, Any]) -> Path:
        return self.config_path(selection) if callable(self.config_path) else self.config_path

    def run(self, profile: str, seeds: int | Sequence[int] | None, selection: Mapping[str, Any],
            **options: Unpack[RunOptions]) -> dict[str, int]:
        """:func:`run_task` for ``profile``, ``seeds`` and ``selection`` (a runner's
        ``run_table``); ``options`` are :class:`RunRequest`'s other fields."""
        return run_task(self, RunRequest(profile=profile, seeds=seeds, selection=selection,
                                         **options))

    def main(self, argv: Sequence[str] | None = None) -> int:
        """The runner's command line (:func:`task_main`)."""
        return task_main(self, argv)


class RunOptions(TypedDict, total=False):
    """How a runner's ``run_table`` runs: :class:`RunRequest`'s fields besides profile, seeds
    and selection (same meanings and defaults)."""

    runs_root: str | os.PathLike[str] | None
    overrides: Mapping[str, Any] | None
    config_path: str | os.PathLike[str] | None
    progress: bool
    retry_failed: bool
    rerun_stale: bool
    force: bool
    jobs: int
    launcher: str
    threads: int | None
    slurm: Mapping[str, Any] | None


@dataclasses.dataclass
class RunRequest:
    """One invocation: which runs (profile, seeds, selection) and how (launch, stale, retry)."""

    profile: str = "cpu"
    seeds: int | Sequence[int] | None = None
    selection: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    runs_root: str | os.PathLike[str] | None = None  # None: the task's
    overrides: Mapping[str, Any] | None = None
    config_path: str | os.PathLike[str] | None = None  # None: the task's
    progress: bool = True
    retry_failed: bool = False
    rerun_stale: bool = False
    force: bool = False
    jobs: int = 1
    launcher: str = "local"
    threads: int | None = None
    slurm: Mapping[str, Any] | None = None


def run_specs(entry: str, specs: Sequence[Any], cfg: Mapping[str, Any], runs_root: Any,
              kwargs: Mapping[str, Any], counts: Mapping[str, int], *, retry_failed: bool,
              jobs: int, launcher: str, threads: int | None, slurm: Mapping[str, Any] | None,
              progress: bool, desc: str, skip_if: tuple[str, ...] | None = None) -> dict[str, int]:
    """Launch ``entry(spec, cfg, runs_root, **kwargs)`` for every spec (each has ``run_dir`` and
    ``label``) through :func:`experiments.launch.run_jobs` (``jobs`` at once with ``launcher``,
    ``threads`` torch threads per run, default the config's ``num_threads``); a run already
    complete (or failed, unless ``retry_failed``; or in ``skip_if`` when given) when its turn
    comes is skipped. Returns ``counts`` plus the launched runs' outcomes."""
    if skip_if is None:
        skip_if = ("complete",) if retry_failed else ("complete", "failed")
    job_list = [Job(entry, (spec, cfg, str(runs_root)), dict(kwargs), spec.run_dir(runs_root),
                    spec.label, skip_if) for spec in specs]
    done = run_jobs(job_list, jobs, launcher, threads or cfg["num_threads"] or None,
                    slurm_options(cfg, slurm), progress=progress, desc=desc)
    out = dict(counts)
    for k, v in done.items():
        out[k] = out.get(k, 0) + v
    return out


def _resolve(target: str) -> Callable[..., str]:
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _job_kwargs(task: Task, req: RunRequest, config_path: Any, inline: bool) -> dict[str, Any]:
    values = {"overrides": dict(req.overrides or {}), "retry_failed": req.retry_failed,
              "config_path": str(config_path), "progress": req.progress and inline,
              "force": req.force}
    return {k: values[k] for k in task.job_options}


def run_task(task: Task, req: RunRequest) -> dict[str, int]:
    """Run the missing runs of ``task``'s plan for ``req``; returns counts ``{"complete",
    "failed", "skipped"}`` (skipped: finished before, or meanwhile by another invocation). The
    steps are those of this module's docstring; a finished run made with other settings raises
    :class:`experiments.stale_runs.StaleRuns` (naming the differing keys) unless
    ``req.rerun_stale``, which sets it aside to ``<run>.stale`` and runs it again."""
    check_launch(req.jobs, req.launcher, req.threads)
    config_path = task.config_for(req.selection) if req.config_path is None else req.config_path
    load = task.load or (lambda path, profile, over, _seeds: load_config(path, profile, over))
    cfg = load(config_path, req.profile, req.overrides, req.seeds)
    world = int(os.environ.get("WORLD_SIZE", 1)) if task.torchrun else 1
    if world > 1 and (req.jobs > 1 or req.launcher != "local"):
        raise LaunchError("under torchrun (WORLD_SIZE > 1) runs go one after another: use "
                          "--jobs 1 --launcher local, or --jobs N without torchrun")
    plan = task.plan(cfg, req.profile, req.seeds, **req.selection)
    for spec in plan:  # every config error before any run starts
        settings = task.run_settings(cfg, spec)
        if task.check_settings is not None:
            task.check_settings(settings, world)
    owns_group = False
    if world > 1:
        set_threads(req.threads or cfg["num_threads"])
        owns_group = init_distributed(cfg)
    try:
        counts = _run_plan(task, req, cfg, plan, config_path, world)
    except BaseException:
        if owns_group:
            _leave_group(together=False)
        raise
    if owns_group:
        _leave_group(together=True)
    return counts


def _leave_group(*, together: bool) -> None:
    """Destroy the process group this runner created; ``together``: after a barrier, so that no
    rank tears down while another still talks to it (skipped when this rank failed)."""
    import torch.distributed as dist

    if together:
        dist.barrier()
    dist.destroy_process_group()


def _run_plan(task: Task, req: RunRequest, cfg: dict[str, Any], plan: list, config_path: Any,
              world: int) -> dict[str, int]:
    """The missing runs of ``plan``: in step on every rank under torchrun, else by ``run_specs``."""
    runs_root = task.runs_root if req.runs_root is None else req.runs_root
    retry = req.retry_failed or not task.keep_failed
    if req.force:
        todo, counts = list(plan), {"complete": 0, "failed": 0, "skipped": 0}
    else:
        todo, counts = pending(plan, runs_root, retry, lambda spec: task.run_settings(cfg, spec),
                               req.rerun_stale, stale_of=task.stale_of)
    if todo and task.check_data is not None:
        task.check_data(cfg, todo)  # fail fast, before any run starts
    desc = f"{task.label(req.selection)} runs"
    if world > 1:  # DDP: every rank runs the same plan in step, one run after another
        from tqdm.auto import tqdm

        run_one = _resolve(task.run_one)
        kwargs = _job_kwargs(task, req, config_path, inline=True)
        rank0 = int(os.environ.get("RANK", 0)) == 0
        bar = tqdm(todo, desc=desc, unit="run", disable=not (req.progress and rank0 and todo),
                   dynamic_ncols=True)
        for spec in bar:
            outcome = run_one(spec, cfg, runs_root, **kwargs)
            counts[outcome] = counts.get(outcome, 0) + 1
        bar.close()
        return counts
    inline = req.jobs == 1 and req.launcher == "local"  # per-run progress only one by one
    skip_if = () if req.force else ("complete",) if retry else ("complete", "failed")
    return run_specs(task.run_one, todo, cfg, runs_root,
                     _job_kwargs(task, req, config_path, inline), counts, retry_failed=retry,
                     jobs=req.jobs, launcher=req.launcher,
                     threads=req.threads or task.default_threads, slurm=req.slurm,
                     progress=req.progress, desc=desc, skip_if=skip_if)


# --------------------------------------------------------------------------- command line
def _positive_int(text: str) -> int:
    """``--seeds``: an integer >= 1 (argparse turns the ValueError into one usage line)."""
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return n


def add_run_arguments(ap: argparse.ArgumentParser, *, profiles: str, runs_root: str,
                      config: str, set_example: str) -> None:
    """The flags every runner takes: ``--profile --seeds --runs-root --config --set
    --retry-failed --rerun-stale --no-progress`` and the launch flags (``--jobs --launcher --threads
    --slurm-*``, :func:`experiments.launch.add_launch_arguments`)."""
    ap.add_argument("--profile", default="cpu", help=f"config profile: {profiles}")
    ap.add_argument("--seeds", type=_positive_int, default=None,
                    help="number of seeds (runs use seeds 0..N-1); default: the config's 'seeds'")
    ap.add_argument("--runs-root", default=runs_root,
                    help=f"where run records go (default {runs_root})")
    ap.add_argument("--config", default=None, help=f"config file (default: {config})")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help=f"override a config key, e.g. --set {set_example} (repeatable)")
    ap.add_argument("--retry-failed", action="store_true", help="re-run runs recorded as failed")
    ap.add_argument("--rerun-stale", action="store_true",
                    help="re-run finished runs made with other settings than requested (their "
                         "records are set aside to <run>.stale); without it such runs are refused")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_launch_arguments(ap)


def build_parser(task: Task) -> argparse.ArgumentParser:
    """The command line of ``task``: its selectors, its extra flags and the shared run flags."""
    ap = argparse.ArgumentParser(prog=task.prog, description=task.description)
    for sel in task.selectors:
        flags = [f"--{sel.name.replace('_', '-')}", *sel.aliases]
        if sel.many:
            ap.add_argument(*flags, dest=sel.name, action="append", metavar="A,B",
                            help=f"{sel.help} (comma list, repeatable)")
        else:
            ap.add_argument(*flags, dest=sel.name, choices=sel.choices, required=sel.required,
                            help=sel.help)
    if task.force:
        ap.add_argument("--force", action="store_true",
                        help="re-run every planned run, finished ones too (records replaced)")
    if task.extra_arguments is not None:
        task.extra_arguments(ap)
    config = task.config_path if isinstance(task.config_path, Path) else None
    add_run_arguments(ap, profiles=task.profiles, runs_root=str(task.runs_root),
                      config=config.name if config is not None else "the task's",
                      set_example=task.set_example)
    return ap


def request_from_args(task: Task, args: argparse.Namespace) -> RunRequest:
    """The :class:`RunRequest` of parsed flags (``--set`` parsed: a bad one is a ConfigError)."""
    selection = {}
    for sel in task.selectors:
        v = getattr(args, sel.name)
        selection[sel.name] = csv_list(",".join(v)) if sel.many and v else v
    return RunRequest(profile=args.profile, seeds=args.seeds, selection=selection,
                      runs_root=args.runs_root, overrides=parse_overrides(args.overrides),
                      config_path=args.config, progress=not args.no_progress,
                      retry_failed=args.retry_failed, rerun_stale=args.rerun_stale,
                      force=bool(getattr(args, "force", False)), **launch_kwargs(args))


def task_main(task: Task, argv: Sequence[str] | None = None) -> int:
    """``python -m <runner>``: run the missing runs of ``task`` and print one summary line;
    returns 0, ``task.failed_exit`` when runs failed, or 2 after one ``error:`` line (under
    torchrun a config error is said by rank 0 only: every rank fails the same checks)."""
    args = build_parser(task).parse_args(argv)
    errors = (ConfigError, ResumeMismatch, LaunchError, FileNotFoundError, *task.errors)
    t0 = time.monotonic()
    try:
        req = request_from_args(task, args)
        if task.alt_main is not None and (rc := task.alt_main(args, req)) is not None:
            return rc
        counts = run_task(task, req)
    except errors as e:
        if int(os.environ.get("RANK", 0)) == 0 or not isinstance(e, ConfigError):
            print(f"error: {e}", file=sys.stderr)
        return 2
    dt = time.monotonic() - t0
    print(f"{task.label(req.selection)} runs: {counts['complete']} complete, {counts['failed']} "
          f"failed, {counts['skipped']} skipped (already done); {dt:.1f}s "
          f"({math.ceil(dt / 60)} min) -> {req.runs_root}")
    return task.failed_exit if counts.get("failed", 0) else 0
