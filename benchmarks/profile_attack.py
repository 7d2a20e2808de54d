"""Profile one attack run on the embedded setting: where its time goes, and how much of this
machine's dense-GEMM throughput it reaches.

Three passes over the same run (single-threaded, as the suite's workers run):
  1. timing    — wall time of the run, and its top costs by function (cProfile, cumulative,
                 mibench and torch functions), and by torch operator (torch.profiler, self CPU time);
  2. FLOPs     — the floating-point operations of the attack phase (torch.utils.flop_counter);
  3. GEMM peak — this machine's single-thread dense float32 GEMM FLOP/s (a 1024² matmul).
It prints achieved FLOP/s of the attack phase as a fraction of the GEMM peak.

    python benchmarks/profile_attack.py --attack ppa --classes 0-9

Figures depend on the machine and its load; they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path


def gemm_flops(n: int = 1024, reps: int = 20) -> float:
    """Single-thread float32 dense GEMM FLOP/s (best of `reps`)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def main() -> None:
    """Run the passes and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attack", default="ppa")
    ap.add_argument("--target", default="synthfaces32-resnet")
    ap.add_argument("--classes", default="0-9")
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from mibench.registry import ATTACKS
    from mibench.run import run_one
    from mibench.run.spec import RunSpec, parse_classes

    torch.set_num_threads(1)
    spec = RunSpec(target=a.target, attack=a.attack, classes=parse_classes(a.classes))
    run_one(spec, out=Path(tempfile.mkdtemp()), device="cpu", progress=False)  # warm: zoo, renders, LOKT stages

    # Time spent inside attack_classes (the attack phase), measured around the real method.
    phase = {"seconds": 0.0, "flops": 0}
    counter: dict[str, FlopCounterMode | None] = {"mode": None}
    cls = ATTACKS.get(a.attack)
    original = cls.attack_classes

    def timed(self, ctx, classes):
        t0 = time.perf_counter()
        mode = counter["mode"]
        if mode is not None:
            with mode:
                out = original(self, ctx, classes)
        else:
            out = original(self, ctx, classes)
        phase["seconds"] += time.perf_counter() - t0
        return out

    cls.attack_classes = timed

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    run_one(spec, out=Path(tempfile.mkdtemp()), device="cpu", progress=False)
    prof.disable()
    wall = time.perf_counter() - t0
    attack_s = phase["seconds"]
    print(f"{a.attack} on {a.target}, classes {a.classes}: run {wall:.1f}s, attack phase {attack_s:.1f}s "
          f"({100 * attack_s / wall:.0f}%)")
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(r"mibench|torch/nn/modules/module", a.top)
    print("\ntop costs by function (cumulative):")
    print("\n".join(line for line in buf.getvalue().splitlines() if line.strip())[-4000:])

    with profile(activities=[ProfilerActivity.CPU]) as p:
        run_one(spec, out=Path(tempfile.mkdtemp()), device="cpu", progress=False)
    print("\ntop torch operators (self CPU time):")
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.top))

    phase["seconds"] = 0.0
    counter["mode"] = FlopCounterMode(display=False)
    run_one(spec, out=Path(tempfile.mkdtemp()), device="cpu", progress=False)
    flops = counter["mode"].get_total_flops()
    peak = gemm_flops()
    achieved = flops / attack_s
    print(f"\nattack phase: {flops / 1e9:.1f} GFLOP (matmul/conv, forward + backward) in {attack_s:.1f}s "
          f"= {achieved / 1e9:.2f} GFLOP/s; single-thread dense GEMM peak {peak / 1e9:.1f} GFLOP/s "
          f"→ {100 * achieved / peak:.0f}% of peak")
    cls.attack_classes = original


if __name__ == "__main__":
    main()
