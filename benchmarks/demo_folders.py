"""Two small image-folder datasets that are not synthfaces, for trying the "your own data" flow.

- `digits`: the UCI handwritten digits bundled with scikit-learn (1797 real 8×8 scans, 16 grey
  levels), upscaled to 32 px and saved as RGB. Private classes: digits 0-4 (one folder each);
  public data: digits 5-9 (a disjoint set of classes, unlabelled).
- `shapes`: procedurally drawn 32 px shapes (random colour, size, position, rotation, background
  and noise). Private classes: circle, square, triangle, cross, star (150 images each); public
  data: 1200 images of ring, diamond, hexagon (disjoint classes).

    pip install scikit-learn     # for `digits` only
    python benchmarks/demo_folders.py --out /tmp/demo      # writes /tmp/demo/{digits,shapes}/{private,public}
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PRIVATE_SHAPES = ["circle", "square", "triangle", "cross", "star"]
PUBLIC_SHAPES = ["ring", "diamond", "hexagon"]


def digits(out: Path, size: int = 32) -> None:
    """The scikit-learn digits as private (0-4, by class) and public (5-9) folders."""
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (img, label) in enumerate(zip(d.images, d.target)):
        grey = Image.fromarray((255 - img * 255 / 16).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
        folder = out / "private" / str(label) if label < 5 else out / "public"
        folder.mkdir(parents=True, exist_ok=True)
        grey.convert("RGB").save(folder / f"{i:04d}.png")


def _polygon(cx: float, cy: float, r: float, n: int, rot: float, inner: float | None = None) -> list[tuple[float, float]]:
    pts = []
    for k in range(n * (2 if inner else 1)):
        rad = r if not inner or k % 2 == 0 else r * inner
        a = rot + 2 * math.pi * k / (n * (2 if inner else 1))
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def draw_shape(kind: str, rng: np.random.Generator, size: int = 32, scale: int = 4) -> Image.Image:
    """One shape on a noisy background (drawn at `scale`× and downsampled: anti-aliased edges)."""
    s = size * scale
    bg = tuple(int(v) for v in rng.integers(0, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 256, 3))
    while sum(abs(a - b) for a, b in zip(bg, fg)) < 200:  # keep the shape visible
        fg = tuple(int(v) for v in rng.integers(0, 256, 3))
    im = Image.new("RGB", (s, s), bg)
    dr = ImageDraw.Draw(im)
    r = s * rng.uniform(0.22, 0.38)
    cx, cy = s / 2 + rng.uniform(-0.12, 0.12) * s, s / 2 + rng.uniform(-0.12, 0.12) * s
    rot = rng.uniform(0, 2 * math.pi)
    if kind == "circle":
        dr.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif kind == "ring":
        dr.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
        dr.ellipse([cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55], fill=bg)
    elif kind == "square":
        dr.polygon(_polygon(cx, cy, r, 4, rot), fill=fg)
    elif kind == "diamond":
        pts = _polygon(cx, cy, r, 4, math.pi / 4)
        dr.polygon([(x, cy + (y - cy) * 1.6) for x, y in pts], fill=fg)
    elif kind == "triangle":
        dr.polygon(_polygon(cx, cy, r, 3, rot), fill=fg)
    elif kind == "hexagon":
        dr.polygon(_polygon(cx, cy, r, 6, rot), fill=fg)
    elif kind == "star":
        dr.polygon(_polygon(cx, cy, r, 5, rot, inner=0.45), fill=fg)
    elif kind == "cross":
        w = r * 0.35
        for a in (rot, rot + math.pi / 2):
            dx, dy = math.cos(a), math.sin(a)
            px, py = -dy * w, dx * w
            dr.polygon([(cx - dx * r + px, cy - dy * r + py), (cx + dx * r + px, cy + dy * r + py),
                        (cx + dx * r - px, cy + dy * r - py), (cx - dx * r - px, cy - dy * r - py)], fill=fg)
    else:
        raise ValueError(kind)
    small = np.asarray(im.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    small += rng.normal(0, 8, small.shape)
    return Image.fromarray(np.clip(small, 0, 255).astype(np.uint8))


def shapes(out: Path, per_class: int = 150, public: int = 1200, seed: int = 0) -> None:
    """Private shape classes (one folder each) and public images of the other shapes."""
    rng = np.random.default_rng(seed)
    for kind in PRIVATE_SHAPES:
        folder = out / "private" / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_shape(kind, rng).save(folder / f"{i:04d}.png")
    folder = out / "public"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(public):
        draw_shape(PUBLIC_SHAPES[i % len(PUBLIC_SHAPES)], rng).save(folder / f"{i:04d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("demo"))
    ap.add_argument("--only", choices=["digits", "shapes"], default=None)
    args = ap.parse_args()
    if args.only in (None, "digits"):
        digits(args.out / "digits")
        print(f"wrote {args.out / 'digits'}")
    if args.only in (None, "shapes"):
        shapes(args.out / "shapes")
        print(f"wrote {args.out / 'shapes'}")


if __name__ == "__main__":
    main()
