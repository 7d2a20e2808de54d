"""Building many zoo entries at once (`mibench zoo build`): which cards make the default zoo, the
order to build them in, and the table of what was built."""

from __future__ import annotations

import logging
import time
from typing import Any

from mibench.cards import get_card, list_cards, load_card, replicate_card, replicate_index
from mibench.errors import MIBenchError
from mibench.ops.pool import run_jobs
from mibench.zoo.priors import build_generator, generator_status, is_trainable, prior_artifact
from mibench.zoo.targets import build_target, is_external, target_artifact, target_status
from mibench.zoo.utility import warn_if_over_budget

log = logging.getLogger(__name__)

ZOO_REPLICATES = 3  # training seeds of each embedded target: the card itself, @1 and @2


def zoo_cards(names: list[str] | None = None) -> list[tuple[str, Any]]:
    """(kind, card) for the given names, or the default zoo: every buildable target, the evaluators
    of their datasets and the buildable default prior (`default_for`) of those datasets; other cards
    (the shifted-domain prior, synthfaces64's evaluator and prior) are built by name or when a run
    needs them."""
    if names:
        out = []
        for n in names:
            try:
                out.append(("target", get_card("target", n)))
            except MIBenchError:
                out.append(("generator", get_card("generator", n)))
        return out
    buildable = [c for c in list_cards("target") if c.train is not None and not is_external(c)]
    attacked = {c.dataset.name for c in buildable if c.role == "target"}
    items = [("target", c) for c in buildable if c.role == "target" or c.dataset.name in attacked]
    # The noise floor: every embedded target also in training-seed replicates @1, @2 (evaluators are pinned).
    items += [("target", replicate_card(c, k)) for _, c in list(items) if c.role == "target"
              for k in range(1, ZOO_REPLICATES)]
    in_use = {c.dataset.name for _, c in items}
    items += [("generator", c) for c in list_cards("generator")
              if is_trainable(c) and in_use.intersection(c.default_for)]
    return items


def _is_built(kind: str, card: Any) -> bool:
    status = target_status(card) if kind == "target" else generator_status(card)
    return status in ("built", "shipped", "weights found", "built (trained locally)")


def build_one(kind: str, card_path: str, device: str, force: bool = False,
              replicate: int = 0) -> tuple[str, float]:
    """Build one card (a pool job; `replicate` > 0: that training-seed replicate); returns (name, seconds)."""
    card = load_card(card_path, kind)
    if replicate:
        card = replicate_card(card, replicate)
    t0 = time.time()
    (build_target if kind == "target" else build_generator)(card, device=device, progress=False, force=force)
    return card.name, time.time() - t0


def _estimated_cost(kind: str, card: Any) -> float:
    """Rough relative cost, to start the longest builds first."""
    if kind == "generator":
        return 1e9
    from mibench.zoo.targets import build_defense_for

    cost = card.train.epochs * (4.0 if card.role == "evaluator" else 1.0)
    return cost + (100.0 if build_defense_for(card).needs_public_pretraining else 0.0)


def build_zoo(names: list[str] | None = None, device: str = "cpu", jobs: int | None = None,
              force: bool = False, progress: bool = True) -> list[dict[str, Any]]:
    """Build every missing zoo entry (or `names`), `jobs` at a time; returns one row per card."""
    items = zoo_cards(names)
    todo = [(k, c) for k, c in items if force or not _is_built(k, c)]
    todo.sort(key=lambda kc: -_estimated_cost(*kc))
    t0 = time.time()
    if todo:
        log.info("building %d zoo entries: %s", len(todo), ", ".join(c.name for _, c in todo))

    def done(i: int, result: tuple[str, float]) -> None:
        log.info("finished %s in %.0fs (%.0fs since start)", result[0], result[1], time.time() - t0)

    if len(todo) == 1:  # in-process, with progress bars
        kind, card = todo[0]
        (build_target if kind == "target" else build_generator)(card, device=device, progress=progress,
                                                                 force=force)
    elif todo:
        run_jobs([(build_one, (k, c.path, device, force, replicate_index(c.name))) for k, c in todo],
                 device=device, workers=jobs,
                 desc="zoo build", progress=progress, on_done=done)
    return zoo_table(items)


def zoo_table(items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Rows describing built zoo entries (natural accuracy, a defense's cost against the undefended
    target, build time) for the CLI table; a defense costing more than its card intends is warned about."""
    rows = []
    for kind, card in items:
        if kind == "target":
            row = {"name": card.name, "role": card.role, "defense": card.defense.card, "status": target_status(card)}
            if row["status"] in ("built", "shipped"):
                meta = target_artifact(card).meta()
                row["natural_acc"] = f"{100 * meta['natural_accuracy']:.1f}%"
                row["train_s"] = meta.get("build_seconds")
                cost = warn_if_over_budget(card)
                if cost is not None:
                    row["defense_cost"] = cost.text() + (" OVER" if cost.over_budget else "")
        else:
            row = {"name": card.name, "role": "prior", "defense": "", "status": generator_status(card)}
            if row["status"] in ("built", "shipped"):
                meta = prior_artifact(card).meta()
                row["train_s"] = meta.get("build_seconds")
                q = meta.get("quality")
                if q:
                    row["prior_quality"] = (f"FID_eval {q['fid_eval']:.1f} (floor {q['fid_floor']:.2f}), "
                                            f"classes {100 * q['class_coverage']:.0f}%")
        rows.append(row)
    return rows
