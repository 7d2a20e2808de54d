"""What the attribute reader can read: per attribute, chance, accuracy on held-out public identities,
on the private test images (judged against the *identity's* value: the ceiling a perfect
reconstruction reaches) and how it reads prior samples (no ground truth there: the total-variation
distance between its palette readings on samples and on real public images, and its confidence).
Then the identity metrics of the private test images themselves — the ceiling of `attr_recovery`,
`reid@1`, `reid@5` — and the evaluator false-positive rate on them (the floor of `eval_fp`).

    python benchmarks/attribute_reader.py --dataset synthfaces32 --prior synthfaces32-stylegan2 \
        --evaluator synthfaces32-evaluator --json docs/identity-recovery/reader.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from mibench import zoo
from mibench.cards import get_card
from mibench.data import load_dataset
from mibench.metrics.attribute_reader import TOLERANCE, identity_scores, load_reader, recovered, reid_hits
from mibench.registry import GENERATORS


def _per_attribute(reader, readings, attrs, identity_level: bool) -> dict[str, float]:
    out = {}
    for s in reader.specs:
        truth = np.asarray(attrs[s.name])
        vis = (np.asarray(attrs[s.visible_if]) != 0) if s.visible_if else np.ones(len(truth), bool)
        r = readings[s.name][torch.from_numpy(vis)]
        if s.kind == "categorical":
            out[s.name] = float((r.argmax(1).numpy() == truth[vis]).mean())
        else:
            out[s.name] = float((np.abs(r.double().numpy() - (truth[vis] - s.lo) / (s.hi - s.lo)) <= TOLERANCE).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthfaces32")
    ap.add_argument("--prior", default="synthfaces32-stylegan2")
    ap.add_argument("--evaluator", default="synthfaces32-evaluator")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    test = load_dataset(args.dataset, "private-test")
    truth = test.ground_truth
    reader = load_reader(truth)
    x, y = test.load_tensors()
    ids = truth.class_attributes()
    rows = y.numpy()
    readings = reader.read(x)
    ceiling = _per_attribute(reader, readings, {k: np.asarray(v)[rows] for k, v in ids.items()}, True)

    pub_x, _, pub_attrs = truth.with_split("public").split_with_attributes("public")
    pub_read = reader.read(pub_x[: args.samples])
    prior_card = get_card("generator", args.prior)
    G, _ = zoo.load_prior(prior_card, "cpu")
    kind = GENERATORS.get(prior_card.kind)
    z = torch.randn(args.samples, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        samples = torch.cat([((kind.sample(G, z[i:i + 250], psi=prior_card.truncation_psi or 1.0, cutoff=None) + 1) / 2)
                             .clamp(0, 1) for i in range(0, len(z), 250)])
    prior_read = reader.read(samples)

    table = []
    print(f"{'attribute':14s} {'readable':8s} {'chance':>6s} {'held-out':>8s} {'ceiling':>7s} "
          f"{'prior TV':>8s} {'conf real':>9s} {'conf prior':>10s}")
    for s in reader.specs:
        h = reader.meta["holdout"].get(s.name, {})
        row = {"attribute": s.name, "kind": s.kind, "readable": s.name in reader.readable,
               "chance": s.chance(TOLERANCE), "holdout_accuracy": h.get("accuracy"),
               "private_test_ceiling": ceiling.get(s.name)}
        if s.kind == "categorical":
            ph = torch.bincount(prior_read[s.name].argmax(1), minlength=s.size).double() / args.samples
            rh = torch.bincount(pub_read[s.name].argmax(1), minlength=s.size).double() / len(pub_read[s.name])
            row["prior_tv"] = float(0.5 * (ph - rh).abs().sum())
            row["confidence_real"] = float(pub_read[s.name].max(1).values.mean())
            row["confidence_prior"] = float(prior_read[s.name].max(1).values.mean())
        table.append(row)

        def f(v):
            return "   -  " if v is None else f"{100 * v:6.1f}"
        print(f"{s.name:14s} {'yes' if row['readable'] else 'no':8s} {f(row['chance'])} {f(row['holdout_accuracy']):>8s} "
              f"{f(row['private_test_ceiling']):>7s} {f(row.get('prior_tv')):>8s} {f(row.get('confidence_real')):>9s} "
              f"{f(row.get('confidence_prior')):>10s}")

    scores = identity_scores(reader, readings, ids)
    attr = np.mean([recovered(reader, {k: v[i:i + 1] for k, v in readings.items()},
                              {k: v[int(y[i])] for k, v in ids.items()})[0] for i in range(len(y))])
    evaluator_card = get_card("target", args.evaluator)
    ev, _ = zoo.load_target(evaluator_card, "cpu")
    with torch.no_grad():
        pred = torch.cat([ev(x[i:i + 256].float() / 255).argmax(1) for i in range(0, len(x), 256)])
    hit5 = reid_hits(scores, y, 5)
    correct = pred == y
    summary = {"images": len(y), "attr_recovery": float(attr), "reid@1": float(reid_hits(scores, y, 1).mean()),
               "reid@5": float(hit5.mean()), "evaluator_accuracy": float(correct.double().mean()),
               "eval_fp": float((1 - hit5[correct]).mean()), "readable": list(reader.readable),
               "reader_seconds": reader.meta.get("seconds")}
    print(f"\nprivate test images ({len(y)}): attr_recovery {100 * attr:.1f} %, reid@1 {100 * summary['reid@1']:.1f} %, "
          f"reid@5 {100 * summary['reid@5']:.1f} %, evaluator acc {100 * summary['evaluator_accuracy']:.1f} %, "
          f"eval_fp on real images {100 * summary['eval_fp']:.1f} %")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"attributes": table, "private_test": summary}, indent=1))


if __name__ == "__main__":
    main()
