"""Header-note helpers shared by the table specs: our runs, failed runs, and the GAL alpha=0
control (the per-group check cell and its summary)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from gal_suite import stats as gs

__all__ = ["ours_note", "failed_note", "alpha0_text", "alpha0_check"]


def ours_note(facts: Mapping[str, Any]) -> str:
    """The header note on our runs: profiles, seeds, complete runs and their git commits."""
    seeds = facts["seeds"]
    seed_txt = f"{len(seeds)} seeds ({', '.join(map(str, seeds))})" if seeds else "no seeds"
    resumed = facts.get("resumed_paths", [])
    mixed = facts.get("mixed_devices", [])
    return (f"Ours: profile(s) {', '.join(map(str, facts['profiles']))}; {seed_txt}, n per row in "
            f"column n; {facts['n_complete']} complete runs; git commit(s) "
            f"{', '.join(facts['commits']) or 'unknown'}"
            + (" (some with uncommitted changes)" if facts["dirty"] else "")
            + f"; device(s) {', '.join(facts.get('devices', [])) or 'unknown'}"
            + (f"; ✗ rows that mix devices: {', '.join(mixed)}" if mixed else "")
            + (f"; {len(resumed)} run(s) resumed from a checkpoint after an interruption "
               f"({', '.join(resumed)})" if resumed else "; no run was resumed") + ".")


def failed_note(facts: Mapping[str, Any]) -> str:
    """The header note on failed runs (excluded from every number, listed by path)."""
    fail = facts["n_failed"]
    return (f"Failed runs (NaN/inf or crashed) are excluded from every number: {fail} excluded"
            + (f" ({', '.join(facts['failed_paths'])})" if fail else "") + ".")


def alpha0_text(facts: Mapping[str, Any]) -> str:
    """Whether the GAL alpha=0 control equalled the baseline on every seed."""
    a0 = facts["alpha0_all_exact"]
    if a0 is None:
        return "not run"
    if a0:
        return "✓ every seed equals the baseline exactly"
    if not facts.get("alpha0_any_differs", True):
        return ("✓ every α=0 run equals the baseline of its seed exactly; not every baseline seed "
                "has an α=0 run (see the check column)")
    return "✗ NOT every seed equals the baseline (see the check column)"


def alpha0_check(base: pd.DataFrame, a0: pd.DataFrame, metrics: Sequence[str]) -> tuple[str, bool | None]:
    """Did GAL with alpha=0 reproduce the baseline ``metrics`` exactly, seed by seed?

    Both frames hold complete runs only; a baseline seed without a complete alpha=0 run (missing
    or failed) and an alpha=0 seed without a baseline both count against the check. Returns
    (check cell text, passed) with passed None when no alpha=0 run exists.
    """
    if len(a0) == 0:
        return "", None
    if len(base) == 0:
        return "✗ no baseline runs to compare", False
    base_seeds, a0_seeds = set(gs.by_seed(base, metrics[0])), set(gs.by_seed(a0, metrics[0]))
    shared = sorted(base_seeds & a0_seeds)
    if not shared:
        return "✗ no seed shared with baseline", False
    differ = [s for s in shared
              if any(gs.by_seed(base, m).get(s) != gs.by_seed(a0, m).get(s) for m in metrics)]
    notes = []
    if a0_seeds - base_seeds:
        notes.append(f"{len(a0_seeds - base_seeds)} seed(s) without baseline")
    if base_seeds - a0_seeds:
        notes.append(f"{len(base_seeds - a0_seeds)} baseline seed(s) without a complete α=0 run")
    extra = "".join(f"; {n}" for n in notes)
    if differ:
        return f"✗ differs from baseline on {len(differ)}/{len(shared)} seeds{extra}", False
    return f"✓ = baseline exactly on {len(shared)}/{len(shared)} seeds{extra}", not notes
