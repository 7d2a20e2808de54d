"""Image quality of a trained GAN in the synthfaces evaluator's features: a zoo prior (`--card`) or
the GAN a KED-MI run trained as its stage (`--kedmi-run RUN_DIR`).

Prints the zoo's figures (`mibench.zoo.prior_quality`: FID_eval against real public images next to
the real-vs-real floor, class coverage, precision / recall / density / coverage, k = 3) on 2000
untruncated samples, the training time the artifact records, and writes an 8×8 sample grid.

    python benchmarks/gan_quality.py --card synthfaces32-gmi --grid gmi.png
    python benchmarks/gan_quality.py --kedmi-run runs/synthfaces32-resnet__kedmi__none__seed0__… --grid kedmi.png
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
    from safetensors.torch import load_file

    cfg = json.loads((run_dir / "config.json").read_text())["attack"]["config"]
    sidecars = sorted((run_dir / "kedmi").glob("gan-*.artifact.json"))
    if not sidecars:
        raise SystemExit(f"{run_dir}: no KED-MI GAN stage (kedmi/gan-*.artifact.json)")
    record = json.loads(sidecars[-1].read_text())
    tensors = load_file(str(sidecars[-1].with_name(sidecars[-1].name.replace(".artifact.json", ".safetensors"))))
    prior = GMIPrior(cfg["gan_z_dim"], cfg["gan_dim"], 4, cfg["gan_resolution"])
    prior.G.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
    return prior.eval(), record.get("meta", {}).get("summary", {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--card", help="a zoo prior card (trained or shipped)")
    src.add_argument("--kedmi-run", type=Path, help="a finished KED-MI run folder")
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
        G, summary = kedmi_generator(args.kedmi_run)
        trained = {"train_seconds": summary.get("seconds"), "steps": summary.get("steps"),
                   "queries": summary.get("queries")}
    q = prior_quality(card, G)
    row = {"source": args.card or str(args.kedmi_run), **trained, **q.to_dict()}
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
