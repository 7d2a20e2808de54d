"""The regression check of attack accuracy (RobustBench-style): re-run a fixed suite — every attack
of the default suite on enough identities — and compare each run with its committed baseline entry,
class by class; fail when the paired change leaves the attack's tolerance.

The suite lives in `leaderboard/regression.yaml`, its baselines in `leaderboard/regression/`:

    classes: 0-49
    seed: 0
    tolerance:                    # per attack, absolute, on the mean paired change over the classes
      ppa: {acc@1: 0.03, acc@5: 0.03}
    runs:
      - {target: synthfaces32-resnet, attack: ppa}

On the machine that made the baselines a re-run reproduces them exactly. The tolerances come from
the measured spread of an unchanged re-run under other CPU arithmetic and of other attack seeds
(`benchmarks/regression_spread.py` measures both, and the planted weakenings the check must catch;
the figures are recorded in the suite file).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mibench.cards import replicate_name
from mibench.errors import MIBenchError
from mibench.leaderboard.entries import collect
from mibench.run.spec import RunSpec, parse_classes, resolve
from mibench.typed import from_dict

SUITE_FILE = Path("leaderboard") / "regression.yaml"
BASELINES_DIR = Path("leaderboard") / "regression"  # the suite's baseline entries (not on the page)


@dataclass
class RegressionRun:
    """One run of the regression suite."""

    target: str
    attack: str
    prior: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class RegressionSuite:
    """The regression suite file."""

    runs: list[RegressionRun]
    # attack → {metric: tolerance}; a plain {metric: tolerance} applies to every attack
    tolerance: dict[str, Any] = field(default_factory=lambda: {"acc@1": 0.10, "acc@5": 0.10})
    classes: str = "0-9"
    seed: int = 0
    spread: dict[str, Any] = field(default_factory=dict)  # the measured figures the tolerances come from
    weakenings: list[str] = field(default_factory=list)  # ATTACK:KEY=VALUE variants the check must fail

    def specs(self, seed: int | None = None, overrides: dict[str, dict[str, Any]] | None = None,
              replicate: int = 0) -> list[RunSpec]:
        """The RunSpecs to execute; a variant of the suite with another attack `seed`, `overrides` per
        attack (e.g. a planted weakening) or training-seed `replicate` k of each target (`<card>@k`)."""
        over = overrides or {}
        return [RunSpec(target=replicate_name(r.target, replicate), attack=r.attack, prior=r.prior,
                        classes=parse_classes(self.classes), seed=self.seed if seed is None else seed,
                        overrides={**r.overrides, **over.get(r.attack, {})}) for r in self.runs]

    def only(self, attacks: list[str] | None) -> RegressionSuite:
        """The suite restricted to the runs of `attacks` (None: all)."""
        if not attacks:
            return self
        unknown = sorted(set(attacks) - {r.attack for r in self.runs})
        if unknown:
            raise MIBenchError(f"the regression suite has no run of {', '.join(unknown)}", field="--attack",
                               fix=f"use one of: {', '.join(sorted({r.attack for r in self.runs}))}")
        return dataclasses.replace(self, runs=[r for r in self.runs if r.attack in attacks])

    def tolerance_for(self, attack: str) -> dict[str, float]:
        """{metric: absolute tolerance} of one attack's runs."""
        if all(isinstance(v, (int, float)) for v in self.tolerance.values()):
            return {k: float(v) for k, v in self.tolerance.items()}
        if attack not in self.tolerance:
            raise MIBenchError(f"no tolerance for attack '{attack}'", path=SUITE_FILE, field=f"tolerance.{attack}",
                               fix=f"add `{attack}: {{acc@1: …}}` under tolerance (measure it with "
                                   "benchmarks/regression_spread.py)")
        return {k: float(v) for k, v in self.tolerance[attack].items()}


def load_suite(path: Path = SUITE_FILE) -> RegressionSuite:
    """Read and validate the regression suite file."""
    if not path.is_file():
        raise MIBenchError("regression suite file not found", path=path,
                           fix="run from the mibench checkout or pass --suite FILE")
    return from_dict(RegressionSuite, yaml.safe_load(path.read_text()) or {}, path=path, error=MIBenchError)


def paired_change(base: dict[str, Any], now: dict[str, Any], metric: str) -> tuple[float | None, int]:
    """(mean over the classes both entries attacked of now − baseline, number of such classes)."""
    from mibench.leaderboard.aggregate import per_class_values

    a, b = per_class_values(now, metric), per_class_values(base, metric)
    shared = sorted(set(a) & set(b))
    if not shared:
        return None, 0
    return sum(a[c] - b[c] for c in shared) / len(shared), len(shared)


@dataclass
class CheckRow:
    """One compared metric: the paired change of a re-run against its baseline."""

    run: str
    metric: str
    baseline: float | None
    now: float | None
    tolerance: float
    delta: float | None = None  # mean paired per-class change (default: now − baseline)
    classes: int = 0

    def __post_init__(self) -> None:
        if self.delta is None and self.baseline is not None and self.now is not None:
            self.delta = self.now - self.baseline

    @property
    def ok(self) -> bool:
        """Within tolerance (a missing value on either side fails)."""
        return (self.baseline is not None and self.now is not None and self.delta is not None
                and abs(self.delta) <= self.tolerance + 1e-12)

    def as_dict(self) -> dict[str, Any]:
        """A printable row."""
        def pct(v):
            return "n/a" if v is None else f"{100 * v:.1f}"

        return {"run": self.run, "metric": self.metric, "baseline": pct(self.baseline), "now": pct(self.now),
                "delta": "n/a" if self.delta is None else f"{100 * self.delta:+.1f}", "classes": self.classes,
                "tolerance": f"±{100 * self.tolerance:.1f}", "status": "ok" if self.ok else "FAIL"}

    def as_json(self) -> dict[str, Any]:
        """The machine-readable row (`--json`)."""
        return {"run": self.run, "metric": self.metric, "baseline": self.baseline, "now": self.now,
                "delta": self.delta, "classes": self.classes, "tolerance": self.tolerance, "ok": self.ok}


def run_check(suite: RegressionSuite, *, entries_dir: Path = BASELINES_DIR, out: Path = Path("runs") / "regression",
              device: str = "auto", progress: bool = True, seed: int | None = None,
              overrides: dict[str, dict[str, Any]] | None = None, replicate: int = 0,
              rebaseline: bool = False) -> list[CheckRow]:
    """Run the suite and compare each run with its baseline entry; returns the comparison rows.

    `seed` / `overrides` (per attack) / `replicate` run a variant of the suite against the same
    baselines — how the spread and the planted weakenings are measured. `rebaseline` writes the runs' entries as the
    new baselines instead (the maintainer's step after an intended change)."""
    from mibench import zoo
    from mibench.run.entry import Entry
    from mibench.run.execute import resolve_device
    from mibench.run.suite import run_many, zoo_names_for

    if rebaseline and (seed is not None or overrides or replicate):
        raise MIBenchError("a variant (--seed / --set) cannot become the baseline", field="--rebaseline",
                           fix="rebaseline the suite as written in its file")
    baselines = {e["entry_id"]: e for e, _ in collect(entries_dir)}
    plain = [resolve(s).run_id() for s in suite.specs()]
    specs = suite.specs(seed, overrides, replicate)
    missing = [r for r in plain if r not in baselines]
    if missing and not rebaseline:
        raise MIBenchError(f"no baseline entry for {', '.join(missing)}", path=entries_dir,
                           fix="make them with `mibench leaderboard check --rebaseline` and commit the folder")
    for s in specs:  # a re-run, not a resume: results left by an earlier check (older code) go
        shutil.rmtree(Path(out) / resolve(s).run_id(), ignore_errors=True)
    dev = str(resolve_device(device))
    zoo.build_zoo(zoo_names_for(specs), device=dev, progress=progress)
    # The same execution as the default suite (single-threaded workers on CPU), so a check on the
    # machine that made the baselines reproduces them exactly.
    entries = run_many(specs, out=out, device=dev, desc="regression check")
    if rebaseline:  # the entries only (the check reads their per-class values; grids stay in the run folders)
        for entry in entries:
            Entry(entry).write(entries_dir / f"{entry['entry_id']}.json")
        return []
    rows = []
    for spec, run_id, entry in zip(specs, plain, entries):
        base = baselines[run_id]
        for metric, tol in suite.tolerance_for(spec.attack).items():
            delta, n = paired_change(base, entry, metric)
            rows.append(CheckRow(f"{spec.target} × {spec.attack}", metric, base["metrics"].get(metric),
                                 entry["metrics"].get(metric), tol, delta, n))
    return rows
