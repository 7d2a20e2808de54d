"""PLG-MI (Yuan et al., AAAI 2023, "Pseudo Label-Guided Model Inversion Attack via Conditional
Generative Adversarial Network") — white-box.

1. Pseudo-labels: the target's softmax scores every public image (one query per image, phase
   "pseudo-labels"); for each class the `top_n` = 30 images with the highest probability *of that
   class* are kept (top_n_selection.py: per-class top-n over the class's probability column, not
   argmax assignment — an image may serve several classes; `top_n_pseudo_labels`).
2. A conditional GAN on the pseudo-labelled images (`mibench.generators.plgmi_gan`): T-ACGAN's
   conditional ResNet generator, a spectral-norm projection discriminator, hinge loss; the generator
   also minimises α·max-margin loss of the target on augmented fakes (α 0.2; RandomResizedCrop
   0.8–1 ratio 1, ColorJitter(0.2, 0.2) with p 0.5, flip, rotation 5° with p 0.5; one query per
   generated image and generator step, phase "plgmi-gan"); 30 000 generator steps, 5 D steps each, batch 64,
   Adam 2e-4 betas (0, 0.9) (train_cgan.py).
3. Attack: per class `num_candidates` = 5 latents z ~ N(0, I) of G(z, y), each optimised with Adam
   (lr 0.1, 600 iterations) on the max-margin loss of the target over 2 random views per step
   (reconstruct.py: crop 0.8–1, ColorJitter(0.2, 0.2) on every view, flip, rotation 5° with p 0.5).
   The published evaluation keeps all 5 seeds' images (`num_final` = 5); they are ordered by the
   target's confidence in the class on the image itself (`final_views` = 1 un-augmented view; the
   published `score = T(fake)`). The attack phase is LOKT's white-box stage run on the target:
   the code is shared (`mibench.attacks.conditional_inversion`).

Sources: the paper and `LetheSec/PLG-MI-Attack` (top_n_selection.py, train_cgan.py, reconstruct.py,
losses.py, models/generators/resnet64.py, models/discriminators/snresnet64.py).

The pseudo-labels and the GAN are a per-target stage kept in the run folder (`<run>/plgmi/`) and
shippable for the embedded targets like KED-MI's: a second `prepare` in the same run folder loads
them and credits their queries to the access object instead of querying again.

Faithfulness notes (deliberate departures; the GAN's own are listed in `plgmi_gan`):
- The published attack loss is the *sum* over the two views of batch-mean losses; mibench averages
  the views per sample and sums over samples (a sample's path must not depend on its batch). Adam
  is invariant to a constant loss scale (up to its ε = 1e-8), so the steps are the published ones.
- Images reach the target resized to its input size (the published 64 px targets take the
  generator's 64 px image as is); the attack's loss sees the generator's image unclamped, as
  published (the colour jitter clamps every view to [0, 1]); returned images are clamped.
- Every random draw is keyed by (run seed, class, candidate, step) instead of the published
  global seeds 0-4, so a class gives the same images alone or batched with others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from mibench.attacks.base import (
    AttackContext,
    GenerativeAttack,
    candidate_keys,
    map_fixed_batches,
    public_images,
)
from mibench.attacks.conditional_inversion import InversionSpec, ViewAugment, invert, select_by_confidence
from mibench.attacks.losses import LOSSES
from mibench.attacks.stages import StageStore
from mibench.errors import AttackError
from mibench.generators.plgmi_gan import (
    PLGMIGANRecipe,
    build_plgmi_gan,
    to_image,
    top_n_pseudo_labels,
    train_plgmi_gan,
)
from mibench.generators.tacgan import images_digest
from mibench.ops import rng
from mibench.ops.transforms import View
from mibench.registry import ATTACKS
from mibench.seeding import derive_seed

PHASE_LABELS = "pseudo-labels"
PHASE_GAN = "plgmi-gan"


@dataclass
class PLGMIConfig:
    """PLG-MI hyper-parameters; defaults are the published CelebA 64 px setting."""

    # --- pseudo-labels (top_n_selection.py: --top_n 30 in the README's commands; DataLoader batch 350)
    top_n: int = 30
    label_batch_size: int = 350
    # --- the conditional GAN (train_cgan.py defaults; --alpha 0.2, --max_iteration 30000 in the README)
    gan_resolution: int = 64
    gan_z_dim: int = 128
    gan_g_width: int = 64
    gan_d_width: int = 64
    gan_steps: int = 30000
    gan_batch_size: int = 64
    gan_n_dis: int = 5
    gan_lr: float = 2e-4
    gan_betas: tuple[float, float] = (0.0, 0.9)
    gan_alpha: float = 0.2
    gan_loss: Literal["hinge", "bce"] = "hinge"
    gan_inv_loss: Literal["max_margin", "ce", "poincare"] = "max_margin"  # --inv_loss_type margin
    gan_image_range: Literal["unit", "symmetric"] = "unit"  # see `mibench.generators.plgmi_gan`
    gan_dequantize: bool = True
    gan_calibration_batches: int = 0  # > 0: standing BN statistics (published: training's running stats)
    # train_cgan.py's augmentation of the fakes the target sees
    gan_aug_scale: tuple[float, float] = (0.8, 1.0)
    gan_aug_ratio: tuple[float, float] = (1.0, 1.0)
    gan_aug_flip: bool = True
    gan_aug_brightness: float = 0.2
    gan_aug_contrast: float = 0.2
    gan_aug_jitter_p: float = 0.5
    gan_aug_rotation: float = 5.0  # degrees, p 0.5 (kornia RandomRotation(5))
    # --- the attack (reconstruct.py: --lr 0.1 --iter_times 600 --inv_loss_type margin, 5 seeds)
    num_candidates: int = 5
    num_final: int = 5
    steps: int = 600
    lr: float = 0.1
    loss: Literal["max_margin", "ce", "poincare"] = "max_margin"
    aug_views: int = 2
    aug_scale: tuple[float, float] = (0.8, 1.0)
    aug_ratio: tuple[float, float] = (1.0, 1.0)
    aug_flip: bool = True
    aug_brightness: float = 0.2  # ColorJitter(brightness=0.2, contrast=0.2), every view (kornia p 1)
    aug_contrast: float = 0.2
    aug_rotation: float = 5.0
    batch_size: int = 60  # candidates optimised together (samples are independent)
    final_views: int = 1
    final_scale: tuple[float, float] = (1.0, 1.0)  # with ratio 1 and no flip: the image itself
    final_ratio: tuple[float, float] = (1.0, 1.0)
    final_flip: bool = False
    selection_batch_size: int = 250

    def validate(self) -> None:
        """Raise ValueError("field: message") for an unusable setting."""
        if self.top_n < 1:
            raise ValueError("top_n: must be ≥ 1")
        if self.num_final > self.num_candidates:
            raise ValueError("num_final: cannot exceed num_candidates")
        if self.steps < 0 or self.aug_views < 1:
            raise ValueError("steps: steps must be ≥ 0 and aug_views ≥ 1")
        if min(self.batch_size, self.selection_batch_size, self.label_batch_size) < 1:
            raise ValueError("batch_size: batch sizes must be positive")
        if not 0.0 <= self.gan_aug_jitter_p <= 1.0:
            raise ValueError("gan_aug_jitter_p: must be in [0, 1]")
        try:
            self.gan_recipe().validate()
        except ValueError as exc:  # the recipe names its field; the config's is gan_<field>
            msg = str(exc)
            raise ValueError(msg if msg.startswith("gan_") else f"gan_{msg}") from None

    def gan_recipe(self) -> PLGMIGANRecipe:
        """The GAN stage's networks and schedule."""
        return PLGMIGANRecipe(resolution=self.gan_resolution, z_dim=self.gan_z_dim, g_width=self.gan_g_width,
                              d_width=self.gan_d_width, steps=self.gan_steps, batch_size=self.gan_batch_size,
                              n_dis=self.gan_n_dis, lr=self.gan_lr, betas=tuple(self.gan_betas),
                              alpha=self.gan_alpha, gan_loss=self.gan_loss, image_range=self.gan_image_range,
                              dequantize=self.gan_dequantize, calibration_batches=self.gan_calibration_batches)

    def gan_augment(self) -> ViewAugment:
        """The augmentation of the fakes the target scores during GAN training."""
        return ViewAugment(scale=tuple(self.gan_aug_scale), ratio=tuple(self.gan_aug_ratio), flip=self.gan_aug_flip,
                           brightness=self.gan_aug_brightness, contrast=self.gan_aug_contrast,
                           rotation=self.gan_aug_rotation, jitter_p=self.gan_aug_jitter_p, rotation_p=0.5)


PLGMI_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's setting: CelebA 64 px, top-30 pseudo-labels, 30 000 GAN iterations, α 0.2, 600 attack
    # iterations at lr 0.1, 5 seeds (README commands and script defaults of LetheSec/PLG-MI-Attack).
    "celeba": {},
    # PLG-MI publishes only the 64 px low-resolution setting (CelebA / FFHQ / FaceScrub public data):
    # its values for other datasets too.
    "facescrub": {},
    "stanford_dogs": {},
    # Embedded default (32 px synthfaces, CPU minutes). Every method choice is the published one;
    # only the budget is scaled down: a narrow 32 px GAN (G width 16, D width 16), 1200 generator steps
    # at lr 1e-3 with 2 D steps each (the published 5 at 2e-4 does not get going in so few steps),
    # batch 64 as published, a sixth of the attack iterations.
    "synthfaces": {"gan_resolution": 32, "gan_g_width": 16, "gan_d_width": 16, "gan_steps": 1200,
                   "gan_n_dis": 2, "gan_lr": 1e-3, "steps": 100, "batch_size": 100},
    # Seconds-long settings for the contract tests and smoke runs (never a benchmark setting).
    "smoke": {"top_n": 3, "label_batch_size": 8, "gan_resolution": 16, "gan_z_dim": 8, "gan_g_width": 4,
              "gan_d_width": 4, "gan_steps": 2, "gan_batch_size": 4, "gan_n_dis": 1, "num_candidates": 3,
              "num_final": 2, "steps": 2, "batch_size": 4, "selection_batch_size": 5},
}
PLGMI_PRESETS["small"] = dict(PLGMI_PRESETS["synthfaces"])


class PLGMIAttack(GenerativeAttack):
    """PLG-MI: target pseudo-labels of public data → a target-guided conditional GAN → white-box
    inversion of the target in its latent space."""

    name = "plgmi"
    description = ("PLG-MI (Yuan et al., AAAI 2023): white-box; top-n pseudo-labelled public data, a conditional "
                   "GAN guided by the target, max-margin inversion over augmented views")
    access_level = "white-box"
    config_cls = PLGMIConfig
    presets = PLGMI_PRESETS
    fitted_presets = ((128, "small"), (1 << 30, "celeba"))
    needs_prior = False
    needs_public_data = True
    cost = 2.0
    in_default_suite = False

    CODE = ("mibench.attacks.plgmi",)

    def __init__(self, config: PLGMIConfig):
        super().__init__(config)
        self.G = None
        self.loss_fn = LOSSES.get(config.loss)
        self._info: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------ stage
    def _stage_keys(self, ctx: AttackContext) -> dict[str, dict[str, Any]]:
        """What each stage depends on: its settings, everything upstream, the seed and the target's
        class count and input size (the artifact cache adds the code)."""
        cfg = asdict(self.config)
        common = {"seed": ctx.seed, "classes": ctx.access.num_classes, "input_size": ctx.access.input_size}
        labels = {"top_n": cfg["top_n"], "label_batch_size": cfg["label_batch_size"],
                  "gan_resolution": cfg["gan_resolution"], **common}
        gan = {**labels, **{k: v for k, v in cfg.items() if k.startswith("gan_")}}
        return {"labels": labels, "gan": gan}

    def prepare(self, ctx: AttackContext) -> None:
        """Pseudo-label the public images and train the GAN (or load both from the run folder)."""
        cfg, access = self.config, ctx.access
        if getattr(access, "level", None) != "white-box":
            raise AttackError(f"PLG-MI expects white-box access, got '{getattr(access, 'level', '?')}'")
        store = StageStore("plgmi-run", self.CODE, ctx.store_dir, self._stage_keys(ctx), ctx.shipped_stages(self.name))
        recipe = cfg.gan_recipe()
        info: dict[str, Any] = {"resumed": {}}
        hit = store.load_tensors("gan", "gan")
        if hit is not None:
            tensors, meta = hit
            G, _ = build_plgmi_gan(access.num_classes, recipe, 0)
            G.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
            summary, labels_info = meta["summary"], meta["pseudo_labels"]
            access.credit({PHASE_LABELS: labels_info["queries"], PHASE_GAN: summary["queries"]})
            info["resumed"] = {"pseudo_labels": True, "gan": True}
        else:
            public = public_images(ctx, cfg.gan_resolution, "PLG-MI")
            selected, labels_info = self._pseudo_labels(ctx, public, store, info)
            images = public[selected.flatten()]
            labels = torch.arange(selected.shape[0]).repeat_interleave(selected.shape[1])
            access.set_phase(PHASE_GAN)
            try:
                gan = train_plgmi_gan(images, labels, access.num_classes, recipe, self._guide(ctx),
                                      seed=derive_seed(ctx.seed, "plgmi", "gan") & 0x7FFFFFFF, device=ctx.device,
                                      progress=ctx.progress)
            finally:
                access.set_phase("prepare")
            G, summary = gan.G, gan.summary
            # Only G is kept: the attack never uses D after training.
            store.write_tensors("gan", "gan", {f"G.{k}": v for k, v in G.state_dict().items()},
                                {"summary": summary, "pseudo_labels": labels_info})
        self.G = G.to(ctx.device).eval().requires_grad_(False)
        info["pseudo_labels"] = labels_info
        info["gan"] = {k: summary.get(k) for k in ("steps", "seconds", "queries", "final_target_agreement")}
        if store.used_shipped:
            info["shipped_stages"] = sorted(store.used_shipped)
        info["queries_by_phase"] = {k: int(v) for k, v in access.queries_by_phase.items()
                                    if k in (PHASE_LABELS, PHASE_GAN)}
        self._info = info

    def _pseudo_labels(self, ctx: AttackContext, public: Tensor, store: StageStore,
                       info: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """Indices (K, n) of each class's top-n public images (stored as a stage) and a summary."""
        digest = images_digest(public)
        hit = store.load_tensors("pseudo-labels", "labels")
        if hit is not None and hit[1].get("public_sha256") == digest:
            tensors, meta = hit
            ctx.access.credit({PHASE_LABELS: meta["queries"]})
            info["resumed"]["pseudo_labels"] = True
            return tensors["selected"].long(), meta["summary"]
        probs = self.score_public(ctx, public)
        selected = top_n_pseudo_labels(probs, self.config.top_n)
        conf = probs.gather(0, selected.t()).t()  # (K, n) each selected image's probability of its class
        summary = {"queries": len(public), "public_images": len(public), "per_class": int(selected.shape[1]),
                   "distinct_images": int(torch.unique(selected).numel()),
                   "mean_confidence": round(float(conf.mean()), 4),
                   "selected_argmax_agrees": round(float((probs.argmax(1)[selected] ==
                                                          torch.arange(len(selected)).view(-1, 1)).float().mean()), 4)}
        store.write_tensors("pseudo-labels", "labels", {"selected": selected, "confidence": conf},
                            {"queries": len(public), "public_sha256": digest, "summary": summary})
        return selected, summary

    @torch.no_grad()
    def score_public(self, ctx: AttackContext, public: Tensor) -> Tensor:
        """Target softmax (N, K) of the public images (uint8 (N, 3, R, R)); one query per image."""
        access = ctx.access
        view = View(size=access.input_size)
        access.set_phase(PHASE_LABELS)
        try:
            return map_fixed_batches(
                lambda x, n: torch.softmax(access.logits(view(x.to(ctx.device).float() / 255), count=n).float(), 1).cpu(),
                self.config.label_batch_size, public)
        finally:
            access.set_phase("prepare")

    def _guide(self, ctx: AttackContext):
        """The GAN's target guide: `gan_inv_loss` of the target on one augmented view of each fake."""
        access, cfg = ctx.access, self.config
        aug, view, inv = cfg.gan_augment(), View(size=access.input_size), LOSSES.get(cfg.gan_inv_loss)
        seed = rng.stream_seed(ctx.seed, "plgmi", "gan-augment")

        def guide(x: Tensor, y: Tensor, step: int) -> tuple[Tensor, Tensor]:
            keys = torch.arange(x.shape[0])
            logits = access.logits(view(aug(x, seed, keys, step)), count=x.shape[0]).float()
            return inv(logits, y), logits.detach().argmax(1)

        return guide

    def phase_info(self) -> dict[str, Any]:
        """Queries by phase, the pseudo-label and GAN stage summaries, whether they were resumed."""
        return dict(self._info)

    # ------------------------------------------------------------------------------------ attack pipeline
    def _ready(self, ctx: AttackContext) -> None:
        if self.G is None:
            raise AttackError("PLG-MI's GAN is not ready", fix="call prepare(ctx) first")

    def raw_images(self, z: Tensor, y: Tensor) -> Tensor:
        """Generator images (N, 3, R, R) on the [0, 1] scale, unclamped (what the attack loss sees)."""
        return to_image(self.G(z, y), self.config.gan_image_range)

    def synthesize(self, z: Tensor, y: Tensor) -> Tensor:
        """Generator images (N, 3, R, R) in [0, 1] (clamped) for latents z and classes y."""
        return self.raw_images(z, y).clamp(0, 1)

    def _target(self, ctx: AttackContext) -> list:
        """The target as the one inversion model: resized to its input, `n_real` images counted."""
        view = View(size=ctx.access.input_size)
        return [lambda x, n: ctx.access.logits(view(x), count=n)]

    def initial_selection(self, ctx: AttackContext, classes: Tensor) -> Tensor:
        """Random latents (len(classes) · num_candidates, z_dim), keyed by (seed, class, candidate)."""
        self._ready(ctx)
        keys = candidate_keys(classes, self.num_candidates)
        return rng.normal_matrix(rng.stream_seed(ctx.seed, "plgmi", "init"), keys, self.config.gan_z_dim).to(ctx.device)

    def optimize(self, ctx: AttackContext, latents: Tensor, targets: Tensor,
                 keys: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """Adam on z of G(z, class) per candidate on the target's loss over augmented views."""
        return invert(self.raw_images, self._target(ctx), self.loss_fn, latents, targets, keys,
                      InversionSpec.from_config(self.config), seed=rng.stream_seed(ctx.seed, "plgmi", "optimize"),
                      device=ctx.device, desc="plgmi optimise", progress=ctx.progress)

    @torch.no_grad()
    def final_selection(self, ctx: AttackContext, latents: Tensor, targets: Tensor, keys: Tensor,
                        extra: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Images at the output size and the target's mean confidence in the class over `final_views`."""
        return select_by_confidence(self.synthesize, self._target(ctx), latents, targets, keys,
                                    InversionSpec.from_config(self.config),
                                    seed=rng.stream_seed(ctx.seed, "plgmi", "final-selection"), device=ctx.device,
                                    output_size=ctx.output_size)


ATTACKS.register("plgmi", description=PLGMIAttack.description)(PLGMIAttack)
