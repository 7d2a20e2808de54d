"""Contact sheets of a dataset: one row per identity, columns are that identity's images."""

from __future__ import annotations

from pathlib import Path

import torch

from mibench.data.base import ImageDataset
from mibench.ops.imaging import grid, save_png


def contact_sheet(ds: ImageDataset, identities: int = 8, per_identity: int = 10,
                  first_class: int = 0) -> torch.Tensor:
    """A uint8 image (3, H, W): rows = classes `first_class…`, columns = their first images."""
    rows = []
    if ds.num_classes == 0:  # unlabelled folder: plain grid in file order
        n = min(len(ds), identities * per_identity)
        imgs = torch.stack([ds[i][0] for i in range(n)])
        return grid([imgs[i:i + per_identity] for i in range(0, n, per_identity)])
    for c in range(first_class, min(ds.num_classes, first_class + identities)):
        idx = ds.indices_of_class(c)[:per_identity].tolist()
        if idx:
            rows.append(torch.stack([ds[i][0] for i in idx]))
    return grid(rows)


def write_contact_sheet(ds: ImageDataset, out: str | Path, identities: int = 8, per_identity: int = 10,
                        scale: int = 1) -> Path:
    """Render `contact_sheet` to a PNG file."""
    return save_png(contact_sheet(ds, identities, per_identity), out, scale=scale)
