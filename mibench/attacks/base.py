"""The attack pipeline shared by every attack:

    sample latents → initial selection → optimize → final selection → images + latents

An attack sees the target only through an access object (`mibench.attacks.access`). It is run on
groups of target classes; every random draw is keyed by (run seed, class, candidate, step) so a
class yields the same result however the classes are grouped, batched or sharded.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from mibench.attacks.access import TargetAccess
from mibench.data.base import ImageDataset
from mibench.errors import AttackError
from mibench.generators.base import Prior
from mibench.ops.cache import ArtifactCache
from mibench.registry import suggest
from mibench.typed import from_dict, to_dict

log = logging.getLogger(__name__)

# Candidate keys are class * KEY_STRIDE + candidate index: unique per (class, candidate).
KEY_STRIDE = 1 << 20


def padded_chunks(n: int, size: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive chunks of `size` rows covering n rows (the last may be short)."""
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def pad_rows(t: torch.Tensor, size: int) -> torch.Tensor:
    """`t` with its last row repeated until it has `size` rows.

    Every network call in an attack sees the same batch size, so the same kernels run and each
    sample's numbers do not depend on how many others share its batch (small or odd batch sizes
    select different BLAS / cuDNN kernels with different rounding).
    """
    if t.shape[0] >= size:
        return t
    return torch.cat([t, t[-1:].expand(size - t.shape[0], *t.shape[1:])])


def map_fixed_batches(fn, size: int, *tensors: torch.Tensor) -> torch.Tensor:
    """Apply `fn(*chunks, n_real)` to fixed-size (padded) row chunks of `tensors`, where `n_real` rows
    of each chunk are real; concatenate the real rows of the results."""
    n = tensors[0].shape[0]
    outs = []
    for a, b in padded_chunks(n, size):
        outs.append(fn(*(pad_rows(t[a:b], size) for t in tensors), b - a)[: b - a])
    return torch.cat(outs)


def adam_on_latents(latents: torch.Tensor, targets: torch.Tensor, keys: torch.Tensor, loss_fn, *,
                    batch_size: int, steps: int, lr: float, betas: tuple[float, float], device: torch.device,
                    desc: str, progress: bool) -> tuple[torch.Tensor, dict[str, Any]]:
    """`optimize_latents` with Adam (lr, betas) on each latent row."""
    return optimize_latents(latents, targets, keys, loss_fn, batch_size=batch_size, steps=steps,
                            make_optimizer=lambda params: torch.optim.Adam(params, lr=lr, betas=betas),
                            device=device, desc=desc, progress=progress)


def optimize_latents(latents: torch.Tensor, targets: torch.Tensor, keys: torch.Tensor, loss_fn, *,
                     batch_size: int, steps: int, make_optimizer, device: torch.device, desc: str,
                     progress: bool) -> tuple[torch.Tensor, dict[str, Any]]:
    """Optimise each latent row in independent fixed-size (padded) batches, with the optimiser
    `make_optimizer([z])` builds per batch.

    `loss_fn(z, targets, keys, step, n_real) -> (N,)` is the per-sample loss of a padded batch whose
    first `n_real` rows are real. Returns the optimised latents and {"final_loss": (len(latents),)}."""
    from tqdm import tqdm

    out, losses = [], []
    bs = batch_size
    bar = tqdm(total=steps * math.ceil(len(latents) / bs), desc=desc, disable=not progress, leave=False,
               unit="step")
    for a, b in padded_chunks(len(latents), bs):
        # Fixed-size batches (padded with copies of the last row): see `pad_rows`.
        z = pad_rows(latents[a:b], bs).detach().clone().to(device).requires_grad_(True)
        t, k = pad_rows(targets[a:b], bs).to(device), pad_rows(keys[a:b], bs)
        opt = make_optimizer([z])
        loss = torch.full((bs,), float("nan"))
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(z, t, k, step, b - a)
            loss.sum().backward()
            opt.step()
            bar.update(1)
        out.append(z.detach()[: b - a])
        losses.append(loss.detach().cpu()[: b - a])
    bar.close()
    return torch.cat(out), {"final_loss": torch.cat(losses)}


def candidate_keys(classes: torch.Tensor, n: int) -> torch.Tensor:
    """Keys (len(classes) * n,) for `n` candidates of each class, class-major."""
    return (classes.long().view(-1, 1) * KEY_STRIDE + torch.arange(n).view(1, -1)).flatten()


@dataclass
class ClassResult:
    """What an attack returns for one target class."""

    class_id: int
    images: torch.Tensor  # (n, 3, H, W) float in [0, 1], CPU
    latents: torch.Tensor  # (n, ...) the optimised latent codes, CPU
    scores: torch.Tensor  # (n,) final-selection score (higher = more confident)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. final loss, NaN flags


@dataclass
class AttackContext:
    """Everything an attack may use: target access, prior, device, seed, output size, where to keep
    its own stages, and the attacker's public data. Never the target's card or weights."""

    access: TargetAccess
    prior: Prior | None  # the GAN prior (StyleGAN2 for PPA / IF-GMI); None for attacks that bring their own
    device: torch.device
    seed: int
    output_size: int  # side of the images returned (what the evaluator / metrics see)
    progress: bool = True
    store_dir: Path | None = None  # a folder the attack may persist its stages in (resume re-uses them)
    public_data: Callable[[], ImageDataset] | None = None  # the attacker's public images, loaded on demand
    # An opaque id of the target (its card hash): where stages shipped for this target are found
    # (`shipped_stages`); None for targets nothing was shipped for. Not the card, not the weights.
    target_id: str | None = None

    def shipped_stages(self, attack: str) -> ArtifactCache | None:
        """The read-only store of `attack`'s stages shipped for this target, or None. A composed
        attack ("kedmi+lomma") finds its base's stages ("kedmi"): an add-on does not change them."""
        return None if self.target_id is None else stages_store(attack.partition("+")[0], self.target_id)


def public_images(ctx: AttackContext, resolution: int, attack: str) -> torch.Tensor:
    """The attacker's public images as uint8 (N, 3, R, R) at `resolution` (for attacks that train
    a GAN of their own on them)."""
    make = ctx.public_data
    if make is None:
        raise AttackError(f"{attack} trains on public data, but the run provides none",
                          fix="pass AttackContext.public_data (the runner does this from the target card's "
                              "`public_data`, its dataset's public split or the default prior's data)")
    x, _ = (make() if callable(make) else make).load_tensors()
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        from mibench.data.base import resize_images
        from mibench.ops.imaging import to_uint8

        x = torch.cat([to_uint8(resize_images(x[i:i + 1000].float() / 255, resolution))
                       for i in range(0, len(x), 1000)])
    return x


def merge_settings(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers over earlier ones; a dotted key ("lomma.lambda_reg") or a mapping under the key
    of a nested config (an add-on's) changes only the fields it names."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            head, dot, rest = key.partition(".")
            if dot:
                value, key = {rest: value}, head
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                value = merge_settings(out[key], value)
            out[key] = value
    return out


def stages_store(attack: str, target_id: str) -> ArtifactCache:
    """Where `attack`'s trained stages for one target ship (`mibench/shipped/stages/<attack>/<id>/`),
    keyed by their content alone like the zoo: every machine then attacks with the same stages."""
    return ArtifactCache(f"stages/{attack}/{target_id[:16]}", shippable=True)


class Attack(ABC):
    """Base class of every attack: a typed config, an access level, one-time preparation, and a
    batched per-class-group run.

    A subclass declares everything the runner, the suite and the scheduler need — nothing else in
    mibench lists attack names: its access level, whether it needs a prior, its presets (keyed by
    the dataset kind's `attack_preset`, or named by a target card's `attack_preset`), whether it
    trains on public data (resolved and checked before a run starts), the config
    fields it takes from the prior card, its relative cost and whether the default suite runs it."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    access_level: ClassVar[str] = "white-box"
    config_cls: ClassVar[type] = object
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    needs_prior: ClassVar[bool] = True  # False: the attack trains or brings its own generator
    # Generator kinds the attack can run on (its default prior is the dataset's `default_for` card
    # of one of these kinds; another kind given by name is refused before anything runs).
    prior_kinds: ClassVar[tuple[str, ...]] = ("stylegan2",)
    needs_public_data: ClassVar[bool] = False  # True: it trains on the attacker's public images
    # For dataset kinds no paper preset was made for (`imagefolder`): (largest image size in px,
    # preset) pairs, smallest first. The size is the prior's resolution, or the target's input
    # size for attacks without a prior.
    fitted_presets: ClassVar[tuple[tuple[int, str], ...]] = ()
    prior_fields: ClassVar[tuple[str, ...]] = ()  # config fields whose default comes from the prior card
    cost: ClassVar[float] = 1.0  # relative run time; ≥ COSTLY starts first in a suite (it may train a shared stage)
    in_default_suite: ClassVar[bool] = True
    # True: the loss goes through `identity_loss(ctx, x, targets, n_real) -> (N,)` on target-input
    # images, which an add-on may replace (`mibench.attacks.addon`).
    identity_hook: ClassVar[bool] = False

    COSTLY: ClassVar[float] = 5.0

    def __init__(self, config: Any):
        self.config = config

    @classmethod
    def from_preset(cls, preset: str, overrides: dict[str, Any] | None = None,
                    defaults: dict[str, Any] | None = None) -> Attack:
        """Build the attack from a named preset, then `defaults` (e.g. the prior card's truncation),
        then `overrides` (validated into the config dataclass)."""
        if preset not in cls.presets:
            raise AttackError(f"attack '{cls.name}' has no preset '{preset}'{suggest(preset, list(cls.presets))}",
                              fix=f"use one of: {', '.join(cls.presets)}")
        data = merge_settings(cls.presets[preset], defaults or {}, overrides or {})
        return cls(from_dict(cls.config_cls, data, path=f"attack {cls.name} (preset {preset})",
                             error=AttackError))

    def classes_per_group(self) -> int:
        """How many classes the runner hands `attack_classes` at once (enough to fill one batch)."""
        return 1

    def surrogates(self) -> nn.Module | None:
        """The attack's surrogate of the target (images in [0, 1] → logits), when it trains one; the
        harness then reports how often it agrees with the target. Default: None."""
        return None

    def describe(self) -> dict[str, Any]:
        """The resolved configuration, for entries."""
        return to_dict(self.config)

    def prepare(self, ctx: AttackContext) -> None:
        """One-time work shared by all classes (e.g. scoring the candidate pool). Default: nothing."""
        return None

    @abstractmethod
    def attack_classes(self, ctx: AttackContext, classes: list[int]) -> list[ClassResult]:
        """Attack a group of classes at once; returns one ClassResult per class, in order."""

    def phase_info(self) -> dict[str, Any]:
        """Attack-level facts for the entry (queries by phase, per-stage logs, …)."""
        return {}


class GenerativeAttack(Attack):
    """The four-stage pipeline, as overridable steps."""

    @abstractmethod
    def initial_selection(self, ctx: AttackContext, classes: torch.Tensor) -> torch.Tensor:
        """Starting latents (len(classes) * num_candidates, ...) for the classes, class-major."""

    @abstractmethod
    def optimize(self, ctx: AttackContext, latents: torch.Tensor, targets: torch.Tensor,
                 keys: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Optimised latents and per-sample info (e.g. final loss) for samples labelled `targets`."""

    @abstractmethod
    def final_selection(self, ctx: AttackContext, latents: torch.Tensor, targets: torch.Tensor,
                        keys: torch.Tensor, extra: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, 3, H, W) in [0, 1] and scores (N,) for the optimised latents."""

    @property
    def num_candidates(self) -> int:
        """Candidates optimised per class (the config's `num_candidates`)."""
        return self.config.num_candidates

    def classes_per_group(self) -> int:
        """Classes whose candidates fill one optimisation batch (`batch_size` // `num_candidates`)."""
        per_class = self.num_candidates or 1
        return max(1, getattr(self.config, "batch_size", per_class) // per_class)

    @property
    def num_final(self) -> int:
        """Images kept per class after final selection (the config's `num_final`)."""
        return self.config.num_final

    def attack_classes(self, ctx: AttackContext, classes: list[int]) -> list[ClassResult]:
        """Run the pipeline on a group of classes (batched across classes)."""
        cls_t = torch.as_tensor(classes, dtype=torch.long)
        n = self.num_candidates
        keys = candidate_keys(cls_t, n)
        targets = cls_t.repeat_interleave(n)
        start = self.initial_selection(ctx, cls_t)
        latents, extra = self.optimize(ctx, start, targets, keys)
        images, scores = self.final_selection(ctx, latents, targets, keys, extra)
        results = []
        for i, c in enumerate(classes):
            sl = slice(i * n, (i + 1) * n)
            sc = scores[sl]
            nan = ~torch.isfinite(sc)
            # Stable descending order; NaN candidates (a diverged optimisation) rank last.
            order = torch.sort(torch.where(nan, torch.full_like(sc, -math.inf), sc), descending=True,
                               stable=True).indices[: self.num_final]
            info = {k: (v[sl].tolist() if torch.is_tensor(v) and v.ndim else v) for k, v in extra.items()
                    if not k.startswith("_")}
            info["nan_candidates"] = int(nan.sum())
            results.append(ClassResult(c, images[sl][order].cpu(), latents[sl][order].detach().cpu(),
                                       sc[order].cpu(), info))
        return results
