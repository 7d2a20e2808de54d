"""Image quality of a trained GAN in the synthfaces evaluator's features: a zoo prior (`--card`) or
the GAN a KED-MI or PLG-MI run trained as its stage (`--kedmi-run RUN_DIR`, `--plgmi-run RUN_DIR`;
PLG-MI's conditional samples cycle through the target's classes).

Prints the zoo's figures (`mibench.zoo.prior_quality`: FID_eval against real public images next to
the real-vs-real floor, class coverage, precision / recall / density / coverage, k = 3) on 2000
untruncated samples, the training time the artifact records, and writes an 8×8 sample grid.

    python benchmarks/gan_quality.py --card synthfaces32-gmi --grid gmi.png
    python benchmarks/gan_quality.py --kedmi-run runs/synthfaces32-resnet__kedmi__none__seed0__… --grid kedmi.png
    python benchmarks/gan_quality.py --plgmi-run runs/synthfaces32-resnet__plgmi__none__seed0__… --grid plgmi.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mibench.cards import get_card
from mibench.generators.gmi_gan import GMIPrior
from mibench.ops.imaging import grid, save_png
from mibench.registry import GENERATORS
from mibench.zoo import load_prior
from mibench.zoo.prior_quality import prior_quality


def kedmi_generator(run_dir: Path) -> tuple[GMIPrior, dict]:
    """The generator of a KED-MI run's GAN stage, as a GMI prior (its critic unused), and the stage summary."""
    cfg, tensors, record = _stage(run_dir, "kedmi")
    prior = GMIPrior(cfg["gan_z_dim"], cfg["gan_dim"], 4, cfg["gan_resolution"])
    prior.G.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
    return prior.eval(), record.get("meta", {}).get("summary", {})


class ConditionalSamples(torch.nn.Module):
    """A conditional G(z, y) as an unconditional sampler: row i of a batch gets class i mod K; images
    in [−1, 1] like the GMI kind's."""

    def __init__(self, G: torch.nn.Module, image_range: str):
        super().__init__()
        self.G, self.image_range, self.z_dim = G, image_range, G.z_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        from mibench.generators.plgmi_gan import to_image

        y = torch.arange(len(z), device=z.device) % self.G.num_classes
        return to_image(self.G(z, y), self.image_range).clamp(0, 1) * 2 - 1


def _stage(run_dir: Path, attack: str) -> tuple[dict, dict, dict]:
    """(attack config, GAN stage tensors, stage record) of a finished run's GAN stage."""
    from safetensors.torch import load_file

    cfg = json.loads((run_dir / "config.json").read_text())["attack"]["config"]
    sidecars = sorted((run_dir / attack).glob("gan-*.artifact.json"))
    if not sidecars:
        raise SystemExit(f"{run_dir}: no {attack} GAN stage ({attack}/gan-*.artifact.json)")
    tensors = load_file(str(sidecars[-1].with_name(sidecars[-1].name.replace(".artifact.json", ".safetensors"))))
    return cfg, tensors, json.loads(sidecars[-1].read_text())


def plgmi_generator(run_dir: Path) -> tuple[ConditionalSamples, dict]:
    """The conditional generator of a PLG-MI run's GAN stage (classes cycled) and the stage summary."""
    from mibench.attacks.plgmi import PLGMIConfig
    from mibench.generators.plgmi_gan import build_plgmi_gan
    from mibench.typed import from_dict

    cfg, tensors, record = _stage(run_dir, "plgmi")
    config = from_dict(PLGMIConfig, cfg)
    num_classes = tensors["G.blocks.0.bn1.class_gain"].shape[0]
    G, _ = build_plgmi_gan(num_classes, config.gan_recipe(), 0)
    G.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
    return ConditionalSamples(G.eval(), config.gan_image_range).eval(), record.get("meta", {}).get("summary", {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--card", help="a zoo prior card (trained or shipped)")
    src.add_argument("--kedmi-run", type=Path, help="a finished KED-MI run folder")
    src.add_argument("--plgmi-run", type=Path, help="a finished PLG-MI run folder")
    ap.add_argument("--grid", default=None, help="write an 8×8 sample grid (untruncated) here")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.card:
        card = get_card("generator", args.card)
        G, info = load_prior(card, build=False, progress=False)
        trained = {"train_seconds": info.get("train_seconds"), "steps": info.get("steps")}
    else:
        card = get_card("generator", "synthfaces32-gmi")  # the public data and the kind's sampler
        G, summary = kedmi_generator(args.kedmi_run) if args.kedmi_run else plgmi_generator(args.plgmi_run)
        trained = {"train_seconds": summary.get("seconds"), "steps": summary.get("steps"),
                   "queries": summary.get("queries")}
    q = prior_quality(card, G)
    row = {"source": args.card or str(args.kedmi_run or args.plgmi_run), **trained, **q.to_dict()}
    print(f"{row['source']}: FID_eval {q.fid_eval:.2f} (floor {q.fid_floor:.2f}), class coverage "
          f"{q.class_coverage:.2f}, precision {q.precision:.3f}, recall {q.recall:.3f}, density {q.density:.3f}, "
          f"coverage {q.coverage:.3f}; trained {trained}")
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=2))
    if args.grid:
        z = torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            x = ((GENERATORS.get(card.kind).sample(G, z, psi=1.0, cutoff=None) + 1) / 2).clamp(0, 1)
        save_png(grid([x[r * 8:(r + 1) * 8] for r in range(8)]), args.grid, scale=3)
        print(f"grid -> {args.grid}")


if __name__ == "__main__":
    main()
