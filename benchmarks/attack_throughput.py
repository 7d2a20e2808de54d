"""Benchmark: the PPA optimisation loop — mibench's batched implementation vs a straightforward
per-class reference loop written here, same generator, target and settings, in one run.

Reports images·steps/s, peak memory and the convolution / matmul FLOP/s reached by each (counted with
torch.utils.flop_counter in a second, untimed pass), as a share of this machine's single-thread dense
GEMM peak on CPU (`profile_attack.gemm_flops`, at --threads 1), and the ceiling that peak puts on our
speed-up over the reference: the reference's time if ours ran its FLOPs at the peak. Sizes:
  embedded  — the default synthfaces prior's shape (32 px StyleGAN2, 128-d w) + compact ResNet at 32 px
  embedded-small — the same with the half-width embedded recipe (the default prior before v2)
  research  — StyleGAN2 at 256 px (and 1024 px with --research-1024) with random weights,
              ResNet-152 at 224 px (PPA's setting: centre crop 800/1024, resize 224)

The reference loop attacks one class at a time and draws its random crops with torchvision,
image by image, as a direct transcription of the method would. Each variant runs in its own
subprocess so peak memory (max RSS on CPU, max allocated on CUDA) is its own.

With --batch-scaling it also prints, per size, the milliseconds per image of one generator + target
forward and backward (no optimiser, no crops) when the same 160 (embedded) samples go through in batches
of 16, 40, 80 or 160: how much a bigger batch can save on this machine, whoever loops over it.

Usage: python benchmarks/attack_throughput.py [--device cpu|cuda] [--threads N] [--sizes embedded research]
       [--bf16] [--channels-last] [--compile]    (the last three are the GPU options; ours only)
       [--batch-scaling] [--repeats N]
On a shared machine whose speed drifts, quote the median of --repeats 5 (pairs run in turn).
Figures depend on the machine and its load; they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SIZES = {
    # name: (generator params, resolution, target arch, target input, crop fraction, classes, candidates, steps)
    # the default prior's shape (synthfaces32-stylegan2-v2)
    "embedded": ({"z_dim": 128, "w_dim": 128, "mapping_kwargs": {"num_layers": 2},
                  "synthesis_kwargs": {"channel_base": 1024, "channel_max": 64}}, 32, "compact_resnet", 32, None,
                 10, 16, 10),
    # the half-width embedded recipe (synthfaces32-stylegan2, the default before v2)
    "embedded-small": ({"z_dim": 128, "w_dim": 128, "mapping_kwargs": {"num_layers": 2},
                        "synthesis_kwargs": {"channel_base": 512, "channel_max": 32}}, 32, "compact_resnet", 32, None,
                       10, 16, 10),
    "research": ({"z_dim": 512, "w_dim": 512, "mapping_kwargs": {"num_layers": 8},
                  "synthesis_kwargs": {"channel_base": 16384, "channel_max": 512}}, 256, "resnet152", 224, 0.78125,
                 2, 2, 2),
    "research-1024": ({"z_dim": 512, "w_dim": 512, "mapping_kwargs": {"num_layers": 8},
                       "synthesis_kwargs": {"channel_base": 32768, "channel_max": 512}}, 1024, "resnet152", 224,
                      0.78125, 2, 2, 1),
}


def _setup(size: str, device: str):
    import torch

    from mibench.classifiers.architectures import build_classifier
    from mibench.generators.stylegan2 import Generator, generator_kwargs

    params, res, arch, inp, crop, n_cls, n_cand, steps = SIZES[size]
    torch.manual_seed(0)
    G = Generator(**generator_kwargs(params, res)).to(device).eval().requires_grad_(False)
    T = build_classifier(arch, 100, inp, {"width": 24} if arch == "compact_resnet" else {}, seed=0).to(device).eval()
    T.requires_grad_(False)
    return G, T, crop, n_cls, n_cand, steps


def _peak(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (ru_maxrss is KiB on Linux)


def run_ours(size: str, device: str, bf16: bool, channels_last: bool, compile_: bool) -> dict:
    """mibench's PPA optimisation: all classes' candidates in fixed-size batches, keyed random crops."""
    import torch

    from mibench.attacks.access import WhiteBox
    from mibench.attacks.base import AttackContext, candidate_keys
    from mibench.attacks.ppa import PPAttack

    G, T, crop, n_cls, n_cand, steps = _setup(size, device)
    if channels_last:
        T = T.to(memory_format=torch.channels_last)
    if compile_:
        T = torch.compile(T)
    attack = PPAttack.from_preset("synthfaces", {
        "search_space_size": n_cls * n_cand, "num_candidates": n_cand, "num_final": 1, "steps": steps,
        "batch_size": n_cls * n_cand, "center_crop": crop, "autocast": "bf16" if bf16 else "none"})
    ctx = AttackContext(WhiteBox(T, 100, T.input_size, device), G, torch.device(device), 0, T.input_size, False)
    classes = torch.arange(n_cls)
    w0 = G.mapping(torch.randn(n_cls * n_cand, G.z_dim, device=device), None, psi=0.7)[:, 0]
    attack.optimize(ctx, w0[: min(len(w0), n_cand)], classes[:1].repeat_interleave(min(len(w0), n_cand)),
                    candidate_keys(classes[:1], min(len(w0), n_cand)))  # warm-up (kernels, compile)
    _sync(device)
    t0 = time.perf_counter()
    attack.optimize(ctx, w0, classes.repeat_interleave(n_cand), candidate_keys(classes, n_cand))
    _sync(device)
    dt = time.perf_counter() - t0
    peak = _peak(device)
    flops = _flops(lambda: attack.optimize(ctx, w0, classes.repeat_interleave(n_cand), candidate_keys(classes, n_cand)))
    return {"variant": "mibench batched", "img_steps_per_s": n_cls * n_cand * steps / dt, "seconds": dt,
            "peak_mib": peak, "flop_per_img_step": flops / (n_cls * n_cand * steps)}


def run_reference(size: str, device: str) -> dict:
    """A direct transcription: one class at a time, mean loss, torchvision crops image by image."""
    import torch
    from torchvision.transforms import v2

    from mibench.attacks.losses import poincare_loss

    G, T, crop, n_cls, n_cand, steps = _setup(size, device)
    res = G.img_resolution
    crop_px = round(crop * res) if crop else res
    transforms = v2.Compose([v2.CenterCrop(crop_px), v2.Resize(T.input_size, antialias=True),
                             v2.RandomResizedCrop(T.input_size, scale=(0.9, 1.0), ratio=(1.0, 1.0), antialias=True)])
    w_all = G.mapping(torch.randn(n_cls * n_cand, G.z_dim, device=device), None, psi=0.7)[:, 0]

    def attack_class(c: int, w0: torch.Tensor) -> torch.Tensor:
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=0.005, betas=(0.1, 0.1))
        target = torch.full((len(w),), c, device=device)
        for _ in range(steps):
            img = (G.synthesis(w.unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode="const") + 1) / 2
            x = torch.stack([transforms(im) for im in img])
            loss = poincare_loss(T(x), target).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return w.detach()

    def attack_all() -> None:
        for c in range(n_cls):
            attack_class(c, w_all[c * n_cand:(c + 1) * n_cand])

    attack_class(0, w_all[:n_cand])  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    attack_all()
    _sync(device)
    dt = time.perf_counter() - t0
    peak = _peak(device)
    return {"variant": "reference per-class loop", "img_steps_per_s": n_cls * n_cand * steps / dt, "seconds": dt,
            "peak_mib": peak, "flop_per_img_step": _flops(attack_all) / (n_cls * n_cand * steps)}


def _flops(fn) -> float:
    """Convolution and matmul FLOPs (forward + backward) of one call of `fn` (untimed)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def batch_scaling(size: str, device: str, batches=(16, 40, 80, 160), reps: int = 3) -> dict[int, float]:
    """Milliseconds per image of generator + target forward and backward through w, best of `reps`, for
    the same samples in batches of each size in `batches`."""
    import torch

    G, T, *_ = _setup(size, device)
    total = max(batches)
    w = G.mapping(torch.randn(total, G.z_dim, device=device), None, psi=0.7)[:, 0]

    def pass_(chunk: torch.Tensor) -> None:
        wc = chunk.clone().requires_grad_(True)
        img = G.synthesis(wc.unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode="const")
        T((img + 1) / 2).logsumexp(1).sum().backward()

    out = {}
    for bs in batches:
        best = float("inf")
        for rep in range(reps + 1):
            _sync(device)
            t0 = time.perf_counter()
            for a in range(0, total - total % bs, bs):
                pass_(w[a:a + bs])
            _sync(device)
            if rep:  # the first is a warm-up
                best = min(best, (time.perf_counter() - t0) / (total - total % bs))
        out[bs] = 1e3 * best
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.variant == "ours":
        out = run_ours(args.size, args.device, args.bf16, args.channels_last, args.compile)
    else:
        out = run_reference(args.size, args.device)
    print("RESULT " + json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--sizes", nargs="+", default=["embedded", "research"], choices=list(SIZES))
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--batch-scaling", action="store_true", help="also time G + T per image by batch size")
    p.add_argument("--repeats", type=int, default=1, help="reference/ours pairs, run in turn; >1 prints the "
                   "median speed-up and its range")
    p.add_argument("--variant", choices=["ours", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        _child(args)
        return
    import torch

    peak = None
    if args.device == "cpu" and args.threads == 1:
        from profile_attack import gemm_flops

        peak = gemm_flops()
    print(f"device {args.device}, torch {torch.__version__}, {args.threads} thread(s), load {os.getloadavg()[0]:.1f}"
          + (f", dense GEMM peak {peak / 1e9:.1f} GFLOP/s" if peak else ""))
    print(f"{'size':<14} {'variant':<26} {'img·steps/s':>12} {'seconds':>9} {'peak MiB':>9} {'GFLOP/s':>8} "
          f"{'of peak':>8}  shape")
    torch.set_num_threads(args.threads)  # for --batch-scaling, which runs in this process
    for size in args.sizes:
        _, res, arch, inp, _, n_cls, n_cand, steps = SIZES[size]
        shape = f"G {res}px, {arch} {inp}px, {n_cls} classes × {n_cand} candidates × {steps} steps"
        ratios = []
        for _rep in range(args.repeats):  # reference, ours, reference, ours …: pairs see the same machine drift
            results = []
            for variant in ("reference", "ours"):
                cmd = [sys.executable, __file__, "--variant", variant, "--size", size, "--device", args.device,
                       "--threads", str(args.threads)]
                cmd += [f for f, on in (("--bf16", args.bf16), ("--channels-last", args.channels_last),
                                        ("--compile", args.compile)) if on]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if line is None:
                    print(f"{size:<14} {variant:<26} failed: {proc.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(line[7:])
                results.append(r)
                rate = r["img_steps_per_s"] * r["flop_per_img_step"]
                share = f"{100 * rate / peak:>7.0f}%" if peak else f"{'':>8}"
                print(f"{size:<14} {r['variant']:<26} {r['img_steps_per_s']:>12.2f} {r['seconds']:>9.2f} "
                      f"{r['peak_mib']:>9.0f} {rate / 1e9:>8.1f} {share}  {shape}")
            if len(results) == 2:
                ref, ours = results
                ratios.append(ours["img_steps_per_s"] / ref["img_steps_per_s"])
                line = f"{size:<14} speed-up of ours over the reference loop: {ratios[-1]:.2f}×"
                if peak:  # ours at the GEMM peak with its own FLOPs per img·step: the most batching can give
                    line += (f" (ceiling at the GEMM peak: "
                             f"{peak / ours['flop_per_img_step'] / ref['img_steps_per_s']:.2f}×)")
                print(line)
        if len(ratios) > 1:
            print(f"{size:<14} speed-up over {len(ratios)} pairs: median {statistics.median(ratios):.2f}×, "
                  f"min–max {min(ratios):.2f}–{max(ratios):.2f}×")
        if args.batch_scaling:
            per_image = batch_scaling(size, args.device)
            print(f"{size:<14} G + T forward + backward, ms per image by batch size: "
                  + ", ".join(f"{bs}: {ms:.2f}" for bs, ms in per_image.items()))


if __name__ == "__main__":
    main()
