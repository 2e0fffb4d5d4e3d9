"""Run records (docs/design.md "Run records"): layout, atomicity, NaN -> failed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from gal_suite.records import RunWriter, flatten, load_history, load_runs


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


# --------------------------------------------------------------------------- untrusted checkpoints
class _Payload:
    """A pickle whose loading writes a marker file (a stand-in for any code a planted file runs)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    """A checkpoint holds tensors and plain data only: torch's weights-only loader reads it."""
    from experiments.common import rng_state

    w = RunWriter(tmp_path / "run", device="cpu")
    w.start(_cfg(), profile="cpu", seed=0)
    w.log({"epoch": 1, "loss": 0.5, "nan": float("nan"), "flag": True, "name": "x"})
    w.save_checkpoint({"task": {"w": torch.ones(2)}, "rng": rng_state(), "epoch": 1})
    raw = torch.load(w.checkpoint_path, weights_only=True)
    assert raw["epoch"] == 1 and isinstance(raw["rng"]["numpy"]["key"], torch.Tensor)
    w2 = RunWriter(tmp_path / "run", device="cpu")
    st = w2.load_checkpoint()
    assert st is not None and torch.equal(st["task"]["w"], torch.ones(2))
    h = w2.history[0]
    assert h["loss"] == 0.5 and np.isnan(h["nan"]) and h["flag"] is True and h["name"] == "x"


def test_planted_pickle_checkpoint_runs_nothing_and_the_run_restarts(tmp_path, capsys):
    """A malicious checkpoint.pt in a run's .partial/ is never unpickled: its payload does not
    run, the file is moved aside (named on stderr and in the provenance) and the run is made
    from scratch, to the same numbers as a run that never saw the file."""
    from experiments import regression as reg

    over = {"datasets.diabetes.epochs": 3, "datasets.diabetes.batch_size": 64}
    kw = dict(profile="cpu", seeds=1, datasets=["diabetes"], variants=["paper"],
              methods=["baseline"], overrides=over, progress=False)
    ref_root, root = tmp_path / "ref", tmp_path / "runs"
    reg.run_table(runs_root=ref_root, **kw)
    run = reg.RunSpec("cpu", "paper", "diabetes", "baseline", 0).run_dir(root)
    partial = tmp_path / "runs" / "cpu" / "paper" / "diabetes" / "baseline" / "seed-0.partial"
    partial.mkdir(parents=True)
    marker = tmp_path / "PWNED"
    torch.save({"epoch": 1, "x": _Payload(str(marker))}, partial / "checkpoint.pt")
    counts = reg.run_table(runs_root=root, **kw)
    assert not marker.exists(), "the planted pickle ran"
    assert counts["complete"] == 1
    err = capsys.readouterr().err
    assert "checkpoint cannot be read safely" in err and "starting the run afresh" in err
    aside = list(run.parent.glob("seed-0.checkpoint-unreadable-*.pt"))
    assert len(aside) == 1 and str(aside[0]) in err
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["discarded_checkpoint"] == str(aside[0]) and prov["resumed"] is False
    ref = reg.RunSpec("cpu", "paper", "diabetes", "baseline", 0).run_dir(ref_root)
    assert (run / "metrics.json").read_text() == (ref / "metrics.json").read_text()


class _Stop(BaseException):
    """Ends a run right after a checkpoint, as a kill would (not an Exception: nothing catches it)."""


def _checkpointed(reg, monkeypatch, root, kw, methods) -> None:
    """Leave each of ``methods`` as a .partial run holding its epoch-1 checkpoint."""
    real = reg.run_epochs

    def stop_after_first(writer, **k):
        def on_epoch(e: int) -> None:
            raise _Stop

        return real(writer, **{**k, "on_epoch": on_epoch})

    monkeypatch.setattr(reg, "run_epochs", stop_after_first)
    for m in methods:
        with pytest.raises(_Stop):
            reg.run_table(runs_root=root, **{**kw, "methods": [m]})
    monkeypatch.setattr(reg, "run_epochs", real)


def test_half_checkpoint_beside_a_good_run_restarts_alone(tmp_path, capsys, monkeypatch):
    """A checkpoint cut in half is set aside and its run restarts from scratch; the other runs
    of the table (one resuming from a good checkpoint, one fresh) go on, all to the numbers of
    uninterrupted runs."""
    from experiments import regression as reg

    over = {"datasets.diabetes.epochs": 4, "datasets.diabetes.batch_size": 64}
    kw = dict(profile="cpu", seeds=1, datasets=["diabetes"], variants=["paper"],
              methods=["baseline", "gal", "gal_alpha0"], overrides=over, progress=False)
    ref_root, root = tmp_path / "ref", tmp_path / "runs"
    reg.run_table(runs_root=ref_root, **kw)

    def run_dir(r, m):
        return reg.RunSpec("cpu", "paper", "diabetes", m, 0).run_dir(r)

    _checkpointed(reg, monkeypatch, root, kw, ["baseline", "gal"])
    ckpt = Path(str(run_dir(root, "gal")) + ".partial") / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    counts = reg.run_table(runs_root=root, **kw)
    assert counts == {"complete": 3, "failed": 0, "skipped": 0}
    err = capsys.readouterr().err
    assert err.count("checkpoint cannot be read safely") == 1 and "gal/seed-0" in err
    for m in ("baseline", "gal", "gal_alpha0"):
        assert ((run_dir(root, m) / "metrics.json").read_text()
                == (run_dir(ref_root, m) / "metrics.json").read_text()), m
    resumed = {m: json.loads((run_dir(root, m) / "provenance.json").read_text())["resumed"]
               for m in ("baseline", "gal")}
    assert resumed == {"baseline": True, "gal": False}


def test_provenance_names_the_machine(tmp_path):
    """provenance.json records the CPU model, torch's thread count and the instruction set of its
    CPU kernels (what a record's last digits depend on across machines)."""
    w = RunWriter(tmp_path / "run", device="cpu")
    w.start(_cfg(), profile="cpu", seed=0)
    w.finish({"m": 1.0})
    m = json.loads((tmp_path / "run" / "provenance.json").read_text())["machine"]
    assert m["cpu_model"] and m["cpu_model"] != "unknown"
    assert m["torch_num_threads"] == torch.get_num_threads()
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert ("gpu" in m) == torch.cuda.is_available()
