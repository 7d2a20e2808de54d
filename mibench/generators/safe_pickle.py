"""Reading official stylegan2-ada-pytorch `.pkl` snapshots without executing anything.

Their networks pickle through `torch_utils.persistence`, whose normal unpickle *executes* the
embedded module source. `SafeUnpickler` instead maps the handful of globals such a file
legitimately uses to inert stand-ins: a persistent object becomes a `PersistentObject` record (class
name, source text kept as an unexecuted string, state); tensors are rebuilt from their storages with
`torch.load(weights_only=True)`; `dnnlib.util.EasyDict` becomes a dict. Every other global is refused
with a `CheckpointError` naming it. Protocol-2 pickles name builtins `__builtin__` (Python 2's module
name); those are mapped like `builtins`.
"""

from __future__ import annotations

import io
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

_GENERATOR_ARG_ORDER = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
                        "synthesis_kwargs")


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
    ("__builtin__", "set"): set,  # protocol-2 pickles use Python 2's module name
    ("__builtin__", "frozenset"): frozenset,
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
