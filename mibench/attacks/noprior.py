"""No-prior control: PPA's loss, budget and selection, but optimising the pixels themselves — no
generator, no image prior.

The control that tests the evaluation: an attack that has no way to produce a face can still push
the target (and, through transferring adversarial features, the evaluation model) to the attacked
class. High evaluator accuracy with chance-level ground-truth identity recovery is a Type-I false
positive of the evaluation (Ho et al., 2025) shown in one row. Not a published attack: a baseline
of mibench, with PPA's preset for the budget (search space, candidates, steps, final selection).

Images are sigmoid(θ) with pixel logits θ (N, 3·R·R) at the target's input size; the search
space draws θ ~ N(0, `init_std`²) per pixel. The one departure from PPA's optimiser setting is
the learning rate (`lr`, 0.5 in every preset): Adam's steps are in logit units here, where PPA's
0.005–0.01 in w space leaves the pixels almost where they started. Measured on the undefended
embedded target (quick protocol, seed 0): acc@1 11.2 / 16.2 / 26.2 / 17.5 / 22.5 % at lr 0.01 /
0.1 / 0.5 / 1 / 2 (±15–19 points over 10 classes); the control uses the strongest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mibench.attacks.base import AttackContext
from mibench.attacks.ppa import PPA_PRESETS, PPAConfig, PPAttack
from mibench.ops import rng
from mibench.ops.transforms import View
from mibench.registry import ATTACKS

PIXEL_LR = 0.5


@dataclass
class NoPriorConfig(PPAConfig):
    """PPA's configuration (truncation and noise fields unused) plus the pixel initialisation."""

    init_std: float = 1.0  # std of the initial pixel logits

    def validate(self) -> None:
        super().validate()
        if self.init_std < 0:
            raise ValueError("init_std: must be ≥ 0")


# PPA's budgets, with the pixel-space learning rate.
NOPRIOR_PRESETS: dict[str, dict[str, Any]] = {name: {**p, "lr": PIXEL_LR} for name, p in PPA_PRESETS.items()}


class NoPriorAttack(PPAttack):
    """Pixel-space optimisation with PPA's Poincaré loss, budget and final selection (no prior)."""

    name = "noprior"
    description = "No-prior control: PPA's loss and budget on raw pixels (no generator) — tests the evaluation"
    config_cls = NoPriorConfig
    presets = NOPRIOR_PRESETS
    needs_prior = False
    prior_fields = ()
    cost = 0.5  # no generator: the target's forward and backward only
    # A control of the evaluation, not an attack the regression check guards: run it by name
    # (`mibench run --attack ppa,ifgmi,lokt,noprior`).
    in_default_suite = False

    def _side(self, ctx: AttackContext) -> int:
        return ctx.access.input_size

    def _view(self, ctx: AttackContext, size: int) -> View:
        return View(center_crop=None, size=size)

    def synthesize(self, ctx: AttackContext, w: torch.Tensor, clip: bool = True) -> torch.Tensor:
        """Images (N, 3, R, R) in [0, 1] from pixel logits (N, 3·R·R)."""
        r = self._side(ctx)
        return torch.sigmoid(w.float()).view(-1, 3, r, r)

    def candidate_images(self, ctx: AttackContext, ws: torch.Tensor) -> torch.Tensor:
        """The image of each pixel-logit row."""
        return self.synthesize(ctx, ws)

    def search_space(self, ctx: AttackContext, n: int) -> torch.Tensor:
        """`n` random pixel-logit images (n, 3·R·R); depends only on the run seed."""
        r = self._side(ctx)
        return self.config.init_std * rng.normal_matrix(rng.stream_seed(ctx.seed, "noprior", "search-space"),
                                                        torch.arange(n), 3 * r * r).to(ctx.device)

    def search_batch(self, ctx: AttackContext, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pixel logits are their own starting latents."""
        return z, self.synthesize(ctx, z)


ATTACKS.register("noprior", description=NoPriorAttack.description)(NoPriorAttack)
