"""StyleGAN2's blocked demodulation (`mibench.ops.demodulation`) gives the official formulation's bits:
per layer shape of every registered StyleGAN2 prior, and through whole generators, forward and gradient."""

from __future__ import annotations

import pytest
import torch

from mibench.cards import list_cards
from mibench.generators import stylegan2
from mibench.generators.stylegan2 import SynthesisLayer
from mibench.ops.demodulation import _block_rows, reference_squared_modulated_norm, squared_modulated_norm
from mibench.registry import GENERATORS

STYLEGAN2_CARDS = [c for c in list_cards("generator") if c.kind == "stylegan2"]


def _layer_shapes(card) -> set[tuple[int, ...]]:
    """The weight shapes of the demodulated layers of `card`'s generator (random weights, not trained)."""
    G = GENERATORS.get("stylegan2").build(card.params, card.resolution)
    return {tuple(m.weight.shape) for m in G.modules() if isinstance(m, SynthesisLayer)}


def _norm_and_grad(fn, weight: torch.Tensor, styles: torch.Tensor, grad: torch.Tensor):
    s = styles.clone().requires_grad_(True)
    out = fn(weight, s)
    out.backward(grad)
    return out.detach(), s.grad


@pytest.mark.parametrize("card", STYLEGAN2_CARDS, ids=lambda c: c.name)
def test_blocked_norm_is_bit_identical_on_every_layer_shape_of_the_card(card):
    gen = torch.Generator().manual_seed(0)
    for shape in sorted(_layer_shapes(card)):
        weight = torch.randn(shape, generator=gen)
        n = 2 * _block_rows(weight) + 1  # several blocks and a short last one
        styles = torch.randn(n, shape[1], generator=gen) * 0.5 + 1
        grad = torch.randn(n, shape[0], generator=gen)
        out, g = _norm_and_grad(squared_modulated_norm, weight, styles, grad)
        ref_out, ref_g = _norm_and_grad(reference_squared_modulated_norm, weight, styles, grad)
        assert torch.equal(out, ref_out), shape
        assert torch.equal(g, ref_g), shape


@pytest.mark.parametrize("card", [c for c in STYLEGAN2_CARDS if c.resolution <= 64], ids=lambda c: c.name)
def test_a_generator_gives_the_official_formulations_images_and_gradients(card, monkeypatch):
    torch.manual_seed(0)
    G = GENERATORS.get("stylegan2").build(card.params, card.resolution).eval().requires_grad_(False)
    w = G.mapping(torch.randn(37, G.z_dim), None, psi=0.7)[:, :1]  # 37: more than two blocks of 64×64×3×3

    def images_and_grad():
        wr = w.clone().requires_grad_(True)
        img = G.synthesis(wr.repeat(1, G.num_ws, 1), noise_mode="const")
        img.square().mean().backward()
        return img.detach(), wr.grad

    blocked = images_and_grad()
    monkeypatch.setattr(stylegan2, "squared_modulated_norm", reference_squared_modulated_norm)
    official = images_and_grad()
    assert torch.equal(blocked[0], official[0]) and torch.equal(blocked[1], official[1])


def test_the_blocked_path_keeps_no_per_sample_weights_for_the_backward():
    weight, styles = torch.randn(64, 64, 3, 3), torch.randn(40, 64).requires_grad_(True)
    saved = {}
    for name, fn in (("blocked", squared_modulated_norm), ("official", reference_squared_modulated_norm)):
        sizes: list[int] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, sizes=sizes: sizes.append(t.numel()) or t,
                                                      lambda t: t):
            fn(weight, styles)
        saved[name] = sum(sizes)
    assert saved["blocked"] == weight.numel() + styles.numel()
    assert saved["official"] >= 40 * weight.numel()  # the (N, O, I, kh, kw) modulated weights


def test_a_trained_weight_takes_the_autograd_path_and_gets_its_gradient():
    weight = torch.randn(8, 4, 3, 3, requires_grad=True)
    styles = torch.randn(5, 4, requires_grad=True)
    squared_modulated_norm(weight, styles).sum().backward()
    expected = torch.autograd.grad(reference_squared_modulated_norm(weight, styles).sum(), weight)[0]
    assert torch.equal(weight.grad, expected) and styles.grad is not None


def test_a_second_derivative_through_the_blocked_path_matches_the_official_one():
    weight = torch.randn(8, 4, 3, 3)
    grads = []
    for fn in (squared_modulated_norm, reference_squared_modulated_norm):
        styles = torch.linspace(0.5, 1.5, 20).reshape(5, 4).requires_grad_(True)
        (g,) = torch.autograd.grad(fn(weight, styles).pow(2).sum(), styles, create_graph=True)
        grads.append((g, torch.autograd.grad(g.sum(), styles)[0]))
    assert torch.equal(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])
