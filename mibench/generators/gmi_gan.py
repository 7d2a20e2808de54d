"""The GMI prior (Zhang et al., CVPR 2020, "The Secret Revealer"): a DCGAN-style generator and a
WGAN-GP critic trained on public images, wrapped as one module (`GMIPrior`) that attacks use.

Networks, as in the authors' code (`AI-secure/GMI-Attack`, Celeba/; the generator's parameter
names match it, the critic's single `ls` Sequential is split into `layer1` / `layer2` here and
renamed on loading, so the authors' checkpoints load):

- `GMIGenerator` z (N, z_dim) → linear (no bias) → BN1d → ReLU → (top, 4, 4) with
  top = dim · 2^(L−1), L = log2(R / 4) → L−1 × [5×5 transposed conv stride 2 (no bias), BN, ReLU],
  halving the channels → 5×5 transposed conv to 3 channels → sigmoid. At 64 px with dim 64 this
  is the published 512 → 256 → 128 → 64 → 3 network; 32 px drops the first up-sampling block.
- `GMICritic` x (N, 3, R, R) → 5×5 conv stride 2 + LeakyReLU(0.2) → L−1 × [5×5 conv stride 2,
  InstanceNorm (affine), LeakyReLU(0.2)], doubling the channels → 4×4 conv to one score (N,).

Both work in the published [0, 1] image range internally; `GMIPrior` speaks mibench's prior
convention ([−1, 1] images): `GMIPrior(z) = 2·G(z) − 1` and `critic(x) = D((x + 1) / 2)`.
Initialisation is PyTorch's default, as in the GMI code (no DCGAN normal init there).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from mibench.errors import CardError


def gan_levels(resolution: int) -> int:
    """Number of ×2 steps between 4 px and `resolution` (a power of two ≥ 8)."""
    n = int(round(math.log2(resolution / 4))) if resolution >= 8 else 0
    if n < 1 or 4 * 2 ** n != resolution:
        raise CardError(f"GMI GAN resolution must be a power of two ≥ 8, got {resolution}", field="resolution")
    return n


class GMIGenerator(nn.Module):
    """DCGAN-style generator: z (N, z_dim) → images (N, 3, R, R) in [0, 1] (sigmoid output)."""

    def __init__(self, z_dim: int = 100, dim: int = 64, resolution: int = 64):
        super().__init__()
        levels = gan_levels(resolution)
        self.z_dim, self.dim, self.resolution = z_dim, dim, resolution
        self.top = dim * 2 ** (levels - 1)
        self.l1 = nn.Sequential(nn.Linear(z_dim, self.top * 16, bias=False), nn.BatchNorm1d(self.top * 16), nn.ReLU())
        blocks: list[nn.Module] = []
        c = self.top
        for _ in range(levels - 1):
            blocks.append(nn.Sequential(
                nn.ConvTranspose2d(c, c // 2, 5, 2, padding=2, output_padding=1, bias=False),
                nn.BatchNorm2d(c // 2), nn.ReLU()))
            c //= 2
        blocks += [nn.ConvTranspose2d(c, 3, 5, 2, padding=2, output_padding=1), nn.Sigmoid()]
        self.l2_5 = nn.Sequential(*blocks)

    def forward(self, z: Tensor) -> Tensor:
        """Images (N, 3, R, R) in [0, 1]."""
        return self.l2_5(self.l1(z).view(z.shape[0], self.top, 4, 4))


class GMICritic(nn.Module):
    """WGAN-GP critic: images (N, 3, R, R) in [0, 1] → scores (N,) (higher = more real)."""

    def __init__(self, dim: int = 64, resolution: int = 64):
        super().__init__()
        levels = gan_levels(resolution)
        self.layer1 = nn.Sequential(nn.Conv2d(3, dim, 5, 2, 2), nn.LeakyReLU(0.2))
        blocks: list[nn.Module] = []
        c = dim
        for _ in range(levels - 1):
            blocks.append(nn.Sequential(nn.Conv2d(c, 2 * c, 5, 2, 2), nn.InstanceNorm2d(2 * c, affine=True),
                                        nn.LeakyReLU(0.2)))
            c *= 2
        blocks.append(nn.Conv2d(c, 1, 4))
        self.layer2 = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """Scores (N,)."""
        return self.layer2(self.layer1(x)).view(-1)


class GMIPrior(nn.Module):
    """The GMI generator and critic as one prior: images in [−1, 1], a per-image realism score.

    Shapes: z (N, z_dim) → images (N, 3, R, R) in [−1, 1]; `critic(x)` (N, 3, R, R) → (N,)."""

    def __init__(self, z_dim: int = 100, g_dim: int = 64, d_dim: int = 64, resolution: int = 64):
        super().__init__()
        self.G = GMIGenerator(z_dim, g_dim, resolution)
        self.D = GMICritic(d_dim, resolution)
        self.z_dim = z_dim
        self.img_resolution = resolution
        self.init_kwargs = {"z_dim": z_dim, "g_dim": g_dim, "d_dim": d_dim, "resolution": resolution}

    def forward(self, z: Tensor) -> Tensor:
        """Images (N, 3, R, R) in [−1, 1]."""
        return self.G(z) * 2 - 1

    def critic(self, x: Tensor) -> Tensor:
        """The critic's score (N,) of images in [−1, 1]."""
        return self.D((x + 1) * 0.5)


PARAMS = ("z_dim", "g_dim", "d_dim")


def prior_kwargs(params: dict[str, Any], resolution: int, path: str | None = None) -> dict[str, Any]:
    """`GMIPrior` constructor arguments from a card's params (the paper's sizes by default)."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise CardError(f"unknown GMI GAN parameter '{unknown[0]}'", path=path, field=f"params.{unknown[0]}",
                        fix=f"allowed: {', '.join(PARAMS)}")
    out = {"z_dim": 100, "g_dim": 64, "d_dim": 64, **{k: int(v) for k, v in params.items()}, "resolution": resolution}
    for k in PARAMS:
        if out[k] < 1:
            raise CardError(f"{k} must be positive", path=path, field=f"params.{k}")
    gan_levels(resolution)
    return out


def build_prior(params: dict[str, Any], resolution: int, seed: int | None = None,
                path: str | None = None) -> GMIPrior:
    """A freshly initialised `GMIPrior` (weights from `seed` when given; global RNG untouched)."""
    kwargs = prior_kwargs(params, resolution, path)
    if seed is None:
        return GMIPrior(**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GMIPrior(**kwargs)
