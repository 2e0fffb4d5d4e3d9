"""Runs that go wrong are recorded, never silently kept or deleted (docs/design.md, "Run records"):

* a run fails (``failed``, with the reason) when one of GAL's diagnostics, the remainder r of
  Eq. 7 or |r| (objective 6), goes non-finite, even while the model's loss stays finite (Table V's
  runner through ``experiments.common.run_epochs``, and the Fig. 4 runner);
* the Fig. 4 runner keeps a finished record whose config changed and refuses to go on, as every
  runner does (``--rerun-stale`` sets it aside and re-runs it; ``--force`` re-runs everything).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from experiments import regression as reg
from experiments import toy3d
from experiments.common import GAL_FINITE_KEYS, run_epochs
from gal_suite.records import RunWriter, load_runs


def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def _run(tmp_path: Path, rows: list[dict], **kw) -> tuple[str, dict]:
    w = RunWriter(tmp_path / "run", device="cpu")
    w.start({"task": "t"}, profile="cpu", seed=0)
    out = run_epochs(w, epochs=len(rows), settings_hash="h",
                     train_epoch=lambda e: dict(rows[e - 1]), evaluate=lambda e: {"val_loss": 1.0},
                     get_state=dict, set_state=lambda s: None, **kw)
    if out == "trained":
        w.finish({"m": 1.0})
    return out, _status(tmp_path / "run")


def test_non_finite_gal_diagnostic_fails_the_run(tmp_path: Path) -> None:
    ok = {"train_loss": 0.5, "remainder": 1e-6, "abs_remainder": 1e-6, "g_beats_grad": math.nan}
    bad = {"train_loss": 0.4, "remainder": math.inf, "abs_remainder": math.nan}
    out, st = _run(tmp_path, [ok, bad, ok], fail_hint="lower beta")
    assert out == "failed" and st["status"] == "failed"
    assert st["reason"].startswith("non-finite GAL diagnostic at epoch 2 (remainder=inf, "
                                   "abs_remainder=nan")
    assert st["reason"].endswith("lower beta")
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    assert hist["epoch"].tolist() == [1, 2]  # the offending epoch is kept for inspection
    assert GAL_FINITE_KEYS == ("remainder", "abs_remainder")


def test_checkpoints_after_the_first_wait_min_checkpoint_s(tmp_path: Path, monkeypatch) -> None:
    """Epoch 1 and the last epoch are always saved; in between, no more often than every
    ``min_checkpoint_s`` seconds (0: every ``checkpoint_every`` epochs, as before)."""
    saved: list[int] = []
    real = RunWriter.save_checkpoint

    def spy(self: RunWriter, state: dict) -> None:
        saved.append(int(state["epoch"]))
        real(self, state)

    monkeypatch.setattr(RunWriter, "save_checkpoint", spy)
    rows = [{"train_loss": 0.5}] * 6
    assert _run(tmp_path / "a", rows, min_checkpoint_s=3600.0)[0] == "trained"
    assert saved == [1, 6]
    saved.clear()
    assert _run(tmp_path / "b", rows, checkpoint_every=2)[0] == "trained"
    assert saved == [2, 4, 6]


def test_loss_takes_precedence_and_nan_g_beats_grad_is_fine(tmp_path: Path) -> None:
    out, st = _run(tmp_path / "a", [{"train_loss": math.nan, "remainder": math.nan}])
    assert out == "failed" and st["reason"].startswith("non-finite loss at epoch 1 (train_loss=nan")
    # g_beats_grad is NaN by design with compare_vanilla=False; baselines have no diagnostics
    out, st = _run(tmp_path / "b", [{"train_loss": 0.1, "remainder": 0.0, "g_beats_grad": math.nan},
                                    {"train_loss": 0.1}])
    assert out == "trained" and st["status"] == "complete"
    out, st = _run(tmp_path / "c", [{"train_loss": 0.1, "remainder": math.nan}], diagnostic_keys=())
    assert out == "trained"


def test_regression_run_with_diverging_h_is_failed(tmp_path: Path) -> None:
    """beta = 1e30 makes the tentative loss overflow (r = inf): the policy rejects g, so the model
    keeps training on dl/dz with a finite loss, but h's objective is not finite -> failed."""
    root = tmp_path / "table5"
    over = {"datasets.diabetes.epochs": 2, "datasets.diabetes.batch_size": 64, "gal.beta": 1e30}
    counts = reg.run_table(profile="cpu", seeds=1, datasets=["diabetes"], variants=["standardized"],
                           methods=["baseline", "gal"], runs_root=root, overrides=over,
                           progress=False)
    assert counts == {"complete": 1, "failed": 1, "skipped": 0}
    run = root / "cpu" / "standardized" / "diabetes" / "gal" / "seed-0"
    st = _status(run)
    assert st["status"] == "failed"
    assert st["reason"].startswith("non-finite GAL diagnostic at epoch 1 (remainder=")
    hist = pd.read_csv(run / "history.csv")
    assert math.isfinite(hist["train_loss"].iloc[0]) and math.isfinite(hist["val_loss"].iloc[0])
    df = load_runs(root)
    assert sorted(df["status"]) == ["complete", "failed"]


def _toy(root: Path, *extra: str) -> int:
    return toy3d.main(["--runs-root", str(root), "--convention", "paper", "--optimizer", "sgd",
                       *extra])


def test_fig4_non_finite_path_or_remainder_is_failed(tmp_path: Path) -> None:
    # the plain path leaves the floats: x^2 overflows, f = NaN
    assert _toy(tmp_path / "a", "--arm", "baseline", "--set", "optimizers.sgd.lr=1e300") == 1
    st = _status(toy3d.run_dir_of(tmp_path / "a", "paper", "sgd", "baseline", 0))
    assert st["status"] == "failed" and st["reason"].startswith("non-finite value at step ")
    assert "f=nan" in st["reason"] and "optimizers.sgd" in st["reason"]
    # GAL: eta~ = beta * lr = 1e299 puts the tentative point out of range (r = NaN) while the
    # rejected g leaves the path itself finite
    assert _toy(tmp_path / "b", "--arm", "gal", "--seeds", "1",
                "--set", "optimizers.sgd.beta=1e300", "--set", "optimizers.sgd.steps=5") == 1
    run = toy3d.run_dir_of(tmp_path / "b", "paper", "sgd", "gal", 0)
    st = _status(run)
    assert st["status"] == "failed" and st["reason"].startswith("non-finite value at step 1 (")
    assert "remainder=nan" in st["reason"] and "f=" not in st["reason"]
    hist = pd.read_csv(run / "history.csv")
    assert list(hist["step"]) == [0, 1] and math.isfinite(hist["f"].iloc[-1])


def test_fig4_changed_config_is_reported_not_deleted(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "runs"
    assert _toy(root, "--arm", "baseline", "--set", "optimizers.sgd.steps=10") == 0
    run = toy3d.run_dir_of(root, "paper", "sgd", "baseline", 0)
    files = {p: p.stat().st_mtime_ns for p in run.iterdir()}
    capsys.readouterr()
    assert _toy(root, "--arm", "baseline", "--set", "optimizers.sgd.steps=12") == 2
    captured = capsys.readouterr()
    assert "1 finished run(s)" in captured.err and "paper/sgd/baseline/seed-0" in captured.err
    assert "steps: 10 -> 12" in captured.err and "--rerun-stale" in captured.err
    assert {p: p.stat().st_mtime_ns for p in run.iterdir()} == files  # kept as it was
    assert len(pd.read_csv(run / "history.csv")) == 11
    # the same config again: a plain skip, no note
    assert _toy(root, "--arm", "baseline", "--set", "optimizers.sgd.steps=10") == 0
    assert "finished run(s)" not in capsys.readouterr().err
    # --rerun-stale: the old record is set aside, the run made with the new config
    assert _toy(root, "--arm", "baseline", "--set", "optimizers.sgd.steps=12", "--rerun-stale") == 0
    assert len(pd.read_csv(run / "history.csv")) == 13
    assert len(pd.read_csv(Path(str(run) + ".stale") / "history.csv")) == 11
    # --force re-runs it with the current settings
    assert _toy(root, "--arm", "baseline", "--set", "optimizers.sgd.steps=12", "--force") == 0
    assert len(pd.read_csv(run / "history.csv")) == 13
