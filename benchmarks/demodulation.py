"""Benchmark: three ways to compute StyleGAN2's weight demodulation —

  official — the official non-fused path: per-sample modulated weights (N, O, I, kh, kw), squared and
             summed over the whole batch at once (`mibench.ops.demodulation.reference_squared_modulated_norm`);
  blocked  — mibench's: the same operations on cache-sized blocks of samples, keeping only the styles
             for the backward (`squared_modulated_norm`) — bit-identical to official;
  matmul   — the same maths as one matmul of the squared styles and the squared weights summed over
             the kernel: other rounding, so it would change every attack result. Nothing in mibench uses it.

For each it measures:
  1. the generator's forward + backward through w (as the attacks run it): seconds per batch, and the
     largest image difference from official;
  2. a short PPA run (the default suite's preset, classes 0-9 of one target, the shipped zoo): attack
     wall time and acc@1, so the speed-up of a whole attack and how far its result moves.

    python benchmarks/demodulation.py [--target synthfaces32-resnet] [--classes 0-9] [--threads 1]

Figures depend on the machine and its load; they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch

from mibench.generators import stylegan2
from mibench.ops.demodulation import reference_squared_modulated_norm

PATHS = ("official", "blocked", "matmul")


def matmul_demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """The same (N, O) coefficients as `stylegan2.demodulation_coefficients`, from styles² @ Σ_k weight²
    (no per-sample weights): other rounding."""
    return (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()


@contextlib.contextmanager
def demodulation(path: str):
    """Run the enclosed code with one of PATHS for the demodulation coefficients."""
    patches = {"official": ("squared_modulated_norm", reference_squared_modulated_norm),
               "matmul": ("demodulation_coefficients", matmul_demodulation_coefficients)}
    name, fn = patches.get(path, (None, None))
    original = getattr(stylegan2, name) if name else None
    if name:
        setattr(stylegan2, name, fn)
    try:
        yield
    finally:
        if name:
            setattr(stylegan2, name, original)


def generator_pass(G, w: torch.Tensor, reps: int) -> tuple[float, torch.Tensor]:
    """Best-of-`reps` seconds of one synthesis forward + backward through w, and the images."""
    best, img = float("inf"), None
    for rep in range(reps + 1):
        wr = w.clone().requires_grad_(True)
        t0 = time.perf_counter()
        img = G.synthesis(wr.unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode="const")
        img.square().mean().backward()
        if rep:  # the first pass is a warm-up
            best = min(best, time.perf_counter() - t0)
    return best, img.detach()


def main() -> None:
    """Measure both paths and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="synthfaces32-resnet")
    ap.add_argument("--classes", default="0-9")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=160)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from mibench.cards import get_card
    from mibench.run import RunSpec, parse_classes, run_one
    from mibench.run.spec import default_prior
    from mibench.zoo import load_prior

    G, _ = load_prior(default_prior(get_card("target", a.target)))
    G.requires_grad_(False)
    w = G.mapping(torch.randn(a.batch, G.z_dim, generator=torch.Generator().manual_seed(0)), None, psi=0.5)[:, 0]
    times, images = {}, {}
    for path in PATHS:
        with demodulation(path):
            times[path], images[path] = generator_pass(G, w, a.reps)
    print(f"{a.threads} thread(s); generator forward + backward, batch {a.batch}:")
    for path in PATHS:
        print(f"  {path:<8} {times[path]:.3f}s ({times['official'] / times[path]:.2f}× official), "
              f"max |image difference from official| {(images[path] - images['official']).abs().max():.2e}")

    classes = parse_classes(a.classes)
    with tempfile.TemporaryDirectory() as out:  # warm-up: loads the zoo and the data once, untimed
        run_one(RunSpec(target=a.target, attack="ppa", classes=classes[:1]), out=Path(out), device="cpu", progress=False)
    for path in PATHS:
        with demodulation(path), tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            entry = run_one(RunSpec(target=a.target, attack="ppa", classes=classes), out=Path(out), device="cpu",
                            progress=False)
            print(f"PPA on {a.target}, classes {a.classes}, {path:<8} demodulation: {time.perf_counter() - t0:6.1f}s, "
                  f"acc@1 {100 * entry['metrics']['acc@1']:.1f}%")


if __name__ == "__main__":
    main()
