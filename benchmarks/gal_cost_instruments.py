"""How ``benchmarks/gal_cost.py`` measures (Table VII): aten operator and FLOP counters,
interleaved timing of several step functions, and the cost of one per-epoch checkpoint."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.gal_cost_cases import Case, make_arm, sync
from experiments.common import DIAGNOSTICS


# --------------------------------------------------------------------------- counting
class OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched while active (views and in-place ops included)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.names: dict[str, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += 1
        key = str(func)
        self.names[key] = self.names.get(key, 0) + 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], Any]) -> int:
    """Number of aten operators ``fn()`` dispatches (deterministic; no timing involved)."""
    counter = OpCounter()
    with counter:
        fn()
    return counter.count


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's C++ start/stop lines) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profiler_ops(fn: Callable[[], Any]) -> int:
    """Number of ``aten::`` op events ``torch.profiler`` records for ``fn()`` (nested included)."""
    from torch.profiler import ProfilerActivity, profile

    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` by :class:`FlopCounterMode` (matmul / convolution / attention ops)."""
    mode = FlopCounterMode(display=False)
    with mode:
        fn()
    return int(mode.get_total_flops())


# --------------------------------------------------------------------------- timing
def quantiles(v: Sequence[float]) -> dict[str, float]:
    s = sorted(v)
    if len(s) >= 2:
        q1, _, q3 = statistics.quantiles(s, n=4, method="inclusive")
    else:
        q1 = q3 = s[0]
    return {"median": statistics.median(s), "q25": q1, "q75": q3, "min": s[0], "max": s[-1],
            "n": len(s)}


def timed_block(fn: Callable[[], None], inner: int, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    sync(device)
    return time.perf_counter() - t0


def interleave(fns: dict[str, Callable[[], None]], device: torch.device, *, seconds: float,
               warmup: int = 3, min_rounds: int = 5, max_rounds: int = 60,
               min_block_s: float = 0.05) -> dict[str, Any]:
    """Time the callables interleaved after warm-up (order rotated every round).

    Each round runs every callable for one block of ``inner`` calls (``inner`` chosen so a block
    of the first callable takes >= ``min_block_s``); returns per-callable block times per call
    (lists, one per round), ``inner`` and ``rounds``. ``rounds`` fits ``seconds`` in total,
    within ``[min_rounds, max_rounds]``.
    """
    names = list(fns)
    for f in fns.values():
        f()
    t_one = {k: timed_block(f, 1, device) for k, f in fns.items()}
    if max(t_one.values()) < 0.5:  # cheap steps: more warm-up (slow ones are warm by now)
        for _ in range(max(0, warmup - 2)):
            for f in fns.values():
                f()
        t_one = {k: timed_block(f, 1, device) for k, f in fns.items()}
    first = max(t_one[names[0]], 1e-7)
    inner = max(1, min(1000, math.ceil(min_block_s / first)))
    per_round = sum(t_one.values()) * inner
    rounds = int(max(min_rounds, min(max_rounds, seconds // max(per_round, 1e-9))))
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            times[k].append(timed_block(fns[k], inner, device) / inner)
    return {"times": times, "inner": inner, "rounds": rounds}


# --------------------------------------------------------------------------- checkpoints
#: training rows of Table V's splits (80% of 506, 442 and 20,640 samples)
REGRESSION_TRAIN_ROWS = {"boston": 404, "diabetes": 353, "california": 16512}


def checkpoint_cost(case: Case, device: torch.device, step_s: float, *, rows: int = 100,
                    repeats: int = 15) -> dict[str, Any]:
    """Cost of one per-epoch checkpoint of a Table V GAL run (:meth:`RunWriter.save_checkpoint`,
    history of ``rows`` epochs) against the same checkpoint written the former way (history as
    a list inside ``torch.save`` and ``history.csv`` rewritten in full by pandas), interleaved;
    and the epoch time it is paid once per (steps per epoch x the measured GAL step)."""
    import pickle
    import tempfile

    import pandas as pd

    from experiments.common import rng_state
    from gal_suite.records import RunWriter

    arm = make_arm(case, "gal", device)
    for _ in range(3):
        arm.step()
    state = {"model": arm.model.state_dict(), "opt": arm.optimizers[0].state_dict(),
             "adjuster": arm.adjuster.state_dict() if arm.adjuster is not None else {},
             "h_opt": arm.optimizers[-1].state_dict()}
    row = {"epoch": 0, "train_loss": 0.5, **{k: 1e-6 for k in DIAGNOSTICS}, "val_loss": 0.6}
    with tempfile.TemporaryDirectory() as tmp:
        w = RunWriter(Path(tmp) / "run", device=str(device))
        w.start({"task": "benchmark"}, profile="cpu", seed=0)
        for e in range(rows):
            w.log({**row, "epoch": e})
        w.save_checkpoint({"task": state})
        old_dir = Path(tmp) / "old"
        old_dir.mkdir()

        def new() -> None:
            w.log(row)
            w.save_checkpoint({"task": state, "rng": rng_state(), "epoch": 1, "config_hash": "x"})

        def former() -> None:
            hist = pickle.loads(pickle.dumps(w.history))  # a list of dicts, as before
            torch.save({"task": state, "rng": rng_state(), "epoch": 1, "config_hash": "x",
                        "history": hist}, old_dir / "checkpoint.pt")
            pd.DataFrame(hist).to_csv(old_dir / "history.csv", index=False)

        res = interleave({"new": new, "former": former}, device, seconds=2.0, warmup=1,
                         min_rounds=repeats, max_rounds=repeats, min_block_s=0.0)
    med = {k: statistics.median(v) for k, v in res["times"].items()}
    steps = math.ceil(REGRESSION_TRAIN_ROWS.get(case.name, 400) / case.batch)
    epoch_s = steps * step_s
    return {"what": f"one checkpoint of a Table V GAL run with {rows} history rows",
            "save_checkpoint_s": med["new"], "former_s": med["former"],
            "epoch_train_s": epoch_s, "steps_per_epoch": steps,
            "fraction_of_epoch": med["new"] / (epoch_s + med["new"]),
            "former_fraction_of_epoch": med["former"] / (epoch_s + med["former"])}
