"""Sample grids of a prior (`mibench zoo preview`), truncated as the card says — the same
truncation the attacks use."""

from __future__ import annotations

from pathlib import Path

import torch

from mibench.cards import GeneratorCard
from mibench.ops import rng
from mibench.ops.imaging import grid, save_png
from mibench.ops.transforms import to_unit
from mibench.registry import GENERATORS
from mibench.zoo.priors import load_prior


@torch.no_grad()
def sample_grid(card: GeneratorCard, out: str | Path, rows: int = 8, cols: int = 8, psi: float | None = None,
                cutoff: int | None | str = "card", seed: int = 0, device: torch.device | str = "cpu") -> Path:
    """Write a rows × cols grid of samples of the prior `card` (built first if needed); ψ and the
    cutoff default to the card's."""
    G, _ = load_prior(card, device)
    psi = card.truncation_psi if psi is None else psi
    cutoff = card.truncation_cutoff if cutoff == "card" else cutoff
    z = rng.normal_matrix(rng.stream_seed(seed, "preview"), torch.arange(rows * cols), G.z_dim).to(device)
    imgs = to_unit(GENERATORS.get(card.kind).sample(G, z, psi=psi, cutoff=cutoff)).cpu()
    scale = max(1, 96 // G.img_resolution)
    return save_png(grid([imgs[r * cols:(r + 1) * cols] for r in range(rows)]), out, scale=scale)
