"""Fréchet Inception Distance: the Fréchet distance between Gaussians fitted to two feature sets.

FID(a, b) = ‖μa − μb‖² + tr(Σa) + tr(Σb) − 2·tr((Σa Σb)^½), with the matrix square root from
scipy.linalg.sqrtm (as in the reference implementation, so values are on the standard scale).

"fid" uses pytorch-fid's Inception-v3 pool features (`InceptionFeatures`, local weights only);
"fid_eval" applies the same formula to evaluation-model features (useful where Inception weights
are unavailable, e.g. the embedded synthfaces benchmark; not comparable with published FIDs).
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import scipy.linalg
import torch
from torch import nn

from mibench.errors import CheckpointError
from mibench.metrics.base import (
    Column,
    Metric,
    MetricUnavailable,
    RunBatch,
    check_unit_range,
    extract_features,
    load_state_dict_file,
    resolve_weights_path,
    summarise_load_error,
    torch_hub_checkpoints_dir,
)
from mibench.ops.fileio import verify_sha256
from mibench.registry import METRICS

INCEPTION_ENV = "MIBENCH_INCEPTION_WEIGHTS"
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
_BUILD_LOCK = threading.Lock()  # the loader patch below is process-global while it is active


def _as_float64(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of a tensor or array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def feature_stats(feats: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of `feats` (N, D), in float64 numpy."""
    f = _as_float64(feats)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {f.shape}")
    if f.shape[0] < 2:
        raise MetricUnavailable(f"FID needs at least 2 samples per set, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """scipy.linalg.sqrtm without its singular-matrix warnings (the caller checks the result)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scipy.linalg.sqrtm(a)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6, imag_tol: float = 1e-3) -> float:
    """Fréchet distance between N(mu1 (D,), sigma1 (D, D)) and N(mu2, sigma2).

    Numerical fixes of the reference implementation: when the product of the covariances is singular
    (its square root is not finite), `eps`·I is added to both covariances; a complex square root
    from round-off is reduced to its real part, but an imaginary diagonal component above
    `imag_tol` raises ValueError (the covariances are not valid).
    """
    mu1, mu2 = np.atleast_1d(_as_float64(mu1)), np.atleast_1d(_as_float64(mu2))
    sigma1, sigma2 = np.atleast_2d(_as_float64(sigma1)), np.atleast_2d(_as_float64(sigma2))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {sigma1.shape}, "
                         f"sigma2 {sigma2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        max_imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if max_imag > imag_tol:
            raise ValueError(f"matrix square root has an imaginary component of {max_imag:.3g} "
                             "(the covariance matrices are not valid)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """FID between feature sets `a` (N, D) and `b` (M, D)."""
    mu1, s1 = feature_stats(a)
    mu2, s2 = feature_stats(b)
    return frechet_distance(mu1, s1, mu2, s2)


class InceptionFeatures(nn.Module):
    """pytorch-fid's FID Inception-v3: images (N, 3, H, W) float in [0, 1] → (N, 2048) pool features.

    Weights come only from a local file: `weights_path`, else `$MIBENCH_INCEPTION_WEIGHTS`, else
    torch.hub's cache (`$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth`, where
    pytorch-fid keeps a previous download). Without one, MetricUnavailable says what to set; a file
    that does not fit the network raises CheckpointError. Nothing is ever downloaded.

    Inputs are resized to 299 px (bilinear) and mapped [0, 1] → [−1, 1] by the network itself, so
    callers pass [0, 1] images exactly once. (The published PPA code normalised the images before
    this network normalised them again, so its FIDs are off the standard scale.)
    """

    dim = 2048

    def __init__(self, weights_path: str | Path | None = None, *, sha256: str | None = None):
        super().__init__()
        what = "Inception (pytorch-fid) weights"
        path = resolve_weights_path(weights_path, INCEPTION_ENV, what=what, standard_name=INCEPTION_FILE,
                                    fallbacks=[torch_hub_checkpoints_dir() / INCEPTION_FILE])
        try:
            from pytorch_fid import inception as fid_inception
        except ImportError as exc:
            raise MetricUnavailable("pytorch-fid is not installed", fix="pip install pytorch-fid") from exc
        verify_sha256(path, sha256, what=what)
        state = load_state_dict_file(path, what=what)
        self.weights_path = path
        self.net = _build_fid_inception(fid_inception, state, path, what)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionFeatures:
        """A metric network stays in eval mode (batch-norm statistics are part of the metric)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float in [0, 1] → (N, 2048) float32."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
        check_unit_range(images, "InceptionFeatures")
        return self.net(images.float())[0].flatten(1)


def _build_fid_inception(fid_inception, state: dict[str, torch.Tensor], path: Path, what: str) -> nn.Module:
    """pytorch-fid's `InceptionV3` (pool block, resize + [0,1]→[−1,1] input handling) with `state` loaded.

    pytorch-fid builds its FID variant of Inception and fills it through a module-level
    `load_state_dict_from_url` (a download). That one name is replaced, for the duration of the
    construction, by a function that returns the already-loaded local `state`; the network itself is
    pytorch-fid's own, loaded strictly.
    """
    def local_state(*_args, **_kwargs) -> dict[str, torch.Tensor]:
        return state

    with _BUILD_LOCK, mock.patch.object(fid_inception, "load_state_dict_from_url", local_state):
        try:
            return fid_inception.InceptionV3(
                output_blocks=[fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
                resize_input=True, normalize_input=True, requires_grad=False, use_fid_inception=True)
        except RuntimeError as exc:  # strict load_state_dict mismatch
            raise CheckpointError(f"{what} do not match pytorch-fid's Inception-v3: {summarise_load_error(exc)}",
                                  path=path,
                                  fix=f"use the original {INCEPTION_FILE}") from exc


class InceptionFID(Metric):
    """FID in pytorch-fid Inception features of the run's reconstructions vs the private images of the
    attacked classes (needs local Inception weights)."""

    name = "fid"
    description = ("FID of reconstructions vs private images of the attacked classes in pytorch-fid Inception-v3 "
                   "pool features (needs local Inception weights)")
    columns = (Column("fid", "lower", "FID (Inception)", page_key="fid", page_label="FID", fallback="fid_eval",
                      unit="FID"),)
    scope = "run"
    interval_resamples = 0  # each resample would re-run Inception on every image
    interval_note = "not bootstrapped: recomputing Inception features for each class resample is too costly"
    requires = "inception"
    order = 40

    def setup(self, ctx) -> None:
        """Load Inception from local weights (MetricUnavailable says what to set when absent)."""
        ctx.networks["inception"] = InceptionFeatures().to(ctx.device)

    def score_run(self, ctx, batch: RunBatch) -> dict[str, float]:
        """fid of the run."""
        real_i, recon_i = inception_features(ctx, batch)
        return {"fid": fid_from_features(real_i, recon_i)}


def inception_features(ctx, batch: RunBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(private, reconstruction) Inception pool features of a run, computed once (FID and PRDC share them)."""
    key = ("inception", id(batch))
    if key not in ctx.cache:
        net = ctx.networks["inception"]
        ctx.cache[key] = (extract_features(net, batch.real_images, 16, ctx.device),
                          extract_features(net, batch.images, 16, ctx.device))
    return ctx.cache[key]


class EvalFID(Metric):
    """The Fréchet distance in evaluation-model features (where Inception weights are absent)."""

    name = "fid_eval"
    description = ("FID of reconstructions vs private images of the attacked classes in evaluation-model "
                   "penultimate features (not comparable with Inception FIDs)")
    columns = (Column("fid_eval", "lower", "Fréchet distance in evaluation-model features", in_table=True,
                      unit="FID"),)
    scope = "run"
    order = 50

    def score_run(self, ctx, batch: RunBatch) -> dict[str, float]:
        """fid_eval of the run."""
        return {"fid_eval": fid_from_features(batch.real_feats, batch.feats)}


METRICS.register("fid", description=InceptionFID.description)(InceptionFID())
METRICS.register("fid_eval", description=EvalFID.description)(EvalFID())
