"""Print parameter counts and training throughput (fwd + bwd + SGD step, images/s) of compact_resnet configs.

Usage: python benchmarks/bench_classifiers.py [--size 32] [--batch 128] [--steps 20] [--threads N]
Timings depend on the machine and its load; they are for budgeting, never asserted.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from mibench.classifiers import build_classifier, count_parameters
from mibench.defenses import build_defense

CONFIGS = {
    "default": {},
    "w32-d111-s2": {"width": 32, "depths": [1, 1, 1], "stem_stride": 2},
    "w32-d1111-s2": {"width": 32, "depths": [1, 1, 1, 1], "stem_stride": 2},
    "w48-d111-s1": {"width": 48, "depths": [1, 1, 1], "stem_stride": 1},
    "w64-d111-s2": {"width": 64, "depths": [1, 1, 1], "stem_stride": 2},
    "w16-d111-s1": {"width": 16, "depths": [1, 1, 1], "stem_stride": 1},
    "w24-d111-s2": {"width": 24, "depths": [1, 1, 1], "stem_stride": 2},
    "w32-d222-s2": {"width": 32, "depths": [2, 2, 2], "stem_stride": 2},
    "w24-d111-s1": {"width": 24, "depths": [1, 1, 1], "stem_stride": 1},
}


def bench(params: dict, size: int, batch: int, steps: int, channels_last: bool, defense: str) -> dict:
    model = build_classifier("compact_resnet", 50, size, params, seed=0)
    d = build_defense(defense)
    if d.needs_prepare:
        model = d.prepare(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, 50, (batch,))
    model.train()
    for i in range(steps + 3):
        if i == 3:
            t, c = time.perf_counter(), time.process_time()
        loss, _ = d.loss(model, x, y, 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dt, dc = time.perf_counter() - t, time.process_time() - c
    # cpu_ms_per_img: process CPU time per image — less sensitive to other users of a shared machine;
    # on an idle machine with T threads, images/s ≈ T * 1000 / cpu_ms_per_img (if threads scale well).
    return {"params": count_parameters(model), "img_per_s": round(steps * batch / dt, 1),
            "cpu_ms_per_img": round(1000 * dc / (steps * batch), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--defense", default="none")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, size {args.size}, "
          f"batch {args.batch}, "
          f"defense {args.defense}")
    for name in args.configs.split(","):
        r = bench(CONFIGS[name], args.size, args.batch, args.steps, args.channels_last, args.defense)
        print(json.dumps({"config": name, **CONFIGS[name], **r}))


if __name__ == "__main__":
    main()
