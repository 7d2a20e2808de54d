"""The on-disk layout of one run, owned by `RunFolder`:

    runs/<run-id>/config.json          the fully resolved run (written first)
    runs/<run-id>/classes/cNNNNN.*     per class: images + latents (.safetensors), metrics (.json)
    runs/<run-id>/<attack>/            the attack's own stages (e.g. LOKT's surrogates), for resume
    runs/<run-id>/prepare.json         queries and facts of the attack's one-time preparation
    runs/<run-id>/sessions.json        the processes that worked on the run and how long
    runs/<run-id>/stopped.json         written when a query budget stopped the run
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
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from mibench.attacks.base import ClassResult
from mibench.errors import MIBenchError
from mibench.ops.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from mibench.ops.imaging import to_uint8

ENTRY_FILE = "entry.json"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class RunFolder:
    """One run's folder and every file in it."""

    path: Path

    @property
    def name(self) -> str:
        """The run id."""
        return self.path.name

    @property
    def config_file(self) -> Path:
        """`config.json`: the fully resolved run."""
        return self.path / CONFIG_FILE

    @property
    def entry_file(self) -> Path:
        """`entry.json`: the leaderboard entry."""
        return self.path / ENTRY_FILE

    def attack_dir(self, attack: str) -> Path:
        """Where the attack keeps its own stages (LOKT's T-ACGAN and surrogates)."""
        return self.path / attack

    # --- config -------------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any] | None:
        """The saved configuration, or None when there is none (or it is unreadable)."""
        try:
            return json.loads(self.config_file.read_text())
        except (OSError, ValueError):
            return None

    def write_config(self, config: dict[str, Any]) -> None:
        """Write config.json (once everything the run needs has loaded)."""
        atomic_write_json(self.config_file, config)

    def holds_only_config(self) -> bool:
        """True when nothing but config.json (and empty folders) is here: no class, no trained stage."""
        files = [f for f in self.path.rglob("*") if f.is_file() and not f.name.endswith(".lock")]
        return all(f == self.config_file for f in files)

    def remove_if_unstarted(self) -> bool:
        """Delete the folder when it holds nothing but its config (a run that failed before its first
        class or stage leaves nothing to resume); True when removed."""
        if not self.path.is_dir() or not self.holds_only_config():
            return False
        shutil.rmtree(self.path)
        return True

    def check_config(self, config: dict[str, Any]) -> None:
        """Refuse to resume a folder made with another configuration."""
        if not self.config_file.is_file():
            raise MIBenchError("not a run folder (no config.json)", path=self.path,
                               fix="pass the folder `mibench run` made")
        if json.loads(self.config_file.read_text()) != json.loads(json.dumps(config)):
            raise MIBenchError("the run folder was made with a different configuration", path=self.config_file,
                               fix="resume with the same options, or start a new run")

    def complete_entry(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The entry of a finished run made with `config`, or None."""
        saved = self.read_config()
        try:
            entry = json.loads(self.entry_file.read_text())
        except (OSError, ValueError):
            return None
        return entry if saved == json.loads(json.dumps(config)) else None

    # --- classes ------------------------------------------------------------------------------
    def class_stem(self, c: int) -> Path:
        """Path stem of one class's result files."""
        return self.path / "classes" / f"c{c:05d}"

    def class_done(self, c: int) -> bool:
        """A class is done when both its tensors and its metrics are on disk."""
        stem = self.class_stem(c)
        return stem.with_suffix(".json").is_file() and stem.with_suffix(".safetensors").is_file()

    def save_class(self, result: ClassResult, metrics: dict[str, Any]) -> None:
        """Write one class's images (uint8), latents, scores and metrics; tensors first, then the JSON."""
        stem = self.class_stem(result.class_id)
        tensors = {"images": to_uint8(result.images).contiguous(), "latents": result.latents.float().contiguous(),
                   "scores": result.scores.float().contiguous()}
        atomic_write_bytes(stem.with_suffix(".safetensors"), save(tensors))
        atomic_write_json(stem.with_suffix(".json"), metrics)

    def load_class(self, c: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, metrics) of a finished class."""
        stem = self.class_stem(c)
        try:
            return load_file(str(stem.with_suffix(".safetensors"))), json.loads(stem.with_suffix(".json").read_text())
        except Exception as exc:  # a damaged class file is redone rather than trusted
            raise MIBenchError(f"class file is damaged: {exc}", path=stem.with_suffix(".safetensors"),
                               fix="delete it and resume the run to redo that class") from exc

    def class_metrics(self, c: int) -> dict[str, Any]:
        """The metrics JSON of a finished class."""
        return json.loads(self.class_stem(c).with_suffix(".json").read_text())

    # --- records ------------------------------------------------------------------------------
    def write_prepare(self, record: dict[str, Any]) -> None:
        """prepare.json: queries by phase and the attack's facts."""
        atomic_write_json(self.path / "prepare.json", record)

    def read_prepare(self) -> dict[str, Any]:
        """prepare.json, or {} when the attack never prepared in this folder."""
        p = self.path / "prepare.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    def write_stopped(self, record: dict[str, Any]) -> None:
        """stopped.json: how far a run stopped by its query budget got."""
        atomic_write_json(self.path / "stopped.json", record)

    def add_session(self, session: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The sessions that worked on the run (this one appended when given)."""
        p = self.path / "sessions.json"
        sessions = json.loads(p.read_text()) if p.is_file() else []
        if session is not None:
            sessions.append(session)
            atomic_write_json(p, sessions)
        return sessions

    def write_per_class_csv(self, per_class: list[dict[str, Any]], metric_columns: list[str]) -> None:
        """per_class.csv: class, its name (when known), n, the per-class metrics, score, queries,
        seconds, failed."""
        cols = ["class", *(["name"] if any("name" in m for m in per_class) else []), "n", *metric_columns,
                "score", "queries", "seconds", "failed"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for m in per_class:
            w.writerow(m)
        atomic_write_text(self.path / "per_class.csv", buf.getvalue())
