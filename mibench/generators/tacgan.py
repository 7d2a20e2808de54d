"""T-ACGAN (LOKT, Nguyen et al., NeurIPS 2023): a class-conditional ResNet GAN whose auxiliary
classifier learns the *target's* decision from hard labels, trained on public data.

This module owns the networks, their training and the on-disk cache of the target-independent
warm-up:

- `TACGANGenerator` G(z, y): z (128-d) → 4×4 features → residual up-sampling blocks (bilinear ×2,
  as the SN-GAN-projection code LOKT builds on) with class-conditional batch norm (shared affine +
  per-class offsets, zero-initialised) → BN → ReLU → 1×1 conv → tanh image at 32 or 64 px (any
  power of two ≥ 8). `y=None` uses the shared affine only (the unconditional warm-up generator).
- `TACGANDiscriminator`: spectral-norm residual down-sampling blocks, ReLU + global sum pooling, a
  real/fake head and an auxiliary classifier head over the target's classes.
- `train_tacgan`: (1) an unconditional warm-up — the adversarial loss only, no target queries,
  cached under `cache_dir()/lokt/` keyed by (public images, architecture, warm-up recipe, seed,
  code version), so every target trained on the same public data shares it; (2) target-labelled
  training — every discriminator step labels fresh fakes G(z, y) with the target's hard label
  ŷ = labeler(G(z, y)) and adds w·CE(D_cls(fake), ŷ) (published code: w = α); the generator step
  adds α·CE(D_cls(G(z, y)), y). The adversarial loss is the published non-saturating BCE
  (`gan_loss="bce"`) or the hinge loss (`"hinge"`, a named option).
  Finally the generator's batch-norm running statistics are re-estimated ("standing statistics")
  so that eval mode — where samples do not interact — renders as well as training mode.

Parameters whose name contains `class_` are class-specific (per-class batch-norm offsets, the
auxiliary head); the warm-up checkpoint holds everything else, so it does not depend on the
number of target classes. Every random draw comes from explicit seeded generators.

Differences from the published code, on purpose: the published warm-up keeps feeding random class
labels to the generator; mibench's warm-up is truly unconditional (`y=None`), which is what makes it
shareable across targets. Within an iteration the published code takes the generator step before
the `n_dis` discriminator steps, mibench after them (the same alternation, shifted by one step).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from mibench.errors import CardError, CheckpointError
from mibench.generators.base import PriorKind
from mibench.ops.cache import Artifact, ArtifactCache
from mibench.ops.fileio import atomic_write_bytes
from mibench.registry import GENERATORS
from mibench.seeding import derive_seed, make_generator

CLASS_KEY = "class_"  # parameter names containing this are class-specific (not in the warm-up)
MAX_MULT = 16  # channel multiplier cap (at 4 px: 16 × width)


def _levels(resolution: int) -> int:
    """Number of ×2 steps between 4 px and `resolution` (a power of two ≥ 8)."""
    n = int(round(math.log2(resolution / 4))) if resolution >= 8 else 0
    if n < 1 or 4 * 2 ** n != resolution:
        raise CardError(f"T-ACGAN resolution must be a power of two ≥ 8, got {resolution}", field="resolution")
    return n


def _init_(module: nn.Module) -> nn.Module:
    """Xavier-uniform weights (gain √2 for 3×3 convolutions, which feed a ReLU; 1 otherwise), zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            gain = math.sqrt(2.0) if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) else 1.0
            nn.init.xavier_uniform_(m.weight, gain=gain)
            nn.init.zeros_(m.bias)
    return module


# ------------------------------------------------------------------------------------------ generator

class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose affine is a shared (gain, bias) plus per-class offsets (zero at init).

    (N, C, H, W), labels (N,) or None → (N, C, H, W); None applies the shared affine only."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.class_gain = nn.Parameter(torch.zeros(num_classes, channels))
        self.class_bias = nn.Parameter(torch.zeros(num_classes, channels))

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = self.norm(x)
        gain, bias = self.weight.view(1, -1), self.bias.view(1, -1)
        if y is not None:
            gain = gain + self.class_gain[y]
            bias = bias + self.class_bias[y]
        return h * gain[:, :, None, None] + bias[:, :, None, None]


class GBlock(nn.Module):
    """Residual up-sampling block: CBN → ReLU → ×2 up → conv3 → CBN → ReLU → conv3, plus up → conv1."""

    def __init__(self, cin: int, cout: int, num_classes: int, upsample: str):
        super().__init__()
        self.upsample = upsample
        self.bn1 = ConditionalBatchNorm2d(cin, num_classes)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.bn2 = ConditionalBatchNorm2d(cout, num_classes)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def _up(self, x: Tensor) -> Tensor:
        if self.upsample == "nearest":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = self.conv1(self._up(torch.relu(self.bn1(x, y))))
        h = self.conv2(torch.relu(self.bn2(h, y)))
        return h + self.shortcut(self._up(x))


class TACGANGenerator(nn.Module):
    """G(z (N, z_dim), y (N,) or None) → images (N, 3, R, R) in [−1, 1].

    Channels: width × (2^L, …, 2, 1) from 4 px to R = 4 · 2^L (capped at 16 × width)."""

    def __init__(self, num_classes: int, resolution: int = 64, z_dim: int = 128, width: int = 64,
                 upsample: Literal["nearest", "bilinear"] = "bilinear", out_kernel: int = 1):
        super().__init__()
        if upsample not in ("nearest", "bilinear"):
            raise CardError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}", field="upsample")
        n = _levels(resolution)
        chans = [width * min(2 ** (n - i), MAX_MULT) for i in range(n + 1)]
        self.num_classes, self.z_dim, self.img_resolution, self.width = int(num_classes), int(z_dim), resolution, width
        self.upsample, self.out_kernel = upsample, int(out_kernel)
        self.fc = nn.Linear(z_dim, 16 * chans[0])
        self.blocks = nn.ModuleList(GBlock(chans[i], chans[i + 1], num_classes, upsample) for i in range(n))
        self.out_norm = nn.BatchNorm2d(chans[-1])
        self.out_conv = nn.Conv2d(chans[-1], 3, self.out_kernel, 1, self.out_kernel // 2)
        _init_(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.fc(z).view(z.shape[0], -1, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out_conv(torch.relu(self.out_norm(h))))

    def spec(self) -> dict[str, Any]:
        """Constructor arguments (recorded next to saved weights)."""
        return {"num_classes": self.num_classes, "resolution": self.img_resolution, "z_dim": self.z_dim,
                "width": self.width, "upsample": self.upsample, "out_kernel": self.out_kernel}


# ------------------------------------------------------------------------------------------ discriminator

class DBlock(nn.Module):
    """Spectral-norm residual block: (ReLU) → conv3 → ReLU → conv3 (→ avg-pool /2), plus a 1×1 shortcut.

    The first block skips the leading ReLU (its input is the image) and pools before its shortcut."""

    def __init__(self, cin: int, cout: int, downsample: bool, first: bool = False):
        super().__init__()
        self.downsample, self.first = downsample, first
        self.conv1 = spectral_norm(_init_(nn.Conv2d(cin, cout, 3, 1, 1)))
        self.conv2 = spectral_norm(_init_(nn.Conv2d(cout, cout, 3, 1, 1)))
        self.shortcut = spectral_norm(_init_(nn.Conv2d(cin, cout, 1))) if (cin != cout or downsample) else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x if self.first else torch.relu(x))
        h = self.conv2(torch.relu(h))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.first:
            s = self.shortcut(F.avg_pool2d(s, 2))
        elif self.shortcut is not None:
            s = self.shortcut(s)
            if self.downsample:
                s = F.avg_pool2d(s, 2)
        return h + s


class TACGANDiscriminator(nn.Module):
    """Images (N, 3, R, R) in [−1, 1] → (real/fake score (N,), class logits (N, num_classes)).

    Channels width × (1, 2, 4, …) while halving down to 4 px, then one block at 4 px; ReLU and a
    global sum pool feed a spectral-norm real/fake head and a plain linear auxiliary classifier."""

    def __init__(self, num_classes: int, resolution: int = 64, width: int = 64):
        super().__init__()
        n = _levels(resolution)
        chans = [width * min(2 ** i, MAX_MULT) for i in range(n + 1)]
        self.num_classes, self.img_resolution, self.width = int(num_classes), resolution, width
        blocks = [DBlock(3, chans[0], downsample=True, first=True)]
        blocks += [DBlock(chans[i - 1], chans[i], downsample=i < n) for i in range(1, n + 1)]
        self.blocks = nn.Sequential(*blocks)
        self.rf_head = spectral_norm(_init_(nn.Linear(chans[-1], 1)))
        self.class_head = nn.Linear(chans[-1], num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Pooled features (N, C)."""
        return torch.relu(self.blocks(x)).sum(dim=(2, 3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.features(x)
        return self.rf_head(f).squeeze(1), self.class_head(f)

    def spec(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"num_classes": self.num_classes, "resolution": self.img_resolution, "width": self.width}


# ------------------------------------------------------------------------------------------ configs

@dataclass
class TACGANArch:
    """Network sizes (paper: 64 px, z 128, 64 base channels for G and D, bilinear up-sampling, a 1×1
    output convolution)."""

    resolution: int = 64
    z_dim: int = 128
    g_width: int = 64
    d_width: int = 64
    upsample: Literal["nearest", "bilinear"] = "bilinear"
    out_kernel: int = 1  # generator's output convolution (published: 1; 3 is a named option)

    def validate(self) -> None:
        try:
            _levels(self.resolution)
        except CardError as exc:
            raise ValueError(f"resolution: {exc.args[0]}") from None
        if min(self.z_dim, self.g_width, self.d_width) < 1:
            raise ValueError("z_dim: z_dim, g_width and d_width must be positive")
        if self.out_kernel not in (1, 3):
            raise ValueError("out_kernel: must be 1 (published) or 3")
        if self.upsample not in ("nearest", "bilinear"):
            raise ValueError("upsample: must be 'nearest' or 'bilinear'")


@dataclass
class TACGANRecipe:
    """Training schedule (paper: Adam 2e-4, betas (0, 0.9), 5 D steps per G step, batch 128, α 1.5,
    non-saturating BCE adversarial loss, the discriminator's class loss weighted by α too)."""

    warmup_steps: int = 1000  # generator steps of the unconditional warm-up (no target queries)
    steps: int = 19000  # generator steps of target-labelled training
    batch_size: int = 128
    n_dis: int = 5  # discriminator steps per generator step; each labels `batch_size` fresh fakes
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.9)
    alpha: float = 1.5  # weight of the generator's CE(D_cls(G(z, y)), y)
    d_cls_weight: float | None = None  # weight of the discriminator's CE(D_cls(fake), ŷ); None: α (published)
    gan_loss: Literal["bce", "hinge"] = "bce"  # adversarial loss (published: non-saturating BCE)
    real_flip: bool = True  # random horizontal flips of real images
    calibration_batches: int = 20  # batches for the generator's standing batch-norm statistics
    channels_last: bool = True  # NHWC convolutions: markedly faster on CPU (oneDNN) and recent GPUs
    ema_beta: float | None = None  # exponential moving average of G's weights (None: use G itself)
    log_every: int = 50

    def validate(self) -> None:
        if self.warmup_steps < 0 or self.steps < 0:
            raise ValueError("steps: warmup_steps and steps must be ≥ 0")
        if self.batch_size < 2:
            raise ValueError("batch_size: must be ≥ 2 (batch norm)")
        if self.n_dis < 1:
            raise ValueError("n_dis: must be ≥ 1")
        if self.gan_loss not in ("bce", "hinge"):
            raise ValueError("gan_loss: must be 'bce' (published) or 'hinge'")
        if self.ema_beta is not None and not 0.0 <= self.ema_beta < 1.0:
            raise ValueError("ema_beta: must be in [0, 1) or null")

    def class_weight_d(self) -> float:
        """The discriminator's class-loss weight (α unless set)."""
        return self.alpha if self.d_cls_weight is None else self.d_cls_weight

    def queries(self, num_steps: int | None = None) -> int:
        """Target queries of target-labelled training: steps × n_dis × batch_size."""
        return (self.steps if num_steps is None else num_steps) * self.n_dis * self.batch_size


WARMUP_FIELDS = ("warmup_steps", "batch_size", "n_dis", "lr_g", "lr_d", "betas", "real_flip", "channels_last",
                 "ema_beta", "gan_loss")


def build_models(num_classes: int, arch: TACGANArch, seed: int,
                 device: str | torch.device = "cpu") -> tuple[TACGANGenerator, TACGANDiscriminator]:
    """(G, D) initialised from `seed` (the caller's global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("tacgan-init", seed))
        G = TACGANGenerator(num_classes, arch.resolution, arch.z_dim, arch.g_width, arch.upsample, arch.out_kernel)
        D = TACGANDiscriminator(num_classes, arch.resolution, arch.d_width)
    return G.to(device), D.to(device)


class TACGANKind(PriorKind):
    """T-ACGAN (LOKT): trained per target by the LOKT attack (with the target's labels), never by the zoo."""

    name = "tacgan"
    description = ("T-ACGAN (LOKT): conditional ResNet generator with class-conditional batch norm, trained "
                   "with target hard labels")
    trained_by_zoo = False

    def build(self, params: dict[str, Any], resolution: int) -> TACGANGenerator:
        """A freshly initialised generator; params: num_classes (required), z_dim, width, upsample,
        out_kernel, seed."""
        params = dict(params)
        if "num_classes" not in params:
            raise CardError("a tacgan generator needs params.num_classes", field="params.num_classes")
        allowed = {"num_classes", "z_dim", "width", "upsample", "out_kernel", "seed"}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise CardError(f"unknown tacgan parameter '{unknown[0]}'", field=f"params.{unknown[0]}",
                            fix=f"allowed: {', '.join(sorted(allowed))}")
        arch = TACGANArch(resolution=resolution, z_dim=int(params.get("z_dim", 128)),
                          g_width=int(params.get("width", 64)), upsample=params.get("upsample", "bilinear"),
                          out_kernel=int(params.get("out_kernel", 1)))
        arch.validate()
        return build_models(int(params["num_classes"]), arch, int(params.get("seed", 0)))[0]


GENERATORS.register("tacgan", description=TACGANKind.description)(TACGANKind())


# ------------------------------------------------------------------------------------------ state helpers

def class_free_state(module: nn.Module) -> dict[str, Tensor]:
    """The state dict without class-specific entries (CPU, contiguous copies)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items() if CLASS_KEY not in k}


def load_class_free_state(module: nn.Module, state: dict[str, Tensor]) -> None:
    """Load a class-free state; every missing key must be class-specific."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    bad = [k for k in missing if CLASS_KEY not in k] + list(unexpected)
    if bad:
        raise CheckpointError(f"T-ACGAN state does not fit the network: {bad[:3]}",
                              fix="delete the cached warm-up so it is trained again")


def reset_class_params(G: TACGANGenerator, D: TACGANDiscriminator, seed: int) -> None:
    """Class-specific parameters to their initial values: zero CBN offsets, a seeded linear head."""
    gen = make_generator("tacgan-class-head", seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if CLASS_KEY in name:
                p.zero_()
        w = D.class_head.weight
        bound = 1.0 / math.sqrt(w.shape[1])
        w.copy_((torch.rand(w.shape, generator=gen) * 2 - 1) * bound)
        D.class_head.bias.copy_((torch.rand(D.class_head.bias.shape, generator=gen) * 2 - 1) * bound)


def images_digest(images: Tensor) -> str:
    """sha256 (hex) of a uint8 image tensor's bytes and shape: identifies the public training data."""
    h = hashlib.sha256(json.dumps(list(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ training

@dataclass
class TACGANResult:
    """The trained networks (eval mode) and a JSON-able summary."""

    G: TACGANGenerator
    D: TACGANDiscriminator
    summary: dict[str, Any] = field(default_factory=dict)


class _Sampler:
    """Seeded draws for one training phase: latents, classes and real batches (all on the CPU)."""

    def __init__(self, seed: int, phase: str, real: Tensor, z_dim: int, num_classes: int, flip: bool):
        self.gen = make_generator("tacgan-train", seed, phase)
        self.real, self.z_dim, self.num_classes, self.flip = real, z_dim, num_classes, flip

    def latents(self, n: int) -> tuple[Tensor, Tensor]:
        z = torch.randn(n, self.z_dim, generator=self.gen)
        y = torch.randint(0, max(self.num_classes, 1), (n,), generator=self.gen)
        return z, y

    def real_batch(self, n: int, device: torch.device) -> Tensor:
        idx = torch.randint(0, self.real.shape[0], (n,), generator=self.gen)
        x = self.real[idx].to(device).float() / 127.5 - 1.0
        if self.flip:
            flip = (torch.rand(n, generator=self.gen) < 0.5).to(device)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        return x


def _d_loss(real: Tensor, fake: Tensor, kind: str) -> Tensor:
    """Discriminator adversarial loss on raw scores of real and generated images: BCE (sigmoid
    targets 1 for real, 0 for generated) or hinge."""
    if kind == "bce":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    return torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()


def _g_loss(fake: Tensor, kind: str) -> Tensor:
    """Generator adversarial loss on the scores of its images: non-saturating BCE (target 1) or
    hinge (−score)."""
    return F.softplus(-fake).mean() if kind == "bce" else -fake.mean()


def _adam(params, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(float(betas[0]), float(betas[1])))


@torch.no_grad()
def _ema_update(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """G_ema ← β·G_ema + (1 − β)·G (parameters); buffers are copied."""
    for pe, p in zip(G_ema.parameters(), G.parameters()):
        pe.lerp_(p, 1.0 - beta)
    for be, b in zip(G_ema.buffers(), G.buffers()):
        be.copy_(b)


def _train_phase(G: TACGANGenerator, D: TACGANDiscriminator, real: Tensor, recipe: TACGANRecipe, *,
                 steps: int, seed: int, phase: str, device: torch.device,
                 labeler: Callable[[Tensor], Tensor] | None, progress: bool,
                 G_ema: TACGANGenerator | None = None) -> dict[str, Any]:
    """One phase of GAN training; conditional (T-ACGAN) when `labeler` is given. `G_ema`, when
    given, tracks the exponential moving average of G with `recipe.ema_beta`."""
    from tqdm import tqdm

    cond = labeler is not None
    sampler = _Sampler(seed, phase, real, G.z_dim, G.num_classes, recipe.real_flip)
    opt_g = _adam(G.parameters(), recipe.lr_g, recipe.betas)
    opt_d = _adam(D.parameters(), recipe.lr_d, recipe.betas)
    bs = recipe.batch_size
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    G.to(memory_format=fmt).train()
    D.to(memory_format=fmt).train()
    history: list[dict[str, float]] = []
    sums: dict[str, float] = {}
    count = 0
    queries = 0
    t0 = time.perf_counter()
    bar = tqdm(total=steps, desc=f"T-ACGAN {phase}", disable=not progress, unit="step", leave=False)
    for step in range(steps):
        for _ in range(recipe.n_dis):
            z, y = sampler.latents(bs)
            x_real = sampler.real_batch(bs, device).contiguous(memory_format=fmt)
            with torch.no_grad():
                fake = G(z.to(device), y.to(device) if cond else None)
                y_hat = labeler(((fake + 1) * 0.5).clamp(0, 1)).to(device) if cond else None
            queries += bs if cond else 0
            rf, logits = D(torch.cat([x_real, fake]))
            d_loss = _d_loss(rf[:bs], rf[bs:], recipe.gan_loss)
            if cond:
                d_cls = F.cross_entropy(logits[bs:], y_hat)
                d_loss = d_loss + recipe.class_weight_d() * d_cls
                sums["d_cls"] = sums.get("d_cls", 0.0) + float(d_cls.detach())
                sums["target_agrees"] = sums.get("target_agrees", 0.0) + float((y_hat == y.to(device)).float().mean())
                sums["d_cls_acc"] = sums.get("d_cls_acc", 0.0) + float((logits[bs:].argmax(1) == y_hat).float().mean())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            sums["d_loss"] = sums.get("d_loss", 0.0) + float(d_loss.detach())
            sums["d_real"] = sums.get("d_real", 0.0) + float(rf[:bs].detach().mean())
            sums["d_fake"] = sums.get("d_fake", 0.0) + float(rf[bs:].detach().mean())
            count += 1
        z, y = sampler.latents(bs)
        y_dev = y.to(device)
        fake = G(z.to(device), y_dev if cond else None)
        rf, logits = D(fake)
        g_loss = _g_loss(rf, recipe.gan_loss)
        if cond:
            g_cls = F.cross_entropy(logits, y_dev)
            g_loss = g_loss + recipe.alpha * g_cls
            sums["g_cls"] = sums.get("g_cls", 0.0) + float(g_cls.detach()) * recipe.n_dis
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if G_ema is not None:
            _ema_update(G_ema, G, recipe.ema_beta)
        sums["g_loss"] = sums.get("g_loss", 0.0) + float(g_loss.detach()) * recipe.n_dis
        if not all(math.isfinite(v) for v in sums.values()):
            raise FloatingPointError(f"T-ACGAN {phase} diverged at step {step + 1} (loss is not finite): "
                                     "lower the learning rates")
        bar.update(1)
        if (step + 1) % recipe.log_every == 0 or step + 1 == steps:
            row = {k: round(v / count, 4) for k, v in sums.items()}
            row["step"] = step + 1
            history.append(row)
            if progress:
                bar.set_postfix({k: f"{v:.2f}" for k, v in row.items() if k in ("d_loss", "g_loss", "target_agrees")})
            sums, count = {}, 0
    bar.close()
    G.eval()
    D.eval()
    return {"steps": steps, "seconds": round(time.perf_counter() - t0, 2), "queries": queries, "history": history}


@torch.no_grad()
def calibrate_batchnorm(G: TACGANGenerator, batches: int, batch_size: int, seed: int,
                        device: str | torch.device = "cpu") -> None:
    """Re-estimate G's batch-norm running statistics as exact averages over `batches` random batches
    (z ~ N(0, I), uniform classes), then leave G in eval mode."""
    if batches <= 0:
        G.eval()
        return
    gen = make_generator("tacgan-calibrate", seed)
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    G.train()
    try:
        for _ in range(batches):
            z = torch.randn(batch_size, G.z_dim, generator=gen)
            y = torch.randint(0, G.num_classes, (batch_size,), generator=gen)
            G(z.to(device), y.to(device))
    finally:
        for m, mom in zip(norms, saved):
            m.momentum = mom
        G.eval()


WARMUPS = ArtifactCache("lokt", shippable=True)
WarmupState = dict[str, dict[str, Tensor]]  # {"G": …, "G_ema": …, "D": …}, class-free state dicts


def warmup_artifact(digest: str, arch: TACGANArch, recipe: TACGANRecipe, seed: int) -> Artifact:
    """The cached warm-up for this public data / architecture / recipe / seed (and this module's code)."""
    return WARMUPS.artifact(f"tacgan-warmup-r{arch.resolution}", {
        "data": digest, "arch": asdict(arch), "recipe": {k: getattr(recipe, k) for k in WARMUP_FIELDS},
        "seed": seed}, code=("mibench.generators.tacgan",))


def _read_warmup(art: Artifact) -> tuple[WarmupState, dict[str, Any]]:
    from safetensors.torch import load_file

    summary = art.meta()["summary"]  # checks the sha256 (a damaged file is one clear error)
    state: WarmupState = {"G": {}, "G_ema": {}, "D": {}}
    for k, v in load_file(str(art.file(".safetensors"))).items():
        net, _, name = k.partition("/")
        if net in state:
            state[net][name] = v
    return state, summary


def warmup(real: Tensor, arch: TACGANArch, recipe: TACGANRecipe, *, seed: int = 0,
           device: str | torch.device = "cpu", progress: bool = True,
           cache: bool = True) -> tuple[WarmupState, dict[str, Any]]:
    """Class-free states of G, G_ema and D after the unconditional warm-up on `real` (uint8
    (N, 3, R, R)), and a summary. Loaded from the cache when present; otherwise trained (no target
    involved) and cached. Without EMA, G_ema is G."""

    device = torch.device(device)
    if not cache:
        return _warmup_train(real, arch, recipe, seed, device, progress)
    art = warmup_artifact(images_digest(real), arch, recipe, seed)
    trained: dict[str, Any] = {}

    def build(a: Artifact):
        from safetensors.torch import save

        state, summary = _warmup_train(real, arch, recipe, seed, device, progress)
        trained["state"] = state
        atomic_write_bytes(a.file(".safetensors"),
                           save({f"{net}/{k}": v for net, sd in state.items() for k, v in sd.items()}))
        return [".safetensors"], {"summary": summary, "arch": asdict(arch), "seed": seed,
                                  "recipe": {k: getattr(recipe, k) for k in WARMUP_FIELDS}}

    # Runs started together (suite workers, torchrun ranks) share one warm-up: the first trains it.
    meta = WARMUPS.get_or_build(art, build)
    if "state" in trained:
        return trained["state"], {**meta["summary"], "cached": False, "cache_file": str(art.file(".safetensors"))}
    state, summary = _read_warmup(art)
    return state, {**summary, "cached": True, "cache_file": str(art.file(".safetensors"))}


def _warmup_train(real: Tensor, arch: TACGANArch, recipe: TACGANRecipe, seed: int, device: torch.device,
                  progress: bool) -> tuple[WarmupState, dict[str, Any]]:
    """Train the unconditional warm-up."""
    G, D = build_models(1, arch, seed, device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if recipe.ema_beta is not None else None
    summary = _train_phase(G, D, real, recipe, steps=recipe.warmup_steps, seed=seed, phase="warmup",
                           device=device, labeler=None, progress=progress, G_ema=G_ema)
    state: WarmupState = {"G": class_free_state(G), "G_ema": class_free_state(G_ema if G_ema is not None else G),
                          "D": class_free_state(D)}
    return state, summary


def train_tacgan(real: Tensor, labeler: Callable[[Tensor], Tensor], num_classes: int, arch: TACGANArch,
                 recipe: TACGANRecipe, *, seed: int = 0, device: str | torch.device = "cpu",
                 progress: bool = True, cache: bool = True) -> TACGANResult:
    """Train a T-ACGAN on public images `real` (uint8 (N, 3, R, R), R = arch.resolution).

    `labeler(images (B, 3, R, R) in [0, 1]) -> hard labels (B,)` is the only contact with the target;
    it is called once per discriminator step of the target-labelled phase (`recipe.queries()` images
    in all), never during the warm-up. The returned G is the EMA generator when `recipe.ema_beta` is
    set, with standing batch-norm statistics, in eval mode."""
    device = torch.device(device)
    if real.dtype != torch.uint8 or real.ndim != 4 or real.shape[-1] != arch.resolution:
        raise ValueError(f"real images must be uint8 (N, 3, {arch.resolution}, {arch.resolution}), "
                         f"got {real.dtype} {tuple(real.shape)}")
    state, warm = warmup(real, arch, recipe, seed=seed, device=device, progress=progress, cache=cache)
    G, D = build_models(num_classes, arch, seed, device)
    load_class_free_state(G, state["G"])
    load_class_free_state(D, state["D"])
    reset_class_params(G, D, seed)
    G_ema = None
    if recipe.ema_beta is not None:
        G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        load_class_free_state(G_ema, state["G_ema"])
    cond = _train_phase(G, D, real, recipe, steps=recipe.steps, seed=seed, phase="conditional", device=device,
                        labeler=labeler, progress=progress, G_ema=G_ema)
    final = G_ema if G_ema is not None else G
    # Back to the default layout: a network reloaded from disk then computes bit-identically.
    final.to(memory_format=torch.contiguous_format).requires_grad_(True)
    D.to(memory_format=torch.contiguous_format)
    calibrate_batchnorm(final, recipe.calibration_batches, recipe.batch_size, seed, device)
    tail = cond["history"][-max(1, len(cond["history"]) // 5):]
    summary = {"warmup": warm, "conditional": cond, "queries": cond["queries"],
               "final_target_agreement": (sum(r.get("target_agrees", 0.0) for r in tail) / len(tail)
                                          if tail else None)}
    return TACGANResult(final.eval(), D.eval(), summary)
