"""Executes runs: resolves cards, loads (or builds) the target, evaluation model and prior, runs the
attack class group by class group, scores every finished class at once, and writes the run folder:

    runs/<run-id>/config.json          the fully resolved run (written first)
    runs/<run-id>/classes/cNNNNN.*     per class: images + latents (.safetensors), metrics (.json)
    runs/<run-id>/per_class.csv        one row per attacked class
    runs/<run-id>/grid.png             real private images | reconstructions, one row per class
    runs/<run-id>/entry.json           the leaderboard entry (schema-versioned)

Every file is written atomically. A class whose files exist is done: `resume` redoes only the
others, so an interrupted run ends with the same entry as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from mibench import __version__
from mibench.attacks.access import ACCESS_LEVELS
from mibench.attacks.base import AttackContext, ClassResult
from mibench.cache import code_version
from mibench.cards import GeneratorCard, TargetCard, card_hash, get_card, list_cards, resolve_defense
from mibench.errors import MIBenchError, QueryBudgetExceeded
from mibench.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from mibench.imaging import grid, save_png, to_uint8
from mibench.registry import ATTACKS
from mibench.typed import to_dict

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ENTRY_FILE = "entry.json"
CONFIG_FILE = "config.json"


@dataclass
class RunSpec:
    """What to run: one target × attack × prior on some classes with a seed."""

    target: str
    attack: str
    prior: str | None = None  # default: the generator card whose `default_for` lists the target's dataset
    classes: list[int] | None = None  # default: every class of the target
    seed: int = 0
    preset: str | None = None  # attack preset; default: chosen from the target's dataset
    overrides: dict[str, Any] = field(default_factory=dict)  # attack config overrides
    query_budget: int | None = None  # label-only attacks only
    classes_per_group: int | None = None  # default: enough classes to fill one optimisation batch


def preset_for(dataset: str) -> str:
    """The attack preset matching a dataset kind (paper settings for real data)."""
    if dataset.startswith("synthfaces"):
        return "synthfaces"
    if dataset in ("celeba",):
        return "celeba"
    if dataset in ("stanford_dogs",):
        return "stanford_dogs"
    return "facescrub"


def default_prior(target: TargetCard) -> str:
    """The prior card whose `default_for` names the target's dataset."""
    for card in list_cards("generator"):
        if target.dataset.name in card.default_for:
            return card.name
    raise MIBenchError(f"no default prior for dataset '{target.dataset.name}'",
                       fix="pass --prior NAME (see `mibench list generators`)")


def parse_classes(text: str | None) -> list[int] | None:
    """'0-9,15,20-22' → [0..9, 15, 20, 21, 22]; None → None."""
    if text is None or text == "all":
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise MIBenchError(f"cannot parse class list '{text}'", field="--classes",
                               fix="use e.g. 0-9 or 0,3,7 or 10-19,42") from None
    return sorted(set(out))


def resolve_device(device: str) -> torch.device:
    """'auto' → cuda when present, else cpu; a requested but absent cuda is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MIBenchError("--device cuda requested but no CUDA device is available", fix="use --device cpu")
    return torch.device(device)


def environment(device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """Versions and hardware, recorded in every entry."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = {"mibench": __version__, "code_version": code_version("attacks", "generators", "classifiers", "metrics"),
           "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
           "device": str(device), "cpu": cpu, "threads": torch.get_num_threads(), "world_size": world_size}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


# ----------------------------------------------------------------------------- the run folder

def class_stem(run_dir: Path, c: int) -> Path:
    """Path stem of one class's result files."""
    return run_dir / "classes" / f"c{c:05d}"


def class_done(run_dir: Path, c: int) -> bool:
    """A class is done when both its tensors and its metrics are on disk."""
    stem = class_stem(run_dir, c)
    return stem.with_suffix(".json").is_file() and stem.with_suffix(".safetensors").is_file()


def save_class(run_dir: Path, result: ClassResult, metrics: dict[str, Any]) -> None:
    """Write one class's images (uint8), latents, scores and metrics; tensors first, then the JSON."""
    stem = class_stem(run_dir, result.class_id)
    tensors = {"images": to_uint8(result.images).contiguous(), "latents": result.latents.float().contiguous(),
               "scores": result.scores.float().contiguous()}
    atomic_write_bytes(stem.with_suffix(".safetensors"), save(tensors))
    atomic_write_json(stem.with_suffix(".json"), metrics)


def load_class(run_dir: Path, c: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metrics) of a finished class."""
    stem = class_stem(run_dir, c)
    try:
        return load_file(str(stem.with_suffix(".safetensors"))), json.loads(stem.with_suffix(".json").read_text())
    except Exception as exc:  # a damaged class file is redone rather than trusted
        raise MIBenchError(f"class file is damaged: {exc}", path=stem.with_suffix(".safetensors"),
                           fix="delete it and resume the run to redo that class") from exc


# ----------------------------------------------------------------------------- resolution

def card_content(card: Any) -> dict[str, Any]:
    """A card's fields without where its file happens to be: run ids, config.json and entries are
    the same in every checkout (a run folder resumes, and a baseline matches, from any of them)."""
    return {k: v for k, v in to_dict(card).items() if k != "path"}


@dataclass
class ResolvedRun:
    """Cards and attack resolved from a RunSpec (no models loaded yet)."""

    spec: RunSpec
    target: TargetCard
    evaluator: TargetCard
    prior: GeneratorCard | None
    attack: Any
    preset: str
    classes: list[int]

    def config(self) -> dict[str, Any]:
        """The fully resolved configuration (what config.json and the entry record)."""
        dcard, dparams = resolve_defense(self.target)
        return {
            "spec": to_dict(self.spec),
            "target": {"name": self.target.name, "card_hash": card_hash(self.target), "card": card_content(self.target),
                       "defense": {"card": dcard.name, "kind": dcard.kind, "params": dparams}},
            "evaluator": {"name": self.evaluator.name, "card_hash": card_hash(self.evaluator)},
            "prior": None if self.prior is None else {"name": self.prior.name, "card_hash": card_hash(self.prior),
                                                      "card": card_content(self.prior)},
            "attack": {"name": self.attack.name, "preset": self.preset, "access": self.attack.access_level,
                       "config": self.attack.describe()},
            "classes": self.classes, "seed": self.spec.seed,
        }

    def run_id(self) -> str:
        """A readable, content-derived id: the same configuration gives the same id."""
        h = card_hash(self.config())[:8]
        prior = self.prior.name if self.prior else "none"
        return f"{self.target.name}__{self.attack.name}__{prior}__seed{self.spec.seed}__{h}"


def resolve(spec: RunSpec) -> ResolvedRun:
    """Check names and build the attack config before anything expensive happens."""
    target = get_card("target", spec.target)
    if target.role != "target":
        raise MIBenchError(f"'{target.name}' is an evaluation model, not a target", path=target.path, field="role")
    if not target.evaluator:
        raise MIBenchError(f"target '{target.name}' names no evaluation model", path=target.path,
                           field="evaluator", fix="add `evaluator: <card name>` (see `mibench list targets`)")
    evaluator = get_card("target", target.evaluator)
    attack_cls = ATTACKS.get(spec.attack)
    preset = spec.preset or preset_for(target.dataset.name)
    attack = attack_cls.from_preset(preset, spec.overrides)
    prior = None
    if getattr(attack_cls, "needs_prior", True):
        prior = get_card("generator", spec.prior or default_prior(target))
    classes = spec.classes if spec.classes is not None else list(range(target.num_classes))
    bad = [c for c in classes if not 0 <= c < target.num_classes]
    if bad:
        raise MIBenchError(f"class ids {bad[:5]} are out of range: target '{target.name}' has classes "
                           f"0-{target.num_classes - 1}", field="--classes", fix=f"use ids in 0-{target.num_classes - 1}")
    if not classes:
        raise MIBenchError("no classes to attack", field="--classes")
    return ResolvedRun(spec, target, evaluator, prior, attack, preset, classes)


# ----------------------------------------------------------------------------- running

def _group_size(run: ResolvedRun) -> int:
    if run.spec.classes_per_group:
        return run.spec.classes_per_group
    cfg = run.attack.config
    per_class = getattr(run.attack, "num_candidates", 1) or 1
    return max(1, getattr(cfg, "batch_size", per_class) // per_class)


def run_one(spec: RunSpec, *, out: Path = Path("runs"), device: str = "auto", resume: Path | None = None,
            progress: bool = True, build: bool = True, dist: Any = None) -> dict[str, Any]:
    """Execute one run (or resume one) and return its entry. `dist` shards classes over ranks."""
    from mibench import zoo
    from mibench.data import load_dataset
    from mibench.metrics.evaluator import ReconstructionScorer

    t_start = time.time()
    run = resolve(spec)
    dev = resolve_device(device)
    if dist is not None and dev.type == "cuda":
        dev = torch.device("cuda", dist.local_rank)
    config = run.config()
    if resume is not None:
        run_dir = Path(resume)
        cfg_path = run_dir / CONFIG_FILE
        if not cfg_path.is_file():
            raise MIBenchError("not a run folder (no config.json)", path=run_dir, fix="pass the folder `mibench run` made")
        saved = json.loads(cfg_path.read_text())
        if saved != json.loads(json.dumps(config)):
            raise MIBenchError("the run folder was made with a different configuration", path=cfg_path,
                               fix="resume with the same options, or start a new run")
    else:
        run_dir = Path(out) / run.run_id()
    is_main = dist is None or dist.rank == 0

    todo = [c for c in run.classes if not class_done(run_dir, c)]
    if dist is not None:
        todo = dist.broadcast(todo)  # rank 0's view of the disk decides (ranks may not share one)
    done_entry = _complete_entry(run_dir, config) if not todo else None
    if done_entry is not None:  # the same run finished before: nothing to redo, the entry stands
        log.info("run %s is already complete: %s", run_dir.name, run_dir / ENTRY_FILE)
        return done_entry if is_main else {}
    mine = todo if dist is None else dist.shard(todo)
    done_before = len(run.classes) - len(todo)
    log.info("run %s: %d classes (%d already done), attack %s/%s on %s", run_dir.name, len(run.classes),
             done_before, run.attack.name, run.preset, dev)

    target, target_info = zoo.load_target(run.target, dev, build=build, progress=progress)
    evaluator, evaluator_info = zoo.load_target(run.evaluator, dev, build=build, progress=progress)
    prior, prior_info = (zoo.load_prior(run.prior, dev, build=build, progress=progress) if run.prior
                         else (None, {}))
    if dev.type == "cuda":  # NHWC convolutions are faster on recent GPUs; results stay within tolerance
        target = target.to(memory_format=torch.channels_last)
        evaluator = evaluator.to(memory_format=torch.channels_last)
    if is_main:  # only once everything loaded: a run that cannot start leaves no folder behind
        atomic_write_json(run_dir / CONFIG_FILE, config)
    access_cls = ACCESS_LEVELS[run.attack.access_level]
    kwargs = {"budget": spec.query_budget} if run.attack.access_level == "label-only" else {}
    access = access_cls(target, run.target.num_classes, run.target.input_size, dev, **kwargs)
    out_size = max(run.target.input_size, run.evaluator.input_size)
    ref = run.target.dataset
    ctx = AttackContext(access=access, prior=prior, device=dev, seed=spec.seed, output_size=out_size,
                        progress=progress, extras={
                            "target_card": run.target, "run_dir": run_dir,
                            # public (attacker-side) data, loaded only by attacks that train on it
                            "public_data": lambda: load_dataset(ref.name, "public", ref.resolved_root(), **ref.params)})
    private = load_dataset(run.target.dataset.name, "private-train", run.target.dataset.resolved_root(),
                           **run.target.dataset.params)
    scorer = ReconstructionScorer.create(evaluator, private, dev)

    try:
        # Results are also kept in memory when sharded: rank 0 may not share this rank's disk.
        finished = _attack_classes(run, ctx, scorer, mine, run_dir, target=target, is_main=is_main,
                                   t_start=t_start, progress=progress, keep=dist is not None)
    except QueryBudgetExceeded as exc:
        # Stopped by the query budget: record how far the run got, then report the error.
        if is_main:
            atomic_write_json(run_dir / "stopped.json", {
                "reason": str(exc), "queries": access.queries, "queries_by_phase": dict(access.queries_by_phase),
                "classes_done": [c for c in run.classes if class_done(run_dir, c)]})
        raise
    if dist is not None:
        # Rank 0 writes what other ranks did when their files are not on a shared disk.
        gathered = dist.gather(finished)
        if not is_main:
            return {}
        for part in gathered:
            for res, metrics in part:
                if not class_done(run_dir, res.class_id):
                    save_class(run_dir, res, metrics)
    entry = finalize(run_dir, run, config, scorer, target_info, evaluator_info, prior_info, dev,
                     world_size=1 if dist is None else dist.world_size, session_start=t_start)
    log.info("wrote %s (acc@1 %.1f%%, %.0fs)", run_dir / ENTRY_FILE, 100 * (entry["metrics"]["acc@1"] or 0),
             time.time() - t_start)
    return entry


def _attack_classes(run: ResolvedRun, ctx: AttackContext, scorer, mine: list[int], run_dir: Path, *,
                    target: torch.nn.Module, is_main: bool, t_start: float, progress: bool,
                    keep: bool) -> list[tuple[ClassResult, dict[str, Any]]]:
    """Prepare the attack and attack this process's classes `mine`, saving each class as it finishes;
    returns the (result, metrics) pairs when `keep`."""
    finished: list[tuple[ClassResult, dict[str, Any]]] = []
    if not mine:
        return finished
    access = ctx.access
    t0 = time.time()
    access.set_phase("prepare")
    run.attack.prepare(ctx)
    prepare_s = time.time() - t0
    agreement = surrogate_agreement(run, target, ctx.device) if is_main else None
    _save_prepare_record(run_dir, run, access, prepare_s, is_main, agreement)
    groups = [mine[i:i + _group_size(run)] for i in range(0, len(mine), _group_size(run))]
    from tqdm import tqdm

    bar = tqdm(total=len(mine), desc=f"{run.attack.name} on {run.target.name}", unit="class",
               disable=not progress)
    for group in groups:
        t0, q0 = time.time(), access.queries
        access.set_phase("attack")
        results = run.attack.attack_classes(ctx, group)
        secs, queries = (time.time() - t0) / len(group), (access.queries - q0) // len(group)
        for res in results:
            metrics = _score_class(scorer, res)
            metrics.update(seconds=round(secs, 3), queries=queries, session=session_id(t_start))
            save_class(run_dir, res, metrics)
            if keep:
                finished.append((res, metrics))
        bar.update(len(group))
        bar.set_postfix(acc1=_running_acc(run_dir, run.classes))
    bar.close()
    return finished


def _complete_entry(run_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The entry of a finished run folder made with `config`, or None."""
    try:
        saved = json.loads((run_dir / CONFIG_FILE).read_text())
        entry = json.loads((run_dir / ENTRY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return entry if saved == json.loads(json.dumps(config)) else None


def session_id(start: float) -> str:
    """Identifies one process's work on a run (its start time)."""
    return f"{start:.3f}"


def _running_acc(run_dir: Path, classes: list[int]) -> str:
    accs = [json.loads(class_stem(run_dir, c).with_suffix(".json").read_text()).get("acc@1", 0.0)
            for c in classes if class_done(run_dir, c)]
    return f"{100 * sum(accs) / max(len(accs), 1):.0f}%"


def _save_prepare_record(run_dir: Path, run: ResolvedRun, access, seconds: float, is_main: bool,
                         agreement: dict[str, Any] | None = None) -> None:
    if is_main:
        info = run.attack.phase_info()
        if agreement is not None:
            info["surrogate_agreement"] = agreement
        atomic_write_json(run_dir / "prepare.json", {"queries": access.queries,
                                                     "queries_by_phase": dict(access.queries_by_phase),
                                                     "seconds": round(seconds, 3), "attack_info": info})


@torch.no_grad()
def surrogate_agreement(run: ResolvedRun, target: torch.nn.Module, dev: torch.device,
                        batch_size: int = 250) -> dict[str, Any] | None:
    """How well an attack's surrogates mimic the target: the fraction of private-test images on which
    the surrogate ensemble (and each member) predicts the target's label. None for attacks without
    surrogates. The harness evaluates this with the target directly: these are not attack queries."""
    from mibench.attacks.transforms import View
    from mibench.data import load_dataset

    get = getattr(run.attack, "surrogate_ensemble", None)
    if get is None:
        return None
    ensemble = get()
    ref = run.target.dataset
    x, y = load_dataset(ref.name, "private-test", ref.resolved_root(), **ref.params).load_tensors(progress=False)
    to_target = View(size=run.target.input_size)
    members = list(getattr(ensemble, "members", [ensemble]))
    agree_members = torch.zeros(len(members))
    agree, truth = 0, 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(dev).float() / 255
        t = target(to_target(xb)).argmax(1)
        logits = [m(xb).float() for m in members]
        pred = torch.stack(logits).mean(0).argmax(1)
        agree += int((pred == t).sum())
        truth += int((pred.cpu() == y[i:i + batch_size]).sum())
        agree_members += torch.tensor([float((lg.argmax(1) == t).sum()) for lg in logits])
    n = len(x)
    return {"images": n, "split": "private-test", "ensemble": round(agree / n, 4),
            "members": [round(float(a) / n, 4) for a in agree_members],
            "ensemble_accuracy": round(truth / n, 4)}


def _score_class(scorer, res: ClassResult) -> dict[str, Any]:
    """Per-class metrics; a class whose optimisation diverged (NaN) is reported, not scored."""
    finite = torch.isfinite(res.images.flatten(1)).all(1) & torch.isfinite(res.scores)
    info = {k: v for k, v in res.info.items() if not isinstance(v, list) or len(v) <= 64}
    if not bool(finite.any()):
        return {"class": res.class_id, "failed": "the attack's loss became NaN for every candidate",
                "n": 0, "info": info}
    if not bool(finite.all()):
        res.images, res.latents, res.scores = res.images[finite], res.latents[finite], res.scores[finite]
    metrics = scorer.score_class(res.class_id, to_uint8(res.images))
    metrics["score"] = float(res.scores.mean())
    metrics["info"] = info
    return metrics


# ----------------------------------------------------------------------------- the entry

def finalize(run_dir: Path, run: ResolvedRun, config: dict[str, Any], scorer, target_info: dict[str, Any],
             evaluator_info: dict[str, Any], prior_info: dict[str, Any], dev: torch.device, *,
             world_size: int = 1, session_start: float | None = None) -> dict[str, Any]:
    """Aggregate the per-class files into per_class.csv, grid.png and entry.json.

    Wall time is the sum over the sessions that worked on the run (an interrupted run's first
    session counts up to its last finished class)."""
    per_class, images, labels, failed = [], [], [], []
    for c in run.classes:
        tensors, metrics = load_class(run_dir, c)
        per_class.append(metrics)
        if metrics.get("failed"):
            failed.append({"class": c, "reason": metrics["failed"]})
            continue
        images.append(tensors["images"])
        labels.append(torch.full((tensors["images"].shape[0],), c, dtype=torch.long))
    ok = [m for m in per_class if not m.get("failed")]
    metrics: dict[str, Any] = {}
    # Failed classes count as not recovered for accuracy; distances average over scored classes.
    for k in ("acc@1", "acc@5"):
        metrics[k] = sum(m[k] for m in ok) / len(per_class) if per_class else None
    for k in ("knn_dist", "facenet_dist"):
        vals = [m[k] for m in ok if k in m]
        metrics[k] = sum(vals) / len(vals) if vals else None
    run_metrics = {"metrics": {}, "unavailable": dict(scorer.unavailable)}
    if images:
        run_metrics = scorer.score_run([m["class"] for m in ok], torch.cat(images), torch.cat(labels))
    metrics.update(run_metrics["metrics"])
    for k in ("fid", "fid_eval", "precision", "recall", "density", "coverage"):
        metrics.setdefault(k, None)
    unavailable = {k: v for k, v in run_metrics["unavailable"].items() if metrics.get(k) is None}
    if metrics.get("facenet_dist") is None:
        unavailable.setdefault("facenet_dist", scorer.unavailable.get("facenet_dist", "no class was scored"))

    prep = json.loads((run_dir / "prepare.json").read_text()) if (run_dir / "prepare.json").is_file() else {}
    queries_by_phase = dict(prep.get("queries_by_phase", {}))
    attack_q = sum(int(m.get("queries", 0)) for m in per_class)
    queries_by_phase["attack"] = queries_by_phase.get("attack", 0) + attack_q
    sessions_path = run_dir / "sessions.json"
    sessions = json.loads(sessions_path.read_text()) if sessions_path.is_file() else []
    if session_start is not None:
        sessions.append({"id": session_id(session_start), "seconds": round(time.time() - session_start, 2)})
        atomic_write_json(sessions_path, sessions)
    # A killed session never got here: count the time its finished classes took instead.
    finished_ids = {s["id"] for s in sessions}
    killed = sum(float(m.get("seconds", 0.0)) for m in per_class if m.get("session") not in finished_ids)
    wall = sum(s["seconds"] for s in sessions) + killed

    _write_per_class_csv(run_dir, per_class)
    _write_grid(run_dir, run, scorer, per_class)
    dcard, dparams = resolve_defense(run.target)
    entry = {
        "schema_version": SCHEMA_VERSION,
        "entry_id": run_dir.name,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dataset": run.target.dataset.name,
        "target": {"name": run.target.name, "architecture": run.target.architecture,
                   "num_classes": run.target.num_classes, "input_size": run.target.input_size,
                   "natural_accuracy": target_info.get("natural_accuracy"),
                   "natural_accuracy_source": target_info.get("natural_accuracy_source"),
                   "defense": {"card": dcard.name, "kind": dcard.kind, "params": dparams,
                               "reference": dcard.reference},
                   "card_hash": config["target"]["card_hash"], "card": config["target"]["card"]},
        "attack": {"name": run.attack.name, "access": run.attack.access_level, "preset": run.preset,
                   "config": config["attack"]["config"], "info": prep.get("attack_info", {})},
        "prior": None if run.prior is None else {"name": run.prior.name, "kind": run.prior.kind,
                                                  "resolution": run.prior.resolution, **config["prior"],
                                                  "source": prior_info.get("source")},
        "evaluator": {"name": run.evaluator.name, "architecture": run.evaluator.architecture,
                      "accuracy": evaluator_info.get("natural_accuracy"), "card_hash": config["evaluator"]["card_hash"]},
        "classes": run.classes, "seed": run.spec.seed,
        "num_images": int(sum(m.get("n", 0) for m in per_class)),
        "metrics": {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()},
        "unavailable": unavailable,
        "queries": {"total": sum(queries_by_phase.values()), "by_phase": queries_by_phase},
        "wall_time_s": round(wall, 2),
        "per_class": [{k: v for k, v in m.items() if k not in ("info", "eval_pred", "session", "seconds")}
                      for m in per_class],
        "failed_classes": failed,
        "artifacts": {"grid": "grid.png", "per_class_csv": "per_class.csv"},
        "environment": environment(dev, world_size),
    }
    atomic_write_json(run_dir / ENTRY_FILE, entry)
    return entry


def _write_per_class_csv(run_dir: Path, per_class: list[dict[str, Any]]) -> None:
    cols = ["class", "n", "acc@1", "acc@5", "knn_dist", "facenet_dist", "score", "queries", "seconds", "failed"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for m in per_class:
        w.writerow(m)
    atomic_write_text(run_dir / "per_class.csv", buf.getvalue())


def _write_grid(run_dir: Path, run: ResolvedRun, scorer, per_class: list[dict[str, Any]], rows: int = 10,
                real: int = 4, fake: int = 8) -> None:
    """grid.png: per class, `real` private images | a blank | up to `fake` reconstructions."""
    scorer._ensure_real()
    imgs, labels = scorer._real_images, scorer._real_labels
    out = []
    size = None
    for m in per_class[:rows]:
        c = m["class"]
        tensors, _ = load_class(run_dir, c)
        rec = tensors["images"][:fake]
        size = rec.shape[-1] if rec.numel() else size or imgs.shape[-1]
        r = imgs[labels == c][:real]
        if r.shape[-1] != size:
            r = to_uint8(torch.nn.functional.interpolate(r.float() / 255, size=(size, size), mode="bilinear",
                                                         antialias=True, align_corners=False))
        blank = torch.full((1, 3, size, size), 255, dtype=torch.uint8)
        out.append(torch.cat([r, blank, rec]) if rec.numel() else torch.cat([r, blank]))
    if out:
        scale = max(1, 64 // max(size, 1))
        save_png(grid(out), run_dir / "grid.png", scale=scale)


def suite_specs(attacks: list[str] | None = None, classes: list[int] | None = None, seed: int = 0,
                dataset_prefix: str = "synthfaces") -> list[RunSpec]:
    """The default suite: every embedded-default target × every attack in the suite."""
    attacks = attacks or [a for a in ("ppa", "ifgmi", "lokt") if a in ATTACKS.names()]
    specs = []
    for card in list_cards("target"):
        if card.role == "target" and card.dataset.name.startswith(dataset_prefix) and card.train is not None:
            for a in attacks:
                specs.append(RunSpec(target=card.name, attack=a, classes=classes, seed=seed))
    return specs


def results_table(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for the printed results table."""
    rows = []
    for e in entries:
        m = e["metrics"]
        rows.append({
            "target": e["target"]["name"], "defense": e["target"]["defense"]["card"], "attack": e["attack"]["name"],
            "nat_acc": _pct(e["target"]["natural_accuracy"]), "acc@1": _pct(m.get("acc@1")),
            "acc@5": _pct(m.get("acc@5")), "knn": _num(m.get("knn_dist")), "fid_eval": _num(m.get("fid_eval")),
            "queries": e["queries"]["total"], "time_s": round(e["wall_time_s"]),
            "agree": _pct((e["attack"].get("info") or {}).get("surrogate_agreement", {}).get("ensemble")),
        })
    return rows


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"
