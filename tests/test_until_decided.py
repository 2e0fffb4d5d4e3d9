"""Tables I/II run until decided (experiments.until_decided): batches of paired seeds, a row stops
on its own, the design is kept per row and shown by the table; one end-to-end smoke look."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gal_suite.records as records
from experiments import until_decided as U
from experiments.classification import config_for, plan_runs
from gal_suite.config import ConfigError, load_config
from gal_suite.records import RunWriter, load_runs
from gal_suite.tables import TABLE1
from gal_suite.tables.render import grid


def _paper_rel(opt):
    return U._paper_rel(1, opt)


def _plan(profile, optimizers, overrides=None):
    cfg = load_config(config_for(1), profile, overrides or {})
    return plan_runs(cfg, 1, profile, 1, optimizers, ["baseline", "gal"])


def _fake_runs(root, calls, effects):
    """A run_table stand-in that writes complete records of seeds 0..n-1 (missing ones only):
    baseline ~ 24% error with a large seed spread, GAL = baseline·(1 + effect) + small noise."""

    def run_table(table, profile, n, *, optimizers, methods, dataset, runs_root, overrides,
                  config_path, progress=True, **launch):
        opts = optimizers
        calls.append((n, tuple(opts)))
        for opt in opts:
            for s in range(n):
                rng = np.random.default_rng(1000 * s + len(opt))
                base = 24.0 + 2.0 * rng.standard_normal()
                vals = {"baseline": base,
                        "gal": base * (1 + effects[opt]) + 0.02 * rng.standard_normal()}
                for m in methods:
                    d = runs_root / "table1" / profile / "cifar10_jpeg" / opt / m / f"seed-{s}"
                    if (d / "metrics.json").exists():
                        continue
                    w = RunWriter(d, device="cpu")
                    w.start({"task": "classification", "table": 1, "dataset": "cifar10_jpeg",
                             "dataset_label": "CIFAR-10 (JPEG q75 copy)", "optimizer": opt,
                             "method": m, "model": "airbench_s", "pretrained": False, "epochs": 8},
                            profile=profile, seed=s)
                    w.finish({"error_top1": vals[m], "error_top5": 1.0, "val_loss": 1.0})
        return {"complete": 1, "failed": 0, "skipped": 0}

    return run_table


def test_rows_stop_on_their_own(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "git_info", lambda: ("0123456789abcdef", False))
    calls: list = []
    # SGD: GAL exactly the paper's relative effect, tiny noise -> decided at the first look;
    # AdaBound: no effect -> 'not reproduced' needs more pairs or runs to the cap
    effects = {"sgd": _paper_rel("sgd"), "adabound": 0.0}
    fake = _fake_runs(tmp_path / "runs", calls, effects)
    plan = _plan("cpu", ["sgd", "adabound"])
    reasons = U.run_until_decided(1, fake, plan, "cpu", max_seeds=20, batch=5,
                                  runs_root=tmp_path / "runs", progress=False)
    assert reasons["sgd"] == "decided at look 1 (n = 5 pairs)"
    assert calls[0] == (5, ("sgd", "adabound"))
    assert all(n % 5 == 0 and n <= 20 for n, _ in calls)  # batches of 5, never past the cap
    assert not any("sgd" in opts for n, opts in calls[1:])  # a stopped row gets no more seeds
    assert reasons["adabound"].startswith(("decided", "cap reached"))
    row = tmp_path / "runs" / "table1" / "cpu" / "cifar10_jpeg" / "adabound"
    design = json.loads((row / "sequential.json").read_text())["design"]
    assert design == {"batch": 5, "max_pairs": 20, "alpha": 0.05, "spending": "pocock"}
    # the table renders the design's repeated CI and the stopping reason of each row
    g, _ = grid(load_runs(tmp_path / "runs" / "table1"), TABLE1)
    stop = g[(g["Optimizer"] == "SGD") & (g["Method"] == "seeds: stopping")]
    assert stop["Top-1 error %↓ ours"].iloc[0] == "decided at look 1 (n = 5 pairs)"
    ci = g[(g["Optimizer"] == "SGD") & (g["Method"] == "verdict CI (GAL − baseline)")]
    assert "repeated CI, look 1, n=5" in ci["Top-1 error %↓ ours"].iloc[0]
    verdict = g[(g["Optimizer"] == "SGD") & (g["Method"] == "GAL (proposed)")]
    assert verdict["Top-1 error %↓ verdict rel."].iloc[0].startswith("reproduced")
    # resuming is free: every row is already stopped, nothing runs
    n_calls = len(calls)
    U.run_until_decided(1, fake, plan, "cpu", max_seeds=20, batch=5, runs_root=tmp_path / "runs",
                        progress=False)
    assert len(calls) == n_calls
    # a row keeps its design
    with pytest.raises(ConfigError, match="keeps its design"):
        U.run_until_decided(1, fake, _plan("cpu", ["sgd"]), "cpu", max_seeds=30, batch=5,
                            runs_root=tmp_path / "runs", progress=False)


def test_only_tables_one_and_two(tmp_path):
    with pytest.raises(ConfigError):
        U.run_until_decided(3, lambda *a, **k: {}, [], "cpu", runs_root=tmp_path)


def test_smoke_look_end_to_end(tmp_path, monkeypatch):
    from tests.test_classification import make_imagefolder

    root = make_imagefolder(tmp_path / "smokedata")
    over = {"datasets.smoke.data.root": str(root)}
    runs = tmp_path / "runs"
    from experiments import classification as C

    assert C.main(["--table", "1", "--profile", "smoke", "--until-decided", "--max-seeds", "2",
                   "--decide-batch", "2", "--optimizers", "sgd", "--runs-root", str(runs),
                   "--no-progress", *[f"--set={k}={v}" for k, v in over.items()]]) == 0
    reasons = U.run_until_decided(1, C.run_table, _plan("smoke", ["sgd"], over), "smoke",
                                  max_seeds=2, batch=2, runs_root=runs, overrides=over,
                                  progress=False)
    assert reasons["sgd"].startswith(("decided at look 1", "cap reached (n = 2 pairs)"))
    row = runs / "table1" / "smoke" / "smoke" / "sgd"
    for m in ("baseline", "gal"):
        assert sorted(p.name for p in (row / m).iterdir()) == ["seed-0", "seed-1"]
    assert (row / "sequential.json").is_file()


def test_table4_rows_run_until_decided_on_ap(tmp_path, monkeypatch):
    """``python -m detr_gal.run --until-decided``: each model row's AP (relative scale, against
    the paper's DETR-R50 effect) decides; the design is written beside the row's method folders
    with its metric, the runs go through the runner's run_table (baseline and GAL only, seeds
    0..n-1), and Table IV shows the stopping reason."""
    import detr_gal.run as R
    from gal_suite.tables import TABLE4
    from gal_suite.tables.render import paper_effects

    monkeypatch.setattr(records, "git_info", lambda: ("0123456789abcdef", False))
    paper_rel = paper_effects(TABLE4, {"model_key": "cdetr_small"}, "ap")[1]
    calls = []

    def fake_run_table(profile, n, *, models, methods, dataset, runs_root, **opts):
        calls.append((n, tuple(models), tuple(methods), opts["jobs"]))
        for s in range(n):
            rng = np.random.default_rng(s)
            base = 74.0 + 1.5 * rng.standard_normal()
            vals = {"baseline": base, "gal": base * (1 + paper_rel) + 0.001 * rng.standard_normal()}
            for m in methods:
                d = R.RunSpec(profile, "shapes", models[0], m, s).run_dir(runs_root)
                if (d / "metrics.json").exists():
                    continue
                w = RunWriter(d, device="cpu")
                w.start({"task": "detection", "table": 4, "dataset": "shapes", "dataset_label": "shapes",
                         "model_key": models[0], "model_label": "cdetr", "optimizer": "adamw",
                         "method": m}, profile=profile, seed=s)
                w.finish({"ap": vals[m], "ap50": 90.0})
        return {"complete": n, "failed": 0, "skipped": 0}

    monkeypatch.setattr(R, "run_table", fake_run_table)
    runs = tmp_path / "runs"
    assert R.main(["--until-decided", "--max-seeds", "20", "--decide-batch", "5", "--runs-root",
                   str(runs), "--jobs", "2", "--no-progress"]) == 0
    assert calls == [(5, ("cdetr_small",), ("baseline", "gal"), 2)]
    row = runs / "table4" / "cpu" / "shapes" / "cdetr_small" / "adamw"
    saved = json.loads((row / "sequential.json").read_text())
    assert saved["metric"] == "ap" and saved["design"]["max_pairs"] == 20
    g, _ = grid(load_runs(runs / "table4"), TABLE4)
    stop = g[g["Method"] == "seeds: stopping"]
    assert stop["AP↑ ours"].iloc[0] == "decided at look 1 (n = 5 pairs)"
    assert g[g["Method"] == "GAL (proposed)"]["AP↑ verdict rel."].iloc[0].startswith("reproduced")


def test_table4_until_decided_is_refused_under_torchrun(tmp_path, monkeypatch, capsys):
    """Under torchrun every rank would run its own looks over records only rank 0 writes."""
    import detr_gal.run as R

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(R, "run_table", lambda *a, **k: pytest.fail("nothing may run"))
    assert R.main(["--until-decided", "--runs-root", str(tmp_path), "--no-progress"]) == 2
    assert "runs in one process" in capsys.readouterr().err
