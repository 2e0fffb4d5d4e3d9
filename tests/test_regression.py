"""Table V runner (experiments/regression.py, Sec. V-B): records, alpha=0 control, NaN -> failed,
no-op re-runs, resume after a real `kill -9`, and clear errors. Tiny settings via overrides."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from experiments import regression as reg
from gal_suite.config import ConfigError
from gal_suite.records import load_runs

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "datasets.diabetes.epochs": 4,
    "datasets.diabetes.batch_size": 64,
    "datasets.boston.epochs": 3,
    "datasets.boston.batch_size": 64,
}


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("runs") / "table5"
    counts = reg.run_table(profile="cpu", seeds=2, datasets=["diabetes"],
                           variants=["paper", "standardized"], runs_root=root, overrides=TINY,
                           progress=False)
    return root, counts


def test_tiny_table_records(tiny_table: tuple[Path, dict]) -> None:
    root, counts = tiny_table
    n = 2 * 2 * len(reg.METHODS)
    assert counts == {"complete": n, "failed": 0, "skipped": 0}
    df = load_runs(root)
    assert len(df) == n and set(df["status"]) == {"complete"}
    assert set(df["method"]) == set(reg.METHODS)
    run = root / "cpu" / "standardized" / "diabetes" / "gal" / "seed-1"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert {k: cfg[k] for k in ("task", "table", "dataset", "method", "variant", "seed", "profile")} == {
        "task": "regression", "table": 5, "dataset": "diabetes", "method": "gal",
        "variant": "standardized", "seed": 1, "profile": "cpu"}
    assert cfg["config"]["gal"]["alpha"] == 0.001 and cfg["settings"]["epochs"] == 4
    assert cfg["settings"]["adjuster_arch"] == [128, 4]
    assert set(_metrics(run)) == {"mae", "mse", "r2"}
    hist = (run / "history.csv").read_text().splitlines()
    assert hist[0].split(",") == ["epoch", "train_loss", "remainder", "abs_remainder",
                                  "accept_rate", "cosine", "g_beats_grad", "val_loss"]
    assert len(hist) == 1 + 4
    base_hist = (root / "cpu" / "paper" / "diabetes" / "baseline" / "seed-0" / "history.csv").read_text()
    assert base_hist.splitlines()[0] == "epoch,train_loss,val_loss"
    assert not list(root.rglob("*.partial")) and not list(root.rglob("checkpoint.pt"))


def test_alpha0_equals_baseline_exactly(tiny_table: tuple[Path, dict]) -> None:
    """GAL with alpha = 0 is standard training bit for bit (same split, init, batch order)."""
    root, _ = tiny_table
    for variant in ("paper", "standardized"):
        for seed in (0, 1):
            base = root / "cpu" / variant / "diabetes" / "baseline" / f"seed-{seed}"
            a0 = root / "cpu" / variant / "diabetes" / "gal_alpha0" / f"seed-{seed}"
            gal = root / "cpu" / variant / "diabetes" / "gal" / f"seed-{seed}"
            assert _metrics(a0) == _metrics(base)
            assert _metrics(gal) != _metrics(base)
            b_rows = [r.split(",")[:2] for r in (base / "history.csv").read_text().splitlines()[1:]]
            a_rows = [r.split(",")[:2] for r in (a0 / "history.csv").read_text().splitlines()[1:]]
            assert a_rows == b_rows  # epoch, train_loss


def test_seeds_share_split_and_differ_across_seeds(tiny_table: tuple[Path, dict]) -> None:
    root, _ = tiny_table
    # OLS depends only on the split: identical for both variants of a seed, different across seeds
    ols = {(v, s): _metrics(root / "cpu" / v / "diabetes" / "ols" / f"seed-{s}")
           for v in ("paper", "standardized") for s in (0, 1)}
    assert ols[("paper", 0)]["mse"] == pytest.approx(ols[("standardized", 0)]["mse"], rel=1e-9)
    assert ols[("paper", 0)]["mse"] != ols[("paper", 1)]["mse"]


def test_rerun_is_noop(tiny_table: tuple[Path, dict]) -> None:
    root, _ = tiny_table
    files = sorted(p for p in root.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    counts = reg.run_table(profile="cpu", seeds=2, datasets=["diabetes"],
                           variants=["paper", "standardized"], runs_root=root, overrides=TINY,
                           progress=False)
    assert counts["complete"] == 0 and counts["failed"] == 0
    assert counts["skipped"] == 2 * 2 * len(reg.METHODS)
    assert {p: p.stat().st_mtime_ns for p in sorted(p for p in root.rglob("*") if p.is_file())} == before


def test_nan_loss_is_recorded_as_failed_and_excluded(tmp_path: Path) -> None:
    from gal_suite.stats import complete_runs

    root = tmp_path / "table5"
    over = {**TINY, "train.lr": 1e6}
    counts = reg.run_table(profile="cpu", seeds=1, datasets=["diabetes"], variants=["paper"],
                           methods=["baseline", "gal", "ols"], runs_root=root, overrides=over,
                           progress=False)
    assert counts == {"complete": 1, "failed": 2, "skipped": 0}
    for m in ("baseline", "gal"):
        st = _status(root / "cpu" / "paper" / "diabetes" / m / "seed-0")
        assert st["status"] == "failed"
        assert st["reason"].startswith("non-finite loss at epoch 1")
        assert "lower the learning rate" in st["reason"]
    df = load_runs(root)
    ok, n_failed = complete_runs(df)
    assert n_failed == 2 and list(ok["method"]) == ["ols"]
    # a failed run is finished: not retried unless asked
    again = reg.run_table(profile="cpu", seeds=1, datasets=["diabetes"], variants=["paper"],
                          methods=["baseline"], runs_root=root, overrides=over, progress=False)
    assert again == {"complete": 0, "failed": 0, "skipped": 1}


def _cli(root: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "experiments.regression", "--profile", "cpu", "--seeds", "1",
            "--datasets", "diabetes", "--variants", "standardized", "--methods", "gal",
            "--runs-root", str(root), "--no-progress",
            "--set", f"datasets.diabetes.epochs={epochs}", "--set", "datasets.diabetes.batch_size=32",
            *extra]


def test_kill9_midway_resumes_to_same_metrics(tmp_path: Path) -> None:
    """A run killed with SIGKILL after its first checkpoint resumes to the uninterrupted result."""
    epochs = 60
    ref_root, root = tmp_path / "ref", tmp_path / "killed"
    over = {"datasets.diabetes.epochs": epochs, "datasets.diabetes.batch_size": 32}
    reg.run_table(profile="cpu", seeds=1, datasets=["diabetes"], variants=["standardized"],
                  methods=["gal"], runs_root=ref_root, overrides=over, progress=False)
    ref = ref_root / "cpu" / "standardized" / "diabetes" / "gal" / "seed-0"

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = root / "cpu" / "standardized" / "diabetes" / "gal" / "seed-0"
    ckpt = Path(str(run) + ".partial") / "checkpoint.pt"
    proc = subprocess.Popen(_cli(root, epochs), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300  # a liveness bound (start-up is slow on a loaded machine)
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ckpt.exists(), "no checkpoint appeared"
        time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)  # a real kill -9
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not run.exists(), "the killed run must not look complete"
    assert load_runs(root).empty

    res = subprocess.run(_cli(root, epochs), cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert _status(run)["status"] == "complete"
    assert _metrics(run) == _metrics(ref)
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["resumed"] is True
    epochs_logged = [int(r.split(",")[0]) for r in (run / "history.csv").read_text().splitlines()[1:]]
    assert epochs_logged == list(range(1, epochs + 1))
    assert (run / "history.csv").read_text() == (ref / "history.csv").read_text()


def test_missing_california_gives_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "empty"))
    reg.load_dataset.cache_clear()
    try:
        with pytest.raises(reg.DatasetUnavailable) as ei:
            reg.run_table(profile="cpu", seeds=1, datasets=["california"], variants=["paper"],
                          methods=["baseline"], runs_root=tmp_path / "runs",
                          overrides={"data.allow_download": False}, progress=False)
        msg = str(ei.value)
        assert "SCIKIT_LEARN_DATA=" in msg and "internet" in msg
        assert not (tmp_path / "runs").exists()
        rc = reg.main(["--datasets", "california", "--runs-root", str(tmp_path / "runs"),
                       "--set", "data.allow_download=false", "--no-progress"])
        assert rc == 2
        err = capsys.readouterr().err
        assert err.startswith("error: California housing is not available") and "Traceback" not in err
    finally:
        reg.load_dataset.cache_clear()


def test_cli_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert reg.main(["--set", "train.lrr=1", "--runs-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "regression.yaml: overrides: unknown key 'train.lrr'" in err
    assert reg.main(["--profile", "gpu", "--runs-root", str(tmp_path)]) == 2
    assert "unknown profile 'gpu'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown methods 'gall'"):
        reg.run_table(methods=["gall"], runs_root=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_california_loader_reads_cache() -> None:
    from sklearn.datasets import get_data_home

    if not (Path(get_data_home()) / "cal_housing_py3.pkz").exists():
        pytest.skip("California housing cache not available (set SCIKIT_LEARN_DATA)")
    X, y = reg.load_dataset("california", False)
    assert X.shape == (20640, 8) and y.shape == (20640,)


def test_changed_settings_are_refused_not_rerun(tiny_table: tuple[Path, dict]) -> None:
    from experiments.common import StaleRuns

    root, _ = tiny_table
    before = {p: p.stat().st_mtime_ns for p in root.rglob("metrics.json")}
    with pytest.raises(StaleRuns, match=r"2 finished run\(s\).*epochs: 4 -> 5.*--rerun-stale"):
        reg.run_table(profile="cpu", seeds=2, datasets=["diabetes"], variants=["paper"],
                      methods=["baseline"], runs_root=root,
                      overrides={**TINY, "datasets.diabetes.epochs": 5}, progress=False)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("metrics.json")} == before


def test_resume_under_changed_settings_is_a_clear_error(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from gal_suite.records import RunWriter

    root = tmp_path / "runs"
    w = RunWriter(reg.RunSpec("cpu", "paper", "diabetes", "baseline", 0).run_dir(root))
    w.save_checkpoint({"config_hash": "0000", "epoch": 1})
    rc = reg.main(["--seeds", "1", "--datasets", "diabetes", "--variants", "paper", "--methods",
                   "baseline", "--runs-root", str(root), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "checkpoint made with different settings" in err and "delete that directory" in err
