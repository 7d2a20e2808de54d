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


# 9. LOKT: the published T-ACGAN losses and generator, augmentations and surrogate training
def test_lokt_defaults_are_the_published_setting():
    from mibench.attacks.lokt import LOKTAttack

    cfg = LOKTAttack.from_preset("celeba").config
    arch, recipe = cfg.gan_arch(), cfg.gan_recipe()
    assert (arch.upsample, arch.out_kernel, recipe.gan_loss) == ("bilinear", 1, "bce")
    assert recipe.alpha == 1.5 and recipe.class_weight_d() == 1.5  # D's class loss weighted by α too
    assert cfg.holdout_per_class == 0 and cfg.samples_per_class == 500  # surrogates on all 500 samples
    surr = cfg.surrogate_recipe(0)
    assert surr.clean_weight == 0.5
    aug = surr.augment
    assert (aug.crop_scale, aug.crop_ratio, aug.flip) == ((0.8, 1.0), (1.0, 1.0), True)
    assert (aug.color_jitter, aug.jitter_saturation, aug.jitter_p, aug.rotation) == (0.2, False, 0.5, 5.0)
    assert (cfg.aug_brightness, cfg.aug_contrast, cfg.aug_rotation, cfg.aug_views) == (0.2, 0.2, 5.0, 2)
    # The embedded preset keeps every method choice and scales only the budget.
    emb = LOKTAttack.from_preset("synthfaces").config
    for name in ("gan_loss", "gan_d_cls_weight", "gan_upsample", "gan_out_kernel", "holdout_per_class",
                 "surrogate_clean_weight", "surrogate_augment", "aug_brightness", "aug_contrast", "aug_rotation"):
        assert getattr(emb, name) == getattr(cfg, name), name


def test_generator_output_conv_is_1x1():
    from mibench.generators.tacgan import TACGANArch, build_models

    G, _ = build_models(3, TACGANArch(resolution=16, z_dim=8, g_width=4, d_width=4), seed=0)
    assert G.out_conv.kernel_size == (1, 1)
    assert G(torch.randn(2, 8), torch.tensor([0, 2])).shape == (2, 3, 16, 16)


def test_tacgan_bce_and_hinge_losses_closed_form():
    from mibench.generators.tacgan import _d_loss, _g_loss

    zero = torch.zeros(4)
    assert torch.isclose(_d_loss(zero, zero, "bce"), 2 * torch.log(torch.tensor(2.0)))
    assert torch.isclose(_g_loss(zero, "bce"), torch.log(torch.tensor(2.0)))
    big = torch.full((4,), 30.0)
    assert float(_d_loss(big, -big, "bce")) < 1e-6  # a confident, correct D has no loss
    assert float(_d_loss(big, -big, "hinge")) == 0.0 and float(_g_loss(big, "hinge")) == -30.0


def test_every_builtin_attack_has_a_preset_for_every_dataset_kind():
    from mibench.attacks.addon import attack_class, attack_names
    from mibench.registry import DATASETS

    for name in attack_names():
        cls = attack_class(name)
        if not cls.__module__.startswith("mibench."):
            continue  # a test plug-in, not built in
        for ds in DATASETS.names():
            preset = DATASETS.meta(ds).get("attack_preset")
            if preset:
                cls.from_preset(preset)  # Stanford Dogs × LOKT used to fail here
    from mibench.run.spec import RunSpec, resolve

    assert resolve(RunSpec(target="stanford-dogs-resnet152", attack="lokt")).preset == "stanford_dogs"


def test_keyed_jitter_and_rotation_are_per_sample_and_bounded():
    from mibench.ops.transforms import keyed_color_jitter, keyed_rotation

    x = torch.rand(6, 3, 16, 16)
    keys = torch.arange(6) * 7
    j = keyed_color_jitter(x, 3, keys, 5, 0.2, 0.0)
    ratio = (j / x.clamp(min=1e-3))[(x > 0.05) & (j < 0.999)].view(-1)
    assert float(ratio.min()) >= 0.8 - 1e-4 and float(ratio.max()) <= 1.2 + 1e-4  # x · b, b ∈ [0.8, 1.2]
    assert torch.equal(keyed_color_jitter(x, 3, keys, 5, 0.2, 0.2, p=0.0), x)
    r = keyed_rotation(x, 3, keys, 5, 5.0, p=1.0)
    assert not torch.equal(r, x) and torch.equal(keyed_rotation(x, 3, keys, 5, 5.0, p=0.0), x)
    for f in (lambda a, k: keyed_color_jitter(a, 3, k, 5, 0.2, 0.2), lambda a, k: keyed_rotation(a, 3, k, 5, 5.0)):
        alone = f(x[2:3], keys[2:3])
        assert torch.allclose(f(x, keys)[2:3], alone, atol=1e-6)  # a sample's view ignores its batch
    flat = torch.full((1, 3, 16, 16), 0.5)
    rot = keyed_rotation(flat, 1, torch.tensor([0]), 0, 5.0, p=1.0)
    assert torch.allclose(rot[..., 6:10, 6:10], flat[..., 6:10, 6:10])  # the centre stays, corners fill with 0


def test_clean_weight_one_trains_on_the_clean_batch_only():
    """w = 1 gives exactly the parameters of training without augmentation (batch norm in training
    mode normalises with batch statistics, so the augmented pass only moves running statistics)."""
    from mibench.classifiers.recipe import Augment, TrainRecipe
    from mibench.classifiers.train import train_classifier
    from mibench.data.base import TensorImageDataset

    gen = torch.Generator().manual_seed(0)
    ds = TensorImageDataset(torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=gen),
                            torch.arange(24) % 3, ["a", "b", "c"], name="tiny", split="train")
    heavy = Augment(crop_scale=(0.5, 1.0), color_jitter=0.3, rotation=10.0, rotation_p=1.0)
    none = Augment(crop_scale=None, flip=False, color_jitter=0.0)

    def params(aug, w):
        model = build_classifier("compact_resnet", 3, 16, {"width": 4, "depths": [1]}, seed=2)
        recipe = TrainRecipe(epochs=2, batch_size=8, augment=aug, clean_weight=w, seed=1)
        res = train_classifier(model, ds, None, recipe, progress=False)
        return [p.detach().clone() for p in res.model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(params(heavy, 1.0), params(none, 0.0)))
    assert not all(torch.equal(a, b) for a, b in zip(params(heavy, 0.5), params(none, 0.0)))
