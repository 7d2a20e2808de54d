"""Batched image transforms used inside attacks: the fixed generator→target view (centre crop +
resize), and random resized crops / flips, brightness–contrast jitter and small rotations whose
parameters come from counter-based random numbers, so each sample's augmentation depends only on
its own (class, candidate, step) key."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mibench.ops import rng


@dataclass(frozen=True)
class View:
    """The deterministic view of generator output fed to the target: centre crop, then resize."""

    center_crop: int | None = None  # pixels at generator resolution (PPA: 800 of 1024)
    size: int = 224

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to images (N, C, H, W); returns (N, C, size, size)."""
        if self.center_crop is not None and self.center_crop < x.shape[-1]:
            c = self.center_crop
            top, left = (x.shape[-2] - c) // 2, (x.shape[-1] - c) // 2
            x = x[..., top:top + c, left:left + c]
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.size)
        return x


def random_resized_crop(x: torch.Tensor, seed: int, keys: torch.Tensor, step: int,
                        scale: tuple[float, float], ratio: tuple[float, float], flip: bool = False,
                        out_size: int | None = None) -> torch.Tensor:
    """Random resized crop of each image (N, C, H, W) → (N, C, out, out), like torchvision's
    RandomResizedCrop (area fraction ~ U(scale), log aspect ~ U(log ratio)); crops that would leave
    the image are shrunk to fit instead of re-drawn. Optional random horizontal flip.
    `keys` (N,) identify the samples; `step` makes each call's draw different."""
    n = x.shape[0]
    out_size = out_size or x.shape[-1]
    u = [rng.uniform(seed, keys.to(torch.long), step, slot).to(x.device) for slot in range(5)]
    area = scale[0] + (scale[1] - scale[0]) * u[0]
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1]
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (2 * u[2] - 1) * (1 - w)
    cy = (2 * u[3] - 1) * (1 - h)
    sx = torch.where(u[4] < 0.5, -w, w) if flip else w
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = sx.to(x.dtype)
    theta[:, 0, 2] = cx.to(x.dtype)
    theta[:, 1, 1] = h.to(x.dtype)
    theta[:, 1, 2] = cy.to(x.dtype)
    grid = F.affine_grid(theta, [n, x.shape[1], out_size, out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


# Random-number slots per (key, step): 0-4 belong to `random_resized_crop`, the rest to these.
_SLOT_JITTER_APPLY, _SLOT_BRIGHTNESS, _SLOT_CONTRAST = 5, 6, 7
_SLOT_ROTATE_APPLY, _SLOT_ANGLE = 8, 9


def keyed_color_jitter(x: torch.Tensor, seed: int, keys: torch.Tensor, step: int, brightness: float,
                       contrast: float, p: float = 1.0) -> torch.Tensor:
    """Brightness then contrast jitter of images (N, C, H, W) in [0, 1], with probability `p` per
    image, torchvision semantics: x·b with b ~ U(1 − brightness, 1 + brightness), then a blend with
    the image's mean grey level by c ~ U(1 − contrast, 1 + contrast); clamped to [0, 1]."""
    if brightness <= 0 and contrast <= 0:
        return x
    k = keys.to(torch.long)

    def factor(slot: int, span: float) -> torch.Tensor:
        u = rng.uniform(seed, k, step, slot).to(x.device, x.dtype)
        return (1 - span + 2 * span * u).view(-1, 1, 1, 1)

    b, c = factor(_SLOT_BRIGHTNESS, brightness), factor(_SLOT_CONTRAST, contrast)
    y = (x * b).clamp(0, 1)
    grey = (0.299 * y[:, 0:1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:3]).mean(dim=(2, 3), keepdim=True)
    y = ((y - grey) * c + grey).clamp(0, 1)
    if p < 1.0:
        off = (rng.uniform(seed, k, step, _SLOT_JITTER_APPLY) >= p).to(x.device).view(-1, 1, 1, 1)
        y = torch.where(off, x, y)
    return y


def keyed_rotation(x: torch.Tensor, seed: int, keys: torch.Tensor, step: int, degrees: float,
                   p: float = 0.5) -> torch.Tensor:
    """Rotate images (N, C, H, W) about their centre by θ ~ U(−degrees, degrees) with probability `p`
    per image (bilinear, zero fill outside the image, as kornia's RandomRotation)."""
    if degrees <= 0:
        return x
    k = keys.to(torch.long)
    angle = (2 * rng.uniform(seed, k, step, _SLOT_ANGLE) - 1) * math.radians(degrees)
    return rotate(x, angle, rng.uniform(seed, k, step, _SLOT_ROTATE_APPLY) < p)


def rotate(x: torch.Tensor, angle: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) where `apply` (N,) is set, rotated about their centre by `angle` (N,)
    radians (bilinear, zero fill outside the image, as kornia's RandomRotation); the others untouched."""
    cos, sin = torch.cos(angle).to(x.device, x.dtype), torch.sin(angle).to(x.device, x.dtype)
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    rotated = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return torch.where(apply.to(x.device).view(-1, 1, 1, 1), rotated, x)


def to_unit(img: torch.Tensor) -> torch.Tensor:
    """Generator output in [−1, 1] → images in [0, 1] (clamped)."""
    return ((img + 1) * 0.5).clamp(0, 1)
