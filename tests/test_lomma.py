"""LOMMA as an add-on (`gmi+lomma`, `kedmi+lomma`, the L_logit / L_aug ablations): the composed
attacks, the published identity losses, distillation, the persisted stages and their queries."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mibench.attacks.access import WhiteBox
from mibench.attacks.addon import attack_class, attack_names
from mibench.attacks.base import AttackContext, merge_settings
from mibench.attacks.lomma import Distillation
from mibench.classifiers.architectures import build_classifier
from mibench.data.base import TensorImageDataset
from mibench.errors import AttackError, MIBenchError
from mibench.generators.gmi_gan import build_prior
from mibench.run.spec import RunSpec, resolve

K, RES = 4, 8


def _target():
    return build_classifier("compact_resnet", K, RES, {"width": 4, "depths": [1]}, seed=0).eval().requires_grad_(False)


def _public(n=24):
    x = torch.randint(0, 256, (n, 3, RES, RES), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    return TensorImageDataset(x, torch.zeros(n, dtype=torch.long), ["p"], name="pub", split="public")


def _ctx(tmp_path, prior=None):
    return AttackContext(access=WhiteBox(_target(), K, RES, "cpu"), prior=prior, device=torch.device("cpu"), seed=0,
                         output_size=RES, progress=False, store_dir=tmp_path, public_data=_public)


def _prepared(name, tmp_path, **overrides):
    prior = build_prior({"z_dim": 8, "g_dim": 4, "d_dim": 4}, RES, seed=0).eval().requires_grad_(False)
    attack = attack_class(name).from_preset("smoke", {"lomma.feature_samples": 10, **overrides})
    ctx = _ctx(tmp_path, prior)
    attack.prepare(ctx)
    return attack, ctx


def test_composed_names_presets_and_settings():
    assert {"gmi+lomma", "gmi+lomma-logit", "gmi+lomma-aug", "kedmi+lomma"} <= set(attack_names())
    gmi = attack_class("gmi+lomma")
    assert gmi is attack_class("gmi+lomma") and gmi.name == "gmi+lomma" and not gmi.in_default_suite
    assert gmi.needs_public_data and gmi.prior_kinds == ("gmi",)
    assert gmi.from_preset("celeba").config.steps == 2400, "LOMMA's published GMI runs: 2400 iterations"
    assert gmi.from_preset("synthfaces").config.steps == attack_class("gmi").from_preset("synthfaces").config.steps
    assert attack_class("kedmi+lomma-logit").from_preset("synthfaces").config.clip_z == 1.0, "published clipz"
    cfg = gmi.from_preset("synthfaces", {"lomma.lambda_reg": 0.5, "steps": 7}).config
    assert (cfg.lomma.lambda_reg, cfg.lomma.surrogate_epochs, cfg.steps) == (0.5, 4, 7), "dotted keys change one field"
    described = attack_class("gmi+lomma-aug").from_preset("smoke").describe()
    assert described["addons"] == [{"name": "lomma-aug", "variant": "L_aug"}] and "lomma" in described
    with pytest.raises(AttackError, match="does not apply to attack 'ppa'") as err:
        attack_class("ppa+lomma")
    assert "gmi, kedmi" in err.value.fix
    with pytest.raises(MIBenchError, match="did you mean 'lomma'"):
        attack_class("gmi+loma")
    with pytest.raises(AttackError, match="lambda_reg"):
        gmi.from_preset("smoke", {"lomma.lambda_reg": -1})


def test_merge_settings_replaces_plain_values_and_merges_nested_ones():
    out = merge_settings({"a": 1, "n": {"x": 1, "y": 2}}, {"n": {"y": 3}}, {"n.x": 5, "a": [1]})
    assert out == {"a": [1], "n": {"x": 5, "y": 3}}


def test_a_run_spec_resolves_the_composed_attack_with_public_data():
    run = resolve(RunSpec(target="synthfaces32-resnet", attack="gmi+lomma", classes=[0]))
    assert run.attack.name == "gmi+lomma" and run.preset == "synthfaces" and run.prior.kind == "gmi"
    assert run.public_data is not None and run.run_id().split("__")[1] == "gmi+lomma"
    assert run.config()["attack"]["config"]["addons"] == [{"name": "lomma", "variant": "ours"}]


def test_the_three_variants_compute_the_published_identity_losses(tmp_path):
    x = torch.rand(5, 3, RES, RES)
    y = torch.tensor([0, 1, 2, 3, 0])
    full, ctx = _prepared("gmi+lomma", tmp_path / "full")
    logit, _ = _prepared("gmi+lomma-logit", tmp_path / "logit")
    aug, _ = _prepared("gmi+lomma-aug", tmp_path / "aug")
    target = ctx.access.model
    f, out = target.forward_with_features(x)
    reg = ((f - full.addon.mu) ** 2).mean(1)
    public = _public().images[:10].float() / 255
    assert torch.allclose(full.addon.mu, target.features(public).mean(0), atol=1e-6), "μ over feature_samples images"
    s = full.addon.models[0](x)
    neg = lambda z: -z.gather(1, y.view(-1, 1)).squeeze(1)  # noqa: E731
    assert torch.allclose(logit.identity_loss(ctx, x, y, 5), neg(out) + reg, atol=1e-5)
    assert torch.allclose(full.identity_loss(ctx, x, y, 5), (neg(out) + neg(s)) / 2 + reg, atol=1e-5)
    ce = lambda z: F.cross_entropy(z, y, reduction="none")  # noqa: E731
    assert torch.allclose(aug.identity_loss(ctx, x, y, 5), (ce(out) + ce(aug.addon.models[0](x))) / 2, atol=1e-5)
    assert logit.addon.models == [] and aug.addon.mu is None, "each ablation trains only what it uses"
    assert full.surrogates() is not None and logit.surrogates() is None
    # The whole GMI loss keeps GMI's prior term and weights: loss_scale·(−D(G(z)) + λ·identity).
    z = torch.randn(5, 8)
    g = full.images(ctx, z)
    expected = full.config.loss_scale * (-ctx.prior.critic(ctx.prior(z)) + 100 * full.identity_loss(ctx, g, y, 5))
    assert torch.allclose(full.loss(ctx, z, y, 5), expected, atol=1e-4)


def test_distillation_is_the_published_kl_and_training_is_deterministic(tmp_path):
    teacher = _target()
    loss = Distillation(teacher, temperature=2.0)
    student = build_classifier("compact_resnet", K, RES, {"width": 4, "depths": [1]}, seed=3)
    x = torch.rand(6, 3, RES, RES)
    value, logs = loss.loss(student, x, torch.zeros(6, dtype=torch.long), 0.0)
    p_t = F.softmax(teacher(x) / 2, 1)
    manual = (p_t * (p_t.log() - F.log_softmax(student(x) / 2, 1))).sum() / 4 / 6
    assert value.item() == pytest.approx(manual.item(), rel=1e-5) and 0 <= logs["acc"] <= 1
    a, _ = _prepared("gmi+lomma-aug", tmp_path / "a")
    b, _ = _prepared("gmi+lomma-aug", tmp_path / "b")
    assert all(torch.equal(p, q) for p, q in zip(a.addon.models[0].state_dict().values(),
                                                 b.addon.models[0].state_dict().values()))


def test_stages_are_reused_from_the_run_folder_with_their_queries_credited(tmp_path):
    first, ctx = _prepared("gmi+lomma", tmp_path)
    spent = dict(ctx.access.queries_by_phase)
    assert spent == {"lomma-features": 10, "lomma-distill": 16}, "one query per image for μ, per epoch for the teacher"
    again, ctx2 = _prepared("gmi+lomma", tmp_path)
    assert again.phase_info()["lomma"]["resumed"] == ["features", "surrogate-0"]
    assert ctx2.access.queries_by_phase == spent, "a reused stage still counts its queries"
    assert torch.equal(first.addon.mu, again.addon.mu)
    other, _ = _prepared("gmi+lomma", tmp_path, **{"lomma.surrogate_epochs": 2})
    assert other.phase_info()["lomma"]["resumed"] == ["features"], "other distillation settings are another stage"
    with pytest.raises(AttackError, match="not prepared"):
        attack_class("gmi+lomma").from_preset("smoke").identity_loss(ctx, torch.rand(1, 3, RES, RES),
                                                                     torch.tensor([0]), 1)


def test_a_composed_run_ships_base_and_add_on_stages_apart_and_reuses_both(tmp_path, monkeypatch):
    """`mibench zoo ship-stages RUN` of `kedmi+lomma`: KED-MI's GAN ships as KED-MI's (`stages/kedmi/`,
    where plain KED-MI runs find it too), LOMMA's stages as LOMMA's; a later run trains nothing."""
    from mibench.ops import cache
    from mibench.run import RunSpec, run_one
    from mibench.zoo.shipping import ship_stages

    from tiny_zoo import write_tiny_cards

    monkeypatch.setattr(cache, "SHIPPED", tmp_path / "shipped")
    monkeypatch.setenv("MIBENCH_CARDS", str(write_tiny_cards(tmp_path / "cards")))
    spec = RunSpec(target="tiny-target", attack="kedmi+lomma", classes=[0, 1], preset="smoke")
    first = run_one(spec, out=tmp_path / "a", device="cpu", progress=False)
    run_dir = tmp_path / "a" / first["entry_id"]
    assert sorted(p.name for p in (run_dir / "kedmi+lomma" / "lomma").glob("*.artifact.json"))
    rows = ship_stages([run_dir])
    assert {r["file"].split("/")[1] for r in rows} == {"kedmi", "lomma"} and len(rows) == 3
    again = run_one(spec, out=tmp_path / "b", device="cpu", progress=False)
    assert again["attack"]["info"]["shipped_stages"] == ["gan"]
    assert again["attack"]["info"]["lomma"]["shipped_stages"] == ["features", "surrogates"]
    assert again["per_class"] == first["per_class"] and again["queries"] == first["queries"]
    plain = run_one(RunSpec(target="tiny-target", attack="kedmi", classes=[0], preset="smoke"), out=tmp_path / "c",
                    device="cpu", progress=False)
    assert plain["attack"]["info"]["shipped_stages"] == ["gan"], "the base attack finds the same GAN"
