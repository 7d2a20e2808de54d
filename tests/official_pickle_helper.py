"""Test helper: write networks as stylegan2-ada-pytorch snapshot pickles, without the official code.

The official layout: every network pickles through `torch_utils.persistence` — its reduce is
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with meta = {type, version, module_src
(the Python source of training/networks.py), class_name, state (the module __dict__: `_parameters`,
`_buffers`, `_modules` OrderedDicts, attributes, `_init_args`, `_init_kwargs`)}. Tensors pickle with
torch's own reducers; nested constructor kwargs are `dnnlib.util.EasyDict`; gains computed with numpy
are numpy scalars. `official_modules()` installs importable stand-ins for `torch_utils.persistence`
and `dnnlib.util` that behave like the real ones — in particular a *normal* unpickle executes
`module_src` — so tests can show that a payload is live and that mibench's loader never runs it.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

HARMLESS_SOURCE = '"""Stand-in for training/networks.py (never executed by mibench)."""\nimport torch\n'


def marker_source(marker: Path) -> str:
    """Module source that, when executed, writes `marker` (a stand-in for a malicious payload)."""
    return HARMLESS_SOURCE + f"open({str(marker)!r}, 'w').write('payload ran')\n"


class EasyDict(dict):
    """Like dnnlib.util.EasyDict: a dict with attribute access (pickled under 'dnnlib.util')."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _reconstruct_persistent_obj(meta: dict[str, Any]) -> Any:
    """Mimics the official hook: executes module_src in a fresh module, then rebuilds the object."""
    module = types.ModuleType("_imported_module_test")
    exec(meta["module_src"], module.__dict__)  # this is exactly what makes official pickles unsafe
    return types.SimpleNamespace(class_name=meta["class_name"], state=meta["state"], module=module)


@contextlib.contextmanager
def official_modules() -> Iterator[None]:
    """Temporarily install importable `torch_utils.persistence` and `dnnlib.util` stand-ins."""
    mods = {name: types.ModuleType(name) for name in ("torch_utils", "torch_utils.persistence", "dnnlib",
                                                      "dnnlib.util")}
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    mods["torch_utils"].persistence = mods["torch_utils.persistence"]
    EasyDict.__module__ = "dnnlib.util"
    mods["dnnlib.util"].EasyDict = EasyDict
    mods["dnnlib"].util = mods["dnnlib.util"]
    saved = {name: sys.modules.get(name) for name in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _easy(value: Any) -> Any:
    if isinstance(value, dict):
        return EasyDict({k: _easy(v) for k, v in value.items()})
    return value


class _OfficialPickler(pickle.Pickler):
    """Pickles every nn.Module the way `persistence.persistent_class` does."""

    def __init__(self, file: Any, module_src: str, protocol: int):
        super().__init__(file, protocol=protocol)
        self.module_src = module_src

    def reducer_override(self, obj: Any) -> Any:
        if not isinstance(obj, torch.nn.Module):
            return NotImplemented
        state = dict(obj.__dict__)
        init_kwargs = state.pop("init_kwargs", None)
        for key, value in list(state.items()):
            if type(value) is float:  # the official gains are numpy scalars (np.sqrt etc.)
                state[key] = np.float64(value)
        state["_init_args"] = ()
        state["_init_kwargs"] = ({k: _easy(v) for k, v in init_kwargs.items()} if init_kwargs is not None
                                 else {})
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=type(obj).__name__,
                    state=state)
        return _reconstruct_persistent_obj, (meta,)


def official_pickle_bytes(snapshot: dict[str, Any], module_src: str = HARMLESS_SOURCE, protocol: int = 3) -> bytes:
    """Pickle a snapshot dict (networks + data) in the official persistent-class layout."""
    with official_modules():
        buf = io.BytesIO()
        _OfficialPickler(buf, module_src, protocol).dump(snapshot)
        return buf.getvalue()


def write_official_pickle(path: Path, G: torch.nn.Module, D: torch.nn.Module | None = None,
                          module_src: str = HARMLESS_SOURCE, protocol: int = 3,
                          extra: dict[str, Any] | None = None) -> Path:
    """Write `{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}` like a network-snapshot-*.pkl."""
    import copy

    snapshot: dict[str, Any] = dict(G=copy.deepcopy(G), D=D, G_ema=G, augment_pipe=None,
                                    training_set_kwargs={"class_name": "training.dataset.ImageFolderDataset",
                                                         "resolution": G.img_resolution, "xflip": True})
    snapshot.update(extra or {})
    path.write_bytes(official_pickle_bytes(snapshot, module_src, protocol))
    return path
