"""The leaderboard table: entries flattened into one pandas row each (every metric with the bounds of
its 95 % interval, and the protocol), written as CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mibench.metrics.base import entry_columns
from mibench.ops.fileio import atomic_write_text
from mibench.run.protocol import entry_protocol

HEAD = ["entry_id", "dataset", "protocol", "target", "architecture", "defense", "defense_params", "attack", "access",
        "preset", "prior", "evaluator", "evaluator_acc", "natural_acc"]
TAIL = ["queries", "wall_time_s", "classes", "seed", "device", "created"]


def _metric_names(names: list[str]) -> list[str]:
    """Each metric followed by the bounds of its 95 % interval (`acc@1`, `acc@1_lo`, `acc@1_hi`)."""
    return [x for n in names for x in (n, f"{n}_lo", f"{n}_hi")]


def columns(entries: list[dict[str, Any]]) -> list[str]:
    """The CSV's columns, in order."""
    return HEAD + _metric_names([c.name for c in entry_columns(entries)]) + TAIL


def entry_row(entry: dict[str, Any], metric_names: list[str] | None = None) -> dict[str, Any]:
    """One flat row of an entry."""
    m, t, iv = entry["metrics"], entry["target"], entry.get("intervals") or {}
    params = t["defense"].get("params") or {}
    names = metric_names or [c.name for c in entry_columns([entry])]
    bounds = {f"{n}_{b}": (iv.get(n) or {}).get(b) for n in names for b in ("lo", "hi")}
    return {
        "entry_id": entry["entry_id"], "dataset": entry["dataset"], "protocol": entry_protocol(entry),
        "target": t["name"], "preset": entry["attack"].get("preset"),
        "architecture": t["architecture"], "defense": t["defense"]["card"],
        "defense_params": ", ".join(f"{k}={v}" for k, v in sorted(params.items())),
        "attack": entry["attack"]["name"], "access": entry["attack"]["access"],
        "prior": (entry.get("prior") or {}).get("name", ""), "evaluator": entry["evaluator"]["name"],
        "evaluator_acc": entry["evaluator"].get("accuracy"), "natural_acc": t.get("natural_accuracy"),
        **{k: m.get(k) for k in names}, **bounds,
        "queries": entry["queries"]["total"], "wall_time_s": entry["wall_time_s"],
        "classes": len(entry["classes"]), "seed": entry["seed"],
        "device": entry["environment"].get("device"), "created": entry["created"],
    }


def to_frame(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """All entries as a DataFrame (fixed column order), sorted by dataset, target, attack."""
    names = [c.name for c in entry_columns(entries)]
    df = pd.DataFrame([entry_row(e, names) for e in entries], columns=columns(entries))
    return df.sort_values(["dataset", "target", "attack", "entry_id"], kind="stable").reset_index(drop=True)


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write the table atomically."""
    atomic_write_text(path, df.to_csv(index=False, float_format="%.6g"))
    return path


