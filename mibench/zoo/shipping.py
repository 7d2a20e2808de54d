"""The shipped zoo: copying locally trained zoo entries into the store committed with the code
(`mibench zoo ship`, a maintainer's step), and retraining shipped entries to see how close another
build gets (`mibench zoo verify`).

Shipped artifacts live in `mibench/shipped/<area>/` (see `mibench.ops.cache`): the embedded targets
(every defense card in `ZOO_REPLICATES` training seeds), the evaluation model, the default priors
LOKT's T-ACGAN warm-up and the synthfaces attribute reader. Each one's sidecar is its manifest: card hash, the code version that
trained it, the sha256 of every file, training time and natural accuracy / prior figures. A run
uses the shipped copy whenever the card hash matches, so every machine attacks the same weights.
"""

from __future__ import annotations

import datetime
import logging
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from mibench.attacks.addon import attack_class
from mibench.cards import card_hash, load_card, replicate_card, replicate_index
from mibench.errors import MIBenchError
from mibench.metrics.attribute_reader import READERS, reader_artifact
from mibench.ops import cache
from mibench.ops.cache import Artifact
from mibench.ops.fileio import sha256_file
from mibench.ops.machine import cpu_capability, cpu_name
from mibench.zoo.build import zoo_cards
from mibench.zoo.priors import PRIORS, prior_artifact
from mibench.zoo.targets import TARGET_CODE, TARGETS, target_artifact

log = logging.getLogger(__name__)


def machine() -> dict[str, Any]:
    """Where an artifact was trained (recorded in its manifest)."""
    return {"cpu": cpu_name(), "torch": torch.__version__, "cpu_capability": cpu_capability(),
            "threads": torch.get_num_threads(), "python": platform.python_version()}


def _training_seconds(meta: dict[str, Any]) -> float | None:
    """Training time of a build: a resumed prior build's `build_seconds` counts only its last part,
    while its training record's `seconds` runs across resumes, so the larger of the two."""
    times = [t for t in (meta.get("build_seconds"), meta.get("summary", {}).get("seconds"), meta.get("seconds"))
             if t is not None]
    return max(times) if times else None


def _manifest(kind: str, card: Any, art: Artifact) -> dict[str, Any]:
    meta, record = art.meta(), art.record()
    out = {"kind": kind, "card": card.name if card is not None else None,
           # the card hash the artifact is keyed on (a prior's without `default_for`)
           "card_hash": (record.get("content") or {}).get("card") or (card_hash(card) if card is not None else None),
           "code_version": record.get("code_version"),
           "sha256": record.get("files"), "bytes": {s: art.file(s).stat().st_size for s in record.get("files", {})},
           "training_seconds": _training_seconds(meta),
           "machine": machine(), "shipped": datetime.date.today().isoformat()}
    for k in ("natural_accuracy", "quality"):
        if meta.get(k) is not None:
            out[k] = meta[k]
    return out


def ship(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Copy the local builds of the zoo entries `names` (default: the default zoo, replicates included,
    and the attribute readers) into the shipped store. Entries whose files are unchanged are left as
    they are. Returns one row per artifact.

    LOKT's T-ACGAN warm-up (4.6 MB) is not shipped, to keep the store within its size budget: the
    shipped LOKT stages of the embedded targets already contain its result, and a target without
    shipped stages trains it once per machine (≈ 3 min), cached like every other stage."""
    rows = []
    for kind, card in zoo_cards(names):
        local = target_artifact(card, local=True) if kind == "target" else prior_artifact(card, local=True)
        if not local.exists():
            raise MIBenchError(f"'{card.name}' has no local build to ship", path=local.sidecar,
                               fix=f"run `mibench zoo build --force {card.name}` first")
        area = TARGETS if kind == "target" else PRIORS
        out, changed = area.ship(local, _manifest(kind, card, local))
        rows.append(_row(card.name, out, changed))
    if not names:
        for art in _readers():
            out, changed = READERS.ship(art, _manifest("attribute-reader", None, art))
            rows.append(_row(art.name, out, changed))
    return rows


def _readers() -> list[Artifact]:
    """Local attribute readers of the default zoo's datasets that have ground truth (synthfaces)."""
    from mibench.data import load_dataset

    seen, out = set(), []
    for kind, card in zoo_cards(None):
        ref = card.dataset if kind == "target" else None
        if ref is None or (ref.name, repr(ref.params)) in seen:
            continue
        seen.add((ref.name, repr(ref.params)))
        truth = getattr(load_dataset(ref.name, "private-test", ref.resolved_root(), **ref.params), "ground_truth", None)
        if truth is not None and reader_artifact(truth, local=True).exists():
            out.append(reader_artifact(truth, local=True))
    return out


def ship_stages(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Copy the stages an attack trained in finished run folders (e.g. LOKT's T-ACGAN and
    surrogates in `<run>/lokt/`) into the shipped store for that run's target
    (`attacks.base.stages_store`); later runs on the same target card with the same stage settings
    load them instead of training. Unchanged files are left as they are."""
    import json

    from mibench.attacks.base import stages_store

    rows = []
    for run_dir in map(Path, run_dirs):
        try:
            config = json.loads((run_dir / "config.json").read_text())
        except (OSError, ValueError):
            raise MIBenchError("not a run folder (no readable config.json)", path=run_dir,
                               fix="pass a folder that `mibench run` created") from None
        attack, target = config["attack"]["name"], config["target"]
        base, _, addon = attack.partition("+")
        # (folder, shipped name): the base's stages, then a composed attack's add-on stages.
        parts = [(run_dir / attack, base)]
        if addon:
            field = attack_class(attack).addon_cls.field
            parts.append((run_dir / attack / field, field))
        found = [(folder, name, sorted(folder.glob("*.artifact.json"))) for folder, name in parts]
        if not any(sidecars for _, _, sidecars in found):
            raise MIBenchError(f"the run kept no {attack} stages", path=run_dir / attack,
                               fix="ship the folder of a finished run of an attack that trains stages (e.g. lokt)")
        for folder, name, sidecars in found:
            rows += _ship_folder(folder, sidecars, stages_store(name, target["card_hash"]), f"{name}-stage",
                                 target, run_dir)
    return rows


def _ship_folder(folder: Path, sidecars: list[Path], store, kind: str, target: dict[str, Any],
                 run_dir: Path) -> list[dict[str, Any]]:
    """Ship the stage artifacts of one folder into `store`; one row per artifact."""
    import json

    rows = []
    for sidecar in sidecars:
        record = json.loads(sidecar.read_text())
        art = Artifact(folder, record["name"], record["key"], (), record.get("content"))
        manifest = {"kind": kind, "target": target["name"], "target_card_hash": target["card_hash"],
                    "run": run_dir.name, "code_version": record.get("code_version"), "sha256": record.get("files"),
                    "bytes": {s: art.file(s).stat().st_size for s in record.get("files", {})},
                    "machine": machine(), "shipped": datetime.date.today().isoformat()}
        out, changed = store.ship(art, manifest)
        rows.append(_row(f"{target['name']}: {record['name']}", out, changed))
    return rows


def _row(name: str, art: Artifact, changed: bool) -> dict[str, Any]:
    size = sum(art.file(s).stat().st_size for s in art.record().get("files", {}))
    return {"name": name, "status": "shipped (updated)" if changed else "unchanged", "MB": f"{size / 2**20:.2f}",
            "file": str(art.stem.relative_to(cache.SHIPPED))}


def shipped_size() -> int:
    """Bytes of everything in the shipped store."""
    return sum(f.stat().st_size for f in cache.SHIPPED.rglob("*") if f.is_file())


# ----------------------------------------------------------------------------- verify

def verify_one(card_path: str, replicate: int, device: str, attack: dict[str, Any] | None = None) -> dict[str, Any]:
    """Retrain one shipped target (a pool job) into a temporary folder and compare it with the shipped
    weights: natural accuracy, prediction agreement on the private test split, identical bytes, and
    — when `attack` gives `short_attack`'s settings (attack, classes, prior, overrides) — the acc@1 of
    one short attack against each."""
    from mibench.classifiers.checkpoint import load_classifier
    from mibench.classifiers.train import evaluate_accuracy, predict
    from mibench.ops.cache import ArtifactCache
    from mibench.zoo.targets import dataset, train_target_files

    card = replicate_card(load_card(card_path, "target"), replicate)
    shipped = target_artifact(card)
    if not shipped.shipped:
        raise MIBenchError(f"'{card.name}' is not shipped for this card hash", path=card.path,
                           fix="`mibench zoo verify` compares a retrain with the shipped weights; see `mibench list targets`")
    ship_meta = shipped.meta()
    with tempfile.TemporaryDirectory(prefix="mibench-verify-") as tmp:
        local = ArtifactCache("verify", root=tmp).artifact(card.name, shipped.content, TARGET_CODE)
        _, meta = train_target_files(card, local, device, progress=False)
        same = sha256_file(local.file(".safetensors")) == shipped.record()["files"][".safetensors"]
        retrained, _ = load_classifier(local.stem, expected_arch=card.architecture, device=device)
        original, _ = load_classifier(shipped.stem, expected_arch=card.architecture, device=device)
        test = dataset(card.dataset, "private-test")
        x, _ = test.load_tensors()
        with torch.no_grad():
            agree = float((predict(retrained, x, device) == predict(original, x, device)).float().mean())
        acc = evaluate_accuracy(retrained, test, device)
        check = None
        if attack is not None and card.role != "evaluator":  # an evaluation model is the judge, not attacked
            from mibench.zoo.attack_check import short_attack

            check = short_attack(card, {"shipped": original, "retrained": retrained}, device, **attack)
    row = {"name": card.name, "shipped_acc": f"{100 * ship_meta['natural_accuracy']:.2f}%",
            "retrained_acc": f"{100 * acc:.2f}%", "delta_pts": f"{100 * (acc - ship_meta['natural_accuracy']):+.2f}",
            "prediction_agreement": f"{100 * agree:.1f}%", "identical_weights": "yes" if same else "no",
            "train_s": round(meta["build_seconds"], 1)}
    if check is not None:
        a = check["acc1"]
        row.update({"attack": f"{check['attack']} × {check['classes']} classes",
                    "attack_shipped": f"{a['shipped']:.1f}%", "attack_retrained": f"{a['retrained']:.1f}%",
                    "attack_delta_pts": f"{a['retrained'] - a['shipped']:+.1f}"})
    return row


def verify(names: list[str] | None = None, device: str = "cpu", jobs: int | None = None,
           progress: bool = True, attack: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Retrain the shipped targets `names` (default: every shipped target) and report how close each
    retrain gets (see `verify_one`; `attack`: the short attack's settings, None for none)."""
    from mibench.ops.pool import run_jobs

    cards = [c for k, c in zoo_cards(names) if k == "target" and target_artifact(c).shipped]
    if not cards:
        raise MIBenchError("no shipped targets to verify", fix="see `mibench list targets` (status 'shipped')")
    if attack is not None:
        from mibench.zoo.attack_check import check_attack

        check_attack(attack["attack"], attack.get("classes", 10))
    return run_jobs([(verify_one, (c.path, replicate_index(c.name), device, attack)) for c in cards], device=device,
                    workers=jobs, desc="zoo verify", progress=progress)
