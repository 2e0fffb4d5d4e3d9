"""Synthetic run records with known final errors and per-epoch GAL diagnostics for the tests of
Figs. 6, 7 and 8 (Sec. VI-A, VI-D, VI-E/F): ``tests/test_fig_analysis.py`` and
``tests/test_fig_analysis_paired.py``."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gal_suite import records
from gal_suite.records import RunWriter

EPOCHS = 4
DS, LABEL = "tiny100_32", "Tiny-ImageNet-100 at 32 px (CIFAR-100 stand-in)"
DEFAULTS = {"sgd": {"alpha": 0.01, "beta": 1.0, "arch": "256-64-32"},
            "lookahead_sgd": {"alpha": 0.001, "beta": 5.0, "arch": "256-64-32"},
            "adabound": {"alpha": 0.01, "beta": 10.0, "arch": "256-64-32"}}
#: sgd errors per method and seed (seed 0, 1, 2); None = a failed run
SGD = {
    "baseline": [40.0, 41.0, 42.5],
    "gal": [38.0, 39.5, 38.25],
    "gal+alpha=0.0001": [39.0, 38.0, 39.75],
    "gal+alpha=0.1": [44.0, 45.0, 43.0],
    "gal+alpha=1": [60.0, 62.0, None],
    "gal+beta=0.5": [41.0, 42.0, 41.5],
    "gal+beta=5": [43.0, 43.5, 44.0],
    "gal+arch=256": [39.0, 40.0, 41.0],
    "gal+arch=256-64-32-16": [40.5, 39.5, 41.5],
    "gal+adjuster=cnn+arch=256": [99.0, 99.0, 99.0],  # Table VIII: in no Fig. 7 panel
    "gal+adjuster=uniform+noise_scaling=unit": [None, None, 97.0],  # Table VI: diverged
    "gal+policy=lt": [38.5, 39.75, 38.5],
    "gal+policy=always": [39.0, 40.0, 40.0],
    "gal+policy=never": [40.0, 41.0, 42.5],  # = baseline, seed by seed
}
LA = {
    "baseline": [45.0, 44.0, 46.0],
    "gal": [43.0, 44.5, 43.5],
    "gal+alpha=0.01": [44.0, 46.0, 45.0],
    "gal+beta=1": [47.0, 46.5, 46.0],
}


def settings_of(optimizer: str, method: str) -> dict[str, Any] | None:
    if method == "baseline":
        return None
    g = {**DEFAULTS[optimizer], "adjuster": "mlp", "noise_scaling": "eq4", "policy": "leq"}
    for part in method.split("+")[1:]:
        k, v = part.split("=")
        g[k] = float(v) if k in ("alpha", "beta") else v
    return g


def known_diagnostics(seed: int, e: int, policy: str) -> dict[str, float]:
    """Known per-epoch GAL diagnostics of one run."""
    k = {"leq": 1.0, "lt": 1.1, "always": 1.3, "never": 0.7}[policy]
    return {"tentative_loss": 2.0 / e, "remainder": (-1) ** e * 1e-3 * k / (e + seed),
            "abs_remainder": 1e-2 * k / (e + seed) ** 2, "accept_rate": 0.9,
            "cosine": 0.05 * k * (seed + 1) - 0.01 * e, "g_beats_grad": 0.5 * k / (e + seed)}


def write(root: Path, key: str, profile: str, optimizer: str, method: str, seed: int,
           err: float | None, *, diag: bool = True, nan_beats: bool = False,
           record_profile: str | None = None, epochs: int = EPOCHS,
           accept: float | None = None) -> Path:
    g = settings_of(optimizer, method)
    cfg: dict[str, Any] = {
        "task": "classification", "table": 1 if key == "table1" else key, "dataset": DS,
        "dataset_label": LABEL, "optimizer": optimizer, "method": method, "seed": seed,
        "profile": record_profile or profile, "model": "convnet_tiny", "epochs": EPOCHS,
        "h_params": 0 if g is None else 100,
        **{f"gal_{k}": (None if g is None else g[k])
           for k in ("alpha", "beta", "arch", "adjuster", "noise_scaling", "policy")},
        "settings": {"gal": None if g is None else {"granularity": "batch", "policy": g["policy"]}},
    }
    if key == "table1":  # an older record: no gal_* keys
        cfg = {k: v for k, v in cfg.items() if not k.startswith("gal_")}
    d = root / key / profile / DS / optimizer / method / f"seed-{seed}"
    w = RunWriter(d, device="cpu")
    w.start(cfg, profile=cfg["profile"], seed=seed)
    for e in range(1, epochs + 1):
        row = {"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.1 / e, "lr": 0.1}
        if g is not None and diag:
            row.update(known_diagnostics(seed, e, g["policy"]))
            if accept is not None:
                row["accept_rate"] = accept
            if nan_beats:
                row["g_beats_grad"] = math.nan
        w.log(row)
    if err is None:
        w.fail("diverged: non-finite loss")
    else:
        w.finish({"error_top1": err, "error_top5": err / 4, "val_loss": 1.0})
    return d


def runs_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The synthetic records of both test modules (a module-scoped fixture's body)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(records, "git_info", lambda: ("test", False))  # no git subprocesses per run
        yield make_runs(tmp_path_factory.mktemp("figs") / "runs")


def make_runs(root: Path) -> Path:
    for opt, table in (("sgd", SGD), ("lookahead_sgd", LA)):
        for method, errs in table.items():
            for seed, err in enumerate(errs):
                write(root, "ablation", "cpu", opt, method, seed, err)
    # a run filed under cpu whose record says another profile: never used
    write(root, "ablation", "cpu", "sgd", "gal+alpha=0.5", 7, 1.0, record_profile="gpu")
    # Table I: GAL runs of two optimizers (older records without gal_* columns), a baseline,
    # a failed GAL run and a GAL run without diagnostics (a line with no epochs)
    for seed in range(2):
        write(root, "table1", "cpu", "sgd", "gal", seed, 30.0)
        write(root, "table1", "cpu", "lookahead_sgd", "gal", seed, 31.0)
        write(root, "table1", "cpu", "sgd", "baseline", seed, 32.0)
        write(root, "table1", "cpu", "adabound", "gal", seed, 33.0, diag=False)
    write(root, "table1", "cpu", "sgd", "gal", 2, None)
    return root


def mean_std_n(values: list[float | None]) -> tuple[float, float, int]:
    v = np.array([x for x in values if x is not None])
    return float(v.mean()), float(v.std(ddof=1)), len(v)


def check_point(p: dict, values: list[float | None]) -> None:
    mean, std, n = mean_std_n(values)
    assert p["n"] == n
    assert p["mean"] == pytest.approx(mean, rel=1e-12)
    assert p["std"] == pytest.approx(std, rel=1e-12)
    ok = [(s, v) for s, v in enumerate(values) if v is not None]
    assert p["per_seed"] == {str(s): v for s, v in ok}


def written_files(out: Path, written: list[Path], stem: str) -> None:
    for ext in ("png", "pdf", "json", "md"):
        path = out / f"{stem}.{ext}"
        assert path in written and path.stat().st_size > 0
    assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"


def fig8_dataset(root: Path, out: Path, profile: str) -> dict[str, Any]:
    """Fig. 8 rendered from ``root`` into ``out``: the summary JSON's one dataset."""
    from gal_suite.fig8 import render_fig8

    paths = render_fig8(root, out, profile=profile)
    [ds] = json.loads(next(p for p in paths if p.suffix == ".json").read_text())["datasets"]
    return ds


def rendered(n: int, root: Path, out: Path) -> dict[str, Any]:
    """Fig. ``n`` rendered from ``root`` into ``out``: every output written, the summary JSON."""
    from gal_suite.figures import FIGURES, render_figure

    stem = FIGURES[n].stem("cpu")  # the synthetic records are the cpu profile's
    written_files(out, render_figure(n, root, out), stem)
    return json.loads((out / f"{stem}.json").read_text())
