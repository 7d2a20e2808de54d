"""Knowledge extraction score (Struppek et al., ICLR 2024): how much class knowledge the reconstructions carry.

A fresh surrogate classifier is trained only on the attack's reconstructions, each labelled with the
class it was generated for, and then tested on held-out private images of those classes. High
accuracy means the reconstructions capture features that generalise to the real identities.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mibench.metrics.base import Column, Metric, MetricUnavailable, RunBatch, extract_features, to_unit_float
from mibench.registry import METRICS


def knowledge_extraction_score(make_model: Callable[[int], nn.Module], train_images: torch.Tensor,
                               train_labels: torch.Tensor, test_images: torch.Tensor, test_labels: torch.Tensor,
                               *, epochs: int = 20, batch_size: int = 64, lr: float = 1e-3,
                               weight_decay: float = 0.0, flip: bool = True, seed: int = 0,
                               device: str | torch.device = "cpu") -> float:
    """Accuracy on private test images of a surrogate trained on the reconstructions.

    make_model(num_classes) builds the untrained surrogate (it receives images float in [0, 1] and
    normalises internally, like every mibench classifier). train_images (N, 3, H, W) are the
    reconstructions with train_labels (N,) their attacked classes; test_images (M, 3, H, W) with
    test_labels (M,) are held-out private images. Classes are re-indexed to 0..C−1 over the attacked
    classes, and test images of classes that were not attacked are ignored (the surrogate cannot
    predict them). Images may be uint8 or float in [0, 1]. Training uses Adam with cross-entropy,
    optional random horizontal flips, and is fully determined by `seed` (model initialisation
    included, without touching the caller's global RNG state).
    """
    if train_images.shape[0] != train_labels.shape[0] or test_images.shape[0] != test_labels.shape[0]:
        raise ValueError("images and labels differ in length")
    train_labels, test_labels = train_labels.cpu().long(), test_labels.cpu().long()
    classes = torch.unique(train_labels)
    if classes.numel() < 2:
        raise MetricUnavailable(f"knowledge extraction needs reconstructions of at least 2 classes, "
                                f"got {classes.numel()}")
    if int(classes.min()) < 0:
        raise ValueError("train_labels must be class indices >= 0")
    size = int(classes.max()) + 1
    if test_labels.numel():
        size = max(size, int(test_labels.max()) + 1)
    lut = torch.full((size,), -1, dtype=torch.long)  # original class → surrogate index, −1 if not attacked
    lut[classes] = torch.arange(classes.numel())
    mapped = torch.where(test_labels >= 0, lut[test_labels.clamp_min(0)], -1)
    keep = mapped >= 0
    if not bool(keep.any()):
        raise MetricUnavailable("knowledge extraction: no private test images of the attacked classes")
    y_train = lut[train_labels]
    x_test, y_test = test_images[keep], mapped[keep]

    device = torch.device(device)
    cuda_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_ids):
        torch.manual_seed(seed)  # model initialisation is part of the score's definition
        model = make_model(int(classes.numel())).to(device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = train_images.shape[0]
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            x = to_unit_float(train_images[idx]).to(device)
            if flip:
                mirror = (torch.rand(idx.shape[0], generator=gen) < 0.5).to(device)
                x = torch.where(mirror.view(-1, 1, 1, 1), x.flip(-1), x)
            loss = F.cross_entropy(model(x), y_train[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    logits = extract_features(model, x_test, batch_size, device)  # (M', C) — a batched no-grad forward
    return float((logits.argmax(dim=1) == y_test).double().mean())


class KnowledgeExtraction(Metric):
    """Optional run metric (`mibench run --metric knowledge_extraction`): a compact ResNet trained on
    the run's reconstructions, tested on the private-test images of the attacked classes."""

    name = "knowledge_extraction"
    description = ("knowledge extraction score: test accuracy on private images of a surrogate classifier "
                   "trained only on the reconstructions (optional: --metric knowledge_extraction)")
    columns = (Column("knowledge_extraction", "higher", "knowledge extraction score", percent=True,
                      unit="fraction"),)
    scope = "run"
    interval_resamples = 0  # each resample would train a new surrogate classifier
    interval_note = "not bootstrapped: each class resample would train a new classifier"
    requires = "surrogate classifier"
    default = False
    order = 70

    def score_run(self, ctx, batch: RunBatch) -> dict[str, float]:
        """The score of the run (surrogate: compact ResNet, width 16, 20 epochs of Adam, seed 0)."""
        from mibench.classifiers.architectures import build_classifier

        if ctx.private_test is None:
            raise MetricUnavailable("knowledge extraction needs the private-test split")
        test_x, test_y = ctx.private_test().load_tensors()
        size = int(batch.images.shape[-1])

        def make_model(k: int) -> nn.Module:
            return build_classifier("compact_resnet", k, size, {"width": 16}, seed=0)

        return {"knowledge_extraction": knowledge_extraction_score(
            make_model, batch.images, batch.labels, test_x, test_y, device=ctx.device)}


METRICS.register("knowledge_extraction", description=KnowledgeExtraction.description)(KnowledgeExtraction())
