"""Mirror (white-box): the projector learning-rate schedule, the start from the class's most
confident pool w, the p-space clip after every step, the published keep rule (the post-step latents
of the lowest-loss step), query counting and the loss scale of the published batch mean."""

from __future__ import annotations

import math

import pytest
import torch

from mibench.attacks.access import WhiteBox
from mibench.attacks.base import AttackContext
from mibench.attacks.mirror_whitebox import MirrorWhiteBoxAttack, projector_lr
from mibench.classifiers.architectures import build_classifier
from mibench.errors import AttackError
from mibench.registry import GENERATORS
from tests.access_spy import Spy

RES, K = 16, 4


def test_projector_schedule_ramps_up_holds_and_cosine_ramps_down_to_zero():
    steps, lr = 200, 0.2
    assert projector_lr(1, steps, lr) == pytest.approx(lr * (1 / 200) / 0.05)  # linear ramp-up, 5 %
    assert projector_lr(10, steps, lr) == pytest.approx(lr)  # t = 0.05: ramp-up done
    assert projector_lr(100, steps, lr) == pytest.approx(lr)  # plateau
    t = 180 / 200  # (1 − t) / 0.25 = 0.4 of the cosine ramp-down
    assert projector_lr(180, steps, lr) == pytest.approx(lr * (0.5 - 0.5 * math.cos(0.4 * math.pi)))
    assert t > 0.75 and projector_lr(steps, steps, lr) == 0.0  # the last step does not move


def _ctx(tmp_path=None) -> AttackContext:
    target = build_classifier("compact_resnet", K, RES, {"width": 8, "depths": [1, 1]}, seed=0).eval()
    kind = GENERATORS.get("stylegan2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        prior = kind.build(kind.smoke_params, RES).eval().requires_grad_(False)
    return AttackContext(access=Spy(WhiteBox(target, K, RES, "cpu")), prior=prior, device=torch.device("cpu"),
                         seed=0, output_size=RES, progress=False, store_dir=tmp_path)


def _attack(**overrides) -> MirrorWhiteBoxAttack:
    return MirrorWhiteBoxAttack.from_preset("smoke", {"steps": 6, **overrides})


def test_starts_from_the_most_confident_pool_w_stays_in_the_box_and_counts_queries():
    ctx, attack = _ctx(), _attack(keep="last")
    attack.prepare(ctx)
    n = attack.config.num_latents
    logp = attack._top_fit
    assert logp.shape == (K, n) and bool((logp[:, :-1] >= logp[:, 1:]).all())  # best first
    seen = []
    clip = attack._bounds.clip

    def recording_clip(w):
        out = clip(w)
        seen.append(out.detach().clone())
        return out

    attack._bounds.clip = recording_clip
    results = attack.attack_classes(ctx, [0, 2])
    b = attack._bounds
    for w in seen:
        assert bool((w >= b.w_min - 1e-6).all() and (w <= b.w_max + 1e-6).all())
    assert len(seen) == attack.config.steps * math.ceil(2 * n / attack.config.batch_size)
    for r in results:
        assert r.images.shape == (n, 3, RES, RES) and r.latents.shape == (n, ctx.prior.w_dim)
        assert r.scores.shape == (n,) and bool(((r.scores > 0) & (r.scores <= 1)).all())
        assert r.info["queries"] == (attack.config.steps + 1) * n
    assert ctx.access.queries_by_phase == {"init": attack.config.pool_size,
                                           "attack": sum(r.info["queries"] for r in results)}
    assert ctx.access.used <= {"logits", "set_phase", "input_size", "num_classes", "queries_by_phase"}


def test_published_keep_rule_takes_the_post_step_latents_of_the_lowest_loss_step():
    ctx, attack = _ctx(), _attack(lr=0.5, steps=8)
    attack.prepare(ctx)
    n, steps = attack.config.num_latents, attack.config.steps
    logits_calls, clipped = [], []
    access, clip = ctx.access._access, attack._bounds.clip

    def logits(x, count=None):
        out = WhiteBox.logits(access, x, count)
        if out.requires_grad:  # the optimisation's calls (the final scoring runs without grad)
            logits_calls.append(out.detach().clone())
        return out

    access.logits = logits
    attack._bounds.clip = lambda w: (clipped.append(clip(w).detach().clone()), clipped[-1])[1]
    [res] = attack.attack_classes(ctx, [1])
    assert len(logits_calls) == len(clipped) == steps  # one class: one padded batch per step
    y = torch.full((n,), 1)
    losses = [float((10 / n * torch.nn.functional.cross_entropy(o[:n], y, reduction="none")).sum())
              for o in logits_calls]
    k = min(range(steps), key=lambda i: (losses[i], i))  # the first lowest (a strict < keeps it)
    assert res.info["kept_step"] == k + 1 and res.info["loss"] == pytest.approx(losses[k], rel=1e-5)
    assert torch.equal(res.latents, clipped[k][:n])  # the latents *after* that step, as published
    last = _attack(lr=0.5, steps=8, keep="last")
    last.prepare(ctx)
    [res_last] = last.attack_classes(ctx, [1])
    assert res_last.info["kept_step"] == steps and torch.equal(res_last.latents, clipped[-1][:n])


def test_loss_scale_gives_the_published_batch_mean_gradient():
    """10 · mean CE over one class's latents (the published loss for one target) and mibench's sum of
    per-latent terms × loss_weight / num_latents have the same gradient."""
    torch.manual_seed(0)
    logits = torch.randn(8, K, requires_grad=True)
    y = torch.full((8,), 2)
    g1, = torch.autograd.grad(10 * torch.nn.functional.cross_entropy(logits, y), logits)
    g2, = torch.autograd.grad((10 / 8 * torch.nn.functional.cross_entropy(logits, y, reduction="none")).sum(), logits)
    assert torch.allclose(g1, g2)


def test_resume_reuses_the_pool_stage_and_bad_configs_fail(tmp_path):
    first = _attack()
    first.prepare(_ctx(tmp_path))
    again = _ctx(tmp_path)
    second = _attack()
    second.prepare(again)
    assert "logits" not in again.access.used and second.phase_info()["resumed"]
    for bad in ({"num_latents": 0}, {"steps": 0}, {"lr": 0.0}, {"rampup": 0.0}):
        with pytest.raises(AttackError):
            MirrorWhiteBoxAttack.from_preset("smoke", bad)
