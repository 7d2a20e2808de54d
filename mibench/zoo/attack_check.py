"""A short attack against two versions of one target (the shipped weights and a retrain): how far a
retrain moves an attack's result, beside `zoo verify`'s natural accuracy.

Both attacks are what `mibench run` would do on the card — same attack, preset, prior, evaluator,
seed and classes — and differ only in the target's weights, so their acc@1 difference is the part of
a cross-machine difference that comes from retraining the target (on a few classes: a coarse check,
not a leaderboard figure)."""

from __future__ import annotations

import copy
from typing import Any

import torch

from mibench.attacks.access import ACCESS_LEVELS
from mibench.attacks.addon import attack_class
from mibench.attacks.base import AttackContext
from mibench.cards import TargetCard
from mibench.classifiers.train import predict
from mibench.errors import MIBenchError
from mibench.ops.imaging import to_uint8
from mibench.run.spec import RunSpec, resolve
from mibench.zoo.priors import load_prior
from mibench.zoo.targets import build_defense_for, load_target


def check_attack(attack: str, classes: int) -> None:
    """Refuse, before anything is retrained, a short attack that `short_attack` cannot run."""
    if classes < 1:
        raise MIBenchError(f"--attack-classes {classes} attacks nothing", field="--attack-classes",
                           fix="give at least 1 (default 10), or --attack none")
    if attack_class(attack).needs_public_data:  # an unknown name fails here, listing the known ones
        raise MIBenchError(f"attack '{attack}' trains on public data and is too long for `zoo verify`",
                           field="--attack", fix="use a white-box attack such as ppa (the default), or --attack none")


def short_attack(card: TargetCard, models: dict[str, torch.nn.Module], device: str, attack: str = "ppa",
                 classes: int = 10, seed: int = 0, prior: str | None = None,
                 overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """acc@1 (%) of the same `attack` run on classes 0..classes-1 of `card` against each model in
    `models` (versions of the card's target), judged by the card's evaluator; with the settings used."""
    check_attack(attack, classes)
    spec = RunSpec(target=card.name, attack=attack, prior=prior, classes=list(range(min(classes, card.num_classes))),
                   seed=seed, overrides=dict(overrides or {}))
    run = resolve(spec)
    dev = torch.device(device)
    gen = load_prior(run.prior, dev)[0] if run.prior is not None else None
    evaluator = load_target(run.evaluator, dev)[0]
    out_size = max(card.input_size, run.evaluator.input_size)
    acc: dict[str, float] = {}
    for label, model in models.items():
        att = copy.deepcopy(run.attack)  # an unprepared copy per model: `prepare` keeps target-specific state
        access = ACCESS_LEVELS[att.access_level](model.eval(), card.num_classes, card.input_size, dev)
        ctx = AttackContext(access=build_defense_for(card).wrap_access(access), prior=gen, device=dev, seed=seed,
                            output_size=out_size, progress=False)
        att.prepare(ctx)
        hits = total = 0
        size = run.group_size()
        for i in range(0, len(run.classes), size):
            for res in att.attack_classes(ctx, run.classes[i:i + size]):
                hits += int((predict(evaluator, to_uint8(res.images), dev) == res.class_id).sum())
                total += len(res.images)
        acc[label] = 100.0 * hits / total
    return {"attack": f"{attack}/{run.preset}", "classes": len(run.classes), "acc1": acc}
