"""Classifier interface, architectures, augmentation, schedules and deterministic training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mibench.classifiers import build_classifier, count_parameters, evaluate_accuracy, train_classifier
from mibench.classifiers.recipe import Augment, TrainRecipe
from mibench.classifiers.train import augment_batch, lr_factor
from mibench.data.base import TensorImageDataset
from mibench.errors import CardError, CheckpointError, DataError
from mibench.registry import ARCHITECTURES

TINY = {"width": 8, "depths": [1, 1], "stem_stride": 1}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (on a shared 2-core machine two threads can be 50× slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def colour_dataset(n_per_class: int = 16, classes: int = 4, size: int = 16,
                   seed: int = 0) -> TensorImageDataset:
    """An easy dataset: each class is a distinct mean colour plus noise (uint8 (N, 3, size, size))."""
    base = torch.rand(classes, 3, 1, 1, generator=torch.Generator().manual_seed(1234)) * 200 + 20
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    noise = torch.randn(labels.shape[0], 3, size, size, generator=g) * 12
    images = (base[labels] + noise).clamp(0, 255).to(torch.uint8)
    return TensorImageDataset(images, labels, [f"c{i}" for i in range(classes)], name="colours",
                              split="train")


def test_every_architecture_is_described():
    for name in ARCHITECTURES.names():
        meta = ARCHITECTURES.meta(name)
        assert meta.get("description"), name
        assert isinstance(meta.get("input_size"), int), name
    for name in ("compact_resnet", "resnet18", "resnet152", "densenet121", "densenet169", "resnest101e",
                 "inception_v3", "vit_base_patch16_224", "timm"):
        assert name in ARCHITECTURES


def test_default_compact_resnet_is_small():
    model = build_classifier("compact_resnet", 100, 32)
    n = count_parameters(model)
    assert 0.3e6 <= n <= 1.5e6, n
    assert model.arch == "compact_resnet" and model.num_classes == 100 and model.input_size == 32


def test_interface_shapes_and_consistency():
    model = build_classifier("compact_resnet", 5, 16, TINY, seed=1).eval()
    x = torch.rand(3, 3, 16, 16)
    logits = model(x)
    f, logits2 = model.forward_with_features(x)
    assert logits.shape == (3, 5) and f.shape == (3, model.feature_dim)
    assert torch.equal(logits, logits2)
    assert torch.equal(model.features(x), f)
    hidden, logits3 = model.forward_hidden(x)
    assert torch.equal(logits3, logits)
    # every stage but the last, then the features
    assert [tuple(h.shape) for h in hidden] == [(3, 8, 16, 16), (3, model.feature_dim)]
    assert torch.equal(hidden[-1], f)
    assert torch.equal(model(x), logits)  # eval is deterministic


def test_resizes_and_normalises_inside():
    model = build_classifier("compact_resnet", 5, 16, TINY, seed=1).eval()
    x = torch.rand(2, 3, 40, 40)
    small = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(model(x), model(small), atol=1e-6)
    manual = model.head(model.backbone((small - model.mean) / model.std))
    assert torch.allclose(model(small), manual, atol=1e-6)
    u8 = (x * 255).round().to(torch.uint8)
    assert torch.allclose(model(u8), model(u8.float() / 255), atol=1e-6)
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 5)  # upsampling works too


def test_build_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_classifier("compact_resnet", 4, 16, TINY, seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = build_classifier("compact_resnet", 4, 16, TINY, seed=7)
    c = build_classifier("compact_resnet", 4, 16, TINY, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_unknown_arch_param_is_a_card_error():
    with pytest.raises(CardError, match="arch_params.widht"):
        build_classifier("compact_resnet", 4, 16, {"widht": 8})


def test_timm_backbone_structure():
    model = build_classifier("timm", 6, 32, {"model_name": "test_resnet"}, seed=0).eval()
    assert model.backbone.unit_names() == ["stem"] + [f"model.layer{i}" for i in range(1, 5)]
    hidden = model.hidden(torch.rand(2, 3, 32, 32))
    assert len(hidden) == 4 and hidden[-1].shape == (2, model.feature_dim)
    assert model.arch_params == {"model_name": "test_resnet"}
    # timm classifier weights ('fc.*') map to our head, everything else into the backbone
    assert model.backbone.external_key("fc.weight") == "head.weight"
    assert model.backbone.external_key("layer1.0.conv1.weight") == "backbone.model.layer1.0.conv1.weight"
    dense = build_classifier("densenet121", 3, 32).backbone  # old torchvision names: norm.1 → norm1
    assert (dense.external_key("features.denseblock1.denselayer1.norm.1.weight")
            == "backbone.model.features.denseblock1.denselayer1.norm1.weight")
    assert dense.external_key("classifier.bias") == "head.bias"
    # every parameter belongs to exactly one freezable unit
    owned = [p for unit in model.backbone.units() for m in unit for p in m.parameters(recurse=False)]
    assert len(owned) == len(list(model.backbone.parameters()))


def test_named_timm_builders_and_unknown_model():
    model = build_classifier("resnet18", 3, 32, seed=0)
    assert model.feature_dim == 512 and model.arch == "resnet18" and model.arch_params == {}
    with pytest.raises(CardError, match="no model"):
        build_classifier("timm", 3, 32, {"model_name": "resnet_does_not_exist"})


def _pretrained(path) -> dict:
    return {"model_name": "test_resnet", "pretrained": str(path)}


def test_pretrained_is_a_local_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        build_classifier("timm", 3, 32, _pretrained(tmp_path / "none.pth"))
    import timm

    source = timm.create_model("test_resnet", pretrained=False, num_classes=1000)  # an "ImageNet" file
    torch.save(source.state_dict(), tmp_path / "in1k.pth")
    model = build_classifier("timm", 3, 32, _pretrained(tmp_path / "in1k.pth"))
    src = source.state_dict()
    for k, v in model.backbone.model.state_dict().items():
        assert torch.equal(v, src[k]), k
    assert model.head.weight.shape == (3, model.feature_dim)  # the 1000-class head was not used
    assert model.arch_params["pretrained"] == str(tmp_path / "in1k.pth")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="missing keys"):
        build_classifier("timm", 3, 32, _pretrained(tmp_path / "wrong.pth"))


# ------------------------------------------------------------------------------------ augmentation

def test_augment_identity_and_flip():
    x = torch.rand(6, 3, 12, 12)
    g = torch.Generator().manual_seed(0)
    same = augment_batch(x, Augment(crop_scale=None, flip=False, color_jitter=0.0), g)
    assert torch.allclose(same, x, atol=1e-5)
    flipped = augment_batch(x, Augment(crop_scale=None, flip=True, color_jitter=0.0), g)
    for i in range(6):
        assert (torch.allclose(flipped[i], x[i], atol=1e-5) or
                torch.allclose(flipped[i], x[i].flip(-1), atol=1e-5))


def test_augment_is_seeded_and_in_range():
    x = torch.rand(8, 3, 16, 16)
    aug = Augment(crop_scale=(0.5, 1.0), crop_ratio=(0.8, 1.25), flip=True, color_jitter=0.3)
    a = augment_batch(x, aug, torch.Generator().manual_seed(3))
    b = augment_batch(x, aug, torch.Generator().manual_seed(3))
    c = augment_batch(x, aug, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, x, atol=1e-3)


def test_lr_schedules():
    r = TrainRecipe(epochs=10, schedule="cosine", warmup_epochs=2)
    assert lr_factor(0, r, 10) == pytest.approx(1 / 20)
    assert lr_factor(19, r, 10) == pytest.approx(1.0)
    assert lr_factor(20, r, 10) == pytest.approx(1.0)
    assert lr_factor(60, r, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(99, r, 10) < 0.01
    s = TrainRecipe(epochs=10, schedule="step", milestones=[3, 6], gamma=0.1)
    got = [lr_factor(e * 10, s, 10) for e in (0, 2, 3, 5, 6, 9)]
    assert got == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(57, TrainRecipe(epochs=10, schedule="constant"), 10) == 1.0


# ------------------------------------------------------------------------------------ training

def _recipe(**kw) -> TrainRecipe:
    base = dict(epochs=3, batch_size=16, optimizer="adam", lr=0.01, weight_decay=0.0, seed=5,
                augment=Augment(crop_scale=(0.7, 1.0), flip=True, color_jitter=0.1))
    base.update(kw)
    return TrainRecipe(**base)


def test_training_is_deterministic_and_learns():
    ds = colour_dataset()
    test = colour_dataset(seed=1)
    runs = []
    for _ in range(2):
        model = build_classifier("compact_resnet", 4, 16, TINY, seed=0)
        runs.append(train_classifier(model, ds, test, _recipe(), progress=False))
    a, b = (r.model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].natural_accuracy == runs[1].natural_accuracy
    assert runs[0].natural_accuracy >= 0.75  # colours are trivially separable; chance is 0.25
    assert len(runs[0].history) == 3 and {"loss", "train_acc", "lr", "epoch"} <= set(runs[0].history[0])
    other = train_classifier(build_classifier("compact_resnet", 4, 16, TINY, seed=0), ds, test,
                             _recipe(seed=6), progress=False)
    c = other.model.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)
    summary = runs[0].summary()
    assert summary["epochs"] == 3 and summary["natural_accuracy"] == runs[0].natural_accuracy


def test_labels_must_fit_the_model():
    ds = colour_dataset(n_per_class=4, classes=4)
    with pytest.raises(DataError, match="model has 3 classes"):
        train_classifier(build_classifier("compact_resnet", 3, 16, TINY), ds, None, _recipe(), progress=False)


def test_keep_best_and_evaluate_accuracy():
    ds = colour_dataset(n_per_class=8)
    model = build_classifier("compact_resnet", 4, 16, TINY, seed=0)
    res = train_classifier(model, ds, ds, _recipe(epochs=2, optimizer="sgd", lr=0.05), progress=False,
                           keep_best=True)
    assert res.best_state is not None and res.best_accuracy == max(h["test_acc"] for h in res.history)
    assert res.natural_accuracy == evaluate_accuracy(res.model, ds)
    assert not res.model.training


def test_evaluate_accuracy_counts_correct():
    ds = colour_dataset(n_per_class=4, classes=4)

    class Always2(torch.nn.Module):
        def forward(self, x):
            out = torch.zeros(x.shape[0], 4)
            out[:, 2] = 1
            return out

    assert evaluate_accuracy(Always2(), ds, batch_size=3) == pytest.approx(0.25)
