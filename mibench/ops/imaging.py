"""Image grids and PNG output shared by previews, run reports and the leaderboard."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from mibench.ops.fileio import atomic_path


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] (or uint8) (N, 3, H, W) → uint8 (N, 3, H, W)."""
    if images.dtype == torch.uint8:
        return images
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def grid(rows: list[torch.Tensor], pad: int = 2, pad_value: int = 255) -> torch.Tensor:
    """Tile rows of images (each (n_i, 3, H, W)) into one uint8 image (3, H', W'); short rows are padded."""
    rows = [to_uint8(r) for r in rows if r.numel()]
    if not rows:
        raise ValueError("grid needs at least one image")
    h, w = rows[0].shape[-2:]
    ncols = max(r.shape[0] for r in rows)
    out = torch.full((3, len(rows) * (h + pad) + pad, ncols * (w + pad) + pad), pad_value, dtype=torch.uint8)
    for i, r in enumerate(rows):
        for j in range(r.shape[0]):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[:, y:y + h, x:x + w] = r[j]
    return out


def _label_rows(pil: Image.Image, labels: list[str], pitch: int, offset: int) -> Image.Image:
    """`pil` with a white strip on the left naming each grid row (row i starts at offset + i·pitch)."""
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(pil)
    width = max(int(draw.textlength(t, font=font)) for t in labels) + 8
    out = Image.new("RGB", (pil.width + width, pil.height), (255, 255, 255))
    out.paste(pil, (width, 0))
    draw = ImageDraw.Draw(out)
    for i, text in enumerate(labels):
        draw.text((4, offset + i * pitch + max(0, pitch // 2 - 6)), text, fill=(0, 0, 0), font=font)
    return out


def save_png(image: torch.Tensor, path: str | Path, scale: int = 1, row_labels: list[str] | None = None,
             row_pitch: int | None = None, pad: int = 2) -> Path:
    """Write a (3, H, W) uint8/float image to `path` atomically, optionally upscaled (nearest); with
    `row_labels` (and the grid's `row_pitch` = image height + pad), each grid row is named on the left."""
    img = to_uint8(image.unsqueeze(0))[0]
    pil = Image.fromarray(img.permute(1, 2, 0).contiguous().numpy())
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
    if row_labels:
        pil = _label_rows(pil, row_labels, (row_pitch or 0) * scale, pad * scale)
    path = Path(path)
    with atomic_path(path) as tmp:
        pil.save(tmp, format="PNG")
    return path
