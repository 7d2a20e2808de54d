"""Target classifiers and evaluation models of the zoo: trained from a card's recipe into the
artifact cache, or loaded from the user's weights file (the research setting, sha256-checked)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from mibench.cards import TargetCard, card_hash, get_card, model_card, resolve_defense
from mibench.errors import CheckpointError, MIBenchError
from mibench.ops.cache import Artifact, ArtifactCache, cache_dir, code_version
from mibench.ops.fileio import atomic_path, atomic_write_json, sha256_file

log = logging.getLogger(__name__)

# The modules whose code produces a trained target (their import closure is part of its key).
TARGET_CODE = ("mibench.classifiers.train", "mibench.classifiers.architectures", "mibench.defenses",
               "mibench.data")
TARGETS = ArtifactCache("zoo/targets", shippable=True)
PRETRAIN = ArtifactCache("zoo/pretrain")


def dataset(ref, split: str):
    """Open a card's dataset reference at `split`."""
    from mibench.data import load_dataset

    return load_dataset(ref.name, split, ref.resolved_root(), **ref.params)


def build_defense_for(card: TargetCard):
    """The card's defense object (resolved parameters, errors naming the defense card)."""
    from mibench.defenses import build_defense

    dcard, params = resolve_defense(card)
    return build_defense(dcard.kind, params, path=dcard.path)


def target_artifact(card: TargetCard, local: bool = False) -> Artifact:
    """The trained target: card + resolved defense (+ the training code, for a local build). The
    shipped copy when one exists for this card hash (see `mibench.ops.cache`), unless `local`."""
    dcard, params = resolve_defense(card)
    return TARGETS.artifact(card.name, {"card": card_hash(model_card(card)), "defense_kind": dcard.kind,
                                        "defense_params": params}, TARGET_CODE, local=local)


def target_cache_path(card: TargetCard) -> Path:
    """Checkpoint stem of a trained target (`.safetensors` + `.json` are added)."""
    return target_artifact(card).stem


def artifact_source(art: Artifact) -> str:
    """Where an artifact's weights come from, location-free for shipped ones ('shipped:<area>/<file>')."""
    if art.shipped:
        from mibench.ops import cache

        return f"shipped:{art.stem.relative_to(cache.SHIPPED)}"
    return str(art.stem)


def weights_provenance(art: Artifact) -> dict[str, Any]:
    """What an entry records about the weights it attacked: shipped or a local build, their sha256 and
    the code version that trained them."""
    record = art.record()
    return {"origin": "shipped" if art.shipped else "local build",
            "sha256": record.get("files", {}).get(".safetensors"), "trained_by": record.get("code_version")}


def is_external(card) -> bool:
    """True when the card names a user-provided weights file (the research setting)."""
    return card.weights is not None and bool(card.weights.path)


def target_status(card: TargetCard) -> str:
    """'shipped', 'built', 'not built', 'weights found' or 'missing weights: <path>' for `mibench list`."""
    art = target_artifact(card) if card.train is not None else None
    built = art is not None and art.exists()
    if is_external(card):
        p = card.weights.resolved_path()
        if p.is_file():
            return "weights found"
        return "built (trained locally)" if built else f"missing weights: {p}"
    if built:
        return "shipped" if art.shipped else "built"
    return "not built"


def _pretrained_state(card: TargetCard, params: dict[str, Any], ctx) -> None:
    """Fill the defense context with a cached public pre-training (or the hook that caches one)."""
    from safetensors.torch import load_file, save_file

    art = PRETRAIN.artifact(card.architecture, {
        "arch": card.architecture, "arch_params": card.arch_params, "input_size": card.input_size,
        "dataset": dataclasses.asdict(card.dataset), "train": dataclasses.asdict(card.train),
        "pretrain_epochs": params.get("pretrain_epochs")}, TARGET_CODE)
    if art.exists():
        art.meta()  # verifies the sha256
        ctx.pretrained_state = load_file(str(art.file(".safetensors")))
        return
    ctx.public_train = dataset(card.dataset, "public")

    def on_pretrained(state, info):
        with atomic_path(art.file(".safetensors")) as tmp:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        art.commit([".safetensors"], dict(info))

    ctx.on_pretrained = on_pretrained


def build_target(card: TargetCard, device: str | torch.device = "cpu", progress: bool = True,
                 force: bool = False) -> Path:
    """Train the target/evaluator `card` describes into the cache; returns the checkpoint stem."""
    if card.train is None:
        raise MIBenchError(f"card '{card.name}' has no training recipe; it loads weights from "
                           f"{card.weights.path if card.weights else '?'}", path=card.path, field="train")
    art = target_artifact(card)
    with torch.enable_grad():  # a caller under no_grad may trigger the build
        TARGETS.get_or_build(art, lambda a: train_target_files(card, a, device, progress), force=force)
    return art.stem


def train_target_files(card: TargetCard, art: Artifact, device, progress: bool) -> tuple[list[str], dict[str, Any]]:
    """Train the card's model and write its checkpoint at `art`'s paths; returns (file suffixes, meta)."""
    from mibench.classifiers.architectures import build_classifier
    from mibench.classifiers.checkpoint import save_classifier
    from mibench.classifiers.train import train_classifier
    from mibench.defenses.base import DefenseContext
    from mibench.seeding import derive_seed

    t0 = time.time()
    dcard, params = resolve_defense(card)
    defense = build_defense_for(card)
    train_ds, test_ds = dataset(card.dataset, "private-train"), dataset(card.dataset, "private-test")
    if train_ds.num_classes != card.num_classes:
        raise MIBenchError(f"dataset '{card.dataset.name}' has {train_ds.num_classes} classes but the card "
                           f"says {card.num_classes}", path=card.path, field="num_classes",
                           fix=f"set num_classes: {train_ds.num_classes}")
    model = build_classifier(card.architecture, card.num_classes, card.input_size, card.arch_params,
                             seed=derive_seed(card.train.seed, card.name, "init"))
    ctx = DefenseContext(device=device, seed=card.train.seed, recipe=card.train, progress=progress)
    if defense.needs_public_pretraining:
        _pretrained_state(card, params, ctx)
    model = defense.prepare(model, ctx)
    result = train_classifier(model, train_ds, test_ds, card.train, defense=defense, device=device,
                              progress=progress, desc=card.name)
    save_classifier(result.model, art.stem, {
        "class_names": train_ds.class_names, "card": dataclasses.asdict(card), "card_hash": art.key,
        "code_version": code_version(*TARGET_CODE), "natural_accuracy": result.natural_accuracy,
        "defense": {"card": dcard.name, **defense.describe(), "info": defense.info},
        "train": result.summary(), "build_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__, "threads": torch.get_num_threads()})
    log.info("built %s: natural accuracy %.1f%% in %.0fs", card.name, 100 * result.natural_accuracy,
             time.time() - t0)
    return [".safetensors", ".json"], {"natural_accuracy": result.natural_accuracy,
                                       "build_seconds": round(time.time() - t0, 1)}


def load_target(card: TargetCard | str, device: str | torch.device = "cpu", build: bool = True,
                progress: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(classifier in eval mode, info) for a target/evaluator card; trains it first when allowed."""
    from mibench.classifiers.checkpoint import load_classifier, load_external_classifier

    if isinstance(card, str):
        card = get_card("target", card)
    art = target_artifact(card)
    if is_external(card) and (card.weights.resolved_path().is_file() or card.train is None or not art.exists()):
        model = load_external_classifier(card, defense=build_defense_for(card), device=device)
        dcard, params = resolve_defense(card)
        acc, source = external_accuracy(card, model, device)
        return model, {"natural_accuracy": acc, "source": str(card.weights.resolved_path()),
                       "natural_accuracy_source": source,
                       "defense": {"card": dcard.name, "kind": dcard.kind, "params": params}}
    if not art.exists():
        if not build:
            raise CheckpointError(f"target '{card.name}' is not built", path=art.stem,
                                  fix=f"run `mibench zoo build {card.name}`")
        build_target(card, device=device, progress=progress)
    art.meta()  # the cache record's sha256 of every file
    model, meta = load_classifier(art.stem, expected_arch=card.architecture, expected_num_classes=card.num_classes,
                                  device=device)
    return model, {"natural_accuracy": meta["natural_accuracy"], "source": artifact_source(art),
                   "weights": weights_provenance(art),
                   "natural_accuracy_source": "measured", "defense": meta.get("defense", {}),
                   "train": {k: v for k, v in meta.get("train", {}).items() if k != "history"},
                   "class_names": meta.get("class_names")}


def external_accuracy(card: TargetCard, model: torch.nn.Module,
                      device: str | torch.device) -> tuple[float | None, str]:
    """Natural accuracy of user-provided weights: measured on the private-test split when the dataset
    is on disk (cached by weights sha256), else the card's expected value. Returns (accuracy, source)."""
    from mibench.classifiers.train import evaluate_accuracy

    weights = card.weights.resolved_path()
    root = card.dataset.resolved_root()
    if root is None or not root.exists():
        return card.natural_accuracy, "card"
    record = cache_dir() / "zoo" / "accuracy" / f"{card.name}-{sha256_file(weights)[:16]}.json"
    if record.is_file():
        acc = json.loads(record.read_text())["natural_accuracy"]
    else:
        acc = evaluate_accuracy(model, dataset(card.dataset, "private-test"), device)
        atomic_write_json(record, {"natural_accuracy": acc, "weights": str(weights)})
    check_natural_accuracy(card, acc)
    return acc, "measured"


# A target this far below its card's accuracy is not the model the card describes.
REFUSE_BELOW = 0.10


def check_natural_accuracy(card: TargetCard, measured: float) -> None:
    """Refuse weights whose measured accuracy is far below the card's (wrong file, wrong input
    normalisation, wrong split); warn on a smaller difference."""
    expected = card.natural_accuracy
    if expected is None:
        return
    if measured < expected - REFUSE_BELOW:
        raise MIBenchError(f"measured natural accuracy {100 * measured:.1f}% is far below the card's "
                           f"{100 * expected:.1f}%: these weights do not behave like the model the card describes",
                           path=card.path, field="natural_accuracy",
                           fix="check the weights file, the input normalisation (arch_params mean/std: PPA's "
                               "checkpoints use 0.5/0.5) and the dataset split")
    if abs(measured - expected) > 0.02:
        log.warning("%s: measured natural accuracy %.1f%% differs from the card's %.1f%% — are these the "
                    "right weights / dataset split?", card.name, 100 * measured, 100 * expected)
