"""Evaluation protocols: named, versioned choices of which identities a run attacks.

`standard` attacks every class of the target — the leaderboard's protocol, whose intervals are
narrow enough to rank defenses. `quick` attacks classes 0-9 — for `make run` smoke use and tests;
its intervals are about three times wider. An entry records its protocol (derived from its
classes, so a run made with `--classes 0-99` on a 100-class target is a standard run), and the
table, CSV and page never rank a quick entry against standard ones without saying so."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mibench.errors import MIBenchError


@dataclass(frozen=True)
class Protocol:
    """Which classes a run attacks; `version` changes whenever the choice does."""

    name: str
    version: int
    description: str
    num_classes: int | None  # None: every class of the target

    def classes(self, target_classes: int) -> list[int]:
        """The class ids this protocol attacks on a target with `target_classes` classes."""
        return list(range(target_classes if self.num_classes is None else min(self.num_classes, target_classes)))

    def as_dict(self) -> dict[str, Any]:
        """The JSON form recorded in entries."""
        return {"name": self.name, "version": self.version, "description": self.description}


PROTOCOLS = {
    "standard": Protocol("standard", 1, "every class of the target", None),
    "quick": Protocol("quick", 1, "classes 0-9 (smoke runs; intervals about 3× wider than standard)", 10),
}
CUSTOM = {"name": "custom", "version": 1, "description": "a class list chosen by hand"}


def get_protocol(name: str) -> Protocol:
    """The protocol called `name` (a clear error lists the known ones)."""
    if name not in PROTOCOLS:
        raise MIBenchError(f"unknown protocol '{name}'", field="--protocol", fix=f"use one of: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def protocol_of(classes: list[int], target_classes: int) -> dict[str, Any]:
    """The protocol a class list follows on a target with `target_classes` classes (else 'custom')."""
    for p in PROTOCOLS.values():
        if list(classes) == p.classes(target_classes):
            return p.as_dict()
    return dict(CUSTOM)


def entry_protocol(entry: dict[str, Any]) -> str:
    """An entry's protocol name (entries written before protocols existed: derived from its classes)."""
    p = entry.get("protocol")
    return p["name"] if p else protocol_of(entry["classes"], entry["target"]["num_classes"])["name"]
