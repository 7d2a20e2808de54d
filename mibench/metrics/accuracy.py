"""Attack accuracy: does the evaluation model classify each reconstruction as the attacked class?

The evaluation model (a separately trained classifier on the same private data) produces logits for
the reconstructions; a reconstruction is top-k correct when its attacked class is among the k
highest-scoring classes. Top-1 / top-5 averaged over all reconstructions are the headline numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mibench.metrics.base import ClassBatch, Column, Metric
from mibench.registry import METRICS


def _check(logits: torch.Tensor, targets: torch.Tensor) -> None:
    """Validate shapes and values of (N, K) logits and (N,) integer targets."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got {tuple(logits.shape)}")
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"targets must be (N,) with N={logits.shape[0]}, got {tuple(targets.shape)}")
    if targets.is_floating_point():
        raise ValueError("targets must be integer class indices")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
        raise ValueError(f"targets must lie in [0, {logits.shape[1]}), got [{int(targets.min())}, "
                         f"{int(targets.max())}]")
    if torch.isnan(logits).any():
        raise ValueError("logits contain NaN (the evaluation model or the reconstructions are broken)")


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, torch.Tensor]:
    """For each k, a bool (N,) tensor: is `targets[i]` among the k highest of `logits[i]` (N, K)?

    Defined through the target's rank — the number of classes scoring strictly higher — so the
    result is deterministic: ties are resolved in favour of the target (torch.topk breaks them
    arbitrarily). With fewer than k classes every prediction is top-k correct.
    """
    _check(logits, targets)
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {tuple(ks)}")
    target_logit = logits.gather(1, targets.long().view(-1, 1))  # (N, 1)
    rank = (logits > target_logit).sum(dim=1)  # (N,) classes strictly better than the target
    return {int(k): rank < int(k) for k in ks}


def attack_accuracy(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k attack accuracy over all reconstructions: `{'acc@1': float, 'acc@5': float}` (in [0, 1])."""
    if targets.numel() == 0:
        raise ValueError("no reconstructions to evaluate")
    correct = topk_correct(logits, targets, ks)
    return {f"acc@{k}": float(c.float().mean()) for k, c in correct.items()}


def per_class_accuracy(logits: torch.Tensor, targets: torch.Tensor,
                       ks: Sequence[int] = (1, 5)) -> dict[int, dict[str, float]]:
    """Top-k attack accuracy per attacked class: `{class: {'acc@1': ..., 'acc@5': ..., 'n': count}}`."""
    correct = topk_correct(logits, targets, ks)
    out: dict[int, dict[str, float]] = {}
    for c in torch.unique(targets).tolist():
        mask = targets == c
        row = {f"acc@{k}": float(v[mask].float().mean()) for k, v in correct.items()}
        row["n"] = int(mask.sum())
        out[int(c)] = row
    return out


class AttackAccuracy(Metric):
    """Top-1 / top-5 attack accuracy of each class's reconstructions; the run's value is the mean over
    all attacked classes (a class whose attack failed counts as 0)."""

    name = "attack_accuracy"
    description = ("attack accuracy top-1 / top-5: share of reconstructions the evaluation model classifies as "
                   "the attacked class (top-5: among its 5 highest scores)")
    columns = (Column("acc@1", "higher", "attack accuracy top-1", percent=True, page_key="acc1",
                      page_label="acc@1 %", in_table=True, required=True, unit="fraction"),
               Column("acc@5", "higher", "attack accuracy top-5", percent=True, page_key="acc5",
                      page_label="acc@5 %", in_table=True, required=True, unit="fraction"))
    scope = "class"
    aggregate = "all"
    order = 10

    def not_applicable(self, num_classes: int) -> dict[str, str]:
        """acc@5 with 5 classes or fewer: every reconstruction is then in the top 5."""
        if num_classes <= 5:
            return {"acc@5": f"not applicable: with {num_classes} classes every reconstruction is in the top 5"}
        return {}

    def score_class(self, ctx, batch: ClassBatch) -> dict[str, float | None]:
        """acc@1 and acc@5 of one class (acc@5 None where it is not applicable)."""
        correct = topk_correct(batch.logits, batch.labels, ks=(1, 5))
        top5 = None if self.not_applicable(batch.logits.shape[1]) else float(correct[5].double().mean())
        return {"acc@1": float(correct[1].double().mean()), "acc@5": top5}


METRICS.register("attack_accuracy", description=AttackAccuracy.description)(AttackAccuracy())
