"""The attribute reader: a network that reads a face image's identity attributes, trained only on
the attacker-side *public* synthfaces renders (identities disjoint from the target's private ones)
under the full nuisance model (pose, expression, lighting, background, occluders, noise).

Each categorical attribute is a softmax head over its palette, each continuous one a regression to
its range mapped to [0, 1]. On held-out public identities the reader measures, per attribute, how
often it reads an image correctly and how far off its continuous readings are (σ, used to weigh
attributes in re-identification). An attribute is *readable* when the held-out accuracy beats the
best constant reading (the commonest palette entry; the range's centre) by `READABLE_MARGIN`; only readable attributes enter the identity-recovery metrics (an
attribute nobody can see in a 32 px image, say eye colour, would only add noise).

The reader is cached (and shipped for the embedded datasets) like the zoo: keyed by the dataset's
public split and the recipe, built on first use (seconds for the tiny test data, minutes for the
embedded 32 px data on a CPU). Scoring functions take the reader's output and the attributes of
the private identities:

- `recovered`: per image and readable attribute, whether the reading matches the identity;
- `identity_scores`: per image, the log-likelihood of every private identity given the readings;
  where the true identity ranks among them is re-identification (`reid_hits`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from mibench.classifiers.architectures import build_classifier
from mibench.classifiers.base import Classifier
from mibench.classifiers.recipe import Augment
from mibench.classifiers.train import augment_batch
from mibench.data.base import resize_images
from mibench.errors import DataError
from mibench.metrics.base import load_strict
from mibench.ops.cache import ArtifactCache
from mibench.ops.fileio import atomic_path
from mibench.seeding import derive_seed, make_generator

log = logging.getLogger(__name__)

READERS = ArtifactCache("metrics/readers", shippable=True)
# A continuous attribute is recovered when read within this fraction of its range of the identity's value.
TOLERANCE = 0.1
# Readable: held-out accuracy at least this far above the best constant reading (absolute).
READABLE_MARGIN = 0.10
_CAT_FLOOR = 0.05  # categorical probabilities are mixed with this much uniform mass in likelihoods
_SIGMA_FLOOR = 0.02  # the smallest σ (range units) a continuous reading is trusted with


@dataclass
class ReaderRecipe:
    """How the reader is trained (SGD + cosine schedule, gradient clipping; geometric augmentation
    only: colour jitter would change the very colours it must read). Chosen by held-out accuracy on
    synthfaces32 (`benchmarks/attribute_reader.py`; 12 epochs each): hair style / facial hair /
    glasses read at 71 / 79 / 77 % when trained on the attacker's 1000 identities × 20 images (the
    network memorises identities instead of learning to read), 86 / 88 / 83 % on 5 000 × 4 and
    91 / 90 / 86 % on 10 000 × 4 (the default: 40 000 renders, 8 min on one core)."""

    epochs: int = 12
    batch_size: int = 64
    lr: float = 0.05  # SGD, Nesterov momentum 0.9, cosine to 0
    weight_decay: float = 5e-4
    grad_clip: float = 5.0  # gradient-norm clipping (keeps the regression heads from diverging)
    width: int = 32  # compact_resnet width
    crop_scale: tuple[float, float] = (0.85, 1.0)
    regression_weight: float = 1.0  # MSE (range units) against the heads' cross-entropy
    holdout_fraction: float = 0.1  # public identities kept out of training, to measure the reader
    # Many public identities with few images each: with the attacker's 20 images of each of 1000
    # identities the network memorises identities instead of learning to read attributes (held-out
    # continuous readings were worse than a constant). The reader's own public sample: this many
    # times the dataset's public identities (the same population, so still disjoint from the private
    # ones), `images_per_identity` each.
    identity_multiplier: int = 10
    images_per_identity: int = 4
    seed: int = 0


def _layout(specs) -> list[tuple[Any, slice]]:
    """Each attribute's slice of the network's output vector (categoricals first, as in `specs`)."""
    out, i = [], 0
    for s in specs:
        width = s.size if s.kind == "categorical" else 1
        out.append((s, slice(i, i + width)))
        i += width
    return out


def _visible(specs, attrs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per attribute, a bool mask of where it can be seen (a frame colour only with glasses)."""
    n = len(next(iter(attrs.values())))
    return {s.name: (np.asarray(attrs[s.visible_if]) != 0 if s.visible_if else np.ones(n, dtype=bool))
            for s in specs}


def _unit(spec, values: np.ndarray) -> np.ndarray:
    """A continuous attribute's values in range units ([0, 1] over its population range)."""
    return (np.asarray(values, dtype=np.float64) - spec.lo) / (spec.hi - spec.lo)


class AttributeReader:
    """A trained reader: the network, its attribute layout and what held-out data says about it."""

    def __init__(self, net: Classifier, specs, meta: dict[str, Any]):
        self.net = net.eval()
        self.specs = tuple(specs)
        self.layout = _layout(self.specs)
        self.meta = meta
        self.resolution = int(meta["resolution"])
        self.readable = tuple(meta["readable"])
        self.sigma = {k: max(_SIGMA_FLOOR, float(v)) for k, v in meta["sigma"].items()}

    @property
    def device(self) -> torch.device:
        """Where the network lives."""
        return next(self.net.parameters()).device

    @torch.no_grad()
    def read(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Readings of images (N, 3, H, W) (uint8, or float in [0, 1]): a categorical attribute →
        probabilities (N, size), a continuous one → its value in range units (N,)."""
        raw = []
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(self.device)
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            if x.shape[-1] != self.resolution:
                x = resize_images(x, self.resolution)
            raw.append(self.net(x).float().cpu())
        out = torch.cat(raw) if raw else torch.empty(0, self.layout[-1][1].stop)
        return {s.name: (torch.softmax(out[:, sl], 1) if s.kind == "categorical" else out[:, sl.start])
                for s, sl in self.layout}


def recovered(reader: AttributeReader, readings: dict[str, torch.Tensor], identity: dict[str, Any]) -> np.ndarray:
    """Per image, the share of the identity's readable (and visible) attributes the readings match → (N,)."""
    n = len(next(iter(readings.values())))
    hits, count = np.zeros(n), 0
    for s in reader.specs:
        if s.name not in reader.readable or (s.visible_if and int(identity[s.visible_if]) == 0):
            continue
        r = readings[s.name]
        if s.kind == "categorical":
            hits += (r.argmax(1).numpy() == int(identity[s.name]))
        else:
            hits += np.abs(r.double().numpy() - _unit(s, identity[s.name])) <= TOLERANCE
        count += 1
    return hits / max(count, 1)


def identity_scores(reader: AttributeReader, readings: dict[str, torch.Tensor],
                    identities: dict[str, np.ndarray]) -> torch.Tensor:
    """Log-likelihood (N, K) of each of K identities having produced each image's readings: a
    palette reading's (floored) probability of the identity's value, a continuous reading's
    Gaussian density around the identity's value with the reader's held-out σ. Readable attributes
    only; an attribute an identity does not show (no glasses → no frame) contributes nothing."""
    n = len(next(iter(readings.values())))
    k = len(next(iter(identities.values())))
    score = torch.zeros(n, k, dtype=torch.float64)
    vis = _visible(reader.specs, identities)
    for s in reader.specs:
        if s.name not in reader.readable:
            continue
        mask = torch.from_numpy(vis[s.name]).double().view(1, k)
        r = readings[s.name].double()
        if s.kind == "categorical":
            p = (1 - _CAT_FLOOR) * r + _CAT_FLOOR / s.size
            ll = torch.log(p[:, torch.from_numpy(np.asarray(identities[s.name], dtype=np.int64))])
        else:
            sig = reader.sigma[s.name]
            d = r.view(n, 1) - torch.from_numpy(_unit(s, identities[s.name])).view(1, k)
            ll = -0.5 * (d / sig) ** 2
        score += ll * mask
    return score


def reid_hits(scores: torch.Tensor, truth: torch.Tensor, k: int) -> torch.Tensor:
    """Per image, the probability (N,) that identity `truth[i]` ranks among the top `k` of scores
    (N, K) when ties are broken uniformly at random: with h identities scoring higher and t others
    tied, its position is uniform over h … h + t (exact, no random draw)."""
    own = scores.gather(1, truth.long().view(-1, 1))
    higher = (scores > own).sum(1).double()
    tied = (scores == own).sum(1).double() - 1
    return ((k - higher) / (tied + 1)).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------- training

def _targets(specs, attrs: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Training targets (N, A) float64 (palette index or range units) and visibility masks (N, A)."""
    vis = _visible(specs, attrs)
    y = np.stack([np.asarray(attrs[s.name], dtype=np.float64) if s.kind == "categorical" else _unit(s, attrs[s.name])
                  for s in specs], axis=1)
    m = np.stack([vis[s.name] for s in specs], axis=1)
    return torch.from_numpy(y), torch.from_numpy(m)


def _loss(layout, out: torch.Tensor, y: torch.Tensor, m: torch.Tensor, regression_weight: float) -> torch.Tensor:
    total = out.new_zeros(())
    for j, (s, sl) in enumerate(layout):
        w = m[:, j].to(out.dtype)
        if s.kind == "categorical":
            per = F.cross_entropy(out[:, sl], y[:, j].long(), reduction="none")
        else:
            per = regression_weight * (out[:, sl.start] - y[:, j].to(out.dtype)) ** 2
        total = total + (per * w).sum() / w.sum().clamp_min(1)
    return total


def _measure(reader: AttributeReader, images: torch.Tensor, attrs: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per attribute on labelled images: accuracy (a continuous reading within TOLERANCE), chance
    and, for continuous ones, the RMS error in range units."""
    readings = reader.read(images)
    vis = _visible(reader.specs, attrs)
    out = {}
    for s in reader.specs:
        v = vis[s.name]
        if not v.any():
            continue
        r = readings[s.name][torch.from_numpy(v)]
        if s.kind == "categorical":
            acc = float((r.argmax(1).numpy() == np.asarray(attrs[s.name])[v]).mean())
            out[s.name] = {"accuracy": acc, "chance": s.chance(TOLERANCE)}
        else:
            err = r.double().numpy() - _unit(s, np.asarray(attrs[s.name])[v])
            out[s.name] = {"accuracy": float((np.abs(err) <= TOLERANCE).mean()), "chance": s.chance(TOLERANCE),
                           "rmse": float(np.sqrt((err ** 2).mean()))}
    return out


def train_reader(truth, recipe: ReaderRecipe, device: str | torch.device = "cpu",
                 progress: bool = True) -> AttributeReader:
    """Train a reader on public renders of `truth`'s dataset (`SynthFacesTruth`; the recipe's own
    sample of the public population), holding out the last `holdout_fraction` of the identities to
    measure it."""
    from tqdm.auto import tqdm

    pub = truth.with_split("public")
    pub = dataclasses.replace(pub, params=dataclasses.replace(
        pub.params, num_public=recipe.identity_multiplier * pub.params.num_public,
        public_per_identity=recipe.images_per_identity))
    images, labels, attrs = pub.split_with_attributes("public")
    specs = pub.attributes
    n_ids = int(labels.max()) + 1
    n_hold = max(2, round(recipe.holdout_fraction * n_ids))
    if n_ids - n_hold < 2:
        raise DataError(f"the attribute reader needs at least 4 public identities, the dataset has {n_ids}",
                        field="dataset.params.num_public", fix="use more public identities")
    train_rows = (labels < n_ids - n_hold).numpy()
    y, m = _targets(specs, attrs)
    res = images.shape[-1]
    layout = _layout(specs)
    net = build_classifier("compact_resnet", layout[-1][1].stop, res, {"width": recipe.width},
                           seed=derive_seed("attribute-reader-init", recipe.seed) % (1 << 31))
    dev = torch.device(device)
    net = net.to(dev).train()
    x_tr, y_tr, m_tr = images[torch.from_numpy(train_rows)], y[train_rows], m[train_rows]
    steps_per_epoch = max(1, len(x_tr) // recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    opt = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True,
                          weight_decay=recipe.weight_decay)
    gen = make_generator("attribute-reader-train", recipe.seed)
    aug = Augment(crop_scale=tuple(recipe.crop_scale), crop_ratio=(0.95, 1.05), flip=False, color_jitter=0.0)
    start = time.monotonic()
    bar = tqdm(total=total, desc="attribute reader", unit="step", disable=not progress, leave=False)
    step = 0
    for _ in range(recipe.epochs):
        order = torch.randperm(len(x_tr), generator=gen)
        for b in range(steps_per_epoch):
            idx = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            for g in opt.param_groups:
                g["lr"] = recipe.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            x = augment_batch(x_tr[idx].to(dev).float() / 255.0, aug, gen)
            loss = _loss(layout, net(x).float(), y_tr[idx].to(dev), m_tr[idx].to(dev), recipe.regression_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), recipe.grad_clip)
            opt.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    bar.close()
    if not all(torch.isfinite(p).all() for p in net.parameters()):
        raise DataError("the attribute reader's training diverged (non-finite weights)",
                        fix="lower ReaderRecipe.lr")
    reader = AttributeReader(net.cpu(), specs, {"resolution": res, "readable": [], "sigma": {}})
    hold = ~train_rows
    held = _measure(reader, images[torch.from_numpy(hold)], {k: np.asarray(v)[hold] for k, v in attrs.items()})
    meta = {"resolution": res, "seconds": round(time.monotonic() - start, 1), "train_images": int(train_rows.sum()),
            "holdout_identities": n_hold, "holdout": held, "tolerance": TOLERANCE,
            "readable": [s.name for s in specs if s.name in held
                         and held[s.name]["accuracy"] - s.constant_guess(TOLERANCE) >= READABLE_MARGIN],
            "sigma": {s.name: held[s.name]["rmse"] for s in specs if s.kind == "continuous" and s.name in held},
            "recipe": dataclasses.asdict(recipe)}
    return AttributeReader(reader.net, specs, meta)


def reader_content(truth, recipe: ReaderRecipe) -> dict[str, Any]:
    """What decides a reader's weights: the public split's data and the recipe."""
    p = truth.params
    return {"dataset": truth.dataset, "resolution": p.resolution, "seed": p.seed, "num_public": p.num_public,
            "public_per_identity": p.public_per_identity, "recipe": dataclasses.asdict(recipe)}


def reader_artifact(truth, recipe: ReaderRecipe | None = None, local: bool = False):
    """The cache entry (shipped one when it exists) of the reader for `truth`'s dataset."""
    recipe = recipe or ReaderRecipe()
    return READERS.artifact(f"{truth.dataset}-{truth.params.resolution}px", reader_content(truth, recipe),
                            ("mibench.metrics.attribute_reader",), local=local)


def load_reader(truth, device: str | torch.device = "cpu", recipe: ReaderRecipe | None = None,
                progress: bool = True, force: bool = False) -> AttributeReader:
    """The reader for `truth`'s dataset: from the cache or the shipped store, trained first when missing."""
    recipe = recipe or ReaderRecipe()
    art = reader_artifact(truth, recipe)
    specs = truth.attributes
    out_dim = _layout(specs)[-1][1].stop

    def build(a):
        log.info("training the attribute reader for %s (%d px) on its public split", truth.dataset,
                 truth.params.resolution)
        reader = train_reader(truth, recipe, device="cpu", progress=progress)
        with atomic_path(a.file(".safetensors")) as tmp:
            save_file({k: v.contiguous() for k, v in reader.net.state_dict().items()}, str(tmp))
        log.info("attribute reader trained in %.0fs; readable: %s", reader.meta["seconds"],
                 ", ".join(reader.meta["readable"]))
        return [".safetensors"], reader.meta

    meta = READERS.get_or_build(art, build, force=force)
    if force and art.shipped:  # the forced build is the local one
        art = reader_artifact(truth, recipe, local=True)
    net = build_classifier("compact_resnet", out_dim, int(meta["resolution"]), {"width": recipe.width})
    path = art.file(".safetensors")
    load_strict(net, load_file(str(path)), path=path, what="attribute reader")
    return AttributeReader(net.to(device).requires_grad_(False), specs, meta)
