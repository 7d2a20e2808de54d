"""Tests of mibench.metrics: hand-computed cases, brute-force references, and the weights-loading paths."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mibench.errors import CheckpointError, DataError
from mibench.metrics import (
    FaceNetFeatures,
    InceptionFeatures,
    MetricUnavailable,
    attack_accuracy,
    extract_features,
    facenet_distance,
    feature_stats,
    fid_from_features,
    frechet_distance,
    knn_distance,
    knowledge_extraction_score,
    per_class_accuracy,
    prdc,
    prdc_per_class,
    topk_correct,
)
from mibench.registry import METRICS


def _t(values) -> torch.Tensor:
    """A float64 (N, D) tensor from nested lists (1-D lists become (N, 1))."""
    t = torch.tensor(values, dtype=torch.float64)
    return t.unsqueeze(1) if t.ndim == 1 else t


# --------------------------------------------------------------------------------------------- accuracy

def test_topk_correct_hand_cases():
    logits = torch.tensor([[3.0, 1.0, 2.0],   # target 0 is the best → top-1
                           [0.0, 5.0, 1.0],   # target 2 is second → top-2 only
                           [1.0, 1.0, 0.0],   # target 1 ties with class 0 → counted top-1 (ties favour target)
                           [0.0, 1.0, 2.0]])  # target 0 is last → top-3 only
    targets = torch.tensor([0, 2, 1, 0])
    got = topk_correct(logits, targets, ks=(1, 2, 3, 5))
    assert got[1].tolist() == [True, False, True, False]
    assert got[2].tolist() == [True, True, True, False]
    assert got[3].tolist() == [True, True, True, True]
    assert got[5].tolist() == [True, True, True, True]  # fewer classes than k: always correct
    acc = attack_accuracy(logits, targets, ks=(1, 2))
    assert acc == {"acc@1": 0.5, "acc@2": 0.75}
    per = per_class_accuracy(logits, targets, ks=(1, 2))
    assert per == {0: {"acc@1": 0.5, "acc@2": 0.5, "n": 2},
                   1: {"acc@1": 1.0, "acc@2": 1.0, "n": 1},
                   2: {"acc@1": 0.0, "acc@2": 1.0, "n": 1}}


def test_topk_matches_torch_topk_without_ties():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 17, generator=g)
    targets = torch.randint(0, 17, (200,), generator=g)
    got = topk_correct(logits, targets, ks=(1, 5))
    for k in (1, 5):
        ref = (logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1)
        assert torch.equal(got[k], ref)


def test_accuracy_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        attack_accuracy(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="targets must lie"):
        attack_accuracy(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="logits must be"):
        attack_accuracy(torch.zeros(3), torch.tensor([0, 1, 2]))


# --------------------------------------------------------------------------------------------- KNN

def _knn_brute(fake, fake_labels, real, real_labels):
    """Reference: explicit double loop over reconstructions and same-class private samples."""
    out = []
    for i in range(fake.shape[0]):
        best = math.inf
        for j in range(real.shape[0]):
            if int(real_labels[j]) == int(fake_labels[i]):
                d = float(((fake[i].double() - real[j].double()) ** 2).sum())
                best = min(best, d)
        out.append(best)
    return torch.tensor(out, dtype=torch.float64)


def test_knn_distance_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(40, 6, generator=g)
    real_labels = torch.arange(40) % 4  # classes 0..3, class 0 included
    fake = torch.randn(25, 6, generator=g)
    fake_labels = torch.randint(0, 4, (25,), generator=g)
    ref = _knn_brute(fake, fake_labels, real, real_labels)
    for chunk in (3, 1024):
        got = knn_distance(fake, fake_labels, real, real_labels, chunk=chunk)
        assert got.dtype == torch.float64 and got.shape == (25,)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_knn_distance_hand_case_and_same_class_only():
    # class 0 reals at 0 and 10, class 1 real at 1; fake of class 0 at 2 → nearest same-class is 0 (d²=4),
    # even though the class-1 real at 1 is closer (d²=1).
    real, real_labels = _t([0.0, 10.0, 1.0]), torch.tensor([0, 0, 1])
    fake, fake_labels = _t([2.0, 7.0]), torch.tensor([0, 1])
    assert knn_distance(fake, fake_labels, real, real_labels).tolist() == [4.0, 36.0]


def test_knn_distance_no_cancellation_with_large_offsets():
    # float32 features sharing a large offset: a naive float32 ‖a‖²+‖b‖²−2ab loses every digit here.
    g = torch.Generator().manual_seed(2)
    base = torch.full((1, 64), 3.0e4)
    real = (base + torch.randn(30, 64, generator=g) * 1e-2).float()
    fake = (base + torch.randn(10, 64, generator=g) * 1e-2).float()
    real_labels, fake_labels = torch.zeros(30, dtype=torch.long), torch.zeros(10, dtype=torch.long)
    ref = _knn_brute(fake, fake_labels, real, real_labels)
    got = knn_distance(fake, fake_labels, real, real_labels)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=0.0)


def test_knn_distance_missing_class_is_a_clear_error():
    with pytest.raises(DataError, match="class 5 has no private training images"):
        knn_distance(torch.zeros(2, 3), torch.tensor([0, 5]), torch.zeros(4, 3), torch.tensor([0, 0, 1, 1]))


# --------------------------------------------------------------------------------------------- PRDC

def test_prdc_hand_example_k1():
    # 1-D, k=1. Reals {0, 1, 3, 20}: 1-NN radii 1, 1, 2, 17. Fakes {0.5, 2.5, 40}: 1-NN radii 2, 2, 37.5.
    # Distances real×fake:  r0: .5 2.5 40 | r1: .5 1.5 39 | r3: 2.5 .5 37 | r20: 19.5 17.5 20
    # precision: 0.5 ∈ B(0,1); 2.5 ∈ B(3,2); 40 in no real ball (20 ≥ 17)        → 2/3
    # recall:    0, 1, 3 lie within 2 of 0.5 or 2.5; 20 lies in B(40, 37.5)         → 1
    # density:   #real balls holding each fake: 0.5 → {0,1} = 2; 2.5 → {3} = 1; 40 → 0; mean 1, /k → 1
    # coverage:  nearest fake of 0, 1, 3 is inside their balls; of 20 at 17.5 ≥ 17 → 3/4
    got = prdc(_t([0.0, 1.0, 3.0, 20.0]), _t([0.5, 2.5, 40.0]), k=1)
    assert got == pytest.approx({"precision": 2 / 3, "recall": 1.0, "density": 1.0, "coverage": 0.75})


def test_prdc_hand_example_k2():
    # 1-D, k=2. Reals {0, 1, 2, 4, 8}: 2nd-NN radii 2, 1, 2, 3, 6.
    # Fakes {1.5, 5, 9, 30}: 2nd-NN radii 7.5, 4, 7.5, 25.
    # precision: 1.5 ∈ B(0,2); 5 ∈ B(4,3); 9 ∈ B(8,6); 30 in none               → 3/4
    # density:   1.5 in balls of 0,1,2,4 (4); 5 in 4,8 (2); 9 in 8 (1); 30 (0)   → (7/4)/2 = 7/8
    # recall:    every real is within 7.5 of 1.5 or within 7.5 of 9               → 1
    # coverage:  nearest fakes 1.5,1.5,1.5,5,9 at 1.5,.5,.5,1,1 are inside radii  → 1
    got = prdc(_t([0.0, 1.0, 2.0, 4.0, 8.0]), _t([1.5, 5.0, 9.0, 30.0]), k=2)
    assert got == pytest.approx({"precision": 0.75, "recall": 1.0, "density": 7 / 8, "coverage": 1.0})


def test_prdc_ball_membership_is_strict():
    # k=1, reals {0, 2}: radii 2, 2. Fakes {4, 10}: radii 6, 6. Fake 4 sits exactly on the boundary of B(2, 2):
    # strict "<" (as in the reference implementation) leaves it out.
    got = prdc(_t([0.0, 2.0]), _t([4.0, 10.0]), k=1)
    assert got == {"precision": 0.0, "recall": 1.0, "density": 0.0, "coverage": 0.0}


def _prdc_brute(real, fake, k):
    """Reference PRDC straight from the definitions with Python loops over points."""
    r = [tuple(map(float, x)) for x in real]
    f = [tuple(map(float, x)) for x in fake]

    def kth(points, i):
        return sorted(math.dist(points[i], p) for j, p in enumerate(points) if j != i)[k - 1]

    rr = [kth(r, i) for i in range(len(r))]
    fr = [kth(f, j) for j in range(len(f))]
    hits = [sum(math.dist(r[i], f[j]) < rr[i] for i in range(len(r))) for j in range(len(f))]
    return {
        "precision": sum(h > 0 for h in hits) / len(f),
        "recall": sum(any(math.dist(r[i], f[j]) < fr[j] for j in range(len(f))) for i in range(len(r))) / len(r),
        "density": sum(hits) / (k * len(f)),
        "coverage": sum(min(math.dist(r[i], fj) for fj in f) < rr[i] for i in range(len(r))) / len(r),
    }


def test_prdc_matches_brute_force_2d_k3_and_is_chunk_invariant():
    g = torch.Generator().manual_seed(3)
    real = torch.randn(30, 2, generator=g)
    fake = torch.cat([torch.randn(20, 2, generator=g) * 0.6 + 1.0, torch.randn(5, 2, generator=g) + 5.0])
    ref = _prdc_brute(real, fake, 3)
    assert 0 < ref["precision"] < 1 and 0 < ref["recall"] < 1 and 0 < ref["coverage"] < 1
    for chunk in (4, 2048):
        assert prdc(real, fake, k=3, chunk=chunk) == pytest.approx(ref, abs=1e-12)


def test_prdc_needs_more_than_k_samples():
    with pytest.raises(MetricUnavailable, match="got 3 real and 10 fake"):
        prdc(torch.randn(3, 2), torch.randn(10, 2), k=3)


def _classes_data():
    """Three classes (0, 1, 2) of 2-D features. Class 0 fakes are far away (precision 0), class 1 fakes
    coincide with their reals (precision 1), class 2 is not attacked."""
    g = torch.Generator().manual_seed(4)
    reals, real_labels, fakes, fake_labels = [], [], [], []
    for c, shift in ((0, 50.0), (1, 0.0), (2, 9.0)):
        r = torch.randn(8, 2, generator=g) + 10.0 * c
        reals.append(r)
        real_labels += [c] * 8
        fakes.append(r[:6] + shift)
        fake_labels += [c] * 6
    return torch.cat(reals), torch.tensor(real_labels), torch.cat(fakes), torch.tensor(fake_labels)


def test_prdc_per_class_includes_class_0_and_only_requested_classes():
    real, rl, fake, fl = _classes_data()
    got = prdc_per_class(real, rl, fake, fl, classes=[0, 1], k=3)
    c0 = prdc(real[rl == 0], fake[fl == 0], k=3)
    c1 = prdc(real[rl == 1], fake[fl == 1], k=3)
    assert c0["precision"] == 0.0 and c1["precision"] == 1.0
    assert set(got["per_class"]) == {0, 1} and got["num_classes"] == 2 and got["skipped_classes"] == []
    for key in ("precision", "recall", "density", "coverage"):
        assert got[key] == pytest.approx((c0[key] + c1[key]) / 2)
    assert got["precision"] == pytest.approx(0.5)  # dropping class 0 (the published bug) would give 1.0
    # default classes: those present among the reconstructions (all three here)
    assert set(prdc_per_class(real, rl, fake, fl, k=3)["per_class"]) == {0, 1, 2}


def test_prdc_per_class_small_classes_error_or_skip():
    real, rl, fake, fl = _classes_data()
    keep = ~((fl == 1) & (torch.arange(fl.shape[0]) % 6 >= 2))  # class 1 keeps only 2 reconstructions
    fake, fl = fake[keep], fl[keep]
    with pytest.raises(MetricUnavailable, match="class 1 has 8 private and 2 reconstructed"):
        prdc_per_class(real, rl, fake, fl, classes=[0, 1], k=3)
    got = prdc_per_class(real, rl, fake, fl, classes=[0, 1], k=3, skip_small=True)
    assert got["skipped_classes"] == [1] and set(got["per_class"]) == {0} and got["precision"] == 0.0
    with pytest.raises(MetricUnavailable, match="every class"):
        prdc_per_class(real, rl, fake, fl, classes=[1], k=3, skip_small=True)


# --------------------------------------------------------------------------------------------- FID

def test_feature_stats_hand_case():
    mu, sigma = feature_stats(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]))
    # mean (1, 1); var = (1+1+1+1)/(4−1) = 4/3 per axis; covariance Σ(±1)(±1) = 0
    assert mu.dtype == np.float64 and sigma.shape == (2, 2)
    np.testing.assert_allclose(mu, [1.0, 1.0])
    np.testing.assert_allclose(sigma, [[4 / 3, 0.0], [0.0, 4 / 3]])
    with pytest.raises(MetricUnavailable, match="at least 2"):
        feature_stats(torch.zeros(1, 3))


def test_frechet_distance_closed_forms():
    # 1-D: (μ1−μ2)² + (σ1−σ2)² = 9 + (2−1)² = 10
    assert frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(10.0)
    # diagonal: ‖Δμ‖² + Σ(√a − √b)² = (1 + 4) + ((3−1)² + (2−2)² + (1−4)²) = 5 + 13 = 18
    fd = frechet_distance(np.array([1.0, 0.0, 2.0]), np.diag([9.0, 4.0, 1.0]),
                          np.array([0.0, 0.0, 0.0]), np.diag([1.0, 4.0, 16.0]))
    assert fd == pytest.approx(18.0)
    # Σ1 = I vs a rotated Σ2 = Q diag(l) Qᵀ: tr I + Σl − 2Σ√l (the product does not commute with a diagonal)
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    lam = np.array([0.25, 1.0, 4.0, 9.0])
    s2 = q @ np.diag(lam) @ q.T
    expected = 4 + lam.sum() - 2 * np.sqrt(lam).sum()  # = 4 + 14.25 − 2·6.5 = 5.25
    assert frechet_distance(np.zeros(4), np.eye(4), np.zeros(4), s2) == pytest.approx(expected)
    assert expected == pytest.approx(5.25)


def test_fid_of_a_set_with_itself_is_zero():
    g = torch.Generator().manual_seed(5)
    full_rank = torch.randn(60, 5, generator=g)
    assert abs(fid_from_features(full_rank, full_rank)) < 1e-8
    singular = torch.randn(5, 12, generator=g)  # N < D: singular covariance, exercises the offset path
    assert abs(fid_from_features(singular, singular)) < 1e-4


def test_fid_of_samples_approaches_gaussian_closed_form():
    rng = np.random.default_rng(6)
    a = rng.normal(0.0, 1.0, size=(20000, 2))
    b = rng.normal([1.0, -1.0], [2.0, 0.5], size=(20000, 2))
    # closed form: ‖Δμ‖² = 2; Σ(σa−σb)² = (1−2)² + (1−0.5)² = 1.25 → 3.25
    assert fid_from_features(a, b) == pytest.approx(3.25, abs=0.05)
    assert fid_from_features(a, b) == pytest.approx(fid_from_features(b, a), rel=1e-9)


def test_frechet_distance_rejects_invalid_covariance():
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance([0.0, 0.0], np.diag([1.0, -1.0]), [0.0, 0.0], np.eye(2))


# --------------------------------------------------------------------------------------------- extract_features

def test_extract_features_batches_and_converts_uint8():
    imgs = torch.randint(0, 256, (7, 3, 4, 4), dtype=torch.uint8)

    def mean_rgb(x):
        assert x.dtype == torch.float32 and float(x.max()) <= 1.0
        return x.mean(dim=(2, 3))

    a = extract_features(mean_rgb, imgs, batch_size=3)
    b = extract_features(mean_rgb, imgs.float() / 255.0, batch_size=100)
    assert a.shape == (7, 3)
    torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------------------------- extractors

@pytest.fixture
def no_weights_env(monkeypatch, tmp_path):
    """No weights configured anywhere (env vars unset, torch caches pointed at an empty folder)."""
    monkeypatch.delenv("MIBENCH_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("MIBENCH_FACENET_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """A randomly initialised state dict in the format of pytorch-fid's pt_inception file."""
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    path = tmp_path_factory.mktemp("inception") / "random_inception.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def facenet_weights(tmp_path_factory):
    """A randomly initialised InceptionResnetV1 state dict, with a classification head as in the VGGFace2 file."""
    from facenet_pytorch import InceptionResnetV1
    torch.manual_seed(0)
    net = InceptionResnetV1(pretrained=None, classify=True, num_classes=7)
    path = tmp_path_factory.mktemp("facenet") / "random_facenet.pt"
    torch.save(net.state_dict(), path)
    return path


def test_extractors_without_weights_are_unavailable(no_weights_env):
    with pytest.raises(MetricUnavailable, match="MIBENCH_INCEPTION_WEIGHTS") as exc:
        InceptionFeatures()
    assert "Inception" in exc.value.reason and "pt_inception-2015-12-05-6726825d.pth" in exc.value.reason
    with pytest.raises(MetricUnavailable, match="MIBENCH_FACENET_WEIGHTS"):
        FaceNetFeatures()


def test_extractors_missing_file_names_the_path(no_weights_env, monkeypatch):
    missing = no_weights_env / "nope.pth"
    monkeypatch.setenv("MIBENCH_INCEPTION_WEIGHTS", str(missing))
    with pytest.raises(MetricUnavailable, match="nope.pth"):
        InceptionFeatures()
    with pytest.raises(MetricUnavailable, match="nope.pth"):
        FaceNetFeatures(missing)


def test_inception_loads_local_weights_and_normalises_once(inception_weights, no_weights_env, monkeypatch,
                                                           no_network):
    monkeypatch.setenv("MIBENCH_INCEPTION_WEIGHTS", str(inception_weights))
    ext = InceptionFeatures()
    assert not ext.training and ext.weights_path == inception_weights
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    feats = extract_features(ext, x, batch_size=2)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    # the network resizes to 299 and maps [0, 1] → [−1, 1] itself, exactly once
    with torch.no_grad():
        h = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        for block in ext.net.blocks:
            h = block(h)
    torch.testing.assert_close(feats, h.flatten(1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ext(x * 2 - 1)  # generator-range input is refused, not silently mis-scaled


def test_inception_rejects_wrong_weights(facenet_weights, tmp_path):
    with pytest.raises(CheckpointError, match="do not match pytorch-fid's Inception-v3"):
        InceptionFeatures(facenet_weights)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="could not read"):
        InceptionFeatures(garbage)
    pickled_code = tmp_path / "code.pth"
    torch.save({"weight": torch.zeros(1), "payload": _NotATensor()}, pickled_code)
    with pytest.raises(CheckpointError, match="could not read"):  # weights_only=True refuses it
        InceptionFeatures(pickled_code)


class _NotATensor:
    """An arbitrary pickled object that a weights-only load must refuse."""


def test_facenet_loads_local_weights(facenet_weights, no_weights_env, no_network, tmp_path):
    ext = FaceNetFeatures(facenet_weights)  # the 'logits.*' head in the file is dropped
    ext.train()
    assert not ext.training  # stays in eval mode
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    feats = extract_features(ext, x, batch_size=1)
    assert feats.shape == (2, 512)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(2))
    # preprocessing: resize to 160 then (x·255 − 127.5)/128, applied once
    with torch.no_grad():
        ref = ext.net((F.interpolate(x, size=(160, 160), mode="bilinear", align_corners=False,
                                     antialias=True) * 255 - 127.5) / 128)
    torch.testing.assert_close(feats, ref)
    # the same weights as safetensors give the same embeddings
    from safetensors.torch import save_file
    st = tmp_path / "facenet.safetensors"
    save_file({k: v.contiguous() for k, v in torch.load(facenet_weights, weights_only=True).items()}, str(st))
    torch.testing.assert_close(extract_features(FaceNetFeatures(st), x), feats)


def test_facenet_rejects_wrong_weights(facenet_weights, tmp_path):
    state = torch.load(facenet_weights, weights_only=True)
    del state["last_bn.running_mean"]
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    with pytest.raises(CheckpointError, match="last_bn.running_mean"):
        FaceNetFeatures(broken)
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(CheckpointError, match="does not match the network"):
        FaceNetFeatures(wrong)


def test_facenet_distance_is_knn_in_facenet_features(facenet_weights):
    ext = FaceNetFeatures(facenet_weights)
    g = torch.Generator().manual_seed(2)
    real = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8, generator=g)
    fake = real[[0, 3]].float() / 255.0  # exact copies of private images → distance 0
    got = facenet_distance(ext, fake, torch.tensor([0, 1]), real, torch.tensor([0, 0, 1, 1]), batch_size=3)
    assert got.shape == (2,)
    torch.testing.assert_close(got, torch.zeros(2, dtype=torch.float64), atol=1e-10, rtol=0)


# --------------------------------------------------------------------------------------------- knowledge extraction

def _coloured(labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """8×8 images whose mean colour encodes the class (class c → channel c bright), plus noise."""
    imgs = torch.rand(labels.shape[0], 3, 8, 8, generator=g) * 0.3
    imgs[torch.arange(labels.shape[0]), labels] += 0.6
    return imgs


def test_knowledge_extraction_score_learns_and_is_deterministic():
    g = torch.Generator().manual_seed(7)
    train_labels = torch.tensor([0, 2] * 15)  # attacked classes 0 and 2
    test_labels = torch.tensor([0, 1, 2] * 10)  # class 1 was not attacked: ignored

    def make_model(num_classes: int) -> torch.nn.Module:
        assert num_classes == 2
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, num_classes))

    args = (make_model, _coloured(train_labels, g), train_labels, _coloured(test_labels, g), test_labels)
    score = knowledge_extraction_score(*args, epochs=15, batch_size=8, lr=1e-2, seed=3)
    assert score > 0.9
    assert knowledge_extraction_score(*args, epochs=15, batch_size=8, lr=1e-2, seed=3) == score
    # reconstructions carrying no class information give chance-level accuracy
    shuffled = train_labels[torch.randperm(30, generator=g)]
    noise = torch.rand(30, 3, 8, 8, generator=g)
    chance = knowledge_extraction_score(make_model, noise, shuffled, args[3], test_labels, epochs=15,
                                        batch_size=8, lr=1e-2, seed=3)
    assert chance < 0.8


# --------------------------------------------------------------------------------------------- registry

def test_metrics_are_registered_with_descriptions():
    from mibench.metrics.base import all_columns

    expected = {"acc@1", "acc@5", "knn_dist", "facenet_dist", "fid", "fid_eval", "precision", "recall", "density",
                "coverage", "knowledge_extraction"}
    assert expected <= {c.name for c in all_columns(METRICS.names())}
    for name in METRICS.names():
        kind = METRICS.get(name)
        assert METRICS.meta(name)["description"] and kind.columns and kind.scope in ("class", "run")
        assert all(c.more_leakage in ("higher", "lower") for c in kind.columns)
    assert not METRICS.get("knowledge_extraction").default  # computed on request only
