"""The runs of a classification table (:mod:`experiments.classification`): which optimizers,
methods and seeds a ``--table`` value plans (Tables I-III; the analyses of Sec. VI: Tables VI,
VIII and Figs. 7, 8 as parts of one plan), in a stable order with the arms of one seed back to
back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from experiments.classification_spec import RunSpec, default_gal
from experiments.common import check_choice
from experiments.gal_variants import canonical_method
from gal_suite.config import ConfigError
from gal_suite.vocab import CLASSIFICATION_METHODS, OPTIMIZER_ORDER

__all__ = ["ABLATION_PARTS", "METHODS", "OPTIMIZERS", "TABLES", "plan_name", "plan_runs", "table_key"]

#: the optimizers of Tables I-II (:data:`gal_suite.vocab.OPTIMIZER_ORDER`)
OPTIMIZERS = OPTIMIZER_ORDER
#: the named methods of Tables I-III (:mod:`gal_suite.vocab.methods`)
METHODS = CLASSIFICATION_METHODS
#: the analyses of Sec. VI run as parts of one plan (``run.ablation`` in the config); their runs
#: share one directory, so a configuration used by two of them runs once
ABLATION_PARTS = ("table6", "table8", "fig7", "fig8")
TABLES = ("1", "2", "3", "6", "8", "fig7", "fig8", "ablation")


def table_key(table: int | str) -> tuple[int | str, list[str]]:
    """(RunSpec.table, plan parts) of a ``--table`` value: 1 / 2 / 3 -> Tables I / II / III; 6, 8,
    ``fig7``, ``fig8`` -> that part of the analyses' plan; ``ablation`` -> all of its parts."""
    t = str(table)
    if t in ("1", "2", "3"):
        return int(t), []
    part = f"table{t}" if t in ("6", "8") else t
    if part == "ablation":
        return "ablation", list(ABLATION_PARTS)
    if part not in ABLATION_PARTS:
        raise ConfigError(f"--table {table!r}: choose from {', '.join(TABLES)}")
    return "ablation", [part]


def plan_name(table: int | str) -> str:
    """The plan's name in messages: ``table1`` .. ``table8``, ``fig7``, ``fig8``, ``ablation``."""
    return f"table{table}" if str(table) in ("1", "2", "3", "6", "8") else str(table)


def plan_runs(cfg: Mapping[str, Any], table: int | str, profile: str,
              seeds: int | Sequence[int] | None = None, optimizers: Sequence[str] | None = None,
              methods: Sequence[str] | None = None, dataset: str | None = None,
              models: Sequence[str] | None = None) -> list[RunSpec]:
    """All runs of a table in a stable order ([model,] optimizer, seed, method): the arms of one
    seed run back to back, so a partial batch still yields complete pairs.

    ``table`` 1, 2 or 3: ``run.table<N>`` of the config (Table III's plan also lists ``models``,
    entries of the config's ``models:``). 6, 8, ``fig7``, ``fig8`` or ``ablation``: the parts of
    ``run.ablation`` (Sec. VI), whose method names are made canonical per optimizer
    (:func:`experiments.gal_variants.canonical_method`) and deduplicated across parts.
    """
    key, parts = table_key(table)
    plan = cfg["run"]["ablation" if parts else f"table{key}"]
    ds = dataset or plan["dataset"]
    if ds not in cfg["datasets"]:
        raise ConfigError(f"unknown dataset {ds!r}; choose from {', '.join(cfg['datasets'])}")
    seeds = int(cfg["seeds"]) if seeds is None else seeds
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    known_opts = list(cfg["optimizers"])
    if not parts:
        opts = check_choice("optimizers", optimizers or plan["optimizers"], known_opts)
        meths = check_choice("methods", methods or plan["methods"], METHODS)
        if "models" not in plan:
            if models:
                raise ConfigError(f"--models: Table {key} does not vary the model (Table III does)")
            return [RunSpec(key, profile, ds, o, m, s) for o in opts for s in seed_list for m in meths]
        mods = check_choice("models", models or plan["models"], list(cfg.get("models") or {}))
        return [RunSpec(key, profile, ds, o, m, s, model=md)
                for md in mods for o in opts for s in seed_list for m in meths]
    by_opt: dict[str, list[str]] = {}
    for part in parts:
        for o in plan[part]["optimizers"]:
            by_opt.setdefault(o, []).extend(plan[part]["methods"])
    if optimizers:
        by_opt = {o: by_opt.get(o, list(methods or ["baseline", "gal"]))
                  for o in check_choice("optimizers", optimizers, known_opts)}
    out = []
    for o in check_choice("optimizers", list(by_opt), known_opts):
        defaults = default_gal(cfg, ds, o)
        names = list(dict.fromkeys(canonical_method(m, defaults) for m in (methods or by_opt[o])))
        out += [RunSpec(key, profile, ds, o, m, s) for s in seed_list for m in names]
    return out
