"""PLG-MI's pseudo-label-guided conditional GAN (Yuan et al., AAAI 2023, "Pseudo Label-Guided Model
Inversion Attack via Conditional Generative Adversarial Network"), trained per target by the
`plgmi` attack on the public images it pseudo-labelled with the target.

This module owns the pseudo-label selection, the projection discriminator and the training loop;
the generator is T-ACGAN's (`TACGANGenerator`: the same SN-GAN-projection ResNet lineage).
Sources: `LetheSec/PLG-MI-Attack` — top_n_selection.py, train_cgan.py, losses.py, dataset.py,
models/generators/resnet64.py, models/discriminators/snresnet64.py + resblocks.py.

- `top_n_pseudo_labels`: for every class c independently, the n public images with the highest
  target softmax probability p_c (top_n_selection.py keeps a size-n priority queue per class over
  the column p_c): an image is *not* assigned to its argmax class, and one image can be selected
  for several classes. Here: most confident first; equal confidences keep the lower image index.
- `ProjectionDiscriminator` D(x, y): spectral-norm residual down-sampling blocks (T-ACGAN's
  `DBlock`; channels width × 1, 2, 4, 8, 16 down to 2 px at 64 px), ReLU, global sum pooling h,
  output linear(h) + ⟨embed(y), h⟩ (spectral-norm linear and embedding, Xavier-initialised).
- `train_plgmi_gan`: per iteration, first one generator step on fresh (z, y), y uniform:
  adversarial loss (hinge) + α·guide loss, where the guide is the attack's max-margin loss of the
  target on augmented fakes (one target query per fake); then `n_dis` discriminator steps on fresh
  fakes and a pseudo-labelled real batch — published order and loss. Real batches walk through
  seeded permutations of the pseudo-labelled set (the published infinite sampler) with
  dequantisation noise U(0, 1/256) added, as published.

Image range: the published code feeds D real images in [0, 1] and reads G's tanh output directly
as a [0, 1] image (its targets take [0, 1] inputs): `image_range="unit"`. `"symmetric"` (a named
option) is the usual convention instead: real images scaled to [−1, 1], images = (G + 1) / 2.

Deliberate differences from the published code (each is also stated where it is implemented):
- The generator is `TACGANGenerator`: its class-conditional batch norm is a shared affine plus
  per-class offsets (zero-initialised), where the published one has per-class gains and biases only
  (initialised to 1 and 0: the same function at initialisation); its convolutions are
  Xavier-initialised (the published `_initialize` is never called: PyTorch's default init).
- `DBlock`'s hidden convolution has the block's output width; the published discriminator block
  keeps the input width in its first convolution. D's biases start at zero (T-ACGAN's init; the
  published ones keep PyTorch's default); its Xavier weights are the published ones.
- The published loop also queries the target on every discriminator step's fakes, only to log how
  often the target agrees with the condition; mibench logs that agreement from the generator step's
  (augmented) fakes, which it queries anyway.
- Every random draw comes from explicit seeded generators (the published real-batch sampler
  reseeds numpy from the clock after its first epoch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from mibench.errors import CardError, DataError
from mibench.generators.tacgan import (
    MAX_MULT,
    DBlock,
    TACGANGenerator,
    _d_loss,
    _g_loss,
    _init_,
    _levels,
    calibrate_batchnorm,
)
from mibench.seeding import derive_seed, make_generator

# (fakes in [0, 1] (B, 3, R, R), their classes (B,), step) → (per-sample guide loss (B,), the target's
# predicted labels (B,)); the attack's contact with the target during GAN training.
Guide = Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]]


# ------------------------------------------------------------------------------------------ pseudo-labels

def top_n_pseudo_labels(probs: Tensor, n: int) -> Tensor:
    """Per class, the indices of the n public images with the highest probability of that class.

    `probs` (N, K) are the target's softmax outputs; returns (K, min(n, N)), most confident first,
    equal confidences in index order."""
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, K), got {tuple(probs.shape)}")
    k = min(int(n), probs.shape[0])
    return torch.sort(probs.t(), dim=1, descending=True, stable=True).indices[:, :k]


# ------------------------------------------------------------------------------------------ discriminator

class ProjectionDiscriminator(nn.Module):
    """D(x (N, 3, R, R), y (N,)) → realism scores (N,): linear(h) + ⟨embed(y), h⟩ on pooled
    spectral-norm ResNet features h (Miyato & Koyama's projection discriminator)."""

    def __init__(self, num_classes: int, resolution: int = 64, width: int = 64):
        super().__init__()
        n = _levels(resolution) + 1  # down-sampling blocks: 64 px → 2 px in five, as published
        chans = [width * min(2 ** i, MAX_MULT) for i in range(n)]
        self.num_classes, self.img_resolution, self.width = int(num_classes), resolution, width
        blocks = [DBlock(3, chans[0], downsample=True, first=True)]
        blocks += [DBlock(chans[i - 1], chans[i], downsample=True) for i in range(1, n)]
        self.blocks = nn.Sequential(*blocks)
        self.head = spectral_norm(_init_(nn.Linear(chans[-1], 1)))
        embed = nn.Embedding(num_classes, chans[-1])
        nn.init.xavier_uniform_(embed.weight)
        self.embed = spectral_norm(embed)

    def features(self, x: Tensor) -> Tensor:
        """Pooled features h (N, C): ReLU, then a global sum."""
        return torch.relu(self.blocks(x)).sum(dim=(2, 3))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Realism scores (N,) of images x for classes y."""
        h = self.features(x)
        return self.head(h).squeeze(1) + (self.embed(y) * h).sum(1)


def d_loss(real: Tensor, fake: Tensor, kind: str = "hinge") -> Tensor:
    """Discriminator loss on scores of real and generated images: hinge (published) mean relu(1 − real)
    + mean relu(1 + fake), or the BCE ("dcgan") loss."""
    return _d_loss(real, fake, kind)


def g_loss(fake: Tensor, kind: str = "hinge") -> Tensor:
    """Generator adversarial loss on the scores of its images: hinge −mean(fake), or non-saturating BCE."""
    return _g_loss(fake, kind)


# ------------------------------------------------------------------------------------------ config

@dataclass
class PLGMIGANRecipe:
    """Networks and training schedule; defaults are the published CelebA values (train_cgan.py)."""

    resolution: int = 64
    z_dim: int = 128  # --gen_dim_z
    g_width: int = 64  # --gen_num_features (4×4 features: 16 × 64 = 1024 channels)
    d_width: int = 64  # --dis_num_features
    steps: int = 30000  # --max_iteration (generator steps)
    batch_size: int = 64
    n_dis: int = 5
    lr: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.9)
    alpha: float = 0.2  # weight of the guide (max-margin) loss in the generator loss
    gan_loss: Literal["hinge", "bce"] = "hinge"  # published --loss_type default: hinge
    image_range: Literal["unit", "symmetric"] = "unit"  # see the module docstring
    dequantize: bool = True  # U(0, 1/256) noise on real images (published `_noise_adder`)
    calibration_batches: int = 0  # > 0: standing BN statistics after training (published: 0, running stats)
    channels_last: bool = True  # NHWC convolutions: markedly faster on CPU (oneDNN) and recent GPUs
    log_every: int = 100  # published --log_interval

    def validate(self) -> None:
        """Raise ValueError("field: message") for an unusable setting."""
        try:
            _levels(self.resolution)
        except CardError as exc:
            raise ValueError(f"resolution: {exc.args[0]}") from None
        if min(self.z_dim, self.g_width, self.d_width, self.n_dis) < 1 or self.steps < 0:
            raise ValueError("steps: z_dim, g_width, d_width and n_dis must be ≥ 1, steps ≥ 0")
        if self.batch_size < 2:
            raise ValueError("batch_size: must be ≥ 2 (batch norm)")
        if self.gan_loss not in ("hinge", "bce"):
            raise ValueError("gan_loss: must be 'hinge' (published) or 'bce'")
        if self.image_range not in ("unit", "symmetric"):
            raise ValueError("image_range: must be 'unit' (published) or 'symmetric'")

    def queries(self) -> int:
        """Target queries of training: one per generated image of a generator step."""
        return self.steps * self.batch_size


def to_image(g_out: Tensor, image_range: str) -> Tensor:
    """Generator output → image in [0, 1] scale (not clamped: the published loss sees it as is)."""
    return g_out if image_range == "unit" else (g_out + 1) * 0.5


def build_plgmi_gan(num_classes: int, recipe: PLGMIGANRecipe, seed: int,
                    device: str | torch.device = "cpu") -> tuple[TACGANGenerator, ProjectionDiscriminator]:
    """(G, D) initialised from `seed` (the caller's global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("plgmi-init", seed) & 0x7FFFFFFF)
        # Published generator: bilinear ×2 up-sampling, a 1×1 output convolution.
        G = TACGANGenerator(num_classes, recipe.resolution, recipe.z_dim, recipe.g_width, "bilinear", 1)
        D = ProjectionDiscriminator(num_classes, recipe.resolution, recipe.d_width)
    return G.to(device), D.to(device)


# ------------------------------------------------------------------------------------------ training

@dataclass
class PLGMIGAN:
    """The trained networks (eval mode) and a JSON-able summary."""

    G: TACGANGenerator
    D: ProjectionDiscriminator
    summary: dict[str, Any] = field(default_factory=dict)


class _RealStream:
    """Batches of the pseudo-labelled set walking through seeded permutations (batches may span two)."""

    def __init__(self, images: Tensor, labels: Tensor, gen: torch.Generator):
        self.images, self.labels, self.gen = images, labels, gen
        self.order, self.cursor = torch.randperm(len(images), generator=gen), 0

    def next(self, n: int) -> tuple[Tensor, Tensor]:
        """The next n (images, labels)."""
        idx = []
        while n > 0:
            if self.cursor == len(self.order):
                self.order, self.cursor = torch.randperm(len(self.images), generator=self.gen), 0
            take = self.order[self.cursor:self.cursor + n]
            self.cursor += len(take)
            n -= len(take)
            idx.append(take)
        i = torch.cat(idx)
        return self.images[i], self.labels[i]


def train_plgmi_gan(images: Tensor, labels: Tensor, num_classes: int, recipe: PLGMIGANRecipe, guide: Guide, *,
                    seed: int = 0, device: str | torch.device = "cpu", progress: bool = True) -> PLGMIGAN:
    """Train on pseudo-labelled public images (uint8 (M, 3, R, R), classes (M,)).

    `guide(fakes, y, step)` is the only contact with the target: called once per generator step on
    `batch_size` fakes (as [0, 1]-scale images), it returns their per-sample guide loss and the
    target's predicted labels. G comes back in eval mode (the batch-norm running statistics of
    training, or standing statistics with `calibration_batches`)."""
    from tqdm import tqdm

    recipe.validate()
    device = torch.device(device)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != recipe.resolution:
        raise ValueError(f"images must be uint8 (M, 3, {recipe.resolution}, {recipe.resolution}), "
                         f"got {images.dtype} {tuple(images.shape)}")
    if len(images) == 0 or len(images) != len(labels):
        raise DataError(f"{len(images)} pseudo-labelled images for {len(labels)} labels",
                        fix="give the GAN at least one public image per class")
    G, D = build_plgmi_gan(num_classes, recipe, seed, device)
    gen = make_generator("plgmi-train", seed)
    stream = _RealStream(images, labels.long(), gen)
    bs, kind, rng_range = recipe.batch_size, recipe.gan_loss, recipe.image_range
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    G.to(memory_format=fmt).train()
    D.to(memory_format=fmt).train()
    betas = (float(recipe.betas[0]), float(recipe.betas[1]))
    opt_g = torch.optim.Adam(G.parameters(), lr=recipe.lr, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=recipe.lr, betas=betas)

    def latents() -> tuple[Tensor, Tensor]:
        z = torch.randn(bs, recipe.z_dim, generator=gen)
        y = torch.randint(0, num_classes, (bs,), generator=gen)
        return z.to(device), y.to(device)

    def real_batch() -> tuple[Tensor, Tensor]:
        x, y = stream.next(bs)
        x = x.to(device).float() / 255.0
        if recipe.dequantize:
            x = x + torch.rand(x.shape, generator=gen).to(device) / 256.0
        if rng_range == "symmetric":
            x = x * 2 - 1
        return x.contiguous(memory_format=fmt), y.to(device)

    history: list[dict[str, float]] = []
    sums: dict[str, float] = {}
    count = 0
    t0 = time.perf_counter()
    bar = tqdm(total=recipe.steps, desc="PLG-MI GAN", disable=not progress, unit="step", leave=False)
    for step in range(recipe.steps):
        # Generator first, then n_dis discriminator steps (the published order within an iteration).
        # D's parameters need no gradient here; it stays in train mode (its spectral-norm power
        # iteration runs on every forward pass, as published).
        D.requires_grad_(False)
        z, y = latents()
        generated = G(z, y)
        adv = g_loss(D(generated, y), kind)
        inv, pred = guide(to_image(generated, rng_range), y, step)
        inv = inv.mean()
        loss = adv + recipe.alpha * inv
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        D.requires_grad_(True)
        sums["g_adv"] = sums.get("g_adv", 0.0) + float(adv.detach())
        sums["inv_loss"] = sums.get("inv_loss", 0.0) + float(inv.detach())
        sums["target_agrees"] = sums.get("target_agrees", 0.0) + float((pred.to(device) == y).float().mean())
        for _ in range(recipe.n_dis):
            z, y = latents()
            with torch.no_grad():
                generated = G(z, y)
            x_real, y_real = real_batch()
            d_generated, d_real = D(generated, y), D(x_real, y_real)  # two passes, as published
            loss_d = d_loss(d_real, d_generated, kind)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            sums["d_loss"] = sums.get("d_loss", 0.0) + float(loss_d.detach()) / recipe.n_dis
        count += 1
        if not all(math.isfinite(v) for v in sums.values()):
            raise FloatingPointError(f"PLG-MI GAN diverged at step {step + 1} (loss is not finite): lower lr")
        bar.update(1)
        if (step + 1) % recipe.log_every == 0 or step + 1 == recipe.steps:
            row = {k: round(v / count, 4) for k, v in sums.items()}
            row["step"] = step + 1
            row["seconds"] = round(time.perf_counter() - t0, 1)
            history.append(row)
            if progress:
                bar.set_postfix({k: f"{v:.2f}" for k, v in row.items() if k in ("d_loss", "inv_loss", "target_agrees")})
            sums, count = {}, 0
    bar.close()
    # Back to the default layout: a network reloaded from disk then computes bit-identically.
    G.to(memory_format=torch.contiguous_format)
    D.to(memory_format=torch.contiguous_format)
    if recipe.calibration_batches > 0:
        calibrate_batchnorm(G, recipe.calibration_batches, bs, seed, device)
    tail = history[-max(1, len(history) // 5):]
    summary = {"steps": recipe.steps, "seconds": round(time.perf_counter() - t0, 2), "queries": recipe.queries(),
               "pseudo_labelled_images": len(images), "history": history[-20:],
               "final_target_agreement": (round(sum(r["target_agrees"] for r in tail) / len(tail), 4)
                                          if tail else None)}
    return PLGMIGAN(G.eval().requires_grad_(False), D.eval().requires_grad_(False), summary)
