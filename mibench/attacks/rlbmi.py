"""RLB-MI (Han et al., CVPR 2023, "Reinforcement Learning-Based Black-Box Model Inversion
Attacks") — black-box: the target is touched only through `ctx.access.probs(x)` (softmax
probabilities, every image one query), GMI's public GAN as the prior (`gmi` generator kind).

Per target class y, its own soft actor-critic (SAC) agent searches the GAN's latent space
(`HanGyojin/RLB-MI`, attack.py, SAC.py, main.py):

- One-step episodes (`max_step` 1): state z ~ N(0, I_100); action a = tanh(μ(z) + e·σ(z)) ∈ [−1, 1]^100
  from the actor; next state z' = α·z + (1 − α)·a with α = 0 (main.py `-alpha 0`).
- Reward 2·log p_y(G(z')) + 2·log p_y(G(a)) + 8·log max(1e-7, p_y(G(z')) − max_{k≠y} p_k(G(z'))).
- SAC (SAC.py): γ 0.99, τ 0.01, replay buffer 1e6, batch 256, Adam lr 5e-4 for the actor, both
  critics and the entropy temperature (log α init 0, target entropy −dim(A) = −100); hidden 256
  (main.py); log σ clamped to [−20, 2]; log π is the *mean* over action dimensions; critics regress
  0.5·MSE onto r + γ(1 − done)(min Q'(s', a') − α·log π(a'|s')); the actor minimises
  α·log π − Q1(s, ã) (critic 1 only). One update per environment step once the buffer holds more
  than `batch_size` transitions. 40 000 episodes per class (run_experiments.sh, main.py).
- After every episode one fresh state z_t ~ N(0, I) is acted on by the (stochastic) actor, its
  image G(z_t') is scored by p_y, and the image with the highest score so far is kept (ties go to
  the later episode, as the published `>=`). That image is the class's reconstruction.

Faithfulness notes (named departures are config options, defaults as the official code):
- With α = 0 the next state is the action itself (0·z + 1·a = a exactly), so G(z') and G(a) are
  the same image: mibench queries it once and the reward is 4·log p_y + 8·log margin (the published
  code runs the target twice on it). With α ≠ 0 both images are queried. Queries per class and
  episode: `max_step` reward images (×2 if α ≠ 0, phase "reward") + `test_states` selection images
  (phase "selection"): 2 × 40 000 = 80 000 per class at the paper's setting.
- `noise` "shared" (default): the published policy draws ONE scalar e ~ N(0, 1) per call
  (`Normal(0, 1).sample()`), shared by all 100 action dimensions and all rows of a minibatch;
  mibench reproduces that (one draw per class and call). "independent" is textbook SAC.
- `critic_init` "shared" (default): the published Critic re-seeds torch with the same seed in its
  constructor, so critic 1 and critic 2 start equal and, fed the same batches and targets, stay
  equal: min(Q1, Q2) = Q1. mibench keeps one network for both (the same numbers, half the work).
  "independent" draws two critics (the MIA ToolBox, which removed the re-seeding).
- Initialisation as published: actor layers PyTorch's default (U(±1/√fan_in) for weight and bias;
  the published Actor's `reset_parameters` is never called); critic hidden weights U(±1/√hidden)
  (the published `hidden_init` reads `weight.size()[0]`, the output width), output weight
  U(±3e-3), biases PyTorch's default. Drawn per (run seed, class), not one seed for every class.
- The critic target uses the temperature exp(log α) from *before* the previous update (the
  published `self.alpha` lags one update; 1 before the first), the actor loss the one from before
  the current update — as published.
- With one-step episodes every transition is terminal, so the TD target is the reward alone: γ,
  the target critics (and their τ soft updates) and the target's entropy term enter no loss.
  mibench computes them only when `max_step` > 1 (identical numbers, less work).
- log p_y of a probability that underflowed to 0 (the published reward is then −inf and the
  critics turn NaN) is taken at the smallest positive float32 (log ≈ −87.3).
- Replay sampling is uniform without replacement (the published `random.sample`), keyed by (run
  seed, class, update); all draws (states, policy noise, test states, replay indices, initial
  weights) are keyed by class, so a class's numbers do not depend on its group.
- Batching: the agents of a class group are trained together with stacked weights (C, in, out) and
  batched matrix products; a short group is padded with copies of its last class to the fixed
  `class_batch` (the copies are never sent to the target). Generator calls see a fixed batch of
  `class_batch` rows; the target is queried per class with a batch size that depends only on the
  episode index, so every query is counted exactly and no padding row is ever a query.
- Test images are scored in per-class chunks of `select_chunk` episodes (the same selection, fewer
  calls); `learn_after` (default: `batch_size`, as published) sets when updates start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from mibench.attacks.base import KEY_STRIDE, Attack, AttackContext, ClassResult, map_fixed_batches
from mibench.errors import AttackError
from mibench.ops import rng
from mibench.ops.transforms import View
from mibench.registry import ATTACKS
from mibench.seeding import derive_seed

PHASE_REWARD = "reward"
PHASE_SELECT = "selection"
_TINY = torch.finfo(torch.float32).tiny  # see the module docstring (log of an underflowed probability)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class RLBMIConfig:
    """RLB-MI hyper-parameters; defaults are the published CelebA setting (HanGyojin/RLB-MI)."""

    episodes: int = 40000  # per class (run_experiments.sh / main.py `-max_episodes 40000`)
    max_step: int = 1  # steps per episode (main.py `-max_step 1`)
    state_alpha: float = 0.0  # α of z' = α·z + (1 − α)·a (main.py `-alpha 0`)
    hidden: int = 256  # actor / critic width (main.py: Agent(hidden_size=256))
    gamma: float = 0.99  # SAC.py GAMMA
    tau: float = 0.01  # SAC.py TAU
    buffer_size: int = 1_000_000  # SAC.py BUFFER_SIZE
    batch_size: int = 256  # SAC.py BATCH_SIZE
    lr_actor: float = 5e-4  # SAC.py LR_ACTOR
    lr_critic: float = 5e-4  # SAC.py LR_CRITIC
    lr_entropy: float = 5e-4  # SAC.py: the alpha optimiser uses LR_ACTOR
    init_log_alpha: float = 0.0  # SAC.py: log_alpha = 0
    target_entropy: float | None = None  # None: −dim(A) (SAC.py)
    log_std_min: float = -20.0  # SAC.py Actor
    log_std_max: float = 2.0
    reward_weights: tuple[float, float, float] = (2.0, 2.0, 8.0)  # attack.py: 2·s1 + 2·s2 + 8·s3
    margin_floor: float = 1e-7  # attack.py: log(max(1e-7, p_y − max_{k≠y} p_k))
    noise: Literal["shared", "independent"] = "shared"  # see the module docstring
    critic_init: Literal["shared", "independent"] = "shared"  # see the module docstring
    learn_after: int | None = None  # updates once the buffer holds more than this (None: batch_size)
    test_states: int = 1  # selection images per episode (attack.py: `for i in range(1)`)
    select_chunk: int = 50  # episodes whose selection images are scored in one call per class
    class_batch: int = 10  # agents trained together (fixed, padded)

    def validate(self) -> None:
        if self.episodes < 1 or self.max_step < 1 or self.test_states < 1:
            raise ValueError("episodes, max_step and test_states must be ≥ 1")
        if not 0 <= self.state_alpha <= 1:
            raise ValueError("state_alpha: must be in [0, 1]")
        if min(self.hidden, self.batch_size, self.buffer_size, self.select_chunk, self.class_batch) < 1:
            raise ValueError("batch_size: hidden, batch_size, buffer_size, select_chunk and class_batch must be ≥ 1")
        if self.buffer_size < self.batch_size:
            raise ValueError("buffer_size: must hold at least one batch")
        if self.learn_after is not None and self.learn_after < self.batch_size:
            raise ValueError("learn_after: the buffer must hold a batch before the first update")
        if self.log_std_min >= self.log_std_max:
            raise ValueError("log_std_min: must be below log_std_max")
        if not 0 < self.margin_floor < 1:
            raise ValueError("margin_floor: must be in (0, 1)")


RLBMI_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's setting (CelebA 64 px; run_experiments.sh: 40 000 episodes, one step, α = 0).
    "celeba": {},
    "facescrub": {},
    "stanford_dogs": {},
    # Embedded default (32 px synthfaces, 2-core CPU): the published agent, reward and selection on a
    # CPU budget — 2000 episodes per class instead of 40 000, SAC minibatch 64 and width 128 instead
    # of 256 / 256 (updates start once the buffer holds 64 transitions). Measured (CPU time, one
    # thread, 10 classes together): ≈ 3.3 ms per class and episode for generator + target + actor,
    # ≈ 1 ms per SAC update → ≈ 9 s per class, ≈ 15 min for the standard protocol's 100 classes;
    # 4000 queries per class.
    "synthfaces": {"episodes": 2000, "batch_size": 64, "hidden": 128, "class_batch": 10},
    # Seconds-long settings for the contract tests and smoke runs (never a benchmark setting).
    "smoke": {"episodes": 8, "batch_size": 4, "hidden": 8, "class_batch": 2, "select_chunk": 3},
}
RLBMI_PRESETS["small"] = dict(RLBMI_PRESETS["synthfaces"])


def rlb_reward(p_state: Tensor, p_action: Tensor | None, targets: Tensor,
               weights: tuple[float, float, float] = (2.0, 2.0, 8.0), floor: float = 1e-7) -> Tensor:
    """RLB-MI's reward (N,) of target probabilities (N, K) of G(z') and G(a) for labels y (N,):
    w1·log p_y(G(z')) + w2·log p_y(G(a)) + w3·log max(floor, p_y(G(z')) − max_{k≠y} p_k(G(z'))).
    `p_action` None: G(a) is G(z') (α = 0), its probabilities are `p_state`'s."""
    p_state = p_state.float()
    p_action = p_state if p_action is None else p_action.float()
    y = targets.view(-1, 1).to(p_state.device)
    py = p_state.gather(1, y).squeeze(1)
    pa = p_action.gather(1, y).squeeze(1)
    others = p_state.scatter(1, y, -1.0).amax(1)  # max over k ≠ y
    margin = (py - others).clamp(min=floor)
    w1, w2, w3 = weights
    return w1 * py.clamp(min=_TINY).log() + w2 * pa.clamp(min=_TINY).log() + w3 * margin.log()


def _linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Per-agent affine map: x (C, N, in) @ w (C, in, out) + b (C, out) → (C, N, out)."""
    return torch.baddbmm(b.unsqueeze(1), x, w)


def _uniform(g: torch.Generator, shape: tuple[int, ...], bound: float) -> Tensor:
    """U(−bound, bound) of `shape` from generator g."""
    return (torch.rand(shape, generator=g) * 2 - 1) * bound


def _actor_init(g: torch.Generator, d: int, a: int, h: int) -> list[Tensor]:
    """One actor's weights [w1, b1, w2, b2, w_head, b_head] (in, out layout; head = [μ | log σ]),
    PyTorch's default Linear init U(±1/√fan_in) as the published Actor keeps."""
    out = []
    for fan_in, fan_out in ((d, h), (h, h)):
        out += [_uniform(g, (fan_in, fan_out), fan_in ** -0.5), _uniform(g, (fan_out,), fan_in ** -0.5)]
    mu_w, mu_b = _uniform(g, (h, a), h ** -0.5), _uniform(g, (a,), h ** -0.5)
    ls_w, ls_b = _uniform(g, (h, a), h ** -0.5), _uniform(g, (a,), h ** -0.5)
    return out + [torch.cat([mu_w, ls_w], 1), torch.cat([mu_b, ls_b])]


def _critic_init(g: torch.Generator, d: int, a: int, h: int) -> list[Tensor]:
    """One critic's weights [w1, b1, w2, b2, w3, b3]: hidden weights U(±1/√h) (the published
    `hidden_init` uses the output width), output weight U(±3e-3), biases U(±1/√fan_in)."""
    return [_uniform(g, (d + a, h), h ** -0.5), _uniform(g, (h,), (d + a) ** -0.5),
            _uniform(g, (h, h), h ** -0.5), _uniform(g, (h,), h ** -0.5),
            _uniform(g, (h, 1), 3e-3), _uniform(g, (1,), h ** -0.5)]


class BatchedSAC:
    """C independent SAC agents (one per class) with stacked weights; every op is per agent.

    Shapes: states (C, N, D), actions (C, N, A), rewards / dones (C, N)."""

    def __init__(self, cfg: RLBMIConfig, state_dim: int, init_seeds: list[int], device: torch.device):
        self.cfg, self.device = cfg, device
        self.d = self.a = state_dim
        h = cfg.hidden
        n_critics = 1 if cfg.critic_init == "shared" else 2

        def stack(make) -> list[Tensor]:
            per = [make(s) for s in init_seeds]
            return [torch.stack(ts).to(device).requires_grad_(True) for ts in zip(*per)]

        def gen(seed: int, part: str) -> torch.Generator:
            return torch.Generator().manual_seed(derive_seed(seed, part))

        self.actor = stack(lambda s: _actor_init(gen(s, "actor"), self.d, self.a, h))
        self.critics = [stack(lambda s, i=i: _critic_init(gen(s, f"critic{i}"), self.d, self.a, h))
                        for i in range(n_critics)]
        c = len(init_seeds)
        self.log_alpha = torch.full((c,), cfg.init_log_alpha, device=device, requires_grad=True)
        self.alpha_q = torch.ones(c, device=device)  # the published `self.alpha` (lags one update)
        self.target_entropy = -float(self.a) if cfg.target_entropy is None else cfg.target_entropy
        self.opt_actor = torch.optim.Adam(self.actor, lr=cfg.lr_actor)
        self.opt_critics = [torch.optim.Adam(p, lr=cfg.lr_critic) for p in self.critics]
        self.opt_alpha = torch.optim.Adam([self.log_alpha], lr=cfg.lr_entropy)
        # Target critics enter a loss only when episodes have non-terminal steps.
        self.targets = ([[p.detach().clone() for p in ps] for ps in self.critics] if cfg.max_step > 1 else None)

    # ------------------------------------------------------------------ networks
    def policy(self, states: Tensor, params: list[Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """(μ, clamped log σ), each (C, N, A), of states (C, N, D)."""
        w1, b1, w2, b2, wh, bh = self.actor if params is None else params
        x = torch.relu(_linear(states, w1, b1))
        x = torch.relu(_linear(x, w2, b2))
        head = _linear(x, wh, bh)
        mu, log_std = head[..., : self.a], head[..., self.a:]
        return mu, log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max)

    def sample(self, states: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """Squashed-Gaussian actions tanh(μ + e·σ) (C, N, A) and log π (C, N, 1) — the mean over
        action dimensions, as published — for noise e broadcastable to (C, N, A)."""
        mu, log_std = self.policy(states)
        action = torch.tanh(mu + eps * log_std.exp())
        # log N(μ + eσ; μ, σ) = −e²/2 − log σ − ½ log 2π, minus the tanh change of variables.
        log_prob = (-0.5 * eps * eps - log_std - _HALF_LOG_2PI - torch.log(1 - action.pow(2) + 1e-6))
        return action, log_prob.mean(-1, keepdim=True)

    @staticmethod
    def q(params: list[Tensor], states: Tensor, actions: Tensor) -> Tensor:
        """Q-values (C, N) of one critic's stacked params."""
        w1, b1, w2, b2, w3, b3 = params
        x = torch.relu(_linear(torch.cat([states, actions], -1), w1, b1))
        x = torch.relu(_linear(x, w2, b2))
        return _linear(x, w3, b3).squeeze(-1)

    # ------------------------------------------------------------------ update
    def learn(self, states: Tensor, actions: Tensor, rewards: Tensor, next_states: Tensor, dones: Tensor,
              eps_next: Tensor | None, eps: Tensor) -> dict[str, Tensor]:
        """One published SAC update of every agent: critics, then temperature, then actor (then the
        target critics' soft update when they are used). Returns per-agent losses (C,)."""
        cfg = self.cfg
        target = rewards
        if self.targets is not None:
            with torch.no_grad():
                next_a, next_logp = self.sample(next_states, eps_next)
                q_next = torch.stack([self.q(t, next_states, next_a) for t in self.targets]).amin(0)
                target = rewards + cfg.gamma * (1 - dones) * (q_next - self.alpha_q.view(-1, 1) * next_logp.squeeze(-1))
        critic_loss = None
        for params, opt in zip(self.critics, self.opt_critics):
            loss = 0.5 * (self.q(params, states, actions) - target).pow(2).mean(1)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # agents' losses are independent: the sum gives each its own gradient
            opt.step()
            critic_loss = loss.detach() if critic_loss is None else critic_loss
        alpha = self.log_alpha.detach().exp()  # before this update (the actor loss uses it)
        pred, logp = self.sample(states, eps)
        alpha_loss = -(self.log_alpha * (logp.detach().squeeze(-1) + self.target_entropy).mean(1))
        self.opt_alpha.zero_grad(set_to_none=True)
        alpha_loss.sum().backward()
        self.opt_alpha.step()
        self.alpha_q = alpha
        q1 = self.q([p.detach() for p in self.critics[0]], states, pred)  # critic 1 only, as published
        actor_loss = (alpha.view(-1, 1) * logp.squeeze(-1) - q1).mean(1)
        self.opt_actor.zero_grad(set_to_none=True)
        actor_loss.sum().backward()
        self.opt_actor.step()
        if self.targets is not None:
            with torch.no_grad():
                for local, tgt in zip(self.critics, self.targets):
                    for p, t in zip(local, tgt):
                        t.mul_(1 - cfg.tau).add_(cfg.tau * p.detach())
        return {"critic_loss": critic_loss, "actor_loss": actor_loss.detach(), "alpha": alpha}


class ReplayBuffers:
    """One replay buffer per agent (C, capacity, ...), filled in lockstep; uniform sampling without
    replacement keyed by (class, update)."""

    def __init__(self, c: int, capacity: int, dim: int, device: torch.device):
        self.capacity, self.n, self.pos = capacity, 0, 0
        self.s = torch.zeros(c, capacity, dim, device=device)
        self.a = torch.zeros(c, capacity, dim, device=device)
        self.r = torch.zeros(c, capacity, device=device)
        self.s2 = torch.zeros(c, capacity, dim, device=device)
        self.done = torch.zeros(c, capacity, device=device)

    def add(self, s: Tensor, a: Tensor, r: Tensor, s2: Tensor, done: float) -> None:
        """Append one transition per agent: s, a, s2 (C, D), r (C,); the oldest is dropped when full."""
        i = self.pos
        self.s[:, i], self.a[:, i], self.r[:, i], self.s2[:, i] = s, a, r, s2
        self.done[:, i] = done
        self.pos = (i + 1) % self.capacity
        self.n = min(self.n + 1, self.capacity)

    def sample(self, seed: int, classes: Tensor, counter: int, k: int) -> tuple[Tensor, ...]:
        """k distinct transitions per agent: (s, a, s2) (C, k, D), (r, done) (C, k)."""
        keys = classes.view(-1, 1) * KEY_STRIDE + torch.arange(self.n).view(1, -1)
        idx = rng.uniform(seed, keys, counter).topk(k, dim=1).indices.to(self.s.device)  # (C, k)

        def take(t: Tensor) -> Tensor:
            return t.gather(1, idx.view(*idx.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:]))

        return take(self.s), take(self.a), take(self.r), take(self.s2), take(self.done)


class RLBMIAttack(Attack):
    """RLB-MI: one SAC agent per class searches the GAN's latent space on soft-label rewards."""

    name = "rlbmi"
    description = ("Reinforcement-Learning-Based black-box MI (Han et al., CVPR 2023): one SAC agent per class "
                   "in GMI's GAN latent space, rewarded by the target's probabilities")
    access_level = "black-box"
    config_cls = RLBMIConfig
    presets = RLBMI_PRESETS
    fitted_presets = ((128, "small"), (1 << 30, "celeba"))
    prior_kinds = ("gmi",)
    cost = 4.0
    in_default_suite = False  # run by name (`--attack rlbmi`)

    def classes_per_group(self) -> int:
        """Agents trained together (`class_batch`)."""
        return self.config.class_batch

    def images(self, ctx: AttackContext, z: Tensor) -> Tensor:
        """Generator images (N, 3, R, R) in [0, 1] of latents (N, z_dim), in batches of `class_batch`
        rows (a multiple of it is split; the generator sees one batch size)."""
        return (map_fixed_batches(lambda zz, _n: ctx.prior(zz), self.config.class_batch, z) + 1) * 0.5

    def attack_classes(self, ctx: AttackContext, classes: list[int]) -> list[ClassResult]:
        """Train one agent per class (padded to `class_batch`) and keep each class's best test image."""
        cfg = self.config
        if ctx.prior is None:
            raise AttackError("RLB-MI needs a GAN prior", fix="run it with a `gmi` prior")
        if len(classes) > cfg.class_batch:
            return [r for i in range(0, len(classes), cfg.class_batch)
                    for r in self.attack_classes(ctx, classes[i:i + cfg.class_batch])]
        n_real, c = len(classes), cfg.class_batch
        cls_t = torch.as_tensor(classes + [classes[-1]] * (c - n_real), dtype=torch.long)
        dev, d, access = ctx.device, ctx.prior.z_dim, ctx.access
        seeds = {k: rng.stream_seed(ctx.seed, self.name, k) for k in
                 ("state", "act", "test", "test-act", "update", "replay")}
        agents = BatchedSAC(cfg, d, [derive_seed(ctx.seed, self.name, "init", int(k)) for k in cls_t], dev)
        buffers = ReplayBuffers(c, min(cfg.buffer_size, cfg.episodes * cfg.max_step), d, dev)
        view = View(size=access.input_size)
        learn_after = cfg.batch_size if cfg.learn_after is None else cfg.learn_after

        def noise(seed: int, n: int, *counters: int) -> Tensor:
            """Policy noise for n rows per agent: (C, 1, 1) shared or (C, n, A) independent."""
            if cfg.noise == "shared":
                return rng.normal(seed, cls_t, *counters).view(c, 1, 1).to(dev)
            keys = cls_t.view(-1, 1) * KEY_STRIDE + torch.arange(n * d).view(1, -1)
            return rng.normal(seed, keys, *counters).view(c, n, d).to(dev)

        def query(x: Tensor, phase: str) -> Tensor:
            """Target probabilities (C, n, K) of images x (C, n, 3, R, R): the real classes are queried
            one call each (n rows: a batch size set by the episode, never by the group); padding
            copies take their last real class's answer."""
            access.set_phase(phase)
            p = torch.stack([access.probs(view(x[i])).float().to(dev) for i in range(n_real)])
            return torch.cat([p, p[-1:].expand(c - n_real, *p.shape[1:])]) if c > n_real else p

        updates, rewards_sum = 0, torch.zeros(c, device=dev)
        best_score = torch.zeros(c, device=dev)
        best_img: Tensor | None = None
        best_z = torch.zeros(c, cfg.test_states, d, device=dev)
        pending_z: list[Tensor] = []  # selection latents (C, test_states, D) awaiting their scores
        pending_x: list[Tensor] = []
        last = {}
        for episode in range(cfg.episodes):
            z = rng.normal_matrix(seeds["state"], cls_t, d, episode).to(dev)  # (C, D)
            for t in range(cfg.max_step):
                with torch.no_grad():
                    action, _ = agents.sample(z.unsqueeze(1), noise(seeds["act"], 1, episode, t))
                action = action.squeeze(1)
                z_next = cfg.state_alpha * z + (1 - cfg.state_alpha) * action
                with torch.no_grad():
                    if cfg.state_alpha == 0:  # z' = a: one image (see the module docstring)
                        p = query(self.images(ctx, z_next).unsqueeze(1), PHASE_REWARD)
                        r = rlb_reward(p[:, 0], None, cls_t, cfg.reward_weights, cfg.margin_floor)
                    else:
                        x = torch.stack([self.images(ctx, z_next), self.images(ctx, action)], 1)
                        p = query(x, PHASE_REWARD)
                        r = rlb_reward(p[:, 0], p[:, 1], cls_t, cfg.reward_weights, cfg.margin_floor)
                rewards_sum += r
                buffers.add(z, action, r.to(dev), z_next, float(t == cfg.max_step - 1))
                if buffers.n > learn_after:
                    batch = buffers.sample(seeds["replay"], cls_t, updates, cfg.batch_size)
                    eps_next = noise(seeds["update"], cfg.batch_size, updates, 0) if cfg.max_step > 1 else None
                    last = agents.learn(*batch, eps_next, noise(seeds["update"], cfg.batch_size, updates, 1))
                    updates += 1
                z = z_next
            # Selection: fresh states acted on by the current (stochastic) policy.
            with torch.no_grad():
                keys = cls_t.view(-1, 1) * KEY_STRIDE + torch.arange(cfg.test_states).view(1, -1)
                zt = rng.normal_matrix(seeds["test"], keys.flatten(), d, episode).to(dev).view(c, cfg.test_states, d)
                for t in range(cfg.max_step):
                    at, _ = agents.sample(zt, noise(seeds["test-act"], cfg.test_states, episode, t))
                    zt = cfg.state_alpha * zt + (1 - cfg.state_alpha) * at
                xt = self.images(ctx, zt.transpose(0, 1).reshape(-1, d))  # test-state-major: (J·C, 3, R, R)
                pending_z.append(zt)
                pending_x.append(xt.view(cfg.test_states, c, *xt.shape[1:]).transpose(0, 1))
            if len(pending_z) == cfg.select_chunk or episode == cfg.episodes - 1:
                best_score, best_z, best_img = self._select(query, pending_z, pending_x, cls_t, best_score,
                                                            best_z, best_img)
                pending_z, pending_x = [], []
        access.set_phase("attack")
        out_view = View(size=ctx.output_size)
        images = out_view(best_img.flatten(0, 1)).cpu().view(c, cfg.test_states, 3, ctx.output_size, ctx.output_size)
        results = []
        for i, cls in enumerate(classes):
            info = {"episodes": cfg.episodes, "updates": updates, "best_score": float(best_score[i]),
                    "mean_reward": float(rewards_sum[i] / (cfg.episodes * cfg.max_step)),
                    "queries_reward": cfg.episodes * cfg.max_step * (1 if cfg.state_alpha == 0 else 2),
                    "queries_selection": cfg.episodes * cfg.test_states}
            info.update({k: float(v[i]) for k, v in last.items()})
            # The published code keeps the episode's `test_states` images together, with their mean score.
            results.append(ClassResult(cls, images[i], best_z[i].cpu(), best_score[i].expand(cfg.test_states).cpu(),
                                       info))
        return results

    @staticmethod
    def _select(query, zs: list[Tensor], xs: list[Tensor], cls_t: Tensor, best_score: Tensor, best_z: Tensor,
                best_img: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Score a chunk of selection images (per class one call) and keep, per class, the image with
        the highest p_y so far, the later one on ties (the published `>=`, episode by episode)."""
        z = torch.cat(zs, 1)  # (C, E·J, D), episode-major
        x = torch.cat(xs, 1)  # (C, E·J, 3, R, R)
        p = query(x, PHASE_SELECT)  # (C, E·J, K)
        score = p.gather(2, cls_t.to(p.device).view(-1, 1, 1).expand(-1, p.shape[1], 1)).squeeze(2)
        score = score.view(score.shape[0], len(zs), -1).mean(2)  # mean over test states, as published
        j_per = z.shape[1] // len(zs)
        if best_img is None:
            best_img = torch.zeros(x.shape[0], j_per, *x.shape[2:], device=x.device)
        for e in range(len(zs)):
            take = score[:, e] >= best_score
            best_score = torch.where(take, score[:, e], best_score)
            sl = slice(e * j_per, (e + 1) * j_per)
            best_z = torch.where(take.view(-1, 1, 1), z[:, sl], best_z)
            best_img = torch.where(take.view(-1, 1, 1, 1, 1), x[:, sl], best_img)
        return best_score, best_z, best_img


ATTACKS.register("rlbmi", description=RLBMIAttack.description)(RLBMIAttack)
