"""A small Python API for notebooks and scripts — the same operations as the CLI.

    import mibench.api as mb
    entry = mb.run("synthfaces32-resnet-nls", "ppa", classes=range(10), seed=0)   # an entry dict
    print(mb.table([entry]))
    e = mb.load_entry("runs/<run-id>/entry.json")                                 # validated
    target, info = mb.load_target("synthfaces32-resnet")                         # nn.Module, facts
    G, info = mb.load_prior("synthfaces32-stylegan2-v2")                         # the default prior
    mb.list_names("attacks")                                                     # registered kinds

Everything a run does is recorded in its run folder exactly as with `mibench run`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from mibench.cards import get_card, list_cards
from mibench.registry import ATTACKS, DATASETS, DEFENSES, GENERATORS, METRICS
from mibench.run.entry import Entry
from mibench.run.execute import run_one
from mibench.run.spec import ResolvedRun, RunSpec, resolve
from mibench.run.table import format_table
from mibench.zoo import load_prior as _load_prior
from mibench.zoo import load_target as _load_target


def spec(target: str, attack: str, *, prior: str | None = None, classes: Iterable[int] | None = None,
         seed: int = 0, preset: str | None = None, overrides: dict[str, Any] | None = None,
         query_budget: int | None = None, extra_metrics: Iterable[str] = ()) -> RunSpec:
    """A run specification (validated when it is resolved or run)."""
    return RunSpec(target=target, attack=attack, prior=prior, classes=None if classes is None else list(classes),
                   seed=seed, preset=preset, overrides=dict(overrides or {}), query_budget=query_budget,
                   extra_metrics=list(extra_metrics))


def resolve_spec(s: RunSpec) -> ResolvedRun:
    """Resolve cards, preset and attack config without running anything (`.config()`, `.run_id()`)."""
    return resolve(s)


def run(target: str | RunSpec, attack: str | None = None, *, out: str | Path = "runs", device: str = "auto",
        progress: bool = True, **kwargs: Any) -> dict[str, Any]:
    """Run one attack (building the zoo entries it needs) and return its entry; the run folder is
    written under `out` exactly as `mibench run` writes it."""
    s = target if isinstance(target, RunSpec) else spec(target, attack or "", **kwargs)
    return run_one(s, out=Path(out), device=device, progress=progress)


def load_entry(path: str | Path) -> dict[str, Any]:
    """An entry file, validated against the entry schema."""
    return Entry.read(path).data


def table(entries: list[dict[str, Any]]) -> str:
    """The results table `mibench run` prints."""
    return format_table(entries)


def load_target(name: str, device: str | torch.device = "cpu", build: bool = True):
    """(classifier in eval mode, info) for a target or evaluator card, trained first when allowed."""
    return _load_target(get_card("target", name), device, build=build, progress=False)


def load_prior(name: str, device: str | torch.device = "cpu", build: bool = True):
    """(generator in eval mode, info) for a prior card, trained first when allowed."""
    return _load_prior(get_card("generator", name), device, build=build, progress=False)


def list_names(kind: str) -> list[str]:
    """Names of registered kinds ('attacks', 'defenses', 'metrics', 'datasets', 'generators') or of
    cards ('targets', 'generator-cards', 'defense-cards')."""
    regs = {"attacks": ATTACKS, "defenses": DEFENSES, "metrics": METRICS, "datasets": DATASETS,
            "generators": GENERATORS}
    if kind in regs:
        return regs[kind].names()
    cards = {"targets": "target", "generator-cards": "generator", "defense-cards": "defense"}
    return [c.name for c in list_cards(cards[kind])]
