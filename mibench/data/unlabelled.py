"""Unlabelled image folders for GAN priors: `ffhq`, `metfaces`, `afhq-dog`, `image-folder-unlabelled`.

Every image under the chosen folder(s), found recursively in sorted path order, label −1, split `public`.
The FFHQ / MetFaces releases hold several versions of the same images side by side, so those loaders
read the aligned sub-folder (`images1024x1024/`, `images/`) when it is there; `subdir` overrides it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mibench.data.base import FileImageDataset
from mibench.data.imagefolder import (
    check_image_params,
    check_split,
    class_folders,
    make_dataset,
    nonempty_images,
    reject_unknown,
    require_dir,
    require_root,
)
from mibench.errors import DataError
from mibench.registry import DATASETS

log = logging.getLogger(__name__)

SPLITS = ["public"]
_PARAMS = ["resolution", "center_crop", "subdir"]


def _folder(kind: str, root: str | Path | None, layout: str, subdir: Any, preferred: Sequence[str]) -> Path:
    """The folder to scan: root/subdir when given, else the first `preferred` sub-folder present, else root."""
    base = require_root(root, kind, layout)
    if subdir is not None:
        if not isinstance(subdir, str) or not subdir:
            raise DataError(f"dataset '{kind}': parameter 'subdir' must be a folder name, got {subdir!r}",
                            field="dataset.params.subdir", fix="give a path relative to `dataset.root`")
        return require_dir(base / subdir, kind, f"`subdir` {subdir!r} under dataset.root")
    for name in preferred:
        if (base / name).is_dir():
            log.info("%s: reading %s (set `subdir` to choose another folder)", kind, base / name)
            return base / name
    return base


def _public(kind: str, folders: Sequence[Path], split: str, resolution: int,
            center_crop: float | int | None) -> FileImageDataset:
    files = [f for d in folders for f in nonempty_images(d, kind)]
    return make_dataset([(f, -1) for f in files], [], kind=kind, split=split, resolution=resolution,
                        center_crop=center_crop)


def _folder_loader(kind: str, split: str, root: str | Path | None, layout: str, preferred: Sequence[str],
                   resolution: Any, center_crop: Any, subdir: Any, unknown: dict[str, Any]) -> FileImageDataset:
    reject_unknown(kind, unknown, _PARAMS)
    check_split(kind, split, SPLITS)
    resolution, center_crop = check_image_params(kind, resolution, center_crop)
    folder = _folder(kind, root, layout, subdir, preferred)
    return _public(kind, [folder], split, resolution, center_crop)


_FFHQ_LAYOUT = "root/**/*.png (root/images1024x1024/ is used when present)"


@DATASETS.register("ffhq", splits=SPLITS, description="FFHQ faces (unlabelled, for priors)", layout=_FFHQ_LAYOUT)
def ffhq(split: str, root: str | Path | None = None, *, resolution: int = 256,
         center_crop: float | int | None = None, subdir: str | None = None, **unknown: Any) -> FileImageDataset:
    """FFHQ images, label −1."""
    return _folder_loader("ffhq", split, root, _FFHQ_LAYOUT, ["images1024x1024"], resolution, center_crop,
                          subdir, unknown)


_METFACES_LAYOUT = "root/**/*.png (root/images/ is used when present, skipping unprocessed/)"


@DATASETS.register("metfaces", splits=SPLITS, description="MetFaces art portraits (unlabelled, for priors)",
                   layout=_METFACES_LAYOUT)
def metfaces(split: str, root: str | Path | None = None, *, resolution: int = 256,
             center_crop: float | int | None = None, subdir: str | None = None,
             **unknown: Any) -> FileImageDataset:
    """MetFaces images, label −1."""
    return _folder_loader("metfaces", split, root, _METFACES_LAYOUT, ["images"], resolution, center_crop,
                          subdir, unknown)


_GENERIC_LAYOUT = "root/**/*.jpg|png (every image, recursively)"


@DATASETS.register("image-folder-unlabelled", splits=SPLITS,
                   description="Any folder of images, recursively (unlabelled, for priors)", layout=_GENERIC_LAYOUT)
def image_folder_unlabelled(split: str, root: str | Path | None = None, *, resolution: int = 256,
                            center_crop: float | int | None = None, subdir: str | None = None,
                            **unknown: Any) -> FileImageDataset:
    """Every image under root (or root/subdir), label −1."""
    return _folder_loader("image-folder-unlabelled", split, root, _GENERIC_LAYOUT, [], resolution, center_crop,
                          subdir, unknown)


_AFHQ_LAYOUT = "root/train/<animal>/*.png plus root/val/<animal>/ or root/test/<animal>/ (animal: dog, cat, wild)"
_AFHQ_SUBSETS = ("train", "val", "test")


@DATASETS.register("afhq-dog", splits=SPLITS,
                   description="AFHQ animal faces, dogs by default (`animal` param), train + val/test, unlabelled",
                   layout=_AFHQ_LAYOUT)
def afhq(split: str, root: str | Path | None = None, *, resolution: int = 256,
         center_crop: float | int | None = None, animal: str = "dog", subsets: Sequence[str] | None = None,
         **unknown: Any) -> FileImageDataset:
    """AFHQ images of `animal` from train/ and val/ or test/ (or the listed `subsets`), label −1."""
    kind = "afhq-dog"
    reject_unknown(kind, unknown, ["resolution", "center_crop", "animal", "subsets"])
    check_split(kind, split, SPLITS)
    resolution, center_crop = check_image_params(kind, resolution, center_crop)
    base = require_root(root, kind, _AFHQ_LAYOUT)
    train = require_dir(base / "train", kind, f"AFHQ train/ split (expected layout: {_AFHQ_LAYOUT})")
    animals = [d.name for d in class_folders(train)]
    if not isinstance(animal, str) or animal not in animals:
        raise DataError(f"dataset '{kind}': no animal folder {animal!r} in train/ (found: "
                        f"{', '.join(animals) or 'none'})", path=train / str(animal),
                        field="dataset.params.animal", fix=f"set `animal` to one of: {', '.join(animals) or 'dog'}")
    if subsets is None:
        folders = [base / s / animal for s in _AFHQ_SUBSETS if (base / s / animal).is_dir()]
    else:
        if isinstance(subsets, str) or not subsets or any(s not in _AFHQ_SUBSETS for s in subsets):
            raise DataError(f"dataset '{kind}': parameter 'subsets' must be a non-empty list drawn from "
                            f"{', '.join(_AFHQ_SUBSETS)}, got {subsets!r}", field="dataset.params.subsets",
                            fix="e.g. subsets: [train]")
        folders = [require_dir(base / s / animal, kind, f"AFHQ {s}/{animal}/") for s in subsets]
    return _public(kind, folders, split, resolution, center_crop)
