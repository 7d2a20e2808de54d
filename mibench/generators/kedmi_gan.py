"""KED-MI's inversion-specific GAN (Chen et al., ICCV 2021, "Knowledge-Enriched Distributional
Model Inversion Attacks"): GMI's generator against a discriminator that also learns the *target's*
soft labels of the public images (a semi-supervised "k+1" GAN), trained per target by the attack.

- `KEDMIDiscriminator` x (N, 3, R, R) in [0, 1] → (features (N, F), logits (N, K)): 4 × [conv,
  InstanceNorm (affine), LeakyReLU 0.2] with 5×5 / 5×5 / 5×5 / 3×3 kernels, stride 2, channels
  dim → 2·dim → 4·dim → 4·dim; the flattened features, minibatch discrimination (64 kernels × 50
  dims; Salimans et al. 2016) and a linear layer to K logits. "Fake" is no extra logit: the
  realism score is LSE(logits).
- `train_kedmi_gan`: per critic step on a labelled batch x, an unlabelled batch x_u and generated images,
  D loss = soft-CE(D(x), softmax T(x)) + ½·[mean softplus(LSE D(x_u)) − mean LSE D(x_u) +
  mean softplus(LSE D(G(z)))]; every `n_critic` steps the generator minimises the feature-matching
  loss |mean f(G(z)) − mean f(x_u2)|₁ (mean over features) + 1e-4 · Σ entropy(softmax D(G(z))).
  Adam 2e-4, betas (0.5, 0.999), batch 64, 120 epochs — the values of `SCccc21/Knowledge-Enriched-DMI`
  (config/celeba.json, k+1_gan.py, utils.py).

Minibatch discrimination couples the images of a batch. Training keeps that (it is the method);
attack-time scores use `batch_coupling=False` — each image's minibatch features are those of a
batch of one (zero) — so a class's reconstruction does not depend on which classes share its batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from mibench.errors import DataError
from mibench.generators.gmi_gan import GMIGenerator
from mibench.seeding import derive_seed


class MinibatchDiscrimination(nn.Module):
    """Salimans et al.'s minibatch features: x (N, A) → [x, o] (N, A + B), o_b(i) = Σ_{j≠i} exp(−‖M_i,b − M_j,b‖₁)."""

    def __init__(self, in_features: int, out_features: int = 64, kernel_dims: int = 50):
        super().__init__()
        self.out_features, self.kernel_dims = out_features, kernel_dims
        self.T = nn.Parameter(torch.randn(in_features, out_features, kernel_dims))  # N(0, 1) as published

    def forward(self, x: Tensor, batch_coupling: bool = True) -> Tensor:
        """(N, A) → (N, A + B); without coupling every o is that of a batch of one (0)."""
        if not batch_coupling:
            return torch.cat([x, x.new_zeros(x.shape[0], self.out_features)], 1)
        m = (x @ self.T.flatten(1)).view(-1, self.out_features, self.kernel_dims).transpose(0, 1).contiguous()
        dist = torch.cdist(m, m, p=1)  # (B, N, N) L1 distances per kernel (7× faster than broadcasting on CPU)
        return torch.cat([x, (torch.exp(-dist).sum(1) - 1).t()], 1)


class KEDMIDiscriminator(nn.Module):
    """Images (N, 3, R, R) in [0, 1] → (features (N, F), logits over the target's K classes)."""

    def __init__(self, num_classes: int, dim: int = 64, resolution: int = 64):
        super().__init__()
        if resolution < 32 or resolution & (resolution - 1):  # its 4 stride-2 layers must leave ≥ 2×2 to normalise
            raise DataError(f"KED-MI discriminator needs a power-of-two resolution ≥ 32, got {resolution}")

        def block(cin: int, cout: int, k: int, p: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, k, 2, p), nn.InstanceNorm2d(cout, affine=True), nn.LeakyReLU(0.2))

        self.layer1 = block(3, dim, 5, 2)
        self.layer2 = block(dim, 2 * dim, 5, 2)
        self.layer3 = block(2 * dim, 4 * dim, 5, 2)
        self.layer4 = block(4 * dim, 4 * dim, 3, 1)
        feat = 4 * dim * (resolution // 16) ** 2
        self.mbd1 = MinibatchDiscrimination(feat, 64, 50)
        self.fc_layer = nn.Linear(feat + 64, num_classes)

    def forward(self, x: Tensor, batch_coupling: bool = True) -> tuple[Tensor, Tensor]:
        """(features (N, F), logits (N, K))."""
        f = self.layer4(self.layer3(self.layer2(self.layer1(x)))).flatten(1)
        return f, self.fc_layer(self.mbd1(f, batch_coupling))


def realism(logits: Tensor) -> Tensor:
    """The prior loss per image (N,): softplus(LSE) − LSE = −log σ(LSE), low for "real" images."""
    lse = torch.logsumexp(logits, 1)
    return F.softplus(lse) - lse


@dataclass
class KEDMIGANRecipe:
    """How KED-MI's GAN is trained; defaults are the published CelebA values."""

    dim: int = 64  # discriminator and generator width
    z_dim: int = 100
    epochs: int | None = 120
    steps: int | None = None  # critic steps; when set it replaces `epochs`
    batch_size: int = 64
    n_critic: int = 5
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    entropy_weight: float = 1e-4
    log_every: int = 100

    def total_steps(self, n_images: int) -> int:
        """Critic steps for `n_images` public images."""
        return self.steps if self.steps is not None else self.epochs * max(1, n_images // self.batch_size)


@dataclass
class KEDMIGAN:
    """A trained KED-MI GAN (eval mode, CPU) and its training summary."""

    G: GMIGenerator
    D: KEDMIDiscriminator
    summary: dict[str, Any]


def build_kedmi_gan(num_classes: int, resolution: int, recipe: KEDMIGANRecipe, seed: int
                    ) -> tuple[GMIGenerator, KEDMIDiscriminator]:
    """(G, D) initialised from `seed` (PyTorch's default initialisation; global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "kedmi-init") & 0x7FFFFFFF)
        return (GMIGenerator(recipe.z_dim, recipe.dim, resolution),
                KEDMIDiscriminator(num_classes, recipe.dim, resolution))


def train_kedmi_gan(images_uint8: Tensor, soft_labels: Callable[[Tensor], Tensor], num_classes: int,
                    recipe: KEDMIGANRecipe, *, seed: int = 0, device: str | torch.device = "cpu",
                    progress: bool = True) -> KEDMIGAN:
    """Train on public uint8 images (N, 3, R, R); `soft_labels(x)` gives the target's logits (N, K)
    for images in [0, 1] (one query per image)."""
    n, res = images_uint8.shape[0], images_uint8.shape[-1]
    bs = recipe.batch_size
    if n < bs:
        raise DataError(f"{n} public images is fewer than one batch ({bs})", fix="lower the GAN batch size")
    device = torch.device(device)
    G, D = build_kedmi_gan(num_classes, res, recipe, seed)
    G, D = G.to(device).train(), D.to(device).train()
    opt_g = torch.optim.Adam(G.parameters(), lr=recipe.lr, betas=recipe.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=recipe.lr, betas=recipe.betas)
    gen = torch.Generator().manual_seed(derive_seed(seed, "kedmi-train"))
    data = images_uint8.to(device)
    # Three independent shuffles, as the published loop draws the labelled batch and two unlabelled ones.
    streams = {name: [torch.randperm(n, generator=gen), 0] for name in ("label", "unlabel", "unlabel2")}

    def batch(name: str) -> Tensor:
        order, cursor = streams[name]
        if cursor + bs > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        streams[name] = [order, cursor + bs]
        return data[order[cursor:cursor + bs].to(device)].float() / 255.0

    total = recipe.total_steps(n)
    log: list[dict[str, Any]] = []
    sums: dict[str, float] = {}
    t0 = time.monotonic()
    for step in tqdm(range(1, total + 1), desc="KED-MI GAN", disable=not progress, unit="step", leave=False):
        G.requires_grad_(False)
        D.requires_grad_(True)
        x = batch("label")
        with torch.no_grad():
            target_logits = soft_labels(x).float().to(device)
        generated = G(torch.randn(bs, recipe.z_dim, generator=gen).to(device))
        _, out_label = D(x)
        _, out_unlabel = D(batch("unlabel"))
        _, out_generated = D(generated)
        loss_lab = -(torch.softmax(target_logits, 1) * torch.log_softmax(out_label, 1)).sum(1).mean()
        lse_u, lse_f = torch.logsumexp(out_unlabel, 1), torch.logsumexp(out_generated, 1)
        loss_unlab = 0.5 * (F.softplus(lse_u).mean() - lse_u.mean() + F.softplus(lse_f).mean())
        loss_d = loss_lab + loss_unlab
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        sums["loss_lab"] = sums.get("loss_lab", 0.0) + float(loss_lab.detach())
        sums["loss_unlab"] = sums.get("loss_unlab", 0.0) + float(loss_unlab.detach())
        sums["agree"] = sums.get("agree", 0.0) + float((out_label.argmax(1) == target_logits.argmax(1)).float().mean())
        if step % recipe.n_critic == 0:
            G.requires_grad_(True)
            D.requires_grad_(False)
            f_gen, out_gen = D(G(torch.randn(bs, recipe.z_dim, generator=gen).to(device)))
            f_real, _ = D(batch("unlabel2"))
            p = torch.softmax(out_gen, 1)
            entropy = -(p * torch.log_softmax(out_gen, 1)).sum()  # summed over the batch, as published
            loss_g = (f_gen.mean(0) - f_real.mean(0)).abs().mean() + recipe.entropy_weight * entropy
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            sums["loss_g"] = sums.get("loss_g", 0.0) + float(loss_g.detach()) * recipe.n_critic
        if step % recipe.log_every == 0 or step == total:
            k = recipe.log_every if step % recipe.log_every == 0 else step % recipe.log_every
            log.append({"step": step, "seconds": round(time.monotonic() - t0, 1), **{a: v / k for a, v in sums.items()}})
            sums.clear()
    G, D = G.cpu().eval().requires_grad_(False), D.cpu().eval().requires_grad_(False)
    summary = {"steps": total, "seconds": round(time.monotonic() - t0, 1), "queries": total * bs,
               "final_label_agreement": log[-1].get("agree") if log else None, "log": log[-10:]}
    return KEDMIGAN(G, D, summary)
