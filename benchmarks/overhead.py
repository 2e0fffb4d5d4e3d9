"""GAL step overhead (Table VII's question): time per training step with and without GAL,
measured side by side in one process, reported as a ratio.

    python benchmarks/overhead.py [--device cpu|cuda] [--steps 50] [--out results/benchmarks/overhead_cpu.json]

Models: a small CNN classifier (d=10 features, h=(100-32-16), CIFAR-10 setting) and an MLP
regressor (d=1, h=(16-4), Table V setting). Baseline and GAL steps are interleaved so both see
the same machine state; the median of the per-step times is used.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gal import GradientAdjuster
from gal_suite.records import git_info


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _cases(device: str):
    cnn = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 10),
    ).to(device)
    x = torch.randn(128, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    yield "cnn_cifar_like", cnn, x, y, F.cross_entropy, GradientAdjuster(10, (100, 32, 16)).to(device)
    mlp = nn.Sequential(nn.Linear(13, 100), nn.ReLU(), nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 1)).to(device)
    xr = torch.randn(32, 13, device=device)
    yr = torch.randn(32, 1, device=device)
    yield "mlp_regression", mlp, xr, yr, F.mse_loss, GradientAdjuster(1, (16, 4), alpha=1e-3, beta=1e-3).to(device)


def _time_case(model, x, y, loss_fn, adj, device: str, steps: int) -> dict:
    opt = torch.optim.SGD(list(model.parameters()) + list(adj.parameters()), lr=0.01)

    def base_step():
        loss_fn(model(x), y).backward()
        opt.step()
        opt.zero_grad()

    def gal_step():
        adj.backward(model(x), y, loss_fn, lr=0.01)
        opt.step()
        opt.zero_grad()

    times: dict[str, list[float]] = {"baseline": [], "gal": []}
    for _ in range(5):  # warm-up
        base_step()
        gal_step()
    for _ in range(steps):
        for arm, fn in (("baseline", base_step), ("gal", gal_step)):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[arm].append(time.perf_counter() - t0)
    b, g = statistics.median(times["baseline"]), statistics.median(times["gal"])
    return {"baseline_s": b, "gal_s": g, "ratio": g / b, "steps": steps, "batch": int(x.shape[0])}


def bench(device: str, steps: int) -> dict:
    return {name: _time_case(model, x, y, loss_fn, adj, device, steps)
            for name, model, x, y, loss_fn, adj in _cases(device)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    commit, dirty = git_info()
    res = {
        "results": bench(args.device, args.steps),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "command": "python benchmarks/overhead.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items() if v is not None),
    }
    print(json.dumps(res, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
