"""PLG-MI: top-n pseudo-labels, the projection discriminator and hinge losses, GAN training
determinism, batching invariance of the attack, stage resume and query accounting by phase."""

from __future__ import annotations

import torch
from torch import nn

from mibench.attacks.access import WhiteBox
from mibench.attacks.base import AttackContext
from mibench.classifiers.architectures import build_classifier
from mibench.data.base import TensorImageDataset
from mibench.generators.plgmi_gan import (
    PLGMIGANRecipe,
    ProjectionDiscriminator,
    d_loss,
    g_loss,
    top_n_pseudo_labels,
    train_plgmi_gan,
)
from mibench.registry import ATTACKS

K, RES, N_PUBLIC = 4, 16, 40
TINY = {"top_n": 3, "label_batch_size": 16, "gan_resolution": RES, "gan_z_dim": 8, "gan_g_width": 4,
        "gan_d_width": 4, "gan_steps": 3, "gan_batch_size": 4, "gan_n_dis": 2, "num_candidates": 3, "num_final": 2,
        "steps": 2, "aug_views": 2, "batch_size": 4, "selection_batch_size": 5}


def _target(seed: int = 0) -> nn.Module:
    return build_classifier("compact_resnet", K, RES, {"width": 4, "depths": [1]}, seed=seed).eval()


def _public() -> TensorImageDataset:
    images = torch.randint(0, 256, (N_PUBLIC, 3, RES, RES), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    return TensorImageDataset(images, torch.full((N_PUBLIC,), -1), [], name="toy", split="public")


def _ctx(model: nn.Module, run_dir=None) -> AttackContext:
    return AttackContext(access=WhiteBox(model, K, RES, "cpu"), prior=None, device=torch.device("cpu"), seed=0,
                         output_size=RES, progress=False, store_dir=run_dir, public_data=_public)


def _attack(**over):
    return ATTACKS.get("plgmi").from_preset("smoke", {**TINY, **over})


def test_declares_white_box_access_public_data_and_the_published_defaults():
    cls = ATTACKS.get("plgmi")
    assert (cls.access_level, cls.needs_prior, cls.needs_public_data, cls.in_default_suite) == (
        "white-box", False, True, False)
    cfg = cls.from_preset("celeba").config
    assert (cfg.top_n, cfg.gan_alpha, cfg.gan_steps, cfg.gan_n_dis, cfg.gan_batch_size) == (30, 0.2, 30000, 5, 64)
    assert (cfg.gan_lr, tuple(cfg.gan_betas), cfg.gan_loss, cfg.gan_z_dim, cfg.gan_resolution) == (
        2e-4, (0.0, 0.9), "hinge", 128, 64)
    assert (cfg.gan_aug_jitter_p, cfg.gan_aug_rotation, tuple(cfg.gan_aug_scale)) == (0.5, 5.0, (0.8, 1.0))
    assert (cfg.lr, cfg.steps, cfg.aug_views, cfg.loss, cfg.num_candidates, cfg.num_final) == (
        0.1, 600, 2, "max_margin", 5, 5)
    # The embedded preset scales only the budget.
    emb = cls.from_preset("synthfaces").config
    for name in ("top_n", "gan_alpha", "gan_loss", "gan_inv_loss", "gan_image_range", "gan_batch_size",
                 "gan_aug_jitter_p", "loss", "aug_views", "lr", "num_candidates", "num_final"):
        assert getattr(emb, name) == getattr(cfg, name), name


def test_top_n_keeps_each_class_its_most_confident_images_not_the_argmax_assignment():
    probs = torch.tensor([[0.6, 0.3, 0.1],
                          [0.5, 0.4, 0.1],
                          [0.1, 0.2, 0.7],
                          [0.2, 0.2, 0.6],
                          [0.45, 0.45, 0.1]])
    sel = top_n_pseudo_labels(probs, 2)
    assert sel.tolist() == [[0, 1],  # class 0: p 0.6, 0.5
                            [4, 1],  # class 1: images 4 (0.45) and 1 (0.4) — neither has argmax 1
                            [2, 3]]
    # Ties keep the lower image index; n above the pool size keeps every image, most confident first.
    assert top_n_pseudo_labels(torch.tensor([[0.5], [0.5], [0.7]]), 3).tolist() == [[2, 0, 1]]
    assert top_n_pseudo_labels(probs, 10).shape == (3, 5)


def test_projection_discriminator_shape_and_its_label_term():
    D = ProjectionDiscriminator(1000, 64, 64)
    assert [b.conv2.out_channels for b in D.blocks] == [64, 128, 256, 512, 1024]  # published widths, 64 → 2 px
    assert D.embed.weight.shape == (1000, 1024)
    small = ProjectionDiscriminator(5, 16, 4).eval()  # eval: the spectral-norm estimate stays fixed
    x = torch.rand(3, 3, 16, 16)
    out = small(x, torch.tensor([0, 1, 2]))
    assert out.shape == (3,)
    h = small.features(x)
    assert h.shape == (3, 16) and torch.allclose(out, small.head(h).squeeze(1) + (small.embed.weight[[0, 1, 2]] * h).sum(1),
                                                 atol=1e-5)
    other = small(x, torch.tensor([3, 4, 0]))
    assert not torch.allclose(out, other), "the projection term depends on the label"
    assert torch.allclose(out - other, ((small.embed.weight[[0, 1, 2]] - small.embed.weight[[3, 4, 0]]) * h).sum(1),
                          atol=1e-5), "… and only it"


def test_hinge_losses_on_known_values():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert float(d_loss(real, fake)) == 0.25 + 0.5  # mean relu(1 − real) + mean relu(1 + fake)
    assert float(d_loss(torch.full((3,), 1.0), torch.full((3,), -1.0))) == 0.0  # margins met: no loss
    assert float(g_loss(torch.tensor([1.0, 3.0]))) == -2.0


def _tiny_training(seed: int = 0):
    images = torch.randint(0, 256, (12, 3, RES, RES), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    labels = torch.arange(3).repeat_interleave(4)
    net = _target()
    calls = []

    def guide(x, y, step):
        calls.append((len(x), step))
        logits = net(x)
        return -logits.gather(1, y.view(-1, 1)).squeeze(1), logits.argmax(1)

    recipe = PLGMIGANRecipe(resolution=RES, z_dim=8, g_width=4, d_width=4, steps=3, batch_size=4, n_dis=2,
                            log_every=2)
    return train_plgmi_gan(images, labels, K, recipe, guide, seed=seed, progress=False), calls


def test_gan_training_is_deterministic_and_calls_the_guide_once_per_generator_step():
    (a, calls), (b, _), (c, _) = _tiny_training(), _tiny_training(), _tiny_training(seed=1)
    for name in ("G", "D"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), f"{name}: same seed, same bytes"
    assert not all(torch.equal(v, c.G.state_dict()[k]) for k, v in a.G.state_dict().items())
    assert calls == [(4, 0), (4, 1), (4, 2)] and a.summary["queries"] == 3 * 4
    assert [r["step"] for r in a.summary["history"]] == [2, 3] and not a.G.training


def test_queries_are_counted_by_phase():
    attack = _attack()
    ctx = _ctx(_target())
    ctx.access.set_phase("prepare")
    attack.prepare(ctx)
    assert ctx.access.queries_by_phase == {"pseudo-labels": N_PUBLIC, "plgmi-gan": 3 * 4}  # steps × batch
    ctx.access.set_phase("attack")
    attack.attack_classes(ctx, [0, 1])
    # 6 candidates × (2 steps × 2 views + 1 final view); batch padding is not counted.
    assert ctx.access.queries_by_phase["attack"] == 6 * (2 * 2 + 1)
    info = attack.phase_info()
    assert info["queries_by_phase"] == {"pseudo-labels": N_PUBLIC, "plgmi-gan": 12}
    assert info["pseudo_labels"]["per_class"] == 3 and info["gan"]["steps"] == 3


def test_the_gan_is_trained_on_each_class_top_n_public_images(tmp_path):
    attack = _attack()
    ctx = _ctx(_target(), run_dir=tmp_path)
    attack.prepare(ctx)
    from safetensors.torch import load_file

    [f] = list(tmp_path.glob("pseudo-labels-*.safetensors"))
    stored = load_file(str(f))["selected"]
    public = _public().load_tensors()[0]
    probs = attack.score_public(_ctx(_target()), public)
    assert torch.equal(stored, top_n_pseudo_labels(probs, 3)) and stored.shape == (K, 3)


def test_prepare_resumes_from_the_run_folder_without_querying(tmp_path):
    first = _attack()
    ctx = _ctx(_target(), run_dir=tmp_path)
    first.prepare(ctx)
    assert first.phase_info()["resumed"] == {}

    class NoQueries(nn.Module):
        def forward(self, x):
            raise AssertionError("a resumed prepare must not query the target")

    again = _attack(steps=5)  # attack-phase settings do not invalidate the stage
    ctx2 = _ctx(NoQueries(), run_dir=tmp_path)
    again.prepare(ctx2)
    assert ctx2.access.queries_by_phase == ctx.access.queries_by_phase == {"pseudo-labels": N_PUBLIC, "plgmi-gan": 12}
    assert again.phase_info()["resumed"] == {"pseudo_labels": True, "gan": True}
    for k, v in first.G.state_dict().items():
        assert torch.equal(v, again.G.state_dict()[k]), k
    # Other GAN settings: the GAN is trained again, the pseudo-labels are reused (and credited).
    other = _attack(gan_steps=2)
    ctx3 = _ctx(_target(), run_dir=tmp_path)
    other.prepare(ctx3)
    assert other.phase_info()["resumed"] == {"pseudo_labels": True}
    assert ctx3.access.queries_by_phase == {"pseudo-labels": N_PUBLIC, "plgmi-gan": 8}
