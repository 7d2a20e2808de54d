"""Precision, recall, density and coverage (Naeem et al., ICML 2020) of reconstructions vs private data.

Each point's k-NN radius is the distance to its k-th nearest neighbour within its own set (itself
excluded). With real set X (M) and fake set Y (N):

- precision = share of fakes inside at least one real ball B(x, r_k(x));
- recall    = share of reals inside at least one fake ball B(y, r_k(y));
- density   = (1 / kN) · Σ_y #{x : y ∈ B(x, r_k(x))} (can exceed 1);
- coverage  = share of reals whose ball contains at least one fake.

"Inside" is the strict `d < r`, as in the authors' reference implementation. All comparisons are on
squared distances (monotone, so identical results) in float64, computed in chunks.

The MI protocol computes these per attacked class (reconstructions of class c vs private images of
class c) and averages over classes: `prdc_per_class`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mibench.metrics.base import Column, Metric, MetricUnavailable, RunBatch
from mibench.metrics.knn import _check_feats, pairwise_sq_dists
from mibench.registry import METRICS

PRDC_KEYS = ("precision", "recall", "density", "coverage")


def knn_radii_sq(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Squared distance from each row of `x` (M, D) to its k-th nearest other row → (M,) float64."""
    m = x.shape[0]
    if m <= k:
        raise ValueError(f"need more than k={k} points for k-NN radii, got {m}")
    center = x.double().mean(dim=0)
    out = torch.empty(m, dtype=torch.float64, device=x.device)
    for i in range(0, m, chunk):
        d = pairwise_sq_dists(x[i:i + chunk], x, center)  # (c, M)
        rows = torch.arange(d.shape[0], device=d.device)
        d[rows, rows + i] = float("inf")  # a point is not its own neighbour
        out[i:i + chunk] = d.kthvalue(k, dim=1).values
    return out


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 3, chunk: int = 2048) -> dict[str, float]:
    """Precision / recall / density / coverage of `fake` (N, D) against `real` (M, D) with k-NN balls.

    Raises MetricUnavailable when either set has ≤ k points (a k-NN radius needs k other points).
    """
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake must be (M, D) and (N, D) with the same D, got "
                         f"{tuple(real.shape)} and {tuple(fake.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    m, n = real.shape[0], fake.shape[0]
    if m <= k or n <= k:
        raise MetricUnavailable(f"PRDC with k={k} needs more than {k} real and {k} fake samples, "
                                f"got {m} real and {n} fake",
                                fix="use more samples per class or a smaller k")
    fake = fake.to(real.device)
    real_r = knn_radii_sq(real, k, chunk)  # (M,)
    fake_r = knn_radii_sq(fake, k, chunk)  # (N,)
    center = real.double().mean(dim=0)
    fake_hits = torch.zeros(n, dtype=torch.long, device=real.device)  # reals whose ball holds fake j
    real_recalled = torch.zeros(m, dtype=torch.bool, device=real.device)
    real_covered = torch.zeros(m, dtype=torch.bool, device=real.device)
    for i in range(0, m, chunk):
        d = pairwise_sq_dists(real[i:i + chunk], fake, center)  # (c, N)
        r = real_r[i:i + chunk].unsqueeze(1)  # (c, 1)
        inside_real_ball = d < r
        fake_hits += inside_real_ball.sum(dim=0)
        real_covered[i:i + chunk] = inside_real_ball.any(dim=1)
        real_recalled[i:i + chunk] = (d < fake_r.unsqueeze(0)).any(dim=1)
    return {
        "precision": float((fake_hits > 0).double().mean()),
        "recall": float(real_recalled.double().mean()),
        "density": float(fake_hits.double().mean() / k),
        "coverage": float(real_covered.double().mean()),
    }


def prdc_per_class(real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor, fake_labels: torch.Tensor,
                   classes: Sequence[int] | None = None, k: int = 3, *, skip_small: bool = False,
                   chunk: int = 2048) -> dict[str, Any]:
    """PRDC per attacked class (fakes of class c vs reals of class c), averaged over `classes`.

    real (M, D) / real_labels (M,): private images' features; fake (N, D) / fake_labels (N,):
    reconstructions' features and attacked classes. `classes` defaults to the classes present in
    `fake_labels`; samples of any other class are ignored. Every requested class is subset exactly
    by its label, class 0 included. (The published PPA code loops over the wrong number of classes
    and never subsets class 0; this function does neither.)

    A class with ≤ k real or fake samples has no k-NN radius: by default this raises
    MetricUnavailable naming the class; with `skip_small=True` such classes are left out of the
    average and listed under 'skipped_classes' (MetricUnavailable if none is left).

    Returns `{'precision', 'recall', 'density', 'coverage': float (class means), 'num_classes': int,
    'per_class': {c: {...}}, 'skipped_classes': [c, ...]}`.
    """
    _check_feats(real, real_labels, "private")
    _check_feats(fake, fake_labels, "reconstruction")
    if classes is None:
        classes = torch.unique(fake_labels).tolist()
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("prdc_per_class: no classes to evaluate")
    if len(set(classes)) != len(classes):
        raise ValueError(f"prdc_per_class: duplicate classes in {classes}")
    real_labels = real_labels.to(real.device)
    fake_labels = fake_labels.to(fake.device)
    per_class: dict[int, dict[str, float]] = {}
    skipped: list[int] = []
    for c in classes:
        real_c, fake_c = real[real_labels == c], fake[fake_labels == c]
        if real_c.shape[0] <= k or fake_c.shape[0] <= k:
            if skip_small:
                skipped.append(c)
                continue
            raise MetricUnavailable(f"PRDC with k={k} needs more than {k} samples per class; class {c} has "
                                    f"{real_c.shape[0]} private and {fake_c.shape[0]} reconstructed",
                                    fix="use more samples per class, a smaller k, or skip_small=True")
        per_class[c] = prdc(real_c, fake_c, k=k, chunk=chunk)
    if not per_class:
        raise MetricUnavailable(f"PRDC with k={k}: every class has ≤ {k} samples (classes {skipped})",
                                fix="use more samples per class or a smaller k")
    result: dict[str, Any] = {
        key: sum(v[key] for v in per_class.values()) / len(per_class) for key in PRDC_KEYS}
    result.update(num_classes=len(per_class), per_class=per_class, skipped_classes=skipped)
    return result


class PRDC(Metric):
    """Precision / recall / density / coverage (k = 3) per attacked class, averaged, in pytorch-fid
    Inception features — the published metric (needs local Inception weights)."""

    name = "prdc"
    description = ("precision / recall / density / coverage (k=3) of reconstructions vs private images of the "
                   "same class in Inception-v3 pool features, averaged over attacked classes (needs local "
                   "Inception weights)")
    columns = tuple(Column(k, "higher", f"{k} (k = 3, Inception features)", unit="fraction") for k in PRDC_KEYS)
    scope = "run"
    interval_resamples = 0  # each resample would re-run Inception on every image
    interval_note = "not bootstrapped: recomputing Inception features for each class resample is too costly"
    requires = "inception"
    order = 60

    def setup(self, ctx) -> None:
        """Load Inception from local weights (MetricUnavailable says what to set when absent)."""
        from mibench.metrics.fid import InceptionFeatures

        if "inception" not in ctx.networks:
            ctx.networks["inception"] = InceptionFeatures().to(ctx.device)

    def score_run(self, ctx, batch: RunBatch) -> dict[str, float]:
        """The four values of the run."""
        from mibench.metrics.fid import inception_features

        real, recon = inception_features(ctx, batch)
        pr = prdc_per_class(real, batch.real_labels, recon, batch.labels, batch.classes, k=3)
        return {k: pr[k] for k in PRDC_KEYS}


class EvalPRDC(Metric):
    """The same four values in evaluation-model features, under their own names (`*_eval`): not
    comparable with published (Inception) PRDC."""

    name = "prdc_eval"
    description = ("precision / recall / density / coverage (k=3) in evaluation-model features (`*_eval`; not "
                   "comparable with the published Inception-feature PRDC)")
    columns = tuple(Column(f"{k}_eval", "higher", f"{k} (k = 3, evaluation-model features)", unit="fraction")
                    for k in PRDC_KEYS)
    scope = "run"
    order = 65

    def score_run(self, ctx, batch: RunBatch) -> dict[str, float]:
        """The four values of the run."""
        pr = prdc_per_class(batch.real_feats, batch.real_labels, batch.feats, batch.labels, batch.classes, k=3)
        return {f"{k}_eval": pr[k] for k in PRDC_KEYS}


METRICS.register("prdc", description=PRDC.description)(PRDC())
METRICS.register("prdc_eval", description=EvalPRDC.description)(EvalPRDC())
