"""Time the tensor metrics at paper-like sizes (prints figures; no assertions).

    python benchmarks/bench_metrics.py [--classes 50] [--per-class 50] [--real-per-class 100] [--dim 2048]

Sizes default to a PPA-style evaluation slice: 50 attacked classes × 50 reconstructions, 100 private
images per class, 2048-d features. FID's 2048×2048 matrix square root dominates on CPU.
"""

from __future__ import annotations

import argparse
import time

import torch

from mibench.metrics import attack_accuracy, fid_from_features, knn_distance, prdc_per_class


def main() -> None:
    """Generate random features of the requested sizes and time each metric once."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=50)
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--real-per-class", type=int, default=100)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    c, n, m, d = args.classes, args.per_class, args.real_per_class, args.dim
    fake = torch.randn(c * n, d, generator=g).to(args.device)
    real = torch.randn(c * m, d, generator=g).to(args.device)
    fake_labels = torch.arange(c).repeat_interleave(n).to(args.device)
    real_labels = torch.arange(c).repeat_interleave(m).to(args.device)
    logits = torch.randn(c * n, 530, generator=g).to(args.device)
    print(f"device={args.device} threads={torch.get_num_threads()} classes={c} fakes/class={n} "
          f"reals/class={m} dim={d}")

    def timed(name, fn):
        t0 = time.perf_counter()
        fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        print(f"{name:>12}: {time.perf_counter() - t0:8.3f} s")

    timed("acc@1/5", lambda: attack_accuracy(logits, fake_labels))
    timed("knn_dist", lambda: knn_distance(fake, fake_labels, real, real_labels))
    timed("prdc (k=3)", lambda: prdc_per_class(real, real_labels, fake, fake_labels, k=3))
    timed("fid", lambda: fid_from_features(fake, real))


if __name__ == "__main__":
    main()
