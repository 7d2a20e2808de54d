"""`mid_vib`: Mutual Information regularisation based Defense (MID) with a variational information bottleneck.

Wang, Zhang, Jia: "Improving Robustness to Model Inversion Attacks via Mutual
Information Regularization" (AAAI 2021). The head becomes a VIB head: features → Linear → (μ, raw),
σ = softplus(raw − 5), z = μ + σ·ε, logits = Linear(z). The loss adds β·KL(N(μ, σ²) ‖ N(0, I))
(summed over z's dimensions, averaged over the batch), limiting how much the prediction depends on
the input.

As in the reference code, z is sampled at test time too (`test_sampling: true`, the default) and
the bottleneck is half the feature dimension (`bottleneck_dim: null`). The test-time ε is drawn from
the counter RNG keyed by each row's μ (and `noise_seed`), so a query gives the same answer however it
is batched — deterministic per input, stochastic across inputs, like a fresh draw per query.
`test_sampling: false` is the deterministic variant (z = μ at test time), a named departure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mibench.classifiers.base import HEADS, Classifier
from mibench.defenses.base import Defense, DefenseContext, accuracy
from mibench.errors import MIBenchError
from mibench.ops import rng
from mibench.registry import DEFENSES
from mibench.seeding import make_generator

PAPER = ("Wang, Zhang, Jia: Improving Robustness to Model Inversion Attacks via Mutual Information "
         "Regularization (AAAI 2021)")


@HEADS.register("vib", description="variational information bottleneck head (MID)")
class VIBHead(nn.Module):
    """Features (N, D) → (μ, σ) of a k-dim Gaussian → z → logits (N, K)."""

    classes_key = "classifier.weight"

    def __init__(self, feature_dim: int, num_classes: int, bottleneck_dim: int | None = None,
                 test_sampling: bool = False, noise_seed: int = 0):
        super().__init__()
        self.bottleneck_dim = int(bottleneck_dim) if bottleneck_dim else max(1, feature_dim // 2)
        self.test_sampling, self.noise_seed = bool(test_sampling), int(noise_seed)
        self.encoder = nn.Linear(feature_dim, 2 * self.bottleneck_dim)
        self.classifier = nn.Linear(self.bottleneck_dim, num_classes)

    def stats(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ), each (N, k); σ = softplus(raw − 5) starts small, as in the paper's code."""
        mu, raw = self.encoder(f).split(self.bottleneck_dim, dim=1)
        return mu, F.softplus(raw - 5.0)

    def forward_stats(self, f: torch.Tensor, noise: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits (N, K), μ, σ); in training z = μ + σ·noise (noise ~ N(0, I) when None); in eval
        z = μ + σ·ε with ε keyed by μ when `test_sampling`, else z = μ."""
        mu, std = self.stats(f)
        if self.training:
            eps = noise if noise is not None else torch.randn_like(std)
            z = mu + std * eps
        elif self.test_sampling:
            z = mu + std * keyed_noise(mu.detach(), self.noise_seed)
        else:
            z = mu
        return self.classifier(z), mu, std

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) of features (N, D)."""
        return self.forward_stats(f)[0]

    def spec(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild this head."""
        return {"kind": "vib", "bottleneck_dim": self.bottleneck_dim, "test_sampling": self.test_sampling,
                "noise_seed": self.noise_seed}

    @classmethod
    def from_spec(cls, feature_dim: int, num_classes: int, spec: dict[str, Any]) -> VIBHead:
        """Rebuild from `spec()` output."""
        return cls(feature_dim, num_classes, int(spec["bottleneck_dim"]), bool(spec.get("test_sampling", False)),
                   int(spec.get("noise_seed", 0)))


def keyed_noise(mu: torch.Tensor, seed: int, quantum: float = 1 / 64) -> torch.Tensor:
    """Standard normal noise (N, k) whose row i depends only on μ's row i (on a grid of `quantum`, so
    rounding differences between batch sizes do not change it) and `seed`."""
    bits = torch.round(mu.float() / quantum).long().cpu()  # (N, k)
    weights = rng.hash_bits(seed, torch.arange(bits.shape[1]))  # a fixed odd-ish multiplier per column
    keys = (bits * (weights | 1)).sum(dim=1)  # wrapping int64 arithmetic: a hash of the row
    return rng.normal_matrix(seed, keys, bits.shape[1]).to(mu.device, mu.dtype)


def gaussian_kl(mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over dimensions, averaged over the batch; μ, σ (N, k)."""
    var = std * std
    return 0.5 * (mu * mu + var - 1.0 - torch.log(var.clamp_min(1e-24))).sum(dim=1).mean()


@dataclass
class MIDParams:
    """β weighs the KL term (paper range 0.003–0.01); `bottleneck_dim` is k (null: half the feature
    dimension, as in the reference code); `test_sampling` samples z at test time too (reference)."""

    beta: float = 0.003
    bottleneck_dim: int | None = None
    test_sampling: bool = True
    noise_seed: int = 0

    def validate(self) -> None:
        if self.beta < 0:
            raise ValueError("beta: must be ≥ 0")
        if self.bottleneck_dim is not None and self.bottleneck_dim < 1:
            raise ValueError("bottleneck_dim: must be ≥ 1 (or null: half the feature dimension)")


@DEFENSES.register("mid_vib", paper=PAPER,
                   description="MID: variational information bottleneck head, CE + β·KL")
class MIDVIB(Defense):
    """Replaces the head with a `VIBHead` and adds β·KL to the cross-entropy."""

    kind = "mid_vib"
    paper = PAPER
    Params = MIDParams
    needs_prepare = True

    def __init__(self, params: Any = None, *, path: Any = None):
        super().__init__(params, path=path)
        self._noise_gen: torch.Generator | None = None

    def _head(self, model: Classifier) -> VIBHead:
        p = self.params
        return VIBHead(model.feature_dim, model.num_classes, p.bottleneck_dim, p.test_sampling, p.noise_seed)

    def adapt_architecture(self, model: Classifier) -> Classifier:
        if not isinstance(model.head, VIBHead):
            model.set_head(self._head(model))
        return model

    def _prepare(self, model: Classifier, ctx: DefenseContext) -> Classifier:
        # Seeded head initialisation without disturbing the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            model.set_head(self._head(model))
        # Noise is drawn on the CPU from an explicit generator: identical on every device.
        self._noise_gen = make_generator("mid_vib-noise", ctx.seed)
        return model.to(ctx.device)

    def loss(self, model: Classifier, x: torch.Tensor, y: torch.Tensor,
             progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        head = model.head
        if not isinstance(head, VIBHead):
            raise MIBenchError("mid_vib: the model has no VIB head — call defense.prepare(model, ctx) first")
        f = model.features(x)
        noise = None
        if head.training and self._noise_gen is not None:
            noise = torch.randn(f.shape[0], head.bottleneck_dim, generator=self._noise_gen)
            noise = noise.to(f.device, f.dtype)
        logits, mu, std = head.forward_stats(f, noise)
        ce = F.cross_entropy(logits, y)
        kl = gaussian_kl(mu, std)
        return ce + self.params.beta * kl, {"ce": float(ce.detach()), "kl": float(kl.detach()),
                                            "acc": accuracy(logits, y)}
