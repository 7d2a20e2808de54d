"""Seed spread: for every configuration with training-seed replicates in the leaderboard entries, the
paired per-class change of acc@1 of replicate @k against the card itself (@0), its standard error over
identities, and the natural accuracies; with `--by attack-seed`, the same for attack seed s > 0
against attack seed 0 on the card itself.

    mibench run --attack ppa,ifgmi --protocol standard --replicate 1   # then --replicate 2
    mibench leaderboard build --from runs
    python benchmarks/replicate_spread.py [--entries leaderboard/entries] [--protocol standard]
    python benchmarks/replicate_spread.py --by attack-seed --entries docs/attack-seeds/leaderboard/entries

Figures depend on the entries; they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def paired_change(base: dict[int, float], other: dict[int, float]) -> tuple[float, float, int]:
    """(mean of other − base over the shared classes, its standard error, the number of classes)."""
    d = [other[c] - base[c] for c in base if c in other]
    m = sum(d) / len(d)
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1)) if len(d) > 1 else 0.0
    return m, sd / math.sqrt(len(d)), len(d)


def main() -> None:
    """Print one line per (configuration, replicate k > 0) or (configuration, attack seed s > 0)."""
    from mibench.leaderboard.aggregate import cell_key, per_class_values, replicate_of
    from mibench.leaderboard.entries import collect
    from mibench.run.protocol import entry_protocol

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=Path, default=REPO / "leaderboard" / "entries")
    ap.add_argument("--protocol", default="standard")
    ap.add_argument("--by", choices=["training-seed", "attack-seed"], default="training-seed")
    a = ap.parse_args()
    by_seed = a.by == "attack-seed"
    groups: dict[tuple, dict[int, dict]] = {}
    for e, _ in collect(a.entries):
        if entry_protocol(e) != a.protocol:
            continue
        if by_seed and replicate_of(e) == 0:
            groups.setdefault(cell_key(e), {})[int(e["seed"])] = e
        elif not by_seed and int(e["seed"]) == 0:
            groups.setdefault(cell_key(e), {})[replicate_of(e)] = e
    mark = "seed " if by_seed else "@"
    for key, reps in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        if 0 not in reps:
            continue
        b = reps[0]
        for k in sorted(r for r in reps if r):
            e = reps[k]
            m, se, n = paired_change(per_class_values(b), per_class_values(e))
            print(f"{key[2]:<6} {key[1]:<28} {mark}{k}: acc@1 {100 * b['metrics']['acc@1']:5.1f} -> "
                  f"{100 * e['metrics']['acc@1']:5.1f}   paired change {100 * m:+5.1f} (SE {100 * se:.1f}, "
                  f"{n} classes)   natural accuracy {100 * b['target']['natural_accuracy']:.1f} -> "
                  f"{100 * e['target']['natural_accuracy']:.1f}")


if __name__ == "__main__":
    main()
