"""The one runner of every table and figure (experiments.runner): a fake task through
run_task / task_main - pending runs, stale refusal, --rerun-stale, --retry-failed, --force,
selectors, settings checked before any run, summary counts and exit codes."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from experiments import runner
from experiments.common import StaleRuns, check_choice, config_hash
from experiments.runner import RunRequest, Selector, Task, run_task, task_main
from gal_suite.config import ConfigError
from gal_suite.records import RunWriter

CONFIG = """\
common:
  seeds: 2
  num_threads: 1
  lr: 0.1
  methods: [a, b]
  fail: []
  log: ""
profiles:
  cpu: {}
  other:
    lr: 0.2
"""


def _log(cfg: Mapping[str, Any], line: str) -> None:
    """The fake task's data checks and runs, in order, one line each in ``cfg["log"]`` (a file:
    the launcher imports run_one from its module path, another module object than pytest's)."""
    with open(cfg["log"], "a") as f:
        f.write(line + "\n")


@dataclasses.dataclass(frozen=True)
class Spec:
    profile: str
    method: str
    seed: int

    def run_dir(self, root: str | os.PathLike[str]) -> Path:
        return Path(root) / "fake" / self.profile / self.method / f"seed-{self.seed}"

    @property
    def label(self) -> str:
        return f"fake/{self.profile}/{self.method}/seed-{self.seed}"


def plan(cfg: Mapping[str, Any], profile: str, seeds: int | Sequence[int] | None,
         methods: Sequence[str] | None = None) -> list[Spec]:
    n = int(cfg["seeds"]) if seeds is None else seeds
    seed_list = list(range(n)) if isinstance(n, int) else list(n)
    ms = check_choice("methods", methods or cfg["methods"], ["a", "b", "c"])
    return [Spec(profile, m, s) for m in ms for s in seed_list]


def settings(cfg: Mapping[str, Any], spec: Spec) -> dict[str, Any]:
    if spec.method == "c":
        raise ConfigError("method c has no settings")
    return {"lr": float(cfg["lr"]), "method": spec.method}


def run_one(spec: Spec, cfg: Mapping[str, Any], runs_root: str, overrides: Any = None,
            retry_failed: bool = False, force: bool = False) -> str:
    """One fake record (status complete, or failed for the methods in ``cfg["fail"]``);
    ``force`` replaces a finished one."""
    _log(cfg, spec.label)
    if force and spec.run_dir(runs_root).exists():
        shutil.rmtree(spec.run_dir(runs_root))
    s = settings(cfg, spec)
    w = RunWriter(spec.run_dir(runs_root))
    w.start({"config_hash": config_hash(s), "settings": s}, profile=spec.profile, seed=spec.seed)
    if spec.method in cfg["fail"]:
        return w.fail("asked to fail")
    return w.finish({"m": 1.0})


def check_data(cfg: Mapping[str, Any], todo: Sequence[Spec]) -> None:
    _log(cfg, f"data:{len(todo)}")


class Calls:
    """What the fake task did since the last :meth:`clear`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture
def calls(tmp_path: Path) -> Calls:
    return Calls(tmp_path / "calls.txt")


@pytest.fixture
def task(tmp_path: Path) -> Task:
    (tmp_path / "fake.yaml").write_text(CONFIG.replace('log: ""', f'log: "{tmp_path / "calls.txt"}"'))
    return Task(name="fake", prog="fake", description="a fake task", config_path=tmp_path / "fake.yaml",
                runs_root=tmp_path / "runs", plan=plan, run_settings=settings,
                run_one="tests.test_runner:run_one",
                selectors=(Selector("methods", "from a, b, c"),), check_data=check_data)


def _req(**kw: Any) -> RunRequest:
    return RunRequest(progress=False, **kw)


def test_runs_the_missing_runs_then_skips_them(task: Task, tmp_path: Path, calls: Calls) -> None:
    assert run_task(task, _req()) == {"complete": 4, "failed": 0, "skipped": 0}
    assert calls()[0] == "data:4" and len(calls()) == 5  # data checked once, before any run
    assert (tmp_path / "runs/fake/cpu/b/seed-1/status.json").is_file()
    calls.clear()
    assert run_task(task, _req(seeds=3)) == {"complete": 2, "failed": 0, "skipped": 4}
    assert calls() == ["data:2", "fake/cpu/a/seed-2", "fake/cpu/b/seed-2"]
    calls.clear()
    assert run_task(task, _req(seeds=3)) == {"complete": 0, "failed": 0, "skipped": 6}
    assert calls() == []  # nothing pending: no data load, no run


def test_stale_runs_refused_then_rerun_with_rerun_stale(task: Task, tmp_path: Path, calls: Calls) -> None:
    run_task(task, _req(seeds=1))
    calls.clear()
    run = tmp_path / "runs/fake/cpu/a/seed-0"
    with pytest.raises(StaleRuns, match=r"2 finished run\(s\).*lr: 0\.1 -> 0\.5.*--rerun-stale"):
        run_task(task, _req(seeds=1, overrides={"lr": 0.5}))
    assert calls() == [] and json.loads((run / "status.json").read_text())["status"] == "complete"
    counts = run_task(task, _req(seeds=1, overrides={"lr": 0.5}, rerun_stale=True))
    assert counts == {"complete": 2, "failed": 0, "skipped": 0}
    assert yaml.safe_load((run / "config.yaml").read_text())["settings"]["lr"] == 0.5
    assert Path(f"{run}.stale", "status.json").is_file()


def test_failed_runs_kept_unless_retry_failed(task: Task, calls: Calls) -> None:
    assert run_task(task, _req(seeds=1, overrides={"fail": ["b"]})) == {
        "complete": 1, "failed": 1, "skipped": 0}
    calls.clear()
    assert run_task(task, _req(seeds=1, overrides={"fail": ["b"]})) == {
        "complete": 0, "failed": 0, "skipped": 2}
    assert run_task(task, _req(seeds=1, retry_failed=True)) == {
        "complete": 1, "failed": 0, "skipped": 1}
    assert calls() == ["data:1", "fake/cpu/b/seed-0"]


def test_every_settings_error_before_any_run(task: Task, tmp_path: Path, calls: Calls) -> None:
    with pytest.raises(ConfigError, match="method c has no settings"):
        run_task(task, _req(selection={"methods": ["a", "c"]}))
    assert calls() == [] and not (tmp_path / "runs").exists()


def test_check_settings_and_force(task: Task, calls: Calls) -> None:
    seen: list[Any] = []
    t = dataclasses.replace(task, check_settings=lambda s, world: seen.append((s["method"], world)))
    run_task(t, _req(seeds=1, selection={"methods": ["a"]}))
    assert seen == [("a", 1)]
    calls.clear()
    # force: every planned run again (the task's run_one replaces its record)
    forced = dataclasses.replace(task, job_options=("overrides", "retry_failed", "force"))
    assert run_task(forced, _req(seeds=1, selection={"methods": ["a"]}, force=True)) == {
        "complete": 1, "failed": 0, "skipped": 0}
    assert calls() == ["data:1", "fake/cpu/a/seed-0"]


def test_torchrun_with_many_jobs_is_refused(task: Task, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(runner.LaunchError, match="under torchrun"):
        run_task(dataclasses.replace(task, torchrun=True), _req(jobs=2))
    # a task without torchrun support ignores WORLD_SIZE (its runs go to the launcher)
    assert run_task(task, _req(seeds=1))["complete"] == 2


def test_command_line_summary_and_exit_codes(task: Task, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--seeds", "1", "--no-progress", "--methods", "a", "--methods", "b"]
    assert task_main(task, argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("fake runs: 2 complete, 0 failed, 0 skipped (already done);")
    assert out.rstrip().endswith(f"-> {tmp_path / 'runs'}")
    # a stale run, a bad selector, a bad --set, a bad launch option: one error line, exit 2
    for bad in (["--set", "lr=0.3"], ["--methods", "a,zz"], ["--set", "lr"], ["--jobs", "0"]):
        assert task_main(task, [*argv, *bad]) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.splitlines()) == 1, (bad, err)
    # the profile and the config come from the flags
    assert task_main(task, [*argv, "--profile", "other"]) == 0
    assert "2 complete" in capsys.readouterr().out
    # failed runs: exit 0 (recorded and reported) unless the task says otherwise
    assert task_main(task, ["--seeds", "2", "--no-progress", "--set", "fail=[b]"]) == 0
    assert "1 complete, 1 failed, 2 skipped" in capsys.readouterr().out
    strict = dataclasses.replace(task, failed_exit=1)
    assert task_main(strict, ["--seeds", "3", "--no-progress", "--set", "fail=[b]"]) == 1


def test_parser_has_the_shared_flags(task: Task) -> None:
    flags = {a for act in runner.build_parser(task)._actions for a in act.option_strings}
    shared = {"--profile", "--seeds", "--runs-root", "--config", "--set", "--retry-failed",
              "--rerun-stale", "--jobs", "--launcher", "--threads", "--no-progress", "--methods"}
    assert shared <= flags and "--force" not in flags
    assert "--force" in {a for act in runner.build_parser(dataclasses.replace(task, force=True))._actions
                         for a in act.option_strings}


@pytest.mark.parametrize("module", ["experiments.regression", "experiments.classification",
                                    "experiments.toy3d", "detr_gal.run"])
def test_every_runner_is_a_task_with_the_shared_flags(module: str) -> None:
    import importlib

    task = importlib.import_module(module).TASK
    assert isinstance(task, Task) and task.run_one.startswith(f"{module}:")
    flags = {a for act in runner.build_parser(task)._actions for a in act.option_strings}
    assert {"--profile", "--seeds", "--runs-root", "--config", "--set", "--retry-failed",
            "--rerun-stale", "--jobs", "--launcher", "--threads", "--no-progress"} <= flags


@pytest.fixture
def one_rank_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``WORLD_SIZE=2`` as torchrun would set it, with ``init_distributed`` creating a real gloo
    group of one process (the runner's own init needs a second rank)."""
    import torch.distributed as dist

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")

    def init(cfg: Any) -> bool:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
        return True

    monkeypatch.setattr(runner, "init_distributed", init)
    yield dist
    if dist.is_initialized():
        dist.destroy_process_group()


def test_torchrun_runner_destroys_the_group_it_created(task: Task, calls: Calls, one_rank_group) -> None:
    """A gloo group left to interpreter teardown can abort a rank ("terminate called without an
    active exception"): the runner destroys the group it made, after the runs and after an error."""
    task = dataclasses.replace(task, torchrun=True)
    assert run_task(task, _req(seeds=1)) == {"complete": 2, "failed": 0, "skipped": 0}
    assert calls() == ["data:2", "fake/cpu/a/seed-0", "fake/cpu/b/seed-0"]  # here, one by one
    assert not one_rank_group.is_initialized()


def test_torchrun_runner_destroys_the_group_after_a_failing_run(task: Task, one_rank_group,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    task = dataclasses.replace(task, torchrun=True)

    def boom(*a: Any, **k: Any) -> dict[str, int]:
        assert one_rank_group.is_initialized()
        raise RuntimeError("rank failed")

    monkeypatch.setattr(runner, "_run_plan", boom)
    with pytest.raises(RuntimeError, match="rank failed"):
        run_task(task, _req(seeds=1))
    assert not one_rank_group.is_initialized()


def test_torchrun_runner_leaves_a_group_it_did_not_create(task: Task, one_rank_group,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that made the group itself (a notebook, a test) keeps it."""
    runner.init_distributed({})  # the fixture's init, made by the caller
    monkeypatch.setattr(runner, "init_distributed", lambda cfg: False)
    assert run_task(dataclasses.replace(task, torchrun=True), _req(seeds=1))["complete"] == 2
    assert one_rank_group.is_initialized()
