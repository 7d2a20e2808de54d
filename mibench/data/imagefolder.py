"""Generic labelled image folders (`imagefolder`) and the folder plumbing every real-data loader shares.

This module owns: checking the `root` a card gives, scanning folders for images, validating the
common loader params (`resolution`, `center_crop`, `test_fraction`, `seed`), and the seeded
per-class train/test split. CelebA, FaceScrub, Stanford Dogs and the unlabelled folders build on it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mibench.data.base import IMAGE_EXTENSIONS, FileImageDataset, list_images
from mibench.errors import DataError
from mibench.registry import DATASETS, suggest
from mibench.seeding import derive_seed

LABELLED_SPLITS = ["private-train", "private-test"]


# ---------------------------------------------------------------------------------------------- checks

log = logging.getLogger(__name__)


def require_root(root: str | Path | None, kind: str, expected: str) -> Path:
    """The dataset folder `root` as a Path; a missing or absent folder raises a DataError saying what to set."""
    if root is None or str(root) == "":
        raise DataError(f"dataset '{kind}' reads files from disk but no root folder was given "
                        f"(expected layout: {expected})", field="dataset.root",
                        fix="set `dataset.root` in the card (or pass `--root` / `root=`) to the dataset folder")
    path = Path(os.path.expandvars(os.path.expanduser(str(root))))
    if not path.exists():
        raise DataError(f"dataset '{kind}' root folder does not exist (expected layout: {expected})",
                        path=path, fix="point `dataset.root` at the folder that holds the dataset")
    if not path.is_dir():
        raise DataError(f"dataset '{kind}' root is a file, not a folder (expected layout: {expected})",
                        path=path, fix="point `dataset.root` at the folder that holds the dataset")
    return path


def require_dir(path: Path, kind: str, what: str) -> Path:
    """`path` if it is a folder, else a DataError naming what was expected there."""
    if not path.is_dir():
        raise DataError(f"dataset '{kind}': missing folder ({what})", path=path,
                        fix="check `dataset.root` and the dataset's folder layout")
    return path


def require_file(path: Path, kind: str, what: str) -> Path:
    """`path` if it is a file, else a DataError naming what was expected there."""
    if not path.is_file():
        raise DataError(f"dataset '{kind}': missing file ({what})", path=path,
                        fix="check `dataset.root` and copy the file from the official release")
    return path


def check_split(kind: str, split: str, splits: Sequence[str]) -> None:
    """Raise a DataError when `split` is not one of `splits`."""
    if split not in splits:
        raise DataError(f"dataset '{kind}' has no split '{split}'{suggest(split, list(splits))}",
                        field="dataset.split", fix=f"use one of: {', '.join(splits)}")


def reject_unknown(kind: str, unknown: Mapping[str, Any], known: Sequence[str]) -> None:
    """Raise a DataError for parameters the loader does not take (typos in a card's `dataset.params`)."""
    if unknown:
        name = sorted(unknown)[0]
        raise DataError(f"dataset '{kind}' has no parameter '{name}'{suggest(name, list(known))}",
                        field=f"dataset.params.{name}", fix=f"use only: {', '.join(known)}")


def _param_error(kind: str, name: str, value: Any, want: str) -> DataError:
    return DataError(f"dataset '{kind}': parameter '{name}' must be {want}, got {value!r}",
                     field=f"dataset.params.{name}", fix=f"set `{name}` to {want}")


def check_image_params(kind: str, resolution: Any, center_crop: Any) -> tuple[int, float | int | None]:
    """Validated `resolution` (positive int) and `center_crop` (None, int pixels, or float fraction in (0, 1])."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise _param_error(kind, "resolution", resolution, "a positive integer (pixels)")
    if center_crop is None:
        return resolution, None
    if isinstance(center_crop, bool) or not isinstance(center_crop, (int, float)):
        raise _param_error(kind, "center_crop", center_crop,
                           "null, an integer (pixels) or a fraction in (0, 1] of the short side")
    if isinstance(center_crop, int) and center_crop < 1:
        raise _param_error(kind, "center_crop", center_crop, "a positive number of pixels")
    if isinstance(center_crop, float) and not 0.0 < center_crop <= 1.0:
        raise _param_error(kind, "center_crop", center_crop, "a fraction in (0, 1] (or an integer pixel size)")
    return resolution, center_crop


def check_split_params(kind: str, test_fraction: Any, seed: Any) -> tuple[float, int]:
    """Validated `test_fraction` (in (0, 1)) and `seed` (int)."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not 0.0 < float(test_fraction) < 1.0:
        raise _param_error(kind, "test_fraction", test_fraction, "a fraction strictly between 0 and 1")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _param_error(kind, "seed", seed, "an integer")
    return float(test_fraction), seed


# ---------------------------------------------------------------------------------------------- scanning


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def scan_images(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files under `folder` (hidden files and folders skipped), sorted by relative path."""
    if not recursive:
        return [p for p in list_images(folder) if not p.name.startswith(".")]
    found: list[tuple[tuple[str, ...], Path]] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(folder).parts
        found.extend((rel + (f,), Path(dirpath) / f) for f in filenames if _is_image(f))
    # Sorting by path components (not the joined string) keeps "a/b" before "a-c/...".
    return [p for _, p in sorted(found, key=lambda t: t[0])]


def class_folders(folder: Path) -> list[Path]:
    """Non-hidden sub-folders of `folder`, sorted by name."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def nonempty_images(folder: Path, kind: str, recursive: bool = True) -> list[Path]:
    """Images in `folder`; an empty folder raises a DataError naming it."""
    files = scan_images(folder, recursive=recursive)
    if not files:
        exts = ", ".join(IMAGE_EXTENSIONS)
        raise DataError(f"dataset '{kind}': folder has no images ({exts})", path=folder,
                        fix="put the images there, or remove the empty folder")
    return files


# ---------------------------------------------------------------------------------------------- splits


def num_test(n: int, test_fraction: float) -> int:
    """Held-out count for a class of `n` images: round(n·f), kept within [1, n−1] when n ≥ 2 (0 when n = 1)."""
    if n < 2:
        return 0
    return min(n - 1, max(1, math.floor(n * test_fraction + 0.5)))


def split_per_class(groups: Sequence[Sequence[Path]], test_fraction: float, seed: int, kind: str,
                    keys: Sequence[str]) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Seeded per-class split: `groups[c]` (sorted files of class c) → (train, test) lists of (file, c).

    Each class is shuffled by a generator seeded from (seed, kind, keys[c]) — the class's own name — so a
    class's split does not change when other classes are added or removed.
    """
    train: list[tuple[Path, int]] = []
    test: list[tuple[Path, int]] = []
    for c, (files, key) in enumerate(zip(groups, keys)):
        files = sorted(files)
        g = torch.Generator().manual_seed(derive_seed(seed, kind, "split", key))
        perm = torch.randperm(len(files), generator=g).tolist()
        k = num_test(len(files), test_fraction)
        held = set(perm[:k])
        for i, f in enumerate(files):
            (test if i in held else train).append((f, c))
    return train, test


def make_dataset(pairs: Sequence[tuple[Path | str, int]], class_names: Sequence[str], *, kind: str, split: str,
                 resolution: int, center_crop: float | int | None) -> FileImageDataset:
    """A FileImageDataset over (file, label) pairs; an empty split raises a DataError."""
    if not pairs:
        raise DataError(f"dataset '{kind}': split '{split}' has no images",
                        fix="check `dataset.root`, the folder layout and `test_fraction`")
    files = [p for p, _ in pairs]
    labels = [c for _, c in pairs]
    _warn_if_upscaled(Path(files[0]), resolution, kind)
    return FileImageDataset(files, labels, class_names, resolution=resolution, center_crop=center_crop,
                            name=kind, split=split)


_WARNED: set[tuple[str, int]] = set()


def _warn_if_upscaled(sample: Path, resolution: int, kind: str) -> None:
    """Warn (once per folder) when the images are far smaller than the resolution they are loaded at
    (e.g. 32 px files at the 224 px default): every model would then train on blurred upsamples."""
    from PIL import Image

    key = (str(sample.parent.parent), resolution)
    if key in _WARNED:
        return
    try:
        with Image.open(sample) as im:
            size = min(im.size)
    except OSError:
        return  # reported when the file is loaded
    if 2 * size <= resolution:
        _WARNED.add(key)
        log.warning("dataset '%s': images are %d px (e.g. %s) but are loaded at %d px; set "
                    "`dataset.params.resolution: %d` in the card", kind, size, sample, resolution, size)


# ---------------------------------------------------------------------------------------------- imagefolder

_IMAGEFOLDER_LAYOUT = ("root/<class>/**/*.jpg|png (seeded split), or root/train/<class>/... and "
                       "root/test/<class>/... (used as private-train / private-test)")


@DATASETS.register(
    "imagefolder", splits=LABELLED_SPLITS,
    description="Generic labelled image folder: one sub-folder per class (classes sorted by folder name)",
    layout=_IMAGEFOLDER_LAYOUT)  # no paper preset: each attack's preset is fitted to the image size
def imagefolder(split: str, root: str | Path | None = None, *, resolution: int = 224,
                center_crop: float | int | None = None, test_fraction: float = 0.1, seed: int = 0,
                **unknown: Any) -> FileImageDataset:
    """Labelled folder root/<class>/*; uses root/train + root/test when both exist, else a seeded split."""
    kind = "imagefolder"
    reject_unknown(kind, unknown, ["resolution", "center_crop", "test_fraction", "seed"])
    check_split(kind, split, LABELLED_SPLITS)
    resolution, center_crop = check_image_params(kind, resolution, center_crop)
    test_fraction, seed = check_split_params(kind, test_fraction, seed)
    base = require_root(root, kind, _IMAGEFOLDER_LAYOUT)

    if (base / "train").is_dir() and (base / "test").is_dir():
        train_dirs = class_folders(base / "train")
        if not train_dirs:
            raise DataError(f"dataset '{kind}': no class folders in train/", path=base / "train",
                            fix="put one sub-folder of images per class there")
        names = [d.name for d in train_dirs]
        if split == "private-train":
            pairs = [(f, c) for c, d in enumerate(train_dirs) for f in nonempty_images(d, kind)]
        else:
            test_dirs = class_folders(base / "test")
            extra = [d.name for d in test_dirs if d.name not in names]
            if extra:
                raise DataError(f"dataset '{kind}': test/ has classes that train/ lacks: "
                                f"{', '.join(extra[:5])}", path=base / "test",
                                fix="use the same class folder names in train/ and test/")
            index = {n: c for c, n in enumerate(names)}
            pairs = [(f, index[d.name]) for d in test_dirs for f in nonempty_images(d, kind)]
        return make_dataset(pairs, names, kind=kind, split=split, resolution=resolution,
                            center_crop=center_crop)

    for have, lack in (("train", "test"), ("test", "train")):
        # root/train/<class>/ alone would otherwise silently become one class called "train".
        if (base / have).is_dir() and class_folders(base / have) and not (base / lack).is_dir():
            raise DataError(f"dataset '{kind}': found {have}/ with class folders but no {lack}/",
                            path=base / lack, fix=f"add {lack}/<class>/ folders, or move the class folders "
                                                  f"out of {have}/ to use a seeded split")
    dirs = class_folders(base)
    if not dirs:
        raise DataError(f"dataset '{kind}': no class folders found (expected layout: {_IMAGEFOLDER_LAYOUT})",
                        path=base, fix="put one sub-folder of images per class in the root folder")
    groups = [nonempty_images(d, kind) for d in dirs]
    names = [d.name for d in dirs]
    train, test = split_per_class(groups, test_fraction, seed, kind, names)
    return make_dataset(train if split == "private-train" else test, names, kind=kind, split=split,
                        resolution=resolution, center_crop=center_crop)
