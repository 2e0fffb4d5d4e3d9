"""Run records: one directory per run, written atomically (docs/design.md, "Run records").

Layout of a finished run directory ``<run_dir>/``::

    config.yaml       resolved config (task, dataset, method, variant, profile, seed, ...)
    metrics.json      final metrics (floats; empty for a failed run)
    history.csv       one row per epoch/step (may be empty)
    provenance.json   git commit + dirty flag, package versions, python, platform, host, device,
                      the machine (:func:`machine_info`: CPU model, GPU name, torch thread count,
                      the CPU instruction set torch's kernels use), profile, seed, start/end ISO
                      times, wall_time_s, launch (launcher, job ids, torch thread count;
                      :func:`launch_info`)
    status.json       {"status": "complete" | "failed", "reason": str | null}

All work happens in ``<run_dir>.partial/`` (the path string with ".partial" appended); only
:meth:`RunWriter.finish` / :meth:`RunWriter.fail` rename it to ``<run_dir>`` with ``os.replace``,
so a killed run never looks complete. A scheduler's claim on the run (``experiments.launch``:
``<run_dir>.partial/claim``, owner host and pid) moves with that rename and is deleted right
after it. A run whose final metrics contain NaN/inf is recorded as
``failed`` (never averaged into a table, e.g. Table V of the paper).

Checkpoints hold tensors and plain data only (numbers, strings, lists, tuples, dicts; the history
as one JSON string) and are read with ``torch.load(..., weights_only=True)``, which never runs
code from the file. A checkpoint that cannot be read that way (truncated, corrupt, an older
pickled format or a planted pickle) is moved aside, named on stderr and in the provenance
(``discarded_checkpoint``), and the run starts afresh.

:class:`RunWriter` is here; the files' readers (:func:`load_runs`, :func:`load_history`) are in
:mod:`gal_suite.record_io` and the provenance fields in :mod:`gal_suite.provenance`, both re-exported here.

Usage::

    w = RunWriter(run_dir)
    if w.is_complete():
        return                                 # re-running a finished run is a no-op
    state = w.load_checkpoint()                # dict or None (resume)
    w.start(config, profile="cpu", seed=0)
    for epoch in ...:
        w.log({"epoch": epoch, "train_loss": ...})
        w.save_checkpoint({"model": model.state_dict(), "epoch": epoch})
    w.finish({"mae": ..., "mse": ..., "r2": ...})
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import platform
import shutil
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from gal_suite.provenance import (
    git_info,
    infer_device,
    launch_info,
    machine_info,
    now_iso,
    package_versions,
)
from gal_suite.record_io import (
    RECORD_COLUMNS,
    SET_ASIDE_SUFFIXES,
    NoRunsError,
    flatten,
    load_history,
    load_runs,
    read_status,
    scalar,
    to_builtin,
    write_json,
)

__all__ = ["RunWriter", "NoRunsError", "load_runs", "load_history", "flatten", "to_builtin", "git_info",
           "launch_info", "machine_info", "RECORD_COLUMNS", "SET_ASIDE_SUFFIXES", "IGNORED_SETTINGS",
           "IMPLICIT_SETTINGS"]

_HISTORY_KEY = "__gal_records_history__"
_WALL_KEY = "__gal_records_wall_time_s__"
_START_KEY = "__gal_records_start_time__"
_COMMITS_KEY = "__gal_records_git_commits__"

#: Settings that never count as a difference between two runs (a finished run and a request, or
#: two runs pooled in one table cell): the device (``auto`` resolves per machine; it is recorded
#: in the provenance, as the CPU model is).
IGNORED_SETTINGS = ("device",)

#: Settings added to a runner after records were made, with the value every earlier run had
#: implicitly (the added key's default leaves a run as it was): a record lacking the key counts
#: as having that value.
IMPLICIT_SETTINGS: dict[str, Any] = {
    "train.train_subset": 0,        # classification: 0 = the whole training split
    "gal.adjuster": "mlp",          # classification: h is the MLP of Sec. III
    "gal.noise_scaling": "eq4",     # classification: only read by the noise adjuster (Table VI)
}

# --------------------------------------------------------------------------- writer
class RunWriter:
    """Writer for one run directory (docs/design.md, "Run records").

    Args:
        run_dir: final directory of the run, e.g. ``results/runs/table5/paper/boston/gal/seed-0``.
        device: device string to record in provenance; inferred from torch if ``None``
            (can also be given to :meth:`start`).
    """

    def __init__(self, run_dir: str | os.PathLike[str], device: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.partial_dir = Path(str(self.run_dir) + ".partial")
        self.device = device
        self._history: list[dict[str, Any]] = []
        self._config: dict[str, Any] | None = None
        self._profile: str | None = None
        self._seed: int | None = None
        self._start_iso: str | None = None
        self._t0: float | None = None
        self._wall_before = 0.0  # wall time of earlier (interrupted) sessions, restored on resume
        self._git: tuple[str, bool | str] | None = None
        self._resumed = False
        self._earlier_commits: list[str] = []  # commits of interrupted earlier sessions
        self._discarded: str | None = None  # an unreadable checkpoint set aside (load_checkpoint)
        # rows already in <partial>/history.csv and its header (None: rewrite it in full next time)
        self._csv_rows: int | None = None
        self._csv_header: list[str] | None = None

    # -- state ------------------------------------------------------------------
    def is_complete(self) -> bool:
        """True only if the final directory exists with ``status.json`` saying ``complete``."""
        st = read_status(self.run_dir)
        return st is not None and st.get("status") == "complete"

    def status(self) -> str | None:
        """``"complete"``, ``"failed"`` or ``None`` (no finished record)."""
        st = read_status(self.run_dir)
        return None if st is None else st.get("status")

    # -- checkpoint ---------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.partial_dir / "checkpoint.pt"

    def load_checkpoint(self) -> dict[str, Any] | None:
        """Return the last state saved by :meth:`save_checkpoint` (in ``<run_dir>.partial``), or None.

        The file is read with ``torch.load(..., weights_only=True)``: tensors and plain data only,
        never code. A checkpoint that cannot be read that way (truncated, corrupt, an older
        pickled format, a planted pickle) is moved aside to ``<run_dir>.checkpoint-unreadable-
        <time>.pt`` beside the run (named on stderr and, once the run finishes, in its
        provenance as ``discarded_checkpoint``) and None is returned: the run starts afresh.

        The history rows logged up to that checkpoint are restored into the writer, so logging
        can simply continue after a resume.
        """
        p = self.checkpoint_path
        if not p.is_file():
            return None
        import torch

        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError(f"holds a {type(state).__name__}, not a dict")
            history = state.pop(_HISTORY_KEY, "[]")
            if not isinstance(history, str):
                raise ValueError("its history is not a JSON string (an older checkpoint format)")
            history = json.loads(history)
            if not isinstance(history, list):
                raise ValueError("its history is not a list")
        except Exception as e:  # noqa: BLE001 - any unreadable file: set aside, start afresh
            self._set_aside(p, e)
            return None
        self._history = list(history)
        self._csv_rows = self._csv_header = None  # history.csv may be ahead of the checkpoint
        self._wall_before = float(state.pop(_WALL_KEY, 0.0))
        start_iso = state.pop(_START_KEY, None)
        if start_iso:
            self._start_iso = start_iso
        self._earlier_commits = list(state.pop(_COMMITS_KEY, []))
        self._resumed = True
        return state

    def _set_aside(self, path: Path, error: BaseException) -> Path:
        """Move an unreadable checkpoint out of the partial directory (so that it never ends up
        in the record) and say so on stderr; the run then starts from scratch."""
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        dest = Path(f"{self.run_dir}.checkpoint-unreadable-{stamp}-{os.getpid()}.pt")
        os.replace(path, dest)
        why = (str(error).strip().splitlines() or [""])[0][:200]
        print(f"warning: {self.run_dir}: checkpoint cannot be read safely ({type(error).__name__}: "
              f"{why}); moved it to {dest} and starting the run afresh", file=sys.stderr, flush=True)
        self._discarded = str(dest)
        self._history, self._csv_rows, self._csv_header = [], None, None
        self._wall_before, self._earlier_commits, self._resumed = 0.0, [], False
        return dest

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Atomically save ``state`` (torch.save to a temp file, then ``os.replace``) together with
        the history logged so far (also written to ``history.csv`` in the partial directory).

        ``state`` must hold tensors and plain data only (what ``torch.load(weights_only=True)``
        reads back; :func:`experiments.common.rng_state` gives the RNG states in that form).
        Cheap enough to call every epoch of a tiny run: the history goes into the checkpoint as
        one JSON string (torch's pickler is slow on many small Python objects), and the partial
        ``history.csv`` only gets the rows logged since the last checkpoint appended (it is
        rewritten in full when the columns change; :meth:`finish` always writes it in full).
        """
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        import torch

        full = dict(state)
        full[_HISTORY_KEY] = json.dumps(self._history, allow_nan=True)
        full[_WALL_KEY] = self._elapsed()
        full[_START_KEY] = self._start_iso
        commit = (self._git or git_info())[0]
        full[_COMMITS_KEY] = list(dict.fromkeys([*self._earlier_commits, commit]))
        tmp = self.partial_dir / "checkpoint.pt.tmp"
        torch.save(full, tmp)
        os.replace(tmp, self.checkpoint_path)
        self._append_history()

    # -- lifecycle ----------------------------------------------------------------
    def start(
        self,
        config: Mapping[str, Any],
        profile: str,
        seed: int,
        device: str | None = None,
    ) -> None:
        """Begin (or resume) the run: create ``<run_dir>.partial/`` and write ``config.yaml``.

        ``profile`` and ``seed`` are added to the config if it lacks them. An existing
        ``.partial`` directory is kept (its checkpoint is what :meth:`load_checkpoint` reads).
        """
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        cfg = to_builtin(dict(config))
        cfg.setdefault("profile", profile)
        cfg.setdefault("seed", seed)
        self._config = cfg
        self._profile = profile
        self._seed = int(seed)
        if device is not None:
            self.device = device
        if self._start_iso is None:
            self._start_iso = now_iso()
        self._t0 = time.monotonic()
        self._git = git_info()
        with open(self.partial_dir / "config.yaml", "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)

    def log(self, row: Mapping[str, Any]) -> None:
        """Buffer one history row (epoch or step); flushed on checkpoint/finish/fail."""
        self._history.append({str(k): scalar(v) for k, v in row.items()})

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self._history)

    def finish(self, metrics: Mapping[str, Any], keep_checkpoint: bool = False) -> str:
        """Write the final record and atomically rename ``.partial`` -> final.

        Metrics may be python numbers, numpy scalars or 0-dim torch tensors. If any metric is
        NaN/inf the run is recorded as ``failed`` instead (reason names the metric) and is never
        averaged. Returns the final status (``"complete"`` or ``"failed"``).
        """
        clean: dict[str, Any] = {}
        bad: list[str] = []
        for k, v in metrics.items():
            val = scalar(v)
            if isinstance(val, bool):
                val = int(val)
            if isinstance(val, int | float) and not math.isfinite(val):
                bad.append(f"{k}={val}")
            clean[str(k)] = val
        if bad:
            self._finalize("failed", f"non-finite metric(s): {', '.join(bad)}", clean, keep_checkpoint)
            return "failed"
        self._finalize("complete", None, clean, keep_checkpoint)
        return "complete"

    def fail(self, reason: str, metrics: Mapping[str, Any] | None = None) -> str:
        """Finalize the directory as a ``failed`` record (never averaged). Returns ``"failed"``."""
        clean = {str(k): scalar(v) for k, v in (metrics or {}).items()}
        self._finalize("failed", str(reason), clean, keep_checkpoint=False)
        return "failed"

    # -- internals ----------------------------------------------------------------
    def _elapsed(self) -> float:
        now = time.monotonic()
        return self._wall_before + (now - self._t0 if self._t0 is not None else 0.0)

    def _write_history(self) -> None:
        """Write ``history.csv`` in full (pandas; the format of a finished record)."""
        df = pd.DataFrame(self._history)
        df.to_csv(self.partial_dir / "history.csv", index=False)
        self._csv_rows, self._csv_header = len(self._history), [str(c) for c in df.columns]

    def _append_history(self) -> None:
        """Append the rows logged since the last write to the partial ``history.csv``.

        Falls back to :meth:`_write_history` on the first write, after a resume, or when a new
        row has a column the header lacks. Missing and NaN values are written empty, as pandas
        writes them.
        """
        done, header = self._csv_rows, self._csv_header
        path = self.partial_dir / "history.csv"
        new = self._history[done:] if done is not None else []
        if (done is None or header is None or done > len(self._history) or not path.is_file()
                or any(k not in header for r in new for k in r)):
            self._write_history()
            return
        if not new:
            return

        def cell(v: Any) -> Any:
            return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v

        with open(path, "a", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerows([cell(r.get(k)) for k in header] for r in new)
        self._csv_rows = len(self._history)

    def _finalize(
        self, status: str, reason: str | None, metrics: dict[str, Any], keep_checkpoint: bool
    ) -> None:
        if self._config is None:
            raise RuntimeError("RunWriter.start(config, profile, seed) must be called before finish/fail")
        if self.is_complete():
            raise FileExistsError(
                f"{self.run_dir} is already a complete run; check RunWriter.is_complete() first"
            )
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        commit, dirty = self._git if self._git is not None else git_info()
        device = self.device if self.device is not None else infer_device()
        provenance = {
            "git_commit": commit,
            "git_dirty": dirty,
            "versions": package_versions(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "hostname": socket.gethostname(),
            "device": device,
            "profile": self._profile,
            "seed": self._seed,
            "start_time": self._start_iso,
            "end_time": now_iso(),
            "wall_time_s": round(self._elapsed(), 3),
            "resumed": self._resumed,
            "git_commits_of_all_sessions": list(dict.fromkeys([*self._earlier_commits, commit])),
            "launch": launch_info(),
            "machine": machine_info(),
        }
        if self._discarded is not None:
            provenance["discarded_checkpoint"] = self._discarded
        write_json(self.partial_dir / "metrics.json", metrics)
        self._write_history()
        write_json(self.partial_dir / "provenance.json", provenance)
        if not keep_checkpoint:
            for name in ("checkpoint.pt", "checkpoint.pt.tmp"):
                p = self.partial_dir / name
                if p.exists():
                    p.unlink()
        write_json(self.partial_dir / "status.json", {"status": status, "reason": reason})
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)  # an incomplete/failed older record (complete ones raise above)
        self.run_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.partial_dir, self.run_dir)
