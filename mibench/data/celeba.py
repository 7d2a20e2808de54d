"""CelebA (`celeba`): the most frequent identities as private classes, every other identity as public data.

Reads the aligned-and-cropped release: `img_align_celeba/*.jpg` plus `identity_CelebA.txt`
("000001.jpg 2880" per line), either at the root or in the official `Img/` + `Anno/` sub-folders.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from mibench.data.base import FileImageDataset
from mibench.data.imagefolder import (
    LABELLED_SPLITS,
    check_image_params,
    check_split,
    check_split_params,
    make_dataset,
    reject_unknown,
    require_root,
    split_per_class,
)
from mibench.errors import DataError
from mibench.registry import DATASETS

KIND = "celeba"
SPLITS = [*LABELLED_SPLITS, "public"]
LAYOUT = ("root/img_align_celeba/000001.jpg … and root/identity_CelebA.txt "
          "(or root/Img/img_align_celeba/ and root/Anno/identity_CelebA.txt)")
IDENTITY_FILE = "identity_CelebA.txt"


def find_layout(root: Path) -> tuple[Path, Path]:
    """(image folder, identity file) under `root`, accepting the flat and the `Img/` + `Anno/` layouts."""
    img_dir = next((d for d in (root / "img_align_celeba", root / "Img" / "img_align_celeba") if d.is_dir()), None)
    if img_dir is None:
        raise DataError(f"dataset '{KIND}': missing image folder img_align_celeba/ (looked in {root} and "
                        f"{root / 'Img'})", path=root / "img_align_celeba",
                        fix=f"unpack img_align_celeba.zip into the root folder (expected layout: {LAYOUT})")
    # The Kaggle archive nests the folder once more: img_align_celeba/img_align_celeba/*.jpg.
    if (img_dir / "img_align_celeba").is_dir():
        img_dir = img_dir / "img_align_celeba"
    ident = next((f for f in (root / IDENTITY_FILE, root / "Anno" / IDENTITY_FILE) if f.is_file()), None)
    if ident is None:
        raise DataError(f"dataset '{KIND}': missing file {IDENTITY_FILE} (looked in {root} and {root / 'Anno'})",
                        path=root / IDENTITY_FILE,
                        fix=f"copy {IDENTITY_FILE} from the official CelebA Anno/ folder into the root folder")
    return img_dir, ident


def read_identities(path: Path) -> list[tuple[str, int]]:
    """Parse identity_CelebA.txt into (file name, identity id) pairs in file order; malformed lines raise."""
    pairs: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or not parts[1].isdigit():
                    raise DataError(f"line {lineno}: expected '<image file> <identity id>' "
                                    f"(e.g. '000001.jpg 2880'), got {line.strip()!r}", path=path,
                                    fix="restore the file from the official CelebA release")
                name = parts[0]
                if name in seen:
                    raise DataError(f"line {lineno}: image {name} is listed twice (first on line {seen[name]})",
                                    path=path, fix="restore the file from the official CelebA release")
                seen[name] = lineno
                pairs.append((name, int(parts[1])))
    except UnicodeDecodeError as exc:
        raise DataError(f"not a text file ({exc.reason})", path=path,
                        fix="restore the file from the official CelebA release") from None
    if not pairs:
        raise DataError("identity file is empty", path=path, fix="restore the file from the official CelebA release")
    return pairs


def private_identities(pairs: list[tuple[str, int]], num_identities: int, path: Path) -> list[int]:
    """The `num_identities` most frequent identity ids (ties: lower id first), sorted by id."""
    counts = Counter(ident for _, ident in pairs)
    if len(counts) < num_identities:
        raise DataError(f"{path.name} lists only {len(counts)} identities, fewer than "
                        f"num_identities={num_identities}", path=path, field="dataset.params.num_identities",
                        fix=f"lower `num_identities` to at most {len(counts)} or use the full identity file")
    ranked = sorted(counts, key=lambda i: (-counts[i], i))
    return sorted(ranked[:num_identities])


def resolve_files(img_dir: Path, names: list[str]) -> list[str]:
    """Paths of the listed images; the PNG re-release (same stems, .png) is accepted; missing files raise."""
    present = set(os.listdir(img_dir))
    folder = str(img_dir)
    out, missing = [], []
    for name in names:
        # Plain string joins: building 200k pathlib objects here would double the indexing time.
        if name in present:
            out.append(os.path.join(folder, name))
            continue
        png = os.path.splitext(name)[0] + ".png"
        if png in present:
            out.append(os.path.join(folder, png))
        else:
            missing.append(name)
    if missing:
        raise DataError(f"{len(missing)} image(s) listed in {IDENTITY_FILE} are missing from the image folder "
                        f"(e.g. {', '.join(missing[:3])})", path=img_dir,
                        fix="unpack the complete img_align_celeba archive there")
    return out


@DATASETS.register(
    KIND, splits=SPLITS,
    description="CelebA (aligned): top-N identities as private classes (seeded 90/10 split), the rest public",
    layout=LAYOUT, attack_preset=KIND)
def celeba(split: str, root: str | Path | None = None, *, resolution: int = 224,
           center_crop: float | int | None = None, num_identities: int = 1000, test_fraction: float = 0.1,
           seed: int = 0, **unknown: Any) -> FileImageDataset:
    """CelebA `split`: private-train / private-test (top `num_identities` identities) or public (the rest, label −1)."""
    reject_unknown(KIND, unknown, ["resolution", "center_crop", "num_identities", "test_fraction", "seed"])
    check_split(KIND, split, SPLITS)
    resolution, center_crop = check_image_params(KIND, resolution, center_crop)
    test_fraction, seed = check_split_params(KIND, test_fraction, seed)
    if isinstance(num_identities, bool) or not isinstance(num_identities, int) or num_identities < 1:
        raise DataError(f"dataset '{KIND}': parameter 'num_identities' must be a positive integer, "
                        f"got {num_identities!r}", field="dataset.params.num_identities",
                        fix="set `num_identities` to e.g. 1000")
    base = require_root(root, KIND, LAYOUT)
    img_dir, ident_file = find_layout(base)
    pairs = read_identities(ident_file)
    private = private_identities(pairs, num_identities, ident_file)
    index = {ident: c for c, ident in enumerate(private)}

    if split == "public":
        names = sorted(name for name, ident in pairs if ident not in index)
        files = resolve_files(img_dir, names)
        return make_dataset([(f, -1) for f in files], [], kind=KIND, split=split, resolution=resolution,
                            center_crop=center_crop)

    groups: list[list[str]] = [[] for _ in private]
    for name, ident in pairs:
        if ident in index:
            groups[index[ident]].append(name)
    keys = [str(i) for i in private]
    train, test = split_per_class([[Path(n) for n in g] for g in groups], test_fraction, seed, KIND, keys)
    chosen = train if split == "private-train" else test
    files = resolve_files(img_dir, [p.name for p, _ in chosen])
    return make_dataset([(f, c) for f, (_, c) in zip(files, chosen)], keys, kind=KIND, split=split,
                        resolution=resolution, center_crop=center_crop)
