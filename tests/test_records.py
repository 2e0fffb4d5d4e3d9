"""Run records (docs/design.md "Run records"; issue 3 part 1): layout, atomicity, NaN -> failed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from gal.records import RunWriter, flatten, load_history, load_runs


def _cfg(method: str = "gal", seed: int = 0) -> dict:
    return {
        "task": "regression",
        "table": 5,
        "dataset": "boston",
        "method": method,
        "variant": "paper",
        "model": {"arch": (100, 50), "lr": 1e-3},
    }


def test_round_trip_layout(tmp_path):
    run = tmp_path / "table5" / "paper" / "boston" / "gal" / "seed-0"
    w = RunWriter(run, device="cpu")
    assert not w.is_complete()
    assert w.load_checkpoint() is None
    w.start(_cfg(), profile="cpu", seed=0)
    assert (tmp_path / "table5/paper/boston/gal/seed-0.partial/config.yaml").is_file()
    assert not run.exists()
    w.log({"epoch": 0, "train_loss": torch.tensor(2.5), "val_loss": np.float32(3.0)})
    w.log({"epoch": 1, "train_loss": 1.5, "val_loss": 2.0})
    status = w.finish({"mae": torch.tensor(1.25), "mse": np.float64(2.5), "r2": 0.75})
    assert status == "complete"
    assert w.is_complete()
    assert not (tmp_path / "table5/paper/boston/gal/seed-0.partial").exists()
    for name in ("config.yaml", "metrics.json", "history.csv", "provenance.json", "status.json"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoint.pt").exists()
    assert json.loads((run / "metrics.json").read_text()) == {"mae": 1.25, "mse": 2.5, "r2": 0.75}
    assert json.loads((run / "status.json").read_text()) == {"status": "complete", "reason": None}
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["arch"] == [100, 50] and cfg["profile"] == "cpu" and cfg["seed"] == 0
    prov = json.loads((run / "provenance.json").read_text())
    for key in ("git_commit", "git_dirty", "versions", "python", "platform", "hostname", "device",
                "profile", "seed", "start_time", "end_time", "wall_time_s"):
        assert key in prov, key
    assert prov["device"] == "cpu" and prov["seed"] == 0 and prov["profile"] == "cpu"
    for pkg in ("torch", "torchvision", "numpy", "scipy", "pandas", "sklearn", "timm", "python"):
        assert pkg in prov["versions"], pkg
    assert prov["wall_time_s"] >= 0

    hist = load_history(run)
    assert list(hist.columns) == ["epoch", "train_loss", "val_loss"]
    assert hist["train_loss"].tolist() == [2.5, 1.5]

    df = load_runs(tmp_path / "table5")
    assert len(df) == 1
    r = df.iloc[0]
    assert r["status"] == "complete" and r["mae"] == 1.25 and r["r2"] == 0.75
    assert r["model.lr"] == 1e-3 and r["dataset"] == "boston" and r["seed"] == 0
    assert r["path"] == str(run) and r["device"] == "cpu" and r["profile"] == "cpu"
    for c in ("reason", "wall_time_s", "git_commit"):
        assert c in df.columns


def test_partial_dirs_ignored(tmp_path):
    done = RunWriter(tmp_path / "a" / "seed-0", device="cpu")
    done.start(_cfg(), "cpu", 0)
    done.finish({"mae": 1.0})
    killed = RunWriter(tmp_path / "a" / "seed-1", device="cpu")
    killed.start(_cfg(seed=1), "cpu", 1)
    killed.log({"epoch": 0, "loss": 1.0})
    killed.save_checkpoint({"epoch": 0})
    # even a partial dir holding a (stale) status.json must be ignored
    (tmp_path / "a" / "seed-1.partial" / "status.json").write_text('{"status": "complete"}')
    df = load_runs(tmp_path)
    assert df["path"].tolist() == [str(tmp_path / "a" / "seed-0")]
    assert not RunWriter(tmp_path / "a" / "seed-1").is_complete()


def test_empty_root(tmp_path):
    df = load_runs(tmp_path / "nothing")
    assert len(df) == 0
    assert {"status", "reason", "path", "profile", "seed"} <= set(df.columns)


def test_checkpoint_resume_restores_history(tmp_path):
    run = tmp_path / "r" / "seed-3"
    w = RunWriter(run, device="cpu")
    w.start(_cfg(), "cpu", 3)
    w.log({"epoch": 0, "loss": 3.0})
    w.save_checkpoint({"epoch": 0, "weights": torch.arange(3.0)})
    assert (tmp_path / "r" / "seed-3.partial" / "checkpoint.pt").is_file()
    assert pd.read_csv(tmp_path / "r" / "seed-3.partial" / "history.csv")["loss"].tolist() == [3.0]
    w.log({"epoch": 1, "loss": 2.0})  # logged after the checkpoint: lost by the "kill"
    del w

    w2 = RunWriter(run, device="cpu")
    state = w2.load_checkpoint()
    assert state is not None and state["epoch"] == 0
    assert torch.equal(state["weights"], torch.arange(3.0))
    assert set(state) == {"epoch", "weights"}  # internal keys stripped
    w2.start(_cfg(), "cpu", 3)
    w2.log({"epoch": 1, "loss": 1.0})
    w2.finish({"mae": 0.5})
    assert load_history(run)["loss"].tolist() == [3.0, 1.0]
    assert json.loads((run / "provenance.json").read_text())["resumed"] is True


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), torch.tensor(float("nan"))])
def test_nonfinite_metrics_become_failed(tmp_path, bad):
    run = tmp_path / "seed-0"
    w = RunWriter(run, device="cpu")
    w.start(_cfg(), "cpu", 0)
    assert w.finish({"mae": 1.0, "mse": bad}) == "failed"
    assert not w.is_complete()
    st = json.loads((run / "status.json").read_text())
    assert st["status"] == "failed" and "mse" in st["reason"]
    df = load_runs(tmp_path)
    assert df["status"].tolist() == ["failed"]
    assert "mse" in df["reason"].iloc[0]


def test_fail_and_rerun_replaces_failed_record(tmp_path):
    run = tmp_path / "seed-0"
    w = RunWriter(run, device="cpu")
    w.start(_cfg(), "cpu", 0)
    w.fail("diverged at epoch 3")
    assert json.loads((run / "status.json").read_text())["status"] == "failed"
    # a failed record is not complete, so a re-run may replace it
    w2 = RunWriter(run, device="cpu")
    assert not w2.is_complete()
    w2.start(_cfg(), "cpu", 0)
    assert w2.finish({"mae": 2.0}) == "complete"
    assert load_runs(tmp_path)["mae"].tolist() == [2.0]
    # a complete record is never overwritten
    w3 = RunWriter(run, device="cpu")
    w3.start(_cfg(), "cpu", 0)
    with pytest.raises(FileExistsError):
        w3.finish({"mae": 3.0})
    assert json.loads((run / "metrics.json").read_text())["mae"] == 2.0


def test_no_git_is_unknown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a git repository
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    w = RunWriter(tmp_path / "run", device="cpu")
    w.start(_cfg(), "cpu", 0)
    w.finish({"mae": 1.0})
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["git_commit"] == "unknown"


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": [1, 2]}) == {"a.b": 1, "a.c.d": 2, "e": [1, 2]}
