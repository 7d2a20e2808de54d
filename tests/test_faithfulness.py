"""Where mibench follows the published methods (issue: faithfulness audit) — each test fails on the
earlier behaviour. Sources are named in the presets and cards."""

from __future__ import annotations

import pickle

import pytest
import torch

from mibench.attacks.access import WhiteBox
from mibench.attacks.base import AttackContext
from mibench.attacks.ifgmi import IFGMIAttack
from mibench.attacks.ppa import PPAttack
from mibench.cards import list_cards
from mibench.classifiers.architectures import build_classifier
from mibench.errors import CheckpointError, MIBenchError
from mibench.generators.stylegan2 import Generator

PPA_TINY = {"search_space_size": 24, "num_candidates": 4, "num_final": 4, "steps": 2, "final_views": 2,
            "center_crop": None, "batch_size": 8, "selection_batch_size": 16}
TINY = {**PPA_TINY, "stage_steps": [2, 1, 1], "radii": [50.0, 50.0, 50.0]}


def _models():
    torch.manual_seed(0)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 128, "channel_max": 16})
    return G.eval().requires_grad_(False), build_classifier("compact_resnet", 6, 16, {"width": 8}, seed=1).eval()


# 1. IF-GMI optimises 50 candidates per class and evaluates all of them (official configs)
def test_ifgmi_published_protocol_evaluates_every_candidate():
    for preset in ("facescrub", "celeba", "celeba-metfaces", "stanford_dogs", "synthfaces"):
        cfg = IFGMIAttack.from_preset(preset).config
        assert cfg.num_final == cfg.num_candidates, preset
    assert IFGMIAttack.from_preset("facescrub").config.num_candidates == 50
    sel = IFGMIAttack.from_preset("facescrub-ppa-selection").config  # PPA's 200 → 50, by name only
    assert (sel.num_candidates, sel.num_final) == (200, 50)
    G, T = _models()
    ctx = AttackContext(WhiteBox(T, 6, 16, "cpu"), G, torch.device("cpu"), 0, 16, False)
    attack = IFGMIAttack.from_preset("synthfaces", TINY)
    attack.prepare(ctx)
    (res,) = attack.attack_classes(ctx, [1])
    assert res.images.shape[0] == 4  # all optimised candidates are kept


# 2. IF-GMI steps per stage: Stanford Dogs 7 stages; CelebA follows the FFHQ config (5 stages)
def test_ifgmi_stage_steps_follow_the_official_configs():
    assert IFGMIAttack.from_preset("stanford_dogs").config.stage_steps == [100, 10, 10, 10, 10, 10, 10]
    assert IFGMIAttack.from_preset("celeba").config.stage_steps == [70, 25, 25, 25, 25]
    assert IFGMIAttack.from_preset("celeba-metfaces").config.stage_steps == [70] + [25] * 7
    assert IFGMIAttack.from_preset("facescrub").config.stage_steps == [50] + [10] * 7


# 3. No centre crop in the Dogs / AFHQ setting
def test_stanford_dogs_has_no_centre_crop():
    assert PPAttack.from_preset("stanford_dogs").config.center_crop is None
    assert IFGMIAttack.from_preset("stanford_dogs").config.center_crop is None
    assert PPAttack.from_preset("facescrub").config.center_crop == 0.78125  # 800 of 1024 for faces


# 4. The candidate search scores the images of the full ws (layers past the cutoff untruncated)
def test_candidate_search_honours_the_truncation_cutoff():
    G, T = _models()
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x.detach().clone())
            return T(x)

    ctx = AttackContext(WhiteBox(Recorder(), 6, 16, "cpu"), G, torch.device("cpu"), 0, 16, False)
    attack = PPAttack.from_preset("synthfaces", {**PPA_TINY, "truncation_psi": 0.5, "truncation_cutoff": 2,
                                                 "num_final": 2})
    attack.prepare(ctx)
    from mibench.ops import rng
    from mibench.ops.transforms import to_unit

    z = rng.normal_matrix(rng.stream_seed(0, "ppa", "search-space"), torch.arange(24), G.z_dim)
    ws = G.mapping(z[:16], None, psi=0.5, cutoff=2)
    full = to_unit(G.synthesize(ws, noise_mode="const"))
    broadcast = attack.synthesize(ctx, ws[:, 0])
    assert torch.allclose(seen[0], full, atol=1e-6)
    assert not torch.allclose(seen[0], broadcast, atol=1e-3)
    assert torch.equal(attack._pool_w[:16], ws[:, 0])  # the optimisation starts from the first layer's w


# 5. PPA's checkpoints use Normalize(0.5, 0.5); a target far below its card's accuracy is refused
def test_research_cards_use_ppas_normalisation():
    cards = [c for c in list_cards("target") if c.dataset.name in ("facescrub", "celeba")]
    assert cards and all(c.arch_params.get("mean") == [0.5] * 3 and c.arch_params.get("std") == [0.5] * 3
                         for c in cards)
    model = build_classifier(cards[0].architecture, 10, cards[0].input_size, cards[0].arch_params,
                             load_pretrained=False)
    assert torch.allclose(model.mean.flatten(), torch.full((3,), 0.5))


def test_target_far_below_its_cards_accuracy_is_refused():
    from mibench.zoo.targets import check_natural_accuracy

    card = next(c for c in list_cards("target") if c.name == "facescrub-resnet152")
    card.natural_accuracy = 0.9
    check_natural_accuracy(card, 0.88)  # within range: fine
    with pytest.raises(MIBenchError, match="far below the card's 90.0%.*normalisation"):
        check_natural_accuracy(card, 0.4)


# 6. PRDC: Inception features under the published names, evaluation-model features as *_eval
def test_prdc_names_say_which_features():
    from mibench.registry import METRICS

    assert METRICS.get("prdc").requires == "inception"
    assert [c.name for c in METRICS.get("prdc_eval").columns] == ["precision_eval", "recall_eval", "density_eval",
                                                                  "coverage_eval"]


# 7. BiDO defaults to the reference code's normalised (CCA) HSIC
def test_bido_defaults_to_the_reference_estimator():
    from mibench.defenses.bido import BiDOHSIC, gaussian_kernel, hsic_normalized_cca, linear_kernel

    d = BiDOHSIC({})
    assert d.params.estimator == "normalized_cca"
    x, z = torch.rand(8, 3, 4, 4), torch.rand(8, 5)
    y = torch.tensor([0, 1, 2, 3] * 2)
    _, hxz, hyz = d.hsic_terms(x, y, [z], 4)
    kx, kz = gaussian_kernel(x, 5.0), gaussian_kernel(z, 5.0)
    ky = linear_kernel(torch.nn.functional.one_hot(y, 4).float())
    assert hxz[0] == pytest.approx(float(hsic_normalized_cca(kx, kz)))
    assert hyz[0] == pytest.approx(float(hsic_normalized_cca(kz, ky)))


# 8. MID samples z at test time too (keyed by the input), bottleneck = feature_dim / 2
def test_mid_reference_behaviour_and_deterministic_option():
    from mibench.defenses.base import DefenseContext
    from mibench.defenses.mid import MIDVIB

    model = build_classifier("compact_resnet", 4, 16, {"width": 8}, seed=0)
    model = MIDVIB({}).prepare(model, DefenseContext(seed=0)).eval()
    assert model.head.bottleneck_dim == model.feature_dim // 2 and model.head.test_sampling
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        f = model.features(x)
        mu, _ = model.head.stats(f)
        logits = model(x)
        assert not torch.allclose(logits, model.head.classifier(mu))  # z is sampled, not μ
        assert torch.equal(model(x), logits)  # the same input gives the same answer
        assert torch.allclose(model(x[2:3]), logits[2:3], atol=1e-6)  # alone or batched
    det = MIDVIB({"test_sampling": False}).prepare(build_classifier("compact_resnet", 4, 16, {"width": 8}, seed=0),
                                                   DefenseContext(seed=0)).eval()
    with torch.no_grad():
        f = det.features(x)
        assert torch.allclose(det(x), det.head.classifier(det.head.stats(f)[0]))


# 10. Conditional StyleGAN2 checkpoints are refused at load; protocol-2 pickles name `__builtin__`
def test_conditional_stylegan2_refused_at_load(tmp_path):
    from mibench.generators.io import save_generator
    from mibench.registry import GENERATORS

    G = Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8})
    path = save_generator(G, tmp_path / "cond.safetensors")
    with pytest.raises(CheckpointError, match="class-conditional"):
        GENERATORS.get("stylegan2").load(path, resolution=8)


def test_protocol_2_pickles_map_builtins():
    import io

    from mibench.generators.safe_pickle import SafeUnpickler

    blob = pickle.dumps({"layers": {1, 2}, "frozen": frozenset({3})}, protocol=2)
    assert b"__builtin__" in blob
    assert SafeUnpickler(io.BytesIO(blob)).load() == {"layers": {1, 2}, "frozen": frozenset({3})}


# 11. Metrics use the private originals at the evaluation model's resolution
def test_metric_images_come_at_the_evaluators_resolution():
    from mibench.run.execute import metric_images_ref

    cards = {c.name: c for c in list_cards("target")}
    target, evaluator = cards["facescrub-resnet152"], cards["facescrub-inception-v3"]
    assert metric_images_ref(target, evaluator).params["resolution"] == 299
    assert target.dataset.params["resolution"] == 224
