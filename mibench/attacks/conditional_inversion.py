"""White-box inversion of a class-conditional generator G(z, y) — PLG-MI's attack phase, shared by
PLG-MI (on the target) and LOKT (on its surrogate ensemble).

This module owns the three steps both attacks run once their generator is trained:

- `ViewAugment`: one random view of images in [0, 1] — resized crop (+ horizontal flip), then
  brightness / contrast jitter, then a small rotation, in kornia's `ImageSequential` order (the
  attack augmentation of PLG-MI's `reconstruct.py` and LOKT's `plg_tacgan.py`: RandomResizedCrop
  scale 0.8–1 ratio 1, ColorJitter(0.2, 0.2) on every view, RandomHorizontalFlip, RandomRotation(5)
  with its default p 0.5). Every draw is keyed by (seed, sample key, counter).
- `views_loss` / `invert`: per candidate, Adam on z of G(z, y) minimising the identity loss averaged
  over the models and `views` random views per model and step (each model sees its own views).
- `select_by_confidence`: the final images and each candidate's mean softmax confidence in its
  class over `final_views` random crops, averaged over the models.

A "model" is a callable `(images (N, 3, R, R) in [0, 1], n_real) -> logits (N, K)` where the first
`n_real` rows are real (the rest are fixed-size batch padding): a surrogate ignores `n_real`, the
target's access object counts it as queries.

Batching invariance: every network call sees a fixed batch size (padded) and every random draw is
keyed by sample, so a class gives the same images alone or batched with others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mibench.attacks.base import adam_on_latents, map_fixed_batches
from mibench.ops.transforms import View, keyed_color_jitter, keyed_rotation, random_resized_crop

Model = Callable[[Tensor, int], Tensor]  # (images in [0, 1], n_real) -> logits
Synthesize = Callable[[Tensor, Tensor], Tensor]  # (z, y) -> images in [0, 1]


@dataclass(frozen=True)
class ViewAugment:
    """A keyed random view: resized crop (+ flip), jitter with probability `jitter_p`, rotation
    ±`rotation`° with probability `rotation_p` (kornia's defaults: jitter on every view, rotation p 0.5)."""

    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (1.0, 1.0)
    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    rotation: float = 5.0
    jitter_p: float = 1.0
    rotation_p: float = 0.5

    def __call__(self, x: Tensor, seed: int, keys: Tensor, counter: int) -> Tensor:
        """One random view of images (N, 3, R, R), each draw keyed by (seed, sample key, counter)."""
        x = random_resized_crop(x, seed, keys, counter, self.scale, self.ratio, self.flip)
        x = keyed_color_jitter(x, seed, keys, counter, self.brightness, self.contrast, self.jitter_p)
        return keyed_rotation(x, seed, keys, counter, self.rotation, self.rotation_p)


@dataclass(frozen=True)
class InversionSpec:
    """The attack-phase settings both attacks share (read from their configs by `from_config`)."""

    augment: ViewAugment
    views: int  # random views per model and step
    steps: int
    lr: float
    batch_size: int  # candidates optimised together (padded to this size)
    final_views: int
    final_scale: tuple[float, float]
    final_ratio: tuple[float, float]
    final_flip: bool
    selection_batch_size: int
    betas: tuple[float, float] = (0.9, 0.999)  # torch's Adam defaults, as both published codes

    @classmethod
    def from_config(cls, cfg: Any) -> InversionSpec:
        """The spec from a config with the fields `aug_*`, `steps`, `lr`, `batch_size`, `final_*`
        and `selection_batch_size` (LOKT's and PLG-MI's configs)."""
        aug = ViewAugment(scale=tuple(cfg.aug_scale), ratio=tuple(cfg.aug_ratio), flip=cfg.aug_flip,
                          brightness=cfg.aug_brightness, contrast=cfg.aug_contrast, rotation=cfg.aug_rotation)
        return cls(augment=aug, views=cfg.aug_views, steps=cfg.steps, lr=cfg.lr, batch_size=cfg.batch_size,
                   final_views=cfg.final_views, final_scale=tuple(cfg.final_scale),
                   final_ratio=tuple(cfg.final_ratio), final_flip=cfg.final_flip,
                   selection_batch_size=cfg.selection_batch_size)


def views_loss(models: Sequence[Model], loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, targets: Tensor,
               keys: Tensor, step: int, seed: int, spec: InversionSpec, n_real: int) -> Tensor:
    """Per-sample loss (N,): `loss_fn` averaged over models and `spec.views` random views, model i's
    view v at step s drawn with counter (s·M + i)·views + v (each model sees its own views, as the
    published LOKT code draws them per surrogate)."""
    total = torch.zeros(x.shape[0], device=x.device)
    n_m = len(models)
    for i, model in enumerate(models):
        for v in range(spec.views):
            view = spec.augment(x, seed, keys, (step * n_m + i) * spec.views + v)
            total = total + loss_fn(model(view, n_real), targets)
    return total / (spec.views * n_m)


def invert(synthesize: Synthesize, models: Sequence[Model], loss_fn: Callable[[Tensor, Tensor], Tensor],
           latents: Tensor, targets: Tensor, keys: Tensor, spec: InversionSpec, *, seed: int,
           device: torch.device, desc: str, progress: bool) -> tuple[Tensor, dict[str, Any]]:
    """Adam (spec.lr, spec.betas) on each candidate's z of `synthesize(z, class)` for `spec.steps`
    steps on `views_loss`, in independent fixed-size batches; (latents, {"final_loss": (N,)})."""
    return adam_on_latents(
        latents, targets, keys,
        lambda z, t, k, step, n: views_loss(models, loss_fn, synthesize(z, t), t, k, step, seed, spec, n),
        batch_size=spec.batch_size, steps=spec.steps, lr=spec.lr, betas=spec.betas, device=device, desc=desc,
        progress=progress)


@torch.no_grad()
def select_by_confidence(synthesize: Synthesize, models: Sequence[Model], latents: Tensor, targets: Tensor,
                         keys: Tensor, spec: InversionSpec, *, seed: int, device: torch.device,
                         output_size: int) -> tuple[Tensor, Tensor]:
    """Images (N, 3, S, S) at the output size (CPU) and scores (N,): each candidate's softmax
    confidence in its class, averaged over the models and `spec.final_views` random crops (NaN for
    images that are not finite)."""
    bs = spec.selection_batch_size
    t_dev = targets.to(device)
    images = map_fixed_batches(lambda z, y, _n: synthesize(z, y), bs, latents, t_dev)

    def confidence(imgs: Tensor, k: Tensor, t: Tensor, v: int, n: int) -> Tensor:
        x = random_resized_crop(imgs, seed, k, v, spec.final_scale, spec.final_ratio, spec.final_flip)
        p = torch.stack([torch.softmax(m(x, n).float(), 1) for m in models]).mean(0)
        return p.gather(1, t.view(-1, 1)).squeeze(1).cpu()

    scores = torch.zeros(len(images))
    views = max(spec.final_views, 1)
    for v in range(views):
        scores += map_fixed_batches(lambda i, k, t, n, v=v: confidence(i, k, t, v, n), bs, images, keys, t_dev)
    scores /= views
    scores[~torch.isfinite(images.flatten(1).sum(1)).cpu()] = float("nan")
    return View(size=output_size)(images).cpu(), scores
