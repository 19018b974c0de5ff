"""A small strict registry: one per kind of pluggable thing (defenses, attacks, data sets, ...)."""
from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, Iterator, TypeVar

from benchmark.errors import AtbenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps stable names to objects. Registering a name twice raises; an unknown name raises
    an `AtbenchError` listing the known names and the closest match.

    Args:
        kind: what is registered ("defense", "attack", ...), used in messages.
        loader: a module imported on first lookup so that its entries register themselves.
    """

    def __init__(self, kind: str, loader: str | None = None):
        self.kind = kind
        self._loader = loader
        self._loaded = loader is None
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under `name`."""

        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        """Register `obj` under `name`; a name already taken raises `ValueError`."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self._loader)

    def get(self, name: str) -> T:
        """Return the entry named `name`, or raise an `AtbenchError` naming the known ones."""
        self._load()
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise AtbenchError(
                f"unknown {self.kind} {name!r}",
                f"{hint}known {self.kind}s: {', '.join(sorted(self._entries))}",
            )
        return self._entries[name]

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


DEFENSES: Registry = Registry("defense", loader="defenses")
ATTACKS: Registry = Registry("attack", loader="attacks")
DATASETS: Registry = Registry("dataset", loader="benchmark.local_data")  # imports benchmark.data too
MODELS: Registry = Registry("model", loader="benchmark.models")
TRACKS: Registry = Registry("track", loader="benchmark.tracks")
