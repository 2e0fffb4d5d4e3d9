"""A read-only name -> entry mapping whose unknown keys raise one clear error: the optimizer
builders of Sec. V-B and Fig. 4 (:data:`gal.optim.BUILDERS`) and any vocabulary built on the
library. Needs nothing beyond the standard library, so ``import gal`` stays torch-only."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownName"]

E = TypeVar("E")


class UnknownName(KeyError, ValueError):
    """A name that is not in a vocabulary; the message names the vocabulary, the known names
    and where to add one. A ``KeyError`` (``Mapping.get`` returns its default) and a
    ``ValueError`` (a bad value given by a user or a config)."""

    def __str__(self) -> str:  # KeyError quotes its argument; the message reads better bare
        return str(self.args[0]) if self.args else ""


class Registry(Mapping[str, E], Generic[E]):
    """``kind`` names the vocabulary in messages (``optimizer``), ``where`` the module to add
    an entry to. Iteration follows the entries' order (the order tables and figures use)."""

    def __init__(self, kind: str, where: str, entries: Mapping[str, E]) -> None:
        self.kind, self.where = kind, where
        self._entries = dict(entries)

    def __getitem__(self, key: str) -> E:
        try:
            return self._entries[key]
        except (KeyError, TypeError):
            raise UnknownName(
                f"unknown {self.kind} {key!r}; choose one of {', '.join(self._entries)} "
                f"(or add an entry to {self.where})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
