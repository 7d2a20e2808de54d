"""Knowledge-Enriched Distributional Model Inversion (KED-MI; Chen et al., ICCV 2021) — white-box.

1. An inversion-specific GAN is trained on the attacker's public images, its discriminator also
   learning the target's soft labels of them (`mibench.generators.kedmi_gan`; one query per
   labelled public image). It is a stage of this attack, kept in the run folder and shipped for
   the embedded targets like LOKT's.
2. Per target class y a Gaussian over latents is learnt: μ (init 0) and log σ² (init 1), with
   z = μ + σ·ε, ε ~ N(0, I) drawn afresh every iteration; loss = softplus(LSE D(G(z))) − LSE D(G(z))
   + λ·CE(T(G(z)), y), λ = 100; Adam lr 0.02 on (μ, log σ²), 2400 iterations (`recovery.py` of
   `SCccc21/Knowledge-Enriched-DMI`).
3. The reconstructions are `num_final` = 5 draws z = μ + σ·ε of each learnt distribution, all
   kept (the published evaluation averages attack accuracy over them).

Faithfulness notes:
- The published loop clamps z after each Adam step, but z is re-sampled from (μ, σ) at the next
  iteration, so the clamp has no effect; mibench's default (`clip_z` None) is what that code
  computes. `clip_z: 1.0` clamps every sampled z (LOMMA's `clipz` variant).
- The published loss averages over its batch of 60 identities; mibench sums per-class losses
  scaled by `loss_scale` = 1/60 (the same Adam steps; a class's path does not depend on its batch).
- The prior's minibatch-discrimination features are those of a batch of one (see `kedmi_gan`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mibench.attacks.base import (
    Attack,
    AttackContext,
    ClassResult,
    map_fixed_batches,
    optimize_latents,
    public_images,
)
from mibench.attacks.stages import StageStore
from mibench.errors import AttackError
from mibench.generators.kedmi_gan import (
    KEDMIGANRecipe,
    build_kedmi_gan,
    realism,
    train_kedmi_gan,
)
from mibench.ops import rng
from mibench.ops.transforms import View
from mibench.registry import ATTACKS
from mibench.seeding import derive_seed

PHASE_GAN = "kedmi-gan"


@dataclass
class KEDMIConfig:
    """KED-MI hyper-parameters; defaults are the published CelebA 64 px setting."""

    gan_resolution: int = 64
    gan_dim: int = 64
    gan_z_dim: int = 100
    gan_epochs: int | None = 120
    gan_steps: int | None = None  # critic steps; replaces gan_epochs when set
    gan_batch_size: int = 64
    gan_n_critic: int = 5
    gan_lr: float = 2e-4
    steps: int = 2400
    lr: float = 0.02
    lambda_identity: float = 100.0
    init_logvar: float = 1.0
    num_final: int = 5  # draws of each learnt distribution (all evaluated)
    clip_z: float | None = None  # see the module docstring
    loss_scale: float = 1 / 60
    batch_size: int = 60  # classes whose distributions are optimised together (independent)

    def validate(self) -> None:
        if self.num_final < 1 or self.steps < 0 or self.batch_size < 1:
            raise ValueError("num_final and batch_size must be ≥ 1, steps ≥ 0")
        if self.gan_steps is None and self.gan_epochs is None:
            raise ValueError("gan_steps: give gan_steps or gan_epochs")
        if self.clip_z is not None and self.clip_z <= 0:
            raise ValueError("clip_z: must be positive (or null)")

    def gan_recipe(self) -> KEDMIGANRecipe:
        """The GAN stage's recipe."""
        return KEDMIGANRecipe(dim=self.gan_dim, z_dim=self.gan_z_dim, epochs=self.gan_epochs, steps=self.gan_steps,
                              batch_size=self.gan_batch_size, n_critic=self.gan_n_critic, lr=self.gan_lr)


KEDMI_PRESETS: dict[str, dict[str, Any]] = {
    "celeba": {},
    "facescrub": {},
    "stanford_dogs": {},
    # Embedded default (32 px synthfaces, CPU): half-width GAN for 3000 critic steps (≈ 10 epochs of
    # the 20 000 public images) and a sixth of the attack iterations.
    "synthfaces": {"gan_resolution": 32, "gan_dim": 32, "gan_steps": 3000, "steps": 400, "batch_size": 100,
                   "loss_scale": 1 / 60},
    "smoke": {"gan_resolution": 32, "gan_dim": 4, "gan_z_dim": 8, "gan_steps": 2, "gan_batch_size": 4,
              "steps": 2, "num_final": 2, "batch_size": 4},
}
KEDMI_PRESETS["small"] = dict(KEDMI_PRESETS["synthfaces"])


class KEDMIAttack(Attack):
    """KED-MI: a target-aware public GAN and per-class latent distributions."""

    name = "kedmi"
    description = ("Knowledge-Enriched Distributional MI (Chen et al., ICCV 2021): white-box, a GAN trained with "
                   "the target's soft labels, per-class latent distributions")
    access_level = "white-box"
    config_cls = KEDMIConfig
    presets = KEDMI_PRESETS
    fitted_presets = ((128, "small"), (1 << 30, "celeba"))
    needs_prior = False
    needs_public_data = True
    cost = 2.0
    in_default_suite = False
    identity_hook = True  # LOMMA (`kedmi+lomma`) replaces `identity_loss`

    CODE = ("mibench.attacks.kedmi",)

    def __init__(self, config: KEDMIConfig):
        super().__init__(config)
        self.G = self.D = None
        self._info: dict[str, Any] = {}

    def classes_per_group(self) -> int:
        """Classes optimised together (`batch_size`)."""
        return self.config.batch_size

    # ------------------------------------------------------------------------------------ stage
    def prepare(self, ctx: AttackContext) -> None:
        """Train (or load) the GAN with the target's soft labels of the public images."""
        cfg, access = self.config, ctx.access
        gan_keys = {k: v for k, v in asdict(cfg).items() if k.startswith("gan_")}
        keys = {"gan": {**gan_keys, "seed": ctx.seed, "classes": access.num_classes, "input_size": access.input_size}}
        store = StageStore("kedmi-run", self.CODE, ctx.store_dir, keys, ctx.shipped_stages(self.name))
        recipe = cfg.gan_recipe()
        hit = store.load_tensors("gan", "gan")
        if hit is not None:
            tensors, meta = hit
            G, D = build_kedmi_gan(access.num_classes, cfg.gan_resolution, recipe, 0)
            G.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
            D.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")})
            summary = meta["summary"]
            access.credit({PHASE_GAN: summary["queries"]})
            self._info = {"resumed": True}
        else:
            view = View(size=access.input_size)
            real = public_images(ctx, cfg.gan_resolution, "KED-MI")
            access.set_phase(PHASE_GAN)
            try:
                gan = train_kedmi_gan(real, lambda x: access.logits(view(x), count=len(x)).detach(),
                                      access.num_classes, recipe, seed=derive_seed(ctx.seed, "kedmi", "gan"),
                                      device=ctx.device, progress=ctx.progress)
            finally:
                access.set_phase("prepare")
            G, D, summary = gan.G, gan.D, gan.summary
            store.write_tensors("gan", "gan", {**{f"G.{k}": v for k, v in G.state_dict().items()},
                                               **{f"D.{k}": v for k, v in D.state_dict().items()}},
                                {"summary": summary})
            self._info = {"resumed": False}
        self.G = G.to(ctx.device).eval().requires_grad_(False)
        self.D = D.to(ctx.device).eval().requires_grad_(False)
        self._info["gan"] = {k: summary[k] for k in ("steps", "seconds", "queries", "final_label_agreement")}
        if store.used_shipped:
            self._info["shipped_stages"] = sorted(store.used_shipped)

    def phase_info(self) -> dict[str, Any]:
        """The GAN stage's summary (steps, time, queries, agreement of D's labels with the target's)."""
        return dict(self._info)

    # ------------------------------------------------------------------------------------ attack
    def sample(self, params: Tensor, keys: Tensor, seed: int, counter: int) -> Tensor:
        """z = μ + σ·ε (N, z_dim) for rows [μ, log σ²] (N, 2·z_dim), ε keyed by (class, counter)."""
        d = self.config.gan_z_dim
        mu, logvar = params[:, :d], params[:, d:]
        eps = rng.normal_matrix(seed, keys.cpu(), d, counter).to(params.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        return z if self.config.clip_z is None else z.clamp(-self.config.clip_z, self.config.clip_z)

    def images(self, z: Tensor) -> Tensor:
        """Generator images (N, 3, R, R) in [0, 1]."""
        return self.G(z)

    def loss(self, ctx: AttackContext, z: Tensor, targets: Tensor, n_real: int) -> Tensor:
        """Per-class loss (N,): loss_scale · (prior + λ·CE)."""
        cfg = self.config
        x = self.images(z)
        _, d_logits = self.D(x, batch_coupling=False)
        identity = self.identity_loss(ctx, View(size=ctx.access.input_size)(x), targets, n_real)
        return cfg.loss_scale * (realism(d_logits) + cfg.lambda_identity * identity)

    def identity_loss(self, ctx: AttackContext, x: Tensor, targets: Tensor, n_real: int) -> Tensor:
        """Per-sample identity loss (N,) of target-input images x: CE(T(x), y). An add-on (LOMMA)
        replaces it (`mibench.attacks.addon`)."""
        logits = ctx.access.logits(x, count=n_real).float()
        return F.cross_entropy(logits, targets, reduction="none")

    def initial_distributions(self, ctx: AttackContext, n: int) -> Tensor:
        """[μ = 0, log σ² = init_logvar] for n classes (n, 2·z_dim)."""
        d = self.config.gan_z_dim
        return torch.cat([torch.zeros(n, d), torch.full((n, d), self.config.init_logvar)], 1).to(ctx.device)

    def learn(self, ctx: AttackContext, classes: Tensor) -> tuple[Tensor, Tensor]:
        """Each class's learnt (μ, log σ²) (C, 2·z_dim) and final loss (C,): Adam on both, one fresh ε
        per class and iteration."""
        cfg = self.config
        seed = rng.stream_seed(ctx.seed, self.name, "eps")
        params, extra = optimize_latents(
            self.initial_distributions(ctx, len(classes)), classes, classes,
            lambda p, t, k, step, n: self.loss(ctx, self.sample(p, k, seed, step), t, n),
            batch_size=cfg.batch_size, steps=cfg.steps, device=ctx.device, progress=ctx.progress,
            make_optimizer=lambda ps: torch.optim.Adam(ps, lr=cfg.lr), desc=f"{self.name} optimise")
        return params, extra["final_loss"]

    @torch.no_grad()
    def draw(self, ctx: AttackContext, params: Tensor, classes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """`num_final` draws z (C·n, z_dim) per learnt distribution, class-major, with their
        output-size images (C·n, 3, S, S) and target logits of the class (C·n,)."""
        n, bs = self.config.num_final, self.config.batch_size
        seed = rng.stream_seed(ctx.seed, self.name, "final")
        z = torch.cat([self.sample(params, classes, seed, j) for j in range(n)], 1).view(len(params) * n, -1)
        images = map_fixed_batches(lambda zz, _n: self.images(zz), bs, z)
        view = View(size=ctx.access.input_size)
        logits = map_fixed_batches(lambda x, m: ctx.access.logits(view(x), count=m).float(), bs, images)
        scores = logits.gather(1, classes.repeat_interleave(n).to(logits.device).view(-1, 1)).squeeze(1).cpu()
        return z.cpu(), View(size=ctx.output_size)(images).cpu(), scores

    def attack_classes(self, ctx: AttackContext, classes: list[int]) -> list[ClassResult]:
        """Learn each class's distribution and draw its `num_final` reconstructions (all kept)."""
        if self.G is None:
            raise AttackError("KED-MI's GAN is not ready", fix="call prepare(ctx) first")
        cls_t = torch.as_tensor(classes, dtype=torch.long)
        params, final_loss = self.learn(ctx, cls_t)
        z, images, scores = self.draw(ctx, params, cls_t)
        n, d = self.config.num_final, self.config.gan_z_dim
        out = []
        for i, c in enumerate(classes):
            sl = slice(i * n, (i + 1) * n)
            info = {"final_loss": float(final_loss[i]), "sigma_mean": float(torch.exp(0.5 * params[i, d:]).mean())}
            out.append(ClassResult(c, images[sl], z[sl], scores[sl], info))
        return out


ATTACKS.register("kedmi", description=KEDMIAttack.description)(KEDMIAttack)
