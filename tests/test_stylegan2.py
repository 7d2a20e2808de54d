"""mibench's StyleGAN2 generator: official state-dict layout, mapping/truncation, noise, block API, ops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mibench.errors import CardError
from mibench.generators.stylegan2 import (
    BlockState,
    Generator,
    conv2d_resample,
    downsample2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)
from mibench.registry import GENERATORS

TINY = dict(z_dim=16, c_dim=0, w_dim=24, img_resolution=16, img_channels=3,
            mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 256, "channel_max": 32})


def make_g(seed: int = 0, **overrides) -> Generator:
    """A tiny generator with non-trivial noise strengths and w_avg (so every tensor matters)."""
    kwargs = {**TINY, **overrides}
    torch.manual_seed(seed)
    G = Generator(**kwargs)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
        G.mapping.w_avg.normal_()
    return G.eval()


def _layer_keys(prefix: str, cin: int, cout: int, w_dim: int, res: int, k: int = 3) -> dict[str, tuple]:
    return {f"{prefix}.weight": (cout, cin, k, k), f"{prefix}.noise_strength": (), f"{prefix}.bias": (cout,),
            f"{prefix}.resample_filter": (4, 4), f"{prefix}.noise_const": (res, res),
            f"{prefix}.affine.weight": (cin, w_dim), f"{prefix}.affine.bias": (cin,)}


def _torgb_keys(prefix: str, cin: int, w_dim: int) -> dict[str, tuple]:
    return {f"{prefix}.weight": (3, cin, 1, 1), f"{prefix}.bias": (3,), f"{prefix}.affine.weight": (cin, w_dim),
            f"{prefix}.affine.bias": (cin,)}


def test_state_dict_matches_official_layout():
    # channels = min(channel_base // res, channel_max): res 4 → 32, 8 → 32, 16 → 16 (official formula)
    G = Generator(**TINY)
    w = 24
    expected = {"mapping.fc0.weight": (24, 16), "mapping.fc0.bias": (24,), "mapping.fc1.weight": (24, 24),
                "mapping.fc1.bias": (24,), "mapping.w_avg": (24,),
                "synthesis.b4.const": (32, 4, 4), "synthesis.b4.resample_filter": (4, 4),
                "synthesis.b8.resample_filter": (4, 4), "synthesis.b16.resample_filter": (4, 4)}
    expected |= _layer_keys("synthesis.b4.conv1", 32, 32, w, 4) | _torgb_keys("synthesis.b4.torgb", 32, w)
    expected |= _layer_keys("synthesis.b8.conv0", 32, 32, w, 8) | _layer_keys("synthesis.b8.conv1", 32, 32, w, 8)
    expected |= _torgb_keys("synthesis.b8.torgb", 32, w)
    expected |= _layer_keys("synthesis.b16.conv0", 32, 16, w, 16)
    expected |= _layer_keys("synthesis.b16.conv1", 16, 16, w, 16) | _torgb_keys("synthesis.b16.torgb", 16, w)
    got = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    assert got == expected
    assert G.num_ws == 6 and G.block_resolutions == [4, 8, 16] and G.num_blocks == 3
    assert torch.allclose(G.synthesis.b8.resample_filter,
                          torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)


def test_conditional_mapping_layout_and_c_required():
    G = Generator(**{**TINY, "c_dim": 5})
    sd = G.state_dict()
    assert tuple(sd["mapping.embed.weight"].shape) == (24, 5)  # embed_features defaults to w_dim
    assert tuple(sd["mapping.fc0.weight"].shape) == (24, 16 + 24)
    with pytest.raises(ValueError, match="class-conditional"):
        G.mapping(torch.randn(2, 16))
    assert G.mapping(torch.randn(2, 16), torch.eye(5)[:2]).shape == (2, 6, 24)


def test_no_noise_and_resnet_layouts():
    sd = Generator(**{**TINY, "synthesis_kwargs": {**TINY["synthesis_kwargs"], "use_noise": False}}).state_dict()
    assert not any("noise" in k for k in sd)
    sd = Generator(**{**TINY, "synthesis_kwargs": {**TINY["synthesis_kwargs"], "architecture": "resnet"}}
                   ).state_dict()
    assert tuple(sd["synthesis.b8.skip.weight"].shape) == (32, 32, 1, 1)
    assert "synthesis.b8.torgb.weight" not in sd and "synthesis.b16.torgb.weight" in sd


def test_mapping_truncation_and_normalisation():
    G = make_g()
    z = torch.randn(3, 16)
    ws = G.mapping(z)
    assert ws.shape == (3, G.num_ws, 24)
    assert torch.allclose(G.mapping(3.0 * z), ws, atol=1e-5)  # z is normalised to unit second moment
    w_avg = G.mapping.w_avg
    trunc = G.mapping(z, psi=0.5, cutoff=2)
    assert torch.allclose(trunc[:, :2], w_avg + 0.5 * (ws[:, :2] - w_avg), atol=1e-6)
    assert torch.equal(trunc[:, 2:], ws[:, 2:])
    assert torch.allclose(G.mapping(z, psi=0.0), w_avg.expand_as(ws), atol=1e-6)
    # official keyword spellings are accepted too
    assert torch.equal(G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2), trunc)


def test_w_avg_tracks_in_training_mode_only():
    G = make_g()
    z = torch.randn(8, 16)
    before = G.mapping.w_avg.clone()
    G.mapping(z)  # eval mode: no update
    assert torch.equal(G.mapping.w_avg, before)
    G.train()
    w = G.mapping(z)[:, 0].detach()
    assert torch.allclose(G.mapping.w_avg, w.mean(0).lerp(before, 0.995), atol=1e-6)


def test_forward_equals_mapping_then_synthesis_and_shapes():
    G = make_g()
    z = torch.randn(2, 16)
    img = G(z, psi=0.7, cutoff=3)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    assert torch.equal(img, G.synthesize(G.mapping(z, psi=0.7, cutoff=3)))


def test_noise_modes():
    G = make_g()
    ws = G.mapping(torch.randn(2, 16))
    const = G.synthesize(ws, noise_mode="const")
    assert torch.equal(const, G.synthesize(ws, noise_mode="const"))
    assert not torch.allclose(const, G.synthesize(ws, noise_mode="none"))
    r1 = G.synthesize(ws, noise_mode="random", noise_generator=torch.Generator().manual_seed(1))
    r1b = G.synthesize(ws, noise_mode="random", noise_generator=torch.Generator().manual_seed(1))
    r2 = G.synthesize(ws, noise_mode="random", noise_generator=torch.Generator().manual_seed(2))
    assert torch.equal(r1, r1b) and not torch.allclose(r1, r2)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesize(ws, noise_mode="bogus")


def test_fused_and_unfused_modconv_agree():
    G = make_g()
    ws = G.mapping(torch.randn(3, 16))
    fused = G.synthesize(ws, fused_modconv=True)
    unfused = G.synthesize(ws, fused_modconv=False)
    assert torch.allclose(fused, unfused, atol=1e-4)


@pytest.mark.parametrize("architecture", ["skip", "orig", "resnet"])
@pytest.mark.parametrize("fused", [False, True])
def test_block_api_reproduces_synthesis_exactly(architecture, fused):
    G = make_g(synthesis_kwargs={**TINY["synthesis_kwargs"], "architecture": architecture})
    ws = G.mapping(torch.randn(2, 16))
    full = G.synthesize(ws, fused_modconv=fused)
    for k in range(G.num_blocks + 1):
        state = G.features_at(ws, block=k, fused_modconv=fused)
        if k == 0:
            assert state.x is None and state.img is None
        else:
            r = G.block_resolutions[k - 1]
            assert state.x.shape[-2:] == (r, r)
            # only 'skip' has per-block RGB outputs; otherwise the last block alone makes RGB
            assert (state.img is None) == (architecture != "skip" and k < G.num_blocks)
        assert torch.equal(G.synthesize_from(ws, block=k, state=state, fused_modconv=fused), full), k


def test_block_api_gradients_reach_ws_features_and_skip_image():
    G = make_g()
    ws = G.mapping(torch.randn(2, 16)).detach().requires_grad_(True)
    for k in range(1, G.num_blocks):
        state = G.features_at(ws, block=k)
        x = state.x.detach().requires_grad_(True)
        img_in = state.img.detach().requires_grad_(True)
        out = G.synthesize_from(ws, block=k, state=BlockState(x=x, img=img_in))
        gw, gx, gi = torch.autograd.grad(out.square().sum(), [ws, x, img_in])
        assert gw.abs().sum() > 0 and gx.abs().sum() > 0 and gi.abs().sum() > 0


def test_dropping_the_skip_image_changes_the_output():
    # The published IF-GMI code continues without the earlier RGB skip image; that is not the same image.
    G = make_g()
    ws = G.mapping(torch.randn(2, 16))
    state = G.features_at(ws, block=2)
    full = G.synthesize_from(ws, block=2, state=state)
    dropped = G.synthesize_from(ws, block=2, state=BlockState(x=state.x, img=None))
    assert not torch.allclose(full, dropped, atol=1e-3)


def test_block_api_rejects_bad_block_and_state():
    G = make_g()
    ws = G.mapping(torch.randn(1, 16))
    with pytest.raises(ValueError, match="block must be"):
        G.features_at(ws, block=G.num_blocks + 1)
    with pytest.raises(ValueError, match="x must be"):
        G.synthesize_from(ws, block=1, state=BlockState(x=None, img=None))
    with pytest.raises(ValueError, match="ws must have shape"):
        G.synthesize(ws[:, :-1])


def test_conv2d_resample_fast_paths_match_generic_reference():
    torch.manual_seed(0)
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 5, 8, 8)
    w = torch.randn(6, 5, 3, 3)
    for flip in (False, True):
        ref_w = w if flip else w.flip([2, 3])
        up_ref = F.conv2d(upfirdn2d(x, f, up=2, padding=[3, 2, 3, 2], gain=4), ref_w)
        assert torch.allclose(conv2d_resample(x, w, f, up=2, padding=1, flip_weight=flip), up_ref, atol=1e-4)
        down_ref = F.conv2d(upfirdn2d(x, f, padding=[2, 2, 2, 2]), ref_w)[:, :, ::2, ::2]
        assert torch.allclose(conv2d_resample(x, w, f, down=2, padding=1, flip_weight=flip), down_ref, atol=1e-5)
    # grouped (fused modulated conv) path equals per-group convolution
    xg, wg = torch.randn(1, 10, 8, 8), torch.randn(12, 5, 3, 3)
    grouped = conv2d_resample(xg, wg, f, up=2, padding=1, groups=2, flip_weight=False)
    split = torch.cat([conv2d_resample(xg[:, :5], wg[:6], f, up=2, padding=1, flip_weight=False),
                       conv2d_resample(xg[:, 5:], wg[6:], f, up=2, padding=1, flip_weight=False)], dim=1)
    assert torch.allclose(grouped, split, atol=1e-5)


def test_fir_resampling_preserves_constant_signal():
    f = setup_filter([1, 3, 3, 1])
    x = torch.full((1, 2, 8, 8), 0.7)
    up = upsample2d(x, f)
    down = downsample2d(x, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 0.7), atol=1e-6)
    assert torch.allclose(down[:, :, 1:-1, 1:-1], torch.full_like(down[:, :, 1:-1, 1:-1], 0.7), atol=1e-6)


def test_conv_clamp_bounds_activations():
    G = make_g(synthesis_kwargs={**TINY["synthesis_kwargs"], "conv_clamp": 0.05})
    ws = G.mapping(torch.randn(2, 16))
    state = G.features_at(ws, block=2)
    assert state.x.abs().max() <= 0.05 + 1e-7  # lrelu output × gain, then clamped at ±conv_clamp


def test_registered_builder_uses_card_params():
    build = GENERATORS.get("stylegan2").build
    G = build({"z_dim": 16, "w_dim": 24, "mapping_kwargs": {"num_layers": 2},
               "synthesis_kwargs": {"channel_base": 256, "channel_max": 32, "num_fp16_res": 2, "conv_clamp": 256}},
              16)
    assert isinstance(G, Generator) and G.img_resolution == 16 and G.num_ws == 2 * int(math.log2(16)) - 2
    with pytest.raises(CardError, match="unknown StyleGAN2 parameter"):
        build({"zdim": 16}, 16)
    with pytest.raises(CardError, match="invalid StyleGAN2 constructor"):
        build({"synthesis_kwargs": {"channel_bse": 4}}, 16)
    with pytest.raises(CardError, match="differs from resolution"):
        build({"img_resolution": 32}, 16)
