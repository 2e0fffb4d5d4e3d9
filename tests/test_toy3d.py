"""Fig. 4 (Sec. IV-D): the 3D example, experiments/toy3d.py and gal_suite.figures (render from records).

* the baseline GD path of the suite equals a hand-written gradient-descent loop on f with
  hand-derived partial derivatives, to 1e-6;
* GAL with alpha = 0 (no adjustment, Eq. 4) reproduces the baseline path for every optimizer and
  both conventions;
* the numbers of fig4.json are recomputed independently from the records' history.csv.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from experiments import toy3d
from gal_suite.figures import path_summary, render_figure, toy3d_surface

START = (0.75, 1.0)


def f_hand(x: float, y: float) -> float:
    return -math.sin(x**2) * math.cos(3 * y**2) * math.exp(-((x * y) ** 2)) - math.exp(-((x + y) ** 2))


def grad_hand(x: float, y: float) -> tuple[float, float]:
    """Partial derivatives of f(x, y) = -sin(x^2) cos(3y^2) exp(-(xy)^2) - exp(-(x+y)^2), by hand.

    With A = sin(x^2), B = cos(3y^2), C = exp(-x^2 y^2), D = exp(-(x+y)^2):
      df/dx = -2x B C (cos(x^2) - y^2 A) + 2(x+y) D
      df/dy =  2y A C (3 sin(3y^2) + x^2 B) + 2(x+y) D
    """
    a, b = math.sin(x**2), math.cos(3 * y**2)
    c, d = math.exp(-((x * y) ** 2)), math.exp(-((x + y) ** 2))
    dx = -2 * x * b * c * (math.cos(x**2) - y**2 * a) + 2 * (x + y) * d
    dy = 2 * y * a * c * (3 * math.sin(3 * y**2) + x**2 * b) + 2 * (x + y) * d
    return dx, dy


def test_hand_gradient_is_a_gradient() -> None:
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(-1.5, 1.5, size=(20, 2)):
        h = 1e-6
        fdx = (f_hand(x + h, y) - f_hand(x - h, y)) / (2 * h)
        fdy = (f_hand(x, y + h) - f_hand(x, y - h)) / (2 * h)
        gx, gy = grad_hand(x, y)
        assert gx == pytest.approx(fdx, abs=1e-6) and gy == pytest.approx(fdy, abs=1e-6)
        p = torch.tensor([x, y], dtype=torch.float64)
        assert float(toy3d.surface(p)) == pytest.approx(f_hand(x, y), abs=1e-14)
        assert float(toy3d_surface(x, y)) == pytest.approx(f_hand(x, y), abs=1e-14)


def _history(runs_root: Path, conv: str, opt: str, arm: str, seed: int) -> pd.DataFrame:
    d = toy3d.run_dir_of(runs_root, conv, opt, arm, seed)
    assert json.loads((d / "status.json").read_text())["status"] == "complete"
    return pd.read_csv(d / "history.csv")


def test_baseline_gd_path_matches_hand_written_loop(tmp_path: Path) -> None:
    cfg = toy3d.load_toy3d_config("cpu")
    steps, lr = cfg["optimizers"]["sgd"]["steps"], cfg["optimizers"]["sgd"]["lr"]
    assert (steps, lr) == (100, 0.1) and tuple(cfg["start"]) == START
    rc = toy3d.main(["--runs-root", str(tmp_path), "--convention", "paper", "--optimizer", "sgd",
                     "--arm", "baseline"])
    assert rc == 0
    hist = _history(tmp_path, "paper", "sgd", "baseline", 0)
    x, y = START
    expected = [(0, x, y, f_hand(x, y))]
    for t in range(1, steps + 1):
        gx, gy = grad_hand(x, y)
        x, y = x - lr * gx, y - lr * gy
        expected.append((t, x, y, f_hand(x, y)))
    exp = np.array(expected)
    assert list(hist["step"]) == list(range(steps + 1))
    np.testing.assert_allclose(hist[["x", "y", "f"]].to_numpy(), exp[:, 1:], rtol=0, atol=1e-6)
    # re-running a finished run is a no-op
    mtime = (toy3d.run_dir_of(tmp_path, "paper", "sgd", "baseline", 0) / "history.csv").stat().st_mtime
    toy3d.main(["--runs-root", str(tmp_path), "--convention", "paper", "--optimizer", "sgd",
                "--arm", "baseline"])
    assert (toy3d.run_dir_of(tmp_path, "paper", "sgd", "baseline", 0) / "history.csv").stat().st_mtime == mtime


@pytest.mark.parametrize("convention", ["paper", "authors"])
def test_gal_with_alpha_zero_reproduces_baseline(convention: str) -> None:
    torch.set_num_threads(1)
    cfg = toy3d.load_toy3d_config("cpu")
    for name in cfg["optimizers"]:
        base_rc = toy3d.run_config(cfg, convention, name, "baseline", 0)
        gal_rc = toy3d.run_config(cfg, convention, name, "gal", 3)
        gal_rc["gal"]["alpha"] = 0.0
        for rc in (base_rc, gal_rc):
            rc["steps"] = 60
        base, gal = [], []
        toy3d.simulate(base_rc, base.append)
        toy3d.simulate(gal_rc, gal.append)
        b = np.array([[r["x"], r["y"], r["f"]] for r in base])
        g = np.array([[r["x"], r["y"], r["f"]] for r in gal])
        np.testing.assert_allclose(g, b, rtol=0, atol=1e-12, err_msg=f"{convention}/{name}")
        assert all(r["accept_rate"] == 1.0 for r in gal[1:])  # g == grad is always accepted (<=)


def _summary_by_hand(f: list[float], ref: float, tol: float = 1e-3) -> dict:
    final = f[-1]
    first = next(t for t, v in enumerate(f) if abs(v - final) <= tol)
    settled = 0
    for t, v in enumerate(f):
        if abs(v - final) > tol:
            settled = t + 1
    reached = next((t for t, v in enumerate(f) if v <= ref + tol), None)
    return {"final_f": final, "first_within": first, "settled_within": settled, "min_f": min(f),
            "reached_reference": reached}


def test_fig4_json_numbers_recomputed_from_history(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "figures"
    rc = toy3d.main(["--runs-root", str(runs), "--optimizer", "sgd", "--optimizer", "adam",
                     "--seeds", "3", "--set", "optimizers.adam.steps=80"])
    assert rc == 0
    written = render_figure(4, runs, out, gif=True)
    for name in ("fig4.png", "fig4.pdf", "fig4.json", "fig4-authors.png", "fig4-authors.pdf",
                 "fig4.gif"):
        assert out / name in written and (out / name).stat().st_size > 0
    summary = json.loads((out / "fig4.json").read_text())
    assert summary["tolerance"] == 1e-3
    for conv in ("paper", "authors"):
        for name in ("sgd", "adam"):
            item = summary["conventions"][conv][name]
            b = list(_history(runs, conv, name, "baseline", 0)["f"])
            ref = b[-1]
            exp_b = _summary_by_hand(b, ref)
            for k, v in exp_b.items():
                assert item["baseline"][k] == pytest.approx(v, abs=1e-12), (conv, name, k)
            per = {}
            for seed in range(3):
                fs = list(_history(runs, conv, name, "gal", seed)["f"])
                per[seed] = _summary_by_hand(fs, ref)
                for k, v in per[seed].items():
                    assert item["gal"]["seeds"][str(seed)][k] == pytest.approx(v, abs=1e-12)
            for k in ("final_f", "first_within", "settled_within", "min_f"):
                vals = sorted(p[k] for p in per.values())
                assert item["gal"]["median"][k] == pytest.approx(vals[1], abs=1e-12)
            # the median seed: ordered by (reached_reference, never last; first_within; seed)
            order = sorted(per, key=lambda s: (
                math.inf if per[s]["reached_reference"] is None else per[s]["reached_reference"],
                per[s]["first_within"], s))
            assert item["gal"]["median_seed"] == order[1]


def test_path_summary_definitions() -> None:
    f = [1.0, 0.0, 0.5, 0.0005, 0.0]  # within 1e-3 of final at step 1, leaves, settles at 3
    s = path_summary(range(5), f, reference_f=-1.0)
    assert (s["first_within"], s["settled_within"], s["min_f"], s["min_step"]) == (1, 3, 0.0, 1)
    assert s["reached_reference"] is None


def test_other_figures_raise_not_implemented(tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError, match="implemented figures: 4"):
        render_figure(9, tmp_path, tmp_path)
    with pytest.raises(FileNotFoundError, match="make fig4"):
        render_figure(4, tmp_path, tmp_path)
