"""Attack accuracy against queries spent: `mibench sweep` runs one target × attack once per value of
one attack setting that scales its query use (e.g. BREP-MI's iterations, LOKT's surrogate data) and
prints acc@1 (± its interval) against the queries each run made. Every point is an ordinary run with
its own entry (the setting is in its config and run id), so `leaderboard build` puts the points on the
page's accuracy-vs-queries plot, and an interrupted sweep resumes from the runs already finished."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from mibench.errors import MIBenchError
from mibench.run.spec import RunSpec
from mibench.run.table import results_table, text_table


def parse_vary(text: str) -> tuple[str, list[Any]]:
    """'steps=10,20,40' → ('steps', [10, 20, 40]) (each value read as YAML)."""
    key, eq, values = text.partition("=")
    if not eq or not key.strip() or not values.strip():
        raise MIBenchError(f"cannot parse '{text}'", field="--vary", fix="use KEY=V1,V2,…, e.g. --vary steps=10,20,40")
    out = [yaml.safe_load(v) for v in values.split(",") if v.strip()]
    if len(out) < 2:
        raise MIBenchError(f"'{text}' gives {len(out)} value", field="--vary",
                           fix="a sweep needs at least two values, e.g. --vary steps=10,20")
    return key.strip(), out


def sweep_specs(spec: RunSpec, key: str, values: list[Any]) -> list[RunSpec]:
    """One run spec per value of `key` (an attack setting, dotted for an add-on's), the rest as `spec`."""
    return [dataclasses.replace(spec, overrides={**spec.overrides, key: v}) for v in values]


def run_sweep(spec: RunSpec, key: str, values: list[Any], *, out: Path, device: str = "auto",
              build: bool = True, progress: bool = True) -> list[dict[str, Any]]:
    """Run every point of the sweep (each resolved first, so a bad value fails before any run) and
    return their entries, in the order of `values`."""
    from mibench.run.spec import resolve
    from mibench.run.suite import run_single

    specs = sweep_specs(spec, key, values)
    for s in specs:
        resolve(s)
    return [run_single(s, out=out, device=device, build=build, progress=progress) for s in specs]


def sweep_table(entries: list[dict[str, Any]], key: str, values: list[Any]) -> str:
    """The results table of a sweep with the swept value and the queries per attacked identity."""
    rows, cols = results_table(entries)
    for row, value, e in zip(rows, values, entries):
        row[key] = value
        row["queries/id"] = round(e["queries"]["total"] / max(1, len(e["classes"])))
    cols = [key, *[c for c in cols if c not in ("target", "defense", "attack", "preset", "protocol", "nat_acc",
                                                "agree")], "queries/id"]
    head = f"{entries[0]['attack']['name']} on {entries[0]['target']['name']} ({len(entries[0]['classes'])} identities)"
    return head + "\n" + text_table(rows, cols)
