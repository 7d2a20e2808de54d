"""How a classifier is trained: the typed recipe (optimizer, schedule, augmentation, seed) that target
cards, defenses and LOKT's surrogates share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class Augment:
    """Training-time augmentation: random resized crop, horizontal flip, colour jitter."""

    crop_scale: tuple[float, float] | None = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    flip: bool = True
    color_jitter: float = 0.1


@dataclass
class TrainRecipe:
    """How to train a classifier (embedded zoo) — optimizer, schedule, augmentation, seed."""

    epochs: int
    batch_size: int = 64
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_epochs: int = 0
    augment: Augment = field(default_factory=Augment)
    seed: int = 0

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs: must be at least 1")
        if self.batch_size < 1:
            raise ValueError("batch_size: must be at least 1")
        if self.lr <= 0:
            raise ValueError("lr: must be positive")
