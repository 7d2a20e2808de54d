"""The model zoo: builds, caches and loads what the cards describe — target classifiers, evaluation
models and GAN priors.

Cards with a training recipe (the embedded default) are trained locally and cached under
`cache_dir()/zoo/` keyed by the card's hash and the code version of the modules that shape them.
Cards with a weights file (the research setting) load the user's file, sha256-checked. Cached files
are verified against the sha256 recorded when they were written before every use.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import torch

from mibench.cache import cache_dir, code_version
from mibench.cards import GeneratorCard, TargetCard, card_hash, get_card, list_cards, resolve_defense
from mibench.errors import CheckpointError, MIBenchError
from mibench.fileio import atomic_write_json, sha256_file, verify_sha256

log = logging.getLogger(__name__)

TARGET_CODE = ("classifiers", "defenses", "data")
GENERATOR_CODE = ("generators", "data")


# ----------------------------------------------------------------------------- cache locations

def target_key(card: TargetCard) -> str:
    """Cache key of a trained target: card + resolved defense + code version."""
    dcard, params = resolve_defense(card)
    return card_hash(card, {"defense_kind": dcard.kind, "defense_params": params}, code_version(*TARGET_CODE))


def target_cache_path(card: TargetCard) -> Path:
    """Checkpoint stem of a trained target (`.safetensors` + `.json` are added)."""
    return cache_dir() / "zoo" / "targets" / f"{card.name}-{target_key(card)}"


def generator_cache_path(card: GeneratorCard) -> Path:
    """Weights file of a trained prior."""
    key = card_hash(card, code_version(*GENERATOR_CODE))
    return cache_dir() / "zoo" / "generators" / f"{card.name}-{key}.safetensors"


def _record_path(weights: Path) -> Path:
    return weights.with_suffix(".zoo.json")


# ----------------------------------------------------------------------------- status

def is_external(card: TargetCard | GeneratorCard) -> bool:
    """True when the card names a user-provided weights file (the research setting)."""
    return card.weights is not None and bool(card.weights.path)


def target_status(card: TargetCard) -> str:
    """'built', 'not built', 'weights found' or 'missing weights: <path>' for `mibench list`."""
    built = target_cache_path(card).with_suffix(".json").is_file() if card.train is not None else False
    if is_external(card):
        p = card.weights.resolved_path()
        if p.is_file():
            return "weights found"
        return "built (trained locally)" if built else f"missing weights: {p}"
    return "built" if built else "not built"


def generator_status(card: GeneratorCard) -> str:
    """Like `target_status`, for priors."""
    if card.weights is not None and card.weights.path:
        p = card.weights.resolved_path()
        return "weights found" if p.is_file() else f"missing weights: {p}"
    return "built" if _record_path(generator_cache_path(card)).is_file() else "not built"


# ----------------------------------------------------------------------------- targets

def _dataset(card_ref, split: str):
    from mibench.data import load_dataset

    return load_dataset(card_ref.name, split, card_ref.resolved_root(), **card_ref.params)


def _pretrain_path(card: TargetCard, params: dict[str, Any]) -> Path:
    key = card_hash({"arch": card.architecture, "arch_params": card.arch_params, "input_size": card.input_size,
                     "dataset": dataclasses.asdict(card.dataset), "train": dataclasses.asdict(card.train),
                     "pretrain_epochs": params.get("pretrain_epochs")}, code_version(*TARGET_CODE))
    return cache_dir() / "zoo" / "pretrain" / f"{card.architecture}-{key}.safetensors"


def build_target(card: TargetCard, device: str | torch.device = "cpu", progress: bool = True) -> Path:
    """Train the target/evaluator `card` describes and cache it; returns the checkpoint stem."""
    from safetensors.torch import load_file, save_file

    from mibench.classifiers.architectures import build_classifier
    from mibench.classifiers.checkpoint import save_classifier
    from mibench.classifiers.train import train_classifier
    from mibench.defenses import build_defense
    from mibench.defenses.base import DefenseContext
    from mibench.fileio import atomic_path
    from mibench.seeding import derive_seed

    if card.train is None:
        raise MIBenchError(f"card '{card.name}' has no training recipe; it loads weights from "
                           f"{card.weights.path if card.weights else '?'}", path=card.path, field="train")
    t0 = time.time()
    dcard, params = resolve_defense(card)
    defense = build_defense(dcard.kind, params, path=dcard.path)
    train_ds, test_ds = _dataset(card.dataset, "private-train"), _dataset(card.dataset, "private-test")
    if train_ds.num_classes != card.num_classes:
        raise MIBenchError(f"dataset '{card.dataset.name}' has {train_ds.num_classes} classes but the card "
                           f"says {card.num_classes}", path=card.path, field="num_classes",
                           fix=f"set num_classes: {train_ds.num_classes}")
    model = build_classifier(card.architecture, card.num_classes, card.input_size, card.arch_params,
                             seed=derive_seed(card.train.seed, card.name, "init"))
    ctx = DefenseContext(device=device, seed=card.train.seed, recipe=card.train, progress=progress)
    if getattr(defense, "needs_prepare", False) and dcard.kind == "tl_dmi":
        pre = _pretrain_path(card, params)
        if pre.is_file():
            ctx.pretrained_state = load_file(str(pre))
        else:
            ctx.public_train = _dataset(card.dataset, "public")

            def on_pretrained(state, info, pre=pre):
                with atomic_path(pre) as tmp:
                    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))

            ctx.on_pretrained = on_pretrained
    model = defense.prepare(model, ctx)
    result = train_classifier(model, train_ds, test_ds, card.train, defense=defense, device=device,
                              progress=progress, desc=card.name)
    path = target_cache_path(card)
    save_classifier(result.model, path, {
        "class_names": train_ds.class_names, "card": dataclasses.asdict(card), "card_hash": target_key(card),
        "code_version": code_version(*TARGET_CODE), "natural_accuracy": result.natural_accuracy,
        "defense": {"card": dcard.name, **defense.describe(), "info": defense.info},
        "train": result.summary(), "build_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__, "threads": torch.get_num_threads()})
    log.info("built %s: natural accuracy %.1f%% in %.0fs", card.name, 100 * result.natural_accuracy,
             time.time() - t0)
    return path


def load_target(card: TargetCard | str, device: str | torch.device = "cpu", build: bool = True,
                progress: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(classifier in eval mode, info) for a target/evaluator card; trains it first when allowed."""
    from mibench.classifiers.checkpoint import load_classifier, load_external_classifier

    if isinstance(card, str):
        card = get_card("target", card)
    path = target_cache_path(card)
    if is_external(card) and (card.weights.resolved_path().is_file() or card.train is None
                              or not path.with_suffix(".json").is_file()):
        model = load_external_classifier(card, device=device)
        dcard, params = resolve_defense(card)
        acc, source = external_accuracy(card, model, device)
        return model, {"natural_accuracy": acc, "source": str(card.weights.resolved_path()),
                       "natural_accuracy_source": source,
                       "defense": {"card": dcard.name, "kind": dcard.kind, "params": params}}
    if not path.with_suffix(".json").is_file():
        if not build:
            raise CheckpointError(f"target '{card.name}' is not built", path=path,
                                  fix=f"run `mibench zoo build {card.name}`")
        build_target(card, device=device, progress=progress)
    model, meta = load_classifier(path, expected_arch=card.architecture, expected_num_classes=card.num_classes,
                                  device=device)
    return model, {"natural_accuracy": meta["natural_accuracy"], "source": str(path),
                   "natural_accuracy_source": "measured", "defense": meta.get("defense", {}),
                   "train": {k: v for k, v in meta.get("train", {}).items() if k != "history"}}


def external_accuracy(card: TargetCard, model: torch.nn.Module,
                      device: str | torch.device) -> tuple[float | None, str]:
    """Natural accuracy of user-provided weights: measured on the private-test split when the dataset
    is on disk (cached by weights sha256), else the card's expected value. Returns (accuracy, source)."""
    import json

    from mibench.classifiers.train import evaluate_accuracy

    weights = card.weights.resolved_path()
    root = card.dataset.resolved_root()
    if root is None or not root.exists():
        return card.natural_accuracy, "card"
    record = cache_dir() / "zoo" / "accuracy" / f"{card.name}-{sha256_file(weights)[:16]}.json"
    if record.is_file():
        return json.loads(record.read_text())["natural_accuracy"], "measured"
    acc = evaluate_accuracy(model, _dataset(card.dataset, "private-test"), device)
    atomic_write_json(record, {"natural_accuracy": acc, "weights": str(weights)})
    if card.natural_accuracy is not None and abs(acc - card.natural_accuracy) > 0.02:
        log.warning("%s: measured natural accuracy %.1f%% differs from the card's %.1f%% — are these the "
                    "right weights / dataset split?", card.name, 100 * acc, 100 * card.natural_accuracy)
    return acc, "measured"


# ----------------------------------------------------------------------------- generators

def _stylegan2_recipe(card: GeneratorCard):
    from mibench.errors import CardError
    from mibench.generators.train import StyleGAN2TrainRecipe
    from mibench.typed import from_dict

    train = dict(card.train or {})
    seed = train.pop("seed", 0)
    return from_dict(StyleGAN2TrainRecipe, train, path=card.path, prefix="train", error=CardError), seed


def build_generator(card: GeneratorCard, device: str | torch.device = "cpu", progress: bool = True,
                    callback=None, callback_every: int | None = None) -> Path:
    """Train the prior `card` describes on its dataset split and cache it; returns the weights path.
    `callback(step, G_ema)` is called every `callback_every` steps (for quality curves)."""
    from mibench.generators.io import save_generator
    from mibench.generators.train import train_stylegan2

    if card.kind != "stylegan2":
        raise MIBenchError(f"generator kind '{card.kind}' is built by its attack, not the zoo", path=card.path,
                           field="kind")
    if card.train is None:
        raise MIBenchError(f"card '{card.name}' has no training recipe", path=card.path, field="train")
    recipe, seed = _stylegan2_recipe(card)
    if callback_every is not None:
        recipe.callback_every = callback_every
    t0 = time.time()
    ds = _dataset(card.dataset, card.dataset.split or "public")
    images, _ = ds.load_tensors(progress=progress)
    if images.shape[-1] != card.resolution:
        raise MIBenchError(f"dataset images are {images.shape[-1]} px but the card says {card.resolution}",
                           path=card.path, field="resolution")
    result = train_stylegan2(images, recipe, seed=seed, device=device, progress=progress,
                             generator_params=card.params, callback=callback)
    path = generator_cache_path(card)
    save_generator(result.G_ema, path)
    atomic_write_json(_record_path(path), {
        "card": dataclasses.asdict(card), "weights_sha256": sha256_file(path),
        "code_version": code_version(*GENERATOR_CODE), "steps": result.steps, "seconds": round(result.seconds, 1),
        "stopped_by": result.stopped_by, "log": result.log, "build_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__, "threads": torch.get_num_threads()})
    log.info("built prior %s in %.0fs (%d steps)", card.name, time.time() - t0, result.steps)
    return path


def load_prior(card: GeneratorCard | str, device: str | torch.device = "cpu", build: bool = True,
               progress: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(generator in eval mode without gradients, info) for a prior card; trains it when allowed."""
    from mibench.generators.io import load_generator

    if isinstance(card, str):
        card = get_card("generator", card)
    if card.weights is not None and card.weights.path:
        G = load_generator(card.weights.resolved_path(), sha256=card.weights.sha256,
                           expected_resolution=card.resolution, params=card.params)
        source = str(card.weights.resolved_path())
        info: dict[str, Any] = {"source": source}
    else:
        path = generator_cache_path(card)
        record = _record_path(path)
        if not record.is_file():
            if not build:
                raise CheckpointError(f"prior '{card.name}' is not built", path=path,
                                      fix=f"run `mibench zoo build {card.name}`")
            build_generator(card, device=device, progress=progress)
        import json

        meta = json.loads(record.read_text())
        verify_sha256(path, meta["weights_sha256"], what="cached prior (vs. its record)")
        G = load_generator(path, expected_resolution=card.resolution)
        info = {"source": str(path), "train_seconds": meta.get("seconds"), "steps": meta.get("steps")}
    G = G.to(device).eval().requires_grad_(False)
    return G, info


# ----------------------------------------------------------------------------- building many

def zoo_cards(names: list[str] | None = None) -> list[tuple[str, Any]]:
    """(kind, card) for the given names, or the default zoo: every buildable target and evaluator and
    the buildable default prior (`default_for`) of their datasets; other priors (the shifted-domain
    one, the 64 px one) are built by name or when a run needs them."""
    if names:
        out = []
        for n in names:
            try:
                out.append(("target", get_card("target", n)))
            except MIBenchError:
                out.append(("generator", get_card("generator", n)))
        return out
    items = [("target", c) for c in list_cards("target") if c.train is not None and not is_external(c)]
    in_use = {c.dataset.name for _, c in items}
    items += [("generator", c) for c in list_cards("generator")
              if c.train is not None and c.kind == "stylegan2" and not is_external(c)
              and in_use.intersection(c.default_for)]
    return items


def _is_built(kind: str, card: Any) -> bool:
    status = target_status(card) if kind == "target" else generator_status(card)
    return status in ("built", "weights found", "built (trained locally)")


def _build_worker(kind: str, card_path: str, device: str, threads: int) -> tuple[str, float]:
    """Process-pool entry: build one card with `threads` torch threads; returns (name, seconds)."""
    from mibench.cards import load_card

    torch.set_num_threads(threads)
    card = load_card(card_path, kind)
    t0 = time.time()
    (build_target if kind == "target" else build_generator)(card, device=device, progress=False)
    return card.name, time.time() - t0


def _estimated_cost(kind: str, card: Any) -> float:
    """Rough relative cost, to start the longest builds first."""
    if kind == "generator":
        return 1e9
    cost = card.train.epochs * (4.0 if card.role == "evaluator" else 1.0)
    return cost + (100.0 if card.defense.card.startswith("tl") else 0.0)


def build_zoo(names: list[str] | None = None, device: str = "cpu", jobs: int | None = None,
              force: bool = False, progress: bool = True) -> list[dict[str, Any]]:
    """Build every missing zoo entry (or `names`), `jobs` at a time; returns one row per card."""
    items = zoo_cards(names)
    todo = [(k, c) for k, c in items if force or not _is_built(k, c)]
    todo.sort(key=lambda kc: -_estimated_cost(*kc))
    if jobs is None:
        jobs = 1 if device.startswith("cuda") else max(1, min(len(todo), os.cpu_count() or 1))
    t0 = time.time()
    if todo:
        log.info("building %d zoo entries with %d parallel job(s): %s", len(todo), jobs,
                 ", ".join(c.name for _, c in todo))
    if jobs <= 1 or len(todo) <= 1:
        threads = torch.get_num_threads()
        if not device.startswith("cuda"):
            torch.set_num_threads(1)  # the same thread count as pool workers: identical weights either way
        try:
            for kind, card in todo:
                (build_target if kind == "target" else build_generator)(card, device=device, progress=progress)
        finally:
            torch.set_num_threads(threads)
    elif todo:
        # One torch thread per worker: on a small CPU, parallel single-threaded trainings beat one
        # multi-threaded training, and a fixed thread count keeps CPU results reproducible.
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_build_worker, k, c.path, device, 1): c.name for k, c in todo}
            from tqdm import tqdm

            for fut in tqdm(cf.as_completed(futures), total=len(futures), desc="zoo build", disable=not progress):
                name, secs = fut.result()
                log.info("finished %s in %.0fs (%.0fs since start)", name, secs, time.time() - t0)
    return zoo_table(items)


def zoo_table(items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Rows describing built zoo entries (natural accuracy, build time) for the CLI table."""
    import json

    from mibench.classifiers.checkpoint import read_meta

    rows = []
    for kind, card in items:
        if kind == "target":
            row = {"name": card.name, "role": card.role, "defense": card.defense.card, "status": target_status(card)}
            if row["status"] == "built":
                meta = read_meta(target_cache_path(card))
                row["natural_acc"] = f"{100 * meta['natural_accuracy']:.1f}%"
                row["train_s"] = meta.get("build_seconds")
        else:
            row = {"name": card.name, "role": "prior", "defense": "", "status": generator_status(card)}
            if row["status"] == "built":
                meta = json.loads(_record_path(generator_cache_path(card)).read_text())
                row["train_s"] = meta.get("build_seconds")
        rows.append(row)
    return rows
