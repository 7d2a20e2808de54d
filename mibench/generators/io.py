"""Loading and saving StyleGAN2 generators without ever executing code from a checkpoint.

Three formats, chosen by suffix in `load_generator`:

* `.pkl` — official stylegan2-ada-pytorch snapshots (a dict with 'G', 'D', 'G_ema', 'augment_pipe',
  ...). Their networks pickle through `torch_utils.persistence`, whose normal unpickle *executes* the
  embedded module source. `SafeUnpickler` instead maps the handful of globals such a file legitimately
  uses to inert stand-ins: a persistent object becomes a `PersistentObject` record (class name, source
  text kept as an unexecuted string, state); tensors are rebuilt from their storages with
  `torch.load(weights_only=True)`; `dnnlib.util.EasyDict` becomes a dict. Every other global is refused
  with a `CheckpointError` naming it. The `G_ema` record's constructor kwargs and flattened state dict
  then build and load our own `Generator` (strict names and shapes).
* `.pth` / `.pt` — a torch state dict (optionally `{'G_ema': sd, 'init_kwargs': {...}}`), read with
  `weights_only=True`.
* `.safetensors` — mibench's own format (`save_generator`): tensors plus a JSON sidecar
  (`<name>.json`) holding the constructor kwargs.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mibench.errors import CheckpointError
from mibench.generators.safe_pickle import (  # noqa: F401  (re-exported: the .pkl reader)
    _GENERATOR_ARG_ORDER,
    PersistentObject,
    SafeUnpickler,
    _plain,
    official_generator_spec,
    read_official_pickle,
)
from mibench.generators.stylegan2 import Generator, generator_kwargs
from mibench.ops.fileio import atomic_path, atomic_write_json, verify_sha256

FORMAT_NAME = "mibench-stylegan2"
FORMAT_VERSION = 1
SUPPORTED_SUFFIXES = (".pkl", ".pth", ".pt", ".safetensors")


# ---------------------------------------------------------------------------------------------------
# Building and checking
# ---------------------------------------------------------------------------------------------------


def generator_from_state(init_kwargs: dict[str, Any], state_dict: dict[str, Tensor],
                         path: str | Path | None = None) -> Generator:
    """Build a `Generator` from constructor kwargs and load `state_dict` strictly (clear errors on mismatch)."""
    unknown = set(init_kwargs) - set(_GENERATOR_ARG_ORDER)
    if unknown:
        raise CheckpointError(f"generator constructor argument(s) {', '.join(sorted(unknown))} are not part of "
                              "the StyleGAN2 Generator (is this a different network, e.g. StyleGAN3?)", path=path)
    missing_args = [a for a in _GENERATOR_ARG_ORDER[:5] if a not in init_kwargs]
    if missing_args:
        raise CheckpointError(f"generator constructor argument(s) {', '.join(missing_args)} are missing",
                              path=path)
    try:
        with torch.device("meta"):  # no time spent on random init that the checkpoint overwrites
            G = Generator(**init_kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's generator arguments do not fit mibench's StyleGAN2: {exc}",
                              path=path) from None
    expected = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        if mismatched:
            parts.append("shape mismatch " + ", ".join(f"{k}: checkpoint {got[k]} vs model {expected[k]}"
                                                       for k in mismatched[:3]))
        hint = " (looks like a StyleGAN3 generator)" if any(k.startswith("synthesis.input.") for k in got) else ""
        raise CheckpointError("state dict does not match the StyleGAN2 generator: " + "; ".join(parts) + hint,
                              path=path, fix="check that the file is a StyleGAN2(-ADA) generator and that the "
                                             "card's params match it")
    tensors = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state_dict.items()}
    G.load_state_dict(tensors, strict=True, assign=True)
    # assign=True keeps the tensors' requires_grad; parameters of a loaded prior train like fresh ones.
    for p in G.parameters():
        p.requires_grad_(True)
    return G.eval()


def _check_resolution(G: Generator, expected: int | None, path: Path) -> None:
    if expected is not None and G.img_resolution != expected:
        raise CheckpointError(f"generator resolution is {G.img_resolution} px, the card says {expected} px",
                              path=path, fix="point the card at the right checkpoint or fix its resolution")


def _load_pkl(path: Path) -> Generator:
    data = read_official_pickle(path)
    obj = data.get("G_ema")
    if not isinstance(obj, PersistentObject):
        raise CheckpointError(f"the snapshot has no 'G_ema' network (keys: {', '.join(map(str, data))})",
                              path=path, fix="use a stylegan2-ada-pytorch network snapshot (network-*.pkl)")
    kwargs, state = official_generator_spec(obj, path)
    return generator_from_state(kwargs, state, path)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _load_pth(path: Path, params: dict[str, Any] | None, resolution: int | None) -> Generator:
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"refusing to load: {str(exc).splitlines()[0]}", path=path,
                              fix="save generator weights as a plain state dict (tensors only)") from None
    except Exception as exc:
        raise CheckpointError(f"not a readable torch checkpoint ({type(exc).__name__}: {exc})", path=path,
                              fix="the file is truncated or corrupt; recreate or download it again") from None
    init_kwargs = None
    if isinstance(obj, dict) and not _is_state_dict(obj):
        init_kwargs = obj.get("init_kwargs")
        for key in ("G_ema", "state_dict", "generator"):
            if _is_state_dict(obj.get(key)):
                obj = obj[key]
                break
    if not _is_state_dict(obj):
        raise CheckpointError("expected a generator state dict (or {'G_ema': state_dict})", path=path)
    if init_kwargs is None:
        if params is None or resolution is None:
            raise CheckpointError("a bare state dict needs the generator's constructor arguments", path=path,
                                  fix="pass params= (the card's params) and expected_resolution=, or save "
                                      "with save_generator()")
        init_kwargs = generator_kwargs(params, resolution)
    return generator_from_state(_plain(init_kwargs, "init_kwargs"), obj, path)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _load_safetensors(path: Path) -> Generator:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        state = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"not a readable safetensors file ({exc})", path=path,
                              fix="the file is truncated or corrupt; recreate it") from None
    side = _sidecar(path)
    if side.is_file():
        try:
            info = json.loads(side.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"sidecar is not valid JSON ({exc})", path=side) from None
    elif "mibench_generator" in metadata:
        info = json.loads(metadata["mibench_generator"])
    else:
        raise CheckpointError(f"missing the sidecar {side.name} with the generator's constructor arguments",
                              path=path, fix=f"put {side.name} next to the weights (written by save_generator)")
    if not isinstance(info, dict) or info.get("format") != FORMAT_NAME or "init_kwargs" not in info:
        raise CheckpointError(f"sidecar is not a {FORMAT_NAME} description", path=side)
    if int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"sidecar format version {info.get('format_version')} is newer than this mibench "
                              f"supports ({FORMAT_VERSION})", path=side, fix="upgrade mibench")
    return generator_from_state(info["init_kwargs"], state, path)


# ---------------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------------


def load_generator(path: str | Path, sha256: str | None = None, expected_resolution: int | None = None,
                   params: dict[str, Any] | None = None) -> Generator:
    """Load a StyleGAN2 generator from `.pkl` (official, safely), `.pth`/`.pt` or `.safetensors` (+ .json).

    `sha256` is verified when given; `params` (card constructor args) are needed only for bare `.pth`
    state dicts. Returns the generator in eval mode on CPU.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise CheckpointError(f"unsupported generator file type '{path.suffix}'", path=path,
                              fix=f"use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if not path.is_file():
        raise CheckpointError("generator checkpoint not found", path=path,
                              fix=f"place the file at {path} (mibench never downloads weights) or point the "
                                  "card's weights.path at it")
    verify_sha256(path, sha256, what="generator checkpoint")
    if suffix == ".pkl":
        G = _load_pkl(path)
    elif suffix == ".safetensors":
        G = _load_safetensors(path)
    else:
        G = _load_pth(path, params, expected_resolution)
    _check_resolution(G, expected_resolution, path)
    return G


def save_generator(G: Generator, path: str | Path) -> Path:
    """Save `G` as `<path>.safetensors` plus a `<path>.json` sidecar with its constructor kwargs (atomic)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError("generator weights are saved as .safetensors", path=path,
                              fix="use a path ending in .safetensors")
    info = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": "stylegan2",
            "init_kwargs": _plain(G.init_kwargs, "init_kwargs")}
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in G.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"mibench_generator": json.dumps(info, sort_keys=True)})
    atomic_write_json(_sidecar(path), info)
    return path
