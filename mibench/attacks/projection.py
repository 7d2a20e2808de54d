"""Euclidean projection onto the L1 ball (Duchi et al., ICML 2008), batched per sample — the
constraint IF-GMI puts on how far intermediate features and latents may move in a stage."""

from __future__ import annotations

import torch


def project_l1_ball(v: torch.Tensor, radius: float | torch.Tensor) -> torch.Tensor:
    """Project each sample of `v` (N, ...) flattened onto {x : ‖x‖₁ ≤ radius}.

    Samples already inside are returned unchanged; the others land on the sphere ‖x‖₁ = radius at
    the Euclidean-nearest point (sort-based algorithm, O(d log d) per sample).
    """
    n = v.shape[0]
    flat = v.reshape(n, -1)
    radius_t = torch.as_tensor(radius, dtype=flat.dtype, device=flat.device).expand(n)
    abs_v = flat.abs()
    inside = abs_v.sum(dim=1) <= radius_t
    if bool(inside.all()):
        return v
    mu, _ = torch.sort(abs_v, dim=1, descending=True)
    cumsum = mu.cumsum(dim=1)
    ks = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
    cond = mu - (cumsum - radius_t.view(-1, 1)) / ks > 0
    rho = (cond * ks).argmax(dim=1)  # index of the last k where the condition holds
    theta = (cumsum.gather(1, rho.view(-1, 1)).squeeze(1) - radius_t) / (rho + 1).to(flat.dtype)
    projected = torch.sign(flat) * (abs_v - theta.view(-1, 1)).clamp_min(0)
    out = torch.where(inside.view(-1, 1), flat, projected)
    return out.view_as(v)
