"""Time `train_classifier` end to end (augmentation + fwd/bwd + step + final evaluation) on random data.

Usage: python benchmarks/bench_train.py [--images 5000] [--size 32] [--classes 100] [--epochs 1]
       [--batch 128] [--threads N] [--defense none] [--arch-params JSON]
Random images: the figure is throughput, not accuracy. Timings on a shared machine are provisional.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from mibench.classifiers import build_classifier, train_classifier
from mibench.classifiers.recipe import TrainRecipe
from mibench.data.base import TensorImageDataset
from mibench.defenses import DefenseContext, build_defense


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--defense", default="none")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--arch-params", default="{}", help='compact_resnet params as JSON, e.g. {"width": 24}')
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, args.size, args.size), generator=g, dtype=torch.uint8)
    labels = torch.arange(args.images) % args.classes
    ds = TensorImageDataset(images, labels, [str(i) for i in range(args.classes)])
    test = TensorImageDataset(images[:1000], labels[:1000], ds.class_names)
    model = build_classifier("compact_resnet", args.classes, args.size, json.loads(args.arch_params), seed=0)
    defense = build_defense(args.defense)
    if defense.needs_prepare:
        model = defense.prepare(model, DefenseContext())
    recipe = TrainRecipe(epochs=args.epochs, batch_size=args.batch)
    t = time.perf_counter()
    res = train_classifier(model, ds, test, recipe, defense=defense, progress=False,
                           channels_last=not args.no_channels_last)
    total = time.perf_counter() - t
    print(f"threads={torch.get_num_threads()} arch_params={args.arch_params} defense={args.defense} "
          f"images={args.images} size={args.size} "
          f"epochs={args.epochs} batch={args.batch}: training {res.images_per_second:.0f} img/s, "
          f"total {total:.1f} s including evaluation of {len(test)} images")


if __name__ == "__main__":
    main()
