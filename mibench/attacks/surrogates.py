"""Surrogates of a target that attacks train themselves (LOKT's label-trained ensemble, LOMMA's
distilled models): what one is (`SurrogateSpec`) and how several answer as one (`SurrogateEnsemble`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class SurrogateSpec:
    """One surrogate classifier: a registered architecture and its parameters."""

    architecture: str
    arch_params: dict[str, Any] = field(default_factory=dict)


class SurrogateEnsemble(nn.Module):
    """Images (N, 3, H, W) in [0, 1] → logits (N, K) averaged over the surrogate classifiers."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([m(x).float() for m in self.members]).mean(0)
