"""Sample grids of a prior (`mibench zoo preview`)."""

from __future__ import annotations

from pathlib import Path

import torch

from mibench.attacks import rng
from mibench.attacks.transforms import to_unit
from mibench.cards import GeneratorCard
from mibench.imaging import grid, save_png


@torch.no_grad()
def sample_grid(card: GeneratorCard, out: str | Path, rows: int = 8, cols: int = 8, psi: float = 1.0,
                cutoff: int | None = None, seed: int = 0, device: torch.device | str = "cpu") -> Path:
    """Write a rows × cols grid of samples of the prior `card` (built first if needed)."""
    from mibench.zoo import load_prior

    G, _ = load_prior(card, device)
    z = rng.normal_matrix(rng.stream_seed(seed, "preview"), torch.arange(rows * cols), G.z_dim).to(device)
    imgs = to_unit(G(z, None, psi=psi, cutoff=cutoff, noise_mode="const")).cpu()
    scale = max(1, 96 // G.img_resolution)
    return save_png(grid([imgs[r * cols:(r + 1) * cols] for r in range(rows)]), out, scale=scale)
