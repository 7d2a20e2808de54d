"""StyleGAN2 residual discriminator (stylegan2-ada-pytorch layout and parameter names), pure PyTorch.

FromRGB at the input resolution, residual blocks with FIR down-sampling down to 8 px, then an
epilogue at 4 px: minibatch standard deviation, 3x3 conv, fully-connected layer and the output
(projected onto a mapped class embedding when conditional). Used by `mibench.generators.train`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mibench.generators.stylegan2 import (
    Conv2dLayer,
    FullyConnectedLayer,
    MappingNetwork,
    downsample2d,
    setup_filter,
)


class DiscriminatorBlock(nn.Module):
    """One resolution: (FromRGB) + conv 3x3 + conv 3x3 with 2x FIR down-sampling (+ residual skip)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int,
                 img_channels: int, first_layer_idx: int, architecture: str = "resnet",
                 activation: str = "lrelu", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = None, use_fp16: bool = False, fp16_channels_last: bool = False,
                 freeze_layers: int = 0):
        if in_channels not in (0, tmp_channels):
            raise ValueError("in_channels must be 0 (first block) or tmp_channels")
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16  # recorded only; computation is float32
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_layers = 0

        def trainable() -> bool:  # Freeze-D: the first `freeze_layers` layers become buffers
            idx = self.first_layer_idx + self.num_layers
            self.num_layers += 1
            return idx >= freeze_layers

        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                                       trainable=trainable(), conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
                                 trainable=trainable(), conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                                 trainable=trainable(), resample_filter=resample_filter, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    trainable=trainable(), resample_filter=resample_filter)

    def forward(self, x: Tensor | None, img: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """x: (N, in_channels, R, R) or None; img: (N, C, R, R) -> (x (N, out, R/2, R/2), img or None)."""
        if x is not None:
            x = x.to(torch.float32)
        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(torch.float32)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv0(x)
            x = self.conv1(x)
        return x, img


class MinibatchStdLayer(nn.Module):
    """Appends the per-group standard deviation of features (averaged over channels and pixels) as channels."""

    def __init__(self, group_size: int | None, num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C, H, W) -> (N, C + num_channels, H, W)."""
        n, c, h, w = x.shape
        g = n if self.group_size is None else min(self.group_size, n)
        while n % g:  # the official layer needs N divisible by the group; pick the largest divisor instead
            g -= 1
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])  # (n/g, F)
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4 px head: minibatch-stddev, conv, fully-connected, output (projection on cmap if conditional)."""

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: str = "resnet", mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1,
                 activation: str = "lrelu", conv_clamp: float | None = None):
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = (MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
                      if mbstd_num_channels > 0 else None)
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3,
                                activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: Tensor, img: Tensor | None, cmap: Tensor | None) -> Tensor:
        """x: (N, C, 4, 4) -> logits (N, 1)."""
        x = x.to(torch.float32)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(torch.float32))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """StyleGAN2 discriminator: img (N, C, R, R) [, c (N, c_dim)] -> real/fake logits (N, 1)."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int, architecture: str = "resnet",
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 0,
                 conv_clamp: float | None = None, cmap_dim: int | None = None,
                 block_kwargs: dict[str, Any] | None = None, mapping_kwargs: dict[str, Any] | None = None,
                 epilogue_kwargs: dict[str, Any] | None = None):
        if img_resolution < 8 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two ≥ 8, got {img_resolution}")
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0, channels[res],
                                       channels[res // 2], resolution=res, first_layer_idx=layer_idx,
                                       use_fp16=res >= fp16_resolution, **(block_kwargs or {}), **common)
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4,
                                        **(epilogue_kwargs or {}), **common)

    def forward(self, img: Tensor, c: Tensor | None = None) -> Tensor:
        """img: (N, C, R, R) in [-1, 1]; c: (N, c_dim) when conditional -> logits (N, 1)."""
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
