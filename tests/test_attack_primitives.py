"""Poincaré loss, L1-ball projection, counter-based RNG and access levels."""

import math

import pytest
import torch

from mibench.attacks.access import BlackBox, LabelOnly, WhiteBox
from mibench.attacks.losses import cross_entropy_loss, max_margin_loss, poincare_loss
from mibench.attacks.projection import project_l1_ball
from mibench.errors import AttackError, QueryBudgetExceeded
from mibench.ops import rng


def test_poincare_loss_hand_computed():
    # logits (1, 3): L1 norm 4 → u = (0.5, 0.25, -0.25); target 0 → v = (1 - 1e-4, 0, 0).
    logits = torch.tensor([[2.0, 1.0, -1.0]])
    u = [0.5, 0.25, -0.25]
    v = [1 - 1e-4, 0.0, 0.0]
    u2 = sum(a * a for a in u)  # 0.375
    v2 = v[0] ** 2
    d2 = sum((a - b) ** 2 for a, b in zip(u, v))
    expected = math.acosh(1 + 2 * d2 / ((1 - u2) * (1 - v2)))
    got = poincare_loss(logits, torch.tensor([0]))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_poincare_loss_lower_for_confident_target():
    t = torch.tensor([1, 1])
    confident = torch.tensor([[-1.0, 10.0, -1.0], [1.0, 1.0, 1.0]])
    loss = poincare_loss(confident, t)
    assert loss[0] < loss[1]


def test_ce_and_max_margin():
    logits = torch.tensor([[3.0, 1.0, 0.5]])
    assert max_margin_loss(logits, torch.tensor([0])).item() == pytest.approx(-2.0)
    assert max_margin_loss(logits, torch.tensor([2])).item() == pytest.approx(2.5)
    expected = -math.log(math.exp(3) / (math.exp(3) + math.exp(1) + math.exp(0.5)))
    assert cross_entropy_loss(logits, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-6)


def _brute_force_l1_projection(v, r):
    """Projection by bisection on the soft-threshold θ (independent of the sort-based algorithm)."""
    if v.abs().sum() <= r:
        return v.clone()
    lo, hi = 0.0, float(v.abs().max())
    for _ in range(200):
        mid = (lo + hi) / 2
        if (v.abs() - mid).clamp_min(0).sum() > r:
            lo = mid
        else:
            hi = mid
    return torch.sign(v) * (v.abs() - hi).clamp_min(0)


def test_l1_projection_inside_points_unchanged():
    v = torch.tensor([[0.1, -0.2, 0.3], [1.0, 0.0, 0.0]], dtype=torch.float64)
    out = project_l1_ball(v, 1.0)
    assert torch.equal(out, v)


def test_l1_projection_lands_on_sphere_and_is_euclidean_nearest():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(6, 2, 5, generator=g, dtype=torch.float64) * 3
    r = 2.5
    out = project_l1_ball(v, r)
    assert out.shape == v.shape
    norms = out.flatten(1).abs().sum(1)
    assert torch.allclose(norms, torch.full_like(norms, r), atol=1e-9)
    for i in range(v.shape[0]):
        ref = _brute_force_l1_projection(v[i].flatten(), r)
        assert torch.allclose(out[i].flatten(), ref, atol=1e-7)
    # Nearest: no random point of the ball is closer than the projection.
    for i in range(v.shape[0]):
        d_proj = (out[i] - v[i]).norm()
        cands = torch.randn(500, 10, generator=g, dtype=torch.float64)
        cands = cands / cands.abs().sum(1, keepdim=True) * r * torch.rand(500, 1, generator=g, dtype=torch.float64)
        assert ((cands - v[i].flatten()).norm(dim=1) >= d_proj - 1e-9).all()


def test_l1_projection_small_hand_case():
    # (3, 1) onto radius 2: θ = 1 → (2, 0).
    out = project_l1_ball(torch.tensor([[3.0, 1.0]]), 2.0)
    assert torch.allclose(out, torch.tensor([[2.0, 0.0]]))
    # (2, 2) onto radius 2: θ = 1 → (1, 1)
    out = project_l1_ball(torch.tensor([[2.0, -2.0]]), 2.0)
    assert torch.allclose(out, torch.tensor([[1.0, -1.0]]))


def test_counter_rng_is_keyed_not_batched():
    keys = torch.arange(10)
    a = rng.uniform(123, keys, 5, 1)
    b = rng.uniform(123, keys[3:7], 5, 1)
    assert torch.equal(a[3:7], b)
    assert not torch.equal(rng.uniform(124, keys, 5, 1), a)
    assert not torch.equal(rng.uniform(123, keys, 6, 1), a)
    assert ((a >= 0) & (a < 1)).all()
    n = rng.normal(7, torch.arange(20000))
    assert abs(n.mean().item()) < 0.05 and abs(n.std().item() - 1) < 0.05
    m1 = rng.normal_matrix(1, torch.tensor([4, 9]), 8)
    m2 = rng.normal_matrix(1, torch.tensor([9]), 8)
    assert torch.equal(m1[1], m2[0])


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(12, 4)

    def forward(self, x):
        return self.lin(x.flatten(1))


def test_label_only_gives_labels_and_counts_queries():
    net = _Net()
    acc = LabelOnly(net, 4, 2, "cpu", budget=10)
    x = torch.rand(6, 3, 2, 2)
    labels = acc.labels(x)
    assert labels.dtype == torch.long and labels.shape == (6,)
    assert torch.equal(labels, net(x).argmax(1))
    assert acc.queries == 6
    with pytest.raises(QueryBudgetExceeded):
        acc.labels(x)
    assert acc.queries == 6  # the refused call is not counted


@pytest.mark.parametrize("attr", ["logits", "model", "probs", "features", "_model"])
def test_label_only_refuses_everything_else(attr):
    acc = LabelOnly(_Net(), 4, 2, "cpu")
    with pytest.raises(AttackError):
        getattr(acc, attr)
    assert not any(isinstance(v, torch.nn.Module) for v in vars(acc).values())


def test_black_box_gives_detached_probabilities():
    acc = BlackBox(_Net(), 4, 2, "cpu")
    p = acc.probs(torch.rand(3, 3, 2, 2, requires_grad=True))
    assert not p.requires_grad and torch.allclose(p.sum(1), torch.ones(3))
    with pytest.raises(AttackError):
        acc.logits(torch.rand(1, 3, 2, 2))


def test_black_box_enforces_its_query_budget():
    acc = BlackBox(_Net(), 4, 2, "cpu", budget=5)
    acc.probs(torch.rand(4, 3, 2, 2))
    with pytest.raises(QueryBudgetExceeded, match="black-box query budget of 5"):
        acc.probs(torch.rand(2, 3, 2, 2))
    assert acc.queries == 4  # the refused call is not counted
    acc.probs(torch.rand(1, 3, 2, 2))  # exactly the budget is allowed
    assert acc.queries == 5


def test_white_box_phases_counted():
    acc = WhiteBox(_Net(), 4, 2, "cpu")
    acc.logits(torch.rand(2, 3, 2, 2))
    acc.set_phase("final")
    acc.logits(torch.rand(3, 3, 2, 2))
    assert acc.queries == 5 and acc.queries_by_phase == {"attack": 2, "final": 3}
