"""The `Defense` interface: a small object that may change the model before training and gives the loss.

A defense kind is a `Defense` subclass registered in `DEFENSES`; its `Params` dataclass is built from
the defense card's `params` (card defaults ← target overrides) with `mibench.typed.from_dict`, so a
bad value is a `CardError` naming the field. Lifecycle: `prepare(model, ctx)` once (replace the
head, freeze layers, pre-train …), then `loss(model, x, y, progress)` at every training step.
`describe()` returns the resolved hyper-parameters recorded in checkpoints and entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from mibench.classifiers.base import Classifier
from mibench.classifiers.recipe import TrainRecipe
from mibench.data.base import ImageDataset
from mibench.errors import CardError
from mibench.registry import DEFENSES
from mibench.typed import from_dict, to_dict


@dataclass
class NoParams:
    """A defense without hyper-parameters."""


@dataclass
class DefenseContext:
    """What `prepare` may need beyond the model: device, seed, public data, a train function, caches."""

    device: str | torch.device = "cpu"
    seed: int = 0
    recipe: TrainRecipe | None = None  # the target's training recipe (TL-DMI pre-trains with it)
    public_train: ImageDataset | None = None  # labelled public data (TL-DMI pre-training)
    public_test: ImageDataset | None = None
    pretrained_state: dict[str, torch.Tensor] | None = None  # a cached pre-training result, if any
    on_pretrained: Callable[[dict[str, torch.Tensor], dict[str, Any]], None] | None = None  # cache hook
    train_fn: Callable[..., Any] | None = None  # default: mibench.classifiers.train.train_classifier
    progress: bool = False


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of `logits` (N, K) whose argmax equals `y` (N,)."""
    return float((logits.detach().argmax(dim=1) == y).float().mean())


class Defense:
    """Base class: plain cross-entropy, no preparation. Subclasses override what they change."""

    kind: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    needs_prepare: ClassVar[bool] = False  # training refuses to start before prepare() when True
    needs_public_pretraining: ClassVar[bool] = False  # the zoo hands prepare() public data (or a cached state)

    def __init__(self, params: dict[str, Any] | Any = None, *, path: str | Path | None = None):
        if params is None or isinstance(params, dict):
            self.params = from_dict(self.Params, params or {}, path=path, prefix="params", error=CardError)
        elif isinstance(params, self.Params):
            self.params = from_dict(self.Params, to_dict(params), path=path, prefix="params", error=CardError)
        else:
            raise TypeError(f"params must be a dict or {self.Params.__name__}, got {type(params).__name__}")
        self.prepared = False
        self.info: dict[str, Any] = {}  # what prepare() did (e.g. frozen units, pre-training accuracy)

    def prepare(self, model: Classifier, ctx: DefenseContext | None = None) -> Classifier:
        """Adapt `model` before training (called once); returns the model to train."""
        model = self._prepare(model, ctx or DefenseContext())
        self.prepared = True
        return model

    def _prepare(self, model: Classifier, ctx: DefenseContext) -> Classifier:
        return self.adapt_architecture(model)

    def adapt_architecture(self, model: Classifier) -> Classifier:
        """Only the structural change (e.g. a new head), without training; used when loading weights."""
        return model

    def loss(self, model: Classifier, x: torch.Tensor, y: torch.Tensor,
             progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        """(scalar loss, logs) for a batch x (N, 3, H, W) in [0, 1], y (N,); progress in [0, 1]."""
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        return ce, {"ce": float(ce.detach()), "acc": accuracy(logits, y)}

    def trainable_parameters(self, model: Classifier) -> Iterator[torch.nn.Parameter]:
        """The parameters the optimizer updates (those with requires_grad)."""
        return (p for p in model.parameters() if p.requires_grad)

    def wrap_access(self, access: Any) -> Any:
        """The access object attacks get (a query-time defense — output rounding, top-1 only — wraps
        it here). Default: unchanged."""
        return access

    def describe(self) -> dict[str, Any]:
        """Kind, resolved hyper-parameters and paper (recorded in checkpoints and entries)."""
        return {"kind": self.kind, "params": to_dict(self.params), "paper": self.paper}


def build_defense(kind: str, params: dict[str, Any] | None = None, *,
                  path: str | Path | None = None) -> Defense:
    """Instantiate the registered defense `kind` with card `params` (validated; errors name `path`)."""
    cls = DEFENSES.get(kind)
    return cls(params or {}, path=path)
