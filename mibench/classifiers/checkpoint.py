"""Classifier checkpoint I/O: our own safetensors + JSON sidecar format, and external weight files.

Own format: `<stem>.safetensors` (the state dict) and `<stem>.json` (architecture, arch_params, head,
class names, defense and its params, card, card hash, code version, natural accuracy, training
summary, and the weights' sha256). Both are written atomically, weights first, so a sidecar only
exists next to complete weights; the recorded sha256 catches a pair torn by concurrent writers.

External files (the real setting): `.safetensors`, or `.pt/.pth/.tar/.bin/.ckpt` read with
`torch.load(weights_only=True)` — never a plain unpickle, so a file carrying code is refused rather
than executed. State dicts may be nested (`{'model_state_dict': ...}`, `{'state_dict': ...}`) and
prefixed (`module.` from DataParallel, `model.` from wrapper classes); torchvision/timm key names are
mapped onto the Classifier. Every problem is a `CheckpointError` saying what is wrong and what to do.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from mibench.classifiers.architectures import build_classifier
from mibench.classifiers.base import HEADS, Classifier
from mibench.errors import CheckpointError, MIBenchError
from mibench.fileio import atomic_write_bytes, atomic_write_json, sha256_file, verify_sha256
from mibench.typed import to_dict

FORMAT = "mibench-classifier/1"
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params")
_PREFIXES = ("module.", "model.", "_orig_mod.")
_STRUCTURE_KEYS = ("format", "architecture", "arch_params", "num_classes", "input_size", "feature_dim",
                   "head", "mean", "std", "parameters", "weights_file", "weights_sha256")


# ------------------------------------------------------------------------------------ reading files

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

def _stem(path: str | Path) -> Path:
    path = Path(path).expanduser()
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights file, sidecar file) for a checkpoint stem or either file's path."""
    stem = _stem(path)
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_classifier(model: Classifier, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write `<path>.safetensors` + `<path>.json` atomically; returns the weights path.

    `meta` carries class_names, defense, card, card_hash, code_version, natural_accuracy, train …;
    the architecture fields are filled in from the model.
    """
    weights_path, sidecar_path = checkpoint_paths(path)
    meta = to_dict(dict(meta or {}))
    clash = [k for k in _STRUCTURE_KEYS if k in meta]
    if clash:
        raise ValueError(f"meta may not set {', '.join(clash)}: they are taken from the model")
    # Clone: safetensors refuses tensors that share storage (and needs contiguous CPU memory).
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    data = safetensors.torch.save(state, metadata={"format": FORMAT})
    atomic_write_bytes(weights_path, data)
    sidecar = {"format": FORMAT, **model.describe(), "weights_file": weights_path.name,
               "weights_sha256": sha256_file(weights_path), **meta}
    atomic_write_json(sidecar_path, sidecar)
    return weights_path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The JSON sidecar of a checkpoint written by `save_classifier`."""
    weights_path, sidecar_path = checkpoint_paths(path)
    if not sidecar_path.is_file():
        if weights_path.is_file():
            raise CheckpointError("checkpoint has weights but no JSON sidecar (an interrupted write?)",
                                  path=sidecar_path, fix="delete the weights file and rebuild the model")
        raise CheckpointError("checkpoint not found", path=weights_path,
                              fix="build it (`mibench zoo build`) or fix the path")
    try:
        meta = json.loads(sidecar_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"sidecar is not valid JSON: {exc}", path=sidecar_path,
                              fix="delete the checkpoint and rebuild it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"not a {FORMAT} sidecar", path=sidecar_path, fix="rebuild the checkpoint")
    return meta


def load_classifier(path: str | Path, *, expected_arch: str | None = None,
                    expected_num_classes: int | None = None, sha256: str | None = None,
                    device: str | torch.device = "cpu") -> tuple[Classifier, dict[str, Any]]:
    """Load a checkpoint written by `save_classifier`: (Classifier in eval mode, sidecar meta)."""
    weights_path, sidecar_path = checkpoint_paths(path)
    meta = read_meta(path)
    if not weights_path.is_file():
        raise CheckpointError("checkpoint weights file is missing", path=weights_path,
                              fix="delete the sidecar and rebuild the model")
    verify_sha256(weights_path, sha256, what="checkpoint")
    verify_sha256(weights_path, meta.get("weights_sha256"), what="checkpoint (vs. its sidecar)")
    if expected_arch is not None and meta["architecture"] != expected_arch:
        raise CheckpointError(f"checkpoint is a '{meta['architecture']}' but '{expected_arch}' was expected",
                              path=sidecar_path, fix="use the checkpoint made for this card or rebuild it")
    if expected_num_classes is not None and meta["num_classes"] != expected_num_classes:
        raise CheckpointError(f"checkpoint has {meta['num_classes']} classes but {expected_num_classes} were "
                              "expected", path=sidecar_path, fix="use the checkpoint made for this card")
    model = build_classifier(meta["architecture"], meta["num_classes"], meta["input_size"],
                             meta.get("arch_params", {}), load_pretrained=False)
    head = meta.get("head", {"kind": "linear"})
    if head.get("kind", "linear") != "linear":
        model.set_head(HEADS.get(head["kind"]).from_spec(model.feature_dim, model.num_classes, head))
    sd = read_state_dict(weights_path)
    _load_into(model, sd, weights_path, f"'{meta['architecture']}'")
    return model.to(device).eval(), meta


# ------------------------------------------------------------------------------------ external files

def load_external_classifier(card: Any, path: str | Path | None = None, *, sha256: str | None = None,
                             defense: Any = None, device: str | torch.device = "cpu") -> Classifier:
    """Build the classifier a TargetCard describes and load user-provided weights into it.

    `path`/`sha256` default to the card's `weights`. `defense` (a Defense) adapts the architecture
    first (e.g. MID's VIB head); by default it is resolved from the card when it names one.
    """
    weights = getattr(card, "weights", None)
    if path is None:
        path = weights.resolved_path() if weights is not None else None
        if path is None:
            raise CheckpointError(f"card '{card.name}' gives no weights path",
                                  path=getattr(card, "path", None) or None, field="weights.path",
                                  fix="set weights.path to the local weights file")
    if sha256 is None and weights is not None:
        sha256 = weights.sha256
    path = Path(path).expanduser()
    if not path.is_file():
        hint = f" (obtain it from {weights.url})" if weights is not None and weights.url else ""
        raise CheckpointError(f"weights file for card '{card.name}' not found{hint}", path=path,
                              fix="put the file there or set weights.path in the card "
                                  "(nothing is downloaded)")
    verify_sha256(path, sha256, what=f"weights of card '{card.name}'")
    model = build_classifier(card.architecture, card.num_classes, card.input_size, card.arch_params)
    if defense is None and getattr(getattr(card, "defense", None), "card", "none") != "none":
        from mibench.cards import resolve_defense
        from mibench.defenses import build_defense

        dcard, params = resolve_defense(card)
        defense = build_defense(dcard.kind, params, path=dcard.path)
    if defense is not None:
        model = defense.adapt_architecture(model)
    sd = map_state_dict(model, read_state_dict(path))
    head_key = "head." + getattr(model.head, "classes_key", "weight")
    if head_key in sd and sd[head_key].ndim >= 1 and sd[head_key].shape[0] != card.num_classes:
        raise CheckpointError(f"checkpoint has {sd[head_key].shape[0]} classes but card '{card.name}' says "
                              f"{card.num_classes} — fix num_classes or use the right file", path=path)
    _load_into(model, sd, path, f"'{card.architecture}' of card '{card.name}'")
    return model.to(device).eval()
