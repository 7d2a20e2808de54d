"""Scoring an attack's reconstructions: the evaluation model, the private training images and the
optional pretrained feature networks (FaceNet, Inception) applied to one run's images.

Per class (computed as soon as a class finishes, so interrupted runs keep them): attack accuracy
top-1/top-5 with the evaluation model, KNN distance in evaluation-model features and FaceNet
distance. Over the whole run: `fid_eval` (Fréchet distance in evaluation-model features), FID
(Inception, when its local weights exist) and precision/recall/density/coverage (k = 3, per class,
averaged; evaluation-model features). A metric that cannot be computed is reported as unavailable
with its reason — never as a made-up number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from mibench.data.base import ImageDataset
from mibench.metrics.accuracy import topk_correct
from mibench.metrics.base import MetricUnavailable, extract_features
from mibench.metrics.fid import fid_from_features
from mibench.metrics.knn import knn_distance
from mibench.metrics.prdc import prdc_per_class

log = logging.getLogger(__name__)

PER_CLASS_METRICS = ("acc@1", "acc@5", "knn_dist", "facenet_dist")
RUN_METRICS = ("fid", "fid_eval", "precision", "recall", "density", "coverage")


@dataclass
class ReconstructionScorer:
    """Evaluates reconstructions against the private training data of the attacked classes."""

    evaluator: torch.nn.Module  # a mibench Classifier (logits + features), eval mode
    private: ImageDataset  # the target's private training split
    device: torch.device
    batch_size: int = 128
    facenet: torch.nn.Module | None = None
    inception: torch.nn.Module | None = None
    unavailable: dict[str, str] = field(default_factory=dict)  # metric → reason
    _real_feats: torch.Tensor | None = None
    _real_labels: torch.Tensor | None = None
    _real_images: torch.Tensor | None = None
    _facenet_real: dict[int, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def create(cls, evaluator: torch.nn.Module, private: ImageDataset, device: torch.device,
               batch_size: int = 128) -> ReconstructionScorer:
        """A scorer with the optional FaceNet / Inception networks loaded when their weights exist."""
        from mibench.metrics.facenet import FaceNetFeatures
        from mibench.metrics.fid import InceptionFeatures

        scorer = cls(evaluator.eval(), private, device, batch_size)
        for name, ctor, attr in (("facenet_dist", FaceNetFeatures, "facenet"), ("fid", InceptionFeatures, "inception")):
            try:
                setattr(scorer, attr, ctor().to(device))
            except MetricUnavailable as exc:
                scorer.unavailable[name] = exc.reason
                log.info("%s unavailable: %s", name, exc.reason)
        return scorer

    # --- private data (computed once) --------------------------------------------------------
    def _ensure_real(self) -> None:
        if self._real_feats is None:
            images, labels = self.private.load_tensors()
            self._real_images, self._real_labels = images, labels
            self._real_feats = extract_features(self.evaluator.features, images, self.batch_size, self.device)

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
        self._ensure_real()
        n = images.shape[0]
        labels = torch.full((n,), class_id, dtype=torch.long)
        feats, logits = self._eval_forward(images)
        correct = topk_correct(logits, labels, ks=(1, 5))
        out: dict[str, Any] = {
            "class": class_id, "n": n,
            "acc@1": float(correct[1].double().mean()), "acc@5": float(correct[5].double().mean()),
            "knn_dist": float(knn_distance(feats, labels, self._real_feats, self._real_labels).mean()),
            "eval_pred": logits.argmax(1).tolist(),
        }
        if self.facenet is not None:
            real_idx = torch.nonzero(self._real_labels == class_id).flatten()
            if class_id not in self._facenet_real:
                self._facenet_real[class_id] = extract_features(self.facenet, self._real_images[real_idx],
                                                                self.batch_size, self.device)
            fake = extract_features(self.facenet, images, self.batch_size, self.device)
            real_lbl = torch.full((len(real_idx),), class_id, dtype=torch.long)
            out["facenet_dist"] = float(knn_distance(fake, labels, self._facenet_real[class_id], real_lbl).mean())
        return out

    # --- whole run ---------------------------------------------------------------------------
    def score_run(self, classes: list[int], images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Distribution metrics of all reconstructions (N, 3, H, W) uint8 with their classes (N,)."""
        self._ensure_real()
        out: dict[str, Any] = {}
        unavailable = dict(self.unavailable)
        mask = torch.isin(self._real_labels, torch.as_tensor(classes))
        fake_feats, _ = self._eval_forward(images)
        real_feats = self._real_feats[mask]
        try:
            out["fid_eval"] = fid_from_features(real_feats, fake_feats)
        except (ValueError, MetricUnavailable) as exc:
            unavailable["fid_eval"] = str(exc)
        try:
            pr = prdc_per_class(real_feats, self._real_labels[mask], fake_feats, labels, classes, k=3)
            out.update({k: pr[k] for k in ("precision", "recall", "density", "coverage")})
        except MetricUnavailable as exc:
            for k in ("precision", "recall", "density", "coverage"):
                unavailable[k] = exc.reason
        if self.inception is not None:
            fake_i = extract_features(self.inception, images, 16, self.device)
            real_i = extract_features(self.inception, self._real_images[mask], 16, self.device)
            try:
                out["fid"] = fid_from_features(real_i, fake_i)
            except ValueError as exc:
                unavailable["fid"] = str(exc)
        return {"metrics": out, "unavailable": unavailable}
