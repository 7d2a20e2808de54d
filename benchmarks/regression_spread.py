"""Measure the noise the regression check must tolerate and the regressions it must catch.

Runs `mibench leaderboard check` (against the committed baselines in leaderboard/regression/) in
variants and prints, for every run of the suite, the mean paired per-class change of acc@1 and
acc@5 and whether the check passed:

  cpu:avx2 / cpu:default   ATEN_CPU_CAPABILITY: PyTorch's CPU kernels of another machine
  mkl:avx2                 MKL_CBWR=AVX2: MKL's GEMMs on the AVX2 code path
  seed:K                   attack seed K instead of 0 (the attack's own randomness)
  replicate:K              training-seed replicate K of the target (`<card>@K`)
  weak:ATTACK:KEY=VALUE    a planted weakening of one attack (it must fail)

    python benchmarks/regression_spread.py --work /tmp/spread \\
        --variants cpu:avx2 cpu:default seed:1 seed:2 replicate:1 weak:ppa:steps=20

The figures go into leaderboard/regression.yaml (`spread:`), with this command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def variant_args(variant: str) -> tuple[list[str], dict[str, str]]:
    """(extra `leaderboard check` arguments, extra environment) of one variant."""
    kind, _, rest = variant.partition(":")
    if kind == "cpu":
        return [], {"ATEN_CPU_CAPABILITY": rest}
    if kind == "mkl":
        return [], {"MKL_CBWR": rest.upper()}
    if kind == "seed":
        return ["--seed", rest], {}
    if kind == "replicate":
        return ["--replicate", rest], {}
    if kind == "weak":
        attack = rest.split(":", 1)[0]
        return ["--attack", attack, "--set", rest], {}
    if kind == "same":
        return [], {}
    raise SystemExit(f"unknown variant '{variant}' (cpu:LEVEL, mkl:PATH, seed:K, replicate:K, weak:A:K=V, same)")


def run_variant(variant: str, work: Path, suite: Path, entries: Path) -> tuple[list[dict], float, int]:
    """Run one variant of the check; returns (its JSON rows, seconds, exit status)."""
    args, env = variant_args(variant)
    tag = "".join(c if c.isalnum() or c in "-_." else "_" for c in variant)
    out_json = work / f"{tag}.json"
    cmd = [sys.executable, "-m", "mibench", "leaderboard", "check", "--suite", str(suite), "--entries", str(entries),
           "--out", str(work / tag), "--json", str(out_json), "--device", "cpu", *args]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
    secs = time.time() - t0
    if not out_json.is_file():
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"variant {variant} produced no result (exit {proc.returncode})")
    return json.loads(out_json.read_text()), secs, proc.returncode


def main() -> None:
    """Run the variants and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="folder for the re-runs and their JSON rows")
    ap.add_argument("--variants", nargs="+", default=["cpu:avx2", "cpu:default", "seed:1", "seed:2"])
    ap.add_argument("--suite", type=Path, default=REPO / "leaderboard" / "regression.yaml")
    ap.add_argument("--entries", type=Path, default=REPO / "leaderboard" / "regression")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    results = {}
    for v in a.variants:
        rows, secs, rc = run_variant(v, a.work, a.suite, a.entries)
        results[v] = {"rows": rows, "seconds": round(secs, 1), "check": "passed" if rc == 0 else "FAILED"}
        print(f"{v}: check {results[v]['check']} in {secs:.0f}s", flush=True)
        for r in rows:
            d = "n/a" if r["delta"] is None else f"{100 * r['delta']:+.1f}"
            print(f"    {r['run']:<34} {r['metric']:<6} baseline {100 * r['baseline']:5.1f}  change {d:>6} pts "
                  f"over {r['classes']} classes  (tolerance ±{100 * r['tolerance']:.1f}) {'ok' if r['ok'] else 'FAIL'}",
                  flush=True)
    (a.work / "spread.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {a.work / 'spread.json'}")


if __name__ == "__main__":
    main()
