"""One small strict registry per kind of pluggable thing (defenses, attacks, data sets, ...).

One style registers everything: `@REGISTRY.register` on a class or value with a `name`
attribute (the name is written once, on the object), or `@REGISTRY.register(name="...")` on a
plain function. A registry's entries register themselves when their module is imported: a
registry whose loader is a package imports every module in it on the first lookup, so dropping
a file into `defenses/` or `attacks/` registers what it defines, with no list to edit.

The shared registries below name their loader packages (which live on higher floors of the
tree) as strings, imported on the first lookup only: the core never imports them itself, and
`tests/test_layers.py`, which reads import statements, rightly sees no upward import.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, Iterator, TypeVar

from benchmark.core.errors import AtbenchError
from benchmark.core.names import check_name

T = TypeVar("T")


class NameTakenError(ValueError):
    """A name is registered twice."""


def import_all(package: str) -> None:
    """Import `package` and, if it is a package, every module in it (not those whose name
    starts with an underscore), so that their `register` decorators run."""
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


class Registry(Generic[T]):
    """Maps stable names (slugs, `benchmark.core.names`) to objects. Registering a name twice
    raises; an unknown name raises an `AtbenchError` listing the known names and the closest one.

    Installed packages may add entries through an entry-point group (entry-point name = the
    entry's name, value = `module:object`). Such an entry is imported only when its name is
    looked up with `get`; listing them (`installed`) reads package metadata and imports nothing.

    Args:
        kind: what is registered ("defense", "attack", ...), used in messages.
        loader: a module or package imported on the first lookup (`import_all`).
        group: the entry-point group of installed entries, if any.
    """

    def __init__(self, kind: str, loader: str | None = None, group: str | None = None):
        self.kind = kind
        self._loader = loader
        self._loaded = loader is None
        self._group = group
        self._entries: dict[str, T] = {}

    def register(self, obj: Any = None, *, name: str | None = None) -> Any:
        """Register `obj` under `name`, or under its own `name` attribute. Use it as
        `@REGISTRY.register` (a class with `name`), `@REGISTRY.register(name="x")` (a function),
        or call `REGISTRY.register(value)` (a value with `name`). Returns `obj`.

        Raises:
            NameTakenError: the name is registered already.
            AtbenchError: the name is not a slug.
        """

        def add(entry: T) -> T:
            key = name if name is not None else getattr(entry, "name", None)
            if not isinstance(key, str):
                raise TypeError(f"a {self.kind} needs a `name` attribute or register(name=...)")
            check_name(key, self.kind)
            if key in self._entries:
                raise NameTakenError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = entry
            return entry

        return add if obj is None else add(obj)

    def remove(self, name: str) -> None:
        """Unregister `name` (e.g. the entries of a plugin file that failed half-way)."""
        del self._entries[name]

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            import_all(self._loader)

    def _entry_points(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self._group)} if self._group else {}

    def _load_installed(self, ep: EntryPoint) -> None:
        """Import the installed entry `ep` and register it under its entry-point name (unless
        importing it registered it already)."""
        source = f"installed {self.kind} {ep.name!r} ({ep.value}"
        source += f", distribution {ep.dist.name})" if ep.dist else ")"
        try:
            obj = ep.load()
        except Exception as exc:
            raise AtbenchError(f"{source} failed to import: {type(exc).__name__}: {exc}",
                               "fix the package or uninstall it") from exc
        if getattr(obj, "name", ep.name) != ep.name:
            raise AtbenchError(f"{source} is named {obj.name!r}, not {ep.name!r}",
                               "make the entry-point name equal to the object's `name`")
        if self._entries.get(ep.name, obj) is not obj:
            raise AtbenchError(f"{source} clashes with the registered {self.kind} of that name",
                               "rename the installed entry")
        self._entries[ep.name] = obj

    def get(self, name: str) -> T:
        """Return the entry named `name` (importing an installed one on its first lookup), or
        raise an `AtbenchError` naming the known ones."""
        self._load()
        if name not in self._entries:
            installed = self._entry_points()
            if name not in installed:
                known = sorted({*self._entries, *installed})
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise AtbenchError(f"unknown {self.kind} {name!r}", f"{hint}known {self.kind}s: {', '.join(known)}")
            self._load_installed(installed[name])
        return self._entries[name]

    def names(self) -> list[str]:
        """All registered names, sorted (installed entries only once looked up)."""
        self._load()
        return sorted(self._entries)

    def installed(self) -> list[str]:
        """Names of installed entries not looked up yet, sorted; imports nothing."""
        self._load()
        return sorted(set(self._entry_points()) - set(self._entries))

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


DEFENSES: Registry = Registry("defense", loader="defenses", group="atbench.defenses")
ATTACKS: Registry = Registry("attack", loader="attacks")
#: Attacks submitted beside the protocol (`atbench attack`): atbench's adaptive attacks, files passed
#: with `--attack-file` and installed packages' `atbench.attacks` entry points. They never enter a
#: protocol: the protocol's attacks are `ATTACKS`.
SUBMITTED_ATTACKS: Registry = Registry("submitted attack", loader="attacks.adaptive", group="atbench.attacks")
DATASETS: Registry = Registry("dataset", loader="benchmark.pipeline.datasets")
MODELS: Registry = Registry("model", loader="benchmark.models.architectures")
TRACKS: Registry = Registry("track", loader="benchmark.pipeline.tracks")
