"""`prior_sampling`: a black-box baseline — sample the prior, keep the samples the target is most
confident about for each class. One file, one registration."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mibench.attacks.base import Attack, ClassResult
from mibench.ops import rng
from mibench.ops.transforms import View, to_unit
from mibench.registry import ATTACKS


@dataclass
class PriorSamplingConfig:
    """How many prior samples to score and how many to keep per class."""

    samples: int = 32
    num_final: int = 4
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None

    def validate(self) -> None:
        if self.num_final > self.samples:
            raise ValueError("num_final: cannot exceed samples")


class PriorSampling(Attack):
    """Best-of-N prior samples by the target's soft output (black-box)."""

    name = "prior_sampling"
    description = "test plug-in: best prior samples by the target's confidence (black-box)"
    access_level = "black-box"
    config_cls = PriorSamplingConfig
    presets = {"synthfaces": {}, "facescrub": {"samples": 200, "num_final": 10}, "smoke": {"samples": 12,
                                                                                      "num_final": 2}}
    prior_fields = ("truncation_psi", "truncation_cutoff")
    in_default_suite = False

    @torch.no_grad()
    def attack_classes(self, ctx, classes):
        """Score the same samples for every class (keyed by the run seed only) and keep the best."""
        cfg, G = self.config, ctx.prior
        z = rng.normal_matrix(rng.stream_seed(ctx.seed, "prior_sampling"), torch.arange(cfg.samples), G.z_dim)
        ws = G.mapping(z.to(ctx.device), None, psi=cfg.truncation_psi, cutoff=cfg.truncation_cutoff)
        images = to_unit(G.synthesize(ws, noise_mode="const"))
        probs = ctx.access.probs(View(size=ctx.access.input_size)(images)).cpu()
        out = []
        for c in classes:
            order = torch.sort(probs[:, c], descending=True, stable=True).indices[: cfg.num_final]
            out.append(ClassResult(c, View(size=ctx.output_size)(images[order]).cpu(), ws[order, 0].cpu(),
                                   probs[order, c]))
        return out


ATTACKS.register("prior_sampling", description=PriorSampling.description)(PriorSampling)
