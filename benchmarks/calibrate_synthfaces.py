"""Difficulty calibration of synthfaces: a small CNN must learn the identities, a pixel template must not.

Prints on the private splits of a synthfaces preset:
  (a) test accuracy of a compact ResNet (~0.3 M params) trained from scratch on private-train with
      random-resized-crop + horizontal-flip augmentation, within a wall-time budget;
  (b) test accuracy of a 1-nearest-neighbour classifier on raw pixels (L2);
  (c) for reference, attribute oracles: 1-NN on the true per-image attribute values, using the single
      most telling attribute vs. all attributes together (identity should need the combination).
The target is (a) ≥ 90 % (ideally 93–97 %) within ~1–3 minutes on 2 CPU cores and (b) ≤ 50 %
(chance is 1 / num_private). Timings depend on machine load, which is printed alongside.
Training runs torch single-threaded by default: on a shared 2-core machine, two OpenMP threads
competing with other processes made training ~10× slower; pass --threads 2 on an idle machine.

    python benchmarks/calibrate_synthfaces.py                  # synthfaces32, 2 threads, 180 s budget
    python benchmarks/calibrate_synthfaces.py --epochs 12 --budget-s 120
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mibench.data import load_dataset
from mibench.data import synthfaces as sf


class Block(nn.Module):
    """A basic residual block (two 3×3 convs) with a 1×1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (x if self.proj is None else self.proj(x)))


class CompactResNet(nn.Module):
    """Stem conv at full resolution, then one residual block per stage, each halving the resolution."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU())
        blocks, cin = [], widths[0]
        for w in widths[1:]:
            blocks.append(Block(cin, w, 2))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.25
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def random_resized_crop_flip(x: torch.Tensor, g: torch.Generator, scale=(0.8, 1.0),
                             ratio=(0.9, 1.1)) -> torch.Tensor:
    """Batched RandomResizedCrop + horizontal flip of float images (B, 3, H, W) via one affine resample."""
    b = x.shape[0]
    area = torch.empty(b).uniform_(*scale, generator=g)
    logr = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=g)
    r = logr.exp()
    w = (area * r).sqrt().clamp(max=1.0)
    h = (area / r).sqrt().clamp(max=1.0)
    cx = (torch.rand(b, generator=g) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, generator=g) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy of `model` on uint8 images `x` (N, 3, H, W)."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch].float().div(255).contiguous(memory_format=torch.channels_last))
        correct += int((logits.argmax(1) == y[i:i + batch]).sum())
    return correct / len(x)


@torch.no_grad()
def nearest_neighbour(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor) -> float:
    """Accuracy of 1-NN on raw pixels (squared L2 on [0, 1] values)."""
    a = xtr.flatten(1).float() / 255
    b = xte.flatten(1).float() / 255
    d = torch.cdist(b, a)
    return float((ytr[d.argmin(1)] == yte).float().mean())


def attribute_oracles(seed: int, num_private: int) -> tuple[str, float, float]:
    """1-NN test accuracy on true per-image attributes: (best single attribute, its accuracy, all of them)."""
    cfg = sf.check_params("synthfaces", {"seed": seed, "num_private": num_private})
    ident = sf.identity_attributes(np.arange(num_private), seed=seed)
    seen = []
    for split in ("private-train", "private-test"):
        plan = sf.split_plan(split, cfg)
        seen.append((sf.image_attributes(sf.take_rows(ident, plan.identities), plan.image_indices, seed=seed),
                     torch.from_numpy(plan.labels)))
    (tr, ytr), (te, yte) = seen

    def columns(a: dict[str, np.ndarray], names) -> torch.Tensor:
        cols = []
        for n in names:
            if n in sf.CATEGORICAL:  # one-hot: any two different values are equally far apart
                k = int(max(ident[n].max(), a[n].max())) + 1
                cols.append(np.eye(k)[a[n]] * 2.0)
            else:
                cols.append(((a[n] - ident[n].mean()) / ident[n].std())[:, None])
        return torch.from_numpy(np.concatenate(cols, axis=1))

    def acc(names) -> float:
        d = torch.cdist(columns(te, names), columns(tr, names))
        return float((ytr[d.argmin(1)] == yte).float().mean())

    singles = {n: acc([n]) for n in (*sf.CATEGORICAL, *sf.CONTINUOUS)}
    best = max(singles, key=singles.get)
    return best, singles[best], acc([*sf.CATEGORICAL, *sf.CONTINUOUS])


def train_cnn(xtr, ytr, xte, yte, num_classes: int, epochs: int, budget_s: float, batch: int, lr: float,
              widths: tuple[int, ...], seed: int) -> tuple[float, float, int, int]:
    """Train the compact ResNet; returns (test accuracy, wall seconds, epochs run, parameter count)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = CompactResNet(num_classes, widths).to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps_per_epoch = (len(xtr) + batch - 1) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.25)
    start = time.perf_counter()
    done = 0
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        total, seen = 0.0, 0
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            xb = random_resized_crop_flip(xtr[idx].float().div(255), g)
            xb = xb.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(xb), ytr[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        done = epoch + 1
        elapsed = time.perf_counter() - start
        print(f"  epoch {done:2d}/{epochs}  loss {total / seen:.3f}  {elapsed:6.1f} s", flush=True)
        if elapsed > budget_s and done < epochs:
            print(f"  stopping: wall-time budget of {budget_s:.0f} s used up")
            break
    wall = time.perf_counter() - start
    return evaluate(model, xte, yte), wall, done, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthfaces32")
    ap.add_argument("--seed", type=int, default=0, help="dataset seed")
    ap.add_argument("--num-private", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--budget-s", type=float, default=180.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--widths", default="16,32,64,128")
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--skip-cnn", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    params = {"seed": args.seed, "num_private": args.num_private}
    t0 = time.perf_counter()
    train = load_dataset(args.dataset, "private-train", **params)
    test = load_dataset(args.dataset, "private-test", **params)
    xtr, ytr = train.load_tensors()
    xte, yte = test.load_tensors()
    print(f"{args.dataset}: {len(xtr)} train / {len(xte)} test images, {train.num_classes} classes, "
          f"{train.resolution} px (loaded/rendered in {time.perf_counter() - t0:.1f} s)")
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cpus, "
          f"torch threads {torch.get_num_threads()}")

    knn = nearest_neighbour(xtr, ytr, xte, yte)
    print(f"(b) 1-NN raw-pixel test accuracy: {100 * knn:.1f} %  (chance {100 / train.num_classes:.1f} %)")
    if args.dataset.startswith("synthfaces"):
        name, single, combined = attribute_oracles(args.seed, args.num_private)
        print(f"(c) attribute oracle 1-NN on true per-image attributes: best single attribute '{name}' "
              f"{100 * single:.1f} %, all attributes together {100 * combined:.1f} %")
    if args.skip_cnn:
        return
    widths = tuple(int(w) for w in args.widths.split(","))
    acc, wall, epochs, nparams = train_cnn(xtr, ytr, xte, yte, train.num_classes, args.epochs, args.budget_s,
                                           args.batch, args.lr, widths, args.train_seed)
    print(f"(a) CNN test accuracy: {100 * acc:.1f} %  — CompactResNet{widths} "
          f"({nparams / 1e3:.0f} k params), "
          f"{epochs} epochs in {wall:.1f} s wall, load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
