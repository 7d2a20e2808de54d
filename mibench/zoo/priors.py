"""GAN priors of the zoo: trained by their generator kind (`mibench.generators.base.PriorKind`)
from a card's recipe into the artifact cache, or loaded from the user's checkpoint. Nothing here
knows a kind by name."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch

from mibench.cards import GeneratorCard, card_hash, get_card, trained_card
from mibench.errors import CheckpointError, MIBenchError
from mibench.ops.cache import Artifact, ArtifactCache, code_version
from mibench.ops.fileio import sha256_file
from mibench.registry import GENERATORS
from mibench.zoo.prior_delta import load_delta, save_delta
from mibench.zoo.prior_quality import prior_quality, report
from mibench.zoo.targets import artifact_source, dataset, weights_provenance

log = logging.getLogger(__name__)

PRIORS = ArtifactCache("zoo/generators", shippable=True)


def prior_code(card: GeneratorCard) -> tuple[str, ...]:
    """The modules whose code produces the card's trained prior: its kind's module and the data."""
    return (type(GENERATORS.get(card.kind)).__module__, "mibench.data")


def prior_artifact(card: GeneratorCard, local: bool = False) -> Artifact:
    """The trained prior (card content without `default_for` + the producing code, for a local build);
    the shipped copy when one exists for this card hash, unless `local`. A prior that starts from
    another (`init_from`) is keyed on that prior's artifact too, so a retrained source retrains it."""
    content: dict[str, Any] = {"card": card_hash(trained_card(card))}
    if card.init_from is not None:
        content["init_from"] = prior_artifact(get_card("generator", card.init_from)).key
    return PRIORS.artifact(card.name, content, prior_code(card), local=local)


def generator_cache_path(card: GeneratorCard) -> Path:
    """Weights file of a trained prior."""
    return prior_artifact(card).file(GENERATORS.get(card.kind).weight_suffix)


def is_trainable(card: GeneratorCard) -> bool:
    """True for cards the zoo trains (a recipe, no weights file, a kind the zoo trains)."""
    return (card.train is not None and not (card.weights is not None and card.weights.path)
            and GENERATORS.get(card.kind).trained_by_zoo)


def generator_status(card: GeneratorCard) -> str:
    """'built', 'not built', 'weights found' or 'missing weights: <path>' for `mibench list`."""
    if card.weights is not None and card.weights.path:
        p = card.weights.resolved_path()
        return "weights found" if p.is_file() else f"missing weights: {p}"
    art = prior_artifact(card)
    if not art.exists():
        return "not built"
    return "shipped" if art.shipped else "built"


def build_generator(card: GeneratorCard, device: str | torch.device = "cpu", progress: bool = True,
                    callback=None, callback_every: int | None = None, force: bool = False) -> Path:
    """Train the prior `card` describes on its dataset split into the cache; returns the weights path.
    `callback(step, G)` is called every `callback_every` steps (for quality curves)."""
    kind = GENERATORS.get(card.kind)
    if not kind.trained_by_zoo:
        raise MIBenchError(f"generator kind '{card.kind}' is built by its attack, not the zoo", path=card.path,
                           field="kind")
    if card.train is None:
        raise MIBenchError(f"card '{card.name}' has no training recipe", path=card.path, field="train")
    art = prior_artifact(card)

    def build(a: Artifact):
        t0 = time.time()
        images, _ = dataset(card.dataset, card.dataset.split or "public").load_tensors(progress=progress)
        if images.shape[-1] != card.resolution:
            raise MIBenchError(f"dataset images are {images.shape[-1]} px but the card says {card.resolution}",
                               path=card.path, field="resolution")
        # An interrupted build resumes here (the name is outside the artifact's own files).
        resume = a.stem.with_name(a.stem.name + "-resume.pt")
        if force:
            resume.unlink(missing_ok=True)
        curve: list[dict[str, Any]] = []
        every, on_step = callback_every, callback
        if callback is None:  # the quality over training, measured at 4 points (the last is the final report)
            steps = int((card.train or {}).get("steps", 0))
            every = max(1, steps // 4) if steps >= 4 else None

            def on_step(step: int, G: torch.nn.Module) -> None:
                q = prior_quality(card, G, n=1000, device=device)
                if q is not None and step < steps:
                    curve.append({"step": step, **q.to_dict()})
                    log.info("prior %s at step %d: FID_eval %.2f, recall %.2f, class coverage %.0f%%", card.name,
                             step, q.fid_eval, q.recall, 100 * q.class_coverage)
        init = None
        if card.init_from is not None:  # transfer learning: start from the source prior's trained weights
            source, _ = load_prior(card.init_from, device="cpu", progress=progress)
            init = source.state_dict()
            log.info("prior %s starts from prior %s", card.name, card.init_from)
        trained = kind.train(images, card.train, params=card.params, resolution=card.resolution,
                             device=device, progress=progress, card_path=card.path, callback=on_step,
                             callback_every=every, checkpoint=resume, init=init)
        dtype, stored = getattr(torch, card.storage_dtype), trained.G
        if dtype != torch.float32:  # measure and ship the generator exactly as it is stored
            round_to(trained.G, dtype)
            stored = copy.deepcopy(trained.G).to(dtype)
        if card.storage == "delta":  # only what training changed, on top of the source's weights
            files = [save_delta(stored, init, card.init_from, prior_weights_sha256(card.init_from),
                                a.file(kind.weight_suffix))]
        else:
            files = kind.save(stored, a.file(kind.weight_suffix))
        resume.unlink(missing_ok=True)
        seconds = round(time.time() - t0, 1)
        log.info("built prior %s in %.0fs", card.name, seconds)
        quality = prior_quality(card, trained.G.eval(), device=device)
        report(card, quality)
        files.append(_sample_grid(card, kind, trained.G.eval(), a.file(".samples.png")))
        record = {"card": dataclasses.asdict(card), "code_version": code_version(*prior_code(card)),
                  **({"init_from": {"card": card.init_from, "key": art.content["init_from"]}} if init else {}),
                  **trained.record, "build_seconds": seconds, "torch": torch.__version__,
                  "threads": torch.get_num_threads(), "quality": None if quality is None else quality.to_dict(),
                  **({"quality_curve": curve} if curve else {})}
        return [f.name[len(a.stem.name):] for f in files], record

    with torch.enable_grad():  # a caller under no_grad (a preview, an attack) may trigger the build
        PRIORS.get_or_build(art, build, force=force)
    return art.file(kind.weight_suffix)


def prior_weights_sha256(name: str) -> str:
    """sha256 of the weights file prior card `name` loads (the user's file, or the built artifact's)."""
    card = get_card("generator", name)
    if card.weights is not None and card.weights.path:  # a card's sha256 was checked when the file loaded
        return card.weights.sha256 or sha256_file(card.weights.resolved_path())
    return prior_artifact(card).record()["files"][GENERATORS.get(card.kind).weight_suffix]


def round_to(G: torch.nn.Module, dtype: torch.dtype) -> None:
    """Round every floating-point weight and buffer of G to `dtype`'s precision, in place (G keeps its dtype)."""
    with torch.no_grad():
        for t in (*G.parameters(), *G.buffers()):
            if t.is_floating_point():
                t.copy_(t.to(dtype).to(t.dtype))


def _sample_grid(card: GeneratorCard, kind, G: torch.nn.Module, path: Path, n: int = 64) -> Path:
    """An 8×8 grid of truncated samples (as the attacks draw them) next to the weights, for a look."""
    from mibench.ops.imaging import grid, save_png

    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(2)).to(next(G.parameters()).device)
    with torch.no_grad():
        x = ((kind.sample(G, z, psi=card.truncation_psi or 1.0, cutoff=card.truncation_cutoff) + 1) / 2).clamp(0, 1)
    save_png(grid([x[i:i + 8] for i in range(0, n, 8)]), path, scale=max(1, 96 // card.resolution))
    log.info("prior %s: sample grid %s", card.name, path)
    return path


def load_prior(card: GeneratorCard | str, device: str | torch.device = "cpu", build: bool = True,
               progress: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(generator in eval mode without gradients, info) for a prior card; trains it when allowed."""
    if isinstance(card, str):
        card = get_card("generator", card)
    kind = GENERATORS.get(card.kind)
    if card.weights is not None and card.weights.path:
        G = kind.load(card.weights.resolved_path(), sha256=card.weights.sha256, resolution=card.resolution,
                      params=card.params)
        info: dict[str, Any] = {"source": str(card.weights.resolved_path())}
    else:
        art = prior_artifact(card)
        if not art.exists():
            if not build:
                raise CheckpointError(f"prior '{card.name}' is not built", path=art.stem,
                                      fix=f"run `mibench zoo build {card.name}`")
            build_generator(card, device=device, progress=progress)
        meta = art.meta()  # checks every file's sha256 against the cache record
        if card.storage == "delta":
            source, _ = load_prior(card.init_from, device="cpu", build=build, progress=progress)
            with torch.random.fork_rng(devices=[]):  # a fresh build draws an init: keep the caller's RNG
                empty = kind.build(card.params, card.resolution)
            G = load_delta(empty, source.state_dict(), prior_weights_sha256(card.init_from),
                           art.file(kind.weight_suffix))
        else:
            G = kind.load(art.file(kind.weight_suffix), sha256=None, resolution=card.resolution,
                          params=card.params)
        info = {"source": artifact_source(art), "weights": weights_provenance(art),
                "train_seconds": meta.get("seconds"), "steps": meta.get("steps")}
    G = G.to(device).eval().requires_grad_(False)
    return G, info
