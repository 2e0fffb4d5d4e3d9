"""What one run of Table V is (:mod:`experiments.regression`): its :class:`RunSpec` (profile,
variant, dataset, method, seed), its effective settings (what its result depends on; hashed for
resume and stale-run detection) and the config.yaml it records."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.stale_runs import config_hash

__all__ = ["CONFIG_PATH", "RunSpec", "record_config", "run_settings"]

CONFIG_PATH = Path(__file__).resolve().parent / "configs" / "regression.yaml"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of Table V."""

    profile: str
    variant: str
    dataset: str
    method: str
    seed: int

    def run_dir(self, root: str | os.PathLike[str]) -> Path:
        return Path(root) / self.profile / self.variant / self.dataset / self.method / f"seed-{self.seed}"

    @property
    def label(self) -> str:
        return f"{self.profile}/{self.variant}/{self.dataset}/{self.method}/seed-{self.seed}"


def run_settings(cfg: Mapping[str, Any], spec: RunSpec) -> dict[str, Any]:
    """The effective settings of one run (what its result depends on; hashed for resume)."""
    ds = cfg["datasets"][spec.dataset]
    split_seed = cfg["data"]["split_seed"]
    s: dict[str, Any] = {
        "test_size": cfg["data"]["test_size"],
        "split_seed": spec.seed if split_seed is None else int(split_seed),
        "hidden": list(ds["hidden"]),
        "epochs": int(ds["epochs"]),
        "batch_size": int(ds["batch_size"]),
        "optimizer": cfg["train"]["optimizer"],
        "lr": float(cfg["train"]["lr"]),
        "weight_decay": float(cfg["train"]["weight_decay"]),
        "dtype": cfg["dtype"],
        "device": cfg["device"],
    }
    if spec.method in ("gal", "gal_alpha0", "noise_normal"):
        g = cfg["gal"]
        s.update({
            "alpha": 0.0 if spec.method == "gal_alpha0" else float(g["alpha"]),
            "beta": float(g["beta"]),
            "policy": g["policy"],
            "granularity": g["granularity"],
            "first_order": g["first_order"],
            "h_optimizer": g["h_optimizer"],
        })
        if spec.method == "noise_normal":
            s.update({"adjuster": cfg["noise"]["adjuster"], "noise_scaling": cfg["noise"]["noise_scaling"]})
        else:
            s.update({"adjuster": "mlp", "adjuster_arch": list(ds["adjuster_arch"]),
                      "activation": g["activation"]})
    if spec.method == "mlp_sklearn":
        s.update({f"sklearn_{k}": v for k, v in cfg["mlp_sklearn"].items()})
    if spec.method == "ols":
        s = {"test_size": s["test_size"], "split_seed": s["split_seed"]}
    return s


def record_config(
    cfg: Mapping[str, Any], spec: RunSpec, settings: Mapping[str, Any],
    overrides: Mapping[str, Any] | None, config_path: str | os.PathLike[str] = CONFIG_PATH,
) -> dict[str, Any]:
    """config.yaml of a run: identifiers, effective settings and the full resolved config."""
    return {
        "task": "regression",
        "table": 5,
        "dataset": spec.dataset,
        "method": spec.method,
        "variant": spec.variant,
        "seed": spec.seed,
        "profile": spec.profile,
        "config_hash": config_hash(settings),
        "settings": dict(settings),
        "config_file": _display_path(config_path),
        "overrides": dict(overrides or {}),
        "config": dict(cfg),
    }


def _display_path(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the repository root when it lies inside it, else absolute."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(CONFIG_PATH.parents[2]))
    except ValueError:
        return str(p)
