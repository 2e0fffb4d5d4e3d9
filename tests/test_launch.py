"""Many runs at once (experiments/launch.py): pools, submitit, claims, bad input.

A tiny Table V (diabetes, unscaled variant, 2 seeds, baseline and GAL, 2 epochs) is run one after
another once per module; a pool of 2 workers, the submitit local executor and a run resumed after
its worker was SIGKILLed must write the same metrics.json and history.csv bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import experiments.classification as C
import experiments.regression as reg
import experiments.toy3d as toy3d
from experiments.launch import (
    CLAIM_NAME,
    Claim,
    Job,
    LaunchError,
    claim_state,
    run_jobs,
)
from gal_suite.config import load_config

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TINY = {"datasets.diabetes.epochs": 2}
KW = dict(profile="cpu", seeds=2, datasets=["diabetes"], variants=["paper"],
          methods=["baseline", "gal"], overrides=TINY, progress=False)


def _files(root: Path, name: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(name))}


def _prov(root: Path, spec: reg.RunSpec) -> dict:
    return json.loads((spec.run_dir(root) / "provenance.json").read_text())


def _no_leftovers(root: Path) -> None:
    assert not list(root.rglob(f"*{CLAIM_NAME}*")) and not list(root.rglob("*.partial"))


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sequential") / "runs"
    assert reg.run_table(runs_root=root, **KW) == {"complete": 4, "failed": 0, "skipped": 0}
    assert len(_files(root, "metrics.json")) == 4
    return root


def test_pool_of_two_equals_one_after_another(sequential: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    assert reg.run_table(runs_root=root, jobs=2, **KW) == {"complete": 4, "failed": 0, "skipped": 0}
    assert _files(root, "metrics.json") == _files(sequential, "metrics.json")
    assert _files(root, "history.csv") == _files(sequential, "history.csv")
    _no_leftovers(root)
    launch = _prov(root, reg.RunSpec("cpu", "paper", "diabetes", "gal", 1))["launch"]
    assert launch["launcher"] == "local" and launch["num_threads"] == 1 and "worker" in launch
    assert _prov(sequential, reg.RunSpec("cpu", "paper", "diabetes", "gal", 1))["launch"][
        "num_threads"] == 1
    # a finished table is never re-run
    assert reg.run_table(runs_root=root, jobs=2, **KW) == {"complete": 0, "failed": 0, "skipped": 4}


def test_two_schedulers_at_once_run_each_run_once(tmp_path: Path) -> None:
    n, root, marker = 12, tmp_path / "runs", tmp_path / "marker.txt"
    go = tmp_path / "go"
    code = "import sys; sys.path[:0] = sys.argv[1:3]; import launch_helpers as h; h.scheduler(*sys.argv[3:7], int(sys.argv[7]), int(sys.argv[8]))"
    procs = []
    for i, jobs_n in enumerate((1, 1)):  # in-process runs: both really start at once
        ready = tmp_path / f"ready-{i}"
        procs.append((ready, subprocess.Popen(
            [sys.executable, "-c", code, str(TESTS), str(REPO), str(root), str(marker), str(ready),
             str(go), str(n), str(jobs_n)], stdout=subprocess.PIPE, text=True)))
    deadline = time.monotonic() + 120
    while not all(r.exists() for r, _ in procs):
        assert time.monotonic() < deadline and all(p.poll() is None for _, p in procs)
        time.sleep(0.01)
    go.touch()
    counts = []
    for _, p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        counts.append(json.loads(out.strip().splitlines()[-1]))
    lines = marker.read_text().splitlines()
    assert sorted(ln.split()[0] for ln in lines) == sorted(f"run-{i}" for i in range(n))
    assert sum(c["complete"] for c in counts) == n
    assert all(c["failed"] == 0 and c["complete"] + c["skipped"] == n for c in counts)
    for i in range(n):
        st = json.loads((root / f"run-{i}" / "status.json").read_text())
        assert st["status"] == "complete"
    _no_leftovers(root)


def test_sigkilled_worker_leaves_a_claim_the_next_scheduler_takes_over(
        sequential: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    cfg = load_config(reg.CONFIG_PATH, "cpu", {**TINY, "seeds": 2})
    spec = reg.RunSpec("cpu", "paper", "diabetes", "gal", 1)
    job = Job("launch_helpers:run_one_killed_at", (spec, cfg, str(root)), {"epoch": 1},
              spec.run_dir(root), spec.label)
    with pytest.raises(LaunchError, match="ended without a record"):
        run_jobs([job], jobs_n=2, progress=False)
    partial = Path(str(spec.run_dir(root)) + ".partial")
    owner = json.loads((partial / CLAIM_NAME).read_text())
    assert owner["pid"] != os.getpid() and owner["host"] == socket.gethostname()
    assert (partial / "checkpoint.pt").is_file() and not spec.run_dir(root).exists()
    assert claim_state(spec.run_dir(root)) == "dead"
    # the next scheduler takes the claim over, resumes from epoch 1 and runs the others
    assert reg.run_table(runs_root=root, **KW) == {"complete": 4, "failed": 0, "skipped": 0}
    assert _files(root, "metrics.json") == _files(sequential, "metrics.json")
    assert _files(root, "history.csv") == _files(sequential, "history.csv")
    assert _prov(root, spec)["resumed"] is True
    _no_leftovers(root)


def test_submitit_local_executor_runs_a_tiny_table(sequential: Path, tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    root = tmp_path / "runs"
    kw = {**KW, "seeds": [0]}
    counts = reg.run_table(runs_root=root, jobs=2, launcher="submitit-local",
                           slurm={"folder": str(tmp_path / "submitit")}, **kw)
    assert counts == {"complete": 2, "failed": 0, "skipped": 0}
    seq = {k: v for k, v in _files(sequential, "metrics.json").items() if "seed-0" in k}
    assert _files(root, "metrics.json") == seq
    launch = _prov(root, reg.RunSpec("cpu", "paper", "diabetes", "gal", 0))["launch"]
    assert launch["launcher"] == "submitit-local" and launch["job_id"] and launch["num_threads"] == 1
    _no_leftovers(root)


def test_slurm_array_gets_the_profile_and_command_line_resources(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Slurm code path up to sbatch (a fake sbatch/srun on PATH; nothing is run)."""
    pytest.importorskip("submitit")
    import launch_helpers as h

    from experiments.launch import slurm_options
    from experiments.launch_backends import Submitit

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'Submitted batch job 4242'\n")
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cfg = load_config(reg.CONFIG_PATH, "paper")
    opts = slurm_options(cfg, {"partition": "gpuq", "account": "acc", "time_min": 90})
    assert opts["gpus_per_node"] == 0 and opts["time_min"] == 90
    opts["gpus_per_node"] = 1
    backend = Submitit("slurm", 3, 2, opts, tmp_path / "submitit")
    handles = backend.submit(h.marker_jobs(tmp_path / "runs", tmp_path / "m", 2))
    assert [j.job_id for j in handles] == ["4242_0", "4242_1"]
    script = (tmp_path / "submitit" / "4242_submission.sh").read_text()
    for line in ("--partition=gpuq", "--account=acc", "--time=90", "--gpus-per-node=1",
                 "--cpus-per-task=2", "--array=0-1%2"):
        assert f"#SBATCH {line}\n" in script, line


# --------------------------------------------------------------------------- claims
def test_claims_are_exclusive_and_dead_owners_are_taken_over(tmp_path: Path) -> None:
    run = tmp_path / "r" / "seed-0"
    first = Claim.acquire(run)
    assert first is not None and claim_state(run) == "alive"
    assert Claim.acquire(run) is None  # held by a live owner (this process)
    first.release()
    assert claim_state(run) == "none" and not Path(str(run) + ".partial").exists()
    claim = Path(str(run) + ".partial") / CLAIM_NAME
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for info, age, state in [
        ({"host": socket.gethostname(), "pid": dead.pid}, 0, "dead"),  # same host, pid gone
        ({"host": "elsewhere", "pid": 1}, 0, "alive"),  # other host, fresh heartbeat
        ({"host": "elsewhere", "pid": 1}, 3600, "dead"),  # other host, no heartbeat for 1 h
    ]:
        claim.parent.mkdir(parents=True, exist_ok=True)
        claim.write_text(json.dumps(info))
        os.utime(claim, (time.time() - age, time.time() - age))
        assert claim_state(run) == state, info
        taken = Claim.acquire(run)
        assert (taken is not None) == (state == "dead")
        if taken is not None:
            assert json.loads(claim.read_text())["pid"] == os.getpid()
            taken.release()
        claim.unlink(missing_ok=True)


def test_a_run_finished_meanwhile_is_not_run_again(tmp_path: Path) -> None:
    import launch_helpers as h

    marker = tmp_path / "marker.txt"
    jobs = h.marker_jobs(tmp_path / "runs", marker, 2)
    assert run_jobs(jobs, progress=False) == {"complete": 2, "failed": 0, "skipped": 0}
    assert run_jobs(jobs, progress=False) == {"complete": 0, "failed": 0, "skipped": 2}
    assert len(marker.read_text().splitlines()) == 2


def test_a_run_held_by_a_live_owner_is_waited_for(tmp_path: Path) -> None:
    import threading

    import launch_helpers as h

    marker = tmp_path / "marker.txt"
    jobs = h.marker_jobs(tmp_path / "runs", marker, 3)
    held = Claim.acquire(jobs[1].run_dir)  # another owner (alive) is running run-1
    assert held is not None

    def finish_elsewhere() -> None:
        time.sleep(0.3)
        h.marker_run(str(jobs[1].run_dir), str(tmp_path / "elsewhere.txt"))
        held.release()

    t = threading.Thread(target=finish_elsewhere)
    t.start()
    counts = run_jobs(jobs, progress=False, poll_s=0.05)
    t.join()
    assert counts == {"complete": 2, "failed": 0, "skipped": 1}
    assert sorted(ln.split()[0] for ln in marker.read_text().splitlines()) == ["run-0", "run-2"]
    _no_leftovers(tmp_path / "runs")


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("n", ["0", "-1"])
def test_jobs_zero_or_negative_is_refused(n: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert reg.main(["--jobs", n, "--runs-root", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--jobs" in err and "positive integer" in err
    assert toy3d.main(["--jobs", n, "--runs-root", str(tmp_path)]) == 2
    assert C.main(["--table", "1", "--jobs", n, "--runs-root", str(tmp_path)]) == 2
    with pytest.raises(LaunchError, match="positive integer"):
        run_jobs([], jobs_n=int(n))
    assert not any(tmp_path.iterdir())


def test_slurm_without_sbatch_or_submitit_is_one_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    args = ["--launcher", "slurm", "--runs-root", str(tmp_path / "runs"), "--no-progress"]
    assert reg.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sbatch" in err and "--launcher local" in err
    assert C.main(["--table", "1", *args]) == 2 and "sbatch" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "submitit", None)  # not installed
    assert reg.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "submitit" in err and "not installed" in err
    assert toy3d.main(["--launcher", "submitit-local", "--runs-root", str(tmp_path)]) == 2
    assert not (tmp_path / "runs").exists()


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_workers_exit_when_their_scheduler_is_killed(tmp_path: Path) -> None:
    """``kill -9`` of a ``--jobs 2`` scheduler: its workers exit within seconds (they used to
    finish their run and then wait for work forever)."""
    root, marker = tmp_path / "runs", tmp_path / "marker.txt"
    code = ("import sys; sys.path[:0] = sys.argv[1:3]; import launch_helpers as h; "
            "h.slow_scheduler(sys.argv[3], sys.argv[4], 2, 2, 60.0)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(TESTS), str(REPO), str(root),
                             str(marker)])
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(pids) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "workers did not start"
            time.sleep(0.05)
            if marker.exists():
                pids = [int(ln.split()[1]) for ln in marker.read_text().splitlines()]
        assert all(_alive(p) for p in pids)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), "orphaned workers are still running"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
