"""Image quality of a StyleGAN2 prior over its training, in the synthfaces evaluator's features.

Trains the prior of a generator card with the card's recipe and seed (as `mibench zoo build`
does) and, every `--every` steps, measures the EMA generator with the zoo's own figures
(`mibench.zoo.prior_quality`: FID_eval against real public images next to the real-vs-real floor,
class coverage, precision / recall / density / coverage with k = 3), on 2000 untruncated samples.

Long trainings are resumable: with `--checkpoint PATH` the whole training state is written there
every 500 steps and a re-run continues from it (same bytes as an uninterrupted run), so a recipe
can be trained for hours in pieces. `--steps` overrides the card's step count (for a curve longer
than the card's recipe). Each measurement is printed and appended to `--jsonl` as it is made.
Evaluation time is excluded from the reported training time. Writes the final sample grid to `--grid`.

    python benchmarks/prior_quality.py --card synthfaces32-stylegan2 --every 250 --grid prior.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mibench.cards import get_card
from mibench.ops.imaging import grid, save_png
from mibench.registry import GENERATORS
from mibench.zoo.prior_quality import prior_quality
from mibench.zoo.targets import dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--card", default="synthfaces32-stylegan2")
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--steps", type=int, default=None, help="override the card's training steps")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (zoo builds use 1 per worker)")
    ap.add_argument("--checkpoint", default=None, help="resume file (written every 500 steps)")
    ap.add_argument("--grid", default="prior_samples.png")
    ap.add_argument("--jsonl", default=None, help="append every measurement here")
    ap.add_argument("--evaluator", default=None, help="evaluation model card (default: the prior's dataset's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    card = get_card("generator", args.card)
    kind = GENERATORS.get(card.kind)
    train = dict(card.train)
    if args.steps is not None:
        train["steps"] = args.steps
    images, _ = dataset(card.dataset, card.dataset.split or "public").load_tensors(progress=False)
    eval_s = 0.0
    t_start = time.monotonic()

    def evaluate(step: int, G) -> dict:
        nonlocal eval_s
        t = time.monotonic()
        q = prior_quality(card, G, evaluator=args.evaluator)
        eval_s += time.monotonic() - t
        row = {"card": card.name, "step": step, "wall_train_s": round(time.monotonic() - t_start - eval_s, 1),
               **q.to_dict()}
        print(f"step {step:6d}  train {row['wall_train_s']:7.0f}s  FID_eval {q.fid_eval:6.2f} "
              f"(floor {q.fid_floor:.2f})  classes {q.class_coverage:.2f}  P {q.precision:.3f}  "
              f"R {q.recall:.3f}  D {q.density:.3f}  C {q.coverage:.3f}", flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        return {"fid_eval": q.fid_eval}

    trained = kind.train(images, train, params=card.params, resolution=card.resolution, device="cpu",
                         progress=False, card_path=card.path, callback=evaluate, callback_every=args.every,
                         checkpoint=Path(args.checkpoint) if args.checkpoint else None)
    G = trained.G.eval()
    print(f"trained {trained.record['steps']} steps ({trained.record['stopped_by']}), "
          f"{trained.record['seconds']:.0f}s with evaluations")
    z = torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        x = ((kind.sample(G, z, psi=card.truncation_psi or 1.0, cutoff=None) + 1) / 2).clamp(0, 1)
    save_png(grid([x[r * 8:(r + 1) * 8] for r in range(8)]), args.grid, scale=3)
    print(f"grid (psi {card.truncation_psi}) -> {args.grid}")


if __name__ == "__main__":
    main()
