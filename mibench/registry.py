"""Registries of implementations (kinds) and the entry point that loads built-ins and plug-ins.

Kinds are code, registered by decorator (`@ATTACKS.register("ppa")`); instances are YAML cards,
loaded by `mibench.cards`. Third-party packages add kinds through the `mibench.plugins`
entry-point group: each entry point names a module (or callable) that registers on import.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any, Generic, TypeVar

from mibench.errors import RegistryError

T = TypeVar("T")

# Sub-packages whose modules register the built-in kinds: every module directly inside them is
# imported, so a new attack, defense, metric, dataset or prior kind is one file and no list.
_BUILTIN_MODULES = (
    "mibench.data",
    "mibench.classifiers",
    "mibench.defenses",
    "mibench.generators",
    "mibench.attacks",
    "mibench.metrics",
)
_loaded = False


def suggest(name: str, choices: list[str]) -> str:
    """A ' did you mean ...?' hint for a mistyped name, or '' when nothing is close."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if not close:
        lowered = [c for c in choices if name.lower() in c.lower() or c.lower() in name.lower()]
        close = lowered[:1]
    return f" — did you mean '{close[0]}'?" if close else ""


class Registry(Generic[T]):
    """A name → object table filled by a decorator, with helpful errors on unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator registering `obj` under `name` (with optional metadata such as a description)."""

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise RegistryError(f"{self.kind} '{name}' is registered twice "
                                    f"({self._items[name]!r} and {obj!r})")
            self._items[name] = obj
            self._meta[name] = dict(meta)
            return obj

        return deco

    def get(self, name: str) -> T:
        """Look `name` up; an unknown name raises a RegistryError with a suggestion."""
        load_builtins()
        if name not in self._items:
            known = sorted(self._items)
            raise RegistryError(
                f"unknown {self.kind} '{name}'{suggest(name, known)} "
                f"(known: {', '.join(known) or 'none'}; see `mibench list`)")
        return self._items[name]

    def meta(self, name: str) -> dict[str, Any]:
        """The metadata given at registration (description, ...)."""
        self.get(name)
        return dict(self._meta[name])

    def names(self) -> list[str]:
        """All registered names, sorted."""
        load_builtins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        load_builtins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


DATASETS: Registry[Any] = Registry("dataset")
ARCHITECTURES: Registry[Any] = Registry("architecture")
DEFENSES: Registry[Any] = Registry("defense")
GENERATORS: Registry[Any] = Registry("generator")
ATTACKS: Registry[Any] = Registry("attack")
# Switchable extensions of attacks (LOMMA): `mibench.attacks.addon`; run as "<attack>+<add-on>".
ADDONS: Registry[Any] = Registry("attack add-on")
METRICS: Registry[Any] = Registry("metric")


def load_builtins() -> None:
    """Import the built-in sub-packages (registering their kinds) and the `mibench.plugins` entry points."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        package = importlib.import_module(module)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{module}.{info.name}")
    for ep in metadata.entry_points(group="mibench.plugins"):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plug-in must not hide which one it is
            raise RegistryError(f"plug-in '{ep.name}' ({ep.value}) failed to load: {exc}",
                                fix="fix or uninstall that package") from exc
        if callable(obj):
            obj()
