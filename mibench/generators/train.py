"""Training a StyleGAN2 prior from scratch (the embedded default trains on CPU in minutes).

Non-saturating logistic GAN loss, lazy R1 regularisation, a small differentiable augmentation of
real and fake images (integer translation, x-flip, brightness / contrast / saturation), style-mixing
regularisation, an exponential-moving-average generator with ramp-up, and Adam with the StyleGAN2
defaults. Every random draw comes from one seeded CPU `torch.Generator`, so the same seed gives the
same G_ema on the same device. Path-length regularisation is not implemented (the small embedded
prior does not need it; official checkpoints load with their trained weights).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from mibench.errors import CardError, DataError
from mibench.generators.discriminator import Discriminator
from mibench.generators.stylegan2 import Generator, generator_kwargs, small_prior_params
from mibench.seeding import derive_seed


@dataclass
class GANAugment:
    """Differentiable augmentation applied to every image the discriminator sees (real and fake).

    Each of translation and colour is applied per sample with probability `p`; `p` below ~0.8 keeps
    the augmentation from leaking into generated images (the ADA finding). Flip is an x-flip with
    probability 0.5 (faces are symmetric enough for it not to leak).
    """

    p: float = 0.2
    translate: float = 0.125  # max shift as a fraction of the image size (integer pixels)
    flip: bool = True
    brightness: float = 0.2  # additive, in [-1, 1] image units
    contrast: float = 0.25  # multiplicative, log-uniform in [1/(1+c), 1+c]
    saturation: float = 0.5  # multiplicative, log-uniform in [1/(1+s), 1+s]
    enabled: bool = True


@dataclass
class StyleGAN2TrainRecipe:
    """How to train a StyleGAN2 prior (defaults follow stylegan2-ada-pytorch where they apply)."""

    steps: int = 2000
    batch_size: int = 16  # small batches: more steps per CPU minute
    lr_g: float = 0.0025
    lr_d: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float | None = None  # None: the official heuristic 0.0002 · R² / batch_size
    r1_interval: int = 16  # lazy regularisation: R1 every this many steps, scaled by the interval
    ema_kimg: float | None = None  # EMA half-life in thousands of images; None: 10 · batch_size / 32
    ema_rampup: float | None = 0.05  # half-life at most this fraction of the images seen so far
    style_mixing_prob: float = 0.5  # official configs use 0.9; lower converges a bit faster
    mbstd_group_size: int = 4
    augment: GANAugment = field(default_factory=GANAugment)
    discriminator: dict[str, Any] = field(default_factory=dict)  # Discriminator kwarg overrides
    # Cosine learning-rate decay (both networks) from step `lr_decay_start` to `steps`, ending at
    # `lr_decay_final` × the base rate. Not in StyleGAN2 (constant lr); a named departure for long
    # CPU trainings of the small prior, whose FID plateaus at a constant rate. None: constant lr.
    lr_decay_start: int | None = None
    lr_decay_final: float = 0.1
    # Steps at the start that train only the discriminator. For a generator started from trained
    # weights (`init_state`) next to a fresh discriminator, whose first gradients are noise that
    # Adam's normalised steps would write into the transferred weights. Not in StyleGAN2-ADA, whose
    # transfer also starts D from the source; 0 (the default) trains both from the first step.
    d_warmup_steps: int = 0
    # Generator parameters kept as they start (names by prefix, e.g. `synthesis.b32.` or `mapping.`):
    # FreezeG's transfer (github.com/bryandlee/FreezeG freezes a pre-trained generator's early
    # layers), here to train only a grown block while the source prior's layers, which decide the
    # samples' variety, are not rewritten by a fresh discriminator. Empty: train every parameter.
    freeze_g: list[str] = field(default_factory=list)
    max_minutes: float | None = None  # stop early after this much wall time
    log_every: int = 50
    callback_every: int | None = None  # call `callback(step, G_ema)` every this many steps

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError("steps: must be at least 1")
        if self.batch_size < 2:
            raise ValueError("batch_size: must be at least 2 (minibatch-stddev needs a group)")
        if self.lr_g <= 0 or self.lr_d <= 0:
            raise ValueError("lr_g / lr_d: must be positive")
        if self.r1_interval < 1:
            raise ValueError("r1_interval: must be at least 1")
        if not 0 <= self.style_mixing_prob <= 1:
            raise ValueError("style_mixing_prob: must be in [0, 1]")
        if not 0 <= self.augment.p <= 1:
            raise ValueError("augment.p: must be in [0, 1]")
        if not 0 <= self.d_warmup_steps < self.steps:
            raise ValueError("d_warmup_steps: must be a step count in [0, steps)")
        if self.lr_decay_start is not None and not 0 <= self.lr_decay_start < self.steps:
            raise ValueError("lr_decay_start: must be a step in [0, steps)")
        if not 0 < self.lr_decay_final <= 1:
            raise ValueError("lr_decay_final: must be in (0, 1]")
        if any(not isinstance(p, str) or not p for p in self.freeze_g):
            raise ValueError("freeze_g: must be a list of parameter-name prefixes (e.g. 'mapping.')")

    def lr_factor(self, step: int) -> float:
        """Multiplier of the base learning rates at `step` (1 before the decay starts)."""
        if self.lr_decay_start is None or step <= self.lr_decay_start:
            return 1.0
        t = min(1.0, (step - self.lr_decay_start) / (self.steps - self.lr_decay_start))
        return self.lr_decay_final + (1 - self.lr_decay_final) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass
class TrainResult:
    """A trained prior: the EMA generator (eval mode, CPU), the periodic log and how training ended.

    `G` and `D` are the raw (non-averaged) networks at the end, on CPU, for inspection or resuming.
    """

    G_ema: Generator
    log: list[dict[str, Any]]
    steps: int
    seconds: float
    stopped_by: str  # 'steps' or 'time'
    G: Generator | None = None
    D: Discriminator | None = None
    new_keys: list[str] = field(default_factory=list)  # G's tensors a transfer (`init_state`) did not cover


def augment(images: Tensor, spec: GANAugment, gen: torch.Generator) -> Tensor:
    """Differentiable augmentation of images (N, C, H, W) in [-1, 1]; draws come from `gen` (CPU)."""
    if not spec.enabled:
        return images
    n, _, h, w = images.shape
    dev = images.device

    def draw(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=gen).to(dev)

    x = images
    if spec.flip:
        flip = (draw(n, 1, 1, 1) < 0.5).to(x.dtype)
        x = x * (1 - flip) + x.flip(3) * flip
    if spec.translate > 0:
        apply = (draw(n, 1) < spec.p).to(x.dtype)
        max_shift = max(1, round(spec.translate * h))
        shift = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=gen).to(dev, x.dtype) * apply
        # Integer shifts through grid_sample (reflection padding) keep the op differentiable w.r.t. x.
        theta = torch.zeros(n, 2, 3, device=dev, dtype=x.dtype)
        theta[:, 0, 0] = 1
        theta[:, 1, 1] = 1
        theta[:, 0, 2] = -2 * shift[:, 0] / w
        theta[:, 1, 2] = -2 * shift[:, 1] / h
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="nearest", padding_mode="reflection", align_corners=False)
    if spec.brightness > 0 or spec.contrast > 0 or spec.saturation > 0:
        apply = (draw(n, 1, 1, 1) < spec.p).to(x.dtype)
        b = (draw(n, 1, 1, 1) * 2 - 1) * spec.brightness * apply
        c = torch.exp((draw(n, 1, 1, 1) * 2 - 1) * math.log1p(spec.contrast) * apply)
        s = torch.exp((draw(n, 1, 1, 1) * 2 - 1) * math.log1p(spec.saturation) * apply)
        x = x + b
        mean = x.mean(dim=[1, 2, 3], keepdim=True)
        x = (x - mean) * c + mean
        gray = x.mean(dim=1, keepdim=True)
        x = (x - gray) * s + gray
    return x


def _ema_beta(recipe: StyleGAN2TrainRecipe, images_seen: int) -> float:
    ema_kimg = recipe.ema_kimg if recipe.ema_kimg is not None else 10 * recipe.batch_size / 32
    ema_nimg = ema_kimg * 1000
    if recipe.ema_rampup is not None:
        ema_nimg = min(ema_nimg, images_seen * recipe.ema_rampup)
    return 0.5 ** (recipe.batch_size / max(ema_nimg, 1e-8))


def transfer_state(G: Generator, state: dict[str, Tensor]) -> list[str]:
    """Start G from a trained generator's weights (transfer learning, as StyleGAN2-ADA's `--resume`);
    returns the names of G's tensors the source lacks (e.g. the extra block of a higher resolution,
    which keeps its random init). Every source tensor must fit a tensor of G by name and shape, so
    a source of another architecture is refused rather than half-copied."""
    own = G.state_dict()
    unfit = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if unfit:
        raise DataError(f"the initial weights do not fit this generator: {len(unfit)} of {len(state)} tensors "
                        f"have no counterpart of the same shape (first: {unfit[0]})",
                        fix="start from a prior with the same mapping and channel widths (params) at the "
                            "same or a lower resolution")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)
    return [k for k in own if k not in state]


def trainable_parameters(G: Generator, freeze: list[str]) -> list[torch.nn.Parameter]:
    """G's parameters in order, less those whose names start with a `freeze` prefix (each prefix must
    name at least one parameter, and something must be left to train: a `CardError` otherwise)."""
    names = [n for n, _ in G.named_parameters()]
    fix = "list prefixes of the generator's parameter names, and leave one to train"
    for prefix in freeze:
        if not any(n.startswith(prefix) for n in names):
            blocks = sorted({".".join(n.split(".")[:2]) for n in names})
            raise CardError(f"'{prefix}' names no generator parameter (they start with {', '.join(blocks)})",
                            field="train.freeze_g", fix=fix)
    kept = [p for n, p in G.named_parameters() if not n.startswith(tuple(freeze))]
    if not kept:
        raise CardError("freezes every generator parameter, so there is nothing to train", field="train.freeze_g",
                        fix=fix)
    return kept


def _generate(G: Generator, z: Tensor, z2: Tensor, mixing_prob: float, gen: torch.Generator) -> Tensor:
    """Fake images with style mixing: after a random cutoff, ws come from a second latent."""
    ws = G.mapping(z, None)
    if mixing_prob > 0:
        cutoff = int(torch.randint(1, G.num_ws, (), generator=gen))
        if float(torch.rand((), generator=gen)) < mixing_prob:
            ws2 = G.mapping(z2, None, skip_w_avg_update=True)
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
    return G.synthesize(ws, noise_mode="random", noise_generator=gen)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a resume point atomically (a kill mid-write leaves the previous one intact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def train_stylegan2(images_uint8: Tensor, recipe: StyleGAN2TrainRecipe, seed: int = 0,
                    device: str | torch.device = "cpu", progress: bool = True,
                    generator_params: dict[str, Any] | None = None,
                    callback: Callable[[int, Generator], dict[str, Any] | None] | None = None,
                    checkpoint: str | Path | None = None, checkpoint_every: int = 500,
                    init_state: dict[str, Tensor] | None = None) -> TrainResult:
    """Train an unconditional StyleGAN2 on images (N, 3, R, R) uint8; returns the EMA generator.

    `generator_params` are the card's constructor args (default: `small_prior_params(R)`). `callback`
    runs every `recipe.callback_every` steps with the current G_ema (eval mode); a dict it returns is
    added to that step's log record. With `checkpoint`, the whole training state (networks, Adam
    moments, the RNG, the data order) is written there every `checkpoint_every` steps and training
    resumes from it when it exists: a resumed run ends with the same bytes as an uninterrupted one.
    The caller deletes the file once the result is stored. `init_state` (a trained generator's
    state dict) starts G and G_ema from those weights instead of a random draw (`transfer_state`);
    the discriminator starts fresh.
    """
    recipe.validate()
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4 or images_uint8.shape[2] != images_uint8.shape[3]:
        raise DataError(f"training images must be uint8 (N, C, R, R), got {images_uint8.dtype} "
                        f"{tuple(images_uint8.shape)}")
    n_images, channels, res = images_uint8.shape[0], images_uint8.shape[1], images_uint8.shape[2]
    if n_images < recipe.batch_size:
        raise DataError(f"{n_images} training images is fewer than one batch ({recipe.batch_size})",
                        fix="lower batch_size or provide more images")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(derive_seed(seed, "stylegan2-train"))

    params = generator_params if generator_params is not None else small_prior_params(res)
    kwargs = generator_kwargs(dict(params), res)
    kwargs["img_channels"] = channels
    d_kwargs = dict(channel_base=kwargs["synthesis_kwargs"].get("channel_base", 32768),
                    channel_max=kwargs["synthesis_kwargs"].get("channel_max", 512),
                    epilogue_kwargs={"mbstd_group_size": recipe.mbstd_group_size})
    d_kwargs.update(recipe.discriminator)
    with torch.random.fork_rng(devices=[]):  # weight init from the seed, without touching global RNG state
        torch.manual_seed(derive_seed(seed, "stylegan2-init"))
        G = Generator(**kwargs)
        D = Discriminator(c_dim=0, img_resolution=res, img_channels=channels, **d_kwargs)
    new_keys = transfer_state(G, init_state) if init_state is not None else []
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    G, D, G_ema = G.to(device).train(), D.to(device).train(), G_ema.to(device)
    trained_g = trainable_parameters(G, recipe.freeze_g)

    reg_ratio = recipe.r1_interval / (recipe.r1_interval + 1)  # lazy-regularisation optimiser correction
    opt_g = torch.optim.Adam(trained_g, lr=recipe.lr_g, betas=recipe.betas, eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=recipe.lr_d * reg_ratio,
                             betas=(recipe.betas[0] ** reg_ratio, recipe.betas[1] ** reg_ratio), eps=1e-8)
    r1_gamma = recipe.r1_gamma if recipe.r1_gamma is not None else 0.0002 * res ** 2 / recipe.batch_size

    data = images_uint8.to(device)
    order = torch.randperm(n_images, generator=gen)
    cursor = 0
    bs = recipe.batch_size

    def next_reals() -> Tensor:
        nonlocal order, cursor
        if cursor + bs > n_images:  # a fresh shuffle each epoch; batches mix identities at random
            order, cursor = torch.randperm(n_images, generator=gen), 0
        idx = order[cursor: cursor + bs].to(device)
        cursor += bs
        return data[idx].to(torch.float32) / 127.5 - 1

    def latents() -> tuple[Tensor, Tensor]:
        z = torch.randn(bs, G.z_dim, generator=gen).to(device)
        z2 = torch.randn(bs, G.z_dim, generator=gen).to(device)
        return z, z2

    log: list[dict[str, Any]] = []
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(name: str, value: Tensor) -> None:
        sums[name] = sums.get(name, 0.0) + float(value)
        counts[name] = counts.get(name, 0) + 1

    ckpt = Path(checkpoint) if checkpoint is not None else None
    step, seconds_before = 0, 0.0
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if state["images"] != n_images or state["seed"] != seed:
            raise DataError(f"checkpoint {ckpt} was written for other data or another seed",
                            fix="delete it to train from scratch")
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        G_ema.load_state_dict(state["G_ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        gen.set_state(state["rng"])
        order, cursor, step = state["order"], state["cursor"], state["step"]
        seconds_before, log = state["seconds"], state["log"]
        sums.update(state["sums"])
        counts.update(state["counts"])

    def write_checkpoint() -> None:
        _save_checkpoint(ckpt, {
            "images": n_images, "seed": seed, "step": step, "cursor": cursor, "order": order,
            "rng": gen.get_state(), "G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "log": log, "sums": dict(sums),
            "counts": dict(counts), "seconds": time.monotonic() - start})

    start = time.monotonic() - seconds_before  # training seconds count across resumes
    stopped_by = "steps"
    bar = tqdm(total=recipe.steps, initial=step, disable=not progress, desc="stylegan2", unit="step")
    try:
        while step < recipe.steps:
            if recipe.max_minutes is not None and time.monotonic() - start > recipe.max_minutes * 60:
                stopped_by = "time"
                break
            if recipe.lr_decay_start is not None:
                factor = recipe.lr_factor(step)
                for group in opt_g.param_groups:
                    group["lr"] = recipe.lr_g * factor
                for group in opt_d.param_groups:
                    group["lr"] = recipe.lr_d * reg_ratio * factor
            # --- generator: non-saturating logistic loss ---
            if step >= recipe.d_warmup_steps:
                for p in trained_g:
                    p.requires_grad_(True)
                D.requires_grad_(False)
                z, z2 = latents()
                fake = _generate(G, z, z2, recipe.style_mixing_prob, gen)
                loss_g = F.softplus(-D(augment(fake, recipe.augment, gen))).mean()
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                add("loss_g", loss_g.detach())

            # --- discriminator: logistic loss (+ lazy R1 on real images every r1_interval steps) ---
            G.requires_grad_(False)
            D.requires_grad_(True)
            z, z2 = latents()
            with torch.no_grad():
                fake = _generate(G, z, z2, recipe.style_mixing_prob, gen)
            do_r1 = r1_gamma > 0 and step % recipe.r1_interval == 0
            reals = next_reals().detach().requires_grad_(do_r1)
            logits_fake = D(augment(fake, recipe.augment, gen))
            logits_real = D(augment(reals, recipe.augment, gen))
            loss_d = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
            total_d = loss_d
            if do_r1:
                (grad,) = torch.autograd.grad(logits_real.sum(), reals, create_graph=True)
                r1 = grad.square().sum(dim=[1, 2, 3])
                total_d = total_d + (r1 * (r1_gamma / 2)).mean() * recipe.r1_interval
                add("r1", r1.mean().detach())
            opt_d.zero_grad(set_to_none=True)
            total_d.backward()
            opt_d.step()
            add("loss_d", loss_d.detach())
            add("d_real", logits_real.mean().detach())
            add("d_fake", logits_fake.mean().detach())

            # --- EMA generator ---
            step += 1
            beta = _ema_beta(recipe, step * bs)
            with torch.no_grad():
                for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                    p_ema.copy_(p.detach().lerp(p_ema, beta))
                for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                    b_ema.copy_(b)

            record: dict[str, Any] | None = None
            if step % recipe.log_every == 0 or step == recipe.steps:
                record = {"step": step, "kimg": step * bs / 1000, "seconds": round(time.monotonic() - start, 2),
                          "ema_beta": beta}
                record.update({k: sums[k] / counts[k] for k in sums})
                sums.clear()
                counts.clear()
                bar.set_postfix({k: f"{record[k]:.3f}" for k in ("loss_g", "loss_d") if k in record})
            if callback is not None and recipe.callback_every and step % recipe.callback_every == 0:
                extra = callback(step, G_ema)
                if extra:
                    record = record or {"step": step, "kimg": step * bs / 1000,
                                        "seconds": round(time.monotonic() - start, 2)}
                    record.update(extra)
            if record is not None:
                log.append(record)
            if ckpt is not None and step % checkpoint_every == 0 and step < recipe.steps:
                write_checkpoint()
            bar.update(1)
    finally:
        bar.close()
    if sums:  # a partial interval at a time-budget stop
        record = {"step": step, "kimg": step * bs / 1000, "seconds": round(time.monotonic() - start, 2)}
        record.update({k: sums[k] / counts[k] for k in sums})
        log.append(record)
    return TrainResult(G_ema=G_ema.cpu().eval(), log=log, steps=step, seconds=time.monotonic() - start,
                       stopped_by=stopped_by, G=G.cpu().eval().requires_grad_(True),
                       D=D.cpu().eval().requires_grad_(True), new_keys=new_keys)
