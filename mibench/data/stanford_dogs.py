"""Stanford Dogs (`stanford_dogs`): 120 breeds, split by the official train/test lists.

Reads `Images/<wnid>-<Breed>/*.jpg` and the official `train_list.mat` / `test_list.mat` (MATLAB files
whose `file_list` cell array holds paths relative to `Images/`), at the root or in `lists/`. Without the
lists the split falls back to a seeded 90/10 split per breed, with a warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mibench.data.base import FileImageDataset
from mibench.data.imagefolder import (
    LABELLED_SPLITS,
    check_image_params,
    check_split,
    check_split_params,
    class_folders,
    make_dataset,
    nonempty_images,
    reject_unknown,
    require_dir,
    require_root,
    split_per_class,
)
from mibench.errors import DataError
from mibench.registry import DATASETS

log = logging.getLogger(__name__)

KIND = "stanford_dogs"
LAYOUT = ("root/Images/<wnid>-<Breed>/*.jpg and root/train_list.mat + root/test_list.mat "
          "(or in root/lists/; without them a seeded 90/10 split is used)")
LIST_FILES = {"private-train": "train_list.mat", "private-test": "test_list.mat"}


def find_lists(root: Path) -> dict[str, Path] | None:
    """Split → official list file, or None when neither list exists; exactly one present raises."""
    found = {}
    for split, name in LIST_FILES.items():
        path = next((p for p in (root / name, root / "lists" / name) if p.is_file()), None)
        if path is not None:
            found[split] = path
    if not found:
        return None
    if len(found) < len(LIST_FILES):
        missing = next(name for split, name in LIST_FILES.items() if split not in found)
        have = next(iter(found.values()))
        raise DataError(f"dataset '{KIND}': found {have.name} but not {missing} (looked in {root} and "
                        f"{root / 'lists'})", path=root / missing,
                        fix=f"copy {missing} from the official lists.tar next to {have.name}, or remove both "
                            "to use a seeded split")
    return found


def _strings(x: Any) -> list[str]:
    """Flatten a loadmat cell array (nested object arrays of 1-element string arrays) into strings."""
    if isinstance(x, str):
        return [x]
    if isinstance(x, np.ndarray):
        if x.dtype.kind == "U":
            return [str(s) for s in x.ravel()]
        out: list[str] = []
        for item in x.ravel():
            out.extend(_strings(item))
        return out
    raise TypeError(f"unexpected {type(x).__name__} in file_list")


def read_file_list(path: Path) -> list[str]:
    """The relative image paths in a Stanford Dogs list file (`file_list` cell array)."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError / TypeError / OSError for non-MATLAB data
        raise DataError(f"cannot read MATLAB file: {exc}", path=path,
                        fix="restore it from the official Stanford Dogs lists.tar") from None
    if "file_list" not in mat:
        keys = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise DataError(f"MATLAB file has no 'file_list' variable (has: {keys})", path=path,
                        fix="use the official train_list.mat / test_list.mat from lists.tar")
    try:
        entries = _strings(mat["file_list"])
    except TypeError as exc:
        raise DataError(f"malformed 'file_list': {exc}", path=path,
                        fix="use the official train_list.mat / test_list.mat from lists.tar") from None
    if not entries:
        raise DataError("'file_list' is empty", path=path,
                        fix="use the official train_list.mat / test_list.mat from lists.tar")
    return entries


def listed_pairs(entries: list[str], images: Path, index: dict[str, int], list_path: Path) -> list[tuple[Path, int]]:
    """(file, label) for each listed relative path; unknown breeds and missing files raise."""
    listings: dict[str, set[str]] = {}
    pairs, missing = [], []
    for n, rel in enumerate(entries, 1):
        parts = rel.replace("\\", "/").split("/")
        if len(parts) != 2 or parts[0] not in index:
            raise DataError(f"entry {n} of file_list, {rel!r}, is not '<breed folder>/<image>' for a breed "
                            f"folder in {images}", path=list_path,
                            fix="unpack the complete images.tar into Images/ (or use the matching list files)")
        folder, name = parts
        if folder not in listings:
            listings[folder] = set(os.listdir(images / folder))
        if name not in listings[folder]:
            missing.append(rel)
        pairs.append((images / folder / name, index[folder]))
    if missing:
        raise DataError(f"{len(missing)} image(s) listed in {list_path.name} are missing from Images/ "
                        f"(e.g. {', '.join(missing[:3])})", path=images,
                        fix="unpack the complete images.tar into Images/")
    return pairs


@DATASETS.register(
    KIND, splits=LABELLED_SPLITS,
    description="Stanford Dogs: breeds as classes (folders sorted), official train/test lists",
    layout=LAYOUT, attack_preset=KIND)
def stanford_dogs(split: str, root: str | Path | None = None, *, resolution: int = 224,
                  center_crop: float | int | None = None, test_fraction: float = 0.1, seed: int = 0,
                  **unknown: Any) -> FileImageDataset:
    """Stanford Dogs `split`; `test_fraction` / `seed` only matter when the official lists are absent."""
    reject_unknown(KIND, unknown, ["resolution", "center_crop", "test_fraction", "seed"])
    check_split(KIND, split, LABELLED_SPLITS)
    resolution, center_crop = check_image_params(KIND, resolution, center_crop)
    test_fraction, seed = check_split_params(KIND, test_fraction, seed)
    base = require_root(root, KIND, LAYOUT)
    images = require_dir(base / "Images", KIND, "Images/<wnid>-<Breed>/ from the official images.tar")
    breeds = class_folders(images)
    if not breeds:
        raise DataError(f"dataset '{KIND}': no breed folders in Images/", path=images,
                        fix="unpack the official images.tar there")
    names = [d.name for d in breeds]
    lists = find_lists(base)
    if lists is not None:
        pairs = listed_pairs(read_file_list(lists[split]), images, {n: c for c, n in enumerate(names)},
                             lists[split])
    else:
        log.warning("stanford_dogs: no train_list.mat / test_list.mat in %s or %s/lists — using a seeded "
                    "%.0f/%.0f split per breed (seed %d) instead of the official split", base, base,
                    100 * (1 - test_fraction), 100 * test_fraction, seed)
        groups = [nonempty_images(d, KIND, recursive=False) for d in breeds]
        train, test = split_per_class(groups, test_fraction, seed, KIND, names)
        pairs = train if split == "private-train" else test
    return make_dataset(pairs, names, kind=KIND, split=split, resolution=resolution, center_crop=center_crop)
