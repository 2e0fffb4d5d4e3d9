"""Training images/s of the ``cpu``-profile classification model, baseline vs GAL, side by side.

    python benchmarks/classification_throughput.py [--steps 20] [--profile cpu]
        [--out results/benchmarks/classification_throughput_cpu.json]

Both arms are built by the task code (:func:`experiments.classification.build_run`, SGD, the
profile's model, batch size and GAL settings of Table I) on the same random batch; their steps are
interleaved (A B A B ...) after warm-up so that both see the same machine state, and the median
per-image time of each arm and their ratio are reported (Table VII's question, on this machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from experiments import classification as C
from experiments.engine import make_criterion, train_one_epoch
from experiments.image_data import ImageSet
from gal_suite.config import load_config
from gal_suite.records import git_info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cfg = load_config(C.CONFIG_PATH, args.profile)
    torch.set_num_threads(int(cfg["num_threads"]) or torch.get_num_threads())
    ds_key = cfg["run"]["table1"]["dataset"]
    bs = int(cfg["train"]["batch_size"])
    size = int(cfg["train"]["image_size"])
    g = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randint(0, 256, (bs, 3, size, size), dtype=torch.uint8, generator=g),
                    torch.randint(0, int(cfg["datasets"][ds_key]["num_classes"]), (bs,), generator=g),
                    [str(i) for i in range(int(cfg["datasets"][ds_key]["num_classes"]))], "random")
    runs = {m: C.build_run(C.run_settings(cfg, C.RunSpec(1, args.profile, ds_key, "sgd", m, 0)),
                           data, data, 0) for m in ("baseline", "gal")}
    crit = make_criterion(float(cfg["train"]["label_smoothing"]))
    times: dict[str, list[float]] = {m: [] for m in runs}
    for i in range(args.warmup + args.steps):
        for m, r in runs.items():  # one batch = one epoch of this one-batch dataset
            out = train_one_epoch(r.model, crit, r.train_loader, r.optimizer, r.device, 1,
                                  adjuster=r.adjuster)
            if i >= args.warmup:
                times[m].append(out["s_per_image"])
    med = {m: statistics.median(t) for m, t in times.items()}
    ratio = med["gal"] / med["baseline"]
    commit, dirty = git_info()
    report = {
        "what": "cpu-profile Table I model, SGD: training seconds per image, baseline vs GAL, "
                "interleaved in one process (median over steps)",
        "profile": args.profile, "model": cfg["model"]["name"], "batch_size": bs,
        "gal_arch": cfg["datasets"][ds_key]["gal_arch"], "steps": args.steps,
        "s_per_image": med, "images_per_s": {m: 1.0 / v for m, v in med.items()},
        "spread_s_per_image": {m: [min(t), max(t)] for m, t in times.items()},
        "ratio_gal_over_baseline": ratio, "overhead_percent": 100 * (ratio - 1),
        "device": str(runs["gal"].device), "threads": torch.get_num_threads(),
        "machine": platform.platform(), "git_commit": commit, "git_dirty": dirty,
        "command": "python benchmarks/classification_throughput.py",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out = Path(args.out or f"results/benchmarks/classification_throughput_{runs['gal'].device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"baseline {report['images_per_s']['baseline']:.0f} img/s, GAL "
          f"{report['images_per_s']['gal']:.0f} img/s, ratio {ratio:.3f} -> {out}")


if __name__ == "__main__":
    main()
