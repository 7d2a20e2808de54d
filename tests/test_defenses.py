"""Defenses: parameter validation, NLS schedule and loss, BiDO's HSIC, MID's VIB head, TL-DMI freezing."""

from __future__ import annotations

import math
import sys

import pytest
import torch
import torch.nn.functional as F

from mibench.classifiers import build_classifier, train_classifier
from mibench.classifiers.recipe import Augment, TrainRecipe
from mibench.data.base import TensorImageDataset
from mibench.defenses import DefenseContext, build_defense
from mibench.defenses.bido import gaussian_kernel, hsic_biased, hsic_normalized_cca, linear_kernel
from mibench.defenses.label_smoothing import smoothed_cross_entropy, smoothing_alpha
from mibench.defenses.mid import VIBHead, gaussian_kl
from mibench.defenses.tl_dmi import resolve_freeze
from mibench.errors import CardError, DataError, MIBenchError
from mibench.registry import DEFENSES

TINY = {"width": 8, "depths": [1, 1], "stem_stride": 1}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(classes: int = 4, seed: int = 0):
    return build_classifier("compact_resnet", classes, 16, TINY, seed=seed)


def _dataset(n: int = 32, classes: int = 4, seed: int = 0, labelled: bool = True) -> TensorImageDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % classes if labelled else torch.full((n,), -1)
    return TensorImageDataset(images, labels, [f"c{i}" for i in range(classes)] if labelled else [])


def _recipe(**kw) -> TrainRecipe:
    base = dict(epochs=1, batch_size=8, optimizer="sgd", lr=0.05, seed=0,
                augment=Augment(crop_scale=(0.8, 1.0), flip=True, color_jitter=0.1))
    base.update(kw)
    return TrainRecipe(**base)


# ------------------------------------------------------------------------------------ registry / params

def test_registered_with_paper_and_description():
    for name in ("none", "label_smoothing", "negative_label_smoothing", "tl_dmi", "bido_hsic", "mid_vib"):
        assert name in DEFENSES
        meta = DEFENSES.meta(name)
        assert meta.get("description")
        if name != "none":
            assert meta.get("paper")
        d = build_defense(name)
        assert d.kind == name and d.describe()["kind"] == name
        assert d.__doc__ and sys.modules[type(d).__module__].__doc__


def test_describe_records_resolved_params():
    d = build_defense("negative_label_smoothing", {"alpha": -0.1})
    assert d.describe()["params"] == {"alpha": -0.1, "start": 0.5, "ramp_end": 0.75}
    assert build_defense("bido_hsic").describe()["params"] == {"a1": 0.05, "a2": 0.5, "sigma": 5.0,
                                                               "estimator": "normalized_cca"}
    assert build_defense("mid_vib").describe()["params"] == {"beta": 0.003, "bottleneck_dim": None,
                                                             "test_sampling": True, "noise_seed": 0}


@pytest.mark.parametrize("kind, params, field", [
    ("negative_label_smoothing", {"alpha": 0.05}, "params.alpha"),
    ("negative_label_smoothing", {"alpha": 0.0}, "params.alpha"),
    ("label_smoothing", {"alpha": -0.05}, "params.alpha"),
    ("label_smoothing", {"alpha": 0.0}, "params.alpha"),
    ("negative_label_smoothing", {"start": 0.8, "ramp_end": 0.6}, "params.ramp_end"),
    ("negative_label_smoothing", {"alpah": -0.05}, "params.alpah"),
    ("mid_vib", {"beta": "big"}, "params.beta"),
    ("tl_dmi", {"freeze": 1.5}, "params.freeze"),
    ("bido_hsic", {"estimator": "unbiased"}, "params.estimator"),
])
def test_bad_params_are_card_errors(kind, params, field):
    with pytest.raises(CardError) as info:
        build_defense(kind, params, path="defenses/x.yaml")
    assert info.value.field == field and info.value.path == "defenses/x.yaml"


# ------------------------------------------------------------------------------------ label smoothing

def test_nls_schedule_reaches_full_alpha():
    d = build_defense("negative_label_smoothing", {"alpha": -0.08, "start": 0.5, "ramp_end": 0.75})
    expected = {0.0: 0.0, 0.25: 0.0, 0.49: 0.0, 0.5: 0.0, 0.5625: -0.02, 0.625: -0.04, 0.6875: -0.06,
                0.75: -0.08, 0.9: -0.08, 1.0: -0.08}
    for p, a in expected.items():
        assert d.alpha_at(p) == pytest.approx(a), p
    # the published scheduler's bug: only α/2 shortly before the end — ours is (almost) full α there
    assert d.alpha_at(0.74) == pytest.approx(-0.08 * 0.96)
    assert smoothing_alpha(0.3, 0.1, 0.0, 0.0) == 0.1  # constant schedule (ordinary label smoothing)


def test_smoothed_cross_entropy_equals_soft_target_ce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=g)
    y = torch.randint(0, 7, (5,), generator=g)
    for alpha in (-0.05, 0.0, 0.1):
        target = F.one_hot(y, 7).float() * (1 - alpha) + alpha / 7
        expected = float(F.cross_entropy(logits, target))
        assert smoothed_cross_entropy(logits, y, alpha) == pytest.approx(expected, abs=1e-6)
    assert smoothed_cross_entropy(logits, y, 0.1) == pytest.approx(
        float(F.cross_entropy(logits, y, label_smoothing=0.1)), abs=1e-6)


def test_nls_loss_is_plain_ce_early_and_smoothed_late():
    model = _model().eval()
    x = torch.rand(6, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    d = build_defense("negative_label_smoothing", {"alpha": -0.05})
    early, logs = d.loss(model, x, y, 0.1)
    assert logs["alpha"] == 0.0
    assert early.item() == pytest.approx(F.cross_entropy(model(x), y).item(), abs=1e-6)
    late, logs = d.loss(model, x, y, 0.9)
    assert logs["alpha"] == -0.05
    assert late.item() == pytest.approx(smoothed_cross_entropy(model(x), y, -0.05).item(), abs=1e-6)


# ------------------------------------------------------------------------------------ BiDO

def _hsic_explicit(k: torch.Tensor, lk: torch.Tensor) -> torch.Tensor:
    m = k.shape[0]
    h = torch.eye(m, dtype=k.dtype) - torch.ones(m, m, dtype=k.dtype) / m
    return torch.trace(k @ h @ lk @ h) / (m - 1) ** 2


def test_gaussian_kernel_matches_loop():
    z = torch.randn(5, 3, 2, 2, dtype=torch.float64)
    k = gaussian_kernel(z, 2.0)
    d = 12
    for i in range(5):
        for j in range(5):
            expected = math.exp(-float(((z[i] - z[j]) ** 2).sum()) / (2 * 2.0 ** 2 * d))
            assert k[i, j].item() == pytest.approx(expected, rel=1e-5)


def test_hsic_estimators_match_explicit_computation():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = F.one_hot(torch.tensor([0, 1, 2, 0, 1, 2, 0]), 3).double()
    k = gaussian_kernel(x, 1.0).double()
    lk = linear_kernel(y).double()
    assert hsic_biased(k, lk).item() == pytest.approx(_hsic_explicit(k, lk).item(), rel=1e-9)
    # loop form of tr(KHLH)/(m−1)²: Σ_ij K_ij L_ij − 2/m Σ_i (Σ_j K_ij)(Σ_j L_ij) + (ΣK)(ΣL)/m², all / (m−1)²
    m = 7
    t1 = sum(k[i, j] * lk[i, j] for i in range(m) for j in range(m))
    t2 = sum(k[i].sum() * lk[i].sum() for i in range(m)) * 2 / m
    t3 = k.sum() * lk.sum() / m ** 2
    assert hsic_biased(k, lk).item() == pytest.approx(((t1 - t2 + t3) / (m - 1) ** 2).item(), rel=1e-9)
    # independent variables give a smaller HSIC than dependent ones
    noise = gaussian_kernel(torch.randn(7, 4, generator=g, dtype=torch.float64), 1.0)
    assert hsic_biased(k, k) > hsic_biased(k, noise)
    # normalized-CCA variant vs explicit H, inverse
    h = torch.eye(m, dtype=torch.float64) - 1.0 / m
    kc, lc = k @ h, lk @ h
    rk = kc @ torch.inverse(kc + 1e-5 * m * torch.eye(m, dtype=torch.float64))
    rl = lc @ torch.inverse(lc + 1e-5 * m * torch.eye(m, dtype=torch.float64))
    assert hsic_normalized_cca(k, lk).item() == pytest.approx((rk * rl.T).sum().item(), rel=1e-6)


@pytest.mark.parametrize("estimator", ["biased", "normalized_cca"])
def test_bido_loss_is_ce_plus_hsic_terms(estimator):
    model = _model().eval()  # eval: identical activations in every forward pass
    x = torch.rand(8, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    d = build_defense("bido_hsic", {"a1": 0.3, "a2": 0.7, "estimator": estimator})
    loss, logs = d.loss(model, x, y, 0.5)
    ce = F.cross_entropy(model(x), y)
    hsic = hsic_biased if estimator == "biased" else hsic_normalized_cca
    kx = gaussian_kernel(x, 5.0)
    ky = linear_kernel(F.one_hot(y, 4).float())
    terms = sum(0.3 * hsic(kx, gaussian_kernel(z, 5.0)) - 0.7 * hsic(gaussian_kernel(z, 5.0), ky)
                for z in model.hidden(x))
    assert len(model.hidden(x)) == 2
    assert loss.item() == pytest.approx((ce + terms).item(), abs=1e-5)
    assert (loss - ce).abs().item() > 1e-6  # the regulariser is not silently zero
    assert logs["ce"] == pytest.approx(ce.item(), abs=1e-6)
    loss.backward()
    assert model.backbone.conv1.weight.grad is not None


# ------------------------------------------------------------------------------------ MID

def test_gaussian_kl_closed_form():
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    std = torch.tensor([[1.0, 0.5], [2.0, 1.0]])
    # row 1: ½[(1 + 1 − 1 − 0) + (0 + ¼ − 1 − ln ¼)];  row 2: ½[(0 + 4 − 1 − ln 4) + (4 + 1 − 1 − 0)]
    row1 = 0.5 * (1 + (0.25 - 1 - math.log(0.25)))
    row2 = 0.5 * ((4 - 1 - math.log(4)) + 4)
    assert gaussian_kl(mu, std).item() == pytest.approx((row1 + row2) / 2, rel=1e-6)
    assert gaussian_kl(torch.zeros(3, 4), torch.ones(3, 4)).item() == pytest.approx(0.0, abs=1e-7)


def test_mid_head_loss_and_determinism():
    d = build_defense("mid_vib", {"beta": 0.01, "bottleneck_dim": 5, "test_sampling": False})
    model = d.prepare(_model(), DefenseContext(seed=3))
    assert isinstance(model.head, VIBHead) and model.head_spec() == {"kind": "vib", "bottleneck_dim": 5,
                                                                     "test_sampling": False, "noise_seed": 0}
    f = torch.randn(4, model.feature_dim)
    mu, std = model.head.stats(f)
    raw = model.head.encoder(f)[:, 5:]
    assert torch.allclose(std, F.softplus(raw - 5))
    model.eval()
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(model(x), model(x))  # z = μ in eval (the deterministic variant)
    assert torch.allclose(model(x), model.head.classifier(model.head.stats(model.features(x))[0]))
    # training: loss = CE + β·KL with seeded noise; same seed → same loss, noise makes it differ from μ
    y = torch.tensor([0, 1, 2, 3])
    model.train()
    loss_a, logs = d.loss(model, x, y, 0.0)
    d2 = build_defense("mid_vib", {"beta": 0.01, "bottleneck_dim": 5})
    model2 = d2.prepare(_model(), DefenseContext(seed=3))
    model2.train()
    loss_b, _ = d2.loss(model2, x, y, 0.0)
    assert loss_a.item() == loss_b.item()
    assert loss_a.item() == pytest.approx(logs["ce"] + 0.01 * logs["kl"], rel=1e-5)


def test_unprepared_defenses_refuse_to_train():
    ds = _dataset()
    for kind in ("mid_vib", "tl_dmi"):
        with pytest.raises(ValueError, match="prepare"):
            train_classifier(_model(), ds, None, _recipe(), defense=build_defense(kind), progress=False)
    with pytest.raises(MIBenchError, match="VIB head"):
        build_defense("mid_vib").loss(_model(), torch.rand(2, 3, 16, 16), torch.tensor([0, 1]), 0.0)


# ------------------------------------------------------------------------------------ TL-DMI

def test_resolve_freeze():
    assert resolve_freeze(-1, 5) == 4
    assert resolve_freeze(2, 5) == 2
    assert resolve_freeze(0.6, 5) == 3
    assert resolve_freeze(1.0, 4) == 4
    with pytest.raises(MIBenchError, match="out of range"):
        resolve_freeze(7, 5)


def test_tl_dmi_freezes_weights_and_batchnorm_statistics():
    public = _model(classes=6, seed=9)
    with torch.no_grad():  # a "pre-trained" state with non-trivial BN statistics
        public.train()(torch.rand(16, 3, 16, 16))
    state = {k: v.clone() for k, v in public.backbone.state_dict().items()}
    d = build_defense("tl_dmi", {"freeze": 2})  # stem + first stage of TINY's (stem, layers.0, layers.1)
    model = d.prepare(_model(), DefenseContext(pretrained_state=state))
    assert d.info["frozen_units"] == ["stem", "layers.0"] and d.info["trainable_units"] == ["layers.1"]
    bb = model.backbone
    assert not bb.conv1.weight.requires_grad and not bb.layers[0][0].conv2.weight.requires_grad
    assert bb.layers[1][0].conv1.weight.requires_grad and model.head.weight.requires_grad
    model.train()
    assert not bb.bn1.training and not bb.layers[0][0].bn1.training and bb.layers[1][0].bn1.training

    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = train_classifier(model, _dataset(), None, _recipe(epochs=2), defense=d, progress=False)
    after = res.model.state_dict()
    frozen = [k for k in before if k.startswith(("backbone.conv1", "backbone.bn1", "backbone.layers.0."))]
    trained = [k for k in before
               if k.startswith("backbone.layers.1.") and not k.endswith("num_batches_tracked")]
    assert any("running_mean" in k for k in frozen) and any("running_var" in k for k in frozen)
    for k in frozen:
        assert torch.equal(before[k], after[k]), k
    assert all(torch.equal(before[k], state[k[len("backbone."):]]) for k in frozen)
    changed = [k for k in trained if not torch.equal(before[k], after[k])]
    assert any("running_mean" in k for k in changed) and any(k.endswith("conv1.weight") for k in changed)
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_tl_dmi_pretrains_on_public_data_and_reports_it():
    seen = {}
    ctx = DefenseContext(seed=1, recipe=_recipe(), public_train=_dataset(classes=6, seed=2),
                         public_test=_dataset(n=12, classes=6, seed=3),
                         on_pretrained=lambda state, info: seen.update(state=state, info=info))
    d = build_defense("tl_dmi", {"freeze": 0.5, "pretrain_epochs": 1})
    model = d.prepare(_model(classes=4), ctx)
    assert seen["info"]["pretrain_classes"] == 6 and seen["info"]["pretrain_epochs"] == 1
    assert 0.0 <= seen["info"]["pretrain_accuracy"] <= 1.0
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, seen["state"][k]), k
    assert model.head.weight.shape == (4, model.feature_dim)
    assert d.info["frozen_units"] == ["stem", "layers.0"]  # round(0.5 · 3 units) = 2


def test_tl_dmi_needs_labelled_public_data():
    with pytest.raises(MIBenchError, match="public data"):
        build_defense("tl_dmi").prepare(_model(), DefenseContext(recipe=_recipe()))
    with pytest.raises(DataError, match="unlabelled"):
        build_defense("tl_dmi").prepare(_model(), DefenseContext(recipe=_recipe(),
                                                                 public_train=_dataset(labelled=False)))
