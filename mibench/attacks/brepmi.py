"""Boundary-Repelling Model Inversion (BREP-MI; Kahla et al., CVPR 2022, "Label-Only Model Inversion
Attacks via Boundary Repulsion") — label-only, GMI's public GAN as the prior (`gmi` generator kind).

The target is reached only through `ctx.access.labels(x)` (argmax labels; every image is one query).

1. Start (`prepare`, phase "init"): one pool of latents z ~ N(0, I) clamped to [−1.5, 1.5], labelled
   by the target in batches of 256 until every class of the target has a hit (or `max_pool_batches`
   batches were labelled); class y starts from the lowest pool index labelled y. Pool latent k is
   keyed by its index only, so it is the same latent whichever classes are attacked.
2. Per class and step (phase "attack"): N = 32 points z + u_j on the sphere of radius r around z
   (u_j = r·g_j/|g_j|, g_j ~ N(0, I), keyed by (run seed, class, point, step)) are labelled;
   s_j = +1 if labelled y else −1. If Σ s_j > 0.75·N (≥ 29 of 32 inside), r ← 1.3·r. The update
   direction is mean_j(((s_j − 1)/2)·u_j) / r — only points outside the class contribute, and r is
   the radius after a possible increase, as in the published code — and the candidate
   clamp(z + min(r_old/3, 3)·direction, −1.5, 1.5) is labelled: a candidate outside the class is
   rejected (z stays). 33 label queries per step.
3. Stop when `patience` = 1000 accepted steps have passed without a radius increase (steps that
   increase the radius and rejected steps do not count, as in the published loop). The reported
   point is the accepted point of the last step that increased the radius; its score is the radius
   of the sphere that passed the ≥ 29 / 32 test there (higher = deeper inside the class region).

Sources: `m-kahla/Label-Only-Model-Inversion-Attacks-via-Boundary-Repulsion` — brep_mi.py
(`gen_points_on_sphere`, `attack_single_target`), brep_mi_utils.py (`is_target_class`: ±1 labels;
`gen_initial_points_*`: batches of clamped N(0, I) latents, first hit per class), config2.yaml
(32 points, radius 2, expansion 1.3, clamp ±1.5, 1000 iterations at a radius, z dim 100, batches of
256, repulsion only). The MIA ToolBox (`ffhibnese/Model-Inversion-Attack-ToolBox`,
attack/BREPMI/attacker.py, config.py) differs: 0/1 labels (so the growth test is "> 24 of 32" and
no step is ever rejected), 1000 steps in all instead of 1000 without an increase, the final image
instead of the last-increase one, and a cap of 10 000 pool batches (`init_z_max_iter`), which
mibench takes as `max_pool_batches` (the official loop has no cap).

Departures (named options):
- `max_steps` / `max_radius`: caps on sphere evaluations per class and on the radius. The
  published code has neither (a class whose candidates keep being rejected never stops); the
  paper presets leave them off, the CPU preset sets `max_steps`.
- `without_increase`: a class whose radius never increased (or whose increase steps were all
  rejected) has no published reconstruction (the official code scores it as a miss). "current"
  (default) returns its current point — still labelled the class — with score 0; "fail" returns
  a NaN score, which the runner reports as a failed class (counted 0).
- A class without a pool hit fails the same way (NaN score; `info["failed"]` says why, and the
  runner reports that reason for the class).
- `batching`: "per_class" (default) makes every generator and target call hold one class's 32
  sphere points, or its one candidate: fixed batch sizes, no padding, and every image sent to the
  target is a real query. "group" runs the generator on the points of all classes of the group in
  fixed-size padded batches (`batch_classes` · N) and sends the target their real rows together
  (fewer, larger calls, e.g. on a GPU); the target's batch size then depends on how many classes
  of the group are still active. (Padding the target's batches too would need a `count` argument
  on `LabelOnly.labels`, which counts every row it is given.)
- The published loop also computes a cross-entropy loss on the target's logits and the
  evaluator's prediction at every step, for its log only; a label-only attack cannot, and they
  do not change the search.

Batching invariance: the classes of a group are stepped together; every network call has a fixed
size (see `batching`), the generator runs in eval mode, every random draw is keyed by class and
step (never by position in the group), and a finished class stops querying, so a class's
trajectory, result and query count do not depend on the classes it is grouped with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from mibench.attacks.base import Attack, AttackContext, ClassResult, map_fixed_batches, padded_chunks
from mibench.attacks.stages import StageStore
from mibench.errors import AttackError
from mibench.ops import rng
from mibench.ops.transforms import View
from mibench.registry import ATTACKS

PHASE_INIT = "init"
PHASE_ATTACK = "attack"


@dataclass
class BREPMIConfig:
    """BREP-MI settings; defaults are the published CelebA setting (config2.yaml, brep_mi.py)."""

    n_points: int = 32  # sphere_points_count
    init_radius: float = 2.0  # current_sphere_radius
    expansion: float = 1.3  # sphere_expansion_coeff
    grow_fraction: float = 0.75  # radius grows when Σ ±1 labels > grow_fraction · n_points (brep_mi.py)
    step_divisor: float = 3.0  # step = min(r / step_divisor, max_step) (brep_mi.py)
    max_step: float = 3.0
    clip: float = 1.5  # point_clamp_min / point_clamp_max (also clamps the pool latents)
    patience: int = 1000  # max_iters_at_radius_before_terminate
    repulsion_only: bool = True  # False: all points weighted by their ±1 label (the code's other branch)
    max_steps: int | None = None  # cap on sphere evaluations per class (published: none)
    max_radius: float | None = None  # stop once the radius exceeds it (published: none)
    without_increase: Literal["current", "fail"] = "current"  # see the module docstring
    pool_batch_size: int = 256  # batch_dim_for_initial_points
    max_pool_batches: int = 10000  # ToolBox init_z_max_iter (the official loop has no cap)
    batch_classes: int = 8  # classes stepped together (one group)
    batching: Literal["per_class", "group"] = "per_class"  # network calls per class or per group (docstring)

    def validate(self) -> None:
        """Raise ValueError("field: why") for settings the search cannot run with."""
        if self.n_points < 1 or self.patience < 1 or self.batch_classes < 1:
            raise ValueError("n_points: n_points, patience and batch_classes must be ≥ 1")
        if self.init_radius <= 0 or self.expansion <= 1:
            raise ValueError("init_radius: must be positive, and expansion > 1")
        if self.step_divisor <= 0 or self.max_step <= 0 or self.clip <= 0:
            raise ValueError("step_divisor: step_divisor, max_step and clip must be positive")
        if not 0 <= self.grow_fraction < 1:
            raise ValueError("grow_fraction: must be in [0, 1)")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps: must be ≥ 1 (or null for no cap)")
        if self.max_radius is not None and self.max_radius <= self.init_radius:
            raise ValueError("max_radius: must exceed init_radius (or null for no cap)")
        if self.pool_batch_size < 1 or self.max_pool_batches < 1:
            raise ValueError("pool_batch_size: pool_batch_size and max_pool_batches must be ≥ 1")


BREPMI_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's setting (CelebA 64 px; config2.yaml is the only published configuration).
    "celeba": {},
    "facescrub": {},
    "stanford_dogs": {},
    # Embedded default (32 px synthfaces, CPU): every rule is the published one; only the budget is
    # cut — at most 300 steps (9.9 k queries) per class and a patience of 100 accepted steps instead
    # of 1000. Measured on synthfaces32-resnet, classes 0-4, one thread: 224-300 steps per class
    # (3-6 radius increases, no rejected step), ≈ 18 ms of CPU per step (33 images through G and T),
    # so ≈ 5 s per class and ≈ 9-10 min for the standard protocol's 100 classes, plus the pool (41
    # batches = 10.5 k queries cover all 100 classes, ≈ 6 s); acc@1 3 / 5. 400 pool batches at most.
    "synthfaces": {"max_steps": 300, "patience": 100, "max_pool_batches": 400},
    # Seconds-long settings for the contract tests and smoke runs (never a benchmark setting).
    "smoke": {"n_points": 8, "patience": 2, "max_steps": 4, "pool_batch_size": 16, "max_pool_batches": 8,
              "batch_classes": 2},
}
BREPMI_PRESETS["small"] = dict(BREPMI_PRESETS["synthfaces"])


# ---------------------------------------------------------------------------------------- rules
def sphere_directions(seed: int, classes: Tensor, step: int, radius: Tensor, n_points: int, z_dim: int) -> Tensor:
    """Offsets u (C, n_points, z_dim) with |u_j| = radius[c]: normalised Gaussian directions keyed by
    (seed, class, point, step), so a class draws the same sphere whatever it is grouped with."""
    rows = (classes.long().view(-1, 1) * n_points + torch.arange(n_points).view(1, -1)).flatten()
    g = rng.normal_matrix(seed, rows, z_dim, step).view(len(classes), n_points, z_dim)
    return g * (radius.float().view(-1, 1, 1) / g.norm(dim=2, keepdim=True))


def radius_grows(signs: Tensor, grow_fraction: float) -> Tensor:
    """(C,) bool: the sum of the ±1 labels (C, N) exceeds grow_fraction · N (0.75: ≥ 29 of 32 inside)."""
    return signs.sum(1) > grow_fraction * signs.shape[1]


def repulsion_direction(signs: Tensor, offsets: Tensor, radius: Tensor, repulsion_only: bool = True) -> Tensor:
    """Update direction (C, z_dim) = mean_j(w_j · u_j) / radius, w_j = (s_j − 1)/2 (0 inside, −1
    outside) when `repulsion_only`, else s_j; signs (C, N) ±1, offsets u (C, N, z_dim), radius (C,)."""
    w = (signs - 1) / 2 if repulsion_only else signs
    return (w.unsqueeze(2) * offsets).mean(1) / radius.view(-1, 1)


def step_sizes(radius: Tensor, divisor: float, max_step: float) -> Tensor:
    """Step lengths (C,) = min(radius / divisor, max_step) (published: min(r/3, 3))."""
    return torch.clamp(radius / divisor, max=max_step)


# ---------------------------------------------------------------------------------------- attack
class BREPMIAttack(Attack):
    """BREP-MI: label-only boundary repulsion on spheres in the latent space of GMI's public GAN."""

    name = "brepmi"
    description = ("Boundary-Repelling MI (Kahla et al., CVPR 2022): label-only; sphere sampling in GMI's "
                   "public GAN, repelled from the class boundary")
    access_level = "label-only"
    config_cls = BREPMIConfig
    presets = BREPMI_PRESETS
    fitted_presets = ((128, "small"), (1 << 30, "celeba"))
    prior_kinds = ("gmi",)
    cost = 3.0  # 33 label queries (and generator images) per class and step, hundreds of steps
    in_default_suite = False

    CODE = ("mibench.attacks.brepmi",)

    def __init__(self, config: BREPMIConfig):
        super().__init__(config)
        self.first_index: Tensor | None = None  # (K,) lowest pool index labelled each class, −1 for none
        self._info: dict[str, Any] = {}

    def classes_per_group(self) -> int:
        """Classes stepped together (`batch_classes`)."""
        return self.config.batch_classes

    def phase_info(self) -> dict[str, Any]:
        """The pool's summary: batches labelled, queries, classes without a hit."""
        return dict(self._info)

    # ------------------------------------------------------------------------------------ networks
    def images(self, ctx: AttackContext, z: Tensor) -> Tensor:
        """Generator images (N, 3, R, R) in [0, 1] of latents z (N, z_dim)."""
        return (ctx.prior(z) + 1) * 0.5

    def batch_rows(self, per_class: int) -> int:
        """Rows per network call for runs of `per_class` rows per class: one class's rows
        ("per_class") or `batch_classes` classes' ("group")."""
        return per_class if self.config.batching == "per_class" else self.config.batch_classes * per_class

    def labels(self, ctx: AttackContext, z: Tensor, per_class: int) -> Tensor:
        """Target labels (N,) on CPU of latents z (N, z_dim), laid out as consecutive runs of
        `per_class` rows per class."""
        rows = self.batch_rows(per_class)
        x = View(size=ctx.access.input_size)(map_fixed_batches(lambda zz, _n: self.images(ctx, zz), rows, z))
        # Only real rows go to the target: `labels` counts every row it is given.
        return torch.cat([ctx.access.labels(x[a:b]).cpu() for a, b in padded_chunks(len(x), rows)]).long()

    def pool_latents(self, ctx: AttackContext, index: Tensor) -> Tensor:
        """Pool latents (len(index), z_dim): N(0, I) keyed by pool index only, clamped to ±clip."""
        z = rng.normal_matrix(rng.stream_seed(ctx.seed, self.name, "pool"), index.long().cpu(), ctx.prior.z_dim)
        return z.clamp(-self.config.clip, self.config.clip).to(ctx.device)

    # ------------------------------------------------------------------------------------ start
    def prepare(self, ctx: AttackContext) -> None:
        """Label the pool batch by batch (phase "init") until every class has a hit or the cap is
        reached (or load that result from the run folder, crediting its queries)."""
        cfg, access = self.config, ctx.access
        if getattr(access, "level", None) != "label-only":
            raise AttackError(f"BREP-MI expects label-only access, got '{getattr(access, 'level', '?')}'")
        K = access.num_classes
        keys = {"pool": {"pool_batch_size": cfg.pool_batch_size, "max_pool_batches": cfg.max_pool_batches,
                         "clip": cfg.clip, "seed": ctx.seed, "classes": K, "input_size": access.input_size}}
        store = StageStore("brepmi-run", self.CODE, ctx.store_dir, keys)
        hit = store.load_tensors("pool", "pool")
        if hit is not None:
            first, meta = hit[0]["first_index"].long(), hit[1]
            access.credit({PHASE_INIT: int(meta["queries"])})
            batches, resumed = int(meta["batches"]), True
        else:
            first, batches = self._label_pool(ctx, K)
            store.write_tensors("pool", "pool", {"first_index": first},
                                {"queries": batches * cfg.pool_batch_size, "batches": batches})
            resumed = False
        self.first_index = first
        missing = [int(c) for c in torch.nonzero(first < 0).flatten()]
        self._info = {"pool": {"batches": batches, "queries": batches * cfg.pool_batch_size,
                               "classes_hit": K - len(missing), "classes_missing": missing[:64],
                               "resumed": resumed}}

    def _label_pool(self, ctx: AttackContext, K: int) -> tuple[Tensor, int]:
        """((K,) lowest pool index the target labels as each class (−1: none within the cap),
        batches labelled)."""
        cfg, access = self.config, ctx.access
        first = torch.full((K,), -1, dtype=torch.long)
        big, batches = torch.iinfo(torch.long).max, 0
        access.set_phase(PHASE_INIT)
        try:
            for b in range(cfg.max_pool_batches):
                index = torch.arange(b * cfg.pool_batch_size, (b + 1) * cfg.pool_batch_size)
                x = View(size=access.input_size)(self.images(ctx, self.pool_latents(ctx, index)))
                y = access.labels(x).cpu().long()
                lowest = torch.full((K,), big, dtype=torch.long).scatter_reduce(0, y, index, "amin")
                first = torch.where((first < 0) & (lowest < big), lowest, first)
                batches = b + 1
                if bool((first >= 0).all()):
                    break
        finally:
            access.set_phase("prepare")
        return first, batches

    # ------------------------------------------------------------------------------------ search
    def attack_classes(self, ctx: AttackContext, classes: list[int]) -> list[ClassResult]:
        """Run the boundary-repulsion search for each class of the group (stepped together)."""
        if self.first_index is None:
            self.prepare(ctx)
        cfg, d = self.config, ctx.prior.z_dim
        ctx.access.set_phase(PHASE_ATTACK)
        cls_t = torch.as_tensor(classes, dtype=torch.long)
        start = self.first_index[cls_t]
        ok = start >= 0
        runs = self.search(ctx, cls_t[ok], self.pool_latents(ctx, start[ok])) if bool(ok.any()) else None
        out, j = [], 0
        for i, c in enumerate(classes):
            if not bool(ok[i]):
                reason = (f"no pool latent was labelled class {c} in {self._info['pool']['batches']} batches "
                          f"of {cfg.pool_batch_size} (raise max_pool_batches)")
                out.append(ClassResult(c, torch.zeros(1, 3, ctx.output_size, ctx.output_size), torch.zeros(1, d),
                                       torch.full((1,), float("nan")), {"failed": reason, "queries": 0}))
                continue
            z, score, info = runs["z"][j:j + 1], runs["score"][j:j + 1], runs["info"][j]
            info["pool_index"] = int(start[i])
            images = map_fixed_batches(lambda zz, _n: self.images(ctx, zz), self.batch_rows(1), z)
            out.append(ClassResult(c, View(size=ctx.output_size)(images).cpu(), z.cpu(), score, info))
            j += 1
        return out

    @torch.no_grad()
    def search(self, ctx: AttackContext, classes: Tensor, z: Tensor) -> dict[str, Any]:
        """The search from start latents z (C, z_dim) for `classes` (C,): {"z": reported latents
        (C, z_dim), "score": (C,), "info": per-class dicts}."""
        from tqdm import tqdm

        cfg, C, d, N = self.config, len(classes), z.shape[1], self.config.n_points
        seed = rng.stream_seed(ctx.seed, self.name, "sphere")
        z = z.clone()
        radius = torch.full((C,), cfg.init_radius, dtype=torch.float32)
        it = torch.zeros(C, dtype=torch.long)  # the published `current_iter`
        last_inc = torch.zeros(C, dtype=torch.long)  # `last_iter_when_radius_changed`
        accepted, rejected, increases = (torch.zeros(C, dtype=torch.long) for _ in range(3))
        rec_z, rec_r = z.clone(), torch.zeros(C)
        rec_step = torch.full((C,), -1, dtype=torch.long)
        active = torch.ones(C, dtype=torch.bool)
        steps = torch.zeros(C, dtype=torch.long)
        stop = [""] * C
        bar = tqdm(total=cfg.max_steps, desc=f"{self.name} steps", disable=not ctx.progress, leave=False, unit="step")
        t = 0
        while bool(active.any()):
            a = torch.nonzero(active).flatten()
            ca, ra = classes[a], radius[a]
            za = z[a.to(z.device)]
            u = sphere_directions(seed, ca, t, ra, N, d).to(z.device)  # (A, N, d)
            lab = self.labels(ctx, (za.unsqueeze(1) + u).reshape(-1, d), N).view(len(a), N)
            signs = torch.where(lab == ca.view(-1, 1), 1.0, -1.0).to(z.device)
            grow = radius_grows(signs, cfg.grow_fraction).cpu()
            step = step_sizes(ra, cfg.step_divisor, cfg.max_step)  # from the radius before any increase
            new_r = torch.where(grow, ra * cfg.expansion, ra)
            direction = repulsion_direction(signs, u, new_r.to(z.device), cfg.repulsion_only)
            cand = (za + step.to(z.device).view(-1, 1) * direction).clamp(-cfg.clip, cfg.clip)
            inside = self.labels(ctx, cand, 1) == ca
            # Official order: an increase sets last_inc = current_iter whether or not the step is
            # accepted; a rejected step leaves z and current_iter unchanged; an accepted increase
            # step records the new point without advancing current_iter.
            last_inc[a] = torch.where(grow, it[a], last_inc[a])
            keep = inside.to(z.device).view(-1, 1)
            z[a.to(z.device)] = torch.where(keep, cand, za)
            record = grow & inside
            ar = a[record]
            rec_z[ar.to(z.device)] = cand[record.to(z.device)]
            rec_r[ar], rec_step[ar] = ra[record], t
            it[a] += (inside & ~grow).long()
            radius[a] = new_r
            accepted[a] += inside.long()
            rejected[a] += (~inside).long()
            increases[a] += grow.long()
            steps[a] += 1
            for k in a.tolist():
                if it[k] - last_inc[k] >= cfg.patience:
                    stop[k] = "patience"
                elif cfg.max_radius is not None and radius[k] > cfg.max_radius:
                    stop[k] = "max_radius"
                elif cfg.max_steps is not None and steps[k] >= cfg.max_steps:
                    stop[k] = "max_steps"
                if stop[k]:
                    active[k] = False
            t += 1
            bar.update(1)
        bar.close()
        has = rec_step >= 0
        fallback = 0.0 if cfg.without_increase == "current" else float("nan")
        out_z = torch.where(has.to(z.device).view(-1, 1), rec_z, z)
        score = torch.where(has, rec_r, torch.full((C,), fallback))
        info = [{"queries": int(steps[k]) * (N + 1), "steps": int(steps[k]), "iterations": int(it[k]),
                 "accepted": int(accepted[k]), "rejected": int(rejected[k]), "radius_increases": int(increases[k]),
                 "final_radius": round(float(radius[k]), 6), "recorded_radius": round(float(rec_r[k]), 6) if has[k] else None,
                 "recorded_step": int(rec_step[k]) if has[k] else None,
                 "reported": "last-increase" if has[k] else ("current" if fallback == 0.0 else "none"),
                 "stop": stop[k]} for k in range(C)]
        for k in range(C):
            if not has[k] and fallback != 0.0:
                info[k]["failed"] = "the radius never increased on an accepted step (without_increase: fail)"
        return {"z": out_z, "score": score, "info": info}


ATTACKS.register("brepmi", description=BREPMIAttack.description)(BREPMIAttack)
