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
    from mibench.registry import ATTACKS
    from mibench.runner import resolve_device

    for a in attacks or []:
        ATTACKS.get(a)  # an unknown name fails here, with a suggestion, before anything runs
    t0 = time.time()
    specs = suite_specs(attacks, classes if classes is not None else SUITE_CLASSES, seed)
    if not specs:
        raise MIBenchError("the default suite is empty: no synthfaces target cards were found",
                           fix="run from the mibench checkout or set MIBENCH_CARDS")
    dev = str(resolve_device(device))
    if build:
        zoo.build_zoo(device=dev)
    log.info("default suite: %d runs (zoo ready after %.0fs)", len(specs), time.time() - t0)
    entries = run_many(specs, out=out, device=dev, build=build)
    log.info("default suite finished in %.0fs", time.time() - t0)
    return entries


ATTACK_COST = {"lokt": 10.0, "ifgmi": 1.5, "ppa": 1.0}  # rough relative run times: longest start first


def run_many(specs: list[RunSpec], *, out: Path, device: str = "cpu", build: bool = True,
             jobs: int | None = None, desc: str = "default suite") -> list[dict[str, Any]]:
    """Run `specs` and return their entries in order. On CPU, runs go to a pool of single-threaded
    worker processes (one per core): on a small CPU that beats one multi-threaded run at a time, and a
    fixed thread count keeps CPU results reproducible whatever the pool size."""
    import concurrent.futures as cf
    import multiprocessing as mp
    import os

    import torch

    from mibench.runner import resolve

    for spec in specs:  # bad names, presets or class ids fail here, before any work starts
        resolve(spec)
    if jobs is None:
        jobs = 1 if device.startswith("cuda") else max(1, min(len(specs), os.cpu_count() or 1))
    if jobs <= 1 or len(specs) <= 1:
        threads = torch.get_num_threads()
        if not device.startswith("cuda"):
            torch.set_num_threads(1)
        try:
            entries = []
            for i, spec in enumerate(specs, 1):
                log.info("[%d/%d] %s × %s", i, len(specs), spec.target, spec.attack)
                entries.append(run_one(spec, out=out, device=device, build=build))
            return entries
        finally:
            torch.set_num_threads(threads)
    order = _schedule(specs)
    entries: list[dict[str, Any] | None] = [None] * len(specs)
    t0 = time.time()
    log.info("running %d runs in %d single-threaded worker processes", len(specs), jobs)
    from tqdm import tqdm

    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))
    bar = tqdm(total=len(specs), desc=desc, unit="run")
    try:
        futures = {pool.submit(_run_worker, specs[i], str(out), device, build): i for i in order}
        for fut in cf.as_completed(futures):
            i = futures[fut]
            entries[i] = fut.result()
            m = entries[i]["metrics"]
            bar.write(f"  {specs[i].target} × {specs[i].attack}: acc@1 {100 * (m['acc@1'] or 0):.0f}% "
                      f"in {entries[i]['wall_time_s']:.0f}s ({time.time() - t0:.0f}s since start)")
            bar.update(1)
    except BaseException:
        # A failed run (or Ctrl-C) stops the suite now rather than after the runs in flight: their
        # finished classes are on disk and `mibench run` resumes them.
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()
        raise
    finally:
        bar.close()
    pool.shutdown()
    return entries  # type: ignore[return-value]


def _schedule(specs: list[RunSpec]) -> list[int]:
    """Indices of `specs` in the order to start them: one run of each costly attack first (it may
    train a cached stage its other runs share, e.g. LOKT's T-ACGAN warm-up, which the other runs of
    that attack wait for), then the cheap runs (they keep the other workers busy meanwhile), then the
    remaining costly runs, longest first."""
    cost = [ATTACK_COST.get(s.attack, 1.0) for s in specs]
    costly = [i for i in range(len(specs)) if cost[i] >= 5.0]
    first = {}
    for i in costly:
        first.setdefault(specs[i].attack, i)
    cheap = sorted((i for i in range(len(specs)) if cost[i] < 5.0), key=lambda i: -cost[i])
    rest = [i for i in costly if i not in first.values()]
    return sorted(first.values(), key=lambda i: -cost[i]) + cheap + rest


def _run_worker(spec: RunSpec, out: str, device: str, build: bool) -> dict[str, Any]:
    """Process-pool entry: one run with one torch thread, no progress bars (they would interleave)."""
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    return run_one(spec, out=Path(out), device=device, build=build, progress=False)


def format_table(entries: list[dict[str, Any]]) -> str:
    """The results table printed after runs (percentages for accuracies)."""
    from mibench.cli import _table

    rows = results_table(entries)
    cols = ["target", "defense", "attack", "nat_acc", "acc@1", "acc@5", "knn", "fid_eval", "queries", "agree",
            "time_s"]
    return _table(rows, cols)
