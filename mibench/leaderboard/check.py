"""The regression check of attack accuracy (RobustBench-style): re-run a small, fast subset of the
default suite and compare every attack accuracy with the committed baseline entry of the same
configuration; fail when one leaves the tolerance band.

The suite lives in `leaderboard/regression.yaml`:

    tolerance: {acc@1: 0.10, acc@5: 0.10}   # absolute, in accuracy units
    classes: 0-9
    seed: 0
    runs:
      - {target: synthfaces32-resnet, attack: ppa}
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mibench.errors import MIBenchError
from mibench.leaderboard.entries import ENTRIES_DIR, collect
from mibench.run.spec import RunSpec, parse_classes, resolve
from mibench.typed import from_dict

SUITE_FILE = Path("leaderboard") / "regression.yaml"


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
    tolerance: dict[str, float] = field(default_factory=lambda: {"acc@1": 0.10, "acc@5": 0.10})
    classes: str = "0-9"
    seed: int = 0

    def specs(self) -> list[RunSpec]:
        """The RunSpecs to execute."""
        return [RunSpec(target=r.target, attack=r.attack, prior=r.prior, classes=parse_classes(self.classes),
                        seed=self.seed, overrides=dict(r.overrides)) for r in self.runs]


def load_suite(path: Path = SUITE_FILE) -> RegressionSuite:
    """Read and validate the regression suite file."""
    if not path.is_file():
        raise MIBenchError("regression suite file not found", path=path,
                           fix="run from the mibench checkout or pass --suite FILE")
    return from_dict(RegressionSuite, yaml.safe_load(path.read_text()) or {}, path=path, error=MIBenchError)


@dataclass
class CheckRow:
    """One compared metric."""

    run: str
    metric: str
    baseline: float | None
    now: float | None
    tolerance: float

    @property
    def ok(self) -> bool:
        """Within tolerance (a missing value on either side fails)."""
        return self.baseline is not None and self.now is not None and abs(self.now - self.baseline) <= self.tolerance + 1e-12

    def as_dict(self) -> dict[str, Any]:
        """A printable row."""
        def pct(v):
            return "n/a" if v is None else f"{100 * v:.1f}"

        delta = None if self.baseline is None or self.now is None else self.now - self.baseline
        return {"run": self.run, "metric": self.metric, "baseline": pct(self.baseline), "now": pct(self.now),
                "delta": "n/a" if delta is None else f"{100 * delta:+.1f}", "tolerance": f"±{100 * self.tolerance:.1f}",
                "status": "ok" if self.ok else "FAIL"}


def run_check(suite: RegressionSuite, *, entries_dir: Path = ENTRIES_DIR, out: Path = Path("runs") / "regression",
              device: str = "auto", progress: bool = True) -> list[CheckRow]:
    """Run the suite and compare with the baseline entries; returns the comparison rows."""
    from mibench import zoo
    from mibench.run.execute import resolve_device
    from mibench.run.suite import run_many, zoo_names_for

    baselines = {e["entry_id"]: e for e, _ in collect(entries_dir)}
    specs = suite.specs()
    resolved = [resolve(s) for s in specs]
    missing = [r.run_id() for r in resolved if r.run_id() not in baselines]
    if missing:
        raise MIBenchError(f"no baseline entry for {', '.join(missing)}", path=entries_dir,
                           fix="run the suite (`mibench run`) and import it with `mibench leaderboard build --from runs`, "
                               "then commit leaderboard/entries")
    for r in resolved:  # a re-run, not a resume: results left by an earlier check (older code) go
        shutil.rmtree(Path(out) / r.run_id(), ignore_errors=True)
    dev = str(resolve_device(device))
    zoo.build_zoo(zoo_names_for(specs), device=dev, progress=progress)
    # The same execution as the default suite (single-threaded workers on CPU), so a check on the
    # machine that made the baselines reproduces them exactly.
    entries = run_many(specs, out=out, device=dev, desc="regression check")
    rows = []
    for spec, entry in zip(specs, entries):
        base = baselines[entry["entry_id"]]
        for metric, tol in suite.tolerance.items():
            rows.append(CheckRow(f"{spec.target} × {spec.attack}", metric, base["metrics"].get(metric),
                                 entry["metrics"].get(metric), tol))
    return rows
