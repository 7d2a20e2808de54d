"""Identity losses that drive generative model inversion: Poincaré (PPA), cross-entropy and
max-margin (logit) loss. All return per-sample losses (N,) so batches can be summed without
coupling samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mibench.registry import Registry

LOSSES: Registry = Registry("identity loss")


@LOSSES.register("poincare", description="Poincaré distance of L1-normalised logits to the one-hot target (PPA)")
def poincare_loss(logits: torch.Tensor, targets: torch.Tensor, xi: float = 1e-4) -> torch.Tensor:
    """Poincaré loss (N,): u = logits/‖logits‖₁, v = clip(onehot − ξ, 0, 1),
    d = arccosh(1 + 2‖u − v‖² / ((1 − ‖u‖²)(1 − ‖v‖²))).

    Computed in float64: 1 − ‖v‖² ≈ 2ξ is too small for float32 to resolve."""
    dtype = logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32
    logits = logits.double()
    u = logits / logits.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
    v = (F.one_hot(targets, logits.shape[1]).double() - xi).clamp(0.0, 1.0)
    u_sq = (u * u).sum(dim=1)
    v_sq = (v * v).sum(dim=1)
    diff_sq = ((u - v) ** 2).sum(dim=1)
    delta = 2 * diff_sq / ((1 - u_sq) * (1 - v_sq)).clamp_min(1e-12)
    return torch.acosh(1 + delta).to(dtype)


@LOSSES.register("ce", description="cross-entropy to the target class")
def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (N,)."""
    return F.cross_entropy(logits.float(), targets, reduction="none")


@LOSSES.register("max_margin", description="max-margin logit loss: −z_y + max_{j≠y} z_j (PLG-MI, LOKT)")
def max_margin_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Max-margin (logit) loss (N,): the best other logit minus the target logit."""
    logits = logits.float()
    target_logit = logits.gather(1, targets.view(-1, 1)).squeeze(1)
    others = logits.masked_fill(F.one_hot(targets, logits.shape[1]).bool(), float("-inf"))
    return others.max(dim=1).values - target_logit
