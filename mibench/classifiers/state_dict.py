"""Reading classifier weights files written by other code (PPA's checkpoints, timm / torchvision
state dicts): safe loading (`weights_only=True` or safetensors), unwrapping, prefix stripping and
mapping onto a mibench `Classifier`, with mismatch messages a person can act on."""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from mibench.classifiers.base import Classifier
from mibench.errors import CheckpointError, MIBenchError

_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params")
_PREFIXES = ("module.", "model.", "_orig_mod.")


def _torch_load(path: Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol / FutureWarning noise; errors still raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "Weights only load failed" in msg or "weights_only" in msg:
            found = re.search(r"GLOBAL ([\w.]+)", msg)
            fix = ("re-save only the state dict (torch.save(model.state_dict(), ...)) or convert it to "
                   ".safetensors in a trusted environment")
            if found:
                raise CheckpointError(
                    f"refusing to unpickle: the file references `{found.group(1)}`, which is not a tensor "
                    "type — loading it could execute code", path=path, fix=fix) from None
            detail = next((ln.strip() for ln in msg.splitlines() if ln.strip().startswith("Unsupported")), "")
            detail = f" ({detail})" if detail else ""
            raise CheckpointError(
                f"refusing to unpickle: the safe (weights-only) loader rejected the file{detail} — it is "
                "not a plain PyTorch state dict: damaged, an unsupported pickle, or carrying code",
                path=path, fix=fix) from None
        raise CheckpointError(f"cannot read checkpoint (truncated or corrupt?): {msg.splitlines()[0]}",
                              path=path, fix="re-download or re-copy the file") from None
    except MIBenchError:
        raise
    except Exception as exc:  # torch raises RuntimeError/OSError/EOFError/KeyError on damaged files
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint (truncated or corrupt?): {detail}", path=path,
                              fix="re-download or re-copy the file") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Find the state dict inside a (possibly nested) checkpoint object."""
    for _ in range(4):
        if _is_state_dict(obj):
            return dict(obj)
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            # A checkpoint dict mixing tensors with bookkeeping (epoch, step …): keep the tensors.
            tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
            if tensors:
                return tensors
            break
        obj = inner
    keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"no state dict found in checkpoint (top level: {keys})", path=path,
                          fix="save `model.state_dict()` (optionally under 'state_dict' or "
                              "'model_state_dict')")


def strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove `module.` / `model.` / `_orig_mod.` prefixes shared by every key (repeatedly)."""
    changed = True
    while changed and sd:
        changed = False
        for p in _PREFIXES:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat, prefix-stripped state dict from a `.safetensors` or torch file (weights_only)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError("weights file not found", path=path,
                              fix="put the file there or fix the weights path in the card")
    if path.suffix == ".safetensors":
        try:
            sd = safetensors.torch.load_file(str(path), device="cpu")
        except Exception as exc:  # SafetensorError: header / size problems
            raise CheckpointError(f"cannot read safetensors file (truncated or corrupt?): {exc}", path=path,
                                  fix="re-download or re-copy the file") from None
    else:
        sd = _unwrap(_torch_load(path), path)
    return strip_prefixes(sd)


# ------------------------------------------------------------------------------------ key mapping

def map_state_dict(model: Classifier, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a foreign (torchvision/timm-style) or own state dict onto `model`'s keys."""
    own = model.state_dict()
    if any(k.startswith("backbone.") for k in sd) and all(
            k.startswith(("backbone.", "head.")) for k in sd):
        return dict(sd)  # already a Classifier state dict
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        mapped = model.backbone.external_key(k)
        if mapped is not None:
            out[mapped] = v
    # BatchNorm counters are bookkeeping, absent from some older files: take ours.
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in out:
            out[k] = v
    return out


def _examples(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f", … (+{len(keys) - n})" if len(keys) > n else "")


def summarise_mismatch(own: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> str:
    """'' when `given` fits `own` exactly (keys and shapes), else a one-line summary."""
    missing = [k for k in own if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in own]
    shapes = [f"{k} {tuple(given[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in given and tuple(given[k].shape) != tuple(own[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_examples(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_examples(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches ({_examples(shapes)})")
    return "; ".join(parts)


def _load_into(model: Classifier, sd: dict[str, torch.Tensor], path: Path, what: str) -> None:
    own = model.state_dict()
    problem = summarise_mismatch(own, sd)
    if problem:
        raise CheckpointError(f"weights do not match architecture {what}: {problem}", path=path,
                              fix="check the card's architecture / arch_params, or use the file made for it")
    own.update({k: v for k, v in sd.items() if k in own})
    model.load_state_dict(own)


# ------------------------------------------------------------------------------------ own format

