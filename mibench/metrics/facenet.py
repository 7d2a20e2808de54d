"""FaceNet distance (δ_face): KNN distance in the embedding space of a VGGFace2 FaceNet.

facenet-pytorch's InceptionResnetV1 (embedding mode: 512-d, L2-normalised) with weights loaded from
a local file only. For each reconstruction, the minimum squared L2 distance to a private training
image of the same class in that embedding (the same computation as `knn_distance`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mibench.metrics.base import (
    ClassBatch,
    Column,
    Metric,
    MetricUnavailable,
    check_unit_range,
    extract_features,
    load_state_dict_file,
    load_strict,
    resolve_weights_path,
    torch_home,
)
from mibench.metrics.knn import knn_distance
from mibench.ops.fileio import verify_sha256
from mibench.registry import METRICS

FACENET_ENV = "MIBENCH_FACENET_WEIGHTS"
FACENET_FILE = "20180402-114759-vggface2.pt"
FACENET_SIZE = 160


class FaceNetFeatures(nn.Module):
    """FaceNet (InceptionResnetV1, VGGFace2): images (N, 3, H, W) float in [0, 1] → (N, 512) embeddings.

    Weights come only from a local file: `weights_path`, else `$MIBENCH_FACENET_WEIGHTS`, else
    facenet-pytorch's cache (`$TORCH_HOME/checkpoints/20180402-114759-vggface2.pt`). The file is a
    state dict (torch, loaded with weights_only=True, or safetensors); the VGGFace2 classification
    head (`logits.*`), unused for embeddings, is dropped and the rest must match exactly. Missing
    weights raise MetricUnavailable; a mismatching file raises CheckpointError.

    Input handling (done here, once): resize to 160 px (bilinear, antialiased), then FaceNet's
    fixed standardisation (x·255 − 127.5) / 128.
    """

    dim = 512

    def __init__(self, weights_path: str | Path | None = None, *, sha256: str | None = None):
        super().__init__()
        what = "FaceNet (VGGFace2 InceptionResnetV1) weights"
        path = resolve_weights_path(weights_path, FACENET_ENV, what=what, standard_name=FACENET_FILE,
                                    fallbacks=[torch_home() / "checkpoints" / FACENET_FILE])
        try:
            from facenet_pytorch import InceptionResnetV1
        except ImportError as exc:
            raise MetricUnavailable("facenet-pytorch is not installed", fix="pip install facenet-pytorch") from exc
        verify_sha256(path, sha256, what=what)
        state = load_state_dict_file(path, what=what)
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        # pretrained=None and classify=False: nothing is downloaded and no classification head is built.
        net = InceptionResnetV1(pretrained=None, classify=False)
        load_strict(net, state, path=path, what=what)
        self.weights_path = path
        self.net = net
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FaceNetFeatures:
        """A metric network stays in eval mode (dropout off, batch-norm statistics fixed)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float in [0, 1] → (N, 512) float32, L2-normalised."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
        check_unit_range(images, "FaceNetFeatures")
        x = images.float()
        if x.shape[-2:] != (FACENET_SIZE, FACENET_SIZE):
            x = F.interpolate(x, size=(FACENET_SIZE, FACENET_SIZE), mode="bilinear", align_corners=False,
                              antialias=True)
        x = (x * 255.0 - 127.5) / 128.0
        return self.net(x)


def facenet_distance(extractor: FaceNetFeatures, fake_images: torch.Tensor, fake_labels: torch.Tensor,
                     real_images: torch.Tensor, real_labels: torch.Tensor, *, batch_size: int = 64,
                     device: str | torch.device | None = None) -> torch.Tensor:
    """Per reconstruction, the min squared L2 FaceNet-embedding distance to same-class private images → (N,).

    fake_images (N, 3, H, W) with fake_labels (N,); real_images (M, 3, H', W') with real_labels (M,);
    images float in [0, 1] or uint8. Pass only the private images of the attacked classes to save
    time (or extract once with `extract_features` and call `knn_distance` directly).
    """
    fake = extract_features(extractor, fake_images, batch_size, device)
    real = extract_features(extractor, real_images, batch_size, device)
    return knn_distance(fake, fake_labels, real, real_labels)


class FaceNetDistance(Metric):
    """δ_face of a class's reconstructions (needs local FaceNet weights)."""

    name = "facenet_dist"
    description = ("FaceNet distance: min squared L2 distance in VGGFace2 FaceNet embeddings (160 px) from each "
                   "reconstruction to the private images of its class, averaged (needs local FaceNet weights)")
    columns = (Column("facenet_dist", "lower", "FaceNet distance", unit="squared L2"),)
    requires = "facenet"
    order = 30

    def setup(self, ctx) -> None:
        """Load FaceNet from local weights (MetricUnavailable says what to set when absent)."""
        ctx.networks["facenet"] = FaceNetFeatures().to(ctx.device)

    def score_class(self, ctx, batch: ClassBatch) -> dict[str, float]:
        """facenet_dist of one class (the private images' embeddings are computed once per class)."""
        net, c = ctx.networks["facenet"], batch.class_id
        real_idx = torch.nonzero(ctx.real_labels == c).flatten()
        cache = ctx.cache.setdefault("facenet_real", {})
        if c not in cache:
            cache[c] = extract_features(net, ctx.real_images[real_idx], ctx.batch_size, ctx.device)
        recon = extract_features(net, batch.images, ctx.batch_size, ctx.device)
        real_lbl = torch.full((len(real_idx),), c, dtype=torch.long)
        return {"facenet_dist": float(knn_distance(recon, batch.labels, cache[c], real_lbl).mean())}


METRICS.register("facenet_dist", description=FaceNetDistance.description)(FaceNetDistance())
