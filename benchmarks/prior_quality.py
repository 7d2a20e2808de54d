"""Image quality of the embedded StyleGAN2 prior over its training, in the synthfaces evaluator's features.

Trains the prior of a generator card exactly as `mibench zoo build` does (same recipe, seed, thread
count) and, every `--every` steps, samples `--n` images from the EMA generator and computes:

- FID in the synthfaces evaluator's penultimate features against real public images (the metric the
  embedded default reports as `fid_eval`), next to the floor: FID of real public images against
  *other* real public images of the same count;
- mode coverage: the fraction of the evaluator's classes that are the top-1 prediction of at least
  one sample (a collapsed prior covers few).

Evaluation time is excluded from the reported training time. Writes the sample grid to `--grid`.

    python benchmarks/prior_quality.py --card synthfaces32-stylegan2 --every 250 --grid notes/prior.png
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from mibench import zoo
from mibench.cards import get_card
from mibench.data import load_dataset
from mibench.metrics.fid import fid_from_features
from mibench.ops.imaging import grid, save_png


@torch.no_grad()
def features(evaluator, images01: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D), logits (N, K)) of images (N, 3, H, W) in [0, 1]."""
    fs, ls = [], []
    for i in range(0, len(images01), batch):
        f, lg = evaluator.forward_with_features(images01[i:i + batch])
        fs.append(f)
        ls.append(lg)
    return torch.cat(fs), torch.cat(ls)


@torch.no_grad()
def sample(G, n: int, psi: float = 1.0, seed: int = 1, batch: int = 500) -> torch.Tensor:
    """n samples (N, 3, R, R) in [0, 1] with constant noise."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    out = [G(z[i:i + batch], None, truncation_psi=psi, noise_mode="const") for i in range(0, n, batch)]
    return ((torch.cat(out) + 1) / 2).clamp(0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--card", default="synthfaces32-stylegan2")
    ap.add_argument("--evaluator", default="synthfaces32-evaluator")
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--n", type=int, default=2000, help="samples per FID evaluation")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (zoo builds use 1 per worker)")
    ap.add_argument("--grid", default="prior_samples.png")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    card = get_card("generator", args.card)
    evaluator, _ = zoo.load_target(args.evaluator, "cpu", build=True, progress=False)
    real, _ = load_dataset(card.dataset.name, card.dataset.split or "public").load_tensors()
    perm = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    n = min(args.n, len(real) // 2)
    f_ref, _ = features(evaluator, real[perm[:n]].float() / 255)
    f_other, l_other = features(evaluator, real[perm[n:2 * n]].float() / 255)
    floor = fid_from_features(f_other, f_ref)
    k = l_other.shape[1]
    print(f"real public vs real public (floor): FID_eval {floor:.2f}, coverage "
          f"{l_other.argmax(1).unique().numel() / k:.2f}  ({n} images each)")

    curve, eval_s = [], 0.0
    t_start = time.monotonic()

    def evaluate(step: int, G) -> dict:
        nonlocal eval_s
        t = time.monotonic()
        f, lg = features(evaluator, sample(G, n))
        fid, cov = fid_from_features(f, f_ref), lg.argmax(1).unique().numel() / k
        eval_s += time.monotonic() - t
        train_s = time.monotonic() - t_start - eval_s
        curve.append({"step": step, "train_s": round(train_s, 1), "fid_eval": round(fid, 2), "coverage": cov})
        print(f"step {step:5d}  train {train_s:6.0f}s  FID_eval {fid:7.2f}  coverage {cov:.2f}", flush=True)
        return {"fid_eval": fid}

    path = zoo.build_generator(card, progress=False, callback=evaluate, callback_every=args.every)
    G, _ = zoo.load_prior(card, "cpu", build=False, progress=False)
    final = sample(G, n, psi=1.0)
    f, lg = features(evaluator, final)
    fid, cov = fid_from_features(f, f_ref), lg.argmax(1).unique().numel() / k
    psi = card.truncation_psi or 1.0
    x = sample(G, 64, psi=psi, seed=2)
    save_png(grid([x[r * 8:(r + 1) * 8] for r in range(8)]), args.grid, scale=3)
    print(f"final ({path.name}): FID_eval {fid:.2f} (floor {floor:.2f}), coverage {cov:.2f}; "
          f"grid (psi {psi}) -> {args.grid}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"floor": floor, "final": {"fid_eval": fid, "coverage": cov}, "curve": curve}, fh, indent=1)


if __name__ == "__main__":
    main()
