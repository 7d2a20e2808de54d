"""The `gmi` generator kind: GMI's DCGAN generator + WGAN-GP critic (`gmi_gan.py`), trained by the
zoo on public images (`wgan_gp.py`), saved as one safetensors file (both networks: GMI's attack
needs the critic as its prior loss), and loaded from that file or from the authors' checkpoints.

The authors' code saves `<name>_G.tar` and `<name>_D.tar` (`torch.save({'state_dict': …})` of
DataParallel modules, 64 px, z 100, dim 64; the critic `DGWGAN` is one `ls` Sequential). A card points `weights.path` at the `_G` file; the
critic is the `_D` file next to it (or `params.critic_file`, a name in the same folder, checked
against `params.critic_sha256` when given). Both load with `weights_only=True`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mibench.errors import CardError, CheckpointError
from mibench.generators.base import PriorKind, TrainedPrior
from mibench.generators.gmi_gan import GMIPrior, build_prior, prior_kwargs
from mibench.generators.wgan_gp import WGANGPRecipe, train_wgan_gp
from mibench.ops.fileio import atomic_path, verify_sha256
from mibench.registry import GENERATORS
from mibench.seeding import derive_seed
from mibench.typed import from_dict

FORMAT_NAME = "mibench-gmi"
FORMAT_VERSION = 1
OFFICIAL_SUFFIXES = (".tar", ".pth", ".pt")
LOAD_ONLY_PARAMS = ("critic_file", "critic_sha256")  # params that say where the authors' critic is


def _arch_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if k not in LOAD_ONLY_PARAMS}


def _official_state(path: Path) -> dict[str, Tensor]:
    """A state dict from one of the authors' `.tar` files (DataParallel prefix removed, the critic's
    single `ls` Sequential renamed to `GMICritic`'s `layer1` (its first conv) and `layer2`)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle with code, or not a torch file at all
        raise CheckpointError(f"cannot read GMI checkpoint safely: {exc}", path=path,
                              fix="use the authors' celeba_G.tar / celeba_D.tar (plain state dicts)") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError("not a GMI checkpoint (expected {'state_dict': {name: tensor}})", path=path)
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("ls."):  # DGWGAN: ls.0 conv, ls.1 LeakyReLU, ls.2… blocks and the last conv
            index, rest = key[3:].split(".", 1)
            key = f"layer1.{index}.{rest}" if int(index) < 2 else f"layer2.{int(index) - 2}.{rest}"
        out[key] = value
    return out


class GMIKind(PriorKind):
    """GMI's public GAN (Zhang et al., CVPR 2020): DCGAN generator + WGAN-GP critic."""

    name = "gmi"
    description = "GMI's public GAN (Zhang et al., CVPR 2020): DCGAN generator + WGAN-GP critic (prior loss)"
    smoke_params = {"z_dim": 16, "g_dim": 4, "d_dim": 4}

    def build(self, params: dict[str, Any], resolution: int) -> GMIPrior:
        """A freshly initialised prior from a card's params (z_dim, g_dim, d_dim; the paper's 100 / 64 / 64)."""
        return build_prior(_arch_params(params), resolution)

    def train(self, images: Tensor, train: dict[str, Any], *, params: dict[str, Any], resolution: int,
              seed: int | None = None, device: str | torch.device = "cpu", progress: bool = True,
              card_path: str | None = None, callback: Callable[[int, nn.Module], Any] | None = None,
              callback_every: int | None = None, checkpoint: Path | None = None) -> TrainedPrior:
        """WGAN-GP on uint8 public images (N, 3, R, R) with the card's recipe (resumable)."""
        train = dict(train or {})
        card_seed = train.pop("seed", 0)
        seed = card_seed if seed is None else seed
        recipe = from_dict(WGANGPRecipe, train, path=card_path, prefix="train", error=CardError)
        if callback_every is not None:
            recipe.callback_every = callback_every
        prior = build_prior(_arch_params(params), resolution, seed=derive_seed(seed, "gmi-init"), path=card_path)
        result = train_wgan_gp(images, prior, recipe, seed=seed, device=device, progress=progress,
                               callback=callback, checkpoint=checkpoint)
        return TrainedPrior(result.prior, {"steps": result.steps, "seconds": round(result.seconds, 1),
                                           "stopped_by": result.stopped_by, "log": result.log})

    def save(self, G: nn.Module, path: Path) -> list[Path]:
        """Both networks in one safetensors file, constructor arguments in its metadata."""
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous().clone() for k, v in G.state_dict().items()}
        info = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": self.name,
                "init_kwargs": G.init_kwargs}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"mibench_generator": json.dumps(info, sort_keys=True)})
        return [path]

    def load(self, path: Path, *, sha256: str | None = None, resolution: int | None = None,
             params: dict[str, Any] | None = None) -> GMIPrior:
        """Our safetensors file, or the authors' `_G` / `_D` checkpoint pair; strict state loading."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError("GMI prior weights not found", path=path,
                                  fix="put the file there or fix the card's weights.path")
        verify_sha256(path, sha256, what="GMI generator")
        params = dict(params or {})
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), framework="pt") as fh:
                meta = json.loads((fh.metadata() or {}).get("mibench_generator", "{}"))
            if meta.get("format") != FORMAT_NAME:
                raise CheckpointError("not a mibench GMI prior file (no 'mibench-gmi' metadata)", path=path)
            kwargs = dict(meta["init_kwargs"])
            state = load_file(str(path))
        elif path.suffix.lower() in OFFICIAL_SUFFIXES:
            critic = path.parent / (params.get("critic_file") or path.name.replace("_G.", "_D."))
            if critic == path or not critic.is_file():
                raise CheckpointError(f"the GMI critic checkpoint {critic.name} is missing", path=critic,
                                      fix="put the authors' _D file next to the _G file, or name it in "
                                          "params.critic_file")
            verify_sha256(critic, params.get("critic_sha256"), what="GMI critic")
            kwargs = prior_kwargs(_arch_params(params), resolution or 64, str(path))
            state = {f"G.{k}": v for k, v in _official_state(path).items()}
            state.update({f"D.{k}": v for k, v in _official_state(critic).items()})
        else:
            raise CheckpointError(f"unsupported GMI weights format '{path.suffix}'", path=path,
                                  fix="use mibench's .safetensors or the authors' _G.tar / _D.tar")
        if resolution is not None and kwargs["resolution"] != resolution:
            raise CheckpointError(f"the GMI prior is {kwargs['resolution']} px but the card says {resolution}",
                                  path=path, fix="fix the card's resolution")
        prior = GMIPrior(**kwargs)
        try:
            prior.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"weights do not fit the GMI architecture {kwargs}: {str(exc)[:300]}", path=path,
                                  fix="check params z_dim / g_dim / d_dim and the resolution") from None
        return prior.eval()

    def sample(self, G: nn.Module, z: Tensor, *, psi: float, cutoff: int | None) -> Tensor:
        """Images in [−1, 1] (a DCGAN has no truncation: ψ is ignored)."""
        return G(z)


GENERATORS.register("gmi", description=GMIKind.description)(GMIKind())
