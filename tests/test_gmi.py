"""GMI: its public GAN (networks as published, safe loading of the authors' checkpoints, WGAN-GP
training) and the attack (the published update, loss scale and selection; prior-kind resolution)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mibench.attacks.access import WhiteBox
from mibench.attacks.base import AttackContext
from mibench.attacks.gmi import GMIAttack, NesterovClamped
from mibench.errors import CheckpointError, MIBenchError
from mibench.generators.gmi_gan import GMICritic, GMIGenerator, GMIPrior, build_prior
from mibench.generators.wgan_gp import WGANGPRecipe, gradient_penalty, train_wgan_gp
from mibench.registry import GENERATORS
from mibench.run.spec import RunSpec, resolve

TINY = {"z_dim": 8, "g_dim": 4, "d_dim": 4}


def tiny_images(n: int = 16, res: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, res, res), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


# --- networks ----------------------------------------------------------------------------------

def test_64px_networks_have_the_published_layers_and_parameter_names():
    G, D = GMIGenerator(100, 64, 64), GMICritic(64, 64)
    deconvs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in deconvs] == [(512, 256), (256, 128), (128, 64), (64, 3)]
    assert G.l1[0].out_features == 512 * 16 and G.l1[0].bias is None
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in convs] == [
        (3, 64, (5, 5)), (64, 128, (5, 5)), (128, 256, (5, 5)), (256, 512, (5, 5)), (512, 1, (4, 4))]
    names = set(G.state_dict()) | set(D.state_dict())
    assert {"l1.0.weight", "l1.1.running_mean", "l2_5.0.0.weight", "l2_5.3.weight", "l2_5.3.bias",
            "layer1.0.weight", "layer2.0.1.weight", "layer2.3.weight"} <= names  # (critic: ls.0, ls.2.1, ls.5)
    z = torch.randn(2, 100)
    x = G.eval()(z)
    assert x.shape == (2, 3, 64, 64) and x.min() >= 0 and x.max() <= 1
    assert D(x).shape == (2,)


def test_prior_speaks_the_minus_one_to_one_convention():
    prior = build_prior(TINY, 16, seed=0).eval()
    z = torch.randn(3, 8)
    x = prior(z)
    assert x.shape == (3, 3, 16, 16) and torch.allclose(x, prior.G(z) * 2 - 1)
    assert torch.allclose(prior.critic(x), prior.D(prior.G(z)), atol=1e-6)
    with pytest.raises(MIBenchError, match="power of two"):
        build_prior(TINY, 24)
    with pytest.raises(MIBenchError, match="unknown GMI GAN parameter"):
        build_prior({"width": 3}, 16)


def test_safetensors_round_trip_and_the_authors_checkpoint_pair(tmp_path):
    kind = GENERATORS.get("gmi")
    prior = build_prior(TINY, 16, seed=1).eval()
    z = torch.randn(4, 8)
    kind.save(prior, tmp_path / "p.safetensors")
    again = kind.load(tmp_path / "p.safetensors", resolution=16)
    assert torch.equal(again(z), prior(z))
    with pytest.raises(CheckpointError, match="16 px but the card says 32"):
        kind.load(tmp_path / "p.safetensors", resolution=32)
    # The authors' format: torch.save({'state_dict': DataParallel state}) for G and D, side by side.
    torch.save({"state_dict": {f"module.{k}": v for k, v in prior.G.state_dict().items()}}, tmp_path / "celeba_G.tar")
    with pytest.raises(CheckpointError, match="celeba_D.tar is missing"):
        kind.load(tmp_path / "celeba_G.tar", resolution=16, params=TINY)
    def official(key):  # DGWGAN keeps its layers in one `ls` Sequential
        part, index, rest = key.split(".", 2)
        return f"module.ls.{int(index) + (2 if part == 'layer2' else 0)}.{rest}"

    torch.save({"state_dict": {official(k): v for k, v in prior.D.state_dict().items()}}, tmp_path / "celeba_D.tar")
    official = kind.load(tmp_path / "celeba_G.tar", resolution=16, params=TINY)
    assert torch.equal(official(z), prior(z)) and torch.equal(official.critic(prior(z)), prior.critic(prior(z)))
    with pytest.raises(CheckpointError, match="do not fit"):
        kind.load(tmp_path / "celeba_G.tar", resolution=16, params={**TINY, "g_dim": 8})
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        kind.load(tmp_path / "celeba_G.tar", resolution=16, params={**TINY, "critic_sha256": "0" * 64})


def test_a_checkpoint_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state_dict": Evil()}, tmp_path / "x_G.tar")
    torch.save({"state_dict": {}}, tmp_path / "x_D.tar")
    with pytest.raises(CheckpointError, match="safely"):
        GENERATORS.get("gmi").load(tmp_path / "x_G.tar", resolution=16, params=TINY)


# --- WGAN-GP training --------------------------------------------------------------------------

def test_gradient_penalty_of_a_linear_critic():
    for norm, expected in ((1.0, 0.0), (2.0, 1.0), (3.0, 4.0)):
        w = torch.randn(3 * 4 * 4)
        w = w / w.norm() * norm

        def critic(x, w=w):
            return x.flatten(1) @ w

        real, generated = torch.rand(5, 3, 4, 4), torch.rand(5, 3, 4, 4)
        gp = gradient_penalty(critic, real, generated, torch.rand(5))
        assert gp.item() == pytest.approx(expected, abs=1e-5)


def _train(tmp_path=None, steps=6, **kw):
    prior = build_prior(TINY, 8, seed=0)
    recipe = WGANGPRecipe(steps=steps, batch_size=4, n_critic=3, log_every=1, **kw)
    return train_wgan_gp(tiny_images(), prior, recipe, seed=0, progress=False,
                         checkpoint=None if tmp_path is None else tmp_path / "resume.pt", checkpoint_every=2)


def test_training_is_deterministic_and_updates_g_every_n_critic_steps():
    a, b = _train(), _train()
    assert all(torch.equal(x, y) for x, y in zip(a.prior.state_dict().values(), b.prior.state_dict().values()))
    assert a.steps == 6 and [r["step"] for r in a.log] == list(range(1, 7))
    assert all(torch.isfinite(torch.tensor([r["wasserstein"], r["gp"]])).all() for r in a.log)
    # loss_g is logged only on generator steps (every n_critic = 3 critic steps)
    assert [("loss_g" in r) for r in a.log] == [False, False, True, False, False, True]
    start = build_prior(TINY, 8, seed=0)
    two = _train(steps=2)
    assert all(torch.equal(p, q) for p, q in zip(start.G.parameters(), two.prior.G.parameters())), \
        "no generator update before the n_critic-th critic step"
    assert not all(torch.equal(p, q) for p, q in zip(start.D.parameters(), two.prior.D.parameters()))


def test_interrupted_training_resumes_to_the_same_bytes(tmp_path):
    whole = _train()
    _train(tmp_path, max_minutes=0.0)  # stops at once: nothing written
    assert not (tmp_path / "resume.pt").exists()
    partial = _train(tmp_path, steps=6)  # writes resume points at steps 2 and 4
    assert (tmp_path / "resume.pt").exists()
    resumed = _train(tmp_path, steps=6)  # continues from step 4
    for x, y, z in zip(whole.prior.state_dict().values(), partial.prior.state_dict().values(),
                       resumed.prior.state_dict().values()):
        assert torch.equal(x, y) and torch.equal(x, z)


def test_epochs_give_the_step_count_and_bad_recipes_fail():
    assert WGANGPRecipe(epochs=3, batch_size=4).total_steps(18) == 12
    assert WGANGPRecipe(steps=7, epochs=3).total_steps(18) == 7
    with pytest.raises(ValueError, match="n_critic"):
        WGANGPRecipe(steps=1, n_critic=0).validate()
    with pytest.raises(MIBenchError, match="fewer than one batch"):
        train_wgan_gp(tiny_images(2), build_prior(TINY, 8), WGANGPRecipe(steps=1, batch_size=4), progress=False)


# --- the attack --------------------------------------------------------------------------------

def test_update_is_the_published_nesterov_form_with_clamp():
    z = torch.tensor([0.5, -0.2], requires_grad=True)
    opt = NesterovClamped([z], lr=0.1, momentum=0.9, clip=1.0)
    ref, v = torch.tensor([0.5, -0.2]), torch.zeros(2)
    for _ in range(4):
        opt.zero_grad()
        (-(3 * z).sum()).backward()  # gradient −3 everywhere: z grows until the clamp
        opt.step()
        g = torch.full((2,), -3.0)
        v_prev, v = v, 0.9 * v - 0.1 * g
        ref = (ref - 0.9 * v_prev + 1.9 * v).clamp(-1, 1)
        assert torch.allclose(z.detach(), ref)
    assert z.max().item() == 1.0


def _ctx(prior, classes=4):
    target = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, classes)).eval()
    torch.manual_seed(0)
    access = WhiteBox(target, classes, 8, "cpu")
    return AttackContext(access=access, prior=prior, device=torch.device("cpu"), seed=0, output_size=8,
                         progress=False)


def test_summed_scaled_loss_gives_the_published_per_latent_gradient():
    """The published loss averages over its batch of 100 identities; ours, summed and scaled by
    1/100, moves every latent by the same gradient whatever the batch."""
    prior = build_prior(TINY, 8, seed=0).eval().requires_grad_(False)
    ctx = _ctx(prior)
    attack = GMIAttack.from_preset("celeba")
    z = torch.randn(100, 8, requires_grad=True)
    y = torch.arange(100) % 4
    published = -prior.critic(prior(z)).mean() + 100 * F.cross_entropy(
        ctx.access.logits((prior(z) + 1) / 2), y)
    (g_pub,) = torch.autograd.grad(published, z)
    z2 = z.detach().clone().requires_grad_(True)
    (g_ours,) = torch.autograd.grad(attack.loss(ctx, z2, y, 100).sum(), z2)
    assert torch.allclose(g_pub, g_ours, rtol=1e-4, atol=1e-7)


def test_final_selection_keeps_the_restart_with_the_highest_target_logit():
    prior = build_prior(TINY, 8, seed=0).eval().requires_grad_(False)
    ctx = _ctx(prior)
    attack = GMIAttack.from_preset("smoke", {"num_candidates": 3, "num_final": 1})
    [res] = attack.attack_classes(ctx, [2])
    z = res.latents
    logits = ctx.access.logits((prior(z) + 1) / 2)
    assert res.images.shape == (1, 3, 8, 8)
    out = attack.attack_classes(ctx, [2])[0]
    assert torch.equal(out.latents, z)
    full = GMIAttack.from_preset("smoke", {"num_candidates": 3, "num_final": 3}).attack_classes(ctx, [2])[0]
    assert torch.equal(full.latents[0], z[0]) and full.scores[0] == full.scores.max()
    assert logits[0, 2].item() == pytest.approx(full.scores.max().item(), rel=1e-5)


def test_the_attack_gets_a_prior_of_its_kind():
    gmi = resolve(RunSpec(target="synthfaces32-resnet", attack="gmi", classes=[0]))
    assert gmi.prior.kind == "gmi" and gmi.preset == "synthfaces"
    ppa = resolve(RunSpec(target="synthfaces32-resnet", attack="ppa", classes=[0]))
    assert ppa.prior.name == "synthfaces32-stylegan2-v2"
    with pytest.raises(MIBenchError, match="runs on gmi priors") as err:
        resolve(RunSpec(target="synthfaces32-resnet", attack="gmi", prior="synthfaces32-stylegan2", classes=[0]))
    assert "omit --prior" in str(err.value.fix)
    with pytest.raises(MIBenchError, match="runs on stylegan2 priors"):
        resolve(RunSpec(target="synthfaces32-resnet", attack="ppa", prior="synthfaces32-gmi", classes=[0]))


def test_prior_is_a_gmi_prior():
    assert isinstance(GENERATORS.get("gmi").build(TINY, 8), GMIPrior)
