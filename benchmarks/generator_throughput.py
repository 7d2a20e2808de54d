"""Benchmark: StyleGAN2 generator forward+backward throughput (images/s) and GAN training steps/s.

Two modes per config:
  attack — eval mode, gradients w.r.t. ws only (what PPA / IF-GMI do every optimisation step);
  train  — train mode, gradients w.r.t. all generator parameters (the generator half of a GAN step).
`--train-steps N` also times N full training steps (G + D + lazy R1 + EMA) of the embedded prior.

Usage:  python benchmarks/generator_throughput.py [--device cpu|cuda] [--threads 2] [--train-steps 20]
Figures depend on the machine and its load; they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

import torch

from mibench.generators.stylegan2 import Generator, generator_kwargs, small_prior_params

OFFICIAL_256 = {"z_dim": 512, "w_dim": 512, "mapping_kwargs": {"num_layers": 8},
                "synthesis_kwargs": {"channel_base": 16384, "channel_max": 512, "num_fp16_res": 4,
                                     "conv_clamp": 256}}
CONFIGS: dict[str, tuple[dict[str, Any], int, int]] = {  # name -> (params, resolution, batch)
    "small-32": (small_prior_params(32), 32, 16),  # the embedded prior
    "small-64": (small_prior_params(64), 64, 16),
    "mid-32": ({"z_dim": 128, "w_dim": 128, "mapping_kwargs": {"num_layers": 2},
                "synthesis_kwargs": {"channel_base": 1024, "channel_max": 64}}, 32, 16),
    "wide-32": ({"z_dim": 256, "w_dim": 256, "mapping_kwargs": {"num_layers": 4},
                 "synthesis_kwargs": {"channel_base": 4096, "channel_max": 256}}, 32, 16),
    "wide-64": ({"z_dim": 256, "w_dim": 256, "mapping_kwargs": {"num_layers": 4},
                 "synthesis_kwargs": {"channel_base": 4096, "channel_max": 256}}, 64, 8),
    "official-256": (OFFICIAL_256, 256, 2),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_generator(params: dict[str, Any], resolution: int, batch: int, device: torch.device, mode: str,
                   repeats: int) -> tuple[float, int]:
    """(images/s, parameter count) of forward+backward in `mode` ('attack' or 'train')."""
    torch.manual_seed(0)
    G = Generator(**generator_kwargs(params, resolution)).to(device)
    G.train(mode == "train")
    G.requires_grad_(mode == "train")
    z = torch.randn(batch, G.z_dim, device=device)
    ws0 = G.mapping(z, skip_w_avg_update=True).detach()

    def step() -> None:
        if mode == "attack":
            ws = ws0.clone().requires_grad_(True)
            G.synthesize(ws, noise_mode="const").square().mean().backward()
        else:
            G(z, noise_mode="random").square().mean().backward()
            G.zero_grad(set_to_none=True)

    step()  # warm-up (allocator, kernel selection)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    _sync(device)
    seconds = time.perf_counter() - start
    return batch * repeats / seconds, sum(p.numel() for p in G.parameters())


def time_training(steps: int, device: torch.device) -> float:
    """Full GAN training steps/s of the embedded 32 px prior on random images (batch 16)."""
    from mibench.generators.train import StyleGAN2TrainRecipe, train_stylegan2

    images = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    warm = 4
    recipe = StyleGAN2TrainRecipe(steps=steps + warm, batch_size=16, log_every=warm)
    result = train_stylegan2(images, recipe, seed=0, device=device, progress=False)
    first = next(r for r in result.log if r["step"] == warm)["seconds"]
    return steps / (result.log[-1]["seconds"] - first)


def main() -> None:
    """Print the throughput table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--train-steps", type=int, default=0, help="also time this many GAN training steps")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"torch {torch.__version__}, device {device} ({name}), threads {torch.get_num_threads()}")
    print(f"{'config':<14}{'res':>5}{'batch':>6}{'params':>11}{'attack img/s':>14}{'train img/s':>13}")
    for cfg in args.configs:
        params, res, batch = CONFIGS[cfg]
        if device.type == "cuda":
            batch *= 4
        attack, n_params = time_generator(params, res, batch, device, "attack", args.repeats)
        train, _ = time_generator(params, res, batch, device, "train", args.repeats)
        print(f"{cfg:<14}{res:>5}{batch:>6}{n_params / 1e6:>10.2f}M{attack:>14.1f}{train:>13.1f}", flush=True)
    if args.train_steps:
        rate = time_training(args.train_steps, device)
        print(f"GAN training, embedded prior 32 px, batch 16: {rate:.2f} steps/s "
              f"({rate * 16:.0f} images/s; {rate * 480:.0f} steps in 8 min)")


if __name__ == "__main__":
    main()
