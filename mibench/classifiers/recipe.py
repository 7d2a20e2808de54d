"""How a classifier is trained: the typed recipe (optimizer, schedule, augmentation, seed) that target
cards, defenses and LOKT's surrogates share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mibench.typed import added_field


@dataclass
class Augment:
    """Training-time augmentation: random resized crop, horizontal flip, colour jitter, rotation."""

    crop_scale: tuple[float, float] | None = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    flip: bool = True
    color_jitter: float = 0.1  # brightness, contrast (and saturation) factors in 1 ± this
    # Added after the zoo's cards were hashed: `added_field` keeps their hashes and run ids unchanged.
    jitter_saturation: bool = added_field(True)  # False: brightness and contrast only (LOKT's surrogates)
    jitter_p: float = added_field(1.0)  # probability that an image is jittered
    rotation: float = added_field(0.0)  # degrees: a rotation θ ~ U(−rotation, rotation) (0: none)
    rotation_p: float = added_field(0.5)  # probability that an image is rotated (kornia's default)


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
    # Weight of the loss on the un-augmented batch: the loss is w·L(x) + (1 − w)·L(aug(x)) (LOKT's
    # surrogates: 0.5); 0 trains on the augmented batch only.
    clean_weight: float = added_field(0.0)
    seed: int = 0

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs: must be at least 1")
        if self.batch_size < 1:
            raise ValueError("batch_size: must be at least 1")
        if self.lr <= 0:
            raise ValueError("lr: must be positive")
        if not 0.0 <= self.clean_weight <= 1.0:
            raise ValueError("clean_weight: must be in [0, 1]")
