"""T-ACGAN (LOKT's conditional GAN): networks, class-free warm-up caching, query accounting, determinism."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mibench.errors import CardError, CheckpointError
from mibench.generators.tacgan import (
    CLASS_KEY,
    TACGANArch,
    TACGANRecipe,
    build_models,
    calibrate_batchnorm,
    class_free_state,
    images_digest,
    load_class_free_state,
    train_tacgan,
    warmup_artifact,
)
from mibench.registry import GENERATORS

ARCH = TACGANArch(resolution=8, z_dim=8, g_width=4, d_width=4)
RECIPE = TACGANRecipe(warmup_steps=3, steps=3, batch_size=8, n_dis=2, log_every=1, calibration_batches=2)


def _real(n: int = 32, res: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, res, res), generator=g, dtype=torch.uint8)


class CountingLabeler:
    """Stands in for the target: records every call, labels by mean red minus mean blue."""

    def __init__(self, num_classes: int):
        self.calls: list[tuple[int, ...]] = []
        self.num_classes = num_classes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        assert not x.requires_grad and x.min() >= 0 and x.max() <= 1
        self.calls.append(tuple(x.shape))
        score = (x[:, 0] - x[:, 2]).mean(dim=(1, 2))
        return ((score + 1) / 2 * self.num_classes).clamp(0, self.num_classes - 1).long()


@pytest.mark.parametrize("res", [32, 64])
def test_generator_and_discriminator_shapes(res):
    G, D = build_models(5, TACGANArch(resolution=res, g_width=4, d_width=4), seed=0)
    z, y = torch.randn(3, 128), torch.tensor([0, 2, 4])
    x = G(z, y)
    assert x.shape == (3, 3, res, res) and x.min() >= -1 and x.max() <= 1
    rf, logits = D(x)
    assert rf.shape == (3,) and logits.shape == (3, 5)
    with pytest.raises(CardError, match="power of two"):
        build_models(5, TACGANArch(resolution=48), seed=0)


def test_class_conditioning_starts_neutral_and_acts_per_class():
    G, _ = build_models(3, ARCH, seed=0)
    G.eval()
    z = torch.randn(4, ARCH.z_dim)
    y = torch.tensor([0, 1, 2, 0])
    # Class offsets start at zero: the conditional generator begins as the unconditional one.
    assert torch.equal(G(z, y), G(z, None))
    with torch.no_grad():
        G.blocks[0].bn1.class_bias[1].fill_(0.5)
    out = G(z, y)
    assert torch.equal(out[0], G(z, None)[0]) and not torch.allclose(out[1], G(z, None)[1])


def test_class_free_state_excludes_class_parameters():
    G, D = build_models(3, ARCH, seed=0)
    for net in (G, D):
        state = class_free_state(net)
        assert state and not any(CLASS_KEY in k for k in state)
        other_g, other_d = build_models(7, ARCH, seed=1)  # another class count still fits
        load_class_free_state(other_g if net is G else other_d, state)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_class_free_state(D, class_free_state(G))


def test_warmup_queries_nothing_and_labelled_phase_queries_steps_x_ndis_x_batch():
    labeler = CountingLabeler(3)
    res = train_tacgan(_real(), labeler, 3, ARCH, RECIPE, seed=0, progress=False)
    assert labeler.calls == [(8, 3, 8, 8)] * (RECIPE.steps * RECIPE.n_dis)
    assert res.summary["queries"] == RECIPE.queries() == 3 * 2 * 8
    assert res.summary["warmup"]["queries"] == 0 and res.summary["warmup"]["cached"] is False
    assert not res.G.training and not res.D.training


def test_warmup_is_cached_and_shared_across_class_counts():
    real = _real()
    a = train_tacgan(real, CountingLabeler(3), 3, ARCH, RECIPE, seed=0, progress=False)
    art = warmup_artifact(images_digest(real), ARCH, RECIPE, 0)
    path = art.stem
    assert art.file(".safetensors").is_file() and art.sidecar.is_file()
    b = train_tacgan(real, CountingLabeler(5), 5, ARCH, RECIPE, seed=0, progress=False)
    assert b.summary["warmup"]["cached"] is True and a.summary["warmup"]["cached"] is False
    # A different seed or recipe is a different warm-up.
    assert warmup_artifact(images_digest(real), ARCH, RECIPE, 1).stem != path
    assert warmup_artifact(images_digest(real), ARCH, replace(RECIPE, warmup_steps=4), 0).stem != path
    # The labelled phase's settings do not change the warm-up key.
    assert warmup_artifact(images_digest(real), ARCH, replace(RECIPE, steps=9, alpha=0.5), 0).stem == path


def test_damaged_warmup_cache_is_one_clear_error_then_retrained_once_deleted():
    from mibench.errors import CheckpointError

    real = _real()
    train_tacgan(real, CountingLabeler(3), 3, ARCH, RECIPE, seed=0, progress=False)
    art = warmup_artifact(images_digest(real), ARCH, RECIPE, 0)
    art.file(".safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="damaged") as err:
        train_tacgan(real, CountingLabeler(3), 3, ARCH, RECIPE, seed=0, progress=False)
    assert str(art.file(".safetensors")) in str(err.value) and "delete" in str(err.value)
    art.discard()
    res = train_tacgan(real, CountingLabeler(3), 3, ARCH, RECIPE, seed=0, progress=False)
    assert res.summary["warmup"]["cached"] is False


@pytest.mark.parametrize("ema", [None, 0.9])
def test_training_is_deterministic_with_and_without_cache(ema):
    recipe = replace(RECIPE, ema_beta=ema)
    real = _real()
    a = train_tacgan(real, CountingLabeler(3), 3, ARCH, recipe, seed=0, progress=False)
    b = train_tacgan(real, CountingLabeler(3), 3, ARCH, recipe, seed=0, progress=False)  # warm-up from cache
    c = train_tacgan(real, CountingLabeler(3), 3, ARCH, recipe, seed=0, progress=False, cache=False)
    for other in (b, c):
        for k, v in a.G.state_dict().items():
            assert torch.equal(v, other.G.state_dict()[k]), k
    d = train_tacgan(real, CountingLabeler(3), 3, ARCH, recipe, seed=1, progress=False)
    assert not torch.equal(a.G.fc.weight, d.G.fc.weight)


def test_only_the_labelled_phase_trains_class_parameters():
    res = train_tacgan(_real(), CountingLabeler(3), 3, ARCH, replace(RECIPE, steps=2), seed=0, progress=False)
    gains = [p for n, p in res.G.named_parameters() if CLASS_KEY in n]
    assert gains and any(p.abs().sum() > 0 for p in gains)
    zero = train_tacgan(_real(), CountingLabeler(3), 3, ARCH, replace(RECIPE, steps=0), seed=0, progress=False)
    assert all(p.abs().sum() == 0 for n, p in zero.G.named_parameters() if CLASS_KEY in n)
    assert zero.summary["queries"] == 0


def test_eval_generator_rows_do_not_interact():
    G, _ = build_models(3, ARCH, seed=0)
    calibrate_batchnorm(G, batches=2, batch_size=8, seed=0)
    assert not G.training
    z, y = torch.randn(6, ARCH.z_dim), torch.tensor([0, 1, 2, 0, 1, 2])
    z2 = z.clone()
    z2[3:] = torch.randn(3, ARCH.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z, y)[:3], G(z2, y)[:3])


def test_target_labels_teach_the_generator_its_classes():
    """On a toy 'target' (red vs blue), target-labelled training makes G(z, y) land in class y far more
    often than chance: the mechanism LOKT relies on."""
    arch = TACGANArch(resolution=8, z_dim=8, g_width=8, d_width=8)
    recipe = TACGANRecipe(warmup_steps=0, steps=60, batch_size=32, n_dis=1, lr_g=2e-3, lr_d=2e-3, log_every=10,
                          calibration_batches=4)
    labeler = CountingLabeler(2)
    res = train_tacgan(_real(64), labeler, 2, arch, recipe, seed=0, progress=False)
    with torch.no_grad():
        y = torch.arange(2).repeat(100)
        x = (res.G(torch.randn(200, 8, generator=torch.Generator().manual_seed(5)), y) + 1) / 2
    agreement = float((labeler(x) == y).float().mean())
    assert agreement > 0.8, agreement


def test_registered_as_a_generator_kind():
    G = GENERATORS.get("tacgan").build({"num_classes": 4, "width": 4}, 16)
    assert G(torch.randn(2, 128), torch.tensor([0, 3])).shape == (2, 3, 16, 16)
    with pytest.raises(CardError, match="num_classes"):
        GENERATORS.get("tacgan").build({}, 16)
    with pytest.raises(CardError, match="unknown tacgan parameter"):
        GENERATORS.get("tacgan").build({"num_classes": 2, "widht": 4}, 16)
