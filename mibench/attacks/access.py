"""How an attack may touch the target: `WhiteBox` (model and gradients), `BlackBox` (soft outputs
only) or `LabelOnly` (predicted labels only). Every query is counted; the two query-access levels
(black-box, label-only) enforce an optional query budget over the whole run.

The model is held in a closure that returns only what the level allows (labels, probabilities), not
in an attribute, so attack code has no path from a `LabelOnly` object to logits; asking for anything
else raises an `AttackError`. A query-time defense may wrap the access object
(`Defense.wrap_access`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mibench.errors import AttackError, QueryBudgetExceeded


class TargetAccess:
    """Common part of every access level: class count, input size and the query counter."""

    level = "none"

    def __init__(self, num_classes: int, input_size: int, device: torch.device | str):
        self.num_classes = int(num_classes)
        self.input_size = int(input_size)
        self.device = torch.device(device)
        self.queries = 0
        self.queries_by_phase: dict[str, int] = {}
        self._phase = "attack"

    def set_phase(self, phase: str) -> None:
        """Attribute subsequent queries to `phase` (e.g. 'gan-training', 'surrogate-data')."""
        self._phase = phase

    def credit(self, by_phase: dict[str, int]) -> None:
        """Account for queries an earlier session already spent (e.g. a cached surrogate dataset
        reused on resume), so totals and budgets stay exact without querying again."""
        for phase, n in by_phase.items():
            self.queries += int(n)
            self.queries_by_phase[phase] = self.queries_by_phase.get(phase, 0) + int(n)

    def _count(self, n: int) -> None:
        self.queries += n
        self.queries_by_phase[self._phase] = self.queries_by_phase.get(self._phase, 0) + n

    def __getattr__(self, name: str):
        # Only reached for attributes that do not exist: say what this access level allows.
        raise AttackError(f"{type(self).__name__} access has no '{name}': a {self.level} attack "
                          f"may only use {self._allowed}")

    _allowed = "nothing"


class WhiteBox(TargetAccess):
    """Full access: the model itself, differentiable logits and features."""

    level = "white-box"
    _allowed = "model, logits(), features_and_logits()"

    def __init__(self, model: nn.Module, num_classes: int, input_size: int, device: torch.device | str):
        super().__init__(num_classes, input_size, device)
        self.model = model

    def logits(self, x: torch.Tensor, count: int | None = None) -> torch.Tensor:
        """Differentiable logits (N, K) of images (N, 3, H, W) in [0, 1]; `count` real images among
        them (the rest are batch padding) are counted as queries (default: all N)."""
        self._count(x.shape[0] if count is None else count)
        return self.model(x)

    def features_and_logits(self, x: torch.Tensor, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(penultimate features (N, D), logits (N, K)) of images in [0, 1] from one differentiable
        forward pass (counted as `logits`)."""
        self._count(x.shape[0] if count is None else count)
        return self.model.forward_with_features(x)


class QueryAccess(TargetAccess):
    """A query-access level (black-box, label-only): the model behind a closure, and an optional
    budget of target queries that no call may go over."""

    def __init__(self, num_classes: int, input_size: int, device: torch.device | str, budget: int | None = None):
        super().__init__(num_classes, input_size, device)
        self.budget = budget

    def _spend(self, n: int) -> None:
        """Count n queries; raise QueryBudgetExceeded (counting none) when they would exceed the budget."""
        if self.budget is not None and self.queries + n > self.budget:
            raise QueryBudgetExceeded(
                f"{self.level} query budget of {self.budget} exceeded ({self.queries} used, {n} more asked "
                f"in phase '{self._phase}')", fix="raise --query-budget or lower the attack's query needs")
        self._count(n)


class BlackBox(QueryAccess):
    """Soft-label access: softmax probabilities without gradients; every image counts as one query."""

    level = "black-box"
    _allowed = "probs()"

    def __init__(self, model: nn.Module, num_classes: int, input_size: int, device: torch.device | str,
                 budget: int | None = None):
        super().__init__(num_classes, input_size, device, budget)
        self._probs = _closure(model, lambda logits: torch.softmax(logits.float(), dim=1))

    @torch.no_grad()
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (N, K), detached; raises QueryBudgetExceeded before going over the budget."""
        self._spend(x.shape[0])
        return self._probs(x.detach())


class LabelOnly(QueryAccess):
    """Hard-label access: `labels(x)` returns argmax predictions; every image counts as one query."""

    level = "label-only"
    _allowed = "labels()"

    def __init__(self, model: nn.Module, num_classes: int, input_size: int, device: torch.device | str,
                 budget: int | None = None):
        super().__init__(num_classes, input_size, device, budget)
        self._labels = _closure(model, lambda logits: logits.argmax(dim=1))

    @torch.no_grad()
    def labels(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted labels (N,) int64; raises QueryBudgetExceeded before going over the budget."""
        self._spend(x.shape[0])
        return self._labels(x.detach())


def _closure(model: nn.Module, output: Callable[[torch.Tensor], torch.Tensor]
             ) -> Callable[[torch.Tensor], torch.Tensor]:
    """An opaque function over `model` that returns only `output(logits)` (labels, probabilities):
    the logits never leave it, and neither do gradients."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return output(model(x))

    return forward


# The levels a query budget applies to (white-box attacks differentiate through the model).
BUDGETED_LEVELS = ("black-box", "label-only")

ACCESS_LEVELS = {"white-box": WhiteBox, "black-box": BlackBox, "label-only": LabelOnly}
