"""mibench's own StyleGAN2 generator, state-dict compatible with stylegan2-ada-pytorch's `Generator`.

Pure PyTorch (no custom CUDA ops), runs on CPU and GPU. Module names, parameter / buffer names and
shapes, constructor arguments and the forward math follow the official network, so the `G_ema` state
dict of an official checkpoint loads unchanged (`mibench.generators.io` reads the `.pkl` safely).

Besides the official call style, the generator exposes the API the attacks use:
`mapping(z, c, psi, cutoff) -> ws`, `synthesize(ws) -> img`, and for IF-GMI the block-wise split
`features_at(ws, block=k) -> BlockState` / `synthesize_from(ws, block=k, state=...)`.

This module also holds the resampling / activation primitives (FIR up- and down-sampling, bias +
activation with gain and clamping, modulated convolution) that the discriminator reuses.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mibench.errors import CardError
from mibench.ops.demodulation import modulate, squared_modulated_norm

# ---------------------------------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Activation:
    fn: Callable[[Tensor, float], Tensor]
    alpha: float  # default negative slope (lrelu only)
    gain: float  # default gain that keeps the signal variance roughly constant


ACTIVATIONS: dict[str, _Activation] = {
    "linear": _Activation(lambda x, a: x, 0.0, 1.0),
    "relu": _Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": _Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": _Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": _Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": _Activation(lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": _Activation(lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": _Activation(lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": _Activation(lambda x, a: x * torch.sigmoid(x), 0.0, math.sqrt(2)),
}


def _activation(name: str) -> _Activation:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}' (known: {', '.join(sorted(ACTIVATIONS))})")
    return ACTIVATIONS[name]


def bias_act(x: Tensor, b: Tensor | None = None, dim: int = 1, act: str = "linear",
             alpha: float | None = None, gain: float | None = None, clamp: float | None = None) -> Tensor:
    """Add bias `b` along `dim`, apply `act`, scale by `gain`, then clamp to ±`clamp` (official order)."""
    spec = _activation(act)
    if b is not None:
        shape = [-1 if i == dim else 1 for i in range(x.ndim)]
        x = x + b.to(x.dtype).reshape(shape)
    x = spec.fn(x, spec.alpha if alpha is None else alpha)
    gain = spec.gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def setup_filter(taps: Sequence[float] | Tensor) -> Tensor:
    """A normalised 2-D FIR filter (outer product of 1-D `taps`), float32 (fh, fw) — the buffer layout."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f.reshape(1)
    if f.ndim == 1:
        f = torch.outer(f, f)
    if f.ndim != 2:
        raise ValueError(f"resample filter must be 1-D or 2-D, got shape {tuple(f.shape)}")
    return f / f.sum()


def _padding4(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    px0, px1, py0, py1 = padding
    return px0, px1, py0, py1


def upfirdn2d(x: Tensor, f: Tensor | None, up: int = 1, down: int = 1,
              padding: int | Sequence[int] = 0, gain: float = 1.0) -> Tensor:
    """Zero-insert up-sample, pad (negative = crop), convolve with FIR `f`, keep every `down`-th pixel.

    x: (N, C, H, W); f: (fh, fw) or None (identity); padding: (x0, x1, y0, y1) on the up-sampled image.
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = _padding4(padding)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    if f is not None:
        # A true convolution (flipped kernel), depthwise over channels.
        k = (f * gain).to(device=x.device, dtype=x.dtype).flip([0, 1])
        k = k[None, None].repeat(c, 1, 1, 1)
        x = F.conv2d(x, k, groups=c)
    elif gain != 1:
        x = x * gain
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: Tensor, f: Tensor, up: int = 2) -> Tensor:
    """FIR up-sampling by `up`: (N, C, H, W) -> (N, C, H·up, W·up), DC gain preserved."""
    fh, fw = f.shape
    p = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=up * up)


def downsample2d(x: Tensor, f: Tensor, down: int = 2) -> Tensor:
    """FIR down-sampling by `down`: (N, C, H, W) -> (N, C, H/down, W/down)."""
    fh, fw = f.shape
    p = [(fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=p)


def conv2d_resample(x: Tensor, w: Tensor, f: Tensor | None = None, up: int = 1, down: int = 1,
                    padding: int = 0, groups: int = 1, flip_weight: bool = True) -> Tensor:
    """2-D convolution with optional FIR up- or down-sampling, padding the input only once.

    x: (N, I·groups, H, W); w: (O, I, kh, kw). `flip_weight=True` is correlation (like F.conv2d).
    Mirrors the official op's case split so results match it numerically.
    """
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample: up- and down-sampling at once is not supported")
    out_channels, in_per_group, kh, kw = w.shape
    fh, fw = f.shape if f is not None else (1, 1)
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    def conv(inp: Tensor, weight: Tensor, flip: bool, **kw_) -> Tensor:
        if not flip and (weight.shape[2] > 1 or weight.shape[3] > 1):
            weight = weight.flip([2, 3])
        return F.conv2d(inp, weight, groups=groups, **kw_)

    if down > 1:
        if kh == 1 and kw == 1:  # 1x1: down-sample first, then convolve (cheaper)
            x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1])
            return conv(x, w, flip_weight)
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1])
        return conv(x, w, flip_weight, stride=down)

    if up > 1:
        if kh == 1 and kw == 1:  # 1x1: convolve first, then up-sample
            x = conv(x, w, flip_weight)
            return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up * up)
        # Transposed strided convolution, then the FIR filter on its output.
        if groups == 1:
            wt = w.transpose(0, 1)
        else:
            wt = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
            wt = wt.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        # conv_transpose2d is a true convolution w.r.t. the scattered kernel, so flipping is inverted.
        if flip_weight and (kh > 1 or kw > 1):
            wt = wt.flip([2, 3])
        x = F.conv_transpose2d(x, wt, stride=up, padding=[pyt, pxt], groups=groups)
        return upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up * up)

    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return conv(x, w, flip_weight, padding=[py0, px0])
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1])
    return conv(x, w, flip_weight)


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Scale `x` to unit mean square along `dim`."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _inverse_norm(wmod: Tensor) -> Tensor:
    """(N, O, I, kh, kw) -> (N, O): 1 / the L2 norm of each sample's output-channel filter."""
    return (wmod.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()


def demodulation_coefficients(weight: Tensor, styles: Tensor) -> Tensor:
    """weight (O, I, kh, kw), styles (N, I) -> (N, O): what the non-fused path multiplies each output
    channel by, bit for bit as the official code forms it from the per-sample modulated weights
    (in cache-sized blocks of samples on CPU: `mibench.ops.demodulation`)."""
    return (squared_modulated_norm(weight, styles) + 1e-8).rsqrt()


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, noise: Tensor | None = None, up: int = 1,
                     down: int = 1, padding: int = 0, resample_filter: Tensor | None = None,
                     demodulate: bool = True, flip_weight: bool = True, fused_modconv: bool = True) -> Tensor:
    """StyleGAN2 modulated (and optionally demodulated) convolution.

    x: (N, I, H, W); weight: (O, I, kh, kw); styles: (N, I); noise broadcastable to the output.
    `fused_modconv` folds the per-sample weights into one grouped convolution (same maths).
    """
    n = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if not fused_modconv:
        dcoefs = demodulation_coefficients(weight, styles) if demodulate else None
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    wmod = modulate(weight, styles)
    if demodulate:
        wmod = wmod * _inverse_norm(wmod).reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    wmod = wmod.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(x, wmod.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                        groups=n, flip_weight=flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


# ---------------------------------------------------------------------------------------------------
# Layers (official class and attribute names: they define the state-dict keys)
# ---------------------------------------------------------------------------------------------------


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate: weights stored at N(0, 1/lr²), scaled at run time."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        _activation(activation)
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, in_features) -> (N, out_features)."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Convolution with equalised learning rate, optional FIR up/down-sampling, bias, activation, clamp."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None,
                 channels_last: bool = False, trainable: bool = True):
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = _activation(activation).gain
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        bias_t = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_t) if bias_t is not None else None
        else:  # frozen layers (Freeze-D) keep their tensors as buffers, as the official code does
            self.register_buffer("weight", weight)
            if bias_t is not None:
                self.register_buffer("bias", bias_t)
            else:
                self.bias = None

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        """x: (N, I, H, W) -> (N, O, H·up/down, W·up/down)."""
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(x, w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down,
                            padding=self.padding, flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class MappingNetwork(nn.Module):
    """z (and optional class label c) -> w, broadcast to `num_ws` copies, with w_avg tracking and truncation."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1],
                                                          activation=activation, lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Tensor | None, c: Tensor | None = None, psi: float = 1.0, cutoff: int | None = None,
                *, truncation_psi: float | None = None, truncation_cutoff: int | None = None,
                skip_w_avg_update: bool = False) -> Tensor:
        """z: (N, z_dim), c: (N, c_dim) -> ws (N, num_ws, w_dim) (or (N, w_dim) when num_ws is None).

        Truncation pulls the first `cutoff` ws (all when None) towards w_avg: w_avg + psi·(w − w_avg).
        `truncation_psi` / `truncation_cutoff` are the official spellings of `psi` / `cutoff`.
        In training mode w_avg tracks the batch mean of w with decay `w_avg_beta`.
        """
        if truncation_psi is not None:
            psi = truncation_psi
        if truncation_cutoff is not None:
            cutoff = truncation_cutoff
        x = None
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"mapping: z must have shape (N, {self.z_dim}), got "
                                 f"{None if z is None else tuple(z.shape)}")
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"mapping: this generator is class-conditional; c must have shape "
                                 f"(N, {self.c_dim}), got {None if c is None else tuple(c.shape)}")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])

        if psi != 1:
            if self.w_avg_beta is None:
                raise ValueError("mapping: truncation needs w_avg, but this network does not track it")
            if self.num_ws is None or cutoff is None:
                x = self.w_avg.lerp(x, psi)
            else:  # out-of-place so gradients stay well defined
                x = torch.cat([self.w_avg.lerp(x[:, :cutoff], psi), x[:, cutoff:]], dim=1)
        return x


def _random_noise(shape: Sequence[int], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise drawn from `generator` (on its device), moved to `like`'s device."""
    if generator is None:
        return torch.randn(list(shape), device=like.device, dtype=like.dtype)
    noise = torch.randn(list(shape), generator=generator, device=generator.device, dtype=like.dtype)
    return noise.to(like.device)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x up-sampling) + per-pixel noise + bias + lrelu (with clamp)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None,
                 channels_last: bool = False):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = _activation(activation).gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random", fused_modconv: bool = True,
                gain: float = 1.0, noise_generator: torch.Generator | None = None) -> Tensor:
        """x: (N, I, R/up, R/up), w: (N, w_dim) -> (N, O, R, R)."""
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = _random_noise([x.shape[0], 1, self.resolution, self.resolution], x, noise_generator)
            noise = noise * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                             fused_modconv=fused_modconv)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv (no demodulation) from features to image channels."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None, channels_last: bool = False):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: Tensor, w: Tensor, fused_modconv: bool = True) -> Tensor:
        """x: (N, I, R, R), w: (N, w_dim) -> (N, img_channels, R, R)."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (const | up-conv) + conv + ToRGB skip output."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = None, use_fp16: bool = False, fp16_channels_last: bool = False,
                 **layer_kwargs: Any):
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        # Recorded for fidelity with the official config; mibench computes in float32 everywhere
        # (bf16 autocast on GPU is the caller's choice), so results do not depend on the device.
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter)

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor, fused_modconv: bool | None = None,
                noise_mode: str = "random", noise_generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor | None]:
        """x: (N, I, R/2, R/2) or None (first block); img: (N, C, R/2, R/2) or None;
        ws: (N, num_conv + num_torgb, w_dim) -> (x (N, O, R, R), img (N, C, R, R) or None)."""
        if ws.ndim != 3 or ws.shape[1] != self.num_conv + self.num_torgb or ws.shape[2] != self.w_dim:
            raise ValueError(f"block {self.resolution}: ws must be (N, {self.num_conv + self.num_torgb}, "
                             f"{self.w_dim}), got {tuple(ws.shape)}")
        w_iter = iter(ws.unbind(dim=1))
        if fused_modconv is None:
            # Same maths either way; the grouped (fused) convolution is only faster on GPU at inference.
            fused_modconv = (not self.training) and ws.is_cuda
        layer_kw = dict(fused_modconv=fused_modconv, noise_mode=noise_mode, noise_generator=noise_generator)

        if self.in_channels == 0:
            x = self.const.to(torch.float32).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            expected = (self.in_channels, self.resolution // 2, self.resolution // 2)
            if x is None or tuple(x.shape[1:]) != expected:
                raise ValueError(f"block {self.resolution}: x must be (N, {', '.join(map(str, expected))}), "
                                 f"got {None if x is None else tuple(x.shape)}")
            x = x.to(torch.float32)

        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), **layer_kw)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), **layer_kw)
            x = self.conv1(x, next(w_iter), gain=math.sqrt(0.5), **layer_kw)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), **layer_kw)
            x = self.conv1(x, next(w_iter), **layer_kw)

        if img is not None:
            img = upsample2d(img.to(torch.float32), self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws -> image through blocks at 4, 8, …, img_resolution.

    Block 0 reads ws[0:2] (conv1, torgb); block k ≥ 1 reads ws[2k−1 : 2k+2] (conv0, conv1, torgb), so
    a block's ToRGB shares its w with the next block's conv0, as in the official network.
    """

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, **block_kwargs: Any):
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two ≥ 4, got {img_resolution}")
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(in_channels, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last,
                                   use_fp16=res >= fp16_resolution, **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        """The synthesis blocks in order of resolution."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def split_ws(self, ws: Tensor) -> list[Tensor]:
        """ws (N, num_ws, w_dim) -> per-block views (N, num_conv + num_torgb, w_dim)."""
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must have shape (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        ws = ws.to(torch.float32)
        out, idx = [], 0
        for block in self.blocks():
            out.append(ws.narrow(1, idx, block.num_conv + block.num_torgb))
            idx += block.num_conv
        return out

    def run_blocks(self, ws: Tensor, start: int, stop: int, x: Tensor | None, img: Tensor | None,
                   **block_kwargs: Any) -> tuple[Tensor | None, Tensor | None]:
        """Run blocks [start, stop) from state (x, img); returns the state after block stop−1."""
        block_ws = self.split_ws(ws)
        for block, cur_ws in list(zip(self.blocks(), block_ws))[start:stop]:
            x, img = block(x, img, cur_ws, **block_kwargs)
        return x, img

    def forward(self, ws: Tensor, noise_mode: str = "const", fused_modconv: bool | None = None,
                noise_generator: torch.Generator | None = None, **_ignored: Any) -> Tensor:
        """ws: (N, num_ws, w_dim) -> img (N, img_channels, R, R) in about [-1, 1]."""
        _, img = self.run_blocks(ws, 0, len(self.block_resolutions), None, None, noise_mode=noise_mode,
                                 fused_modconv=fused_modconv, noise_generator=noise_generator)
        return img


@dataclass
class BlockState:
    """The synthesis state entering a block: feature map x (N, C, r, r) and RGB skip image (N, 3, r, r).

    Both are None before the first block. `img` is None for the 'orig' architecture (no skip images).
    """

    x: Tensor | None
    img: Tensor | None


class Generator(nn.Module):
    """StyleGAN2 generator: official constructor, module tree and state dict; attack-friendly API."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict[str, Any] | None = None, synthesis_kwargs: dict[str, Any] | None = None):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {})
        self.init_kwargs: dict[str, Any] = copy.deepcopy(dict(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs))
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution,
                                          img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **mapping_kwargs)

    @property
    def block_resolutions(self) -> list[int]:
        """Output resolution of each synthesis block: [4, 8, …, img_resolution]."""
        return list(self.synthesis.block_resolutions)

    @property
    def num_blocks(self) -> int:
        """Number of synthesis blocks (valid `block` indices for the block API are 0 … num_blocks)."""
        return len(self.synthesis.block_resolutions)

    def synthesize(self, ws: Tensor, noise_mode: str = "const", fused_modconv: bool | None = None,
                   noise_generator: torch.Generator | None = None) -> Tensor:
        """ws: (N, num_ws, w_dim) -> img (N, img_channels, R, R) in about [-1, 1]."""
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv,
                              noise_generator=noise_generator)

    def _check_block(self, block: int) -> None:
        if not 0 <= block <= self.num_blocks:
            raise ValueError(f"block must be in [0, {self.num_blocks}], got {block}")

    def features_at(self, ws: Tensor, block: int, noise_mode: str = "const", fused_modconv: bool | None = None,
                    noise_generator: torch.Generator | None = None) -> BlockState:
        """The state entering block `block` (index into block_resolutions); block=0 → BlockState(None, None).

        ws: (N, num_ws, w_dim). x is (N, C, r, r) with r = block_resolutions[block] // 2.
        """
        self._check_block(block)
        x, img = self.synthesis.run_blocks(ws, 0, block, None, None, noise_mode=noise_mode,
                                           fused_modconv=fused_modconv, noise_generator=noise_generator)
        return BlockState(x=x, img=img)

    def advance(self, ws: Tensor, state: BlockState, from_block: int, to_block: int, noise_mode: str = "const",
                fused_modconv: bool | None = None, noise_generator: torch.Generator | None = None) -> BlockState:
        """The state entering `to_block`, given `state` entering `from_block` (runs blocks in between)."""
        self._check_block(from_block)
        self._check_block(to_block)
        x, img = self.synthesis.run_blocks(ws, from_block, to_block, state.x, state.img, noise_mode=noise_mode,
                                           fused_modconv=fused_modconv, noise_generator=noise_generator)
        return BlockState(x=x, img=img)

    def synthesize_from(self, ws: Tensor, block: int, state: BlockState, noise_mode: str = "const",
                        fused_modconv: bool | None = None,
                        noise_generator: torch.Generator | None = None) -> Tensor:
        """Continue synthesis at block `block` from `state` (its x and RGB skip image) -> img (N, C, R, R).

        The skip image of the earlier blocks is carried through (the published IF-GMI code drops it,
        which changes the image even without any optimisation).
        """
        self._check_block(block)
        if block == self.num_blocks:
            if state.img is None:
                raise ValueError("synthesize_from: state after the last block has no image")
            return state.img
        _, img = self.synthesis.run_blocks(ws, block, self.num_blocks, state.x, state.img,
                                           noise_mode=noise_mode, fused_modconv=fused_modconv,
                                           noise_generator=noise_generator)
        return img

    def forward(self, z: Tensor, c: Tensor | None = None, psi: float = 1.0, cutoff: int | None = None,
                noise_mode: str = "const", *, truncation_psi: float | None = None,
                truncation_cutoff: int | None = None, fused_modconv: bool | None = None,
                noise_generator: torch.Generator | None = None) -> Tensor:
        """z: (N, z_dim), c: (N, c_dim) or None -> img (N, img_channels, R, R) in about [-1, 1]."""
        ws = self.mapping(z, c, psi=psi, cutoff=cutoff, truncation_psi=truncation_psi,
                          truncation_cutoff=truncation_cutoff)
        return self.synthesize(ws, noise_mode=noise_mode, fused_modconv=fused_modconv,
                               noise_generator=noise_generator)


# ---------------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------------

def small_prior_params(resolution: int = 32) -> dict[str, Any]:
    """Constructor args of the embedded prior, sized to train on 2 CPU cores in minutes.

    128-d z and w, a 2-layer mapping network, 32 channels up to the last block and 16 in it
    (channel_base = 16 · resolution). Wider nets (channel_max 128+) are 10x+ slower per step on CPU
    and reach far fewer steps in the same budget; see benchmarks/generator_throughput.py.
    """
    return {"z_dim": 128, "w_dim": 128, "mapping_kwargs": {"num_layers": 2},
            "synthesis_kwargs": {"channel_base": 16 * resolution, "channel_max": 32}}


SMALL_PRIOR_PARAMS: dict[str, Any] = small_prior_params(32)

_TOP_LEVEL_KEYS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
                   "synthesis_kwargs"}


def generator_kwargs(params: dict[str, Any], resolution: int) -> dict[str, Any]:
    """Card params (+ the card's resolution) -> full `Generator` constructor kwargs, official defaults filled."""
    unknown = set(params) - _TOP_LEVEL_KEYS
    if unknown:
        raise CardError(f"unknown StyleGAN2 parameter(s) {', '.join(sorted(unknown))}", field="params",
                        fix=f"use only {', '.join(sorted(_TOP_LEVEL_KEYS))}")
    if "img_resolution" in params and int(params["img_resolution"]) != resolution:
        raise CardError(f"params.img_resolution {params['img_resolution']} differs from resolution {resolution}",
                        field="params.img_resolution", fix="remove it or make the two agree")
    return dict(
        z_dim=int(params.get("z_dim", 512)),
        c_dim=int(params.get("c_dim", 0)),
        w_dim=int(params.get("w_dim", 512)),
        img_resolution=int(resolution),
        img_channels=int(params.get("img_channels", 3)),
        mapping_kwargs=dict(params.get("mapping_kwargs") or {}),
        synthesis_kwargs=dict(params.get("synthesis_kwargs") or {}),
    )
