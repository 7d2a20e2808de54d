"""Dataset interface shared by every data source.

Every dataset yields `(image, label)` with `image` a float32 tensor (3, H, W) in [0, 1] and `label`
an int (−1 for unlabelled image folders). Small datasets materialise to uint8 tensors with
`load_tensors()` so training loops index memory instead of decoding files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from mibench.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


class ImageDataset(torch.utils.data.Dataset):
    """Labelled images: `ds[i] -> (float32 (3, H, W) in [0, 1], int label)`."""

    name: str = ""
    split: str = ""
    resolution: int = 0
    class_names: list[str]
    labels: torch.Tensor  # (N,) int64, −1 when unlabelled
    # What generated the data, for datasets that know it (synthfaces: every class is a known vector of
    # attributes); metrics of ground-truth identity recovery need it. None for real data.
    ground_truth: Any = None

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for unlabelled data)."""
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def indices_of_class(self, c: int) -> torch.Tensor:
        """Indices of the samples labelled `c`."""
        return torch.nonzero(self.labels == c).flatten()

    def load_tensors(self, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as a uint8 tensor (N, 3, H, W) and labels (N,)."""
        raise NotImplementedError  # abstract: implemented by every concrete dataset below


class TensorImageDataset(ImageDataset):
    """An in-memory dataset backed by a uint8 tensor (N, 3, H, W)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str],
                 *, name: str = "", split: str = ""):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = labels.long()
        self.class_names = list(class_names)
        self.name, self.split = name, split
        self.resolution = int(images.shape[-1])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].float() / 255.0, int(self.labels[i])

    def load_tensors(self, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images, self.labels


def center_crop_resize(img: Image.Image, resolution: int, center_crop: float | int | None) -> Image.Image:
    """Centre-crop (`int` pixels, or `float` fraction of the short side) then resize to a square."""
    img = img.convert("RGB")
    w, h = img.size
    if center_crop is None:
        side = min(w, h)
    elif isinstance(center_crop, float) and center_crop <= 1.0:
        side = max(1, round(min(w, h) * center_crop))
    else:
        side = min(int(center_crop), w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != resolution:
        img = img.resize((resolution, resolution), Image.Resampling.BICUBIC if side < resolution
                         else Image.Resampling.LANCZOS)
    return img


def pil_to_uint8(img: Image.Image) -> torch.Tensor:
    """A PIL RGB image as a uint8 tensor (3, H, W)."""
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return t.view(img.size[1], img.size[0], 3).permute(2, 0, 1).contiguous()


class FileImageDataset(ImageDataset):
    """Images read lazily from files, centre-cropped and resized to `resolution`."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], class_names: Sequence[str], *,
                 resolution: int, center_crop: float | int | None = None, name: str = "", split: str = ""):
        self.files = [Path(f) for f in files]
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.class_names = list(class_names)
        self.resolution = int(resolution)
        self.center_crop = center_crop
        self.name, self.split = name, split

    def _load(self, i: int) -> torch.Tensor:
        path = self.files[i]
        try:
            with Image.open(path) as img:
                return pil_to_uint8(center_crop_resize(img, self.resolution, self.center_crop))
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot read image: {exc}", path=path,
                            fix="remove or replace the corrupt file") from None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._load(i).float() / 255.0, int(self.labels[i])

    def load_tensors(self, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        from tqdm import tqdm

        out = torch.empty(len(self), 3, self.resolution, self.resolution, dtype=torch.uint8)
        it = range(len(self))
        for i in tqdm(it, desc=f"loading {self.name}:{self.split}", disable=not progress, unit="img"):
            out[i] = self._load(i)
        return out, self.labels


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize float images (N, C, H, W) to (N, C, size, size) with antialiased bilinear filtering."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=x.shape[-1] > size)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
