"""What a defense costs in natural accuracy: the drop of a defended target against its undefended
twin (same data, architecture and training seed, defense `none`), checked against the defense
card's `utility_cost`, and a calibration helper that trains a defense at several strengths to find
the strongest one within a utility budget.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from mibench.cards import TargetCard, get_card, list_cards, resolve_defense
from mibench.errors import MIBenchError
from mibench.zoo.targets import build_target, target_artifact

log = logging.getLogger(__name__)


def undefended_twin(card: TargetCard) -> TargetCard | None:
    """The undefended target of `card`'s recipe: same dataset, architecture, classes, input size and
    training seed, defense `none` (None for an undefended card or when there is no such card)."""
    if card.role != "target" or resolve_defense(card)[0].kind == "none" or card.train is None:
        return None
    same = [other for other in list_cards("target")
            if other.role == "target" and other.name != card.name and other.train is not None
            and resolve_defense(other)[0].kind == "none"
            and (other.dataset, other.architecture, other.arch_params, other.num_classes, other.input_size,
                 other.train.seed) == (card.dataset, card.architecture, card.arch_params, card.num_classes,
                                       card.input_size, card.train.seed)]
    # Closest first: the same evaluation model, then the same training recipe.
    return max(same, key=lambda o: (o.evaluator == card.evaluator, o.train == card.train), default=None)


@dataclass
class UtilityCost:
    """A defended target's natural accuracy against its undefended twin's."""

    natural_accuracy: float
    undefended: str
    undefended_accuracy: float
    budget: float | None  # the defense card's utility_cost

    @property
    def drop(self) -> float:
        """Accuracy lost to the defense (a fraction; negative when the defense helps)."""
        return self.undefended_accuracy - self.natural_accuracy

    @property
    def over_budget(self) -> bool:
        """True when the drop exceeds the defense card's intended cost."""
        return self.budget is not None and self.drop > self.budget

    def text(self) -> str:
        """'−1.2 pts vs synthfaces32-resnet (≤ 5)'."""
        limit = f" (intended ≤ {100 * self.budget:.0f})" if self.budget is not None else ""
        return f"{-100 * self.drop:+.1f} pts vs {self.undefended}{limit}"


def _built_accuracy(card: TargetCard) -> float | None:
    art = target_artifact(card)
    return art.meta().get("natural_accuracy") if art.exists() else None


def utility_cost(card: TargetCard) -> UtilityCost | None:
    """The defense's cost for a built defended target whose undefended twin is built too, else None."""
    twin = undefended_twin(card)
    if twin is None:
        return None
    acc, base = _built_accuracy(card), _built_accuracy(twin)
    if acc is None or base is None:
        return None
    return UtilityCost(acc, twin.name, base, resolve_defense(card)[0].utility_cost)


def warn_if_over_budget(card: TargetCard) -> UtilityCost | None:
    """Log a warning when a built defended target costs more natural accuracy than its card intends."""
    cost = utility_cost(card)
    if cost is not None and cost.over_budget:
        dcard, _ = resolve_defense(card)
        log.warning("%s: natural accuracy %.1f%% is %.1f points below %s (%.1f%%), more than the %.0f points "
                    "defense '%s' is meant to cost; weaken it (`mibench zoo calibrate %s --param ...`)",
                    card.name, 100 * cost.natural_accuracy, 100 * cost.drop, cost.undefended,
                    100 * cost.undefended_accuracy, 100 * cost.budget, dcard.name, card.name)
    return cost


def calibrate(target: str, param: str, values: list[float], budget: float | None = None, device: str = "cpu",
              progress: bool = True) -> list[dict[str, Any]]:
    """Train `target` with its defense parameter `param` at each of `values` (weakest first) and
    report each one's natural accuracy and drop against the undefended twin; the strongest value
    within `budget` (default: the defense card's `utility_cost`) is marked `chosen`. The variants
    are cached like any zoo entry (their cards differ only in the parameter)."""
    card = get_card("target", target)
    dcard, params = resolve_defense(card)
    if param not in params:
        raise MIBenchError(f"defense '{dcard.name}' has no parameter '{param}'", path=card.path,
                           field="defense.params", fix=f"use one of: {', '.join(sorted(params)) or '(none)'}")
    twin = undefended_twin(card)
    if twin is None:
        raise MIBenchError(f"no undefended target with the recipe of '{card.name}' to compare with",
                           path=card.path, fix="add a card with the same dataset, architecture and seed and "
                                               "`defense: {card: none}`")
    budget = dcard.utility_cost if budget is None else budget
    build_target(twin, device=device, progress=progress)
    base = _built_accuracy(twin)
    rows = []
    for v in values:
        variant = dataclasses.replace(card, name=f"{card.name}-{param}{v:g}",
                                      defense=dataclasses.replace(card.defense, params={**card.defense.params,
                                                                                        param: v}))
        build_target(variant, device=device, progress=progress)
        acc = _built_accuracy(variant)
        rows.append({"param": param, "value": v, "natural_acc": acc, "drop_pts": round(100 * (base - acc), 2),
                     "within_budget": budget is None or base - acc <= budget})
    ok = [r for r in rows if r["within_budget"]]
    for r in rows:
        r["chosen"] = bool(ok) and r is ok[-1]
    return rows
