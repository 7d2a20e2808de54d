"""KED-MI: the inversion-specific GAN (networks, losses, training) and the distributional attack
(sampling, loss scale, stage reuse, query accounting)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mibench.attacks.access import WhiteBox
from mibench.attacks.base import AttackContext
from mibench.attacks.kedmi import KEDMIAttack
from mibench.data import load_dataset
from mibench.errors import MIBenchError
from mibench.generators.kedmi_gan import (
    KEDMIDiscriminator,
    KEDMIGANRecipe,
    MinibatchDiscrimination,
    realism,
    train_kedmi_gan,
)

PUBLIC = {"resolution": 16, "num_private": 4, "train_per_class": 2, "test_per_class": 1, "num_public": 8,
          "public_per_identity": 2, "num_shifted": 1, "shifted_per_identity": 1}


def test_discriminator_has_the_published_shape_at_64px():
    D = KEDMIDiscriminator(1000, 64, 64)
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size[0]) for m in convs] == [
        (3, 64, 5), (64, 128, 5), (128, 256, 5), (256, 256, 3)]
    assert D.mbd1.T.shape == (4096, 64, 50) and D.fc_layer.in_features == 4096 + 64
    f, y = D(torch.rand(3, 3, 64, 64))
    assert f.shape == (3, 4096) and y.shape == (3, 1000)
    with pytest.raises(MIBenchError, match="≥ 32"):
        KEDMIDiscriminator(10, 4, 16)


def test_minibatch_discrimination_matches_its_definition_and_can_be_uncoupled():
    mbd = MinibatchDiscrimination(5, 3, 2)
    x = torch.randn(4, 5)
    out = mbd(x)
    m = (x @ mbd.T.view(5, -1)).view(4, 3, 2)
    for i in range(4):
        expected = sum(torch.exp(-(m[i] - m[j]).abs().sum(1)) for j in range(4) if j != i)
        assert torch.allclose(out[i, 5:], expected, atol=1e-6)
    alone = mbd(x, batch_coupling=False)
    assert torch.equal(alone[:, :5], x) and torch.equal(alone[:, 5:], torch.zeros(4, 3))
    assert torch.allclose(mbd(x[:1])[:, 5:], torch.zeros(1, 3)), "a batch of one has no neighbours"


def test_realism_is_minus_log_sigmoid_of_the_logsumexp():
    logits = torch.randn(6, 5)
    assert torch.allclose(realism(logits), -F.logsigmoid(torch.logsumexp(logits, 1)), atol=1e-6)


def _labeller(k=4):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, k)).eval()
    calls = []

    def label(x):
        calls.append(len(x))
        return net(x)

    return net, label, calls


def test_gan_training_is_deterministic_counts_queries_and_learns_from_soft_labels():
    imgs = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    recipe = KEDMIGANRecipe(dim=4, z_dim=8, steps=6, batch_size=4, n_critic=3, log_every=3)
    _, label, calls = _labeller()
    a = train_kedmi_gan(imgs, label, 4, recipe, seed=0, progress=False)
    b = train_kedmi_gan(imgs, _labeller()[1], 4, recipe, seed=0, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.G.state_dict().values(), b.G.state_dict().values()))
    assert all(torch.equal(x, y) for x, y in zip(a.D.state_dict().values(), b.D.state_dict().values()))
    assert a.summary["queries"] == 6 * 4 == sum(calls), "one target query per labelled public image"
    assert [r["step"] for r in a.summary["log"]] == [3, 6] and all("loss_g" in r for r in a.summary["log"])
    assert all(torch.isfinite(torch.tensor([r["loss_lab"], r["loss_unlab"]])).all() for r in a.summary["log"])
    with pytest.raises(MIBenchError, match="fewer than one batch"):
        train_kedmi_gan(imgs[:2], label, 4, recipe, progress=False)


def _ctx(tmp_path, k=4):
    net, _, _ = _labeller(k)
    return AttackContext(access=WhiteBox(net, k, 32, "cpu"), prior=None, device=torch.device("cpu"), seed=0,
                         output_size=32, progress=False, store_dir=tmp_path,
                         public_data=lambda: load_dataset("synthfaces32", "public", **PUBLIC))


def test_distribution_sampling_and_the_published_loss_scale(tmp_path):
    attack = KEDMIAttack.from_preset("smoke", {"steps": 0})
    ctx = _ctx(tmp_path)
    attack.prepare(ctx)
    d = attack.config.gan_z_dim
    params = attack.initial_distributions(ctx, 3)
    assert torch.equal(params[:, :d], torch.zeros(3, d)) and torch.equal(params[:, d:], torch.ones(3, d))
    keys = torch.tensor([0, 1, 2])
    z0, z1 = attack.sample(params, keys, 7, 0), attack.sample(params, keys, 7, 1)
    assert not torch.equal(z0, z1), "a fresh ε every iteration"
    assert torch.equal(attack.sample(params[1:2], keys[1:2], 7, 0), z0[1:2]), "ε is keyed by class"
    # z = μ + σ·ε with σ = exp(½ log σ²)
    eps = (z0 - params[:, :d]) / torch.exp(0.5 * params[:, d:])
    assert torch.allclose(attack.sample(params * 0 + torch.cat([torch.ones(3, d), torch.zeros(3, d)], 1), keys, 7, 0),
                          1 + eps, atol=1e-5)
    clipped = KEDMIAttack.from_preset("smoke", {"clip_z": 0.1})
    clipped.G, clipped.D = attack.G, attack.D
    assert clipped.sample(params, keys, 7, 0).abs().max() <= 0.1
    # Summed per-class losses × 1/60 give every class the gradient of the published batch mean over 60.
    z = torch.randn(60, d, requires_grad=True)
    y = torch.arange(60) % 4
    x = attack.G(z)
    _, dl = attack.D(x, batch_coupling=False)
    published = realism(dl).mean() + 100 * F.cross_entropy(ctx.access.logits(x), y)
    (g_pub,) = torch.autograd.grad(published, z)
    z2 = z.detach().clone().requires_grad_(True)
    ours = KEDMIAttack.from_preset("smoke", {"loss_scale": 1 / 60})
    ours.G, ours.D = attack.G, attack.D
    (g_ours,) = torch.autograd.grad(ours.loss(ctx, z2, y, 60).sum(), z2)
    assert torch.allclose(g_pub, g_ours, rtol=1e-4, atol=1e-8)


def test_the_gan_stage_is_reused_from_the_run_folder_and_its_queries_credited(tmp_path):
    first = KEDMIAttack.from_preset("smoke")
    ctx = _ctx(tmp_path)
    first.prepare(ctx)
    assert first.phase_info()["resumed"] is False and ctx.access.queries_by_phase["kedmi-gan"] == 2 * 4
    again = KEDMIAttack.from_preset("smoke")
    ctx2 = _ctx(tmp_path)
    again.prepare(ctx2)
    assert again.phase_info()["resumed"] is True
    assert ctx2.access.queries_by_phase["kedmi-gan"] == 2 * 4, "a reused stage still counts its queries"
    assert all(torch.equal(p, q) for p, q in zip(first.G.state_dict().values(), again.G.state_dict().values()))
    other = KEDMIAttack.from_preset("smoke", {"gan_steps": 3})
    other.prepare(_ctx(tmp_path))
    assert other.phase_info()["resumed"] is False, "other GAN settings are another stage"
    [res] = again.attack_classes(ctx2, [1])
    assert res.images.shape == (2, 3, 32, 32) and res.latents.shape == (2, 8)
