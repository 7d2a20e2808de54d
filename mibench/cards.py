"""YAML cards — the registered *instances* (targets, generators, defenses) — as typed dataclasses.

A card names a registered kind plus its parameters. `load_card` validates a file into one of the
dataclasses below and raises one `CardError` naming the file and the field on any problem.
Cards are found in the `targets/`, `generators/` and `defenses/` folders of each card root:
`$MIBENCH_CARDS` (os.pathsep-separated), the current directory, this source checkout, then the cards
shipped inside the installed package (`mibench/_cards/`, copied there when the wheel is built).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mibench import __version__
from mibench.classifiers.recipe import Augment, TrainRecipe  # noqa: F401  (card field types)
from mibench.errors import CardError
from mibench.registry import ARCHITECTURES, DATASETS, DEFENSES, GENERATORS, suggest
from mibench.typed import added_field, from_dict, to_dict

CARD_FOLDERS = {"target": "targets", "generator": "generators", "defense": "defenses"}

# Folder variables cards may use, with their defaults when unset.
PATH_DEFAULTS = {"MIBENCH_DATA": "~/mibench-data", "MIBENCH_WEIGHTS": "~/mibench-weights"}


def expand_path(text: str) -> Path:
    """`~`, ${VAR} and the mibench folder variables ($MIBENCH_DATA, $MIBENCH_WEIGHTS) expanded."""
    for var, default in PATH_DEFAULTS.items():
        value = os.environ.get(var, default)
        text = text.replace("${" + var + "}", value).replace("$" + var, value)
    return Path(os.path.expanduser(os.path.expandvars(text)))


@dataclass
class DatasetRef:
    """Which registered dataset (and where on disk, for real datasets)."""

    name: str
    split: str | None = None  # generators: which split trains the prior (targets use private-*)
    root: str | None = None  # folder of a real dataset; `~` and ${ENV} are expanded
    params: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"name: unknown dataset '{self.name}'{suggest(self.name, DATASETS.names())}")

    def resolved_root(self) -> Path | None:
        """The dataset folder with `~` and environment variables expanded."""
        return expand_path(self.root) if self.root else None


@dataclass
class Weights:
    """A weights file the user provides (never downloaded), with its expected sha256."""

    path: str | None = None
    sha256: str | None = None
    url: str | None = None  # where a user can obtain the file; informational only

    def validate(self) -> None:
        if self.sha256 is not None:
            s = self.sha256.lower()
            if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
                raise ValueError("sha256: must be 64 hexadecimal characters")

    def resolved_path(self) -> Path | None:
        """The weights path with `~` and environment variables expanded."""
        return expand_path(self.path) if self.path else None


@dataclass
class DefenseRef:
    """A target's defense: a defense card by name plus parameter overrides."""

    card: str = "none"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedDefense:
    """A target's defense after resolution: its card and the effective parameters
    (card defaults ← target overrides)."""

    card: DefenseCard
    params: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        """What configs and entries record about the defense."""
        return {"card": self.card.name, "kind": self.card.kind, "params": dict(self.params)}


@dataclass
class TargetCard:
    """A target classifier or an evaluation model (`role: evaluator`)."""

    name: str
    architecture: str
    dataset: DatasetRef
    num_classes: int
    input_size: int
    role: Literal["target", "evaluator"] = "target"
    description: str = ""
    arch_params: dict[str, Any] = field(default_factory=dict)
    defense: DefenseRef = field(default_factory=DefenseRef)
    evaluator: str | None = None  # evaluator card used to score attacks on this target
    train: TrainRecipe | None = None
    weights: Weights | None = None
    natural_accuracy: float | None = None  # expected test accuracy in [0, 1] (recorded / reported)
    reference: str = ""
    # Attack preset per attack (or one name for all) instead of the one the dataset kind implies.
    attack_preset: str | dict[str, str] | None = None
    path: str = ""  # set by the loader
    # The attacker's public images for attacks that train on auxiliary data (LOKT's T-ACGAN, ...):
    # default the target dataset's `public` split, else the default prior's training data.
    # Attacker-side only: it is not part of the trained model's identity (`model_card`).
    public_data: DatasetRef | None = added_field(None)
    # The prior card attacks on this target use by default (else the one whose `default_for` names
    # the dataset kind); attacker-side like `public_data`.
    prior: str | None = added_field(None)
    # The defense card and effective parameters, resolved once (at load, or on first use).
    resolved: ResolvedDefense | None = field(default=None, init=False, repr=False, compare=False,
                                             metadata={"derived": True})

    def validate(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture: unknown architecture '{self.architecture}'"
                             f"{suggest(self.architecture, ARCHITECTURES.names())}")
        if self.num_classes < 2:
            raise ValueError("num_classes: must be at least 2")
        if self.input_size < 8:
            raise ValueError("input_size: must be at least 8 pixels")
        if self.train is None and (self.weights is None or self.weights.path is None):
            raise ValueError("train: give a training recipe (`train:`) or a weights file (`weights.path`)")
        if self.natural_accuracy is not None and not 0 <= self.natural_accuracy <= 1:
            raise ValueError("natural_accuracy: must be a fraction in [0, 1]")


@dataclass
class GeneratorCard:
    """A GAN image prior: an architecture kind, its constructor arguments, and how to get weights."""

    name: str
    kind: str
    resolution: int
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    dataset: DatasetRef | None = None  # training data (embedded priors)
    train: dict[str, Any] | None = None  # kind-specific training recipe
    weights: Weights | None = None
    truncation_psi: float = 0.5
    truncation_cutoff: int | None = 8
    domain: str = "faces"
    default_for: list[str] = field(default_factory=list)  # datasets whose attacks use this prior by default
    reference: str = ""
    path: str = ""
    # Transfer learning: training starts from this prior card's trained generator instead of a random
    # init (StyleGAN2-ADA trained its MetFaces prior from FFHQ's this way); the source's tensors must
    # fit by name and shape, and tensors it lacks (a higher resolution's extra block) start random.
    init_from: str | None = added_field(None)
    # Precision the trained generator is stored in. float16 halves a shipped prior's size; the
    # weights are rounded once after training (relative error ≤ 2⁻¹¹), the rounded generator is what
    # the build measures and every user loads, and it runs in float32.
    storage_dtype: Literal["float32", "float16"] = added_field("float32")
    # What the stored file holds: every tensor (`full`), or, for a prior trained from another
    # (`init_from`), only the tensors training changed (`delta`), loaded on top of the source's
    # weights: a frozen transfer (`train.freeze_g`) then stores its grown block alone.
    storage: Literal["full", "delta"] = added_field("full")

    def validate(self) -> None:
        if self.kind not in GENERATORS:
            raise ValueError(f"kind: unknown generator kind '{self.kind}'{suggest(self.kind, GENERATORS.names())}")
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise ValueError("resolution: must be a power of two ≥ 8")
        if self.train is None and (self.weights is None or self.weights.path is None):
            raise ValueError("train: give a training recipe (`train:`) or a weights file (`weights.path`)")
        if self.train is not None and self.dataset is None:
            raise ValueError("dataset: a trained prior needs its training dataset")
        if self.init_from is not None and self.train is None:
            raise ValueError("init_from: only a prior with a training recipe (`train:`) starts from another")
        if self.storage == "delta" and self.init_from is None:
            raise ValueError("storage: 'delta' stores the changes from the `init_from` prior; name one, or use 'full'")
        if self.storage == "delta" and self.storage_dtype != "float32":
            raise ValueError("storage: a 'delta' is stored in float32 (rounding would change the source's "
                             "tensors too); drop storage_dtype or use storage 'full'")


@dataclass
class DefenseCard:
    """A defense recipe: which implementation, its hyper-parameters and the paper it follows."""

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    reference: str = ""
    path: str = ""
    # The natural-accuracy drop (a fraction, 0.05 = 5 points) the defense is meant to cost against
    # the undefended target of the same recipe; `mibench zoo build` warns past it.
    utility_cost: float | None = added_field(None)

    def validate(self) -> None:
        if self.utility_cost is not None and not 0 <= self.utility_cost <= 1:
            raise ValueError("utility_cost: must be a fraction in [0, 1] (0.05 = 5 points)")
        if self.kind not in DEFENSES:
            raise ValueError(f"kind: unknown defense kind '{self.kind}'{suggest(self.kind, DEFENSES.names())}")


CARD_TYPES = {"target": TargetCard, "generator": GeneratorCard, "defense": DefenseCard}


PACKAGE_CARDS = Path(__file__).resolve().parent / "_cards"  # the cards a wheel ships (setup.py copies them)


def card_roots() -> list[Path]:
    """Folders searched for cards, in priority order: $MIBENCH_CARDS, the current directory, this
    source checkout (when mibench runs from one), the cards shipped inside the installed package."""
    roots = []
    env = os.environ.get("MIBENCH_CARDS")
    if env:
        roots += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    roots.append(Path.cwd())
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file():
        roots.append(checkout)
    if PACKAGE_CARDS.is_dir():
        roots.append(PACKAGE_CARDS)
    seen, out = set(), []
    for r in roots:
        key = r.resolve()
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in `over` replaces `base`."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CardError("card file not found", path=path) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CardError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", path=path,
                        fix="check indentation and quoting") from None
    if not isinstance(data, dict):
        raise CardError("a card must be a YAML mapping of fields", path=path)
    return dict(data)


def load_card(path: str | Path, kind: str) -> Any:
    """Parse and validate one card file of `kind` ('target', 'generator' or 'defense').

    A card may start from another card of the same kind with `extends: <name>`: its fields are
    deep-merged under this card's (mappings merge, other values replace)."""
    path = Path(path)
    if kind not in CARD_TYPES:
        raise CardError(f"unknown card kind '{kind}'", path=path)
    data = _extend(_read_yaml(path), path, kind, ())
    data.setdefault("name", path.stem)
    if data["name"] != path.stem:
        raise CardError(f"name '{data['name']}' differs from the file name '{path.stem}'", path=path,
                        field="name", fix=f"rename the file to {data['name']}.yaml or change the name")
    if "path" in data:
        raise CardError("'path' is set by the loader", path=path, field="path", fix="remove it")
    card = from_dict(CARD_TYPES[kind], data, path=path)
    card.path = str(path)
    if kind == "target":
        resolve_defense(card)  # a bad defense reference fails here, when the card loads
    if kind == "generator" and card.init_from is not None:
        _check_init_from(card, path)
    return card


def _check_init_from(card: GeneratorCard, path: Path) -> None:
    """A prior's `init_from` names another prior card, and the chain of them has no loop."""
    files = card_files("generator")
    chain, name = [card.name], card.init_from
    while name is not None:
        if name in chain:
            raise CardError(f"priors start from each other in a loop ({' → '.join((*chain, name))})", path=path,
                            field="init_from")
        if name not in files:
            raise CardError(f"init_from names no generator card '{name}'{suggest(name, sorted(files))}",
                            path=path, field="init_from")
        chain.append(name)
        data = _extend(_read_yaml(files[name]), files[name], "generator", ())
        name = data.get("init_from")


def _extend(data: dict[str, Any], path: Path, kind: str, seen: tuple[str, ...]) -> dict[str, Any]:
    """Resolve `extends:` chains (the base's `name` is not inherited)."""
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str):
        raise CardError("must be the name of another card", path=path, field="extends")
    if base_name in seen or base_name == path.stem:
        raise CardError(f"cards extend each other in a loop ({' → '.join((*seen, path.stem, base_name))})",
                        path=path, field="extends")
    files = card_files(kind)
    if base_name not in files:
        raise CardError(f"extends unknown {kind} card '{base_name}'{suggest(base_name, sorted(files))}",
                        path=path, field="extends")
    base = _extend(_read_yaml(files[base_name]), files[base_name], kind, (*seen, path.stem))
    base.pop("name", None)
    return _merge(base, data)


def card_files(kind: str) -> dict[str, Path]:
    """name → file for every card of `kind`; earlier roots shadow later ones."""
    out: dict[str, Path] = {}
    for root in card_roots():
        folder = root / CARD_FOLDERS[kind]
        if folder.is_dir():
            for f in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
                out.setdefault(f.stem, f)
    return out


def list_cards(kind: str) -> list[Any]:
    """All cards of `kind`, validated (a bad card raises)."""
    return [load_card(p, kind) for _, p in sorted(card_files(kind).items())]


REPLICATE = "@"  # `<target card>@k`: the card trained with seed `train.seed + k` (a replicate)


def replicate_name(name: str, k: int) -> str:
    """The name of training-seed replicate k of target card `name` (`name@k`; `name` itself for k = 0)."""
    return f"{name}{REPLICATE}{k}" if k else name


def replicate_index(name: str) -> int:
    """k of a replicate name `<card>@k` (0 for a plain card name)."""
    base, sep, k = name.partition(REPLICATE)
    if not sep:
        return 0
    if not k.isdigit():
        raise CardError(f"'{name}': a replicate is named <card>@<k> with k a whole number", field="name",
                        fix=f"e.g. {base}@1")
    return int(k)


def replicate_card(card: TargetCard, k: int) -> TargetCard:
    """Replicate k of a target card: the same card trained with seed `train.seed + k`, named `<card>@k`
    (k = 0 is the card itself). Replicates measure how much a result owes to the training seed."""
    if k == 0:
        return card
    base = card.name.partition(REPLICATE)[0]
    if card.train is None:
        raise CardError(f"'{base}' loads a weights file; only cards with a training recipe have replicates",
                        path=card.path, field="train")
    new = dataclasses.replace(card, name=f"{base}{REPLICATE}{k}",
                              train=dataclasses.replace(card.train, seed=card.train.seed + k))
    return new


def get_card(kind: str, name: str) -> Any:
    """The card of `kind` called `name` (targets also `<name>@k`, a training-seed replicate), with a
    'did you mean' suggestion when unknown."""
    if kind == "target" and REPLICATE in name:
        base = name.partition(REPLICATE)[0]
        return replicate_card(get_card(kind, base), replicate_index(name))
    files = card_files(kind)
    if name not in files:
        from mibench.errors import RegistryError

        roots = ", ".join(str(r / CARD_FOLDERS[kind]) for r in card_roots())
        raise RegistryError(f"unknown {kind} card '{name}'{suggest(name, sorted(files))} "
                            f"(searched: {roots}; see `mibench list {CARD_FOLDERS[kind]}`)")
    return load_card(files[name], kind)


def resolve_defense(target: TargetCard) -> tuple[DefenseCard, dict[str, Any]]:
    """The target's defense card and its effective parameters (card defaults ← target overrides),
    resolved once per card object."""
    if target.resolved is None:
        card = get_card("defense", target.defense.card)
        params = dict(card.params)
        params.update(target.defense.params)
        target.resolved = ResolvedDefense(card, params)
    return target.resolved.card, dict(target.resolved.params)


def _canonical(obj: Any) -> str:
    data = to_dict(obj)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in ("path", "description", "reference")}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def card_hash(card: Any, *extra: Any) -> str:
    """A short stable hash of a card's content (plus `extra` objects) and the code version."""
    h = hashlib.sha256()
    h.update(__version__.encode())
    h.update(_canonical(card).encode())
    for e in extra:
        h.update(_canonical(e).encode())
    return h.hexdigest()[:16]


def model_card(card: TargetCard) -> TargetCard:
    """The card without its attacker-side fields: what keys the trained model (a changed
    `public_data` or `prior` must not retrain the target)."""
    if card.public_data is None and card.prior is None:
        return card
    return dataclasses.replace(card, public_data=None, prior=None)


def trained_card(card: GeneratorCard) -> GeneratorCard:
    """The prior card without its use-side field `default_for` (which datasets attack through it by
    default): what keys the trained prior, so that making a prior a dataset's default retrains nothing."""
    if not card.default_for:
        return card
    return dataclasses.replace(card, default_for=[])


def replace(card: Any, **changes: Any) -> Any:
    """A copy of `card` with fields changed (dataclasses.replace, re-validated)."""
    new = dataclasses.replace(card, **changes)
    if hasattr(new, "validate"):
        new.validate()
    return new
