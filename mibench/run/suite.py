"""Running many runs: the default suite on the embedded setting, single runs from the CLI (also
under torchrun), resuming from a run folder. Which attacks a suite runs, and in which order, comes
from what each attack class declares (`in_default_suite`, `cost`)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from mibench.attacks.addon import attack_class
from mibench.attacks.base import Attack
from mibench.cards import list_cards, replicate_name
from mibench.errors import MIBenchError
from mibench.ops.pool import run_jobs
from mibench.registry import ATTACKS
from mibench.run.execute import resolve_device, run_one
from mibench.run.folder import CONFIG_FILE
from mibench.run.spec import RunSpec, resolve
from mibench.typed import from_dict

log = logging.getLogger(__name__)

SUITE_PROTOCOL = "quick"  # the default suite's protocol (classes 0-9); the leaderboard's is "standard"


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
    from mibench.ops import distributed

    if resume is not None and not spec.target:
        spec = spec_from_run_dir(resume)
    with distributed.context(device) as dist:
        return run_one(spec, out=out, device=device, resume=resume, progress=progress and
                       (dist is None or dist.rank == 0), build=build, dist=dist)


def suite_attacks() -> list[str]:
    """The attacks the default suite runs: those that declare `in_default_suite`."""
    return [n for n in ATTACKS.names() if ATTACKS.get(n).in_default_suite]


def suite_specs(attacks: list[str] | None = None, classes: list[int] | None = None, seed: int = 0,
                dataset_prefix: str = "synthfaces", extra_metrics: list[str] | None = None,
                protocol: str | None = None, replicate: int = 0) -> list[RunSpec]:
    """The default suite: every embedded-default target × every attack in the suite, on `classes`
    or else the classes of `protocol` (default: the quick protocol); `replicate` k > 0 attacks the
    training-seed replicates `<card>@k` instead."""
    attacks = attacks or suite_attacks()
    if classes is not None and protocol is not None:
        raise MIBenchError("both a protocol and a class list were given", field="--protocol",
                           fix="pass either --protocol or --classes")
    protocol = None if classes is not None else protocol or SUITE_PROTOCOL
    specs = []
    for card in list_cards("target"):
        if card.role == "target" and card.dataset.name.startswith(dataset_prefix) and card.train is not None:
            name = replicate_name(card.name, replicate)
            for a in attacks:
                specs.append(RunSpec(target=name, attack=a, classes=classes, seed=seed,
                                     extra_metrics=list(extra_metrics or []), protocol=protocol))
    return specs


def run_suite(attacks: list[str] | None = None, classes: list[int] | None = None, seed: int = 0,
              device: str = "auto", out: Path = Path("runs"), build: bool = True,
              extra_metrics: list[str] | None = None, protocol: str | None = None,
              replicate: int = 0) -> list[dict[str, Any]]:
    """The default suite: build the zoo (if needed), then every synthfaces target × attack."""
    from mibench import zoo

    for a in attacks or []:
        attack_class(a)  # an unknown name fails here, with a suggestion, before anything runs
    t0 = time.time()
    specs = suite_specs(attacks, classes, seed, extra_metrics=extra_metrics, protocol=protocol, replicate=replicate)
    if not specs:
        raise MIBenchError("the default suite is empty: no synthfaces target cards were found",
                           fix="run from the mibench checkout or set MIBENCH_CARDS")
    dev = str(resolve_device(device))
    if build:
        zoo.build_zoo(zoo_names_for(specs), device=dev)
    log.info("default suite: %d runs (zoo ready after %.0fs)", len(specs), time.time() - t0)
    entries = run_many(specs, out=out, device=dev, build=build)
    log.info("default suite finished in %.0fs", time.time() - t0)
    return entries


def zoo_names_for(specs: list[RunSpec]) -> list[str]:
    """The zoo entries `specs` need (targets, evaluators, priors), to build them first and in parallel,
    so that parallel runs never train the same entry."""
    needed = set()
    for r in map(resolve, specs):
        needed.update(n for n in (r.target.name, r.evaluator.name, r.prior.name if r.prior else None) if n)
    return sorted(needed)


def run_many(specs: list[RunSpec], *, out: Path, device: str = "cpu", build: bool = True,
             jobs: int | None = None, desc: str = "default suite") -> list[dict[str, Any]]:
    """Run `specs` on the worker pool (`mibench.ops.pool`) and return their entries in order."""
    for spec in specs:  # bad names, presets or class ids fail here, before any work starts
        resolve(spec)
    t0 = time.time()

    def done(i: int, entry: dict[str, Any]) -> None:
        m = entry["metrics"]
        log.info("  %s × %s: acc@1 %.0f%% in %.0fs (%.0fs since start)", specs[i].target, specs[i].attack,
                    100 * (m["acc@1"] or 0), entry["wall_time_s"], time.time() - t0)

    return run_jobs([(_run_job, (s, str(out), device, build)) for s in specs], device=device, workers=jobs,
                    order=schedule(specs), desc=desc, on_done=done)


def schedule(specs: list[RunSpec]) -> list[int]:
    """Indices of `specs` in the order to start them: one run of each costly attack first (it may
    train a cached stage its other runs share, e.g. LOKT's T-ACGAN warm-up, which the other runs of
    that attack wait for), then the cheap runs (they keep the other workers busy meanwhile), then the
    remaining costly runs, longest first."""
    cost = [attack_class(s.attack).cost for s in specs]
    costly = [i for i in range(len(specs)) if cost[i] >= Attack.COSTLY]
    first: dict[str, int] = {}
    for i in costly:
        first.setdefault(specs[i].attack, i)
    cheap = sorted((i for i in range(len(specs)) if cost[i] < Attack.COSTLY), key=lambda i: -cost[i])
    rest = [i for i in costly if i not in first.values()]
    return sorted(first.values(), key=lambda i: -cost[i]) + cheap + rest


def _run_job(spec: RunSpec, out: str, device: str, build: bool) -> dict[str, Any]:
    """One run as a pool job (no progress bars: they would interleave)."""
    return run_one(spec, out=Path(out), device=device, build=build, progress=False)
