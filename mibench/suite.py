"""Running many runs: the default suite on the embedded setting, single runs from the CLI (also
under torchrun), resuming from a run folder, and the printed results table."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from mibench.errors import MIBenchError
from mibench.runner import CONFIG_FILE, RunSpec, results_table, run_one, suite_specs
from mibench.typed import from_dict

log = logging.getLogger(__name__)

SUITE_CLASSES = list(range(10))  # the default suite attacks classes 0-9 of each target


def spec_from_run_dir(run_dir: Path) -> RunSpec:
    """The RunSpec a run folder was made with (for `--resume DIR` without repeating options)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise MIBenchError("not a run folder (no config.json)", path=run_dir,
                           fix="pass a folder that `mibench run` created")
    try:
        return from_dict(RunSpec, json.loads(path.read_text())["spec"], path=path, error=MIBenchError)
    except (KeyError, json.JSONDecodeError) as exc:
        raise MIBenchError(f"config.json is damaged: {exc}", path=path) from None


def run_single(spec: RunSpec, *, out: Path, device: str = "auto", resume: Path | None = None,
               build: bool = True, progress: bool = True) -> dict[str, Any]:
    """One run (sharded over ranks when started by torchrun); returns the entry on rank 0, else {}."""
    from mibench import distributed

    if resume is not None and not spec.target:
        spec = spec_from_run_dir(resume)
    with distributed.context(device) as dist:
        return run_one(spec, out=out, device=device, resume=resume, progress=progress and
                       (dist is None or dist.rank == 0), build=build, dist=dist)


def run_suite(attacks: list[str] | None = None, classes: list[int] | None = None, seed: int = 0,
              device: str = "auto", out: Path = Path("runs"), build: bool = True) -> list[dict[str, Any]]:
    """The default suite: build the zoo (if needed), then every synthfaces target × attack."""
    from mibench import zoo
    from mibench.runner import resolve_device

    t0 = time.time()
    specs = suite_specs(attacks, classes if classes is not None else SUITE_CLASSES, seed)
    if not specs:
        raise MIBenchError("the default suite is empty: no synthfaces target cards were found",
                           fix="run from the mibench checkout or set MIBENCH_CARDS")
    dev = str(resolve_device(device))
    if build:
        zoo.build_zoo(device=dev)
    log.info("default suite: %d runs (zoo ready after %.0fs)", len(specs), time.time() - t0)
    entries = []
    for i, spec in enumerate(specs, 1):
        log.info("[%d/%d] %s × %s", i, len(specs), spec.target, spec.attack)
        entries.append(run_one(spec, out=out, device=dev, build=build))
    log.info("default suite finished in %.0fs", time.time() - t0)
    return entries


def format_table(entries: list[dict[str, Any]]) -> str:
    """The results table printed after runs (percentages for accuracies)."""
    from mibench.cli import _table

    rows = results_table(entries)
    cols = ["target", "defense", "attack", "nat_acc", "acc@1", "acc@5", "knn", "fid_eval", "queries", "time_s"]
    return _table(rows, cols)
