"""Finished runs made with other settings than requested (every runner): refused with the
differing keys, or set aside to ``<run>.stale`` and run again with ``--rerun-stale``; the
committed records all count as finished, not stale, for their own default settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from experiments import classification as C
from experiments import regression as reg
from experiments import runner, toy3d
from experiments.common import StaleRuns, config_hash, settings_diff, stale_keys
from gal_suite.config import load_config
from gal_suite.records import load_runs

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "results" / "runs"


def _fake_record(run_dir: Path, settings: dict) -> None:
    """A finished record as a runner writes it (config.yaml with settings and their hash)."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"config_hash": config_hash(settings), "settings": settings}, sort_keys=False))
    (run_dir / "metrics.json").write_text('{"m": 1.0}\n')
    (run_dir / "status.json").write_text('{"status": "complete", "reason": null}\n')


def test_settings_diff_names_keys_ignores_device_and_implicit_defaults() -> None:
    old = {"train": {"epochs": 2, "lr": 0.1}, "device": "cpu", "gal": {"alpha": 1.0}}
    new = {"train": {"epochs": 4, "lr": 0.1, "train_subset": 0}, "device": "cuda:0",
           "gal": {"alpha": 1.0, "adjuster": "mlp"}}
    assert settings_diff(old, new) == ["train.epochs: 2 -> 4"]
    assert settings_diff(old, {**new, "gal": {"alpha": 1.0, "adjuster": "cnn"}}) == [
        'gal.adjuster: "mlp" -> "cnn"', "train.epochs: 2 -> 4"]


def test_classification_refuses_stale_runs_or_reruns_them(tmp_path: Path, monkeypatch) -> None:
    """Re-running a finished Table I with ``--set train.epochs=4`` said "skipped" without a word."""
    cfg = load_config(C.config_for(1), "smoke")
    spec = C.plan_runs(cfg, 1, "smoke", seeds=1, optimizers=["sgd"], methods=["baseline"])[0]
    runs = tmp_path / "runs"
    _fake_record(spec.run_dir(runs), C.run_settings(cfg, spec))
    launched: list = []
    monkeypatch.setattr(C, "load_data", lambda *a, **k: None)
    monkeypatch.setattr(runner, "run_specs", lambda entry, todo, *a, **k: launched.extend(todo) or {})
    kw = dict(seeds=1, optimizers=["sgd"], methods=["baseline"], runs_root=runs, progress=False)
    assert C.run_table(1, "smoke", **kw) == {} and launched == []  # same settings: skipped
    with pytest.raises(StaleRuns) as e:
        C.run_table(1, "smoke", overrides={"train.epochs": 4}, **kw)
    msg = str(e.value)
    assert "1 finished run(s)" in msg and "sgd/baseline/seed-0" in msg
    assert "train.epochs: 2 -> 4" in msg and "--rerun-stale" in msg
    assert spec.run_dir(runs).is_dir() and launched == []
    C.run_table(1, "smoke", overrides={"train.epochs": 4}, rerun_stale=True, **kw)
    assert launched == [spec] and not spec.run_dir(runs).exists()
    assert (Path(str(spec.run_dir(runs)) + ".stale") / "status.json").is_file()
    assert load_runs(runs).empty  # a set-aside record is never read into a table


def test_classification_cli_refuses_in_one_line(tmp_path: Path, capsys) -> None:
    cfg = load_config(C.config_for(1), "smoke")
    spec = C.plan_runs(cfg, 1, "smoke", seeds=1, optimizers=["sgd"], methods=["baseline"])[0]
    _fake_record(spec.run_dir(tmp_path), C.run_settings(cfg, spec))
    rc = C.main(["--table", "1", "--profile", "smoke", "--seeds", "1", "--optimizers", "sgd",
                 "--methods", "baseline", "--runs-root", str(tmp_path), "--no-progress",
                 "--set", "train.epochs=4"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: 1 finished run(s)") and len(err.splitlines()) == 1


def test_detr_refuses_stale_runs_or_reruns_them(tmp_path: Path, monkeypatch) -> None:
    from detr_gal import run as R

    cfg = load_config(R.CONFIG_PATH, "smoke")
    spec = R.plan_runs(cfg, "smoke", 1, None, ["baseline"])[0]
    _fake_record(spec.run_dir(tmp_path), R.run_settings(cfg, spec))
    launched: list = []
    monkeypatch.setattr(R, "load_data", lambda *a, **k: None)
    monkeypatch.setattr(runner, "run_specs", lambda entry, todo, *a, **k: launched.extend(todo) or {})
    kw = dict(seeds=1, methods=["baseline"], runs_root=tmp_path, progress=False)
    R.run_table("smoke", **kw)
    assert launched == []
    with pytest.raises(StaleRuns, match=r"train\.lr: 0\.003 -> 0\.001"):
        R.run_table("smoke", overrides={"train.lr": 1e-3}, **kw)
    R.run_table("smoke", overrides={"train.lr": 1e-3}, rerun_stale=True, **kw)
    assert launched == [spec]


def test_regression_refuses_stale_runs_or_reruns_them(tmp_path: Path, monkeypatch) -> None:
    cfg = load_config(reg.CONFIG_PATH, "cpu")
    spec = reg.plan_runs(cfg, "cpu", 1, ["diabetes"], ["paper"], ["baseline"])[0]
    _fake_record(spec.run_dir(tmp_path), reg.run_settings(cfg, spec))
    launched: list = []
    monkeypatch.setattr(runner, "run_specs", lambda entry, todo, *a, **k: launched.extend(todo) or {})
    kw = dict(seeds=1, datasets=["diabetes"], variants=["paper"], methods=["baseline"],
              runs_root=tmp_path, progress=False)
    reg.run_table(**kw)
    with pytest.raises(StaleRuns, match=r"epochs: 100 -> 5"):
        reg.run_table(overrides={"datasets.diabetes.epochs": 5}, **kw)
    assert launched == []
    reg.run_table(overrides={"datasets.diabetes.epochs": 5}, rerun_stale=True, **kw)
    assert launched == [spec]


# --------------------------------------------------------------------------- committed records
def _stale(plan, settings_of, root: Path) -> tuple[int, list]:
    n, bad = 0, []
    for spec in plan:
        d = spec.run_dir(root)
        if (d / "status.json").is_file():
            n += 1
            diff = stale_keys(d, settings_of(spec))
            if diff:
                bad.append((spec.label, diff))
    return n, bad


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_committed_table5_records_are_not_stale(profile: str) -> None:
    cfg = load_config(reg.CONFIG_PATH, profile)
    plan = reg.plan_runs(cfg, profile, None, None, None, None)
    n, bad = _stale(plan, lambda s: reg.run_settings(cfg, s), RUNS / "table5")
    assert n == len(plan) == 180 and bad == []


@pytest.mark.parametrize(("table", "profile", "kw", "n"), [
    (1, "cpu", {}, 30),
    (1, "cpu", {"seeds": 3, "optimizers": ["sgd"], "methods": ["gal_alpha0"]}, 3),  # CONTROL_SEEDS
    (2, "cpu", {}, 30),
    (2, "cpu", {"seeds": 3, "optimizers": ["sgd"], "methods": ["gal_alpha0"]}, 3),
    (3, "cpu", {}, 12),  # both rows: resnet10t and the TinyNet-E EfficientNet-B2 stand-in
    ("ablation", "ablation", {}, 111),
    # 37 configurations x 5 paired seeds (SGD: Tables VI, VIII, Figs. 7, 8(a); Lookahead: Fig. 7)
    ("ablation", "analysis", {}, 185),
])
def test_committed_classification_records_are_not_stale(table, profile, kw, n) -> None:
    """What `make table1 table2 table3 ablation` (both analyses profiles) plans finds every
    committed run finished with its own settings (nothing re-run, nothing refused)."""
    cfg = load_config(C.config_for(table), profile)
    plan = C.plan_runs(cfg, table, profile, **kw)
    found, bad = _stale(plan, lambda s: C.run_settings(cfg, s), RUNS)
    assert found == len(plan) == n and bad == []


def test_committed_table4_records_are_not_stale() -> None:
    from detr_gal import run as R

    cfg = load_config(R.CONFIG_PATH, "cpu_plain_detr")  # the old cpu profile's records, kept
    plan = R.plan_runs(cfg, "cpu_plain_detr", 5)
    found, bad = _stale(plan, lambda s: R.run_settings(cfg, s), RUNS)
    assert found == len(plan) and found > 0 and bad == []
    cfg = load_config(R.CONFIG_PATH, "cpu")  # the Conditional DETR profile: its batch continues
    plan = R.plan_runs(cfg, "cpu")
    found, bad = _stale(plan, lambda s: R.run_settings(cfg, s), RUNS)
    assert found >= 10 and bad == []


def test_committed_fig4_records_are_not_stale() -> None:
    cfg = toy3d.load_toy3d_config("cpu")
    plan = toy3d.planned_runs(cfg)
    states = {toy3d.finished_status(toy3d.run_config(cfg, *r), toy3d.run_dir_of(RUNS, *r))
              for r in plan}
    assert states == {"skipped"} and len(plan) == 60
