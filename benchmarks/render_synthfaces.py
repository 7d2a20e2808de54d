"""Rendering throughput of synthfaces (images/s at 32 and 64 px), plus optional contact sheets.

    python benchmarks/render_synthfaces.py                      # 2 workers, 32 and 64 px
    python benchmarks/render_synthfaces.py --workers 1 --images 4096
    python benchmarks/render_synthfaces.py --sheet /tmp/sheet.png --sheet-resolution 64

Renders uncached (straight through `render_identities`), best of `--repeats` runs. The machine
may be shared, so the 1-minute load average is printed next to every figure.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from mibench.data.synthfaces import render_identities
from mibench.ops.imaging import grid, save_png


def throughput(resolution: int, images: int, workers: int, repeats: int) -> float:
    """Best-of-`repeats` images/s rendering `images` images (16 per identity) at `resolution`."""
    per = 16
    ids = np.repeat(np.arange((images + per - 1) // per), per)[:images]
    idx = np.tile(np.arange(per), (images + per - 1) // per)[:images]
    render_identities(ids[:64], idx[:64], resolution=resolution, workers=workers)  # warm-up
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        render_identities(ids, idx, resolution=resolution, workers=workers)
        best = max(best, images / (time.perf_counter() - t))
    return best


def contact_sheet(path: Path, resolution: int, population: str, identities: int, per_identity: int,
                  seed: int, scale: int) -> Path:
    """Write a PNG grid: one row per identity of `population`, its first `per_identity` images across."""
    ids = np.repeat(np.arange(identities), per_identity)
    idx = np.tile(np.arange(per_identity), identities)
    imgs = render_identities(ids, idx, resolution=resolution, seed=seed, population=population)
    rows = [imgs[i * per_identity:(i + 1) * per_identity] for i in range(identities)]
    return save_png(grid(rows), path, scale=scale)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="render threads (each runs torch single-threaded)")
    ap.add_argument("--images", type=int, default=4096, help="images per measurement at 32 px (÷4 at 64 px)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sheet", type=Path, default=None, help="also write a contact sheet PNG here")
    ap.add_argument("--sheet-resolution", type=int, default=64)
    ap.add_argument("--sheet-population", default="private", choices=["private", "public", "shifted"])
    ap.add_argument("--sheet-identities", type=int, default=10)
    ap.add_argument("--sheet-images", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print(f"cpus {os.cpu_count()}, workers {args.workers}, torch {torch.__version__}")
    for res, n in ((32, args.images), (64, max(64, args.images // 4))):
        load = os.getloadavg()[0]
        rate = throughput(res, n, args.workers, args.repeats)
        print(f"{res:3d} px: {rate:8.0f} img/s  ({n} images, best of {args.repeats}; "
              f"load average before {load:.2f})", flush=True)
    if args.sheet is not None:
        path = contact_sheet(args.sheet, args.sheet_resolution, args.sheet_population, args.sheet_identities,
                             args.sheet_images, args.seed, scale=max(1, 128 // args.sheet_resolution))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
