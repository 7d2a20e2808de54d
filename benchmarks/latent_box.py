"""How the latent box shapes a GMI-prior attack's images: the critic's realism score and the
speckle energy (mean |Laplacian|) of each run's reconstructions, next to prior samples drawn from
N(0, I) and clamped to ±1 (GMI's box) and ±1.5 (BREP-MI's).

Why: BREP-MI's reconstructions look noisier than GMI's on the same shipped GAN. This measures
whether that follows the attack's objective (the critic term GMI has and BREP-MI lacks) or the box
its latents live in. Runs are run folders of attacks whose class files hold GMI latents z
(`gmi`, `brepmi`, `rlbmi`, …).

    python benchmarks/latent_box.py runs/synthfaces32-resnet__gmi__… runs/synthfaces32-resnet__brepmi__…
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from mibench.api import load_prior


def speckle(x: torch.Tensor) -> torch.Tensor:
    """Mean |4-neighbour Laplacian| (N,) of images (N, 3, H, W) in [−1, 1]."""
    k = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return F.conv2d(x, k.to(x), groups=3).abs().mean((1, 2, 3))


@torch.no_grad()
def describe(prior, z: torch.Tensor, name: str) -> str:
    """One line: the critic score and speckle of G(z) (mean, sd), |z| and the share of coordinates
    at the box edge."""
    x = prior(z)
    c, s = prior.critic(x), speckle(x)
    edge = (z.abs() >= z.abs().max() - 1e-4).float().mean()
    return (f"{name:34s} n={len(z):5d}  critic {c.mean():+8.3f} (sd {c.std():.3f})  speckle {s.mean():.4f} "
            f"(sd {s.std():.4f})  |z| {z.norm(dim=1).mean():5.2f}  at the edge {100 * edge:4.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--prior", default="synthfaces32-gmi")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    prior, _ = load_prior(args.prior)
    z = torch.randn(args.samples, prior.z_dim, generator=torch.Generator().manual_seed(0))
    print(describe(prior, z, "prior N(0, I)"))
    for box in (1.0, 1.5):
        print(describe(prior, z.clamp(-box, box), f"prior N(0, I) clamped to ±{box:g}"))
    for run in args.runs:
        files = sorted(glob.glob(str(run / "classes" / "*.safetensors")))
        zs = torch.cat([load_file(f)["latents"].reshape(-1, prior.z_dim) for f in files]).float()
        print(describe(prior, zs, run.name.split("__seed")[0]))


if __name__ == "__main__":
    main()
