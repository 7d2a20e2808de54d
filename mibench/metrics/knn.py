"""KNN feature distance: how close each reconstruction comes to a private training image of its class.

For every reconstruction, the minimum *squared* L2 distance, in a feature space (the evaluation
model's penultimate layer for "knn_dist", FaceNet for "facenet_dist"), to the private training
images of the same class. Lower means the attack recovered something closer to real private data.

Distances are computed in float64 after centring both sets on the real class mean (distances are
shift invariant), which keeps the ‖a‖² + ‖b‖² − 2a·b expansion free of cancellation, and in chunks so
memory stays bounded by `chunk × chunk` entries.
"""

from __future__ import annotations

import torch

from mibench.errors import DataError
from mibench.metrics.base import ClassBatch, Column, Metric
from mibench.registry import METRICS


def pairwise_sq_dists(a: torch.Tensor, b: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """Squared L2 distances (P, Q) float64 between rows of `a` (P, D) and `b` (Q, D).

    `center` (D,) is subtracted from both first (pass a mean of the data to avoid cancellation when
    features have a large common offset); the result is clamped at 0.
    """
    a = a.double()
    b = b.double()
    if center is not None:
        c = center.double()
        a = a - c
        b = b - c
    a2 = (a * a).sum(dim=1, keepdim=True)  # (P, 1)
    b2 = (b * b).sum(dim=1).unsqueeze(0)  # (1, Q)
    return (a2 + b2 - 2.0 * (a @ b.T)).clamp_min_(0.0)


def min_sq_dist(queries: torch.Tensor, refs: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """For each row of `queries` (P, D), the minimum squared L2 distance to any row of `refs` (Q, D) → (P,) float64."""
    if refs.shape[0] == 0:
        raise ValueError("min_sq_dist needs at least one reference row")
    center = refs.double().mean(dim=0)
    out = torch.full((queries.shape[0],), float("inf"), dtype=torch.float64, device=queries.device)
    for i in range(0, queries.shape[0], chunk):
        q = queries[i:i + chunk]
        best = out[i:i + chunk]
        for j in range(0, refs.shape[0], chunk):
            d = pairwise_sq_dists(q, refs[j:j + chunk].to(q.device), center.to(q.device))
            best = torch.minimum(best, d.min(dim=1).values)
        out[i:i + chunk] = best
    return out


def _check_feats(feats: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    """Validate a (N, D) feature matrix and its (N,) integer labels."""
    if feats.ndim != 2:
        raise ValueError(f"{what} features must be (N, D), got {tuple(feats.shape)}")
    if labels.ndim != 1 or labels.shape[0] != feats.shape[0]:
        raise ValueError(f"{what} labels must be (N,) with N={feats.shape[0]}, got {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise ValueError(f"{what} labels must be integer class indices")


def knn_distance(fake_feats: torch.Tensor, fake_labels: torch.Tensor, real_feats: torch.Tensor,
                 real_labels: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Per reconstruction, the min squared L2 distance to same-class private features → (N,) float64.

    fake_feats (N, D) with fake_labels (N,) (the attacked class of each reconstruction);
    real_feats (M, D) with real_labels (M,) (the private training images). Raises DataError when an
    attacked class has no private images (the distance would be undefined). Average the result for
    the reported number.
    """
    _check_feats(fake_feats, fake_labels, "reconstruction")
    _check_feats(real_feats, real_labels, "private")
    if fake_feats.shape[1] != real_feats.shape[1]:
        raise ValueError(f"feature dimensions differ: reconstructions {fake_feats.shape[1]}, "
                         f"private {real_feats.shape[1]}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    out = torch.empty(fake_feats.shape[0], dtype=torch.float64, device=fake_feats.device)
    real_labels = real_labels.to(real_feats.device)
    for c in torch.unique(fake_labels).tolist():
        fake_idx = torch.nonzero(fake_labels == c).flatten()
        real_c = real_feats[real_labels == c]
        if real_c.shape[0] == 0:
            raise DataError(f"KNN distance: attacked class {c} has no private training images "
                            f"({real_feats.shape[0]} private features given)",
                            fix="pass the private training features of every attacked class")
        out[fake_idx.to(out.device)] = min_sq_dist(fake_feats[fake_idx.to(fake_feats.device)],
                                                   real_c.to(fake_feats.device), chunk)
    return out


class KNNDistance(Metric):
    """Mean KNN distance of a class's reconstructions in evaluation-model features."""

    name = "knn_dist"
    description = ("KNN distance: min squared L2 distance in evaluation-model penultimate features from each "
                   "reconstruction to the private training images of its class, averaged")
    columns = (Column("knn_dist", "lower", "KNN distance (evaluation-model features)", label="knn", page_key="knn",
                      page_label="KNN dist", in_table=True, required=True, unit="squared L2"),)
    order = 20

    def score_class(self, ctx, batch: ClassBatch) -> dict[str, float]:
        """knn_dist of one class."""
        return {"knn_dist": float(knn_distance(batch.feats, batch.labels, ctx.real_feats, ctx.real_labels).mean())}


METRICS.register("knn_dist", description=KNNDistance.description)(KNNDistance())
