"""StyleGAN2 training loop and discriminator: finite losses, EMA, determinism, budget, augmentation."""

from __future__ import annotations

import pytest
import torch

from mibench.errors import CardError, DataError
from mibench.generators.discriminator import Discriminator, MinibatchStdLayer
from mibench.generators.train import (
    GANAugment,
    StyleGAN2TrainRecipe,
    augment,
    train_stylegan2,
)
from mibench.typed import from_dict

TINY_G = dict(z_dim=16, w_dim=16, mapping_kwargs={"num_layers": 2},
              synthesis_kwargs={"channel_base": 128, "channel_max": 16})


def tiny_images(n: int = 16, res: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, res, res), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def tiny_recipe(**kw) -> StyleGAN2TrainRecipe:
    base = dict(steps=3, batch_size=4, log_every=1, r1_interval=2)
    return StyleGAN2TrainRecipe(**{**base, **kw})


def run(seed: int = 0, **kw):
    return train_stylegan2(tiny_images(), tiny_recipe(**kw), seed=seed, progress=False, generator_params=TINY_G)


def test_few_steps_run_with_finite_losses_and_a_distinct_ema():
    result = run()
    assert result.steps == 3 and result.stopped_by == "steps"
    assert [r["step"] for r in result.log] == [1, 2, 3]
    for record in result.log:
        for key in ("loss_g", "loss_d", "d_real", "d_fake"):
            assert torch.isfinite(torch.tensor(record[key])), (key, record)
    assert "r1" in result.log[0]  # lazy R1 runs on step 0, 2, ...
    G, G_ema = result.G, result.G_ema
    assert not G_ema.training
    ema_p, raw_p = dict(G_ema.named_parameters()), dict(G.named_parameters())
    assert any(not torch.equal(ema_p[k], raw_p[k]) for k in ema_p)
    img = G_ema(torch.randn(2, 16))
    assert img.shape == (2, 3, 8, 8) and torch.isfinite(img).all()


def test_same_seed_gives_identical_g_ema_and_other_seed_differs():
    a, b, c = run(seed=5), run(seed=5), run(seed=6)
    sa, sb, sc = a.G_ema.state_dict(), b.G_ema.state_dict(), c.G_ema.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert [r["loss_g"] for r in a.log] == [r["loss_g"] for r in b.log]


def test_interrupted_training_resumes_from_its_checkpoint_to_the_same_bytes(tmp_path):
    ckpt = tmp_path / "resume.pt"
    whole = run(steps=6, seed=3)
    part = train_stylegan2(tiny_images(), tiny_recipe(steps=4), seed=3, progress=False, generator_params=TINY_G,
                           checkpoint=ckpt, checkpoint_every=2)
    assert part.steps == 4 and ckpt.is_file()  # written at step 2 (not at the final step)
    assert torch.load(ckpt, weights_only=True)["step"] == 2
    resumed = train_stylegan2(tiny_images(), tiny_recipe(steps=6), seed=3, progress=False,
                              generator_params=TINY_G, checkpoint=ckpt, checkpoint_every=2)
    sw, sr = whole.G_ema.state_dict(), resumed.G_ema.state_dict()
    assert all(torch.equal(sw[k], sr[k]) for k in sw)
    assert [r["loss_g"] for r in resumed.log] == [r["loss_g"] for r in whole.log]
    with pytest.raises(DataError, match="another seed"):
        train_stylegan2(tiny_images(), tiny_recipe(steps=6), seed=4, progress=False, generator_params=TINY_G,
                        checkpoint=ckpt)


def test_time_budget_and_callback():
    assert run(max_minutes=0.0).stopped_by == "time"
    calls = []

    def callback(step, G_ema):
        calls.append(step)
        assert not G_ema.training
        return {"probe": float(step)}

    result = train_stylegan2(tiny_images(), tiny_recipe(steps=4, callback_every=2, log_every=100), seed=0,
                             progress=False, generator_params=TINY_G, callback=callback)
    assert calls == [2, 4]
    assert [r.get("probe") for r in result.log if "probe" in r] == [2.0, 4.0]


def test_bad_inputs_are_rejected():
    with pytest.raises(DataError, match="uint8"):
        train_stylegan2(tiny_images().float(), tiny_recipe(), progress=False, generator_params=TINY_G)
    with pytest.raises(DataError, match="fewer than one batch"):
        train_stylegan2(tiny_images(n=2), tiny_recipe(), progress=False, generator_params=TINY_G)
    with pytest.raises(ValueError, match="batch_size"):
        train_stylegan2(tiny_images(), tiny_recipe(batch_size=1), progress=False, generator_params=TINY_G)


def test_recipe_loads_from_a_card_dict():
    recipe = from_dict(StyleGAN2TrainRecipe, {"steps": 10, "betas": [0.0, 0.9], "augment": {"p": 0.3}})
    assert recipe.betas == (0.0, 0.9) and recipe.augment.p == 0.3 and recipe.lr_g == 0.0025
    with pytest.raises(CardError, match="stepz"):
        from_dict(StyleGAN2TrainRecipe, {"stepz": 10})


def test_augmentation_is_differentiable_and_seeded():
    x = torch.rand(6, 3, 8, 8, requires_grad=True) * 2 - 1
    spec = GANAugment(p=1.0)
    a = augment(x, spec, torch.Generator().manual_seed(0))
    b = augment(x, spec, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    (g,) = torch.autograd.grad(a.sum(), x)
    assert g.abs().sum() > 0
    assert augment(x, GANAugment(enabled=False), torch.Generator()) is x


def test_translation_moves_pixels_by_whole_steps():
    x = torch.arange(64.0).reshape(1, 1, 8, 8).repeat(1, 3, 1, 1)
    spec = GANAugment(p=1.0, flip=False, brightness=0.0, contrast=0.0, saturation=0.0, translate=0.25)
    out = augment(x, spec, torch.Generator().manual_seed(3))
    # every output pixel is a copy of some input pixel (integer shift with reflection padding)
    assert set(out.unique().tolist()) <= set(x.unique().tolist())


def test_discriminator_shapes_names_and_gradients():
    D = Discriminator(0, 16, 3, channel_base=256, channel_max=32)
    names = dict(D.named_parameters())
    assert tuple(names["b16.fromrgb.weight"].shape) == (16, 3, 1, 1)
    assert tuple(names["b16.skip.weight"].shape) == (32, 16, 1, 1)
    assert tuple(names["b4.conv.weight"].shape) == (32, 33, 3, 3)  # + 1 minibatch-stddev channel
    assert tuple(names["b4.fc.weight"].shape) == (32, 32 * 16)
    assert tuple(names["b4.out.weight"].shape) == (1, 32)
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    logits = D(x)
    assert logits.shape == (4, 1)
    (g,) = torch.autograd.grad(logits.sum(), x)
    assert g.abs().sum() > 0
    Dc = Discriminator(5, 16, 3, channel_base=256, channel_max=32)
    assert Dc(torch.randn(4, 3, 16, 16), torch.eye(5)[:4]).shape == (4, 1)


def test_minibatch_stddev_handles_uneven_batches():
    layer = MinibatchStdLayer(group_size=4)
    x = torch.randn(6, 8, 4, 4)  # 6 is not divisible by 4: the largest divisor (3) is used
    out = layer(x)
    assert out.shape == (6, 9, 4, 4) and torch.isfinite(out).all()
    same = torch.ones(4, 8, 4, 4)
    assert torch.allclose(layer(same)[:, -1], torch.full((4, 4, 4), 1e-4), atol=1e-6)  # sqrt(eps)


def test_transfer_starts_from_the_source_weights_and_grows_a_block():
    """`init_state` starts G (and so G_ema) from a trained generator's tensors; a 16 px generator
    started from an 8 px one keeps the source's blocks and starts only its 16 px block random.
    With `d_warmup_steps` the generator is not updated while the fresh discriminator learns."""
    from mibench.generators.stylegan2 import Generator, generator_kwargs

    source_G = run().G_ema
    source = source_G.state_dict()
    # Trained tensors; the buffer w_avg (the mean w that truncation uses) tracks every mapping call.
    weights = {k: v for k, v in source.items() if k != "mapping.w_avg"}
    seen = {}

    def grab(step, G):
        seen[step] = {k: v.clone() for k, v in G.state_dict().items()}

    same = train_stylegan2(tiny_images(), tiny_recipe(steps=3, d_warmup_steps=2, callback_every=1), progress=False,
                           generator_params=TINY_G, init_state=source, callback=grab)
    assert same.new_keys == []
    assert all(torch.equal(seen[2][k], v) for k, v in weights.items())  # untouched during the warm-up
    assert any(not torch.equal(seen[3][k], v) for k, v in weights.items())  # trained after it
    assert "loss_g" not in same.log[0] and "loss_g" in same.log[2] and "loss_d" in same.log[0]

    grown = train_stylegan2(tiny_images(res=16), tiny_recipe(steps=2, d_warmup_steps=1, callback_every=1),
                            progress=False, generator_params=TINY_G, init_state=source, callback=grab)
    assert grown.new_keys and all(k.startswith("synthesis.b16.") for k in grown.new_keys)
    assert all(torch.equal(seen[1][k], v) for k, v in weights.items())
    fresh = Generator(**generator_kwargs(dict(TINY_G), 16))
    assert set(grown.new_keys) == set(fresh.state_dict()) - set(source)


def test_freeze_g_trains_only_the_grown_block_and_names_a_bad_prefix():
    """`freeze_g` keeps the named generator parameters exactly as transferred (the FreezeG transfer:
    only the grown 16 px block trains) while the others train; an unknown prefix, or one that
    freezes everything, is a card error naming `train.freeze_g`."""
    from mibench.generators.stylegan2_kind import StyleGAN2Kind

    source = run().G_ema.state_dict()
    old = ["mapping.", "synthesis.b4.", "synthesis.b8."]
    grown = train_stylegan2(tiny_images(res=16), tiny_recipe(steps=3, d_warmup_steps=1, freeze_g=old),
                            progress=False, generator_params=TINY_G, init_state=source)
    for G in (grown.G, grown.G_ema):
        params = dict(G.named_parameters())
        assert all(torch.equal(params[k], source[k]) for k in params if k.startswith(tuple(old)))
    start = train_stylegan2(tiny_images(res=16), tiny_recipe(steps=1), progress=False, generator_params=TINY_G,
                            init_state=source)  # the same init, nothing trained past the first D step
    new = dict(grown.G.named_parameters())
    assert any(not torch.equal(new[k], start.G.state_dict()[k]) for k in new if k.startswith("synthesis.b16."))

    kind = StyleGAN2Kind()
    for freeze, says in ((["synthesis.b9."], "names no generator parameter"), (["synthesis.", "mapping."], "every")):
        with pytest.raises(CardError, match=says) as e:
            kind.train(tiny_images(res=16), {"steps": 1, "batch_size": 4, "freeze_g": freeze}, params=TINY_G,
                       resolution=16, progress=False, card_path="generators/g.yaml")
        assert e.value.field == "train.freeze_g" and "g.yaml" in str(e.value)


def test_transfer_refuses_a_source_of_another_architecture():
    wide = dict(TINY_G, synthesis_kwargs={"channel_base": 256, "channel_max": 32})
    source = train_stylegan2(tiny_images(), tiny_recipe(steps=1), progress=False, generator_params=wide).G_ema
    def start_from(state):
        return train_stylegan2(tiny_images(), tiny_recipe(), progress=False, generator_params=TINY_G,
                               init_state=state)

    with pytest.raises(DataError, match="do not fit this generator"):
        start_from(source.state_dict())
    big = train_stylegan2(tiny_images(res=16), tiny_recipe(steps=1), progress=False, generator_params=TINY_G).G_ema
    with pytest.raises(DataError, match="do not fit"):  # a higher-resolution source cannot shrink
        start_from(big.state_dict())
    with pytest.raises(ValueError, match="d_warmup_steps"):
        tiny_recipe(steps=3, d_warmup_steps=3).validate()
