"""Results over replicates: entries of the same configuration — the same target recipe and defense
(training-seed replicates `<card>@k` included), attack config, prior and protocol — pooled into one
cell with a 95 % interval, and each defense's effect as a paired difference against the
undefended target of the same recipe.

The interval of a cell resamples replicates (target training seed × attack seed) and then
identities; `covers` says which of these varied. The defense effect Δacc@1 pairs, for every
(training-seed replicate k, attack seed, class), the defended target's per-class value with the
undefended one's — identity difficulty and seed effects they share cancel — and a cell whose
interval excludes 0 is marked as distinguishable from no effect."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mibench.cards import REPLICATE, card_hash
from mibench.ops.stats import Interval, hierarchical_mean, paired_difference
from mibench.run.protocol import entry_protocol

NONE_DEFENSE = "none"


def target_base(name: str) -> str:
    """A target name without its replicate suffix (`x@2` → `x`)."""
    return name.partition(REPLICATE)[0]


def replicate_of(entry: dict[str, Any]) -> int:
    """The training-seed replicate k of an entry's target (0 for the card itself)."""
    _, sep, k = entry["target"]["name"].partition(REPLICATE)
    return int(k) if sep and k.isdigit() else 0


def recipe_key(entry: dict[str, Any]) -> str:
    """What a defended target shares with its undefended counterpart: dataset, architecture, size."""
    t = entry["target"]
    card = t.get("card") or {}
    return card_hash({"dataset": entry["dataset"], "data": card.get("dataset"), "architecture": t["architecture"],
                      "arch_params": card.get("arch_params"), "input_size": t.get("input_size"),
                      "num_classes": t["num_classes"]})[:12]


def cell_key(entry: dict[str, Any]) -> tuple:
    """Entries with the same key are replicates of one result (a run under a query budget is another
    result than the same attack without one)."""
    a, d = entry["attack"], entry["target"]["defense"]
    return (entry["dataset"], target_base(entry["target"]["name"]), a["name"], a.get("preset"),
            card_hash(a.get("config") or {})[:12], (entry.get("prior") or {}).get("name"), entry_protocol(entry),
            d["card"], card_hash(d.get("params") or {})[:12], query_budget(entry))


def query_budget(entry: dict[str, Any]) -> int | None:
    """The query budget an entry's run was capped at (None: no budget)."""
    return (entry.get("queries") or {}).get("budget")


def _attack_key(entry: dict[str, Any]) -> tuple:
    """What a defended cell shares with its undefended pair: preset, attack config, query budget."""
    k = cell_key(entry)
    return k[3], k[4], k[9]


def per_class_values(entry: dict[str, Any], metric: str = "acc@1") -> dict[int, float]:
    """{class: value} of one entry (a failed class counts as 0 for the accuracies)."""
    out = {}
    for m in entry.get("per_class", []):
        v = 0.0 if m.get("failed") else m.get(metric)
        if v is not None:
            out[int(m["class"])] = float(v)
    return out


def covers(keys: list[tuple[int, int]]) -> tuple[str, ...]:
    """The sources of variation an interval over the (training-seed replicate, attack seed) `keys`
    and the identities includes."""
    out = ["identities"]
    if len({k for k, _ in keys}) > 1:
        out.append("target training seed")
    if len({s for _, s in keys}) > 1:
        out.append("attack seed")
    return tuple(out)


@dataclass
class Cell:
    """One configuration's result pooled over its replicates."""

    dataset: str
    target: str  # the card name without replicate suffix
    defense: str
    attack: str
    prior: str | None
    protocol: str
    recipe: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    acc1: Interval | None = None
    natural: float | None = None  # mean natural accuracy over the training-seed replicates
    natural_range: tuple[float, float] | None = None
    effect: Interval | None = None  # Δacc@1 vs the undefended target of the same recipe (None: undefended/no pair)
    metric: str = "acc@1"  # the per-class metric pooled into `acc1` and `effect` (acc@1 unless asked)

    def replicates(self) -> dict[tuple[int, int], dict[int, float]]:
        """(training-seed replicate, attack seed) → {class: value of `metric`}."""
        return {(replicate_of(e), int(e["seed"])): per_class_values(e, self.metric) for e in self.entries}

    def covers(self) -> tuple[str, ...]:
        """The sources of variation this cell's interval includes."""
        return covers(list(self.replicates()))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary (page and CSV)."""
        return {"dataset": self.dataset, "target": self.target, "defense": self.defense, "attack": self.attack,
                "prior": self.prior, "protocol": self.protocol, "replicates": len(self.entries),
                "acc1": None if self.acc1 is None else self.acc1.as_dict(),
                "natural": self.natural, "effect": None if self.effect is None else self.effect.as_dict()}


def config_key(cell: Cell) -> tuple:
    """What tells apart configurations of one attack on one target: preset, config hash, prior,
    query budget."""
    k = cell_key(cell.entries[0])
    return k[3], k[4], k[5], k[9]


def config_labels(cells_: list[Cell]) -> list[str]:
    """For the configurations of one attack on one target: the settings where each differs from the
    others (`clip_z=1.0`; `preset=…`, `prior=…`, `query_budget=…` when those differ), "" when there
    is only one."""
    if len(cells_) < 2:
        return [""]
    configs = [cell.entries[0]["attack"].get("config") or {} for cell in cells_]
    keys = sorted({k for c in configs for k in c})
    configs = [{"preset": cell.entries[0]["attack"].get("preset"), "prior": cell.prior,
                "query_budget": query_budget(cell.entries[0]), **c} for cell, c in zip(cells_, configs)]
    keys = ["preset", "prior", "query_budget"] + keys
    varying = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    return [", ".join(f"{k}={c.get(k)}" for k in varying) for c in configs]


def cells(entries: list[dict[str, Any]], metric: str = "acc@1") -> list[Cell]:
    """Entries pooled by configuration, each with its interval and (defended ones) the defense effect,
    of the per-class `metric` (acc@1; or e.g. reid@1 to rank the defenses by ground truth)."""
    groups: dict[tuple, Cell] = {}
    for e in entries:
        key = cell_key(e)
        if key not in groups:
            groups[key] = Cell(e["dataset"], key[1], e["target"]["defense"]["card"], e["attack"]["name"], key[5],
                               key[6], recipe_key(e), metric=metric)
        groups[key].entries.append(e)
    out = sorted(groups.values(), key=lambda c: (c.dataset, c.protocol, c.attack, c.defense, c.target))
    for c in out:
        reps = {k: v for k, v in c.replicates().items() if v}
        if reps:
            c.acc1 = hierarchical_mean(reps, covers=c.covers())
        nat = {replicate_of(e): e["target"].get("natural_accuracy") for e in c.entries}
        nat = [v for v in nat.values() if v is not None]
        if nat:
            c.natural, c.natural_range = sum(nat) / len(nat), (min(nat), max(nat))
    by_config = {(c.dataset, c.recipe, c.attack, c.prior, c.protocol, _attack_key(c.entries[0])): c
                 for c in out if c.defense == NONE_DEFENSE}
    for c in out:
        if c.defense == NONE_DEFENSE:
            continue
        base = by_config.get((c.dataset, c.recipe, c.attack, c.prior, c.protocol, _attack_key(c.entries[0])))
        if base is None:
            continue
        mine, theirs = c.replicates(), base.replicates()
        if any(k in theirs and set(v) & set(theirs[k]) for k, v in mine.items()):
            c.effect = paired_difference(mine, theirs, covers=covers([k for k in mine if k in theirs]))
    return out
