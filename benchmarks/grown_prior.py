"""A grown prior against its source, upsampled: does the extra block add anything the figures see?

For a prior card grown from a lower-resolution one (`init_from`, e.g. synthfaces64-stylegan2 from
synthfaces32-stylegan2-v2), measures the zoo's quality figures (`mibench.zoo.prior_quality`: FID_eval
next to the real-vs-real floor, class coverage, precision / recall, 2000 untruncated samples) of the
grown prior and of its source on the grown prior's data and evaluator (the evaluator resizes the
source's smaller images to its input size, bilinearly), and writes a grid of the same latents:
source upsampled (top row) over the grown prior (bottom row), untruncated.

    python benchmarks/grown_prior.py --card synthfaces64-stylegan2 --grid grown.png
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from mibench.cards import get_card
from mibench.ops.imaging import grid, save_png
from mibench.registry import GENERATORS
from mibench.zoo.prior_quality import prior_quality
from mibench.zoo.priors import load_prior


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--card", default="synthfaces64-stylegan2")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grid", default="grown_prior.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    card = get_card("generator", args.card)
    if card.init_from is None:
        raise SystemExit(f"{card.name} does not start from another prior (no init_from)")
    kind = GENERATORS.get(card.kind)
    grown, _ = load_prior(card, progress=False)
    source, _ = load_prior(card.init_from, progress=False)
    for name, G in ((card.init_from + " (upsampled)", source), (card.name, grown)):
        q = prior_quality(card, G, n=args.samples)
        print(json.dumps({"prior": name, **{k: round(v, 4) if isinstance(v, float) else v
                                            for k, v in q.to_dict().items()}}))
    z = torch.randn(8, grown.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rows = [((kind.sample(G, z, psi=1.0, cutoff=None) + 1) / 2).clamp(0, 1) for G in (source, grown)]
    rows[0] = F.interpolate(rows[0], size=card.resolution, mode="bilinear", align_corners=False).clamp(0, 1)
    save_png(grid(rows), args.grid, scale=2)
    print("grid:", args.grid)


if __name__ == "__main__":
    main()
