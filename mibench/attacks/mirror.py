"""Mirror, black-box variant (An et al., NDSS 2022, "MIRROR: Model Inversion for Deep Learning
Network with High Fidelity") — a genetic search over one StyleGAN w, with softmax outputs only.

The target is reached only through a `BlackBox` access object (`probs()`; every image is a query).

1. Pre-sample (`prepare`, phase "init"): `pool_size` latents z → untruncated w = mapping(z); each
   image is synthesised from w broadcast to every layer with the first `truncation_cutoff` layers
   truncated by ψ (published: ψ 0.7 on 8 layers; here cutoff = min(8, num_ws)) and queried once.
   Pool entries are keyed by their index only, so the pool is shared by all classes and groups.
   The scored pool is a stage of the run folder: a resumed run rebuilds the w with the generator
   alone, checks them against the stored digest and credits the pool's queries instead of
   querying the target again.
   The p-space bounds come from the whole pool: p = LeakyReLU_5(w) undoes the mapping network's
   last LeakyReLU(0.2); w_min / w_max = LeakyReLU_0.2(mean_p ∓ p_std_ce·σ_p) (σ without Bessel's
   correction).
2. Genetic algorithm per class (`my_ge_blackbox_attack.py` of `njuaplusplus/mirror`): the initial
   population is the class's `population_size` most confident pool w; fitness = log p_y. Each
   generation: sort by fitness; stop when the elite reaches log(`min_score`); otherwise keep the
   elite (1) and breed `population_size` − 1 children — parents drawn with replacement with
   weights softmax(fitness), uniform crossover taking parent 1's coordinate with probability
   f1 / (f1 + f2), mutation in p-space (mask probability `mutation_prob`, noise
   `mutation_ce`·U(−σ_p, σ_p)) mapped back with LeakyReLU 0.2, then the children (not the elite)
   clipped to [w_min, w_max]; the whole new population (the elite again too) is queried. At most
   `generations` generations; the result is the elite (one image per class), its score the
   elite's confidence p_y.

Faithfulness notes (official code = reference; the MIA ToolBox differs where noted):
- Crossover sign: fitness is a log-probability (≤ 0), so the published f1 / (f1 + f2) =
  |f1| / (|f1| + |f2|) gives the *less* fit parent the larger share. That is what the code does and
  the default (`crossover: official`); `crossover: fitter` is the named alternative that favours
  the fitter parent (probability f2 / (f1 + f2)).
- Mutation noise: the published noise is drawn with the shape of σ_p, (1, w_dim): one noise vector
  per generation shared by every child (each child's mask differs). Default `mutation_noise:
  shared` (keyed by class and generation); `per_child` draws one per child.
- The search space is the *untruncated* w (the pool holds mapping outputs; the generator truncates
  when it renders), as in the published code; the p-space statistics are of those w.
- Fitness is log of the probabilities the black box returns (the published code takes
  log_softmax of logits, which a black-box attacker does not have), floored at log of the
  smallest normal float32 so an underflowed probability stays finite.
- Every random draw is keyed by (run seed, class, generation, slot, row, coordinate)
  (`mibench.ops.rng`) instead of Python's global `random` / torch's global generator.
- Population: 1000, as in the paper and the published run scripts (`scripts/run_vggface2_resnet50_ge.sh`,
  `scripts/run_vggface_vgg16_ge.sh` pass `--population_size=1000`); the argparse default is 100.
- Truncation is the published ψ 0.7 / 8 layers (config `truncation_psi`, `truncation_cutoff`), not
  the prior card's truncation: the pool and the search are defined by it.
- The MIA ToolBox (`src/modelinversion/attack/Mirror/code/blackbox/genertic.py`) clips to one scalar
  (the mean of all bounds) and has the early stop commented out; neither is followed here.
- Images go to the target resized to its input size (no face-specific crop).

Query accounting: every target call holds exactly `query_batch_size` real images (a divisor of the
population size and of the generator batch), so no padding image is ever sent to the target and a
class's queries are exactly generations × population_size (plus the shared "init" pool). The
generator runs in fixed-size padded batches across the group's classes (what makes a class's
images independent of its group); the target's calls are fixed-size without padding.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from mibench.attacks.base import KEY_STRIDE, Attack, AttackContext, ClassResult, pad_rows, padded_chunks
from mibench.attacks.stages import StageStore
from mibench.errors import AttackError
from mibench.ops import rng
from mibench.ops.transforms import View, to_unit
from mibench.registry import ATTACKS

log = logging.getLogger(__name__)

PHASE_INIT = "init"
PHASE_ATTACK = "attack"
# log of the smallest normal float32: the floor of a fitness whose probability underflowed to 0.
LOG_TINY = math.log(torch.finfo(torch.float32).tiny)
# Random-number slots of one generation (counters after the generation index).
_SLOT_PARENTS, _SLOT_CROSSOVER, _SLOT_MASK, _SLOT_NOISE = 0, 1, 2, 3


@dataclass
class MirrorConfig:
    """Mirror (black-box) settings; defaults are the published setting (my_ge_blackbox_attack.py and
    its run scripts in njuaplusplus/mirror)."""

    pool_size: int = 100_000  # pre-sampled w (published: StyleGANSampleDataSet(..., end_index=100_000))
    population_size: int = 1000  # paper and run scripts (--population_size=1000); argparse default 100
    generations: int = 100  # --generations default 100
    mutation_prob: float = 0.1  # --mutation_prob
    mutation_ce: float = 0.1  # --mutation_ce: noise = ce · U(−σ_p, σ_p)
    p_std_ce: float = 1.0  # --p_std_ce: bounds at p-space mean ± 1·σ
    min_score: float = 0.95  # --min_score: early stop when the elite's confidence reaches it
    truncation_psi: float = 0.7  # pre-sampled images: ψ 0.7 ...
    truncation_cutoff: int | None = 8  # ... on the first 8 layers (clamped to the prior's num_ws)
    crossover: Literal["official", "fitter"] = "official"  # see the module docstring
    mutation_noise: Literal["shared", "per_child"] = "shared"  # see the module docstring
    batch_size: int = 50  # generator images per call (published fitness chunks of 50), padded
    query_batch_size: int = 50  # target images per call; divides population_size and batch_size
    pool_batch_size: int = 1000  # generator images per call while scoring the pool (published bs 1000)
    classes_per_group: int = 10  # classes whose populations share generator batches
    noise_mode: Literal["const", "none"] = "const"

    def validate(self) -> None:
        if self.population_size < 2:
            raise ValueError("population_size: needs at least 2 (the elite and one child)")
        if self.population_size >= KEY_STRIDE:
            raise ValueError(f"population_size: must be below {KEY_STRIDE} (random-number keys)")
        if self.pool_size < self.population_size:
            raise ValueError("pool_size: cannot be smaller than population_size")
        if self.generations < 0:
            raise ValueError("generations: must be ≥ 0")
        if not 0 <= self.mutation_prob <= 1:
            raise ValueError("mutation_prob: must be in [0, 1]")
        if not 0 < self.min_score <= 1:
            raise ValueError("min_score: must be in (0, 1]")
        if self.p_std_ce <= 0:
            raise ValueError("p_std_ce: must be positive")
        if min(self.batch_size, self.query_batch_size, self.pool_batch_size, self.classes_per_group) < 1:
            raise ValueError("batch_size: batch sizes and classes_per_group must be positive")
        if self.population_size % self.query_batch_size or self.batch_size % self.query_batch_size:
            raise ValueError("query_batch_size: must divide population_size and batch_size (the target "
                             "then never receives a padding image)")


MIRROR_PRESETS: dict[str, dict[str, Any]] = {
    # The published setting (VGGFace / VGGFace2 targets in the paper; nothing dataset-specific in it).
    "celeba": {},
    "facescrub": {},
    "stanford_dogs": {},
    # Embedded default (32 px synthfaces, CPU): every method choice is the published one; only the
    # budget is smaller — population 100 (the published code's argparse default), a 10 000-w pool
    # (the paper's pool : population ratio of 100 000 : 1000), 25 generations (≤ 2500 queries per
    # class after the shared pool). Generator batches of one population: no padded rows are
    # synthesised once most classes of a group have stopped early. Measured on synthfaces32-resnet,
    # classes 0-9, one thread: 53 CPU-s in all (pool included), 2190 attack queries per class,
    # acc@1 70 %, reid@1 30 %; the standard protocol (100 classes) ≈ 230 k images ≈ 7 CPU-minutes.
    "synthfaces": {"pool_size": 10_000, "population_size": 100, "generations": 25, "batch_size": 100,
                   "query_batch_size": 100, "pool_batch_size": 500, "classes_per_group": 10},
}
MIRROR_PRESETS["small"] = dict(MIRROR_PRESETS["synthfaces"])
# Seconds-long settings for the contract tests and smoke runs (never a benchmark setting).
MIRROR_PRESETS["smoke"] = {"pool_size": 24, "population_size": 6, "generations": 2, "batch_size": 6,
                           "query_batch_size": 3, "pool_batch_size": 8, "classes_per_group": 2}


# --- genetic-algorithm primitives (pure functions of their inputs; unit-tested) --------------------

def to_p_space(w: Tensor) -> Tensor:
    """p = LeakyReLU with slope 5 of w (N, D): undoes the mapping network's last LeakyReLU(0.2)."""
    return F.leaky_relu(w, 5.0)


def to_w_space(p: Tensor) -> Tensor:
    """w = LeakyReLU(0.2) of p (N, D): back through the mapping network's last activation."""
    return F.leaky_relu(p, 0.2)


@dataclass
class PSpaceBounds:
    """Per-coordinate p-space spread and the w-space clip box it gives (each (D,))."""

    p_std: Tensor
    w_min: Tensor
    w_max: Tensor

    @classmethod
    def from_ws(cls, ws: Tensor, std_ce: float) -> PSpaceBounds:
        """Bounds from pre-sampled w (N, D): w = LeakyReLU_0.2(mean_p ± std_ce·σ_p), σ without Bessel."""
        p = to_p_space(ws.float())
        mean, std = p.mean(0), p.std(0, unbiased=False)
        return cls(std, to_w_space(mean - std_ce * std), to_w_space(mean + std_ce * std))

    def clip(self, w: Tensor) -> Tensor:
        """w (N, D) clamped coordinate-wise into [w_min, w_max]."""
        return torch.maximum(torch.minimum(w, self.w_max.to(w)), self.w_min.to(w))


def select_parents(fitness: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Roulette draws with replacement, weights softmax(fitness (N,)): u (2k,) uniforms in [0, 1) give
    (parent-1 indices (k,), parent-2 indices (k,)) — the first k draws and the last k (as the
    published `random.choices(..., k=2k)`, which bisects the cumulative weights)."""
    weights = torch.softmax(fitness.double(), 0)
    cum = torch.cumsum(weights, 0)
    idx = torch.searchsorted(cum, u.double().to(cum.device) * cum[-1], right=True).clamp_(max=len(fitness) - 1)
    k = len(u) // 2
    return idx[:k], idx[k:]


def crossover(population: Tensor, fitness: Tensor, idx1: Tensor, idx2: Tensor, u: Tensor,
              rule: str = "official") -> Tensor:
    """Uniform crossover of parents population[idx1] and population[idx2] (each (k, D)): coordinate d
    of child i comes from parent 1 when u[i, d] < q_i, else from parent 2, where q = f1 / (f1 + f2)
    ('official', the published rule on log-probabilities) or f2 / (f1 + f2) ('fitter')."""
    f1, f2 = fitness[idx1], fitness[idx2]
    q = (f1 if rule == "official" else f2) / (f1 + f2)  # 0/0 (both p = 1) is NaN: parent 2, as published
    mask = u.to(population.device) < q.unsqueeze(1)
    return torch.where(mask, population[idx1], population[idx2])


def mutate(children: Tensor, mask_u: Tensor, noise_u: Tensor, bounds: PSpaceBounds, prob: float,
           ce: float) -> Tensor:
    """Mutation in p-space, then the clip: coordinates with mask_u (k, D) < prob get
    ce·(2·noise_u − 1)·σ_p added to p = LeakyReLU_5(w) (noise_u (1, D): one vector for every child,
    or (k, D)); back to w with LeakyReLU(0.2), clipped to the bounds."""
    std = bounds.p_std.to(children)
    noise = ce * (2 * std * noise_u.to(children) - std)
    mask = (mask_u.to(children.device) < prob).to(children.dtype)
    return bounds.clip(to_w_space(to_p_space(children) + mask * noise))


def tensor_digest(t: Tensor) -> str:
    """sha256 (hex) of a tensor's dtype, shape and bytes: identifies the pool latents a stored score
    belongs to."""
    h = hashlib.sha256(f"{t.dtype}{list(t.shape)}".encode())
    h.update(t.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def sort_population(population: Tensor, fitness: Tensor) -> tuple[Tensor, Tensor]:
    """(population, fitness) sorted by fitness, best first (stable: ties keep their order)."""
    order = torch.sort(fitness, descending=True, stable=True).indices
    return population[order], fitness[order]


@dataclass
class _ClassSearch:
    """One class's genetic search: its sorted population and bookkeeping."""

    class_id: int
    population: Tensor  # (N, D), sorted best first
    fitness: Tensor  # (N,) log p_y
    generations: int = 0
    done: bool = False
    history: list[float] = field(default_factory=list)  # the elite's confidence after each generation


class MirrorAttack(Attack):
    """Mirror (black-box): genetic search over one untruncated StyleGAN w per class."""

    name = "mirror"
    description = ("Mirror (An et al., NDSS 2022): black-box genetic search over one StyleGAN w, "
                   "p-space mutation and clipping")
    access_level = "black-box"
    config_cls = MirrorConfig
    presets = MIRROR_PRESETS
    prior_kinds = ("stylegan2",)
    fitted_presets = ((128, "small"), (1 << 30, "celeba"))
    CODE = ("mibench.attacks.mirror",)
    cost = 2.0  # forward passes only, but up to generations × population images per class (CPU: ~10 min)
    in_default_suite = False

    def __init__(self, config: MirrorConfig):
        super().__init__(config)
        self._pool_w: Tensor | None = None  # (pool, D) untruncated w, CPU
        self._top_idx: Tensor | None = None  # (K, N) pool indices of each class's initial population
        self._top_fit: Tensor | None = None  # (K, N) their fitness (log p_y), best first
        self._bounds: PSpaceBounds | None = None
        self._w_avg: Tensor | None = None
        self._info: dict[str, Any] = {}

    def classes_per_group(self) -> int:
        """Classes searched together (their populations share generator batches)."""
        return self.config.classes_per_group

    def phase_info(self) -> dict[str, Any]:
        """Pool size and the queries it cost (phase 'init')."""
        return dict(self._info)

    # --- rendering ---------------------------------------------------------------------------------
    def render(self, ctx: AttackContext, w: Tensor) -> Tensor:
        """Images (N, 3, R, R) in [0, 1] of untruncated w (N, D): w broadcast to every layer, the first
        min(cutoff, num_ws) layers pulled towards w_avg by ψ (the published generator's truncation)."""
        cfg, prior = self.config, ctx.prior
        ws = w.to(ctx.device).unsqueeze(1).expand(-1, prior.num_ws, -1)
        if cfg.truncation_psi != 1:
            cut = prior.num_ws if cfg.truncation_cutoff is None else min(cfg.truncation_cutoff, prior.num_ws)
            ws = torch.cat([self._w_avg.to(ws).lerp(ws[:, :cut], cfg.truncation_psi), ws[:, cut:]], dim=1)
        return to_unit(prior.synthesize(ws, noise_mode=cfg.noise_mode).float())

    def _log_probs(self, ctx: AttackContext, x: Tensor) -> Tensor:
        """log p (n, K) of target-input images x (n, 3, S, S): one query per image, floored at LOG_TINY."""
        return torch.log(ctx.access.probs(x).float()).clamp_min(LOG_TINY).cpu()

    def _fitness(self, ctx: AttackContext, w: Tensor, targets: Tensor) -> Tensor:
        """log p_y (M,) of w (M, D) for classes targets (M,): the generator on fixed-size padded
        batches, the target on `query_batch_size` real images per call (M is a multiple of it)."""
        cfg = self.config
        view = View(size=ctx.access.input_size)
        out = []
        for a, b in padded_chunks(len(w), cfg.batch_size):
            x = view(self.render(ctx, pad_rows(w[a:b], cfg.batch_size)))[: b - a]
            for qa, qb in padded_chunks(b - a, cfg.query_batch_size):
                t = targets[a + qa:a + qb].view(-1, 1)
                out.append(self._log_probs(ctx, x[qa:qb]).gather(1, t).squeeze(1))
        return torch.cat(out)

    # --- 1. pre-sample -----------------------------------------------------------------------------
    def pool_top_n(self) -> int:
        """How many of the most confident pool w each class keeps (its initial population)."""
        return self.config.population_size

    def _pool_batches(self, ctx: AttackContext, seed: int):
        """(start, stop, untruncated w (pool_batch_size, D)) of the pool, in fixed-size padded batches
        (the same batches whether the pool is scored or only rebuilt: the same bits)."""
        bs = self.config.pool_batch_size
        for a, b in padded_chunks(self.config.pool_size, bs):
            z = rng.normal_matrix(seed, pad_rows(torch.arange(a, b), bs), ctx.prior.z_dim).to(ctx.device)
            yield a, b, ctx.prior.mapping(z, None, psi=1.0)[:, 0]

    @torch.no_grad()
    def prepare(self, ctx: AttackContext) -> None:
        """Sample the pool, query the target once on each image (phase 'init'), keep each class's
        `pool_top_n()` most confident pool w and the p-space bounds of the whole pool. The scored
        pool is a stage of the run folder: a resumed run rebuilds the w (generator only) and reuses
        the scores, crediting their queries instead of querying again."""
        cfg, prior, access = self.config, ctx.prior, ctx.access
        if prior is None:
            raise AttackError(f"{self.name} needs a StyleGAN prior", fix="run it with a stylegan2 prior card")
        n, k = cfg.pool_size, access.num_classes
        # w_avg through the Prior API: truncation with ψ = 0 returns w_avg itself (lerp weight 0).
        self._w_avg = prior.mapping(torch.zeros(1, prior.z_dim, device=ctx.device), None, psi=0.0,
                                    cutoff=None)[0, 0].detach()
        seed = rng.stream_seed(ctx.seed, "mirror", "pool")
        keys = {"pool": {"pool_size": n, "pool_batch_size": cfg.pool_batch_size, "top_n": self.pool_top_n(),
                         "truncation_psi": cfg.truncation_psi, "truncation_cutoff": cfg.truncation_cutoff,
                         "noise_mode": cfg.noise_mode, "seed": ctx.seed, "classes": k,
                         "input_size": access.input_size}}
        store = StageStore(f"{self.name}-run", self.CODE, ctx.store_dir, keys)
        hit = store.load_tensors("pool", "pool")
        resumed = False
        if hit is not None:
            pool_w = torch.cat([w[: b - a].cpu() for a, b, w in self._pool_batches(ctx, seed)])
            if tensor_digest(pool_w) == hit[1]["pool_w_sha256"]:
                access.credit({PHASE_INIT: int(hit[1]["queries"])})
                top_idx, top_fit, resumed = hit[0]["top_idx"].long(), hit[0]["top_fit"], True
            else:  # another machine's generator arithmetic: the stored scores are not of these w
                log.warning("%s: the stored pool scores belong to other pool latents; scoring the pool again",
                            self.name)
        if not resumed:
            pool_w, top_idx, top_fit = self._score_pool(ctx, seed)
            store.write_tensors("pool", "pool", {"top_idx": top_idx, "top_fit": top_fit},
                                {"queries": n, "pool_w_sha256": tensor_digest(pool_w)})
        self._pool_w, self._top_fit, self._top_idx = pool_w, top_fit, top_idx
        self._bounds = PSpaceBounds.from_ws(self._pool_w, cfg.p_std_ce)
        self._info = {"pool_size": n, "init_queries": n, "resumed": resumed,
                      "truncation": {"psi": cfg.truncation_psi,
                                     "cutoff": None if cfg.truncation_cutoff is None
                                     else min(cfg.truncation_cutoff, prior.num_ws)}}

    def _score_pool(self, ctx: AttackContext, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        """(pool w (pool, D), top-N pool indices (K, N), their log p_y (K, N), best first): every pool
        image is queried once (phase 'init')."""
        access, bs, top_n = ctx.access, self.config.pool_batch_size, self.pool_top_n()
        k = access.num_classes
        view = View(size=access.input_size)
        pool_w, top_fit, top_idx = [], torch.empty(k, 0), torch.empty(k, 0, dtype=torch.long)
        access.set_phase(PHASE_INIT)
        try:
            for a, b, w in self._pool_batches(ctx, seed):
                x = view(self.render(ctx, w))[: b - a]
                logp = torch.cat([self._log_probs(ctx, x[qa:qb]) for qa, qb in padded_chunks(b - a, bs)])
                pool_w.append(w[: b - a].cpu())
                # Running top-N per class; a stable sort keeps the lower pool index first on ties.
                fit = torch.cat([top_fit, logp.T], dim=1)
                idx = torch.cat([top_idx, torch.arange(a, b).expand(k, -1)], dim=1)
                order = torch.sort(fit, dim=1, descending=True, stable=True).indices[:, :top_n]
                top_fit, top_idx = fit.gather(1, order), idx.gather(1, order)
        finally:
            access.set_phase("prepare")
        return torch.cat(pool_w), top_idx, top_fit

    # --- 2. genetic search -------------------------------------------------------------------------
    def _children(self, ctx: AttackContext, s: _ClassSearch) -> Tensor:
        """The N − 1 mutated, clipped children (N − 1, D) of class s's next generation."""
        cfg = self.config
        n, d = s.population.shape
        k = n - 1
        seed = rng.stream_seed(ctx.seed, self.name, "ga")
        gen, base = s.generations, s.class_id * KEY_STRIDE

        def coords(rows: int) -> Tensor:  # keys (rows, D) unique per (class, row, coordinate)
            return (base + torch.arange(rows)).view(-1, 1) * d + torch.arange(d).view(1, -1)

        u_parents = rng.uniform(seed, base + torch.arange(2 * k), gen, _SLOT_PARENTS)
        idx1, idx2 = select_parents(s.fitness, u_parents)
        children = crossover(s.population, s.fitness, idx1, idx2,
                             rng.uniform(seed, coords(k), gen, _SLOT_CROSSOVER), cfg.crossover)
        noise_rows = 1 if cfg.mutation_noise == "shared" else k
        return mutate(children, rng.uniform(seed, coords(k), gen, _SLOT_MASK),
                      rng.uniform(seed, coords(noise_rows), gen, _SLOT_NOISE), self._bounds,
                      cfg.mutation_prob, cfg.mutation_ce)

    def _check_stop(self, s: _ClassSearch) -> None:
        """Mark s done when its elite reaches log(min_score) or it has run every generation."""
        s.done = bool(s.fitness[0] >= math.log(self.config.min_score)) or s.generations >= self.config.generations

    @torch.no_grad()
    def attack_classes(self, ctx: AttackContext, classes: list[int]) -> list[ClassResult]:
        """Run the genetic search for each class; the classes' populations share generator batches."""
        if self._pool_w is None:
            self.prepare(ctx)
        cfg = self.config
        ctx.access.set_phase(PHASE_ATTACK)
        searches = []
        for c in classes:
            s = _ClassSearch(c, self._pool_w[self._top_idx[c]].clone(), self._top_fit[c].clone())
            s.population, s.fitness = sort_population(s.population, s.fitness)
            self._check_stop(s)
            searches.append(s)
        initial = [math.exp(float(s.fitness[0])) for s in searches]
        while active := [s for s in searches if not s.done]:
            new = [torch.cat([s.population[:1], self._children(ctx, s)]) for s in active]
            targets = torch.cat([torch.full((cfg.population_size,), s.class_id, dtype=torch.long) for s in active])
            fitness = self._fitness(ctx, torch.cat(new), targets).split(cfg.population_size)
            for s, pop, fit in zip(active, new, fitness):
                s.population, s.fitness = sort_population(pop, fit)
                s.generations += 1
                s.history.append(math.exp(float(s.fitness[0])))
                self._check_stop(s)
        out_view = View(size=ctx.output_size)
        results = []
        for s, init in zip(searches, initial):
            elite = s.population[:1]
            image = out_view(self.render(ctx, pad_rows(elite, cfg.batch_size)))[:1].cpu()
            conf = math.exp(float(s.fitness[0]))
            info = {"generations": s.generations, "queries": s.generations * cfg.population_size,
                    "early_stopped": bool(s.fitness[0] >= math.log(cfg.min_score)),
                    "initial_confidence": init, "confidence_by_generation": s.history}
            results.append(ClassResult(s.class_id, image, elite.cpu(), torch.tensor([conf]), info))
        return results


ATTACKS.register("mirror", description=MirrorAttack.description)(MirrorAttack)
