"""Diff two folders of run folders bit for bit — the proof that a refactor changed no number.

Runs are matched by what they are (target, attack, prior, seed, classes), not by run id (ids hash
the configuration, which a refactor may legitimately extend). For every matched pair it compares:
every metric of entry.json, the per-class results, the target's natural accuracy, the evaluation
model's accuracy, the queries by phase, the attack's recorded facts (timings excluded), and the
bytes of every class's images, latents and selection scores. Timing fields (seconds, wall time,
session ids, creation time) are ignored.

Usage: python benchmarks/diff_runs.py BEFORE_DIR AFTER_DIR     (exit 1 on any difference)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

TIMING = {"seconds", "session", "wall_time_s", "created", "time_s", "build_seconds", "train_seconds"}


def strip_timing(obj: Any) -> Any:
    """`obj` without timing fields (recursively)."""
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj


def runs(folder: Path) -> dict[tuple, Path]:
    """(target, attack, prior, seed, classes) → run folder, for every finished run under `folder`."""
    out = {}
    for entry in sorted(folder.glob("*/entry.json")):
        e = json.loads(entry.read_text())
        key = (e["target"]["name"], e["attack"]["name"], (e.get("prior") or {}).get("name"), e["seed"],
               tuple(e["classes"]))
        out[key] = entry.parent
    return out


def compare(a: Path, b: Path) -> list[str]:
    """Differences between two run folders of the same run (empty: identical numbers)."""
    ea, eb = (json.loads((d / "entry.json").read_text()) for d in (a, b))
    diffs = []
    checks = {
        "metrics": (ea["metrics"], eb["metrics"]),
        "per_class": (strip_timing(ea["per_class"]), strip_timing(eb["per_class"])),
        "natural_accuracy": (ea["target"]["natural_accuracy"], eb["target"]["natural_accuracy"]),
        "evaluator_accuracy": (ea["evaluator"]["accuracy"], eb["evaluator"]["accuracy"]),
        "queries": (ea["queries"], eb["queries"]),
        "unavailable": (sorted(ea["unavailable"]), sorted(eb["unavailable"])),
        "attack.config": (ea["attack"]["config"], eb["attack"]["config"]),
        "attack.info": (strip_timing(_info(ea)), strip_timing(_info(eb))),
        "num_images": (ea["num_images"], eb["num_images"]),
    }
    for name, (x, y) in checks.items():
        if x != y:
            diffs.append(f"{name}: {_short(x)} != {_short(y)}")
    for fa in sorted((a / "classes").glob("*.safetensors")):
        fb = b / "classes" / fa.name
        if not fb.is_file():
            diffs.append(f"{fa.name}: missing after")
            continue
        ta, tb = load_file(str(fa)), load_file(str(fb))
        for k in sorted(set(ta) | set(tb)):
            if k not in ta or k not in tb or ta[k].shape != tb[k].shape or not (
                    ta[k].view(-1).view(dtype=_bytes(ta[k])) == tb[k].view(-1).view(dtype=_bytes(tb[k]))).all():
                diffs.append(f"{fa.name}:{k} differs")
    return diffs


def _info(e: dict[str, Any]) -> dict[str, Any]:
    info = dict(e["attack"].get("info") or {})
    info.pop("resumed", None)
    for key in ("tacgan",):  # warm-up bookkeeping: where the cache file is, whether it was cached
        if key in info:
            info[key] = {k: v for k, v in info[key].items() if k != "warmup"}
    return info


def _bytes(t):
    import torch

    return {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]


def _short(x: Any) -> str:
    text = json.dumps(x, sort_keys=True, default=str)
    return text if len(text) < 200 else text[:200] + "…"


def main() -> int:
    """Compare and print one line per run; exit status 1 when anything differs."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args()
    ra, rb = runs(args.before), runs(args.after)
    bad = 0
    for key in sorted(set(ra) | set(rb), key=str):
        label = f"{key[0]} × {key[1]} (prior {key[2]}, seed {key[3]}, {len(key[4])} classes)"
        if key not in ra or key not in rb:
            print(f"MISSING  {label}: only in {'before' if key in ra else 'after'}")
            bad += 1
            continue
        diffs = compare(ra[key], rb[key])
        n_files = len(list((ra[key] / 'classes').glob('*.safetensors')))
        print(f"{'same   ' if not diffs else 'DIFFERS'}  {label}: metrics, per-class results and {n_files} class "
              f"tensor files" + ("" if not diffs else "\n    " + "\n    ".join(diffs)))
        bad += bool(diffs)
    print(f"{len(set(ra) | set(rb)) - bad} of {len(set(ra) | set(rb))} runs identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
