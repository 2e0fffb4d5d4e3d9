"""Fig. 5 (Sec. VI-A of the paper): validation loss curves, baseline vs GAL, from synthetic run
records with known val_loss histories."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gal_suite import records
from gal_suite.fig5 import epoch_ranges, render_fig5
from gal_suite.figures import render_figure
from gal_suite.records import RunWriter

EPOCHS = 6


def _curve(offset: float, slope: float) -> list[float]:
    return [offset + 10.0 / (e + slope) for e in range(1, EPOCHS + 1)]


def _write(run_dir: Path, config: dict, val: list[float], status: str = "complete") -> Path:
    w = RunWriter(run_dir, device="cpu")
    w.start(config, profile=config["profile"], seed=config["seed"])
    for e, v in enumerate(val, start=1):
        w.log({"epoch": e, "lr": 0.1, "train_loss": v + 0.5, "val_loss": v})
    if status == "complete":
        w.finish({"val_loss": val[-1]})
    else:
        w.fail("diverged")
    return run_dir


def _cls(root: Path, table: int, profile: str, dataset: str, optimizer: str, method: str,
         seed: int, val: list[float], status: str = "complete") -> Path:
    label = {"cifar10": "CIFAR-10 (JPEG q75 copy)",
             "tiny100": "Tiny-ImageNet-100 at 32 px (CIFAR-100 stand-in)"}[dataset]
    cfg = {"task": "classification", "table": table, "dataset": dataset, "dataset_label": label,
           "optimizer": optimizer, "method": method, "seed": seed, "profile": profile,
           "model": "resnet-tiny"}
    d = root / f"table{table}" / profile / dataset / optimizer / method / f"seed-{seed}"
    return _write(d, cfg, val, status)


def _reg(root: Path, profile: str, variant: str, dataset: str, method: str, seed: int,
         val: list[float]) -> Path:
    cfg = {"task": "regression", "table": 5, "dataset": dataset, "method": method,
           "variant": variant, "seed": seed, "profile": profile,
           "config": {"train": {"optimizer": "adam"}}}
    d = root / "table5" / profile / variant / dataset / method / f"seed-{seed}"
    return _write(d, cfg, val)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict]]:
    """Two classification panels (Table I CIFAR-10/SGD, Table II stand-in/AdaBound) and one
    regression panel (Table V diabetes), plus runs that must be left out."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(records, "git_info", lambda: ("test", False))  # no git subprocesses per run
        yield _make_runs(tmp_path_factory.mktemp("fig5") / "runs")


def _make_runs(root: Path) -> tuple[Path, dict]:
    expected: dict[str, dict[str, dict[int, list[float]]]] = {}

    def keep(panel: str, method: str, seed: int, val: list[float]) -> list[float]:
        expected.setdefault(panel, {}).setdefault(method, {})[seed] = val
        return val

    for seed in range(3):
        for method, off in (("baseline", 1.0), ("gal", 0.8)):
            v = _curve(off + 0.1 * seed, 1.0 + seed)
            _cls(root, 1, "cpu", "cifar10", "sgd", method,
                 seed, keep("table1/cifar10/sgd", method, seed, v))
        # a control and another profile: never plotted
        _cls(root, 1, "cpu", "cifar10", "sgd", "gal_alpha0", seed, _curve(-50.0, 1.0))
        _cls(root, 1, "gpu", "cifar10", "sgd", "gal", seed, _curve(100.0, 1.0))
        _cls(root, 1, "gpu", "cifar10", "sgd", "baseline", seed, _curve(200.0, 1.0))
    # seed 3: GAL failed -> the seed is not paired; seed 4: no GAL run at all
    _cls(root, 1, "cpu", "cifar10", "sgd", "baseline", 3, _curve(1.0, 1.0))
    _cls(root, 1, "cpu", "cifar10", "sgd", "gal", 3, _curve(-90.0, 1.0), status="failed")
    _cls(root, 1, "cpu", "cifar10", "sgd", "baseline", 4, _curve(1.0, 1.0))

    for seed in (0, 1):
        # GAL above the baseline at the start, below from epoch 3
        b = _curve(2.0, 1.0 + seed)
        g = [v + (0.3 if e < 2 else -0.2) for e, v in enumerate(b)]
        _cls(root, 2, "cpu", "tiny100", "adabound", "baseline", seed,
             keep("table2/tiny100/adabound", "baseline", seed, b))
        _cls(root, 2, "cpu", "tiny100", "adabound", "gal", seed,
             keep("table2/tiny100/adabound", "gal", seed, g))

    for seed in (0, 1):
        for method, off in (("baseline", 5.0), ("gal", 4.0 + 2.0 * seed)):
            _reg(root, "cpu", "paper", "diabetes", method, seed,
                 keep("table5/diabetes", method, seed, _curve(off, 2.0)))
        _reg(root, "cpu", "paper", "diabetes", "gal_alpha0", seed, _curve(-40.0, 2.0))
        _reg(root, "cpu", "standardized", "diabetes", "gal", seed, _curve(-30.0, 2.0))
        _reg(root, "cpu", "standardized", "diabetes", "baseline", seed, _curve(-30.0, 2.0))
    return root, expected


def test_fig5_json_numbers_and_exclusions(runs: tuple[Path, dict], tmp_path: Path) -> None:
    root, expected = runs
    out = tmp_path / "figures"
    written = render_figure(5, root, out)
    for name in ("fig5.png", "fig5.pdf", "fig5.json", "fig5.md"):
        assert out / name in written and (out / name).stat().st_size > 0
    summary = json.loads((out / "fig5.json").read_text())
    assert summary["figure"] == 5 and summary["profile"] == "cpu"
    assert "min-max" in summary["band"]
    panels = {p["panel"]: p for p in summary["panels"]}
    assert list(panels) == ["table1/cifar10/sgd", "table2/tiny100/adabound", "table5/diabetes"]
    assert panels["table1/cifar10/sgd"]["seeds"] == [0, 1, 2]  # failed seed 3, lone seed 4 out
    assert panels["table2/tiny100/adabound"]["dataset_label"].endswith("(CIFAR-100 stand-in)")
    assert panels["table5/diabetes"]["variant"] == "paper"
    assert panels["table5/diabetes"]["optimizer"] == "adam"

    for name, exp in expected.items():
        p = panels[name]
        assert p["epochs"] == list(range(1, EPOCHS + 1))
        means = {}
        for method in ("baseline", "gal"):
            mat = np.array([exp[method][s] for s in sorted(exp[method])])
            got = p["methods"][method]
            np.testing.assert_allclose(got["mean"], mat.mean(0), rtol=1e-12)
            np.testing.assert_allclose(got["min"], mat.min(0), rtol=1e-12)
            np.testing.assert_allclose(got["max"], mat.max(0), rtol=1e-12)
            np.testing.assert_allclose(got["std"], mat.std(0, ddof=1), rtol=1e-12)
            assert sorted(int(s) for s in got["runs"]) == sorted(exp[method])
            for path in got["runs"].values():
                assert f"/{method}/seed-" in path and "/cpu/" in path
            means[method] = mat.mean(0)
        f = p["final"]
        assert f["mean_baseline"] == pytest.approx(means["baseline"][-1], rel=1e-12)
        assert f["mean_gal"] == pytest.approx(means["gal"][-1], rel=1e-12)
        lower = sum(exp["gal"][s][-1] < exp["baseline"][s][-1] for s in exp["gal"])
        assert f["seeds_gal_lower"] == lower and f["n_seeds"] == len(exp["gal"])
        below = [e for e, b, g in zip(p["epochs"], means["baseline"], means["gal"], strict=True)
                 if g < b]
        assert p["epochs_gal_mean_below_baseline"] == below

    assert panels["table2/tiny100/adabound"]["epochs_gal_mean_below_baseline"] == [3, 4, 5, 6]
    assert panels["table5/diabetes"]["final"]["seeds_gal_lower"] == 1  # seed 1's GAL is worse
    # gal_alpha0, failed, other-profile and other-variant runs are nowhere in the figure
    text = (out / "fig5.json").read_text()
    for bad in ("gal_alpha0", "/gpu/", "standardized"):
        assert all(bad not in path for p in summary["panels"]
                   for m in p["methods"].values() for path in m["runs"].values())
    assert "gal_alpha0" not in text and "/gpu/" not in text
    ex = summary["excluded"]
    assert [e["status"] for e in ex["non_complete"]] == ["failed"]
    assert sorted((e["method"], e["seed"]) for e in ex["unpaired"]) == [("baseline", 3),
                                                                        ("baseline", 4)]
    md = (out / "fig5.md").read_text()
    assert "seeds where GAL's final val loss is lower: 3/3" in md
    assert "4/6 (3-6)" in md


def test_fig5_profiles_not_mixed_and_pdf_reproducible(runs: tuple[Path, dict],
                                                       tmp_path: Path) -> None:
    root, _ = runs
    out = tmp_path / "gpu"
    render_fig5(root, out, profile="gpu")
    summary = json.loads((out / "fig5.json").read_text())
    assert [p["panel"] for p in summary["panels"]] == ["table1/cifar10/sgd"]  # no gpu table5
    p = summary["panels"][0]
    assert "profile gpu" in p["title"] and "n=3 seeds" in p["title"]
    np.testing.assert_allclose(p["methods"]["gal"]["mean"], _curve(100.0, 1.0), rtol=1e-12)
    np.testing.assert_allclose(p["methods"]["baseline"]["max"], _curve(200.0, 1.0), rtol=1e-12)
    first = (out / "fig5.pdf").read_bytes()
    render_fig5(root, out, profile="gpu")
    assert (out / "fig5.pdf").read_bytes() == first


def test_fig5_missing_runs_error(runs: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = runs
    with pytest.raises(FileNotFoundError, match=r"make table5 PROFILE=paper"):
        render_figure(5, root, tmp_path / "out", profile="paper")
    with pytest.raises(FileNotFoundError, match=r"make table1 PROFILE=cpu"):
        render_figure(5, tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_epoch_ranges() -> None:
    assert epoch_ranges([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"
    assert epoch_ranges([]) == "none"
