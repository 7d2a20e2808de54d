"""The leaderboard entry of a finished run: per-class results aggregated over the metric registry,
the reconstruction grid, and `entry.json` (schema-versioned; `Entry` reads, validates and writes it)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import torch

from mibench.cards import resolve_defense
from mibench.errors import MIBenchError
from mibench.metrics.base import metric_kinds
from mibench.ops.fileio import atomic_write_json
from mibench.ops.imaging import grid, save_png, to_uint8
from mibench.ops.stats import Interval, bootstrap_mean
from mibench.run.folder import RunFolder
from mibench.run.protocol import protocol_of
from mibench.run.spec import ResolvedRun

SCHEMA_VERSION = 2  # 2: `protocol` and `intervals` (version-1 entries are still read)
# Per-class keys that stay in the class files but not in the entry's per-class list.
_PER_CLASS_ONLY = ("info", "eval_pred", "session", "seconds", "queries_by_phase")


SCHEMA_FILE = Path(__file__).with_name("entry.schema.json")


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The entry JSON Schema, its `metrics` block built from the metric registry (every kind's
    columns; fractions bounded to [0, 1]; the `required` columns always present)."""
    from mibench.metrics.base import all_columns
    from mibench.registry import METRICS

    base = json.loads(SCHEMA_FILE.read_text())
    block = base["properties"]["metrics"]
    for col in all_columns(METRICS.names()):
        prop: dict[str, Any] = {"type": ["number", "null"]}
        if col.percent:
            prop.update(minimum=0, maximum=1)
        block["properties"][col.name] = prop
        if col.required:
            block["required"].append(col.name)
    return base


def validate_entry(entry: Any, path: str | Path) -> dict[str, Any]:
    """Return `entry` if it satisfies the schema, else raise one MIBenchError naming the field."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(entry), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        field = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise MIBenchError(f"not a valid leaderboard entry: {err.message}{more}", path=path, field=field,
                           fix="regenerate it with `mibench run` or fix the field")
    return entry


def load_entry(path: str | Path) -> dict[str, Any]:
    """Read and validate one entry file."""
    path = Path(path)
    try:
        entry = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MIBenchError(f"not valid JSON (line {exc.lineno}): {exc.msg}", path=path,
                           fix="regenerate the entry or repair the file") from None
    except OSError as exc:
        raise MIBenchError(f"cannot read entry: {exc.strerror}", path=path) from None
    return validate_entry(entry, path)


@dataclass
class Entry:
    """An entry as data: `Entry.read(path)` validates against the schema; `.data` is the JSON."""

    data: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path) -> Entry:
        """Read and validate one entry file (one clear error naming the file and field)."""
        return cls(load_entry(path))

    def validate(self, where: str = "entry") -> Entry:
        """Check against the entry schema."""
        validate_entry(self.data, where)
        return self

    def write(self, path: str | Path) -> None:
        """Write atomically as indented, key-sorted JSON."""
        atomic_write_json(path, self.data)


def session_id(start: float) -> str:
    """Identifies one process's work on a run (its start time)."""
    return f"{start:.3f}"


def column_values(per_class: list[dict[str, Any]], kind, name: str) -> list[float]:
    """One per-class column's values as `kind` aggregates them: every attacked class, a failed one
    as 0 (`aggregate='all'`), or the scored classes that have the value."""
    if kind.aggregate == "all":
        return [0.0 if m.get("failed") else m.get(name) for m in per_class]
    return [m[name] for m in per_class if not m.get("failed") and m.get(name) is not None]


def aggregate(per_class: list[dict[str, Any]], kinds) -> dict[str, Any]:
    """Per-class metric values → the run's values, as each metric kind aggregates them: over all
    attacked classes (a failed class counts as 0) or over the scored ones."""
    out: dict[str, Any] = {}
    for kind in kinds:
        if kind.scope != "class":
            continue
        for col in kind.columns:
            vals = column_values(per_class, kind, col.name)
            out[col.name] = sum(vals) / len(vals) if vals and None not in vals else None
    return out


def class_intervals(per_class: list[dict[str, Any]], kinds) -> dict[str, Interval]:
    """The bootstrap interval over the attacked identities of every per-class metric, with the
    values the entry aggregates (`column_values`)."""
    out: dict[str, Interval] = {}
    for kind in kinds:
        if kind.scope != "class":
            continue
        for col in kind.columns:
            vals = [v for v in column_values(per_class, kind, col.name) if v is not None and math.isfinite(v)]
            if vals:
                out[col.name] = bootstrap_mean(vals)
    return out


def _interval_json(iv: Interval, value: Any) -> dict[str, Any] | None:
    if value is None or not (math.isfinite(iv.lo) and math.isfinite(iv.hi)):
        return None
    return {**iv.as_dict(), "value": value}


def finalize(folder: RunFolder, run: ResolvedRun, config: dict[str, Any], scorer, target_info: dict[str, Any],
             evaluator_info: dict[str, Any], prior_info: dict[str, Any], environment: dict[str, Any], *,
             session_start: float | None = None) -> dict[str, Any]:
    """Aggregate the per-class files into per_class.csv, grid.png and entry.json.

    Wall time is the sum over the sessions that worked on the run (an interrupted run's first
    session counts up to its last finished class)."""
    kinds = metric_kinds(run.spec.extra_metrics)
    per_class, images, labels, failed = [], [], [], []
    names = target_info.get("class_names") or []
    for c in run.classes:
        tensors, metrics = folder.load_class(c)
        if c < len(names):  # the class's name (a folder name for `imagefolder` data)
            metrics = {**metrics, "name": names[c]}
        per_class.append(metrics)
        if metrics.get("failed"):
            failed.append({"class": c, "reason": metrics["failed"]})
            continue
        images.append(tensors["images"])
        labels.append(torch.full((tensors["images"].shape[0],), c, dtype=torch.long))
    ok = [m for m in per_class if not m.get("failed")]
    metrics: dict[str, Any] = aggregate(per_class, kinds)
    run_metrics = {"metrics": {}, "unavailable": dict(scorer.unavailable)}
    intervals, interval_notes = class_intervals(per_class, kinds), {}
    if images:
        batch = scorer.run_batch([m["class"] for m in ok], torch.cat(images), torch.cat(labels))
        run_metrics = scorer.score_batch(batch)
        run_iv, interval_notes = scorer.run_intervals(batch)
        intervals.update(run_iv)
    metrics.update(run_metrics["metrics"])
    for kind in kinds:
        if kind.scope == "run":
            for col in kind.columns:
                metrics.setdefault(col.name, None)
    unavailable = {k: v for k, v in run_metrics["unavailable"].items() if metrics.get(k) is None}
    for kind in kinds:  # e.g. acc@5 on 5 classes: null, with the reason, never a constant 100 %
        for name, why in kind.not_applicable(run.target.num_classes).items():
            metrics[name] = None
            intervals.pop(name, None)
            unavailable[name] = why
    for kind in kinds:
        if kind.scope == "class":
            for col in kind.columns:
                if metrics.get(col.name) is None:
                    unavailable.setdefault(col.name, scorer.unavailable.get(col.name, "no class was scored"))

    prep = folder.read_prepare()
    queries_by_phase = dict(prep.get("queries_by_phase", {}))
    for m in per_class:  # classes saved before phases were recorded per class count as "attack"
        for phase, n in (m.get("queries_by_phase") or {"attack": int(m.get("queries", 0))}).items():
            queries_by_phase[phase] = queries_by_phase.get(phase, 0) + int(n)
    session = None if session_start is None else {"id": session_id(session_start),
                                                  "seconds": round(time.time() - session_start, 2)}
    sessions = folder.add_session(session)
    # A killed session never got here: count the time its finished classes took instead.
    finished_ids = {s["id"] for s in sessions}
    killed = sum(float(m.get("seconds", 0.0)) for m in per_class if m.get("session") not in finished_ids)
    wall = sum(s["seconds"] for s in sessions) + killed

    folder.write_per_class_csv(per_class, [c.name for k in kinds if k.scope == "class" for c in k.columns])
    write_grid(folder, scorer, per_class)
    dcard, dparams = resolve_defense(run.target)
    entry = {
        "schema_version": SCHEMA_VERSION,
        "entry_id": folder.name,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dataset": run.target.dataset.name,
        "target": {"name": run.target.name, "architecture": run.target.architecture,
                   "num_classes": run.target.num_classes, "input_size": run.target.input_size,
                   "natural_accuracy": target_info.get("natural_accuracy"),
                   "natural_accuracy_source": target_info.get("natural_accuracy_source"),
                   "defense": {"card": dcard.name, "kind": dcard.kind, "params": dparams,
                               "reference": dcard.reference},
                   "card_hash": config["target"]["card_hash"], "card": config["target"]["card"],
                   "weights": target_info.get("weights")},
        "attack": {"name": run.attack.name, "access": run.attack.access_level, "preset": run.preset,
                   "config": config["attack"]["config"], "info": prep.get("attack_info", {})},
        "prior": None if run.prior is None else {"name": run.prior.name, "kind": run.prior.kind,
                                                  "resolution": run.prior.resolution, **config["prior"],
                                                  "source": prior_info.get("source"),
                                                  "weights": prior_info.get("weights")},
        "evaluator": {"name": run.evaluator.name, "architecture": run.evaluator.architecture,
                      "accuracy": evaluator_info.get("natural_accuracy"), "card_hash": config["evaluator"]["card_hash"],
                      "weights": evaluator_info.get("weights"),
                      **({"second": evaluator_info["second"]} if evaluator_info.get("second") else {})},
        "classes": run.classes, "seed": run.spec.seed,
        "num_images": int(sum(m.get("n", 0) for m in per_class)),
        "protocol": protocol_of(run.classes, run.target.num_classes),
        "metrics": {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()},
        # 95 % intervals over the attacked identities (what each covers is recorded with it).
        "intervals": {k: _interval_json(iv, metrics.get(k)) for k, iv in sorted(intervals.items())
                      if metrics.get(k) is not None},
        "interval_notes": {k: v for k, v in interval_notes.items() if metrics.get(k) is not None},
        "unavailable": unavailable,
        # What a random guess scores, for the metrics that define it (e.g. re-identification 1 / K).
        "chance": {k: v for kind in scorer.kinds for k, v in kind.chance(scorer).items()
                   if metrics.get(k) is not None},
        "queries": {"total": sum(queries_by_phase.values()), "by_phase": queries_by_phase,
                    **({"budget": run.spec.query_budget} if run.spec.query_budget is not None else {})},
        "wall_time_s": round(wall, 2),
        "per_class": [{k: v for k, v in m.items() if k not in _PER_CLASS_ONLY} for m in per_class],
        "failed_classes": failed,
        "artifacts": {"grid": "grid.png", "per_class_csv": "per_class.csv"},
        "environment": environment,
    }
    Entry(entry).write(folder.entry_file)
    return entry


def write_grid(folder: RunFolder, scorer, per_class: list[dict[str, Any]], rows: int = 10,
               real: int = 4, fake: int = 8) -> None:
    """grid.png: per class, `real` private images | a blank | up to `fake` reconstructions; each row
    named by its class id and name when the per-class rows carry names."""
    out = []
    size = None
    for m in per_class[:rows]:
        c = m["class"]
        tensors, _ = folder.load_class(c)
        rec = tensors["images"][:fake]
        r = scorer.real_class_images(c)[:real]
        size = rec.shape[-1] if rec.numel() else size or r.shape[-1]
        if r.shape[-1] != size:
            r = to_uint8(torch.nn.functional.interpolate(r.float() / 255, size=(size, size), mode="bilinear",
                                                         antialias=True, align_corners=False))
        blank = torch.full((1, 3, size, size), 255, dtype=torch.uint8)
        out.append(torch.cat([r, blank, rec]) if rec.numel() else torch.cat([r, blank]))
    if out:
        scale = max(1, 64 // max(size, 1))
        labels = [f"{m['class']} {m['name']}" for m in per_class[:rows]] if all(
            "name" in m for m in per_class[:rows]) else None
        save_png(grid(out), folder.path / "grid.png", scale=scale, row_labels=labels, row_pitch=size + 2)
