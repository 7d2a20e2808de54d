"""Plug & Play Attack (PPA; Struppek et al., ICML 2022) — white-box generative model inversion with
a StyleGAN2 prior.

1. Candidate search: `search_space_size` latents z → ws with truncation (ψ, cutoff from the prior
   card); each image of the full ws (layers past the cutoff untruncated) is scored by the target's
   softmax averaged over the image and its horizontal flip; per class the top `num_candidates` are
   kept, as their first layer's w. The pool depends only on the run seed, so it is shared by all
   classes and identical on every rank.
2. Optimisation: one w per candidate, broadcast to all synthesis layers ("single w"), Adam
   (lr 0.005, betas (0.1, 0.1)), Poincaré loss on random-resized-crop views.
3. Final selection: each candidate is scored by the mean target-class softmax over `final_views`
   random crop + flip views; the top `num_final` per class are kept.

Per-sample losses are summed (not averaged) so a sample's gradient does not depend on what it is
batched with; all augmentation randomness is keyed per (class, candidate, step).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import torch
from tqdm import tqdm

from mibench.attacks.base import (
    AttackContext,
    GenerativeAttack,
    adam_on_latents,
    map_fixed_batches,
    pad_rows,
    padded_chunks,
)
from mibench.attacks.losses import LOSSES
from mibench.ops import rng
from mibench.ops.transforms import View, random_resized_crop, to_unit
from mibench.registry import ATTACKS

log = logging.getLogger(__name__)


@dataclass
class PPAConfig:
    """PPA hyper-parameters; defaults are the paper's FaceScrub setting."""

    search_space_size: int = 2000  # 5000 for CelebA
    num_candidates: int = 200
    num_final: int = 50
    truncation_psi: float = 0.5  # the run takes ψ and the cutoff from the prior card (paper: 0.5, 8)
    truncation_cutoff: int | None = 8
    steps: int = 50  # "epochs" of the paper: optimisation steps per candidate (70 CelebA, 100 Dogs)
    lr: float = 0.005
    betas: tuple[float, float] = (0.1, 0.1)
    batch_size: int = 20  # candidates optimised together (samples are independent)
    loss: Literal["poincare", "ce", "max_margin"] = "poincare"
    center_crop: float | None = 0.78125  # fraction of the generator image kept (800 of 1024 px)
    aug_scale: tuple[float, float] = (0.9, 1.0)
    aug_ratio: tuple[float, float] = (1.0, 1.0)
    aug_flip: bool = False
    final_views: int = 100
    final_scale: tuple[float, float] = (0.5, 0.9)
    final_ratio: tuple[float, float] = (0.8, 1.2)
    final_flip: bool = True
    selection_batch_size: int = 100  # images per forward pass in candidate search / final selection
    noise_mode: Literal["const", "none"] = "const"
    clip: bool = False  # clamp images to the valid range during optimisation (paper: no)
    autocast: Literal["none", "bf16"] = "none"  # bf16 autocast of generator + target forward (GPU speed-up)

    def validate(self) -> None:
        if self.num_candidates > self.search_space_size:
            raise ValueError("num_candidates: cannot exceed search_space_size")
        if self.num_final > self.num_candidates:
            raise ValueError("num_final: cannot exceed num_candidates")
        if self.steps < 0:
            raise ValueError("steps: must be ≥ 0")


PPA_PRESETS: dict[str, dict[str, Any]] = {
    "facescrub": {},
    "celeba": {"search_space_size": 5000, "steps": 70},
    # The Dogs / AFHQ setting has no centre crop (800/1024 is for 1024 px faces).
    "stanford_dogs": {"steps": 100, "lr": 0.01, "aug_scale": (0.75, 1.0), "center_crop": None},
    # Embedded default (32 px synthfaces, CPU): fewer candidates and steps, no centre crop (the
    # synthetic faces fill the frame); truncation comes from the prior card (ψ 0.5, no cutoff).
    "synthfaces": {"search_space_size": 500, "num_candidates": 16, "num_final": 8, "steps": 40,
                   "lr": 0.01, "batch_size": 160, "center_crop": None, "final_views": 20,
                   "selection_batch_size": 250},
}
# Any small-image data without a paper preset (e.g. a 32-64 px `imagefolder` with its own prior):
# the embedded setting, under a name that does not claim to be synthfaces.
PPA_PRESETS["small"] = dict(PPA_PRESETS["synthfaces"])
# Seconds-long settings for the contract tests and smoke runs (never a benchmark setting).
PPA_PRESETS["smoke"] = {**PPA_PRESETS["synthfaces"], "search_space_size": 24, "num_candidates": 4, "num_final": 2,
                        "steps": 2, "final_views": 2, "batch_size": 8, "selection_batch_size": 16}


class PPAttack(GenerativeAttack):
    """Plug & Play Attack; subclasses (IF-GMI) reuse its selection stages and loss."""

    name = "ppa"
    description = "Plug & Play Attack (Struppek et al., ICML 2022): white-box, StyleGAN2 prior, Poincaré loss"
    access_level = "white-box"
    config_cls = PPAConfig
    presets = PPA_PRESETS
    # Data without a paper preset: the small-image setting up to 128 px, else the FaceScrub paper one.
    fitted_presets = ((128, "small"), (1 << 30, "facescrub"))
    prior_fields = ("truncation_psi", "truncation_cutoff")
    cost = 1.0

    def __init__(self, config: PPAConfig):
        super().__init__(config)
        self._pool_w: torch.Tensor | None = None
        self._pool_scores: torch.Tensor | None = None
        self.loss_fn = LOSSES.get(config.loss)

    # --- helpers -------------------------------------------------------------------------------
    def target_view(self, ctx: AttackContext) -> View:
        """Generator image → target input (centre crop fraction, resize)."""
        return self._view(ctx, ctx.access.input_size)

    def _view(self, ctx: AttackContext, size: int) -> View:
        res = ctx.prior.img_resolution
        crop = None if self.config.center_crop is None else round(self.config.center_crop * res)
        return View(center_crop=crop, size=size)

    def synthesize(self, ctx: AttackContext, w: torch.Tensor, clip: bool = True) -> torch.Tensor:
        """Images (N, 3, R, R) from single w (N, w_dim) broadcast to all layers, mapped [−1, 1] → [0, 1]
        (clamped unless `clip` is False: PPA optimises on the unclamped image)."""
        ws = w.unsqueeze(1).expand(-1, ctx.prior.num_ws, -1)
        with self.autocast(ctx):
            img = ctx.prior.synthesize(ws, noise_mode=self.config.noise_mode).float()
        return to_unit(img) if clip else (img + 1) * 0.5

    def candidate_images(self, ctx: AttackContext, ws: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, R, R) in [0, 1] that the candidate search scores: those of the full ws, so
        layers past the truncation cutoff stay untruncated (as in the published code); the
        optimisation then starts from the first layer's w broadcast ("single w")."""
        cutoff = self.config.truncation_cutoff
        if cutoff is None or cutoff >= ctx.prior.num_ws:  # every layer truncated alike: ws = broadcast w
            return self.synthesize(ctx, ws[:, 0])
        with self.autocast(ctx):
            img = ctx.prior.synthesize(ws, noise_mode=self.config.noise_mode).float()
        return to_unit(img)

    def seed_for(self, ctx: AttackContext, stage: str) -> int:
        """The counter-RNG seed of one random stream. Shared with subclasses (IF-GMI) on purpose:
        with the same seed, their PPA stages see the same crops as PPA itself."""
        return rng.stream_seed(ctx.seed, "ppa", stage)

    # --- 1. sample latents + initial selection ---------------------------------------------------
    def search_space(self, ctx: AttackContext, n: int) -> torch.Tensor:
        """The `n` latents z (n, z_dim) of the candidate search; depends only on the run seed."""
        return rng.normal_matrix(rng.stream_seed(ctx.seed, "ppa", "search-space"), torch.arange(n),
                                 ctx.prior.z_dim).to(ctx.device)

    def search_batch(self, ctx: AttackContext, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(starting latents, images in [0, 1]) of one batch of the search space: the first layer's
        w of the truncated ws, and the image of the full ws."""
        cfg = self.config
        ws = ctx.prior.mapping(z, None, psi=cfg.truncation_psi, cutoff=cfg.truncation_cutoff)
        return ws[:, 0], self.candidate_images(ctx, ws)

    @torch.no_grad()
    def prepare(self, ctx: AttackContext) -> None:
        """Sample the search space once and score it for every class (flip-averaged softmax)."""
        cfg = self.config
        n = cfg.search_space_size
        z = self.search_space(ctx, n)
        view = self.target_view(ctx)
        ws_all, scores = [], []
        bs = cfg.selection_batch_size
        for a, b in tqdm(padded_chunks(n, bs), desc="candidate search", disable=not ctx.progress,
                         unit="batch", leave=False):
            w, images = self.search_batch(ctx, pad_rows(z[a:b], bs))
            x = view(images)
            p = torch.softmax(ctx.access.logits(x, count=b - a).float(), 1) + torch.softmax(
                ctx.access.logits(torch.flip(x, dims=[3]), count=b - a).float(), 1)
            ws_all.append(w[: b - a].cpu())
            scores.append((p[: b - a] / 2).cpu())
        self._pool_w = torch.cat(ws_all)
        self._pool_scores = torch.cat(scores)

    def initial_selection(self, ctx: AttackContext, classes: torch.Tensor) -> torch.Tensor:
        """The top `num_candidates` pool latents of each class (stable order), class-major (C*n, w_dim)."""
        if self._pool_w is None:
            self.prepare(ctx)
        picks = []
        for c in classes.tolist():
            order = torch.sort(self._pool_scores[:, c], descending=True, stable=True).indices
            picks.append(self._pool_w[order[: self.num_candidates]])
        return torch.cat(picks).to(ctx.device)

    # --- 2. optimisation -------------------------------------------------------------------------
    def identity_loss(self, ctx: AttackContext, x: torch.Tensor, targets: torch.Tensor, keys: torch.Tensor,
                      step: int, seed: int, n_real: int | None = None) -> torch.Tensor:
        """Per-sample loss (N,) of generator images x (N,3,R,R) in [0,1] under a random crop view
        (`n_real` of the N are real candidates, the rest batch padding)."""
        cfg = self.config
        v = self.target_view(ctx)(x)
        v = random_resized_crop(v, seed, keys, step, cfg.aug_scale, cfg.aug_ratio, cfg.aug_flip)
        with self.autocast(ctx):
            logits = ctx.access.logits(v, count=n_real)
        return self.loss_fn(logits.float(), targets)

    def autocast(self, ctx: AttackContext):
        """bf16 autocast around network forwards when configured (a no-op context otherwise)."""
        enabled = self.config.autocast == "bf16"
        return torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16, enabled=enabled)

    def optimize(self, ctx: AttackContext, latents: torch.Tensor, targets: torch.Tensor,
                 keys: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Adam on single w per candidate, in independent batches of `batch_size`."""
        cfg = self.config
        seed = self.seed_for(ctx, "optimize")

        def loss(w, t, k, step, n_real):
            return self.identity_loss(ctx, self.synthesize(ctx, w, clip=cfg.clip), t, k, step, seed, n_real)

        return adam_on_latents(latents, targets, keys, loss, batch_size=cfg.batch_size, steps=cfg.steps,
                               lr=cfg.lr, betas=cfg.betas, device=ctx.device, desc=f"{self.name} optimise",
                               progress=ctx.progress)

    # --- 3. final selection ----------------------------------------------------------------------
    @torch.no_grad()
    def final_selection(self, ctx: AttackContext, latents: torch.Tensor, targets: torch.Tensor,
                        keys: torch.Tensor, extra: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Images from optimised latents and their mean target-class confidence over random views."""
        images = map_fixed_batches(lambda w, _n: self.synthesize(ctx, w), self.config.selection_batch_size,
                                   latents)
        return self.score_and_output(ctx, images, targets, keys)

    @torch.no_grad()
    def score_and_output(self, ctx: AttackContext, images: torch.Tensor, targets: torch.Tensor,
                         keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output-size images, final-selection scores) for generator images (N,3,R,R) in [0,1]."""
        cfg = self.config
        seed = self.seed_for(ctx, "final-selection")
        view = self.target_view(ctx)
        targets = targets.to(images.device)

        def confidence(imgs: torch.Tensor, k: torch.Tensor, t: torch.Tensor, v: int, n: int) -> torch.Tensor:
            x = random_resized_crop(view(imgs), seed, k, v, cfg.final_scale, cfg.final_ratio, cfg.final_flip)
            logits = ctx.access.logits(x, count=n)
            return torch.softmax(logits.float(), 1).gather(1, t.view(-1, 1)).squeeze(1).cpu()

        scores = torch.zeros(len(images))
        for v in range(cfg.final_views):
            scores += map_fixed_batches(lambda i, k, t, n, v=v: confidence(i, k, t, v, n),
                                        cfg.selection_batch_size, images, keys, targets)
        scores /= max(cfg.final_views, 1)
        scores[~torch.isfinite(images.flatten(1).sum(1)).cpu()] = float("nan")
        return self._view(ctx, ctx.output_size)(images).cpu(), scores


ATTACKS.register("ppa", description=PPAttack.description)(PPAttack)
