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

import io
import json
import pickle
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mibench.errors import CheckpointError
from mibench.fileio import atomic_path, atomic_write_json, verify_sha256
from mibench.generators.stylegan2 import Generator, generator_kwargs

FORMAT_NAME = "mibench-stylegan2"
FORMAT_VERSION = 1
SUPPORTED_SUFFIXES = (".pkl", ".pth", ".pt", ".safetensors")
_GENERATOR_ARG_ORDER = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
                        "synthesis_kwargs")


# ---------------------------------------------------------------------------------------------------
# Restricted unpickler for official .pkl files
# ---------------------------------------------------------------------------------------------------


@dataclass
class PersistentObject:
    """An unpickled `torch_utils.persistence` object, as data: its source is never executed."""

    class_name: str
    module_src: str
    state: dict[str, Any]
    version: int | None = None
    kind: str = "class"
    extra: dict[str, Any] = field(default_factory=dict)


class _EasyDictStandIn(dict):
    """Stands in for `dnnlib.util.EasyDict` (a dict with attribute access) — plain data here."""


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    if not isinstance(meta, dict):
        raise CheckpointError(f"persistent object metadata is a {type(meta).__name__}, expected a dict")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise CheckpointError("persistent object has no state dict")
    return PersistentObject(class_name=str(meta.get("class_name")), module_src=str(meta.get("module_src", "")),
                            state=dict(state), version=meta.get("version"), kind=str(meta.get("type", "class")),
                            extra={k: v for k, v in meta.items()
                                   if k not in ("class_name", "module_src", "state", "version", "type")})


def _load_storage_from_bytes(data: Any) -> Any:
    """A tensor storage from torch's legacy serialisation bytes, read with `weights_only=True`."""
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(f"tensor storage payload is a {type(data).__name__}, expected bytes")
    try:
        return torch.load(io.BytesIO(bytes(data)), weights_only=True, map_location="cpu")
    except Exception as exc:  # any failure here means a storage we refuse to interpret
        raise CheckpointError(f"a tensor storage could not be read safely: {exc}") from exc


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    backward_hooks: Any = None, metadata: Any = None) -> Tensor:
    """Checked `torch._utils._rebuild_tensor_v2`: only real storages and integer geometry; hooks dropped."""
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise CheckpointError(f"tensor rebuild got a {type(storage).__name__} instead of a storage")
    if not isinstance(storage_offset, int) or not all(isinstance(v, int) for v in (*size, *stride)):
        raise CheckpointError("tensor rebuild got non-integer offset/size/stride")
    # Backward hooks would be callables; a checkpoint never needs them, so none are attached.
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, tuple(size), tuple(stride),
                                           bool(requires_grad), OrderedDict())


def _rebuild_parameter(data: Any, requires_grad: Any = True, backward_hooks: Any = None,
                       state: Any = None) -> torch.nn.Parameter:
    """Checked `torch._utils._rebuild_parameter[_with_state]` (hooks and extra state dropped)."""
    if not isinstance(data, Tensor):
        raise CheckpointError(f"parameter rebuild got a {type(data).__name__} instead of a tensor")
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, str):
        raise CheckpointError(f"numpy dtype spec {spec!r} is not a string")
    dt = np.dtype(spec)
    if dt.hasobject:
        raise CheckpointError("numpy object dtypes are refused in checkpoints")
    return dt


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise CheckpointError("numpy scalar with an unsupported dtype or payload")
    return np.frombuffer(bytes(data), dtype=dtype)[0]


_NUMPY_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's own array reconstructor (numpy 1 and 2)


def _numpy_reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise CheckpointError("numpy array reconstruction of a subclass is refused")
    return _NUMPY_RECONSTRUCT(np.ndarray, shape, typecode)


def _torch_device(spec: Any, index: Any = None) -> torch.device:
    if not isinstance(spec, str):
        raise CheckpointError(f"torch.device spec {spec!r} is not a string")
    return torch.device(spec) if index is None else torch.device(spec, int(index))


# (module, name) -> safe stand-in. Anything not listed is refused.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDictStandIn,
    ("dnnlib", "EasyDict"): _EasyDictStandIn,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch", "device"): _torch_device,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
}


class SafeUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` that resolves only whitelisted globals to inert stand-ins.

    The only callables a pickle can reach are the stand-ins in `_ALLOWED_GLOBALS`, none of which
    imports, evaluates or executes anything; `module_src` stays a string.
    """

    def __init__(self, file: Any, *, source: str | Path | None = None):
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        """Map an allowed global to its stand-in; refuse everything else (naming the global)."""
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise CheckpointError(
                f"refusing to load: the pickle references the global '{module}.{name}', which a StyleGAN2 "
                "checkpoint does not need (a normal unpickle would import/call it)", path=self._source,
                fix="only load checkpoints from a source you trust; official stylegan2-ada-pytorch "
                    "pickles never contain this")
        return target

    def persistent_load(self, pid: Any) -> Any:
        """Official pickles carry no persistent ids; refuse any."""
        raise CheckpointError("refusing to load: the pickle uses persistent ids (not an official "
                              "stylegan2-ada-pytorch pickle)", path=self._source)


def read_official_pickle(path: str | Path) -> dict[str, Any]:
    """Unpickle an official `.pkl` safely -> its top-level dict, networks as `PersistentObject` records."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = SafeUnpickler(f, source=path).load()
    except CheckpointError as exc:
        if exc.path is None:
            raise CheckpointError(exc.reason, path=path, fix=exc.fix) from None
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OverflowError, MemoryError, UnicodeDecodeError, RuntimeError) as exc:
        raise CheckpointError(f"not a complete, valid StyleGAN2 pickle ({type(exc).__name__}: {exc})",
                              path=path, fix="the file is truncated or corrupt; download it again") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"the pickle holds a {type(data).__name__}, expected the official snapshot dict "
                              "with 'G_ema'", path=path)
    return data


def _plain(value: Any, where: str) -> Any:
    """Constructor kwargs as JSON-able plain data (EasyDict -> dict, numpy scalars -> Python numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"constructor argument {where} is a {type(value).__name__}, expected plain data")


def _flatten_state(obj: PersistentObject, prefix: str, out: dict[str, Tensor], path: Path) -> None:
    state = obj.state
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, tensor in (state.get(group) or {}).items():
            if tensor is None or (group == "_buffers" and name in non_persistent):
                continue
            if not isinstance(tensor, Tensor):
                raise CheckpointError(f"'{prefix}{name}' is a {type(tensor).__name__}, expected a tensor",
                                      path=path)
            out[prefix + name] = tensor.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise CheckpointError(f"sub-module '{prefix}{name}' is not a persistent network object", path=path)
        _flatten_state(child, f"{prefix}{name}.", out, path)


def official_generator_spec(obj: PersistentObject, path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(constructor kwargs, flattened state dict) of an official `Generator` record."""
    if obj.class_name != "Generator":
        raise CheckpointError(f"'G_ema' is a '{obj.class_name}', expected 'Generator'", path=path)
    args = obj.state.get("_init_args") or ()
    kwargs = dict(obj.state.get("_init_kwargs") or {})
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict):
        raise CheckpointError("'G_ema' has malformed constructor arguments", path=path)
    if len(args) > len(_GENERATOR_ARG_ORDER):
        raise CheckpointError(f"'G_ema' has {len(args)} positional constructor arguments, expected at most "
                              f"{len(_GENERATOR_ARG_ORDER)}", path=path)
    for name, value in zip(_GENERATOR_ARG_ORDER, args):
        kwargs.setdefault(name, value)
    kwargs = _plain(kwargs, "G_ema")
    state: dict[str, Tensor] = {}
    _flatten_state(obj, "", state, path)
    return kwargs, state


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
