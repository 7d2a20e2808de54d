"""synthfaces: determinism, chunk invariance, disjoint populations, splits, presets and the on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mibench.data.synthfaces as sf
from mibench.data import load_dataset
from mibench.errors import DataError
from mibench.registry import DATASETS

TINY = {"num_private": 3, "train_per_class": 4, "test_per_class": 2, "num_public": 4,
        "public_per_identity": 2, "num_shifted": 3, "shifted_per_identity": 2}


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    """Every test gets an empty cache folder."""
    monkeypatch.setenv("MIBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _render(seed=0, population="private", resolution=24, **kw):
    ids = np.array([0, 0, 1, 2, 2, 5, 7])
    idx = np.array([0, 1, 0, 3, 4, 0, 9])
    return sf.render_identities(ids, idx, resolution=resolution, seed=seed, population=population, **kw)


# ------------------------------------------------------------------------------------ rendering


def test_same_seed_same_bytes_different_seed_differs():
    a, b = _render(seed=0), _render(seed=0)
    assert torch.equal(a, b)
    c = _render(seed=1)
    assert c.shape == a.shape
    # Every image changes with the seed (not just a few pixels).
    assert all(not torch.equal(a[i], c[i]) for i in range(len(a)))


def test_chunk_size_and_workers_do_not_change_any_byte():
    ref = _render(chunk_size=7, workers=1)
    for chunk, workers in [(1, 1), (2, 2), (3, 2), (5, 1)]:
        assert torch.equal(_render(chunk_size=chunk, workers=workers), ref), (chunk, workers)


def test_image_does_not_depend_on_its_batch_mates():
    ref = _render()
    alone = sf.render_identities([2], [4], resolution=24)  # row 4 of `_render` rendered on its own
    assert torch.equal(alone[0], ref[4])
    # Painted (shifted) and plain faces mixed in one chunk render as they do separately.
    attrs = sf.take_rows({k: np.concatenate([v, w]) for (k, v), w in zip(
        sf.identity_attributes([0], population="private").items(),
        sf.identity_attributes([0], population="shifted").values())}, [0, 1])
    mixed = sf.render(attrs, [3, 3], resolution=24)
    assert torch.equal(mixed[0], sf.render_identities([0], [3], resolution=24)[0])
    assert torch.equal(mixed[1], sf.render_identities([0], [3], resolution=24, population="shifted")[0])


@pytest.mark.parametrize("resolution", [17, 32, 48])
def test_any_resolution_gives_uint8_images_with_content(resolution):
    imgs = _render(resolution=resolution)
    assert imgs.dtype == torch.uint8 and imgs.shape == (7, 3, resolution, resolution)
    flat = imgs.float().flatten(1)
    assert (flat.std(1) > 10).all()  # not blank
    assert flat.max() > 150 and flat.min() < 100


def test_images_of_one_identity_vary():
    imgs = sf.render_identities([4] * 6, range(6), resolution=32).float()
    diffs = [(imgs[i] - imgs[j]).abs().mean() for i in range(6) for j in range(i + 1, 6)]
    assert min(diffs) > 5  # every pair differs visibly (pose, light, background)


def test_counter_rng_is_stable_and_uniform():
    h = sf.hash_keys(np.arange(20000), 7)
    assert h.dtype == np.uint64 and len(np.unique(h)) == 20000
    assert np.array_equal(h, sf.hash_keys(np.arange(20000), 7))
    u = (h >> np.uint64(11)).astype(np.float64) / (1 << 53)
    assert abs(u.mean() - 0.5) < 0.01 and u.min() >= 0 and u.max() < 1


# ------------------------------------------------------------------------------------ identities


def test_populations_are_disjoint():
    priv = sf.attribute_matrix(sf.identity_attributes(np.arange(100), population="private"))
    pub = sf.attribute_matrix(sf.identity_attributes(np.arange(1000), population="public"))
    shf = sf.attribute_matrix(sf.identity_attributes(np.arange(1000), population="shifted"))
    for other in (pub, shf):
        same = (priv[:, None, :] == other[None, :, :]).all(-1)
        assert not same.any()
        # Not even the continuous part of any private identity reappears.
        nc = len(sf.CATEGORICAL)
        assert not (priv[:, None, nc:] == other[None, :, nc:]).all(-1).any()
    assert len(np.unique(priv, axis=0)) == 100


def test_no_single_attribute_identifies_an_identity():
    attrs = sf.identity_attributes(np.arange(100))
    for name in sf.CATEGORICAL:
        counts = np.bincount(attrs[name])
        assert counts.max() >= 5, name  # every common value is shared by many identities
    # Per-image jitter is large compared with the gap between identities on any continuous attribute.
    rows = np.repeat(np.arange(100), 5)
    seen = sf.image_attributes(sf.take_rows(attrs, rows), np.tile(np.arange(5), 100))
    for name in sf.CONTINUOUS:
        gap = np.median(np.diff(np.sort(attrs[name])))
        jitter = np.std(seen[name] - attrs[name][rows])
        assert jitter > 2 * gap, name


def test_public_covers_the_private_attribute_distribution():
    priv = sf.identity_attributes(np.arange(2000), population="private")
    pub = sf.identity_attributes(np.arange(2000), population="public")
    for name in sf.CATEGORICAL:
        k = max(priv[name].max(), pub[name].max()) + 1
        p, q = np.bincount(priv[name], minlength=k) / 2000, np.bincount(pub[name], minlength=k) / 2000
        assert np.abs(p - q).max() < 0.05, name
    for name in sf.CONTINUOUS:
        assert abs(priv[name].mean() - pub[name].mean()) < 0.05 * (priv[name].max() - priv[name].min()), name


def test_describe_identity_names_palette_entries():
    d = sf.describe_identity(5)
    assert d["identity"] == 5 and d["population"] == "private"
    assert d["hair_style"] in sf.HAIR_STYLES and d["glasses"] in sf.GLASSES
    assert d["hair_colour"] in sf.HAIR_NAMES and isinstance(d["face_w"], float)
    assert sf.describe_identity(5) == d
    assert sf.describe_identity(5, population="public") != d
    with pytest.raises(DataError, match="unknown population"):
        sf.describe_identity(5, population="privat")


# ------------------------------------------------------------------------------------ dataset


def test_private_splits_shapes_labels_and_names():
    train = load_dataset("synthfaces32", "private-train", **TINY)
    test = load_dataset("synthfaces32", "private-test", **TINY)
    assert len(train) == 12 and len(test) == 6
    assert train.class_names == ["id000", "id001", "id002"] == test.class_names
    assert train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    x, y = train[5]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1 and y == 1
    imgs, _ = train.load_tensors()
    assert imgs.dtype == torch.uint8 and train.resolution == 32
    # Test images are other images of the same identities, never copies of training images.
    timgs, _ = test.load_tensors()
    assert not (timgs.flatten(1)[:, None] == imgs.flatten(1)[None]).all(-1).any()
    # The dataset is the plain renderer's output (image indices 0.. for train, offset for test).
    assert torch.equal(imgs[4], sf.render_identities([1], [0], resolution=32)[0])
    assert torch.equal(timgs[0], sf.render_identities([0], [sf.TEST_OFFSET], resolution=32)[0])


def test_more_train_images_keep_the_existing_ones():
    small = load_dataset("synthfaces32", "private-train", **TINY).load_tensors()[0]
    big = load_dataset("synthfaces32", "private-train", **{**TINY, "train_per_class": 6}).load_tensors()[0]
    assert torch.equal(big[6:10], small[4:8])


def test_public_splits_are_labelled_and_disjoint_from_private():
    pub = load_dataset("synthfaces32", "public", **TINY)
    shf = load_dataset("synthfaces32", "public-shifted", **TINY)
    assert pub.class_names == ["pub0000", "pub0001", "pub0002", "pub0003"]
    assert pub.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert shf.class_names[0] == "shf0000" and len(shf) == 6 and shf.num_classes == 3
    priv = load_dataset("synthfaces32", "private-train", **TINY).load_tensors()[0]
    assert not torch.equal(pub.load_tensors()[0][0], priv[0])


def test_resolution_presets_and_registry_metadata():
    assert set(DATASETS.meta("synthfaces32")["splits"]) == set(sf.SPLITS)
    ds64 = load_dataset("synthfaces64", "private-test", **TINY)
    assert ds64.resolution == 64 and ds64.load_tensors()[0].shape == (6, 3, 64, 64)
    ds40 = load_dataset("synthfaces32", "private-test", resolution=40, **TINY)
    assert ds40.resolution == 40
    # root is ignored: nothing is read from disk.
    assert len(DATASETS.get("synthfaces32")("private-test", "/nonexistent", **TINY)) == 6


def test_unknown_split_and_bad_params_raise_clear_errors():
    with pytest.raises(DataError, match="no split 'privat-train'.*did you mean 'private-train'"):
        load_dataset("synthfaces32", "privat-train", **TINY)
    with pytest.raises(DataError, match="no split 'train'"):
        sf.synthfaces32("train", **TINY)
    with pytest.raises(DataError, match="no parameter 'num_privat'.*did you mean 'num_private'"):
        load_dataset("synthfaces32", "private-train", num_privat=3)
    with pytest.raises(DataError, match="'train_per_class' must be at least 1"):
        load_dataset("synthfaces32", "private-train", train_per_class=0)
    with pytest.raises(DataError, match="'seed' must be an integer"):
        load_dataset("synthfaces32", "private-train", seed="0")


# ------------------------------------------------------------------------------------ cache


def test_cache_round_trip_reuses_the_file(tmp_cache, monkeypatch):
    first = load_dataset("synthfaces32", "private-train", **TINY).load_tensors()
    files = list((tmp_cache / "synthfaces").glob("*.safetensors"))
    assert len(files) == 1 and files[0].name.startswith("private-train-32px-")

    def boom(*a, **k):
        raise AssertionError("re-rendered although the cache is valid")

    monkeypatch.setattr(sf, "render_split", boom)
    again = load_dataset("synthfaces32", "private-train", **TINY).load_tensors()
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_cache_key_covers_params_of_the_split():
    p = sf.check_params("synthfaces32", TINY)
    q = sf.check_params("synthfaces32", {**TINY, "seed": 1})
    assert sf.cache_artifact("private-train", p).stem != sf.cache_artifact("private-train", q).stem
    r = sf.check_params("synthfaces32", {**TINY, "num_public": 9})
    assert sf.cache_artifact("private-train", p).stem == sf.cache_artifact("private-train", r).stem
    assert sf.cache_artifact("public", p).stem != sf.cache_artifact("public", r).stem


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_cache_is_one_clear_error_and_rendered_again_once_deleted(tmp_cache, damage):
    from mibench.errors import CheckpointError

    ref = load_dataset("synthfaces32", "private-test", **TINY).load_tensors()[0]
    path = next((tmp_cache / "synthfaces").glob("*.safetensors"))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-100] ^= 0xFF  # inside the image bytes: only the checksum can tell
    else:
        data = bytearray(b"not a safetensors file")
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged") as err:
        load_dataset("synthfaces32", "private-test", **TINY).load_tensors()
    assert str(path) in str(err.value) and "delete" in str(err.value)
    sf.cache_artifact("private-test", sf.check_params("x", TINY)).discard()
    again = load_dataset("synthfaces32", "private-test", **TINY).load_tensors()[0]
    assert torch.equal(again, ref)
