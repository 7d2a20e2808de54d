"""FaceScrub (`facescrub`): every actor and actress is a class, split 90/10 per class with a seed.

Reads the cropped-face layout `actors/faces/<Name>/*.jpg` and `actresses/faces/<Name>/*.jpg`
(`actors/<Name>/` without `faces/` is accepted too).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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
    require_root,
    split_per_class,
)
from mibench.errors import DataError
from mibench.registry import DATASETS

log = logging.getLogger(__name__)

KIND = "facescrub"
LAYOUT = "root/actors/faces/<Name>/*.jpg and root/actresses/faces/<Name>/*.jpg (or actors/<Name>/ without faces/)"
GROUPS = ("actors", "actresses")


def person_folders(root: Path) -> dict[str, list[Path]]:
    """Class name → its folders (one per group it appears in), from actors/ and actresses/."""
    found: dict[str, list[Path]] = {}
    present = []
    for group in GROUPS:
        d = root / group
        if not d.is_dir():
            continue
        present.append(group)
        if (d / "faces").is_dir():
            d = d / "faces"
        people = class_folders(d)
        if not people:
            raise DataError(f"dataset '{KIND}': no person folders in {group}", path=d,
                            fix=f"put one folder of face images per person there (expected layout: {LAYOUT})")
        for p in people:
            found.setdefault(p.name, []).append(p)
    if not present:
        raise DataError(f"dataset '{KIND}': missing folders actors/ and actresses/", path=root,
                        fix=f"point `dataset.root` at the FaceScrub folder (expected layout: {LAYOUT})")
    if len(present) < len(GROUPS):
        missing = next(g for g in GROUPS if g not in present)
        log.warning("facescrub: %s has no %s/ folder; using %s only", root, missing, present[0])
    return found


@DATASETS.register(
    KIND, splits=LABELLED_SPLITS,
    description="FaceScrub cropped faces: all actors + actresses as classes (sorted), seeded 90/10 split",
    layout=LAYOUT, attack_preset=KIND)
def facescrub(split: str, root: str | Path | None = None, *, resolution: int = 224,
              center_crop: float | int | None = None, test_fraction: float = 0.1, seed: int = 0,
              **unknown: Any) -> FileImageDataset:
    """FaceScrub `split` (private-train / private-test); classes are the person names sorted."""
    reject_unknown(KIND, unknown, ["resolution", "center_crop", "test_fraction", "seed"])
    check_split(KIND, split, LABELLED_SPLITS)
    resolution, center_crop = check_image_params(KIND, resolution, center_crop)
    test_fraction, seed = check_split_params(KIND, test_fraction, seed)
    base = require_root(root, KIND, LAYOUT)
    people = person_folders(base)
    names = sorted(people)
    groups = [[f for d in people[n] for f in nonempty_images(d, KIND, recursive=False)] for n in names]
    train, test = split_per_class(groups, test_fraction, seed, KIND, names)
    return make_dataset(train if split == "private-train" else test, names, kind=KIND, split=split,
                        resolution=resolution, center_crop=center_crop)
