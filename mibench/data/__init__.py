"""Datasets: the embedded `synthfaces` and loaders for CelebA, FaceScrub, Stanford Dogs and folders.

A dataset kind is registered as a factory `factory(split, root=None, **params) -> ImageDataset`
with metadata `splits=[...]`, `description=...`. `load_dataset` is the one way to open one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Importing these modules registers their dataset kinds.
from mibench.data import celeba, facescrub, imagefolder, stanford_dogs, synthfaces, unlabelled  # noqa: E402,F401
from mibench.data.base import FileImageDataset, ImageDataset, TensorImageDataset  # noqa: F401
from mibench.errors import DataError
from mibench.registry import DATASETS, suggest


def load_dataset(name: str, split: str, root: str | Path | None = None, **params: Any) -> ImageDataset:
    """Open the registered dataset `name` at `split` (real datasets need `root`)."""
    factory = DATASETS.get(name)
    splits = DATASETS.meta(name).get("splits", [])
    if splits and split not in splits:
        raise DataError(f"dataset '{name}' has no split '{split}'{suggest(split, splits)}",
                        fix=f"use one of: {', '.join(splits)}")
    return factory(split, Path(root).expanduser() if root is not None else None, **params)
