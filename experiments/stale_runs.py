"""Which runs of a plan still have to run, and which finished ones were made with other settings
than requested (refused with :class:`StaleRuns`, or set aside and re-run with ``--rerun-stale``):
:func:`pending`, :func:`stale_keys`, :func:`settings_diff`. A run's settings are identified by
:func:`config_hash`, stored in its config.yaml and in its checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gal_suite.config import ConfigError
from gal_suite.records import IGNORED_SETTINGS, IMPLICIT_SETTINGS, RunWriter, flatten, to_builtin

__all__ = ["CONFIG_HASH_KEY", "StaleRuns", "config_hash", "pending", "set_aside_stale", "settings_diff",
           "stale_keys", "stale_message"]

#: the key of :func:`config_hash` in a record's config.yaml and in a checkpoint
CONFIG_HASH_KEY = "config_hash"


class StaleRuns(ConfigError):
    """Finished runs of a plan were made with other settings than the requested ones."""


def config_hash(settings: Mapping[str, Any]) -> str:
    """A short stable hash of a run's effective settings (detects a resume under changed settings).

    A ``device`` setting counts by its type only (``cuda:3`` -> ``cuda``): under torchrun every
    rank has its own GPU index but resumes from rank 0's checkpoint."""
    s = dict(settings)
    if isinstance(s.get("device"), str):
        s["device"] = s["device"].split(":")[0]
    blob = json.dumps(to_builtin(s), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _stored_hash(run_dir: Path) -> str | None:
    """The ``config_hash`` line of a finished run's config.yaml (cheap: no YAML parse)."""
    try:
        with open(run_dir / "config.yaml") as f:
            for line in f:
                if line.startswith(f"{CONFIG_HASH_KEY}:"):
                    return line.split(":", 1)[1].strip().strip("'\"")
    except OSError:
        return None
    return None


def _yaml_round_trip(obj: Any) -> Any:
    import yaml

    return yaml.safe_load(yaml.safe_dump(to_builtin(obj), sort_keys=False))


def settings_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any],
                  ignore: Sequence[str] = IGNORED_SETTINGS,
                  implicit: Mapping[str, Any] | None = None) -> list[str]:
    """``"key: old -> new"`` for every flattened key whose value differs between two settings
    (as stored in config.yaml: compared after a YAML round trip), keys under ``ignore`` left out;
    a key absent from ``old`` counts as its ``implicit`` value (default
    :data:`IMPLICIT_SETTINGS`)."""
    a, b = flatten(_yaml_round_trip(dict(old or {}))), flatten(_yaml_round_trip(dict(new)))
    for k, v in (IMPLICIT_SETTINGS if implicit is None else implicit).items():
        if k not in a and k in b and (k.split(".")[0] + ".") in {p.split(".")[0] + "." for p in a}:
            a[k] = v
    missing = object()
    out = []
    for k in sorted(set(a) | set(b)):
        if k.split(".")[0] in ignore:
            continue
        va, vb = a.get(k, missing), b.get(k, missing)
        if va != vb:
            show = ["(absent)" if v is missing else json.dumps(v, default=str) for v in (va, vb)]
            out.append(f"{k}: {show[0]} -> {show[1]}")
    return out


def stale_keys(run_dir: str | os.PathLike[str], settings: Mapping[str, Any],
               key: str = "settings") -> list[str]:
    """How the finished record in ``run_dir`` differs from ``settings`` (its config.yaml's
    ``key`` section; :func:`settings_diff`); ``[]`` when it matches. The stored
    ``config_hash`` is compared first (no YAML parse when it matches)."""
    import yaml

    run_dir = Path(run_dir)
    if key == "settings" and _stored_hash(run_dir) == config_hash(settings):
        return []
    try:
        with open(run_dir / "config.yaml") as f:
            stored = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except OSError:
        return [f"{key}: (no config.yaml) -> ..."]
    old = stored if key == "" else stored.get(key)
    return settings_diff(old, settings)


def set_aside_stale(run_dir: str | os.PathLike[str]) -> Path:
    """Move a finished record made with other settings to ``<run_dir>.stale`` (replacing an
    older one there), where :func:`gal_suite.records.load_runs` does not read it."""
    run_dir = Path(run_dir)
    dest = Path(str(run_dir) + ".stale")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(run_dir, dest)
    return dest


def stale_message(stale: Sequence[tuple[str, list[str]]], runs_root: Any) -> str:
    """One paragraph naming the stale runs and how their settings differ."""
    shown = "; ".join(f"{label} ({', '.join(diff[:4])}{', ...' if len(diff) > 4 else ''})"
                      for label, diff in stale[:3])
    more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
    return (f"{len(stale)} finished run(s) under {runs_root} were made with other settings than "
            f"requested: {shown}{more}. They are kept as they are; pass --rerun-stale to set them "
            f"aside (<run>.stale) and run them with the requested settings, or use another "
            f"--runs-root.")


def pending(specs: Sequence[Any], runs_root: str | os.PathLike[str], retry_failed: bool,
            settings_of: Callable[[Any], Mapping[str, Any]] | None = None,
            rerun_stale: bool = False,
            stale_of: Callable[[Path, Mapping[str, Any]], list[str]] | None = None,
            ) -> tuple[list[Any], dict[str, int]]:
    """The specs (each with ``run_dir`` and ``label``) whose record is not finished (or failed,
    with ``retry_failed``), and counts ``{"complete": 0, "failed": 0, "skipped": <finished>}``.

    With ``settings_of`` (spec -> the settings it would run with), a finished record made with
    other settings (``stale_of(run_dir, settings)``, default :func:`stale_keys`) raises :class:`StaleRuns` naming the runs and the
    differing keys, before anything runs; with ``rerun_stale`` such records are moved to
    ``<run>.stale`` and their specs run again."""
    counts = {"complete": 0, "failed": 0, "skipped": 0}
    differs = stale_keys if stale_of is None else stale_of
    todo = []
    stale: list[tuple[Any, list[str]]] = []
    for spec in specs:
        run_dir = spec.run_dir(runs_root)
        st = RunWriter(run_dir).status()
        if st == "complete" or (st == "failed" and not retry_failed):
            diff = differs(run_dir, settings_of(spec)) if settings_of is not None else []
            if diff:
                stale.append((spec, diff))
                todo.append(spec)
            else:
                counts["skipped"] += 1
        else:
            todo.append(spec)
    if stale and not rerun_stale:
        raise StaleRuns(stale_message([(s.label, d) for s, d in stale], runs_root))
    for spec, _ in stale:
        dest = set_aside_stale(spec.run_dir(runs_root))
        print(f"note: {spec.label} was made with other settings; set aside to {dest}, running it "
              f"again", file=sys.stderr)
    return todo, counts
