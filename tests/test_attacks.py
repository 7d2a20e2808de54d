"""PPA and IF-GMI on a tiny random generator and classifier: determinism, batching invariance,
per-stage L1 constraints, and what the pipeline returns."""

import pytest
import torch

from mibench.attacks.access import LabelOnly, WhiteBox
from mibench.attacks.base import AttackContext
from mibench.attacks.ifgmi import IFGMIAttack
from mibench.attacks.ppa import PPAttack
from mibench.classifiers.architectures import build_classifier
from mibench.errors import AttackError
from mibench.generators.stylegan2 import Generator

TINY = {"search_space_size": 24, "num_candidates": 4, "num_final": 2, "steps": 3, "final_views": 3,
        "center_crop": None, "truncation_cutoff": None, "batch_size": 8, "selection_batch_size": 16}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 128, "channel_max": 16})
    G.eval().requires_grad_(False)
    T = build_classifier("compact_resnet", 6, 16, {"width": 8}, seed=1).eval()
    return G, T


def _ctx(models, seed=0):
    G, T = models
    return AttackContext(access=WhiteBox(T, 6, 16, "cpu"), prior=G, device=torch.device("cpu"), seed=seed,
                         output_size=16, progress=False)


def _run(attack_cls, models, classes, seed=0, **over):
    attack = attack_cls.from_preset("synthfaces", {**TINY, **over})
    ctx = _ctx(models, seed)
    attack.prepare(ctx)
    return attack.attack_classes(ctx, classes), ctx


@pytest.mark.parametrize("attack_cls", [PPAttack, IFGMIAttack])
def test_same_seed_same_images(models, attack_cls):
    a, _ = _run(attack_cls, models, [1, 3])
    b, _ = _run(attack_cls, models, [1, 3])
    for ra, rb in zip(a, b):
        assert torch.equal(ra.images, rb.images) and torch.equal(ra.latents, rb.latents)
    c, _ = _run(attack_cls, models, [1, 3], seed=1)
    assert not torch.equal(a[0].images, c[0].images)


@pytest.mark.parametrize("attack_cls", [PPAttack, IFGMIAttack])
def test_class_alone_or_batched_gives_identical_images(models, attack_cls):
    together, _ = _run(attack_cls, models, [0, 2, 5])
    alone, _ = _run(attack_cls, models, [2])
    reordered, _ = _run(attack_cls, models, [5, 4, 1, 2])  # class 2 now straddles two batches
    assert torch.equal(together[1].images, alone[0].images)
    assert torch.equal(together[1].latents, alone[0].latents)
    assert torch.equal(together[1].images, reordered[3].images)
    assert torch.equal(together[2].images, reordered[0].images)


def test_ppa_result_shapes_scores_and_queries(models):
    res, ctx = _run(PPAttack, models, [0, 4])
    assert [r.class_id for r in res] == [0, 4]
    for r in res:
        assert r.images.shape == (2, 3, 16, 16) and r.images.min() >= 0 and r.images.max() <= 1
        assert r.latents.shape == (2, 16)
        assert torch.all(r.scores[:-1] >= r.scores[1:])  # sorted by final-selection score
        assert len(r.info["final_loss"]) == 4
    # search: 24 images × 2 (flip); optimisation: 8 candidates × 3 steps; final: 8 × 3 views
    assert ctx.access.queries == 48 + 24 + 24


def test_ppa_optimisation_raises_target_confidence(models):
    G, T = models
    res0, _ = _run(PPAttack, models, [3], steps=0)
    res, _ = _run(PPAttack, models, [3], steps=25, lr=0.05)
    with torch.no_grad():
        p0 = torch.softmax(T(res0[0].images), 1)[:, 3].mean()
        p1 = torch.softmax(T(res[0].images), 1)[:, 3].mean()
    assert p1 > p0


def test_ifgmi_stays_within_l1_balls(models, monkeypatch):
    """Record every projected feature/latent change and check it respects the stage's radius."""
    import mibench.attacks.ifgmi as ifgmi

    radii = [0.5, 1.0, 2.0]
    seen = []
    real = ifgmi.project_l1_ball

    def spy(v, r):
        out = real(v, r)
        seen.append((float(out.flatten(1).abs().sum(1).max()), r))
        return out

    monkeypatch.setattr(ifgmi, "project_l1_ball", spy)
    res, _ = _run(IFGMIAttack, models, [1], stage_steps=[2, 2, 2], radii=radii, lr=0.5)
    assert seen and all(norm <= r + 1e-4 for norm, r in seen)
    assert {r for _, r in seen} == set(radii)
    assert len(res[0].info["stage_loss"][0]) == 3


def test_ifgmi_with_zero_feature_steps_matches_ppa(models):
    """With no steps after stage 0 and a huge radius, IF-GMI is PPA (the skip image is carried)."""
    ppa, _ = _run(PPAttack, models, [2], steps=3)
    ifg, _ = _run(IFGMIAttack, models, [2], stage_steps=[3, 0, 0], radii=[1e9, 1e9, 1e9])
    assert torch.allclose(ppa[0].images, ifg[0].images, atol=1e-6)


def test_white_box_attack_refuses_label_only_access(models):
    G, T = models
    ctx = AttackContext(access=LabelOnly(T, 6, 16, "cpu"), prior=G, device=torch.device("cpu"), seed=0,
                        output_size=16, progress=False)
    attack = PPAttack.from_preset("synthfaces", TINY)
    with pytest.raises(AttackError):
        attack.prepare(ctx)


def test_unknown_preset_and_bad_override():
    with pytest.raises(AttackError, match="did you mean"):
        PPAttack.from_preset("synthface")
    with pytest.raises(AttackError, match="stepz"):
        PPAttack.from_preset("synthfaces", {"stepz": 3})
