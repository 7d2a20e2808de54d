"""Schema-valid leaderboard entries for tests (no run needed)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from mibench.ops.imaging import save_png


def make_entry(entry_id: str = "t__ppa__p__seed0__abc", *, target: str = "synthfaces32-resnet", defense: str = "none",
               attack: str = "ppa", acc1: float = 0.5, acc5: float = 0.8, natural: float = 0.9,
               created: str = "2026-01-01T00:00:00Z", **extra: Any) -> dict[str, Any]:
    """An entry with the given headline numbers."""
    entry = {
        "schema_version": 1, "entry_id": entry_id, "created": created, "dataset": "synthfaces32",
        "target": {"name": target, "architecture": "compact_resnet", "num_classes": 100, "input_size": 32,
                   "natural_accuracy": natural, "defense": {"card": defense, "kind": defense, "params": {}}},
        "attack": {"name": attack, "access": "label-only" if attack == "lokt" else "white-box", "preset": "synthfaces",
                   "config": {"steps": 40}},
        "prior": {"name": "synthfaces32-stylegan2", "kind": "stylegan2", "resolution": 32},
        "evaluator": {"name": "synthfaces32-evaluator", "architecture": "compact_resnet", "accuracy": 0.96},
        "classes": list(range(10)), "seed": 0,
        "metrics": {"acc@1": acc1, "acc@5": acc5, "knn_dist": 40.0, "facenet_dist": None, "fid": None,
                    "fid_eval": 55.0, "precision": 0.5, "recall": 0.4, "density": 0.6, "coverage": 0.5},
        "unavailable": {"fid": "Inception weights not found", "facenet_dist": "FaceNet weights not found"},
        "queries": {"total": 3000, "by_phase": {"attack": 3000}}, "wall_time_s": 12.5,
        "per_class": [{"class": c, "acc@1": acc1} for c in range(10)], "failed_classes": [],
        "artifacts": {"grid": "grid.png"},
        "environment": {"mibench": "0.1.0", "torch": "2.14.1", "device": "cpu"},
    }
    entry = copy.deepcopy(entry)
    entry.update(extra)
    return entry


def write_entries(folder: Path, entries: list[dict[str, Any]], grids: bool = True) -> list[Path]:
    """Write entries (and small grid PNGs) into a leaderboard entries folder."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, e in enumerate(entries):
        p = folder / f"{e['entry_id']}.json"
        p.write_text(json.dumps(e))
        if grids:
            img = torch.zeros(3, 16, 32)
            img[i % 3] = 1.0
            save_png(img, p.with_suffix(".png"))
        paths.append(p)
    return paths
