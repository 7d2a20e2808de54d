"""BREP-MI: the sphere / repulsion / radius-growth rules on hand-computed cases, the published loop
(reference re-implementation on a toy latent space whose class is the sign of z[0]), step
rejection, stopping rules, the shared start pool, label-only access and query counting."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mibench.attacks.access import LabelOnly, WhiteBox
from mibench.attacks.base import AttackContext
from mibench.attacks.brepmi import (
    BREPMIAttack,
    radius_grows,
    repulsion_direction,
    sphere_directions,
    step_sizes,
)
from mibench.errors import AttackError
from mibench.ops import rng

from access_spy import Spy

Z, R = 12, 2  # toy latent size; toy images are 3 × 2 × 2 = 12 values: the latent itself, scaled


class ToyPrior(nn.Module):
    """z (N, 12) → images (N, 3, 2, 2) in [−1, 1] that encode z / 10 (clamped)."""

    z_dim = Z

    def forward(self, z):
        return (z / 10).clamp(-1, 1).view(-1, 3, R, R)


class HalfSpace(nn.Module):
    """Toy target on toy images: class 1 iff the encoded z[0] > 0, else class 0."""

    def forward(self, x):
        z0 = (x.flatten(1)[:, 0] * 2 - 1) * 10
        return torch.stack([-z0, z0], 1)


class Speckled(nn.Module):
    """Toy target: class 1 iff the encoded z[0] > 0, except at a pseudo-random tenth of the points
    (so some candidate steps are rejected while spheres still pass the ≥ 29 / 32 test)."""

    def forward(self, x):
        z = (x.flatten(1) * 2 - 1) * 10
        inside = ((z[:, 0] > 0) & (torch.frac((z.sum(1) * 10).abs()) > 0.1)).float()
        return torch.stack([1 - inside, inside], 1)


class Always(nn.Module):
    """Toy target: every image is class 0 (of 2)."""

    def forward(self, x):
        return torch.tensor([[1.0, 0.0]]).expand(len(x), 2)


class CandidatesOutside(nn.Module):
    """Toy target: one-image calls (BREP-MI's candidate step) are class 1, larger calls class 0."""

    def forward(self, x):
        return torch.tensor([[0.0, 1.0] if len(x) == 1 else [1.0, 0.0]]).expand(len(x), 2)


def _ctx(model, store=None, access_cls=LabelOnly):
    return AttackContext(access=access_cls(model.eval(), 2, R, "cpu"), prior=ToyPrior(), device=torch.device("cpu"),
                         seed=0, output_size=R, progress=False, store_dir=store)


def _attack(**over):
    base = {"pool_batch_size": 16, "max_pool_batches": 4, "batch_classes": 2}
    return BREPMIAttack.from_preset("celeba", {**base, **over})


# --- the rules ---------------------------------------------------------------------------------

def test_sphere_points_lie_on_the_sphere_and_are_keyed_by_class_and_step():
    r = torch.tensor([2.0, 3.5])
    u = sphere_directions(7, torch.tensor([3, 5]), 0, r, 32, Z)
    assert u.shape == (2, 32, Z)
    assert torch.allclose(u.norm(dim=2), r.view(-1, 1).expand(2, 32))
    alone = sphere_directions(7, torch.tensor([5]), 0, r[1:], 32, Z)
    assert torch.equal(u[1], alone[0]), "a class draws the same sphere whatever its group"
    assert not torch.allclose(u[0], sphere_directions(7, torch.tensor([3]), 1, r[:1], 32, Z)[0]), "fresh each step"
    # The direction is the normalised keyed Gaussian draw (published: r · g / |g|).
    g = rng.normal_matrix(7, torch.arange(3 * 32, 4 * 32), Z, 0)
    assert torch.allclose(u[0], 2.0 * g / g.norm(dim=1, keepdim=True))


def test_repulsion_direction_and_step_on_a_hand_computed_case():
    u = torch.tensor([[[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0]]])  # 4 points, radius 2
    s = torch.tensor([[1.0, -1.0, 1.0, 1.0]])  # only the point at (−2, 0) is outside
    r = torch.tensor([2.0])
    # mean(((s − 1)/2)·u) / r = ((0 + 2 + 0 + 0)/4, 0) / 2 = (0.25, 0): away from the outside point.
    assert torch.allclose(repulsion_direction(s, u, r), torch.tensor([[0.25, 0.0]]))
    # Attraction too (the code's other branch): mean(s·u) / r = ((2 + 2 + 0 + 0)/4, (2 − 2)/4) / 2.
    assert torch.allclose(repulsion_direction(s, u, r, repulsion_only=False), torch.tensor([[0.5, 0.0]]))
    assert torch.allclose(step_sizes(torch.tensor([2.0, 9.0, 30.0]), 3.0, 3.0), torch.tensor([2 / 3, 3.0, 3.0]))


def test_radius_grows_when_at_least_29_of_32_points_are_inside():
    def signs(inside):
        return torch.tensor([[1.0] * inside + [-1.0] * (32 - inside)])

    # Σ ±1 > 0.75 · 32 = 24  ⇔  inside − (32 − inside) > 24  ⇔  inside ≥ 29
    assert [bool(radius_grows(signs(k), 0.75)) for k in (27, 28, 29, 32)] == [False, False, True, True]


# --- the loop ----------------------------------------------------------------------------------

def _reference(ctx, attack, y, z, max_steps):
    """The published `attack_single_target` loop (nested whiles, `break` on a rejected step or a
    radius increase) on one class, with mibench's keyed sphere draws; returns (reported z,
    radius, current_iter, steps)."""
    cfg = attack.config
    seed = rng.stream_seed(ctx.seed, attack.name, "sphere")

    def label(points):
        x = (ctx.prior(points) + 1) * 0.5
        return torch.where(ctx.access.labels(x) == y, 1.0, -1.0)

    r, it, last, t, reported = torch.tensor(cfg.init_radius), 0, 0, 0, None  # float32, as the attack
    while it - last < cfg.patience and t < max_steps:
        while it - last < cfg.patience and t < max_steps:
            new_radius = False
            step = torch.clamp(r / 3, max=3.0)  # min(r/3, 3)
            u = sphere_directions(seed, torch.tensor([y]), t, r.view(1), cfg.n_points, Z)[0]
            s = label(z + u)
            t += 1
            if s.sum() > 0.75 * cfg.n_points:
                r, new_radius, last = r * 1.3, True, it
            direction = torch.mean(((s - 1) / 2).unsqueeze(1) * u, 0) / r
            cand = (z + step * direction).clamp(-1.5, 1.5)
            if label(cand.unsqueeze(0))[0] == -1:
                break
            z = cand
            if new_radius:
                reported = z.clone()
                break
            it += 1
    return reported, float(r), it, t


@pytest.mark.parametrize(("target", "patience"), [(HalfSpace, 3), (HalfSpace, 40), (Speckled, 30)])
def test_search_follows_the_published_loop(target, patience):
    ctx = _ctx(target())
    attack = _attack(patience=patience, max_steps=400)
    attack.prepare(ctx)
    [res] = attack.attack_classes(ctx, [1])
    start = attack.pool_latents(ctx, attack.first_index[1:2])[0]
    assert res.info["pool_index"] == int(attack.first_index[1])
    z_ref, r_ref, it_ref, steps_ref = _reference(ctx, attack, 1, start, 400)
    info = res.info
    assert info["steps"] == steps_ref and info["iterations"] == it_ref
    assert info["final_radius"] == pytest.approx(r_ref, rel=1e-6)
    assert info["radius_increases"] >= 1
    assert torch.allclose(res.latents[0], z_ref, atol=1e-6)
    assert res.scores[0].item() == pytest.approx(info["recorded_radius"], rel=1e-6)
    assert info["accepted"] + info["rejected"] == info["steps"]
    assert info["queries"] == 33 * info["steps"]
    if target is HalfSpace:
        assert info["stop"] == "patience" and info["rejected"] == 0
        assert res.latents[0, 0] >= start[0] > 0, "repulsion from the z[0] = 0 boundary only pushes z[0] up"
    else:
        assert info["rejected"] > 0, "speckles reject some steps"


def test_whole_space_class_grows_every_step_and_reports_the_last_increase():
    ctx = _ctx(Always())
    attack = _attack(max_steps=5)
    attack.prepare(ctx)
    res0, res1 = attack.attack_classes(ctx, [0, 1])
    # Every sphere is inside: r grows each step, no point repels, the candidate is z itself.
    info = res0.info
    assert info["steps"] == 5 and info["radius_increases"] == 5 and info["iterations"] == 0
    assert info["final_radius"] == pytest.approx(2 * 1.3 ** 5, rel=1e-6)
    assert res0.scores[0].item() == pytest.approx(2 * 1.3 ** 4, rel=1e-6)  # the sphere that passed last
    assert info["recorded_step"] == 4 and info["stop"] == "max_steps"
    assert torch.equal(res0.latents, attack.pool_latents(ctx, torch.tensor([0])))
    # Class 1 never appears in the pool: a clear failure, no attack queries.
    assert math.isnan(res1.scores[0].item()) and "no pool latent was labelled class 1" in res1.info["failed"]
    assert ctx.access.queries_by_phase == {"init": 4 * 16, "attack": 5 * 33}
    # The optional radius cap: 2 → 2.6 → 3.38 → 4.394 → 5.712 > 5 stops after 4 steps.
    ctx = _ctx(Always())
    [res] = _attack(max_radius=5.0).attack_classes(ctx, [0])
    assert res.info["stop"] == "max_radius" and res.info["steps"] == 4


def test_rejected_steps_keep_the_point_and_do_not_count_as_iterations():
    ctx = _ctx(CandidatesOutside())
    attack = _attack(max_steps=6)
    [res] = attack.attack_classes(ctx, [0])
    info = res.info
    # Every sphere is inside (r grows: the published code grows it before the rejection) and every
    # candidate is outside: z never moves, no increase step is recorded, current_iter stays 0.
    assert info["rejected"] == 6 and info["accepted"] == 0 and info["iterations"] == 0
    assert info["final_radius"] == pytest.approx(2 * 1.3 ** 6, rel=1e-6)
    assert info["reported"] == "current" and res.scores[0].item() == 0.0
    assert torch.equal(res.latents, attack.pool_latents(ctx, torch.tensor([0])))
    [failed] = _attack(max_steps=6, without_increase="fail").attack_classes(_ctx(CandidatesOutside()), [0])
    assert math.isnan(failed.scores[0].item()) and "never increased" in failed.info["failed"]


def test_a_class_gives_the_same_search_alone_or_grouped():
    together = _attack(patience=5, max_steps=60).attack_classes(_ctx(HalfSpace()), [0, 1])
    for res in together:
        [alone] = _attack(patience=5, max_steps=60).attack_classes(_ctx(HalfSpace()), [res.class_id])
        assert torch.equal(alone.latents, res.latents) and torch.equal(alone.images, res.images)
        assert alone.info == res.info
    # "group" batching (generator batches across the group, real target rows together) searches alike
    # on a target whose rows do not interact, with the same query count.
    grouped = _attack(patience=5, max_steps=60, batching="group").attack_classes(_ctx(HalfSpace()), [0, 1])
    for g, res in zip(grouped, together):
        assert torch.allclose(g.latents, res.latents, atol=1e-6) and g.info == res.info


# --- access and queries ------------------------------------------------------------------------


def test_only_labels_are_used_and_every_query_is_counted(tmp_path):
    ctx = _ctx(HalfSpace(), tmp_path)
    ctx.access = Spy(ctx.access)
    attack = _attack(patience=4, max_steps=50)
    attack.prepare(ctx)
    results = attack.attack_classes(ctx, [0, 1])
    assert ctx.access.used - {"labels", "set_phase", "input_size", "num_classes", "level", "credit"} == set()
    by_phase = ctx.access.queries_by_phase
    batches = attack.phase_info()["pool"]["batches"]
    assert by_phase["init"] == 16 * batches and batches >= 1
    assert by_phase["attack"] == sum(r.info["queries"] for r in results)
    assert ctx.access.queries == by_phase["init"] + by_phase["attack"]
    # A second prepare in the same run folder reuses the labelled pool and credits its queries.
    again = _ctx(HalfSpace(), tmp_path)
    again.access = Spy(again.access)
    second = _attack(patience=4, max_steps=50)
    second.prepare(again)
    assert "labels" not in again.access.used and again.access.queries_by_phase == {"init": 16 * batches}
    assert torch.equal(second.first_index, attack.first_index) and second.phase_info()["pool"]["resumed"]


def test_white_box_access_is_refused_and_bad_configs_fail():
    with pytest.raises(AttackError, match="label-only"):
        _attack().prepare(_ctx(HalfSpace(), access_cls=WhiteBox))
    for bad in ({"n_points": 0}, {"expansion": 1.0}, {"grow_fraction": 1.0}, {"max_radius": 1.0},
                {"batching": "nope"}):
        with pytest.raises(AttackError):
            BREPMIAttack.from_preset("celeba", bad)


def test_paper_preset_is_the_published_configuration():
    cfg = BREPMIAttack.from_preset("celeba").config
    assert (cfg.n_points, cfg.init_radius, cfg.expansion, cfg.grow_fraction) == (32, 2.0, 1.3, 0.75)
    assert (cfg.step_divisor, cfg.max_step, cfg.clip, cfg.patience) == (3.0, 3.0, 1.5, 1000)
    assert cfg.repulsion_only and cfg.pool_batch_size == 256 and cfg.max_steps is None and cfg.max_radius is None
    assert BREPMIAttack.from_preset("small").config == BREPMIAttack.from_preset("synthfaces").config


def test_the_attack_gets_the_gmi_prior_and_the_embedded_preset():
    from mibench.run.spec import RunSpec, resolve

    run = resolve(RunSpec(target="synthfaces32-resnet", attack="brepmi", classes=[0]))
    assert run.prior.kind == "gmi" and run.preset == "synthfaces"
