"""Leaderboard entries: one JSON file per result, validated against the versioned JSON Schema
(`mibench/run/entry.schema.json`, owned by `mibench.run.entry`), collected from
`leaderboard/entries/` and from run folders."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mibench.ops.fileio import atomic_write_bytes, atomic_write_json
from mibench.run.entry import load_entry, schema, validate_entry  # noqa: F401  (the schema lives with the entry)

ENTRIES_DIR = Path("leaderboard") / "entries"


def entry_files(folder: Path) -> list[Path]:
    """Entry JSON files in a leaderboard entries folder."""
    return sorted(p for p in folder.glob("*.json")) if folder.is_dir() else []


def run_entry_files(runs: Path) -> list[Path]:
    """`entry.json` of every run folder under `runs`."""
    return sorted(runs.glob("*/entry.json")) if runs.is_dir() else []


def grid_for(entry_path: Path) -> Path | None:
    """The reconstruction grid that belongs to an entry file (run folder or entries folder)."""
    candidates = [entry_path.with_suffix(".png")]
    if entry_path.name == "entry.json":
        candidates.insert(0, entry_path.parent / "grid.png")
    return next((c for c in candidates if c.is_file()), None)


def import_runs(runs: Path, entries_dir: Path = ENTRIES_DIR) -> list[Path]:
    """Copy validated entries (and their grids) from run folders into the entries folder."""
    written = []
    for src in run_entry_files(runs):
        entry = load_entry(src)
        dst = entries_dir / f"{entry['entry_id']}.json"
        atomic_write_json(dst, entry)
        grid = grid_for(src)
        if grid is not None:
            atomic_write_bytes(dst.with_suffix(".png"), grid.read_bytes())
        written.append(dst)
    return written


def collect(entries_dir: Path = ENTRIES_DIR) -> list[tuple[dict[str, Any], Path]]:
    """All valid entries with their files; for one entry_id the newest (`created`) wins."""
    best: dict[str, tuple[dict[str, Any], Path]] = {}
    for path in entry_files(entries_dir):
        entry = load_entry(path)
        key = entry["entry_id"]
        if key not in best or entry["created"] > best[key][0]["created"]:
            best[key] = (entry, path)
    return [best[k] for k in sorted(best)]


def copy_grid(entry_path: Path, dst: Path) -> bool:
    """Copy an entry's grid PNG to `dst`; False when it has none."""
    grid = grid_for(entry_path)
    if grid is None:
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(grid, dst)
    return True
