"""RLB-MI: the published reward, the SAC update, query counting and black-box-only access."""

from __future__ import annotations

import math

import pytest
import torch

from mibench.attacks.access import BlackBox
from mibench.attacks.base import AttackContext
from mibench.attacks.rlbmi import BatchedSAC, RLBMIAttack, RLBMIConfig, rlb_reward
from mibench.generators.gmi_gan import build_prior

from access_spy import Spy

TINY = {"z_dim": 8, "g_dim": 4, "d_dim": 4}


def test_reward_matches_a_hand_computation():
    p_state = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    p_action = torch.tensor([[0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    y = torch.tensor([0, 0])
    r = rlb_reward(p_state, p_action, y)
    # row 0: 2·log .6 + 2·log .5 + 8·log(.6 − .3); row 1: margin .2 − .5 < 0 → floor 1e-7
    hand = [2 * math.log(0.6) + 2 * math.log(0.5) + 8 * math.log(0.3),
            2 * math.log(0.2) + 2 * math.log(0.1) + 8 * math.log(1e-7)]
    assert r.tolist() == pytest.approx(hand, rel=1e-5)
    # α = 0: G(z') is G(a), one image: 4·log p_y + 8·log margin
    one = rlb_reward(p_state, None, y)
    assert one[0].item() == pytest.approx(4 * math.log(0.6) + 8 * math.log(0.3), rel=1e-5)
    assert torch.isfinite(rlb_reward(torch.tensor([[0.0, 1.0]]), None, torch.tensor([0]))).all()


def test_sac_update_moves_the_actor_toward_higher_reward():
    """Toy bandit: reward −|a − a*|², a* = (0.5, −0.5); two agents learn on a fixed random buffer."""
    cfg = RLBMIConfig(hidden=16, batch_size=32, lr_actor=1e-2, lr_critic=1e-2)
    sac = BatchedSAC(cfg, 2, [1, 2], torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    s, a = torch.randn(2, 32, 2, generator=g), torch.rand(2, 32, 2, generator=g) * 2 - 1
    goal = torch.tensor([0.5, -0.5])
    r = -(a - goal).pow(2).sum(-1)

    def dist() -> torch.Tensor:
        with torch.no_grad():
            mu, _ = sac.policy(s)
        return (torch.tanh(mu) - goal).norm(dim=-1).mean(1)  # (C,)

    before = dist()
    for _ in range(80):
        eps = torch.randn(2, 1, 1, generator=g)
        sac.learn(s, a, r, s, torch.ones(2, 32), None, eps)
    after = dist()
    assert (after < 0.5 * before).all(), (before, after)
    again = BatchedSAC(cfg, 2, [1, 2], torch.device("cpu"))
    assert all(torch.equal(p, q) for p, q in zip(again.actor, BatchedSAC(cfg, 2, [1, 2], torch.device("cpu")).actor))
    # one agent's initialisation depends on its own seed only (not on its group)
    solo = BatchedSAC(cfg, 2, [2], torch.device("cpu"))
    assert all(torch.equal(p[1], q[0]) for p, q in zip(again.actor, solo.actor))



def _ctx(classes: int = 4):
    prior = build_prior(TINY, 8, seed=0).eval().requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        target = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, classes)).eval()
    access = Spy(BlackBox(target, classes, 8, "cpu"))
    return AttackContext(access=access, prior=prior, device=torch.device("cpu"), seed=0, output_size=8,
                         progress=False)


@pytest.mark.parametrize("state_alpha,per_episode", [(0.0, 2), (0.5, 3)])
def test_queries_are_counted_exactly_and_padding_is_never_queried(state_alpha, per_episode):
    ctx = _ctx()
    attack = RLBMIAttack.from_preset("smoke", {"state_alpha": state_alpha, "class_batch": 3})
    res = attack.attack_classes(ctx, [1])  # one real class padded to three agents
    used = set(ctx.access.used)
    episodes = attack.config.episodes
    assert ctx.access.queries == episodes * per_episode
    assert ctx.access.queries_by_phase == {"reward": episodes * (per_episode - 1), "selection": episodes}
    assert res[0].info["queries_reward"] + res[0].info["queries_selection"] == ctx.access.queries
    assert used - {"input_size", "set_phase"} == {"probs"}, "black-box: probabilities only"
    assert res[0].images.shape == (1, 3, 8, 8) and 0 <= res[0].scores.item() <= 1


def test_selection_keeps_the_highest_scoring_test_image_later_on_ties():
    scores = torch.tensor([[0.2, 0.5, 0.5, 0.1]])  # one class, four episodes

    def query(x, phase):
        n = x.shape[1]
        p = torch.zeros(1, n, 2)
        p[0, :, 1] = scores[0, :n]
        return p

    zs = [torch.full((1, 1, 3), float(e)) for e in range(4)]
    xs = [torch.full((1, 1, 3, 2, 2), float(e)) for e in range(4)]
    best, z, img = RLBMIAttack._select(query, zs, xs, torch.tensor([1]), torch.zeros(1), torch.zeros(1, 1, 3), None)
    assert best.item() == pytest.approx(0.5) and z[0, 0, 0].item() == 2.0 and img[0, 0, 0, 0, 0].item() == 2.0


def test_a_class_gives_the_same_result_alone_or_in_a_group():
    attack = RLBMIAttack.from_preset("smoke", {"class_batch": 3, "noise": "independent"})
    group = attack.attack_classes(_ctx(), [0, 2, 3])
    alone = attack.attack_classes(_ctx(), [2])[0]
    assert torch.equal(group[1].images, alone.images) and torch.equal(group[1].latents, alone.latents)
    assert not torch.equal(group[0].latents, group[1].latents)


def test_config_validation():
    with pytest.raises(ValueError, match="learn_after"):
        RLBMIConfig(batch_size=8, learn_after=4).validate()
    with pytest.raises(ValueError, match="state_alpha"):
        RLBMIConfig(state_alpha=2).validate()
