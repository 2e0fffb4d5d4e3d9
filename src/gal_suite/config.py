"""Experiment configuration shared by every task of the suite.

One YAML file per experiment family (e.g. ``experiments/configs/regression.yaml`` for Table V,
Sec. V-B of the paper) with this shape::

    common:            # every setting, with its default (the schema: names and types)
      train:
        lr: 0.001
    profiles:
      paper: {}        # the paper's stated settings (overrides of common)
      cpu:             # a profile that runs on a 2-core CPU with the data at hand
        train:
          lr: 0.003

``load_config(path, profile, overrides)`` deep-merges ``common`` <- ``profiles[profile]`` <-
``overrides`` and returns a plain dict. ``common`` is the schema: a profile or an override may
only set keys that exist in ``common``, with a value of a compatible type (an int where a float
is expected is accepted and converted; ``null`` in ``common`` means "any value"; a key whose
default is the string ``auto`` also takes ``true``/``false``, e.g. ``--set train.amp=false``).
Every problem
(missing/malformed file, unknown profile, unknown key, wrong type) raises one :class:`ConfigError`
whose message names the file, the key and how to fix it.

Overrides may be nested dicts or dotted keys (``{"train.lr": 0.1}``); the command line form
``--set train.lr=0.1`` is parsed by :func:`parse_overrides` (values are YAML scalars/lists).
An override keeps the type of its default: a string default stays a string (``--set
data.sha256=0000`` is the text ``"0000"``, never the number 0; a ``null`` default takes the type
that key has in its sibling entries, e.g. ``datasets.<other>.data.sha256``), a bool default takes
true/false/yes/no/on/off/1/0. After merging, ranges are checked (:data:`RANGE_RULES`): epochs,
batch sizes and seeds >= 1, learning rates > 0, one line each, before any run starts.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigError", "load_config", "parse_overrides", "deep_merge", "RANGE_RULES"]

_TOP_KEYS = ("common", "profiles")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` (no dot) as a float; plain YAML 1.1 gives a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml_load(text: Any) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
_ALLOWED_TOP_KEYS = {*_TOP_KEYS, "description"}


class ConfigError(ValueError):
    """A configuration problem; the message names the file, the key and the fix."""


#: the YAML kind of a config value named in messages, checked in this order (bool before int)
_TYPE_NAMES: tuple[tuple[Any, str], ...] = (
    (bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list | tuple, "list"),
    (Mapping, "mapping"))


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    return next((name for t, name in _TYPE_NAMES if isinstance(v, t)), type(v).__name__)


_BOOL_TEXT = {"true": True, "yes": True, "on": True, "1": True,
              "false": False, "no": False, "off": False, "0": False}


def _text(v: Any) -> str:
    """The text a scalar override stood for (a command-line value YAML read as a number/bool)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _coerce(base: Any, new: Any, where: str, key: str, file: str, peer: str | None = None) -> Any:
    """Check that ``new`` may replace ``base`` (the default in ``common``) and return it.

    Rules: ``null`` on either side is accepted; bool only replaces bool; an int replaces a float
    (converted to float); a list replaces a list; a mapping is handled by the caller; a default
    of ``"auto"`` (decided at run time, e.g. AMP on CUDA) also accepts a bool (on / off).
    Overrides (``where == "overrides"``) keep the type of the default: a scalar replacing a
    string default becomes its text; a bool default also takes the text or number
    true/false/yes/no/on/off/1/0; a number default also takes a number written as text; a
    ``null`` default whose key is a string elsewhere (``peer == "str"``) takes the text, other
    ``null`` defaults a float written as text (``1e-3``) as the number.
    """
    if where == "overrides" and new is not None:
        if (isinstance(base, str) or (base is None and peer == "str")) and isinstance(new, bool | int | float):
            return _text(new)
        if isinstance(base, bool) and isinstance(new, str | int) and not isinstance(new, bool):
            if _text(new).strip().lower() in _BOOL_TEXT:
                return _BOOL_TEXT[_text(new).strip().lower()]
        elif isinstance(base, int | float) and not isinstance(base, bool) and isinstance(new, str):
            parsed = _yaml_load(new) if new.strip() else None
            if isinstance(parsed, int | float) and not isinstance(parsed, bool):
                new = parsed
        elif base is None and peer != "str" and isinstance(new, str) and new.strip():
            parsed = _yaml_load(new)
            if isinstance(parsed, float):  # 1e-3 for a null default: the number (0000 stays text)
                new = parsed
    if base is None or new is None:
        return new
    tb, tn = _type_name(base), _type_name(new)
    if tb == tn or (base == "auto" and tn == "bool"):
        return list(new) if tn == "list" else new
    if tb == "float" and tn == "int":
        return float(new)
    hint = f"e.g. {key.rsplit('.', 1)[-1]}: {yaml.safe_dump(base, default_flow_style=True).strip()}"
    if hint.endswith("..."):
        hint = hint[:-3].strip()
    raise ConfigError(
        f"{file}: {where}: key '{key}' must be of type {tb} (like its default in 'common:'), "
        f"got {tn} {new!r}. Fix the value ({hint})."
    )


def _peer_type(root: Mapping[str, Any] | None, key: str) -> str | None:
    """The type name a ``null`` default ``key`` has elsewhere in ``root``: its non-null values
    at the same place under the sibling entries of each enclosing mapping (``datasets.a.data.
    sha256`` looks at ``datasets.<b>.data.sha256``); None when they are absent or disagree."""
    if root is None:
        return None
    parts = key.split(".")
    seen: set[str] = set()
    for i in range(len(parts) - 1):
        parent: Any = root
        for p in parts[:i]:
            parent = parent.get(p) if isinstance(parent, Mapping) else None
        if not isinstance(parent, Mapping):
            continue
        for sibling, node in parent.items():
            if sibling == parts[i]:
                continue
            for p in parts[i + 1:]:
                node = node.get(p) if isinstance(node, Mapping) else None
            if node is not None and not isinstance(node, Mapping):
                seen.add(_type_name(node))
    return seen.pop() if len(seen) == 1 else None


def _merge_checked(
    base: dict[str, Any], new: Mapping[str, Any], where: str, file: str, prefix: str = "",
    root: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Deep-merge ``new`` into a copy of ``base``; every key of ``new`` must exist in ``base``.
    ``root``: the whole config ``base`` is part of (for a ``null`` default's type, overrides)."""
    root = base if root is None else root
    out = copy.deepcopy(base)
    for k, v in new.items():
        key = f"{prefix}{k}"
        if k not in base:
            known = ", ".join(sorted(map(str, base))) or "(none)"
            parent = prefix[:-1] or "the top level"
            raise ConfigError(
                f"{file}: {where}: unknown key '{key}' (known keys under {parent}: {known}). "
                f"Fix the spelling, or add '{key}' with a commented default to 'common:' in {file}."
            )
        b = base[k]
        if isinstance(b, Mapping):
            if not isinstance(v, Mapping):
                raise ConfigError(
                    f"{file}: {where}: key '{key}' is a section (mapping) in 'common:', "
                    f"got {_type_name(v)} {v!r}. Fix: set its sub-keys, e.g. '{key}.<name>'."
                )
            out[k] = _merge_checked(dict(b), v, where, file, key + ".", root)
        else:
            if isinstance(v, Mapping) and b is not None:
                raise ConfigError(
                    f"{file}: {where}: key '{key}' is a single value in 'common:', got a mapping. "
                    f"Fix: give it a {_type_name(b)} value."
                )
            peer = _peer_type(root, key) if b is None and where == "overrides" else None
            out[k] = _coerce(b, copy.deepcopy(v), where, key, file, peer)
    return out


def deep_merge(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Unchecked deep merge (``new`` wins); nested mappings are merged, other values replaced."""
    out = copy.deepcopy(dict(base))
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _undot(overrides: Mapping[str, Any], file: str) -> dict[str, Any]:
    """``{"a.b": 1, "c": {"d": 2}} -> {"a": {"b": 1}, "c": {"d": 2}}``."""
    out: dict[str, Any] = {}
    for k, v in overrides.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"{file}: overrides: keys must be non-empty strings, got {k!r}.")
        parts = k.split(".")
        if any(not p for p in parts):
            raise ConfigError(f"{file}: overrides: malformed key {k!r}; use dotted names like 'train.lr'.")
        nested: Any = _undot(v, file) if isinstance(v, Mapping) else v
        for p in reversed(parts):
            nested = {p: nested}
        out = deep_merge(out, nested)
    return out


def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """Parse command-line ``KEY=VALUE`` items (``train.lr=0.1``, ``model.hidden=[64,32]``).

    Values are parsed as YAML (numbers, booleans, null, lists); a value that is not valid YAML is
    kept as a string, and so is an integer whose text YAML would change (``0000``, ``1_000``,
    ``0x1f``: the text here; the number where its default is a number, since
    :func:`load_config` gives every override the type of its default).
    """
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(
                f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. --set train.lr=0.001"
            )
        key, raw = item.split("=", 1)
        try:
            val = _yaml_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            val = raw
        if isinstance(val, int) and not isinstance(val, bool) and str(val) != raw.strip():
            val = raw.strip()  # e.g. a checksum 000...0 or 0x1f: the text, not a number
        out[key.strip()] = val
    return out


#: Range checks applied to every resolved config, by the key's last name: (rule, test, text).
#: ``*batch_size`` matches ``batch_size``, ``test_batch_size``, ...
RANGE_RULES: tuple[tuple[str, Any, str], ...] = (
    ("epochs", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
     "an integer >= 1"),
    ("*batch_size", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
     "an integer >= 1"),
    ("seeds", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
     "an integer >= 1 (the number of seeds)"),
    ("lr", lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v > 0,
     "a number > 0"),
)


def _check_ranges(cfg: Mapping[str, Any], file: str, prefix: str = "") -> None:
    """One :class:`ConfigError` for the first value outside :data:`RANGE_RULES` (``null`` passes)."""
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            _check_ranges(v, file, key + ".")
            continue
        if v is None:
            continue
        name = str(k)
        for rule, ok, text in RANGE_RULES:
            hit = name.endswith(rule[1:]) if rule.startswith("*") else name == rule
            if hit and not ok(v):
                raise ConfigError(f"{file}: key '{key}' must be {text}, got {v!r}. Fix the value "
                                  f"(e.g. --set {key}=<value>).")


def _read_yaml(path: Path) -> dict[str, Any]:
    file = str(path)
    if not path.is_file():
        raise ConfigError(
            f"{file}: config file not found. Fix: pass an existing file "
            f"(configs live in experiments/configs/)."
        )
    try:
        with open(path) as f:
            data = _yaml_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"{file}: malformed YAML{where}: {problem}. Fix the YAML syntax (indentation, "
            f"'key: value' pairs, matching brackets)."
        ) from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{file}: top level must be a mapping with keys 'common:' and 'profiles:', "
            f"got {_type_name(data)}. Fix: see the docstring of gal_suite.config."
        )
    extra = sorted(set(map(str, data)) - _ALLOWED_TOP_KEYS)
    if extra:
        raise ConfigError(
            f"{file}: unknown top-level key(s) {', '.join(extra)}; allowed are 'common:', "
            f"'profiles:' (and 'description:'). Fix: move settings under 'common:'."
        )
    for k in _TOP_KEYS:
        if k not in data or not isinstance(data[k], Mapping):
            raise ConfigError(
                f"{file}: '{k}:' is missing or not a mapping. Fix: add '{k}:' as a mapping "
                f"(common: all settings with defaults; profiles: {{paper: ..., cpu: ...}})."
            )
    for name, prof in data["profiles"].items():
        if prof is not None and not isinstance(prof, Mapping):
            raise ConfigError(
                f"{file}: profile '{name}' must be a mapping of overrides (or empty), "
                f"got {_type_name(prof)}."
            )
    return dict(data)


def load_config(
    path: str | os.PathLike[str],
    profile: str,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load ``path``, apply ``profiles[profile]`` then ``overrides`` to ``common``; validate.

    Args:
        path: the experiment family's YAML (e.g. ``experiments/configs/regression.yaml``).
        profile: a key of ``profiles:`` (``"paper"`` = the paper's stated settings, Sec. V-B;
            ``"cpu"`` = a 2-core CPU budget).
        overrides: nested or dotted-key dict applied last (``{"train.lr": 1.0}``).

    Returns:
        The resolved config (a new plain dict; ``common`` keys only).

    Raises:
        ConfigError: one error naming the file, the key and the fix (also for a value outside
            :data:`RANGE_RULES`: epochs, batch sizes, seeds >= 1; learning rates > 0).
    """
    p = Path(path)
    file = str(p)
    data = _read_yaml(p)
    profiles = data["profiles"]
    if profile not in profiles:
        avail = ", ".join(sorted(map(str, profiles))) or "(none)"
        raise ConfigError(
            f"{file}: unknown profile '{profile}' (available: {avail}). "
            f"Fix: use --profile with one of them, or add it under 'profiles:'."
        )
    cfg = _merge_checked(dict(data["common"]), profiles[profile] or {}, f"profile '{profile}'", file)
    if overrides:
        cfg = _merge_checked(cfg, _undot(overrides, file), "overrides", file)
    _check_ranges(cfg, file)
    return cfg
