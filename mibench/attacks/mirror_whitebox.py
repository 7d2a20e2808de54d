"""Mirror, white-box variant (An et al., NDSS 2022) — `mirror-wb`: Adam on untruncated StyleGAN w
from the class's most confident pre-sampled w, through the target's gradients.

Published code (`face_inversion.py` + `my_mirror.py` of `njuaplusplus/mirror`; run script
`scripts/run_vggface2_resnet50.sh`), followed here:
1. The same pool as black-box Mirror (`mibench.attacks.mirror`: ψ 0.7 on 8 layers, p-space bounds
   from the whole pool, scored once by the target, phase "init"; a stage of the run folder). Each
   class starts from its `num_latents` most confident pool w (published: `--bs 8` for one target,
   so the 8 most confident).
2. Adam (betas 0.9 / 0.999) on the untruncated w (one w for every layer; the generator truncates
   when it renders), lr 0.2 (argparse default; the run script passes 0.25) under the projector
   schedule of rosinality's StyleGAN projector (`adjust_lr`: cosine ramp-down over the last 25 %,
   linear ramp-up over the first 5 %, t = step / steps with steps counted from 1, so the last step
   has lr 0), 20 000 steps (`--epochs`). Loss 10 · CE (`--loss_class_ce=10.`, mean over the
   class's latents) on the image resized to the target's input; with `--do_flip` one coin per step
   flips the whole batch horizontally. After every step w is clipped to the p-space box.
3. Kept: the latents after the step whose (pre-step) loss was the lowest (`keep: published`: the
   published code stores `inputs.data` after `optimizer.step()` and the clip against the loss
   computed before them — an off-by-one kept as the default); `keep: last` keeps the final latents.
   Every kept latent is a result image (8 per class), scored by the target's p_y.

Departures, each named: the coin flip is keyed by (run seed, class, step) instead of Python's global
`random` (a class's flips do not depend on the other classes of its batch); the per-class loss is a
sum of per-latent terms × 1/`num_latents` (the published batch mean for one target; the same
gradient, independent of which classes share a batch); images go to the target resized, with no
face-specific crop (as black-box Mirror here). The embedded preset shortens the schedule (below).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from mibench.attacks.base import AttackContext, ClassResult, map_fixed_batches, pad_rows, padded_chunks
from mibench.attacks.mirror import PHASE_ATTACK, MirrorAttack
from mibench.ops import rng
from mibench.ops.transforms import View
from mibench.registry import ATTACKS


@dataclass
class MirrorWhiteBoxConfig:
    """Mirror (white-box) settings; defaults are the published ones (face_inversion.py, my_mirror.py)."""

    pool_size: int = 100_000  # pre-sampled w, as black-box Mirror
    pool_batch_size: int = 1000
    truncation_psi: float = 0.7  # pre-sampled images and rendering: ψ 0.7 ...
    truncation_cutoff: int | None = 8  # ... on the first 8 layers (clamped to the prior's num_ws)
    p_std_ce: float = 1.0  # --p_std_ce: clip box at p-space mean ± 1·σ
    noise_mode: Literal["const", "none"] = "const"
    num_latents: int = 8  # --bs 8 with one target: the class's 8 most confident pool w
    steps: int = 20_000  # --epochs
    lr: float = 0.2  # --lr default (scripts/run_vggface2_resnet50.sh: 0.25)
    betas: tuple[float, float] = (0.9, 0.999)
    rampdown: float = 0.25  # adjust_lr(rampdown=0.25, rampup=0.05)
    rampup: float = 0.05
    loss_weight: float = 10.0  # --loss_class_ce=10.
    flip: bool = True  # --do_flip
    keep: Literal["published", "last"] = "published"  # see the module docstring
    batch_size: int = 8  # latents per optimisation batch (padded; a multiple of num_latents is natural)
    classes_per_group: int = 10

    def validate(self) -> None:
        if self.num_latents < 1 or self.pool_size < self.num_latents:
            raise ValueError("num_latents: must be ≥ 1 and at most pool_size")
        if self.steps < 1:
            raise ValueError("steps: must be ≥ 1")
        if self.lr <= 0 or self.loss_weight <= 0:
            raise ValueError("lr: lr and loss_weight must be positive")
        if not (0 < self.rampdown <= 1 and 0 < self.rampup <= 1):
            raise ValueError("rampdown: rampdown and rampup must be in (0, 1]")
        if self.p_std_ce <= 0:
            raise ValueError("p_std_ce: must be positive")
        if min(self.batch_size, self.pool_batch_size, self.classes_per_group) < 1:
            raise ValueError("batch_size: batch sizes and classes_per_group must be positive")


MIRROR_WB_PRESETS: dict[str, dict[str, Any]] = {
    # The published setting (VGGFace / VGGFace2 targets; nothing dataset-specific in it).
    "celeba": {},
    "facescrub": {},
    "stanford_dogs": {},
    # Embedded default (32 px synthfaces, CPU): the published method with a 10 000-w pool (as
    # black-box Mirror's embedded preset) and 100 steps of the same schedule instead of 20 000.
    "synthfaces": {"pool_size": 10_000, "pool_batch_size": 500, "steps": 100, "batch_size": 80},
}
MIRROR_WB_PRESETS["small"] = dict(MIRROR_WB_PRESETS["synthfaces"])
# Seconds-long settings for the contract tests and smoke runs (never a benchmark setting).
MIRROR_WB_PRESETS["smoke"] = {"pool_size": 24, "pool_batch_size": 8, "num_latents": 2, "steps": 3,
                              "batch_size": 4, "classes_per_group": 2}


def projector_lr(step: int, steps: int, lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The learning rate of step `step` (1-based) of `steps`: lr · cosine ramp-down over the last
    `rampdown` fraction · linear ramp-up over the first `rampup` fraction (rosinality's projector)."""
    t = step / steps
    ramp = 0.5 - 0.5 * math.cos(min(1.0, (1 - t) / rampdown) * math.pi)
    return lr * ramp * min(1.0, t / rampup)


class MirrorWhiteBoxAttack(MirrorAttack):
    """Mirror (white-box): Adam on w from the most confident pre-sampled w, p-space clip each step."""

    name = "mirror-wb"
    description = ("Mirror (An et al., NDSS 2022), white-box variant: Adam on StyleGAN w from the most "
                   "confident pre-sampled w, 10·CE, flips, p-space clipping")
    access_level = "white-box"
    config_cls = MirrorWhiteBoxConfig
    presets = MIRROR_WB_PRESETS
    CODE = ("mibench.attacks.mirror", "mibench.attacks.mirror_whitebox")
    cost = 2.0  # steps × num_latents generator + target passes with gradients per class

    def pool_top_n(self) -> int:
        """Each class keeps its `num_latents` most confident pool w (its starting latents)."""
        return self.config.num_latents

    def _log_probs(self, ctx: AttackContext, x: Tensor) -> Tensor:
        """log softmax (n, K) of the target's logits on images x (one query per image)."""
        with torch.no_grad():
            return F.log_softmax(ctx.access.logits(x).float(), dim=1).cpu()

    def attack_classes(self, ctx: AttackContext, classes: list[int]) -> list[ClassResult]:
        """Optimise each class's latents; all classes of the group step together, in fixed-size
        padded batches with one Adam each (Adam is per coordinate: the same steps as one)."""
        if self._pool_w is None:
            self.prepare(ctx)
        cfg, access = self.config, ctx.access
        access.set_phase(PHASE_ATTACK)
        n = cfg.num_latents
        cls = torch.as_tensor(classes, dtype=torch.long)
        targets = cls.repeat_interleave(n)
        start = torch.cat([self._pool_w[self._top_idx[c, :n]] for c in classes])
        chunks = padded_chunks(len(start), cfg.batch_size)
        ws = [pad_rows(start[a:b], cfg.batch_size).clone().to(ctx.device).requires_grad_(True) for a, b in chunks]
        opts = [torch.optim.Adam([w], lr=cfg.lr, betas=cfg.betas) for w in ws]
        view = View(size=access.input_size)
        flip_seed = rng.stream_seed(ctx.seed, self.name, "flip")
        best_loss = torch.full((len(classes),), math.inf)
        def real_rows() -> Tensor:  # the latents' real rows (no padding), in order, on CPU
            return torch.cat([w.detach()[: b - a].cpu() for w, (a, b) in zip(ws, chunks)])

        best = real_rows()
        best_step = torch.zeros(len(classes), dtype=torch.long)
        from tqdm import tqdm

        for step in tqdm(range(1, cfg.steps + 1), desc=f"{self.name} steps", disable=not ctx.progress, leave=False):
            lr = projector_lr(step, cfg.steps, cfg.lr, cfg.rampdown, cfg.rampup)
            flips = rng.uniform(flip_seed, cls, step) > 0.5 if cfg.flip else torch.zeros(len(classes), dtype=torch.bool)
            row_losses = []
            for w, opt, (a, b) in zip(ws, opts, chunks):
                for group in opt.param_groups:
                    group["lr"] = lr
                x = view(self.render(ctx, w))
                flip = pad_rows(flips.repeat_interleave(n)[a:b], cfg.batch_size).to(ctx.device)
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
                t = pad_rows(targets[a:b], cfg.batch_size).to(ctx.device)
                ce = F.cross_entropy(access.logits(x, count=b - a).float(), t, reduction="none")
                real = (torch.arange(cfg.batch_size, device=ctx.device) < b - a).float()
                loss = cfg.loss_weight / n * ce * real
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                with torch.no_grad():
                    w.copy_(self._bounds.clip(w))
                row_losses.append(loss.detach().cpu()[: b - a])
            class_loss = torch.cat(row_losses).view(len(classes), n).sum(1)
            now = real_rows().view(len(classes), n, -1)
            better = class_loss < best_loss if cfg.keep == "published" else torch.ones(len(classes), dtype=torch.bool)
            best_loss = torch.where(better, class_loss, best_loss)
            best_step = torch.where(better, torch.full_like(best_step, step), best_step)
            best = torch.where(better.view(-1, 1, 1), now, best.view(len(classes), n, -1)).view(len(classes) * n, -1)
        return self._results(ctx, classes, best.view(len(classes), n, -1), best_loss, best_step)

    @torch.no_grad()
    def _results(self, ctx: AttackContext, classes: list[int], latents: Tensor, loss: Tensor,
                 step: Tensor) -> list[ClassResult]:
        """One ClassResult per class: its kept latents (n, D), their images and p_y scores."""
        cfg, access = self.config, ctx.access
        flat = latents.reshape(-1, latents.shape[-1])
        images = map_fixed_batches(lambda w, _n: View(size=ctx.output_size)(self.render(ctx, w)), cfg.batch_size,
                                   flat).cpu()
        view = View(size=access.input_size)
        scores = map_fixed_batches(lambda x, n_real: torch.softmax(
            access.logits(view(x.to(ctx.device)), count=n_real).float(), dim=1).cpu(), cfg.batch_size, images)
        n = cfg.num_latents
        out = []
        for i, c in enumerate(classes):
            rows = slice(i * n, (i + 1) * n)
            out.append(ClassResult(c, images[rows], latents[i], scores[rows, c],
                                   {"kept_step": int(step[i]), "loss": float(loss[i]),
                                    "queries": cfg.steps * n + n}))
        return out


ATTACKS.register("mirror-wb", description=MirrorWhiteBoxAttack.description)(MirrorWhiteBoxAttack)
