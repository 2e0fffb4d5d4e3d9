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
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

__all__ = ["RunWriter", "load_runs", "load_history", "flatten", "to_builtin", "launch_info",
           "machine_info", "RECORD_COLUMNS", "SET_ASIDE_SUFFIXES", "IGNORED_SETTINGS",
           "IMPLICIT_SETTINGS"]

#: Columns load_runs always provides (besides flattened config keys and metric names).
RECORD_COLUMNS = ["status", "reason", "path", "profile", "seed", "wall_time_s", "git_commit", "device"]

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

#: Directory suffixes :func:`load_runs` never reads: unfinished runs (``.partial``) and finished
#: records set aside because they were made with other settings (``.stale``, the runners'
#: ``--rerun-stale``).
SET_ASIDE_SUFFIXES = (".partial", ".stale")

_VERSION_PACKAGES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "sklearn": "scikit-learn",
    "timm": "timm",
}


# --------------------------------------------------------------------------- helpers
def _scalar(v: Any) -> Any:
    """Convert a python/numpy/0-dim torch scalar to a python int/float/bool; other values unchanged."""
    if isinstance(v, bool | int | float | str) or v is None:
        return v
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # torch tensor (import-free check)
        t = v.detach().cpu()
        if t.numel() != 1:
            raise TypeError(f"expected a scalar tensor, got shape {tuple(t.shape)}")
        return t.item()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        if v.size != 1:
            raise TypeError(f"expected a scalar array, got shape {v.shape}")
        return v.reshape(()).item()
    return v


def to_builtin(obj: Any) -> Any:
    """Recursively convert config/metric values to YAML/JSON-safe builtins (tuples -> lists,
    numpy/torch scalars -> python numbers, Paths -> str)."""
    if isinstance(obj, Mapping):
        return {str(k): to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_builtin(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray) and obj.size != 1:
        return obj.tolist()
    return _scalar(obj)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a nested mapping: ``{"a": {"b": 1}} -> {"a.b": 1}``. Lists are kept as values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def git_info() -> tuple[str, bool | str]:
    """(commit, dirty) of the git repository containing the cwd; ("unknown", "unknown") without git.

    ``dirty`` ignores ``results/`` (what runs write), so a reproduction that rewrites records is
    not flagged as running modified code.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()

    try:
        top = git("rev-parse", "--show-toplevel")
        commit = git("-C", top, "rev-parse", "HEAD")
        porcelain = git("-C", top, "status", "--porcelain", "--", ".", ":(exclude)results")
        return commit or "unknown", bool(porcelain)
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"


def _versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for key, dist in _VERSION_PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "not installed"
    out["python"] = platform.python_version()
    return out


def _infer_device() -> str:
    if "torch" not in sys.modules:
        try:
            import torch  # noqa: F401
        except ImportError:
            return "cpu"
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    return "cpu"


def launch_info() -> dict[str, Any]:
    """How the run was launched, for provenance: the launcher (``GAL_LAUNCHER``, set by
    ``experiments.launch``; ``"direct"`` otherwise), its job id (``GAL_JOB_ID``), Slurm's job and
    array ids when present, the pool worker (``GAL_WORKER``), ``CUDA_VISIBLE_DEVICES``, torchrun's
    world size (``WORLD_SIZE``, DDP processes) and torch's intra-op thread count (a run's result
    depends on it)."""
    env = os.environ
    info: dict[str, Any] = {"launcher": env.get("GAL_LAUNCHER", "direct")}
    for key, var in (("job_id", "GAL_JOB_ID"), ("slurm_job_id", "SLURM_JOB_ID"),
                     ("slurm_array_job_id", "SLURM_ARRAY_JOB_ID"),
                     ("slurm_array_task_id", "SLURM_ARRAY_TASK_ID"), ("worker", "GAL_WORKER"),
                     ("cuda_visible_devices", "CUDA_VISIBLE_DEVICES")):
        if env.get(var):
            info[key] = env[var]
    if env.get("WORLD_SIZE"):
        info["world_size"] = int(env["WORLD_SIZE"])
    if "torch" in sys.modules:
        info["num_threads"] = sys.modules["torch"].get_num_threads()
    return info


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``; else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """What a run's last digits depend on besides the code (see README, cross-machine
    differences): the CPU model, the GPU's name when CUDA is available, torch's intra-op thread
    count and the instruction set torch's CPU kernels (oneDNN/BLAS) were dispatched to
    (``torch.backends.cpu.get_cpu_capability()``, e.g. ``AVX512``)."""
    info: dict[str, Any] = {"cpu_model": _cpu_model()}
    torch = sys.modules.get("torch")
    if torch is None:
        return info
    info["torch_num_threads"] = torch.get_num_threads()
    try:
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        info["cpu_capability"] = "unknown"
    try:
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    except RuntimeError:
        pass
    return info


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(to_builtin(obj), f, indent=2, sort_keys=True, allow_nan=True)
        f.write("\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def _read_status(run_dir: Path) -> dict[str, Any] | None:
    p = run_dir / "status.json"
    if not p.is_file():
        return None
    try:
        return _read_json(p)
    except (OSError, ValueError):
        return None


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
        st = _read_status(self.run_dir)
        return st is not None and st.get("status") == "complete"

    def status(self) -> str | None:
        """``"complete"``, ``"failed"`` or ``None`` (no finished record)."""
        st = _read_status(self.run_dir)
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
            self._start_iso = _now_iso()
        self._t0 = time.monotonic()
        self._git = git_info()
        with open(self.partial_dir / "config.yaml", "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)

    def log(self, row: Mapping[str, Any]) -> None:
        """Buffer one history row (epoch or step); flushed on checkpoint/finish/fail."""
        self._history.append({str(k): _scalar(v) for k, v in row.items()})

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
            val = _scalar(v)
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
        clean = {str(k): _scalar(v) for k, v in (metrics or {}).items()}
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
        device = self.device if self.device is not None else _infer_device()
        provenance = {
            "git_commit": commit,
            "git_dirty": dirty,
            "versions": _versions(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "hostname": socket.gethostname(),
            "device": device,
            "profile": self._profile,
            "seed": self._seed,
            "start_time": self._start_iso,
            "end_time": _now_iso(),
            "wall_time_s": round(self._elapsed(), 3),
            "resumed": self._resumed,
            "git_commits_of_all_sessions": list(dict.fromkeys([*self._earlier_commits, commit])),
            "launch": launch_info(),
            "machine": machine_info(),
        }
        if self._discarded is not None:
            provenance["discarded_checkpoint"] = self._discarded
        _write_json(self.partial_dir / "metrics.json", metrics)
        self._write_history()
        _write_json(self.partial_dir / "provenance.json", provenance)
        if not keep_checkpoint:
            for name in ("checkpoint.pt", "checkpoint.pt.tmp"):
                p = self.partial_dir / name
                if p.exists():
                    p.unlink()
        _write_json(self.partial_dir / "status.json", {"status": status, "reason": reason})
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)  # an incomplete/failed older record (complete ones raise above)
        self.run_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.partial_dir, self.run_dir)


# --------------------------------------------------------------------------- readers
def _load_one(run_dir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {}
    cfg_path = run_dir / "config.yaml"
    if cfg_path.is_file():
        with open(cfg_path) as f:
            cfg = yaml.safe_load(f) or {}
        row.update(flatten(cfg))
    prov: dict[str, Any] = {}
    if (run_dir / "provenance.json").is_file():
        prov = _read_json(run_dir / "provenance.json")
    metrics: dict[str, Any] = {}
    if (run_dir / "metrics.json").is_file():
        metrics = _read_json(run_dir / "metrics.json")
    row.update(metrics)
    st = _read_status(run_dir) or {}
    row["status"] = st.get("status", "unknown")
    row["reason"] = st.get("reason")
    row["path"] = str(run_dir)
    row.setdefault("profile", prov.get("profile"))
    row.setdefault("seed", prov.get("seed"))
    row["wall_time_s"] = prov.get("wall_time_s")
    row["git_commit"] = prov.get("git_commit", "unknown")
    row["git_dirty"] = prov.get("git_dirty", "unknown")
    row["device"] = prov.get("device")
    row["resumed"] = bool(prov.get("resumed", False))
    return row


def load_runs(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Load every finished run record under ``root`` into a DataFrame (one row per run dir).

    A run dir is any directory containing ``status.json``; ``*.partial`` directories (unfinished
    or killed runs) and ``*.stale`` ones (records set aside by ``--rerun-stale``) are ignored. Columns: flattened config keys (``a.b`` for nested dicts), the
    metric names from metrics.json, and ``status, reason, path, profile, seed, wall_time_s,
    git_commit, device`` (plus ``git_dirty``). Failed runs are included (``status == "failed"``);
    aggregation code must exclude them. Returns an empty frame (with those columns) if none.
    """
    root = Path(root)
    rows: list[dict[str, Any]] = []
    if root.is_dir():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.endswith(SET_ASIDE_SUFFIXES))
            if "status.json" in filenames and not dirpath.endswith(SET_ASIDE_SUFFIXES):
                rows.append(_load_one(Path(dirpath)))
                dirnames[:] = []  # a run dir does not contain other runs
    df = pd.DataFrame(rows)
    for c in [*RECORD_COLUMNS, "git_dirty"]:
        if c not in df.columns:
            df[c] = pd.Series(dtype=object)
    if len(df):
        df = df.sort_values("path", kind="stable").reset_index(drop=True)
    return df


def load_history(run_path: str | os.PathLike[str]) -> pd.DataFrame:
    """The per-epoch/step history (``history.csv``) of one run directory; empty frame if none."""
    p = Path(run_path) / "history.csv"
    if not p.is_file():
        return pd.DataFrame()
    try:
        return pd.read_csv(p)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
