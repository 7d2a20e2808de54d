"""LOMMA (Nguyen et al., CVPR 2023, "Re-thinking Model Inversion Attacks Against Deep Neural
Networks") as an add-on of white-box generative attacks: `gmi+lomma`, `kedmi+lomma`, and the
paper's ablations `+lomma-logit` (L_logit) and `+lomma-aug` (L_aug).

1. Logit loss with a feature regulariser (L_logit): the identity loss is −logit_y (the raw logit,
   not CE) plus λ·mean_d (f_T(x) − μ)², f_T the target's penultimate features and μ their mean
   over the first `feature_samples` public images; the regulariser uses the target only.
2. Model augmentation (L_aug): `surrogates` classifiers distilled from the target on the public
   images (KL between softmaxes at temperature T, divided by T² and the batch; SGD lr 0.01,
   momentum 0.9, weight decay 1e-4), attacked as an ensemble with the target: the identity loss
   is averaged over the target and the surrogates.
3. Ours = both: −logit_y averaged over target + surrogates, plus the target's regulariser.
The base attack's prior term and its λ = 100 weight stay as they are: total = prior +
100·(identity + regulariser), as in the published `iden_loss` / `inversion` / `dist_inversion`.

Sources (`sutd-visual-computing-group/Re-thinking_MI`): attack.py (`iden_loss`, `reg_loss`,
`get_act_reg`: Nsample 5000), recovery.py (variants; KED-MI runs with `clipz` and one seed),
config/celeba/attacking/celeba.json (iters 2400, lr 0.02, lam 1.0), engine.py `train_augmodel` and
config/celeba/training_augmodel/celeba.json (20 epochs, lr 0.01, T = 1, batch 64, EfficientNet-B0/
B1/B2 students).

Faithfulness notes:
- The published `reg_loss` draws a sample from N(μ, σ) and then overwrites it with μ: the
  regulariser is the distance to the mean, as here.
- The published distillation saves its "_20" checkpoint after 19 epochs (it saves when
  epoch + 1 is a multiple of 10, counting epochs from 1) and its StepLR(20, 0.5) never fires within
  them; the attacked surrogates therefore had 19 epochs at a constant lr 0.01: `surrogate_epochs`
  defaults to 19 with a constant schedule.
- The teacher's outputs are computed per batch, as published (each epoch queries every public
  image once; counted in phase "lomma-distill"); no augmentation (the public loader's
  deterministic crop and resize only).
- LOMMA's runs use 2400 GMI iterations (the base GMI paper: 1500): the research presets of
  `gmi+lomma*` set `steps: 2400`; KED-MI with LOMMA clamps every sampled z to [−1, 1]
  (`clip_z: 1.0`, published `clipz`) in every preset. The embedded presets keep the base's step
  count, so `+lomma` differs from its base only by the add-on (and KED-MI's clamp).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mibench.attacks.addon import AttackAddOn
from mibench.attacks.base import Attack, AttackContext, map_fixed_batches, public_images
from mibench.attacks.stages import StageStore
from mibench.attacks.surrogates import SurrogateEnsemble, SurrogateSpec
from mibench.classifiers.recipe import Augment, TrainRecipe
from mibench.errors import AttackError
from mibench.registry import ADDONS
from mibench.seeding import derive_seed

PHASE_FEATURES = "lomma-features"
PHASE_DISTILL = "lomma-distill"
RESEARCH_PRESETS = ("celeba", "facescrub", "stanford_dogs")


def _efficientnets() -> list[SurrogateSpec]:
    return [SurrogateSpec("timm", {"model_name": f"efficientnet_b{i}"}) for i in range(3)]


@dataclass
class LOMMAConfig:
    """LOMMA's settings; defaults are the published CelebA 64 px ones (see the module docstring)."""

    lambda_reg: float = 1.0  # celeba.json "lam"
    feature_samples: int = 5000  # public images whose target features give μ (get_act_reg Nsample)
    surrogates: list[SurrogateSpec] = field(default_factory=_efficientnets)
    surrogate_input_size: int = 64
    surrogate_epochs: int = 19  # the published "_20" checkpoint (see the module docstring)
    surrogate_batch_size: int = 64
    surrogate_lr: float = 0.01
    surrogate_momentum: float = 0.9
    surrogate_weight_decay: float = 1e-4
    temperature: float = 1.0
    public_samples: int | None = None  # distil on the first n public images only (None: all, as published)
    feature_batch_size: int = 250  # images per target call when computing μ and the teacher (no effect on numbers)

    def validate(self) -> None:
        if self.lambda_reg < 0 or self.feature_samples < 1:
            raise ValueError("lambda_reg: must be ≥ 0 (and feature_samples ≥ 1)")
        if not self.surrogates:
            raise ValueError("surrogates: needs at least one surrogate (L_aug and ours attack an ensemble)")
        if self.surrogate_epochs < 1 or self.temperature <= 0:
            raise ValueError("surrogate_epochs: must be ≥ 1 (and temperature > 0)")

    def recipe(self, seed: int) -> TrainRecipe:
        """How each surrogate is distilled (seeded per surrogate)."""
        return TrainRecipe(epochs=self.surrogate_epochs, batch_size=self.surrogate_batch_size, optimizer="sgd",
                           lr=self.surrogate_lr, momentum=self.surrogate_momentum,
                           weight_decay=self.surrogate_weight_decay, schedule="constant",
                           augment=Augment(crop_scale=None, flip=False, color_jitter=0.0), seed=seed)


_SYNTH_SURROGATES = [
    {"architecture": "compact_resnet", "arch_params": {"width": 16, "depths": [1, 1, 1]}},
    {"architecture": "compact_resnet", "arch_params": {"width": 24, "depths": [1, 1, 1]}},
    {"architecture": "compact_resnet", "arch_params": {"width": 16, "depths": [1, 2, 1]}},
]

LOMMA_PRESETS: dict[str, dict[str, Any]] = {
    "celeba": {}, "facescrub": {}, "stanford_dogs": {},
    # Embedded (32 px synthfaces, CPU): three small ResNets of growing size in place of
    # EfficientNet-B0/B1/B2, distilled for 4 epochs on the 20 000 public images (see docs/more-attacks).
    "synthfaces": {"surrogates": _SYNTH_SURROGATES, "surrogate_input_size": 32, "surrogate_epochs": 4,
                   "surrogate_batch_size": 64},
    "smoke": {"feature_samples": 8, "surrogates": [{"architecture": "compact_resnet",
                                                    "arch_params": {"width": 4, "depths": [1]}}],
              "surrogate_input_size": 16, "surrogate_epochs": 1, "surrogate_batch_size": 4, "feature_batch_size": 4,
              "public_samples": 16},
}
LOMMA_PRESETS["small"] = dict(LOMMA_PRESETS["synthfaces"])


class Distillation:
    """The distillation loss in `train_classifier`'s loss interface: KL(softmax(t/T) ‖ softmax(s/T)) / T²
    per batch, the teacher's logits `teacher(x)` computed per batch; the dataset's labels are unused
    ("acc" logs the student's agreement with the teacher)."""

    kind = "distillation"
    needs_prepare = False

    def __init__(self, teacher, temperature: float):
        self.teacher, self.t = teacher, temperature

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, progress: float) -> tuple[Tensor, dict[str, float]]:
        """(scalar loss, logs) for a batch of public images x (N, 3, H, W) in [0, 1]."""
        with torch.no_grad():
            t = self.teacher(x).float()
        s = model(x).float()
        kl = F.kl_div(F.log_softmax(s / self.t, 1), F.softmax(t / self.t, 1), reduction="sum") / (self.t ** 2) / len(x)
        agree = (s.detach().argmax(1) == t.argmax(1)).float().mean()
        return kl, {"kl": float(kl.detach()), "acc": float(agree)}

    def trainable_parameters(self, model: nn.Module):
        """Every parameter of the student."""
        return (p for p in model.parameters() if p.requires_grad)


class LOMMA(AttackAddOn):
    """LOMMA, both parts ("ours"): logit loss + feature regulariser, and model augmentation."""

    name = "lomma"
    description = "LOMMA (Nguyen et al., CVPR 2023): logit loss + feature regulariser and model augmentation"
    field = "lomma"
    config_cls = LOMMAConfig
    presets = LOMMA_PRESETS
    needs_public_data = True
    variant: ClassVar[str] = "ours"  # published variant name: L_logit, L_aug or ours
    uses_logit: ClassVar[bool] = True
    uses_augmentation: ClassVar[bool] = True

    CODE = ("mibench.attacks.lomma",)

    def __init__(self, config: LOMMAConfig):
        super().__init__(config)
        self.mu: Tensor | None = None
        self.models: list[nn.Module] = []
        self._info: dict[str, Any] = {}

    @classmethod
    def base_overrides(cls, base: type[Attack], preset: str) -> dict[str, Any]:
        """LOMMA's published base settings: 2400 GMI iterations (research presets), clamped KED-MI draws."""
        if base.name == "gmi" and preset in RESEARCH_PRESETS:
            return {"steps": 2400}
        if base.name == "kedmi":
            return {"clip_z": 1.0}
        return {}

    def describe(self) -> dict[str, Any]:
        """The add-on's name and the published variant it is."""
        return {"name": self.name, "variant": self.variant}

    # ------------------------------------------------------------------------------------ stages
    def _keys(self, ctx: AttackContext) -> dict[str, dict[str, Any]]:
        cfg = asdict(self.config)
        common = {"seed": ctx.seed, "classes": ctx.access.num_classes, "input_size": ctx.access.input_size}
        surr = {k: v for k, v in cfg.items() if k.startswith("surrogate") or k in ("temperature", "public_samples")}
        return {"features": {"feature_samples": cfg["feature_samples"], **common}, "surrogates": {**surr, **common}}

    def prepare(self, attack: Attack, ctx: AttackContext) -> None:
        """The public feature mean (logit variants) and the distilled surrogates (augmentation variants)."""
        store = StageStore("lomma-run", self.CODE, ctx.store_dir, self._keys(ctx), ctx.shipped_stages("lomma"))
        access, cfg = ctx.access, self.config
        info: dict[str, Any] = {"variant": self.variant, "resumed": []}
        public = None
        if self.uses_logit:
            hit = store.load_tensors("feature-mean", "features")
            if hit is not None:
                mu, meta = hit[0]["mu"], hit[1]
                access.credit({PHASE_FEATURES: meta["queries"]})
                info["resumed"].append("features")
            else:
                public = public_images(ctx, access.input_size, "LOMMA")
                mu, meta = self._feature_mean(ctx, public[: cfg.feature_samples])
                store.write_tensors("feature-mean", "features", {"mu": mu}, meta)
            self.mu = mu.to(ctx.device)
            info["features"] = meta
        if self.uses_augmentation:
            summaries = []
            for i, spec in enumerate(cfg.surrogates):
                hit = store.load_classifier(f"surrogate-{i}", "surrogates", spec.architecture, ctx.device)
                if hit is None:
                    public = public_images(ctx, access.input_size, "LOMMA") if public is None else public
                    model, summary = self._distill(ctx, i, spec, public[: cfg.public_samples])
                    store.write_classifier(f"surrogate-{i}", "surrogates", model, summary)
                else:
                    model, summary = hit
                    access.credit({PHASE_DISTILL: summary["queries"]})
                    info["resumed"].append(f"surrogate-{i}")
                self.models.append(model.to(ctx.device).eval().requires_grad_(False))
                summaries.append(summary)
            info["surrogates"] = summaries
        if store.used_shipped:
            info["shipped_stages"] = sorted(store.used_shipped)
        self._info = info

    @torch.no_grad()
    def _feature_mean(self, ctx: AttackContext, images: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """μ (D,): the target's mean penultimate features over uint8 public images (one query each)."""
        access, bs = ctx.access, self.config.feature_batch_size
        access.set_phase(PHASE_FEATURES)
        try:
            feats = map_fixed_batches(
                lambda x, n: access.features_and_logits(x.to(ctx.device).float() / 255, count=n)[0].float().cpu(),
                bs, images)
        finally:
            access.set_phase("prepare")
        return feats.double().mean(0).float(), {"queries": len(images), "images": len(images),
                                                "feature_dim": int(feats.shape[1])}

    def _distill(self, ctx: AttackContext, i: int, spec: SurrogateSpec, public: Tensor) -> tuple[nn.Module, dict[str, Any]]:
        """Distil surrogate `i` from the target on the public images."""
        from mibench.classifiers.architectures import build_classifier
        from mibench.classifiers.train import train_classifier
        from mibench.data.base import TensorImageDataset

        cfg, access, K = self.config, ctx.access, ctx.access.num_classes
        seed = derive_seed(ctx.seed, "lomma", "surrogate", i) & 0x7FFFFFFF
        model = build_classifier(spec.architecture, K, cfg.surrogate_input_size, spec.arch_params, seed=seed)
        data = TensorImageDataset(public, torch.zeros(len(public), dtype=torch.long), [f"c{k}" for k in range(K)],
                                  name="lomma-public", split="public")
        before = access.queries
        access.set_phase(PHASE_DISTILL)
        try:
            res = train_classifier(model, data, None, cfg.recipe(seed),
                                   defense=Distillation(lambda x: access.logits(x).detach(), cfg.temperature),
                                   device=ctx.device, progress=ctx.progress,
                                   desc=f"LOMMA surrogate {i + 1}/{len(cfg.surrogates)}")
        finally:
            access.set_phase("prepare")
        last = res.history[-1] if res.history else {}
        summary = {"architecture": spec.architecture, "arch_params": dict(spec.arch_params), "epochs": len(res.history),
                   "final_kl": last.get("kl"), "final_train_agreement": last.get("train_acc"),
                   "seconds": round(res.seconds, 2), "queries": access.queries - before}
        return res.model.to(memory_format=torch.contiguous_format), summary

    # ------------------------------------------------------------------------------------ attack
    def identity_loss(self, attack: Attack, ctx: AttackContext, x: Tensor, targets: Tensor, n_real: int,
                      base) -> Tensor:
        """Per-sample identity loss (N,): the variant's loss averaged over the target (and the
        surrogates), plus λ·mean (f_T − μ)² with the logit loss."""
        if (self.uses_logit and self.mu is None) or (self.uses_augmentation and not self.models):
            raise AttackError("LOMMA is not prepared", fix="call prepare(ctx) first")
        reg = 0.0
        if self.uses_logit:
            feats, logits = ctx.access.features_and_logits(x, count=n_real)
            terms = [_negative_logit(logits, targets)]
            reg = self.config.lambda_reg * ((feats.float() - self.mu) ** 2).mean(1)
        else:
            terms = [base(ctx, x, targets, n_real)]
        for model in self.models:
            out = model(x)
            terms.append(_negative_logit(out, targets) if self.uses_logit
                         else F.cross_entropy(out.float(), targets, reduction="none"))
        return torch.stack(terms).mean(0) + reg

    def surrogates(self) -> nn.Module | None:
        """The distilled surrogates as one ensemble (their agreement with the target is reported)."""
        return SurrogateEnsemble(self.models).eval() if self.models else None

    def phase_info(self) -> dict[str, Any]:
        """Variant, feature-mean and surrogate summaries, resumed stages."""
        return dict(self._info)


def _negative_logit(logits: Tensor, targets: Tensor) -> Tensor:
    """−logit_y (N,): the published logit loss (NLLLoss on raw logits)."""
    return -logits.float().gather(1, targets.view(-1, 1)).squeeze(1)


class LOMMALogit(LOMMA):
    """LOMMA's L_logit ablation: logit loss + feature regulariser, no model augmentation."""

    name = "lomma-logit"
    description = "LOMMA's L_logit (logit loss + feature regulariser, no model augmentation)"
    variant = "L_logit"
    uses_augmentation = False


class LOMMAAug(LOMMA):
    """LOMMA's L_aug ablation: the base's CE loss over the target and distilled surrogates."""

    name = "lomma-aug"
    description = "LOMMA's L_aug (model augmentation with the base's cross-entropy, no logit loss)"
    variant = "L_aug"
    uses_logit = False


for _cls in (LOMMA, LOMMALogit, LOMMAAug):
    ADDONS.register(_cls.name, description=_cls.description)(_cls)
