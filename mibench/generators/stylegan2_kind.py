"""The `stylegan2` generator kind: mibench's StyleGAN2 (`stylegan2.py`) trained by `train.py`,
saved as safetensors + JSON sidecar and loaded from official `.pkl` / `.pth` / `.safetensors` files
without executing code (`io.py`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mibench.errors import CardError, CheckpointError
from mibench.generators.base import PriorKind, TrainedPrior
from mibench.generators.io import load_generator, save_generator
from mibench.generators.stylegan2 import Generator, generator_kwargs
from mibench.generators.train import StyleGAN2TrainRecipe, train_stylegan2
from mibench.registry import GENERATORS
from mibench.typed import from_dict


class StyleGAN2Kind(PriorKind):
    """StyleGAN2 (stylegan2-ada-pytorch compatible; loads official G_ema checkpoints safely)."""

    name = "stylegan2"
    description = "StyleGAN2 (stylegan2-ada-pytorch compatible; loads official G_ema checkpoints safely)"
    smoke_params = {"z_dim": 16, "w_dim": 16, "mapping_kwargs": {"num_layers": 2},
                    "synthesis_kwargs": {"channel_base": 128, "channel_max": 16}}

    def build(self, params: dict[str, Any], resolution: int) -> Generator:
        """A freshly initialised `Generator` from a card's constructor args (official defaults otherwise)."""
        try:
            return Generator(**generator_kwargs(params, resolution))
        except (TypeError, ValueError) as exc:
            raise CardError(f"invalid StyleGAN2 constructor arguments: {exc}", field="params",
                            fix="use the official stylegan2-ada-pytorch Generator argument names") from exc

    def recipe(self, train: dict[str, Any], card_path: str | None = None) -> tuple[StyleGAN2TrainRecipe, int]:
        """The card's `train:` mapping as a typed recipe and its seed."""
        train = dict(train or {})
        seed = train.pop("seed", 0)
        return from_dict(StyleGAN2TrainRecipe, train, path=card_path, prefix="train", error=CardError), seed

    def train(self, images: Tensor, train: dict[str, Any], *, params: dict[str, Any], resolution: int,
              seed: int | None = None, device: str | torch.device = "cpu", progress: bool = True,
              card_path: str | None = None, callback: Callable[[int, nn.Module], Any] | None = None,
              callback_every: int | None = None, checkpoint: Path | None = None,
              init: dict[str, Tensor] | None = None) -> TrainedPrior:
        """Train on uint8 images (N, 3, R, R); the recipe's own `seed` is used when `seed` is None;
        an interrupted training resumes from `checkpoint`; `init` starts G from trained weights."""
        recipe, card_seed = self.recipe(train, card_path)
        if callback_every is not None:
            recipe.callback_every = callback_every
        try:
            result = train_stylegan2(images, recipe, seed=card_seed if seed is None else seed, device=device,
                                     progress=progress, generator_params=params, callback=callback,
                                     checkpoint=checkpoint, init_state=init)
        except CardError as exc:  # a recipe field only the built generator can check (train.freeze_g)
            if exc.path is not None or card_path is None:
                raise
            raise CardError(exc.reason, path=card_path, field=exc.field, fix=exc.fix) from exc
        record = {"steps": result.steps, "seconds": round(result.seconds, 1), "stopped_by": result.stopped_by,
                  "log": result.log}
        if init is not None:  # which tensors started random (a grown block) instead of from the source prior
            record["init_new_tensors"] = result.new_keys
        return TrainedPrior(result.G_ema, record)

    def save(self, G: nn.Module, path: Path) -> list[Path]:
        """`path` (.safetensors) and its .json sidecar."""
        save_generator(G, path)
        return [path, path.with_suffix(".json")]

    def load(self, path: Path, *, sha256: str | None = None, resolution: int | None = None,
             params: dict[str, Any] | None = None) -> Generator:
        """Load safely (restricted unpickler for .pkl); refuses class-conditional generators."""
        G = load_generator(path, sha256=sha256, expected_resolution=resolution, params=params)
        if G.c_dim:
            raise CheckpointError(f"this StyleGAN2 is class-conditional (c_dim {G.c_dim}); the attacks use an "
                                  "unconditional prior", path=path,
                                  fix="use an unconditional checkpoint (e.g. the official FFHQ / MetFaces ones)")
        return G

    def sample(self, G: nn.Module, z: Tensor, *, psi: float, cutoff: int | None) -> Tensor:
        """Images in [−1, 1], truncated like the attacks' candidate search (constant noise)."""
        return G(z, None, psi=psi, cutoff=cutoff, noise_mode="const")


GENERATORS.register("stylegan2", description=StyleGAN2Kind.description)(StyleGAN2Kind())
