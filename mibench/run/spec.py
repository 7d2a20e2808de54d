"""What to run and how it resolves: a `RunSpec` (target × attack × prior on some classes with a
seed) becomes a `ResolvedRun` — cards loaded, the attack's preset chosen and its config built —
before anything expensive happens. The resolved configuration is what `config.json` and the entry
record, and its hash is the run id."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mibench.attacks.access import BUDGETED_LEVELS
from mibench.attacks.addon import attack_class
from mibench.attacks.base import Attack
from mibench.cards import (
    DatasetRef,
    GeneratorCard,
    TargetCard,
    card_hash,
    get_card,
    list_cards,
    resolve_defense,
)
from mibench.errors import MIBenchError
from mibench.registry import DATASETS, METRICS
from mibench.typed import to_dict


@dataclass
class RunSpec:
    """What to run: one target × attack × prior on some classes with a seed."""

    target: str
    attack: str
    prior: str | None = None  # default: the generator card whose `default_for` lists the target's dataset
    classes: list[int] | None = None  # default: every class of the target
    seed: int = 0
    preset: str | None = None  # attack preset; default: the target card's `attack_preset`, else the dataset's
    overrides: dict[str, Any] = field(default_factory=dict)  # attack config overrides
    query_budget: int | None = None  # black-box and label-only attacks: most target queries of the run
    classes_per_group: int | None = None  # default: enough classes to fill one optimisation batch
    extra_metrics: list[str] = field(default_factory=list)  # optional metric kinds to compute too
    # A named class choice (mibench.run.protocol) that resolves to `classes`; only the class list
    # enters the run id, so `--protocol standard` and `--classes 0-99` are the same run.
    protocol: str | None = field(default=None, metadata={"derived": True})


def parse_classes(text: str | None) -> list[int] | None:
    """'0-9,15,20-22' → [0..9, 15, 20, 21, 22]; None → None."""
    if text is None or text == "all":
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise MIBenchError(f"cannot parse class list '{text}'", field="--classes",
                               fix="use e.g. 0-9 or 0,3,7 or 10-19,42") from None
    return sorted(set(out))


def preset_for(attack_cls: type[Attack], target: TargetCard, prior: GeneratorCard | None = None) -> tuple[str, str]:
    """The attack preset a run uses by default and why: the target card's `attack_preset` (one name,
    or one per attack), else the paper preset its dataset kind declares, else — for generic kinds
    such as `imagefolder` — the attack's preset fitted to the image size (the prior's resolution, or
    the target's input size), so a 32 px folder never gets a 224 px paper preset."""
    chosen = target.attack_preset
    if isinstance(chosen, dict):
        chosen = chosen.get(attack_cls.name)
    if chosen:
        return chosen, f"target card {target.name}"
    declared = DATASETS.meta(target.dataset.name).get("attack_preset")
    if declared:
        return declared, f"dataset {target.dataset.name}"
    size = prior.resolution if prior is not None else target.input_size
    for limit, name in attack_cls.fitted_presets:
        if size <= limit:
            return name, f"fitted to {size} px {'prior' if prior is not None else 'input'}"
    raise MIBenchError(f"attack '{attack_cls.name}' has no preset for {size} px data of dataset kind "
                       f"'{target.dataset.name}'", path=target.path, field="attack_preset",
                       fix=f"set `attack_preset:` to one of: {', '.join(attack_cls.presets)}")


def default_prior(target: TargetCard, kinds: tuple[str, ...] = ("stylegan2",)) -> str:
    """The prior an attack running on generator `kinds` uses on `target` by default: the target
    card's `prior` when it is of one of those kinds, else the first prior card (by name) of those
    kinds whose `default_for` names the target's dataset."""
    if target.prior and get_card("generator", target.prior).kind in kinds:
        return target.prior
    for card in sorted(list_cards("generator"), key=lambda c: c.name):
        if target.dataset.name in card.default_for and card.kind in kinds:
            return card.name
    raise MIBenchError(f"no default {' / '.join(kinds)} prior for dataset '{target.dataset.name}'",
                       fix=f"pass --prior NAME (a {' / '.join(kinds)} card; see `mibench list generators`)")


def check_prior_kind(attack_cls: type[Attack], prior: GeneratorCard) -> None:
    """Refuse a prior of a generator kind the attack cannot run on (e.g. PPA on a GMI GAN)."""
    if prior.kind not in attack_cls.prior_kinds:
        raise MIBenchError(f"attack '{attack_cls.name}' runs on {' / '.join(attack_cls.prior_kinds)} priors, but "
                           f"'{prior.name}' is a {prior.kind} prior", path=prior.path, field="--prior",
                           fix=f"omit --prior (the default {' / '.join(attack_cls.prior_kinds)} prior of the "
                               "target's dataset is used) or name a prior of that kind")


def check_query_budget(attack_cls: type[Attack], budget: int) -> None:
    """Refuse a budget the attack's access level cannot honour, rather than ignoring it."""
    if attack_cls.access_level not in BUDGETED_LEVELS:
        raise MIBenchError(f"attack '{attack_cls.name}' is {attack_cls.access_level}: a query budget applies only to "
                           f"{' and '.join(BUDGETED_LEVELS)} attacks", field="--query-budget",
                           fix="drop --query-budget, or pick a query-access attack (see `mibench list attacks`)")
    if budget < 1:
        raise MIBenchError(f"query budget {budget} is not positive", field="--query-budget",
                           fix="give the most target queries the run may make, e.g. --query-budget 100000")


def public_data_for(target: TargetCard, prior: GeneratorCard | None = None) -> tuple[DatasetRef | None, str]:
    """The attacker's public data for attacks on `target` and where it came from: the card's
    `public_data`, else the target dataset's own `public` split, else the training data of the run's
    (or the dataset's default) prior — public by construction. (None, reason) when there is none."""
    if target.public_data is not None:
        ref = target.public_data
        return dataclasses.replace(ref, split=ref.split or "public"), "card"
    ref = target.dataset
    if "public" in (DATASETS.meta(ref.name).get("splits") or ()):
        return DatasetRef(ref.name, "public", ref.root, dict(ref.params)), "target-dataset"
    if prior is None:
        try:
            prior = get_card("generator", default_prior(target))
        except MIBenchError:
            prior = None
    if prior is not None and prior.dataset is not None:
        p = prior.dataset
        return DatasetRef(p.name, p.split or "public", p.root, dict(p.params)), f"prior {prior.name}"
    return None, f"dataset '{ref.name}' has no public split and no prior card names this dataset in `default_for`"


def second_evaluator_for(target: TargetCard, evaluator: TargetCard) -> TargetCard | None:
    """Another evaluation model of the target's data: the first card by name with `role: evaluator`,
    the same dataset (kind, root, params) and class count as the target, other than its evaluator.
    None when there is none (the agreement metric then says how to add one)."""
    ref = target.dataset
    for card in sorted(list_cards("target"), key=lambda c: c.name):
        if (card.role == "evaluator" and card.name != evaluator.name and card.num_classes == target.num_classes
                and card.dataset.name == ref.name and card.dataset.params == ref.params
                and card.dataset.resolved_root() == ref.resolved_root()):
            return card
    return None


def card_content(card: Any) -> dict[str, Any]:
    """A card's fields without where its file happens to be: run ids, config.json and entries are
    the same in every checkout (a run folder resumes, and a baseline matches, from any of them)."""
    return {k: v for k, v in to_dict(card).items() if k != "path"}


@dataclass
class ResolvedRun:
    """Cards and attack resolved from a RunSpec (no models loaded yet)."""

    spec: RunSpec
    target: TargetCard
    evaluator: TargetCard
    prior: GeneratorCard | None
    attack: Attack
    preset: str
    classes: list[int]
    # The attacker's public data (attacks with `needs_public_data`) and where it came from.
    public_data: DatasetRef | None = None
    public_source: str | None = None
    preset_source: str = ""  # why this preset (printed when the run starts)
    # A second, independent evaluation model (`second_evaluator_for`); a judge, not part of the
    # attack, so it stays out of the config and the run id (the entry records it).
    evaluator2: TargetCard | None = None

    def group_size(self) -> int:
        """Classes attacked together in one batch: the spec's choice, else the attack's."""
        return self.spec.classes_per_group or self.attack.classes_per_group()

    def public_id(self) -> dict[str, Any] | None:
        """What the config records about the public data: nothing when it is the target dataset's
        own public split (as every run recorded before the field existed), else the reference."""
        if self.public_data is None or self.public_source == "target-dataset":
            return None
        return {"source": self.public_source, "dataset": to_dict(self.public_data)}

    def config(self) -> dict[str, Any]:
        """The fully resolved configuration (what config.json and the entry record)."""
        dcard, dparams = resolve_defense(self.target)
        return {
            "spec": to_dict(self.spec),
            "target": {"name": self.target.name, "card_hash": card_hash(self.target), "card": card_content(self.target),
                       "defense": {"card": dcard.name, "kind": dcard.kind, "params": dparams}},
            "evaluator": {"name": self.evaluator.name, "card_hash": card_hash(self.evaluator)},
            "prior": None if self.prior is None else {"name": self.prior.name, "card_hash": card_hash(self.prior),
                                                      "card": card_content(self.prior)},
            "attack": {"name": self.attack.name, "preset": self.preset, "access": self.attack.access_level,
                       "config": self.attack.describe()},
            "classes": self.classes, "seed": self.spec.seed,
            **({"public_data": self.public_id()} if self.public_id() is not None else {}),
        }

    def run_id(self) -> str:
        """A readable, content-derived id: the same configuration gives the same id."""
        h = card_hash(self.config())[:8]
        prior = self.prior.name if self.prior else "none"
        return f"{self.target.name}__{self.attack.name}__{prior}__seed{self.spec.seed}__{h}"


def resolve(spec: RunSpec) -> ResolvedRun:
    """Check names and build the attack config before anything expensive happens."""
    target = get_card("target", spec.target)
    if target.role != "target":
        raise MIBenchError(f"'{target.name}' is an evaluation model, not a target", path=target.path, field="role")
    if not target.evaluator:
        raise MIBenchError(f"target '{target.name}' names no evaluation model", path=target.path,
                           field="evaluator", fix="add `evaluator: <card name>` (see `mibench list targets`)")
    evaluator = get_card("target", target.evaluator)
    if spec.protocol is not None:
        from mibench.run.protocol import get_protocol

        if spec.classes is not None:
            raise MIBenchError("both a protocol and a class list were given", field="--protocol",
                               fix="pass either --protocol or --classes")
        spec = dataclasses.replace(spec, classes=get_protocol(spec.protocol).classes(target.num_classes))
    for m in spec.extra_metrics:
        METRICS.get(m)  # an unknown metric fails here, with a suggestion
    attack_cls = attack_class(spec.attack)
    if spec.query_budget is not None:
        check_query_budget(attack_cls, spec.query_budget)
    prior = None
    if attack_cls.needs_prior:
        prior = get_card("generator", spec.prior or default_prior(target, attack_cls.prior_kinds))
        check_prior_kind(attack_cls, prior)
    preset, preset_source = (spec.preset, "--preset") if spec.preset else preset_for(attack_cls, target, prior)
    # Settings the attack takes from the prior card (e.g. truncation): preset < card < --set.
    defaults = {f: getattr(prior, f) for f in attack_cls.prior_fields} if prior is not None else {}
    attack = attack_cls.from_preset(preset, spec.overrides, defaults)
    classes = spec.classes if spec.classes is not None else list(range(target.num_classes))
    bad = [c for c in classes if not 0 <= c < target.num_classes]
    if bad:
        raise MIBenchError(f"class ids {bad[:5]} are out of range: target '{target.name}' has classes "
                           f"0-{target.num_classes - 1}", field="--classes", fix=f"use ids in 0-{target.num_classes - 1}")
    if not classes:
        raise MIBenchError("no classes to attack", field="--classes")
    public, source = None, None
    if attack_cls.needs_public_data:
        public, source = public_data_for(target, prior)
        if public is None:
            raise MIBenchError(f"attack '{attack_cls.name}' trains on the attacker's public images, but {source}",
                               path=target.path, field="public_data",
                               fix="add to the target card e.g. `public_data: {name: image-folder-unlabelled, "
                                   "root: /path/to/public/images, params: {resolution: 32}}`")
    return ResolvedRun(spec, target, evaluator, prior, attack, preset, classes, public, source, preset_source,
                       second_evaluator_for(target, evaluator))
