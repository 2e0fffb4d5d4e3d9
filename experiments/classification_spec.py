"""What one classification run *is*: its :class:`RunSpec` (table, profile, dataset, optional
model, optimizer, method, seed), its effective settings (what its result depends on, hashed for
resume) and the identifiers its record carries for the tables (paper Sec. V-B, Tables I-III, VI,
VIII).

Table III varies the model (ResNet-50, EfficientNet-B2) instead of the optimizer: its runs have
a ``model`` key naming an entry of the config's ``models:`` section, whose fields override the
run's model (``name``: the timm network actually built, ``drop_rate``, ``drop_path_rate``,
``kwargs`` for ``timm.create_model``), h's architecture (``gal_arch``, Sec. V-B: (512-128) for
ResNet, (512-256) for EfficientNet) and ``train`` settings. Runs of the other tables have no
model key and keep their run directories and labels.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from experiments.common import choose_device, config_hash
from experiments.gal_variants import apply_method
from experiments.runner import PathParts
from gal_suite.config import ConfigError

__all__ = ["RunSpec", "default_gal", "gal_columns", "model_config", "record_config", "run_settings"]


@dataclasses.dataclass(frozen=True)
class RunSpec(PathParts):
    """One run: of Table I, II or III (``table`` 1, 2, 3) or of the analyses (``table="ablation"``,
    Tables VI, VIII and Figs. 7, 8, all in ``<root>/ablation/``). ``model`` (Table III) names an
    entry of the config's ``models:``; None for the other tables."""

    table: int | str
    profile: str
    dataset: str
    optimizer: str
    method: str
    seed: int
    model: str | None = None

    @property
    def subdir(self) -> str:
        return f"table{self.table}" if isinstance(self.table, int) else str(self.table)

    @property
    def _parts(self) -> list[str]:
        model = [] if self.model is None else [self.model]
        return [self.subdir, self.profile, self.dataset, *model, self.optimizer, self.method,
                f"seed-{self.seed}"]


_FLAG_TEXT = {"true": True, "yes": True, "on": True, "1": True,
              "false": False, "no": False, "off": False, "0": False}


def _auto(flag: Any, device: torch.device, key: str = "train.amp") -> bool:
    """``auto`` -> on for CUDA; a bool, or its text (``--set train.amp=false`` keeps the string
    type of the default ``auto``: true/false/yes/no/on/off/1/0), as given."""
    if isinstance(flag, str):
        text = flag.strip().lower()
        if text == "auto":
            return device.type == "cuda"
        if text not in _FLAG_TEXT:
            raise ConfigError(f"{key} must be auto, true or false, got {flag!r}")
        return _FLAG_TEXT[text]
    return bool(flag)


def model_config(cfg: Mapping[str, Any], spec: RunSpec) -> dict[str, Any]:
    """The config of ``spec``'s run: ``cfg`` itself, or for a run with a model key a copy with
    that ``models:`` entry applied (model name / drop rates / kwargs, ``gal_arch`` of the run's
    dataset, ``train`` overrides; each ``train`` key must exist in ``train``)."""
    if spec.model is None:
        return dict(cfg)
    models = cfg.get("models") or {}
    if spec.model not in models:
        raise ConfigError(f"unknown model {spec.model!r}; choose from {', '.join(models) or '(none)'} "
                          f"(the config's models: section)")
    entry = models[spec.model]
    out = copy.deepcopy(dict(cfg))
    out["model"] = {**out["model"], **{k: entry[k] for k in ("name", "drop_rate", "drop_path_rate", "kwargs")
                                       if k in entry}}
    if entry.get("gal_arch"):
        out["datasets"][spec.dataset]["gal_arch"] = list(entry["gal_arch"])
    for k, v in (entry.get("train") or {}).items():
        if k not in out["train"]:
            raise ConfigError(f"models.{spec.model}.train.{k}: unknown train key (known: "
                              f"{', '.join(out['train'])})")
        out["train"][k] = v
    return out


def run_settings(cfg: Mapping[str, Any], spec: RunSpec) -> dict[str, Any]:
    """The effective settings of one run (what its result depends on; hashed for resume)."""
    cfg = model_config(cfg, spec)
    ds = cfg["datasets"][spec.dataset]
    device = choose_device(cfg["device"])
    s: dict[str, Any] = {
        "dataset": spec.dataset, "data": dict(ds["data"]), "num_classes": int(ds["num_classes"]),
        "model": dict(cfg["model"]), "train": dict(cfg["train"]),
        "optimizer": spec.optimizer, "opt": dict(cfg["optimizers"][spec.optimizer]),
        "device": str(device), "amp": _auto(cfg["train"]["amp"], device, "train.amp"),
        "channels_last": _auto(cfg["train"]["channels_last"], device, "train.channels_last"),
    }
    g = apply_method(default_gal(cfg, spec.dataset, spec.optimizer), spec.method)
    if g is not None:
        s["gal"] = g
    return s


def default_gal(cfg: Mapping[str, Any], dataset: str, optimizer: str) -> dict[str, Any]:
    """The paper's GAL settings for (dataset, optimizer) (Sec. V-B): ``cfg.gal`` with the
    dataset's ``gal.<optimizer>`` (alpha, beta) and ``gal_arch``."""
    ds = cfg["datasets"][dataset]
    g = {**dict(cfg["gal"]), **dict(ds["gal"][optimizer]), "arch": list(ds["gal_arch"])}
    if g.get("precision") is None:  # the default (z's dtype) leaves the run's settings as before
        g.pop("precision", None)
    return g


def record_config(cfg: Mapping[str, Any], spec: RunSpec, settings: Mapping[str, Any],
                  overrides: Mapping[str, Any] | None, n_params: int, h_params: int) -> dict[str, Any]:
    """config.yaml of a run: identifiers the tables select on, settings and the full config.
    ``model`` is the network built; a Table III run adds ``model_key`` (its ``models:`` entry,
    the table's grouping) and ``model_label``."""
    cfg = model_config(cfg, spec)
    ds = cfg["datasets"][spec.dataset]
    axis: dict[str, Any] = {}
    if spec.model is not None:
        entry = cfg["models"][spec.model]
        axis = {"model_key": spec.model, "model_label": entry.get("label") or spec.model}
    return {
        "task": "classification", "table": spec.table, "dataset": spec.dataset,
        "dataset_label": ds["label"], "optimizer": spec.optimizer, "method": spec.method,
        "seed": spec.seed, "profile": spec.profile, "model": cfg["model"]["name"], **axis,
        "pretrained": bool(cfg["model"]["pretrained"] or cfg["model"]["pretrained_file"]),
        "epochs": int(cfg["train"]["epochs"]), "n_params": n_params, "h_params": h_params,
        "train_subset": int(cfg["train"]["train_subset"] or 0),
        **gal_columns(settings.get("gal")),
        "config_hash": config_hash(settings), "settings": dict(settings),
        "overrides": dict(overrides or {}), "config": dict(cfg),
    }


def gal_columns(g: Mapping[str, Any] | None) -> dict[str, Any]:
    """The GAL settings the analyses select and plot on (Tables VI, VIII, Figs. 7, 8) as flat
    record keys ``gal_alpha``, ``gal_beta``, ``gal_arch`` (``"256-64-32"``), ``gal_adjuster``,
    ``gal_noise_scaling``, ``gal_policy``; all ``None`` for the baseline."""
    if g is None:
        return {f"gal_{k}": None for k in ("alpha", "beta", "arch", "adjuster", "noise_scaling", "policy")}
    return {"gal_alpha": float(g["alpha"]), "gal_beta": float(g["beta"]),
            "gal_arch": "-".join(str(int(w)) for w in g["arch"]),
            "gal_adjuster": g.get("adjuster", "mlp"), "gal_noise_scaling": g.get("noise_scaling", "eq4"),
            "gal_policy": g["policy"]}
