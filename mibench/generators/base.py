"""What an attack may ask of an image prior (`Prior`), and what a generator *kind* provides so the
zoo can build, train, save and load it without knowing which kind it is (`PriorKind`).

A generator kind is one file: a `PriorKind` subclass registered in `GENERATORS` (an instance, by
name). The zoo calls `kind.train(...)` for cards with a training recipe and `kind.load(...)` for
cards with a weights file; `kind.sample(...)` renders previews. Attacks are typed against `Prior`
(StyleGAN2 satisfies it; a GMI-style DCGAN prior would implement the subset its attacks use).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from mibench.errors import MIBenchError


@runtime_checkable
class Prior(Protocol):
    """A latent-variable image generator as generative attacks use it (StyleGAN2's API).

    Shapes: z (N, z_dim); ws (N, num_ws, w_dim); images (N, 3, R, R) in about [−1, 1] with
    R = img_resolution. The block API (IF-GMI) splits synthesis at the blocks of
    `block_resolutions`."""

    z_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int

    @property
    def block_resolutions(self) -> list[int]: ...

    def mapping(self, z: Tensor, c: Tensor | None, psi: float = 1.0, cutoff: int | None = None, **kw: Any
                ) -> Tensor: ...

    def synthesize(self, ws: Tensor, noise_mode: str = "const", **kw: Any) -> Tensor: ...

    def features_at(self, ws: Tensor, block: int, noise_mode: str = "const", **kw: Any) -> Any: ...

    def advance(self, ws: Tensor, state: Any, from_block: int, to_block: int, noise_mode: str = "const",
                **kw: Any) -> Any: ...

    def synthesize_from(self, ws: Tensor, block: int, state: Any, noise_mode: str = "const", **kw: Any
                        ) -> Tensor: ...


@dataclass
class TrainedPrior:
    """A prior trained by its kind: the network to ship (eval mode, CPU) and a JSON-able record."""

    G: nn.Module
    record: dict[str, Any] = field(default_factory=dict)


class PriorKind:
    """A generator kind: how to build, train, save, load and sample one. Subclasses override."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    trained_by_zoo: ClassVar[bool] = True  # False: the attack that uses it trains it (e.g. T-ACGAN)
    weight_suffix: ClassVar[str] = ".safetensors"
    # A tiny architecture (card params) for contract tests and smoke runs of the attacks on this kind.
    smoke_params: ClassVar[dict[str, Any]] = {}

    def build(self, params: dict[str, Any], resolution: int) -> nn.Module:
        """A freshly initialised network from a card's params."""
        raise MIBenchError(f"generator kind '{self.name}' cannot be built from a card")

    def train(self, images: Tensor, train: dict[str, Any], *, params: dict[str, Any], resolution: int,
              seed: int, device: str | torch.device, progress: bool, card_path: str | None = None,
              callback: Callable[[int, nn.Module], dict[str, Any] | None] | None = None,
              callback_every: int | None = None, checkpoint: Path | None = None,
              init: dict[str, Tensor] | None = None) -> TrainedPrior:
        """Train on uint8 images (N, 3, R, R) with the card's `train` recipe (resuming from
        `checkpoint` where the kind supports it; starting from the weights `init`, a trained
        prior's state dict, when the card names one with `init_from`)."""
        raise MIBenchError(f"generator kind '{self.name}' is trained by its attack, not by the zoo",
                           path=card_path, field="kind")

    def save(self, G: nn.Module, path: Path) -> list[Path]:
        """Write G's weights (and sidecars) at `path`; returns the files written."""
        raise MIBenchError(f"generator kind '{self.name}' cannot be saved by the zoo")

    def load(self, path: Path, *, sha256: str | None, resolution: int, params: dict[str, Any]) -> nn.Module:
        """Load a weights file safely (no code execution), checking sha256 and resolution."""
        raise MIBenchError(f"generator kind '{self.name}' cannot load weights files")

    def sample(self, G: nn.Module, z: Tensor, *, psi: float, cutoff: int | None) -> Tensor:
        """Images (N, 3, R, R) in [−1, 1] for latents z, truncated as the attacks truncate."""
        return G(z)
