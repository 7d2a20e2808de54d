"""Real-dataset loaders (CelebA, FaceScrub, Stanford Dogs, ImageFolder, unlabelled folders) on tiny
fixture trees generated in tmp_path in each dataset's real layout, and every bad-input error."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from mibench.data import load_dataset
from mibench.errors import DataError
from mibench.registry import DATASETS

# ---------------------------------------------------------------------------------------------- fixtures


def colour_of(key: int) -> tuple[int, int, int]:
    """A distinct flat colour per integer key (so a loaded image reveals which file/class it came from)."""
    return (40 + (key * 53) % 200, 40 + (key * 97) % 200, 40 + (key * 31) % 200)


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (10, 8)) -> Path:
    """A flat-colour image (format from the suffix) at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def mean_colour(img: torch.Tensor) -> tuple[int, int, int]:
    """Mean RGB in 0..255 of a float image (3, H, W)."""
    return tuple(int(round(v)) for v in (img.mean(dim=(1, 2)) * 255).tolist())


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 6) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


# identity id -> number of images; with num_identities=3 the private set is {3, 10} (5 images each) and,
# of the 4-image tie {7, 20}, the lower id 7.
CELEBA_COUNTS = {10: 5, 3: 5, 7: 4, 20: 4, 1: 2, 5: 1}


def make_celeba(root: Path, variant: str = "flat", suffix: str = ".jpg") -> Path:
    img_dir = root / ("Img/img_align_celeba" if variant == "anno" else "img_align_celeba")
    anno_dir = root / "Anno" if variant == "anno" else root
    anno_dir.mkdir(parents=True, exist_ok=True)
    lines, n = [], 0
    # Interleave identities so file order differs from identity order.
    pending = dict(CELEBA_COUNTS)
    while any(pending.values()):
        for ident in CELEBA_COUNTS:
            if pending[ident]:
                n += 1
                pending[ident] -= 1
                name = f"{n:06d}.jpg"
                write_image((img_dir / name).with_suffix(suffix), colour_of(ident))
                lines.append(f"{name} {ident}")
    (anno_dir / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def celeba_root(tmp_path: Path) -> Path:
    return make_celeba(tmp_path / "celeba")


FACESCRUB = {"actors": {"Aaron_Eckhart": 6, "Adam_Brody": 4}, "actresses": {"Adrianne_Leon": 5}}


def make_facescrub(root: Path, faces_subdir: bool = True) -> Path:
    for k, (group, people) in enumerate(FACESCRUB.items()):
        for j, (name, count) in enumerate(people.items()):
            folder = root / group / "faces" / name if faces_subdir and group == "actors" else root / group / name
            for i in range(count):
                write_image(folder / f"{name}_{i}.jpg", colour_of(10 * k + j))
    return root


DOG_BREEDS = {"n02085620-Chihuahua": 5, "n02085782-Japanese_spaniel": 4, "n02088364-beagle": 3}


def make_dogs(root: Path, lists_in: str | None = "lists") -> tuple[Path, list[str], list[str]]:
    train, test = [], []
    for c, (breed, count) in enumerate(DOG_BREEDS.items()):
        for i in range(count):
            rel = f"{breed}/{breed.split('-')[0]}_{i}.jpg"
            write_image(root / "Images" / rel, colour_of(c))
            (test if i == 0 else train).append(rel)
    if lists_in is not None:
        folder = root / lists_in if lists_in else root
        write_mat(folder / "train_list.mat", train)
        write_mat(folder / "test_list.mat", test)
    return root, train, test


def write_mat(path: Path, rel_paths: list[str]) -> None:
    """A list file shaped like the official one: `file_list` is an (N, 1) cell array of strings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = np.empty((len(rel_paths), 1), dtype=object)
    for i, rel in enumerate(rel_paths):
        cells[i, 0] = np.array([rel])
    scipy.io.savemat(str(path), {"file_list": cells, "labels": np.ones((len(rel_paths), 1))})


def names(ds) -> list[str]:
    return [f.name for f in ds.files]


# ---------------------------------------------------------------------------------------------- registry


def test_every_loader_is_registered_with_metadata():
    for name in ("celeba", "facescrub", "stanford_dogs", "imagefolder", "ffhq", "metfaces", "afhq-dog",
                 "image-folder-unlabelled"):
        meta = DATASETS.meta(name)
        assert meta["splits"] and meta["description"] and meta["layout"], name


# ---------------------------------------------------------------------------------------------- CelebA


def test_celeba_private_classes_are_top_identities_ordered_by_id(celeba_root):
    train = load_dataset("celeba", "private-train", celeba_root, num_identities=3, resolution=8)
    test = load_dataset("celeba", "private-test", celeba_root, num_identities=3, resolution=8)
    assert train.class_names == ["3", "7", "10"] and train.num_classes == 3
    assert test.class_names == train.class_names
    # one held-out image per identity (round(0.1·n) kept ≥ 1), the rest train
    assert len(test) == 3 and len(train) == 5 + 5 + 4 - 3
    assert sorted(test.labels.tolist()) == [0, 1, 2]
    assert not set(train.files) & set(test.files)
    # labels match the identity encoded in each image's colour
    for ds in (train, test):
        for i in range(len(ds)):
            img, label = ds[i]
            assert img.shape == (3, 8, 8) and img.dtype == torch.float32
            assert close(mean_colour(img), colour_of(int(ds.class_names[label])))


def test_celeba_public_is_every_other_identity_unlabelled(celeba_root):
    pub = load_dataset("celeba", "public", celeba_root, num_identities=3)
    assert len(pub) == 4 + 2 + 1 and pub.num_classes == 0
    assert set(pub.labels.tolist()) == {-1}
    priv = load_dataset("celeba", "private-train", celeba_root, num_identities=3)
    assert not set(pub.files) & set(priv.files)
    assert names(pub) == sorted(names(pub))


def test_celeba_split_is_seeded_and_deterministic(celeba_root):
    def split(seed):
        return names(load_dataset("celeba", "private-test", celeba_root, num_identities=3, seed=seed))

    assert split(0) == split(0)
    assert len({tuple(split(s)) for s in range(6)}) > 1
    big = load_dataset("celeba", "private-test", celeba_root, num_identities=3, test_fraction=0.5)
    assert len(big) == 3 + 3 + 2  # floor(n/2 + 0.5) for n = 5, 5, 4


def test_celeba_img_anno_layout_and_png_release(tmp_path):
    root = make_celeba(tmp_path / "c", variant="anno", suffix=".png")
    ds = load_dataset("celeba", "private-train", root, num_identities=2)
    assert ds.class_names == ["3", "10"] and all(f.suffix == ".png" for f in ds.files)


@pytest.mark.parametrize("num, message", [(7, "lists only 6 identities"), (0, "positive integer")])
def test_celeba_bad_num_identities(celeba_root, num, message):
    with pytest.raises(DataError, match=message) as err:
        load_dataset("celeba", "private-train", celeba_root, num_identities=num)
    assert "num_identities" in str(err.value)


def test_celeba_missing_pieces(tmp_path, celeba_root):
    with pytest.raises(DataError, match="no root folder was given") as err:
        load_dataset("celeba", "private-train", None)
    assert "dataset.root" in str(err.value) and "identity_CelebA.txt" in str(err.value)
    with pytest.raises(DataError, match="root folder does not exist") as err:
        load_dataset("celeba", "private-train", tmp_path / "nowhere")
    assert "nowhere" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="missing image folder img_align_celeba"):
        load_dataset("celeba", "private-train", tmp_path / "empty")
    (celeba_root / "identity_CelebA.txt").rename(celeba_root / "moved.txt")
    with pytest.raises(DataError, match="missing file identity_CelebA.txt"):
        load_dataset("celeba", "private-train", celeba_root)


def test_celeba_malformed_line_names_line_number(celeba_root):
    ident = celeba_root / "identity_CelebA.txt"
    lines = ident.read_text().splitlines()
    lines[2] = "000003.jpg seven"
    ident.write_text("\n".join(lines))
    with pytest.raises(DataError, match="line 3: expected '<image file> <identity id>'") as err:
        load_dataset("celeba", "private-train", celeba_root, num_identities=3)
    assert "identity_CelebA.txt" in str(err.value)


def test_celeba_missing_listed_image(celeba_root):
    (celeba_root / "img_align_celeba" / "000001.jpg").unlink()  # identity 10, private
    errors = []
    for split in ("private-train", "private-test"):  # only the split holding the file checks for it
        try:
            load_dataset("celeba", split, celeba_root, num_identities=3)
        except DataError as exc:
            errors.append(str(exc))
    assert len(errors) == 1
    assert "1 image(s) listed in identity_CelebA.txt are missing" in errors[0] and "000001.jpg" in errors[0]


def test_celeba_unknown_split_and_param(celeba_root):
    from mibench.data.celeba import celeba

    with pytest.raises(DataError, match="no split 'train'") as err:
        celeba("train", celeba_root)
    assert "private-train" in str(err.value)
    with pytest.raises(DataError, match="no parameter 'test_fracton' — did you mean 'test_fraction'"):
        celeba("private-train", celeba_root, test_fracton=0.2)
    with pytest.raises(DataError, match="'test_fraction' must be a fraction"):
        celeba("private-train", celeba_root, test_fraction=1.5)


def test_corrupt_image_raises_on_load_naming_file(celeba_root):
    ds = load_dataset("celeba", "private-train", celeba_root, num_identities=3)
    bad = ds.files[0]
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="cannot read image") as err:
        ds[0]
    assert str(bad) in str(err.value)
    with pytest.raises(DataError, match=bad.name):
        ds.load_tensors()


# ---------------------------------------------------------------------------------------------- FaceScrub


@pytest.mark.parametrize("faces_subdir", [True, False])
def test_facescrub_classes_and_split(tmp_path, faces_subdir):
    root = make_facescrub(tmp_path / "fs", faces_subdir)
    train = load_dataset("facescrub", "private-train", root, resolution=6)
    test = load_dataset("facescrub", "private-test", root, resolution=6)
    assert train.class_names == ["Aaron_Eckhart", "Adam_Brody", "Adrianne_Leon"]
    assert len(train) + len(test) == 6 + 4 + 5 and len(test) == 3
    assert not set(train.files) & set(test.files)
    for ds in (train, test):
        for f, label in zip(ds.files, ds.labels.tolist()):
            assert f.parent.name == ds.class_names[label]
        assert ds[0][0].shape == (3, 6, 6)
    again = load_dataset("facescrub", "private-test", root, resolution=6)
    assert again.files == test.files


def test_facescrub_errors(tmp_path):
    (tmp_path / "fs").mkdir()
    with pytest.raises(DataError, match="missing folders actors/ and actresses/"):
        load_dataset("facescrub", "private-train", tmp_path / "fs")
    root = make_facescrub(tmp_path / "fs2")
    (root / "actresses" / "Empty_Person").mkdir()
    with pytest.raises(DataError, match="folder has no images") as err:
        load_dataset("facescrub", "private-train", root)
    assert "Empty_Person" in str(err.value)


# ---------------------------------------------------------------------------------------------- Stanford Dogs


@pytest.mark.parametrize("lists_in", ["lists", ""])
def test_stanford_dogs_official_lists(tmp_path, lists_in):
    root, train_list, test_list = make_dogs(tmp_path / "dogs", lists_in)
    train = load_dataset("stanford_dogs", "private-train", root, resolution=8)
    test = load_dataset("stanford_dogs", "private-test", root, resolution=8)
    assert train.class_names == sorted(DOG_BREEDS) and train.num_classes == 3
    assert [f"{f.parent.name}/{f.name}" for f in train.files] == train_list
    assert [f"{f.parent.name}/{f.name}" for f in test.files] == test_list
    assert test.labels.tolist() == [0, 1, 2]
    img, label = test[2]
    assert close(mean_colour(img), colour_of(2)) and label == 2


def test_stanford_dogs_falls_back_to_seeded_split_with_warning(tmp_path, caplog):
    root, _, _ = make_dogs(tmp_path / "dogs", lists_in=None)
    with caplog.at_level(logging.WARNING, logger="mibench.data.stanford_dogs"):
        test = load_dataset("stanford_dogs", "private-test", root)
    assert "seeded 90/10 split" in caplog.text and "train_list.mat" in caplog.text
    train = load_dataset("stanford_dogs", "private-train", root)
    assert len(test) == 3 and len(train) == 12 - 3
    assert not set(train.files) & set(test.files)


def test_stanford_dogs_errors(tmp_path):
    root, train_list, _ = make_dogs(tmp_path / "d1", "lists")
    (root / "lists" / "test_list.mat").unlink()
    with pytest.raises(DataError, match="found train_list.mat but not test_list.mat"):
        load_dataset("stanford_dogs", "private-train", root)

    root, train_list, _ = make_dogs(tmp_path / "d2", "")
    (root / "Images" / train_list[0]).unlink()
    with pytest.raises(DataError, match=r"1 image\(s\) listed in train_list.mat are missing") as err:
        load_dataset("stanford_dogs", "private-train", root)
    assert train_list[0] in str(err.value)

    root, _, _ = make_dogs(tmp_path / "d3", "")
    (root / "train_list.mat").write_bytes(b"garbage, not MATLAB")
    with pytest.raises(DataError, match="cannot read MATLAB file") as err:
        load_dataset("stanford_dogs", "private-train", root)
    assert "train_list.mat" in str(err.value)

    root, _, _ = make_dogs(tmp_path / "d4", "")
    scipy.io.savemat(str(root / "test_list.mat"), {"files": np.zeros(2)})
    with pytest.raises(DataError, match="no 'file_list' variable"):
        load_dataset("stanford_dogs", "private-test", root)

    root, _, _ = make_dogs(tmp_path / "d5", "")
    write_mat(root / "test_list.mat", ["n09999999-Wolf/w_1.jpg"])
    with pytest.raises(DataError, match="entry 1 of file_list, 'n09999999-Wolf/w_1.jpg'"):
        load_dataset("stanford_dogs", "private-test", root)

    (tmp_path / "d6").mkdir()
    with pytest.raises(DataError, match="missing folder") as err:
        load_dataset("stanford_dogs", "private-test", tmp_path / "d6")
    assert "Images" in str(err.value)


# ---------------------------------------------------------------------------------------------- ImageFolder


def test_imagefolder_seeded_split_resolution_and_crop(tmp_path):
    root = tmp_path / "folder"
    for c, cls in enumerate(["cat", "ant", "bee"]):
        for i in range(10):
            write_image(root / cls / f"{i}.png", colour_of(c))
    # A wide image whose outer quarters are red/blue and centre green: any centre crop is pure green.
    wide = Image.new("RGB", (20, 12), (0, 200, 0))
    wide.paste((255, 0, 0), (0, 0, 4, 12))
    wide.paste((0, 0, 255), (16, 0, 20, 12))
    wide.save(root / "ant" / "wide.png")
    train = load_dataset("imagefolder", "private-train", root, resolution=5, test_fraction=0.2, seed=3)
    test = load_dataset("imagefolder", "private-test", root, resolution=5, test_fraction=0.2, seed=3)
    assert train.class_names == ["ant", "bee", "cat"]
    assert len(test) == 2 + 2 + 2 and len(train) == 31 - 6
    assert torch.bincount(test.labels).tolist() == [2, 2, 2]
    assert not set(train.files) & set(test.files)
    assert names(test) == names(load_dataset("imagefolder", "private-test", root, test_fraction=0.2, seed=3))

    every = train.files + test.files
    i_wide = every.index(root / "ant" / "wide.png")
    ds = train if i_wide < len(train) else test
    j = i_wide if ds is train else i_wide - len(train)
    for crop in (None, 0.5, 6):
        ds.center_crop = crop
        img, label = ds[j]
        assert img.shape == (3, 5, 5) and label == 0
        assert close(mean_colour(img), (0, 200, 0), tol=2), crop
    ds_full = load_dataset("imagefolder", ds.split, root, resolution=5, test_fraction=0.2, seed=3,
                           center_crop=1.0)
    assert ds_full.center_crop == 1.0
    x, y = ds_full.load_tensors()
    assert x.dtype == torch.uint8 and x.shape == (len(ds_full), 3, 5, 5) and torch.equal(y, ds_full.labels)


def test_imagefolder_train_test_folders(tmp_path):
    root = tmp_path / "tt"
    for split, n in (("train", 3), ("test", 1)):
        for c, cls in enumerate(["b", "a"]):
            for i in range(n):
                write_image(root / split / cls / f"{i}.jpg", colour_of(c))
    train = load_dataset("imagefolder", "private-train", root)
    test = load_dataset("imagefolder", "private-test", root)
    assert train.class_names == ["a", "b"] and len(train) == 6 and len(test) == 2
    assert all(f.parts[-3] == "test" for f in test.files)
    write_image(root / "test" / "zebra" / "0.jpg", (0, 0, 0))
    with pytest.raises(DataError, match="test/ has classes that train/ lacks: zebra"):
        load_dataset("imagefolder", "private-test", root)
    shutil.rmtree(root / "test")
    with pytest.raises(DataError, match="found train/ with class folders but no test/"):
        load_dataset("imagefolder", "private-train", root)


def test_imagefolder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders found"):
        load_dataset("imagefolder", "private-train", tmp_path / "empty")
    write_image(tmp_path / "f" / "a" / "0.png", (1, 2, 3))
    (tmp_path / "f" / "b").mkdir()
    with pytest.raises(DataError, match="folder has no images") as err:
        load_dataset("imagefolder", "private-train", tmp_path / "f")
    assert str(tmp_path / "f" / "b") in str(err.value)
    write_image(tmp_path / "g" / "a" / "0.png", (1, 2, 3))
    with pytest.raises(DataError, match="split 'private-test' has no images"):
        load_dataset("imagefolder", "private-test", tmp_path / "g")  # one image per class: all train
    with pytest.raises(DataError, match="'resolution' must be a positive integer"):
        load_dataset("imagefolder", "private-train", tmp_path / "g", resolution=0)
    with pytest.raises(DataError, match="'center_crop' must be"):
        load_dataset("imagefolder", "private-train", tmp_path / "g", center_crop=1.5)
    with pytest.raises(DataError, match="root is a file"):
        load_dataset("imagefolder", "private-train", tmp_path / "g" / "a" / "0.png")


# ---------------------------------------------------------------------------------------------- unlabelled


def test_ffhq_metfaces_and_generic_folders(tmp_path):
    ffhq = tmp_path / "ffhq"
    for i in (1, 0):
        write_image(ffhq / "images1024x1024" / "01000" / f"0100{i}.png", colour_of(i))
        write_image(ffhq / "images1024x1024" / "00000" / f"0000{i}.png", colour_of(i))
        write_image(ffhq / "thumbnails128x128" / "00000" / f"0000{i}.png", colour_of(i))
    ds = load_dataset("ffhq", "public", ffhq, resolution=4)
    assert [f"{f.parent.name}/{f.name}" for f in ds.files] == ["00000/00000.png", "00000/00001.png",
                                                              "01000/01000.png", "01000/01001.png"]
    assert ds.num_classes == 0 and set(ds.labels.tolist()) == {-1} and ds[3][0].shape == (3, 4, 4)
    assert len(load_dataset("ffhq", "public", ffhq, subdir="thumbnails128x128")) == 2
    assert len(load_dataset("image-folder-unlabelled", "public", ffhq)) == 6

    met = tmp_path / "metfaces"
    write_image(met / "images" / "a.png", (1, 1, 1))
    write_image(met / "unprocessed" / "a.png", (1, 1, 1))
    assert [f.parts[-2] for f in load_dataset("metfaces", "public", met).files] == ["images"]


def test_afhq_dog_and_animal_param(tmp_path):
    root = tmp_path / "afhq"
    for split, n in (("train", 3), ("val", 2)):
        for animal in ("cat", "dog"):
            for i in range(n):
                write_image(root / split / animal / f"{animal}_{i}.jpg", (5, 5, 5))
    dogs = load_dataset("afhq-dog", "public", root)
    assert len(dogs) == 5 and all(f.parent.name == "dog" for f in dogs.files)
    assert len(load_dataset("afhq-dog", "public", root, animal="cat", subsets=["train"])) == 3
    with pytest.raises(DataError, match="no animal folder 'wild' in train/ \\(found: cat, dog\\)"):
        load_dataset("afhq-dog", "public", root, animal="wild")
    with pytest.raises(DataError, match="missing folder") as err:
        load_dataset("afhq-dog", "public", root, subsets=["test"])
    assert str(root / "test" / "dog") in str(err.value)


def test_unlabelled_errors(tmp_path):
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match="folder has no images"):
        load_dataset("image-folder-unlabelled", "public", tmp_path / "e")
    with pytest.raises(DataError, match="no root folder was given") as err:
        load_dataset("ffhq", "public")
    assert "dataset.root" in str(err.value)
    from mibench.data.unlabelled import ffhq

    with pytest.raises(DataError, match="no split 'private-train'"):
        ffhq("private-train", tmp_path / "e")
    with pytest.raises(DataError, match="missing folder"):
        ffhq("public", tmp_path / "e", subdir="images1024x1024")
    with pytest.raises(DataError, match="missing folder"):
        load_dataset("afhq-dog", "public", tmp_path / "e")
