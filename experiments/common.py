"""Task-independent training helpers shared by the experiment scripts (Table V now; the CIFAR /
ImageNet tasks of Tables I-III later).

* :func:`seed_everything`, :func:`rng_state` / :func:`set_rng_state` - seeding and the RNG states a
  checkpoint must carry so that a resumed run reproduces an uninterrupted one bit for bit.
* :func:`choose_device`, :func:`set_threads` - device and CPU-thread choice from the config.
* :class:`EpochAverager` - per-epoch means of the training loss and of GAL's diagnostics
  (:class:`gal.GALStats`: remainder, ``|r|``, acceptance rate, cosine, g-beats-grad), accumulated
  as tensors on the device and converted to Python floats once per epoch (one host sync).
* :func:`run_epochs` - the checkpoint / resume / non-finite-loss loop around a task's
  ``train_epoch`` and ``evaluate`` callables, writing through :class:`gal_suite.records.RunWriter`.
* :func:`pending`, :func:`stale_keys` - which runs of a plan still have to run, and which
  finished ones were made with other settings than requested (refused with
  :class:`StaleRuns`, or set aside and re-run with ``--rerun-stale``); in
  :mod:`experiments.stale_runs`, re-exported here.
* :func:`csv_list`, :func:`check_choice` - selector values of the runners' command lines (the
  command line itself, with the plan / stale / launch steps every runner shares, is in
  :mod:`experiments.runner`).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from experiments.stale_runs import (
    CONFIG_HASH_KEY,
    StaleRuns,
    config_hash,
    pending,
    set_aside_stale,
    settings_diff,
    stale_keys,
    stale_message,
)
from gal_suite.config import ConfigError
from gal_suite.records import IGNORED_SETTINGS, IMPLICIT_SETTINGS, RunWriter

__all__ = [
    "DIAGNOSTICS",
    "TrainState",
    "EpochAverager",
    "GAL_FINITE_KEYS",
    "IGNORED_SETTINGS",
    "IMPLICIT_SETTINGS",
    "RankWriter",
    "ResumeMismatch",
    "StaleRuns",
    "check_choice",
    "choose_device",
    "config_hash",
    "csv_list",
    "pending",
    "rng_state",
    "run_epochs",
    "seed_everything",
    "set_rng_state",
    "set_aside_stale",
    "set_threads",
    "settings_diff",
    "stale_keys",
    "stale_message",
]

#: GAL diagnostics averaged per epoch into the history (names of :class:`gal.GALStats` fields).
DIAGNOSTICS = ("remainder", "abs_remainder", "accept_rate", "cosine", "g_beats_grad")



class ResumeMismatch(RuntimeError):
    """A checkpoint in ``<run>.partial`` was made with different settings than the current ones."""


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch's global RNG (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states (Python, NumPy, torch CPU and CUDA) for a checkpoint, as tensors
    and plain data (what ``torch.load(..., weights_only=True)`` reads back): Python's state is
    a tuple of ints, NumPy's Mersenne-Twister key an int64 tensor beside its position and
    Gaussian cache."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"name": str(name), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["key"].numpy().astype(np.uint32), int(n["pos"]),
                         int(n["has_gauss"]), float(n["gauss"])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def choose_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> cuda if available else cpu; otherwise ``torch.device(name)``."""
    if not isinstance(name, str):
        raise ConfigError(f"device: {name!r} is not a device name; use auto, cpu, cuda or cuda:<k>")
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


class EpochAverager:
    """Per-epoch means of scalar tensors without a host sync per step.

    :meth:`add` (or :meth:`add_stats`, a GAL step) once per step; :meth:`means` converts the sums
    to Python floats with a single ``.tolist()`` at the end of the epoch. Keys never added are absent.

    The values of one step are stacked into one float64 vector and added with one operator
    (GAL logs six values per step: six separate accumulations would cost more than GAL's own
    diagnostics); a step whose keys differ from the first step's is accumulated key by key.
    The sums are the same float64 numbers either way.
    """

    def __init__(self, names: Sequence[str] = ("train_loss", *DIAGNOSTICS)) -> None:
        self.names = tuple(names)
        self._wanted = frozenset(self.names)
        self._keys: tuple[str, ...] | None = None  # keys of the stacked fast path
        self._vec: torch.Tensor | None = None
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def add(self, values: Mapping[str, torch.Tensor]) -> None:
        self._count += 1
        keys = tuple(k for k in values if k in self._wanted)
        if not keys:
            return
        if self._keys is None:
            self._keys = keys
        with torch.no_grad():
            if keys == self._keys and all(values[k].dim() == 0 for k in keys):
                vec = torch.stack([values[k] for k in keys]).to(torch.float64)
                self._vec = vec if self._vec is None else self._vec + vec
                return
            for k in keys:
                v = values[k].detach().to(torch.float64)
                self._sums[k] = self._sums[k] + v if k in self._sums else v.clone()

    def add_stats(self, stats: Any) -> None:
        """One GAL step's :class:`gal.GALStats` (Alg. 1's diagnostics), its ``loss`` as ``train_loss``."""
        d = stats.as_dict()
        d["train_loss"] = d.pop("loss")
        self.add(d)

    def means(self) -> dict[str, float]:
        if self._count == 0 or (self._vec is None and not self._sums):
            return {}
        sums = dict(self._sums)
        if self._vec is not None and self._keys is not None:
            for k, v in zip(self._keys, self._vec.unbind(), strict=True):
                sums[k] = sums[k] + v if k in sums else v
        keys = [k for k in self.names if k in sums]
        vals = (torch.stack([sums[k] for k in keys]) / self._count).cpu().tolist()
        return dict(zip(keys, vals, strict=True))


def _nonfinite(row: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """``"key=value"`` for each of ``keys`` present in ``row`` whose number is NaN or inf."""
    bad = []
    for k in keys:
        v = row.get(k)
        if isinstance(v, int | float) and not math.isfinite(v):
            bad.append(f"{k}={v}")
    return bad


@dataclass
class TrainState:
    """A run's resumable training state, for :func:`run_epochs`' ``get_state`` / ``set_state``
    (:meth:`get`, :meth:`set`), saved in its checkpoint under the parts' names: ``parts`` have
    ``state_dict`` / ``load_state_dict`` (model, optimizer, scheduler, adjuster, ...; None:
    absent, not saved), ``generators`` have ``get_state`` / ``set_state`` (the data order),
    ``counters`` are numbers the run adds to (e.g. ``train_seconds``)."""

    parts: Mapping[str, Any]
    generators: Mapping[str, Any] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)

    def get(self) -> dict[str, Any]:
        st: dict[str, Any] = {k: obj.state_dict() for k, obj in self.parts.items() if obj is not None}
        st.update({k: g.get_state() for k, g in self.generators.items()})
        st.update(self.counters)
        return st

    def set(self, st: Mapping[str, Any]) -> None:
        for k, obj in self.parts.items():
            if obj is not None:
                obj.load_state_dict(st[k])
        for k, g in self.generators.items():
            g.set_state(st[k])
        for k in self.counters:
            self.counters[k] = float(st[k])


#: GAL diagnostics that must stay finite (Eq. 7's remainder r and |r|, h's objective 6); a
#: non-finite one means h's update is NaN/inf even while the model's loss still looks fine.
#: (``g_beats_grad`` is NaN by design when ``compare_vanilla=False``.)
GAL_FINITE_KEYS = ("remainder", "abs_remainder")


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
    min_checkpoint_s: float = 0.0,
    loss_keys: Sequence[str] = ("train_loss", "val_loss"),
    diagnostic_keys: Sequence[str] = GAL_FINITE_KEYS,
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
       ``writer.fail("non-finite loss at epoch e (...); <fail_hint>")``, and one under
       ``diagnostic_keys`` present in the row (GAL's remainder and ``|r|``, Eq. 7 and objective
       6, by default) with ``writer.fail("non-finite GAL diagnostic at epoch e (...); ...")``;
       either returns ``"failed"``.
       Otherwise the row is logged and, every ``checkpoint_every`` epochs and at the last one,
       ``{"task": get_state(), "rng": rng_state(), "epoch": e, "config_hash": ...}`` is saved;
       after this process's first checkpoint, no more often than every ``min_checkpoint_s``
       seconds (for runs whose epochs take milliseconds, where a checkpoint per epoch would
       cost a tenth of the training; an interruption then repeats at most that much work, to
       the same numbers).

    The caller calls ``writer.finish(metrics)`` after this returns ``"trained"``.

    Returns:
        ``"trained"`` or ``"failed"``.
    """
    state = writer.load_checkpoint()
    start = 0
    if state is not None:
        if state.get(CONFIG_HASH_KEY) != settings_hash:
            raise ResumeMismatch(
                f"{writer.partial_dir} holds a checkpoint made with different settings "
                f"(config hash {state.get(CONFIG_HASH_KEY)} != {settings_hash}); delete that "
                f"directory to start the run afresh"
            )
        set_state(state["task"])
        set_rng_state(state["rng"])
        start = int(state["epoch"])
    every = max(1, int(checkpoint_every))
    last_saved: float | None = None
    for e in range(start + 1, epochs + 1):
        row: dict[str, Any] = {"epoch": e}
        row.update(train_epoch(e))
        row.update(evaluate(e))
        bad_loss, bad_diag = _nonfinite(row, loss_keys), _nonfinite(row, diagnostic_keys)
        if bad_loss or bad_diag:
            writer.log(row)
            if bad_loss:
                shown = ", ".join(f"{k}={row.get(k)}" for k in loss_keys if k in row)
                writer.fail(f"non-finite loss at epoch {e} ({shown}); {fail_hint}")
            else:
                writer.fail(f"non-finite GAL diagnostic at epoch {e} ({', '.join(bad_diag)}; "
                            f"the adjuster h is diverging); {fail_hint}")
            return "failed"
        writer.log(row)
        due = e % every == 0 and (
            last_saved is None or time.monotonic() - last_saved >= min_checkpoint_s)
        if due or e == epochs:
            writer.save_checkpoint({
                "task": get_state(), "rng": rng_state(), "epoch": e, CONFIG_HASH_KEY: settings_hash,
            })
            last_saved = time.monotonic()
        if on_epoch is not None:
            on_epoch(e)
    return "trained"


class RankWriter:
    """The writer of a DDP process (torchrun): rank 0 writes the record through ``writer``, the
    other ranks write nothing, and every rank resumes from rank 0's checkpoint (broadcast from
    rank 0, so the ranks never start from different epochs and need no shared file system).
    Has the parts of :class:`gal_suite.records.RunWriter` that :func:`run_epochs` uses."""

    def __init__(self, writer: RunWriter, rank: int) -> None:
        self.writer, self.rank = writer, int(rank)
        self.partial_dir = writer.partial_dir

    def load_checkpoint(self) -> dict[str, Any] | None:
        import torch.distributed as dist

        box = [self.writer.load_checkpoint() if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def log(self, row: Mapping[str, Any]) -> None:
        if self.rank == 0:
            self.writer.log(row)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        if self.rank == 0:
            self.writer.save_checkpoint(state)

    def fail(self, reason: str) -> str:
        return self.writer.fail(reason) if self.rank == 0 else "failed"


def init_distributed(cfg: dict[str, Any]) -> bool:
    """Under torchrun: the default process group (NCCL with ``cfg["device"] = "cuda:<LOCAL_RANK>"``
    when CUDA is available, else gloo), unless one exists. True when this call created it (the
    caller then destroys it: a gloo group left to the interpreter's teardown can abort the process
    with "terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        cfg["device"] = f"cuda:{local}"
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


# --------------------------------------------------------------------------- command line
def csv_list(s: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; empty or None -> None (use the config's list)."""
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def check_choice(kind: str, values: Sequence[str], allowed: Sequence[str], hint: str = "") -> list[str]:
    """``values`` as a list, or one :class:`ConfigError` naming the unknown ones and the choices."""
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ConfigError(f"unknown {kind} {', '.join(map(repr, bad))}; choose from "
                          f"{', '.join(allowed)}{f' ({hint})' if hint else ''}")
    return list(values)
