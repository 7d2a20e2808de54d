"""Executing one run: load the target, evaluation model and prior, attack the classes group by
group (this process's share under torchrun), score each class as it finishes, and finalise the
entry. The run folder's layout belongs to `RunFolder`, the entry's content to `mibench.run.entry`."""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from pathlib import Path
from typing import Any

import torch

from mibench import __version__
from mibench.attacks.access import ACCESS_LEVELS
from mibench.attacks.base import AttackContext, ClassResult
from mibench.cards import card_hash
from mibench.errors import MIBenchError, QueryBudgetExceeded
from mibench.ops.cache import code_version
from mibench.ops.imaging import to_uint8
from mibench.ops.machine import cpu_capability, cpu_name
from mibench.run.entry import SCHEMA_VERSION, finalize, session_id
from mibench.run.folder import RunFolder
from mibench.run.spec import ResolvedRun, RunSpec, resolve

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """'auto' → cuda when present, else cpu; a requested but absent cuda is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MIBenchError("--device cuda requested but no CUDA device is available", fix="use --device cpu")
    return torch.device(device)


def environment(device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """Versions and hardware, recorded in every entry."""
    env = {"mibench": __version__,
           "code_version": code_version("mibench.attacks", "mibench.generators", "mibench.classifiers",
                                        "mibench.metrics"),
           "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
           "device": str(device), "cpu": cpu_name(), "cpu_capability": cpu_capability(),
           "threads": torch.get_num_threads(), "world_size": world_size}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def metric_images_ref(target, evaluator):
    """Where the metrics' private images come from: the originals at the evaluation model's
    resolution (its card's dataset params) when it is the target's dataset — as the published metrics
    resize the original images to the extractor's size — rather than the target's images upsampled."""
    ev, ref = evaluator.dataset, target.dataset
    return ev if (ev.name, ev.resolved_root()) == (ref.name, ref.resolved_root()) else ref


def run_one(spec: RunSpec, *, out: Path = Path("runs"), device: str = "auto", resume: Path | None = None,
            progress: bool = True, build: bool = True, dist: Any = None) -> dict[str, Any]:
    """Execute one run (or resume one) and return its entry. `dist` shards classes over ranks."""
    from mibench import zoo
    from mibench.data import load_dataset
    from mibench.metrics.evaluator import ReconstructionScorer
    from mibench.zoo.targets import build_defense_for

    t_start = time.time()
    run = resolve(spec)
    dev = resolve_device(device)
    if dist is not None and dev.type == "cuda":
        dev = torch.device("cuda", dist.local_rank)
    config = run.config()
    if resume is not None:
        folder = RunFolder(Path(resume))
        folder.check_config(config)
    else:
        folder = RunFolder(Path(out) / run.run_id())
    is_main = dist is None or dist.rank == 0

    todo = [c for c in run.classes if not folder.class_done(c)]
    if dist is not None:
        todo = dist.broadcast(todo)  # rank 0's view of the disk decides (ranks may not share one)
    done_entry = folder.complete_entry(config) if not todo else None
    if done_entry is not None and done_entry.get("schema_version", 1) < SCHEMA_VERSION:
        # Finished under an older entry schema: its classes stand, the entry is written again (e.g.
        # with the intervals version 2 added) without attacking anything.
        log.info("run %s is complete; rewriting its entry in schema version %d", folder.name, SCHEMA_VERSION)
        done_entry = None
    if done_entry is not None:  # the same run finished before: nothing to redo, the entry stands
        log.info("run %s is already complete: %s", folder.name, folder.entry_file)
        return done_entry if is_main else {}
    mine = todo if dist is None else dist.shard(todo)
    done_before = len(run.classes) - len(todo)
    log.info("run %s: %d classes (%d already done), attack %s with preset '%s' (%s) on %s", folder.name,
             len(run.classes), done_before, run.attack.name, run.preset, run.preset_source, dev)

    target, target_info = zoo.load_target(run.target, dev, build=build, progress=progress)
    evaluator, evaluator_info = zoo.load_target(run.evaluator, dev, build=build, progress=progress)
    prior, prior_info = (zoo.load_prior(run.prior, dev, build=build, progress=progress) if run.prior
                         else (None, {}))
    if dev.type == "cuda":  # NHWC convolutions are faster on recent GPUs; results stay within tolerance
        target = target.to(memory_format=torch.channels_last)
        evaluator = evaluator.to(memory_format=torch.channels_last)
    new_folder = resume is None and not folder.path.exists()
    if is_main:  # only once everything loaded: a run that cannot start leaves no folder behind
        folder.write_config(config)
    access_cls = ACCESS_LEVELS[run.attack.access_level]
    kwargs = {"budget": spec.query_budget} if spec.query_budget is not None else {}  # query levels only (`resolve`)
    access = access_cls(target, run.target.num_classes, run.target.input_size, dev, **kwargs)
    access = build_defense_for(run.target).wrap_access(access)  # query-time defenses
    out_size = max(run.target.input_size, run.evaluator.input_size)
    ref = run.target.dataset

    def public_data():  # the attacker's public data, loaded only by attacks that train on it
        pub = run.public_data
        return load_dataset(pub.name, pub.split or "public", pub.resolved_root(), **pub.params)

    def private_test():
        return load_dataset(ref.name, "private-test", ref.resolved_root(), **ref.params)

    ctx = AttackContext(access=access, prior=prior, device=dev, seed=spec.seed, output_size=out_size,
                        progress=progress, store_dir=folder.attack_dir(run.attack.name), public_data=public_data,
                        # Stages trained on other public data are other stages.
                        target_id=(config["target"]["card_hash"] if run.public_id() is None
                                   else card_hash(config["target"]["card_hash"], run.public_id())))
    real = metric_images_ref(run.target, run.evaluator)
    private = load_dataset(real.name, "private-train", real.resolved_root(), **real.params)
    if not target_info.get("class_names"):  # user weights: the names come from the data
        target_info = {**target_info, "class_names": list(private.class_names)}
    networks = {}
    if run.evaluator2 is not None:  # a second judge of the same reconstructions (`eval_agree`)
        networks["evaluator2"], ev2_info = zoo.load_target(run.evaluator2, dev, build=build, progress=progress)
        evaluator_info = {**evaluator_info, "second": {
            "name": run.evaluator2.name, "architecture": run.evaluator2.architecture,
            "accuracy": ev2_info.get("natural_accuracy"), "card_hash": card_hash(run.evaluator2),
            "weights": ev2_info.get("weights")}}
    scorer = ReconstructionScorer.create(evaluator, private, dev, extra=spec.extra_metrics,
                                         private_test=private_test, networks=networks)

    try:
        # Results are also kept in memory when sharded: rank 0 may not share this rank's disk.
        finished = _attack_classes(run, ctx, scorer, mine, folder, target=target, is_main=is_main,
                                   t_start=t_start, progress=progress, keep=dist is not None,
                                   private_test=private_test)
    except QueryBudgetExceeded as exc:
        # Stopped by the query budget: record how far the run got, then report the error.
        if is_main:
            folder.write_stopped({
                "reason": str(exc), "queries": access.queries, "queries_by_phase": dict(access.queries_by_phase),
                "classes_done": [c for c in run.classes if folder.class_done(c)]})
        raise
    except BaseException:
        # Failed before any class or trained stage was kept (e.g. bad public data): no folder that
        # `--resume` would have to make sense of.
        if is_main and new_folder and folder.remove_if_unstarted():
            log.info("removed %s: the run failed before its first class", folder.path)
        raise
    if dist is not None:
        # Every rank's results reach rank 0, which writes what other ranks did when their files are not on a shared disk.
        gathered = dist.gather(finished)
        if not is_main:
            return {}
        for part in gathered:
            for res, metrics in part:
                if not folder.class_done(res.class_id):
                    folder.save_class(res, metrics)
    entry = finalize(folder, run, config, scorer, target_info, evaluator_info, prior_info,
                     environment(dev, 1 if dist is None else dist.world_size),
                     session_start=t_start if todo else None)  # a rewrite adds no attack time
    log.info("wrote %s (acc@1 %.1f%%, %.0fs)", folder.entry_file, 100 * (entry["metrics"]["acc@1"] or 0),
             time.time() - t_start)
    return entry


def _attack_classes(run: ResolvedRun, ctx: AttackContext, scorer, mine: list[int], folder: RunFolder, *,
                    target: torch.nn.Module, is_main: bool, t_start: float, progress: bool,
                    keep: bool, private_test) -> list[tuple[ClassResult, dict[str, Any]]]:
    """Prepare the attack and attack this process's classes `mine`, saving each class as it finishes;
    returns the (result, metrics) pairs when `keep`."""
    from tqdm import tqdm

    from mibench.run.diagnostics import surrogate_agreement

    finished: list[tuple[ClassResult, dict[str, Any]]] = []
    if not mine:
        return finished
    access = ctx.access
    t0 = time.time()
    access.set_phase("prepare")
    run.attack.prepare(ctx)
    prepare_s = time.time() - t0
    if is_main:
        info = run.attack.phase_info()
        surrogate = run.attack.surrogates()
        if surrogate is not None:
            info["surrogate_agreement"] = surrogate_agreement(surrogate, target, private_test(),
                                                              run.target.input_size, ctx.device)
        folder.write_prepare({"queries": access.queries, "queries_by_phase": dict(access.queries_by_phase),
                              "seconds": round(prepare_s, 3), "attack_info": info})
    size = run.group_size()
    groups = [mine[i:i + size] for i in range(0, len(mine), size)]
    bar = tqdm(total=len(mine), desc=f"{run.attack.name} on {run.target.name}", unit="class",
               disable=not progress)
    for group in groups:
        t0, q0 = time.time(), dict(access.queries_by_phase)
        access.set_phase("attack")
        results = run.attack.attack_classes(ctx, group)
        secs = (time.time() - t0) / len(group)
        shares = split_queries({k: v - q0.get(k, 0) for k, v in access.queries_by_phase.items()}, len(group))
        for res, share in zip(results, shares):
            metrics = score_class(scorer, res)
            metrics.update(seconds=round(secs, 3), queries=sum(share.values()), queries_by_phase=share,
                           session=session_id(t_start))
            folder.save_class(res, metrics)
            if keep:  # uint8 images (what save_class writes): 4× less to hold and move to rank 0
                finished.append((dataclasses.replace(res, images=to_uint8(res.images)), metrics))
        bar.update(len(group))
        bar.set_postfix(acc1=_running_acc(folder, run.classes))
    bar.close()
    return finished


def _running_acc(folder: RunFolder, classes: list[int]) -> str:
    accs = [folder.class_metrics(c).get("acc@1", 0.0) for c in classes if folder.class_done(c)]
    return f"{100 * sum(accs) / max(len(accs), 1):.0f}%"


def split_queries(by_phase: dict[str, int], n: int) -> list[dict[str, int]]:
    """Each of a group's n classes' share of the queries the group made, by phase: an even split
    whose shares add up to the group's counts exactly (the first classes take the remainder)."""
    return [{k: v // n + (i < v % n) for k, v in by_phase.items() if v} for i in range(n)]


def score_class(scorer, res: ClassResult) -> dict[str, Any]:
    """Per-class metrics; a class with no finite result (a diverged optimisation, or one the attack
    could not start: its `info["failed"]` says why) is reported, not scored."""
    finite = torch.isfinite(res.images.flatten(1)).all(1) & torch.isfinite(res.scores)
    info = {k: v for k, v in res.info.items() if not isinstance(v, list) or len(v) <= 64}
    if not bool(finite.any()):
        reason = res.info.get("failed") or "the attack's loss became NaN for every candidate"
        return {"class": res.class_id, "failed": reason, "n": 0, "info": info}
    if not bool(finite.all()):
        res.images, res.latents, res.scores = res.images[finite], res.latents[finite], res.scores[finite]
    metrics = scorer.score_class(res.class_id, to_uint8(res.images))
    metrics["score"] = float(res.scores.mean())
    metrics["info"] = info
    return metrics
