"""WGAN-GP training of the GMI prior (Gulrajani et al., 2017, as GMI trains its public GAN).

Each step is one critic update on a batch of real images: loss −(mean D(x) − mean D(G(z))) +
λ·mean (‖∇D(x̂)‖₂ − 1)² on per-sample interpolates x̂ = x + α(G(z) − x), α ~ U(0, 1); every
`n_critic` steps the generator is updated with −mean D(G(z)) on fresh latents. Adam for both.
Defaults are GMI's (`AI-secure/GMI-Attack`, Celeba/celeba.json and train_gan.py): batch 64,
n_critic 5, lr 2e-4, betas (0.5, 0.999), penalty 10, 280 epochs. The generator stays in train mode
while the critic trains (its batch-norm running statistics follow the generated images, as in that code).

Every draw comes from one seeded generator; with `checkpoint` the whole state is written every
`checkpoint_every` steps and a re-run resumes from it with the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from mibench.errors import DataError
from mibench.generators.gmi_gan import GMIPrior
from mibench.ops.fileio import atomic_path
from mibench.seeding import derive_seed


@dataclass
class WGANGPRecipe:
    """How to train a GMI prior; defaults are the GMI code's CelebA values."""

    epochs: int | None = 280  # passes over the public images (GMI: 280)
    steps: int | None = None  # critic steps; when set it replaces `epochs`
    batch_size: int = 64
    n_critic: int = 5  # critic steps per generator step
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    gp_weight: float = 10.0
    max_minutes: float | None = None  # stop early after this much wall time
    log_every: int = 100
    callback_every: int | None = None  # call `callback(step, prior)` every this many steps

    def validate(self) -> None:
        if self.steps is None and self.epochs is None:
            raise ValueError("steps: give `steps` or `epochs`")
        if (self.steps is not None and self.steps < 1) or (self.epochs is not None and self.epochs < 1):
            raise ValueError("steps / epochs: must be at least 1")
        if self.batch_size < 2:
            raise ValueError("batch_size: must be at least 2")
        if self.n_critic < 1:
            raise ValueError("n_critic: must be at least 1")
        if self.lr <= 0 or self.gp_weight < 0:
            raise ValueError("lr must be positive and gp_weight non-negative")

    def total_steps(self, n_images: int) -> int:
        """Critic steps of the whole training for `n_images` public images."""
        if self.steps is not None:
            return self.steps
        return self.epochs * max(1, n_images // self.batch_size)


@dataclass
class WGANGPResult:
    """A trained prior (eval mode, CPU) and how training went."""

    prior: GMIPrior
    log: list[dict[str, Any]]
    steps: int
    seconds: float
    stopped_by: str  # 'steps' or 'time'


def gradient_penalty(D: torch.nn.Module, real: torch.Tensor, generated: torch.Tensor, alpha: torch.Tensor
                     ) -> torch.Tensor:
    """mean (‖∇D(x̂)‖₂ − 1)² over per-sample interpolates x̂ = real + α(generated − real), α (N,)."""
    x = (real + alpha.view(-1, 1, 1, 1) * (generated - real)).requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()


def train_wgan_gp(images_uint8: torch.Tensor, prior: GMIPrior, recipe: WGANGPRecipe, seed: int = 0,
                  device: str | torch.device = "cpu", progress: bool = True,
                  callback: Callable[[int, GMIPrior], dict[str, Any] | None] | None = None,
                  checkpoint: str | Path | None = None, checkpoint_every: int = 1000) -> WGANGPResult:
    """Train `prior` (G and critic) on uint8 images (N, 3, R, R); returns it in eval mode on CPU.

    `callback(step, prior)` runs every `recipe.callback_every` steps with the prior in eval mode
    (no gradients); a dict it returns is added to that step's log record."""
    recipe.validate()
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4 or images_uint8.shape[1] != 3:
        raise DataError(f"training images must be uint8 (N, 3, R, R), got {images_uint8.dtype} "
                        f"{tuple(images_uint8.shape)}")
    n_images, res = images_uint8.shape[0], images_uint8.shape[-1]
    if res != prior.img_resolution:
        raise DataError(f"training images are {res} px but the prior is {prior.img_resolution} px")
    bs = recipe.batch_size
    if n_images < bs:
        raise DataError(f"{n_images} training images is fewer than one batch ({bs})",
                        fix="lower batch_size or provide more images")
    total = recipe.total_steps(n_images)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(derive_seed(seed, "wgan-gp-train"))
    prior = prior.to(device).train()
    G, D = prior.G, prior.D
    opt_g = torch.optim.Adam(G.parameters(), lr=recipe.lr, betas=recipe.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=recipe.lr, betas=recipe.betas)
    data = images_uint8.to(device)
    order, cursor, step, seconds_before = torch.randperm(n_images, generator=gen), 0, 0, 0.0
    log: list[dict[str, Any]] = []
    sums: dict[str, float] = {}

    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if state["images"] != n_images or state["seed"] != seed or state["total"] != total:
            raise DataError(f"checkpoint {ckpt} was written for other data, seed or length",
                            fix="delete it to train from scratch")
        prior.load_state_dict(state["prior"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        gen.set_state(state["rng"])
        order, cursor, step = state["order"], state["cursor"], state["step"]
        seconds_before, log, sums = state["seconds"], state["log"], dict(state["sums"])

    def next_reals() -> torch.Tensor:
        nonlocal order, cursor
        if cursor + bs > n_images:  # a fresh shuffle each epoch (full batches only)
            order, cursor = torch.randperm(n_images, generator=gen), 0
        idx = order[cursor:cursor + bs].to(device)
        cursor += bs
        return data[idx].float() / 255.0

    def latents() -> torch.Tensor:
        return torch.randn(bs, prior.z_dim, generator=gen).to(device)

    start = time.monotonic() - seconds_before
    stopped_by = "steps"
    bar = tqdm(total=total, initial=step, disable=not progress, desc="wgan-gp", unit="step")
    try:
        while step < total:
            if recipe.max_minutes is not None and time.monotonic() - start > recipe.max_minutes * 60:
                stopped_by = "time"
                break
            step += 1
            # --- critic ---
            G.requires_grad_(False)
            D.requires_grad_(True)
            real = next_reals()
            generated = G(latents()).detach()
            wd = D(real).mean() - D(generated).mean()
            gp = gradient_penalty(D, real, generated, torch.rand(bs, generator=gen).to(device))
            loss_d = -wd + recipe.gp_weight * gp
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            sums["wasserstein"] = sums.get("wasserstein", 0.0) + float(wd.detach())
            sums["gp"] = sums.get("gp", 0.0) + float(gp.detach())
            # --- generator, every n_critic critic steps ---
            if step % recipe.n_critic == 0:
                G.requires_grad_(True)
                D.requires_grad_(False)
                loss_g = -D(G(latents())).mean()
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                sums["loss_g"] = sums.get("loss_g", 0.0) + float(loss_g.detach()) * recipe.n_critic
            record: dict[str, Any] | None = None
            if step % recipe.log_every == 0 or step == total:
                n = recipe.log_every if step % recipe.log_every == 0 else step % recipe.log_every
                record = {"step": step, "epoch": round(step * bs / n_images, 2),
                          "seconds": round(time.monotonic() - start, 2), **{k: v / n for k, v in sums.items()}}
                sums.clear()
                bar.set_postfix(W=f"{record['wasserstein']:.2f}", gp=f"{record['gp']:.3f}")
            if callback is not None and recipe.callback_every and step % recipe.callback_every == 0:
                prior.eval()
                with torch.no_grad():
                    extra = callback(step, prior)
                prior.train()
                if extra:
                    record = record or {"step": step, "seconds": round(time.monotonic() - start, 2)}
                    record.update(extra)
            if record is not None:
                log.append(record)
            if ckpt is not None and step % checkpoint_every == 0 and step < total:
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(ckpt) as tmp:
                    torch.save({"images": n_images, "seed": seed, "total": total, "step": step, "cursor": cursor,
                                "order": order, "rng": gen.get_state(), "prior": prior.state_dict(),
                                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "log": log,
                                "sums": dict(sums), "seconds": time.monotonic() - start}, tmp)
            bar.update(1)
    finally:
        bar.close()
    prior = prior.cpu().eval()
    return WGANGPResult(prior, log, step, time.monotonic() - start, stopped_by)

