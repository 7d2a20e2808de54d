"""Scoring an attack's reconstructions: runs every registered metric kind (`mibench.metrics.base.
Metric`) against the evaluation model and the private training images of the attacked classes.

Per class (computed as soon as a class finishes, so interrupted runs keep them): the metric kinds
of scope 'class' (attack accuracy, KNN distance, FaceNet distance). Over the whole run: those of
scope 'run' (fid_eval, FID with local Inception weights, PRDC). A metric that cannot be computed
is reported as unavailable with its reason — never as a made-up number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mibench.data.base import ImageDataset
from mibench.metrics.base import (
    ClassBatch,
    Metric,
    MetricUnavailable,
    RunBatch,
    extract_features,
    metric_kinds,
)
from mibench.ops.stats import Interval, bootstrap_statistic

log = logging.getLogger(__name__)


@dataclass
class ReconstructionScorer:
    """Evaluates reconstructions against the private training data of the attacked classes."""

    evaluator: torch.nn.Module  # a mibench Classifier (logits + features), eval mode
    private: ImageDataset  # the target's private training split
    device: torch.device
    batch_size: int = 128
    kinds: list[Metric] = field(default_factory=list)  # the metric kinds this run computes
    unavailable: dict[str, str] = field(default_factory=dict)  # column → reason
    networks: dict[str, torch.nn.Module] = field(default_factory=dict)  # feature networks metrics loaded
    cache: dict[str, Any] = field(default_factory=dict)  # metrics' per-run caches
    private_test: Callable[[], ImageDataset] | None = None  # for metrics that test on held-out images
    real_feats: torch.Tensor | None = None
    real_labels: torch.Tensor | None = None
    real_images: torch.Tensor | None = None

    @classmethod
    def create(cls, evaluator: torch.nn.Module, private: ImageDataset, device: torch.device,
               batch_size: int = 128, extra: Sequence[str] = (),
               private_test: Callable[[], ImageDataset] | None = None,
               networks: dict[str, torch.nn.Module] | None = None) -> ReconstructionScorer:
        """A scorer for the default metric kinds plus `extra` ones; each kind's `setup` runs now (a
        kind that cannot run here is recorded as unavailable, with its reason, for each column).
        `networks` are models the run loaded for metrics (e.g. 'evaluator2', a second evaluation model)."""
        scorer = cls(evaluator.eval(), private, device, batch_size, private_test=private_test,
                     networks=dict(networks or {}))
        for kind in metric_kinds(extra):
            try:
                kind.setup(scorer)
            except MetricUnavailable as exc:
                for col in kind.columns:
                    scorer.unavailable[col.name] = exc.reason
                log.info("%s unavailable: %s", kind.name, exc.reason)
                continue
            scorer.kinds.append(kind)
        return scorer

    # --- private data (computed once) --------------------------------------------------------
    def ensure_real(self) -> None:
        """Load the private training images and their evaluation-model features (once)."""
        if self.real_feats is None:
            images, labels = self.private.load_tensors()
            self.real_images, self.real_labels = images, labels
            self.real_feats = extract_features(self.evaluator.features, images, self.batch_size, self.device)

    def real_class_images(self, class_id: int) -> torch.Tensor:
        """The private training images (uint8) of one class (for reconstruction grids)."""
        self.ensure_real()
        return self.real_images[self.real_labels == class_id]

    def _eval_forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, logits = [], []
        with torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                x = images[i:i + self.batch_size].to(self.device).float() / 255.0
                f, lg = self.evaluator.forward_with_features(x)
                feats.append(f.float().cpu())
                logits.append(lg.float().cpu())
        return torch.cat(feats), torch.cat(logits)

    # --- per class ---------------------------------------------------------------------------
    def score_class(self, class_id: int, images: torch.Tensor) -> dict[str, Any]:
        """Per-class metrics of uint8 reconstructions (n, 3, H, W) of `class_id`."""
        self.ensure_real()
        n = images.shape[0]
        labels = torch.full((n,), class_id, dtype=torch.long)
        feats, logits = self._eval_forward(images)
        batch = ClassBatch(class_id, images, labels, feats, logits)
        out: dict[str, Any] = {"class": class_id, "n": n}
        for kind in self.kinds:
            if kind.scope == "class":
                out.update(kind.score_class(self, batch))
        out["eval_pred"] = logits.argmax(1).tolist()
        return out

    # --- whole run ---------------------------------------------------------------------------
    def run_batch(self, classes: list[int], images: torch.Tensor, labels: torch.Tensor) -> RunBatch:
        """All reconstructions (N, 3, H, W) uint8 with their classes (N,), their evaluation-model
        features, and the private images of those classes."""
        self.ensure_real()
        mask = torch.isin(self.real_labels, torch.as_tensor(classes))
        fake_feats, _ = self._eval_forward(images)
        return RunBatch(classes, images, labels, fake_feats, self.real_images[mask], self.real_labels[mask],
                        self.real_feats[mask])

    def score_run(self, classes: list[int], images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Distribution metrics of all reconstructions (N, 3, H, W) uint8 with their classes (N,)."""
        return self.score_batch(self.run_batch(classes, images, labels))

    def score_batch(self, batch: RunBatch) -> dict[str, Any]:
        """The run-scope metric kinds on one RunBatch: {'metrics': …, 'unavailable': column → reason}."""
        out: dict[str, Any] = {}
        unavailable = dict(self.unavailable)
        for kind in self.kinds:
            if kind.scope != "run":
                continue
            try:
                out.update(kind.score_run(self, batch))
            except (ValueError, MetricUnavailable) as exc:
                for col in kind.columns:
                    unavailable[col.name] = str(exc)
        return {"metrics": out, "unavailable": unavailable}

    def run_intervals(self, batch: RunBatch) -> tuple[dict[str, Interval], dict[str, str]]:
        """Bootstrap intervals of the run-scope metrics over the attacked identities: each resample
        draws classes with replacement (a class drawn twice counts as two classes) and recomputes
        the metric; returns (column → Interval, column → why it has none)."""
        # Row indices of each class's reconstructions and private images, found once per run.
        recon_rows = {c: (batch.labels == c).nonzero().flatten() for c in batch.classes}
        real_rows = {c: (batch.real_labels == c).nonzero().flatten() for c in batch.classes}

        def rows_and_labels(rows: dict[int, torch.Tensor], cs: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
            """The rows of classes `cs` in order, labelled by slot (a class drawn twice is two classes)."""
            return (torch.cat([rows[c] for c in cs]),
                    torch.cat([torch.full((len(rows[c]),), j) for j, c in enumerate(cs)]))

        def resampled(slots: np.ndarray) -> RunBatch:
            cs = [batch.classes[i] for i in slots]
            ri, rl = rows_and_labels(recon_rows, cs)
            pi, pl = rows_and_labels(real_rows, cs)
            return RunBatch(list(range(len(cs))), batch.images[ri], rl, batch.feats[ri],
                            batch.real_images[pi], pl, batch.real_feats[pi])

        intervals: dict[str, Interval] = {}
        notes: dict[str, str] = {}
        for kind in self.kinds:
            if kind.scope != "run":
                continue
            if kind.interval_resamples <= 0:
                notes.update({col.name: kind.interval_note or "no interval for this metric" for col in kind.columns})
                continue

            def stat(slots: np.ndarray, kind=kind) -> dict[str, float]:
                try:
                    return kind.score_run(self, resampled(slots))
                except (ValueError, MetricUnavailable):
                    return {}

            intervals.update(bootstrap_statistic(len(batch.classes), stat, resamples=kind.interval_resamples))
        return intervals, notes
