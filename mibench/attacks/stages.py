"""Where an attack keeps the stages it trains itself (a GAN, surrogates, labels): `StageStore`.

A stage lives in the run's attack folder as an artifact of the artifact cache, keyed by the
stage's settings, everything upstream and the code of the attack's import closure (a change to,
e.g., a training loop retrains it); a stage saved for other settings or code is not found and is
recomputed; a damaged file is one clear error naming it. A stage shipped for this target
(`AttackContext.shipped_stages`, keyed by the same settings but not the code) is used first, so
the shipped embedded targets are attacked with the same stages on every machine — their training
is the chaotic part that another CPU's arithmetic changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from mibench.ops.cache import Artifact, ArtifactCache, shipped_enabled
from mibench.ops.fileio import atomic_write_bytes


class StageStore:
    """An attack's persisted stages: `keys[stage]` says what each stage depends on."""

    def __init__(self, area: str, code: Sequence[str], run_dir: str | Path | None, keys: dict[str, Any],
                 shipped: ArtifactCache | None = None):
        self.cache = None if run_dir is None else ArtifactCache(area, root=Path(run_dir))
        self.code = tuple(code)
        self.keys = keys
        self.shipped = shipped if shipped_enabled() else None
        self.used_shipped: set[str] = set()

    def artifact(self, name: str, stage: str) -> Artifact | None:
        """The shipped artifact of `name` when one exists for these settings, else the run's own
        (None without a run folder)."""
        if self.shipped is not None:
            theirs = self.shipped.shipped_artifact(name, self.keys[stage])
            if theirs.exists():
                self.used_shipped.add(stage)
                return theirs
        return None if self.cache is None else self.cache.artifact(name, self.keys[stage], self.code)

    def load_tensors(self, name: str, stage: str) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
        """(tensors, meta) of a stored stage file, or None when it is not there."""
        from safetensors.torch import load_file

        art = self.artifact(name, stage)
        if art is None or not art.exists():
            return None
        meta = art.meta()
        return load_file(str(art.file(".safetensors"))), meta

    def write_tensors(self, name: str, stage: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Store tensors (one safetensors file) and meta for a stage; a no-op without a run folder."""
        art = self.artifact(name, stage)
        if art is None:
            return
        from safetensors.torch import save

        atomic_write_bytes(art.file(".safetensors"), save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))
        art.commit([".safetensors"], meta)

    def write_classifier(self, name: str, stage: str, model, summary: dict[str, Any],
                         sidecar_key: str = "stage_summary") -> None:
        """Store a trained classifier (safetensors + sidecar, the summary under `sidecar_key` there
        too) with its training summary; a no-op without a run folder."""
        art = self.artifact(name, stage)
        if art is None:
            return
        from mibench.classifiers.checkpoint import save_classifier

        save_classifier(model, art.stem, meta={sidecar_key: summary})
        art.commit([".safetensors", ".json"], {"summary": summary})

    def load_classifier(self, name: str, stage: str, architecture: str, device) -> tuple[Any, dict[str, Any]] | None:
        """(classifier in eval mode, its training summary) of a stored stage, or None."""
        art = self.artifact(name, stage)
        if art is None or not art.exists():
            return None
        from mibench.classifiers.checkpoint import load_classifier

        meta = art.meta()
        model, _ = load_classifier(art.stem, expected_arch=architecture, device=device)
        return model, meta["summary"]
