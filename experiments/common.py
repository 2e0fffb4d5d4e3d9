"""Task-independent training helpers shared by the experiment scripts (Table V now; the CIFAR /
ImageNet tasks of Tables I-III later).

* :func:`seed_everything`, :func:`rng_state` / :func:`set_rng_state` - seeding and the RNG states a
  checkpoint must carry so that a resumed run reproduces an uninterrupted one bit for bit.
* :func:`choose_device`, :func:`set_threads` - device and CPU-thread choice from the config.
* :class:`EpochAverager` - per-epoch means of the training loss and of GAL's diagnostics
  (:class:`gal.GALStats`: remainder, ``|r|``, acceptance rate, cosine, g-beats-grad), accumulated
  as tensors on the device and converted to Python floats once per epoch (one host sync).
* :func:`run_epochs` - the checkpoint / resume / non-finite-loss loop around a task's
  ``train_epoch`` and ``evaluate`` callables, writing through :class:`gal.records.RunWriter`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gal.records import RunWriter, to_builtin

__all__ = [
    "DIAGNOSTICS",
    "EpochAverager",
    "ResumeMismatch",
    "choose_device",
    "config_hash",
    "rng_state",
    "run_epochs",
    "seed_everything",
    "set_rng_state",
    "set_threads",
]

#: GAL diagnostics averaged per epoch into the history (names of :class:`gal.GALStats` fields).
DIAGNOSTICS = ("remainder", "abs_remainder", "accept_rate", "cosine", "g_beats_grad")

_CONFIG_HASH_KEY = "config_hash"


class ResumeMismatch(RuntimeError):
    """A checkpoint in ``<run>.partial`` was made with different settings than the current ones."""


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch's global RNG (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states (Python, NumPy, torch CPU and CUDA) for a checkpoint."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def choose_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> cuda if available else cpu; otherwise ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available; use device: cpu")
    return dev


def set_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` when ``n`` is a positive int (``None``/0: leave torch's default)."""
    if n:
        torch.set_num_threads(int(n))


def config_hash(settings: Mapping[str, Any]) -> str:
    """A short stable hash of a run's effective settings (detects a resume under changed settings)."""
    blob = json.dumps(to_builtin(dict(settings)), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class EpochAverager:
    """Per-epoch means of scalar tensors without a host sync per step.

    ``add(loss=..., stats=GALStats | None)`` once per step; :meth:`means` converts the sums to
    Python floats with a single ``.tolist()`` at the end of the epoch. Keys never added are absent.
    """

    def __init__(self, names: Sequence[str] = ("train_loss", *DIAGNOSTICS)) -> None:
        self.names = tuple(names)
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def add(self, values: Mapping[str, torch.Tensor]) -> None:
        for k, v in values.items():
            if k not in self.names:
                continue
            v = v.detach().to(torch.float64)
            if k in self._sums:
                self._sums[k] = self._sums[k] + v
            else:
                self._sums[k] = v.clone()
        self._count += 1

    def means(self) -> dict[str, float]:
        if not self._sums or self._count == 0:
            return {}
        keys = [k for k in self.names if k in self._sums]
        vals = (torch.stack([self._sums[k] for k in keys]) / self._count).cpu().tolist()
        return dict(zip(keys, vals, strict=True))


def _finite(row: Mapping[str, Any], keys: Sequence[str]) -> bool:
    for k in keys:
        v = row.get(k)
        if isinstance(v, int | float) and not math.isfinite(v):
            return False
    return True


def run_epochs(
    writer: RunWriter,
    *,
    epochs: int,
    settings_hash: str,
    train_epoch: Callable[[int], dict[str, float]],
    evaluate: Callable[[int], dict[str, float]],
    get_state: Callable[[], dict[str, Any]],
    set_state: Callable[[dict[str, Any]], None],
    checkpoint_every: int = 1,
    loss_keys: Sequence[str] = ("train_loss", "val_loss"),
    fail_hint: str = "lower the learning rate (train.lr) or standardise the data",
    on_epoch: Callable[[int], None] | None = None,
) -> str:
    """Train epochs ``1..epochs`` with per-epoch checkpoints; resume from the last checkpoint.

    Call it after ``writer.start(...)``; it loads the checkpoint itself. Steps:

    1. ``state = writer.load_checkpoint()``; if present, its ``config_hash`` must equal
       ``settings_hash`` (else :class:`ResumeMismatch` says to delete ``<run>.partial``), then
       ``set_state(state["task"])`` and the global RNG states are restored.
    2. For each remaining epoch ``e`` (1-based): ``row = {"epoch": e, **train_epoch(e),
       **evaluate(e)}``; a non-finite value under ``loss_keys`` ends the run with
       ``writer.fail("non-finite loss at epoch e; <fail_hint>")`` and returns ``"failed"``.
       Otherwise the row is logged and, every ``checkpoint_every`` epochs and at the last one,
       ``{"task": get_state(), "rng": rng_state(), "epoch": e, "config_hash": ...}`` is saved.

    The caller calls ``writer.finish(metrics)`` after this returns ``"trained"``.

    Returns:
        ``"trained"`` or ``"failed"``.
    """
    state = writer.load_checkpoint()
    start = 0
    if state is not None:
        if state.get(_CONFIG_HASH_KEY) != settings_hash:
            raise ResumeMismatch(
                f"{writer.partial_dir} holds a checkpoint made with different settings "
                f"(config hash {state.get(_CONFIG_HASH_KEY)} != {settings_hash}); delete that "
                f"directory to start the run afresh"
            )
        set_state(state["task"])
        set_rng_state(state["rng"])
        start = int(state["epoch"])
    every = max(1, int(checkpoint_every))
    for e in range(start + 1, epochs + 1):
        row: dict[str, Any] = {"epoch": e}
        row.update(train_epoch(e))
        row.update(evaluate(e))
        if not _finite(row, loss_keys):
            writer.log(row)
            bad = ", ".join(f"{k}={row.get(k)}" for k in loss_keys if k in row)
            writer.fail(f"non-finite loss at epoch {e} ({bad}); {fail_hint}")
            return "failed"
        writer.log(row)
        if e % every == 0 or e == epochs:
            writer.save_checkpoint({
                "task": get_state(), "rng": rng_state(), "epoch": e, _CONFIG_HASH_KEY: settings_hash,
            })
        if on_epoch is not None:
            on_epoch(e)
    return "trained"

