"""Label smoothing with a schedule: `label_smoothing` (α > 0) and `negative_label_smoothing` (α < 0).

Struppek et al., "Be Careful What You Smooth For: Label Smoothing Can Be a Privacy Shield but Also a
Catalyst for Model Inversion Attacks", ICLR 2024. The loss is

    L = (1 − α)·NLL(y) + α·mean_k(−log p_k),

i.e. cross-entropy against the smoothed target y(1 − α) + α/K. Positive α (ordinary smoothing)
makes classes easier to invert; negative α (NLS) is a defense. NLS trains with α = 0 for the first
part of training and then ramps linearly to the full α.

Note on the published code: its α scheduler was at first not applied at all, and later only reached
α/2 before jumping to α at the end. mibench implements the *intended* schedule — 0 until `start`,
a linear ramp to the full α at `ramp_end`, then constant — and tests its values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mibench.classifiers.base import Classifier
from mibench.defenses.base import Defense, accuracy
from mibench.registry import DEFENSES

PAPER = ("Struppek, Hintersdorf, Kersting: Be Careful What You Smooth For: Label Smoothing Can Be a "
         "Privacy Shield but Also a Catalyst for Model Inversion Attacks (ICLR 2024)")


def smoothing_alpha(progress: float, alpha: float, start: float, ramp_end: float) -> float:
    """The smoothing factor at training `progress` ∈ [0, 1]: 0 before `start`, linear to α at `ramp_end`."""
    if progress < start:
        return 0.0
    if progress >= ramp_end:
        return alpha
    return alpha * (progress - start) / (ramp_end - start)


def smoothed_cross_entropy(logits: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Mean over the batch of (1 − α)·NLL + α·mean_k(−log p_k); logits (N, K), y (N,)."""
    logp = F.log_softmax(logits.float(), dim=1)
    nll = -logp.gather(1, y.view(-1, 1)).squeeze(1)
    uniform = -logp.mean(dim=1)
    return ((1 - alpha) * nll + alpha * uniform).mean()


def _check_schedule(start: float, ramp_end: float) -> None:
    if not 0 <= start <= 1:
        raise ValueError("start: must be a fraction of training in [0, 1]")
    if not start <= ramp_end <= 1:
        raise ValueError("ramp_end: must be in [start, 1]")


@dataclass
class NegativeSmoothingParams:
    """α < 0 (paper: −0.05); α = 0 before `start`, linear ramp to α at `ramp_end` (fractions of training)."""

    alpha: float = -0.05
    start: float = 0.5
    ramp_end: float = 0.75

    def validate(self) -> None:
        if not self.alpha < 0:
            raise ValueError(f"alpha: negative label smoothing needs alpha < 0, got {self.alpha} "
                             "(use the `label_smoothing` kind for positive alpha)")
        _check_schedule(self.start, self.ramp_end)


@dataclass
class PositiveSmoothingParams:
    """0 < α < 1 (e.g. 0.1); constant from the start by default (`start` = `ramp_end` = 0)."""

    alpha: float = 0.1
    start: float = 0.0
    ramp_end: float = 0.0

    def validate(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha: label smoothing needs 0 < alpha < 1, got {self.alpha} "
                             "(use the `negative_label_smoothing` kind for negative alpha)")
        _check_schedule(self.start, self.ramp_end)


class _Smoothing(Defense):
    """Shared loss of both smoothing kinds."""

    paper = PAPER

    def alpha_at(self, progress: float) -> float:
        """α at training `progress` ∈ [0, 1]."""
        p = self.params
        return smoothing_alpha(progress, p.alpha, p.start, p.ramp_end)

    def loss(self, model: Classifier, x: torch.Tensor, y: torch.Tensor,
             progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        a = self.alpha_at(progress)
        logits = model(x)
        loss = smoothed_cross_entropy(logits, y, a)
        return loss, {"alpha": a, "acc": accuracy(logits, y)}


@DEFENSES.register("negative_label_smoothing", paper=PAPER,
                   description="negative label smoothing (α < 0, ramped in after half of training)")
class NegativeLabelSmoothing(_Smoothing):
    """NLS defense: smoothed CE with α < 0 on the intended schedule (0, then a linear ramp to α)."""

    kind = "negative_label_smoothing"
    Params = NegativeSmoothingParams


@DEFENSES.register("label_smoothing", paper=PAPER,
                   description="ordinary label smoothing (α > 0) — increases MI leakage; for comparison")
class LabelSmoothing(_Smoothing):
    """Positive label smoothing (not a defense: it makes model inversion easier)."""

    kind = "label_smoothing"
    Params = PositiveSmoothingParams
