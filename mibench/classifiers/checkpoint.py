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
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from mibench.classifiers.architectures import build_classifier
from mibench.classifiers.base import HEADS, Classifier
from mibench.classifiers.state_dict import _load_into, map_state_dict, read_state_dict  # noqa: F401
from mibench.errors import CheckpointError
from mibench.ops.fileio import atomic_write_bytes, atomic_write_json, sha256_file, verify_sha256
from mibench.typed import to_dict

FORMAT = "mibench-classifier/1"
_STRUCTURE_KEYS = ("format", "architecture", "arch_params", "num_classes", "input_size", "feature_dim",
                   "head", "mean", "std", "parameters", "weights_file", "weights_sha256")


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

    `path`/`sha256` default to the card's `weights`. `defense` (a Defense, built by the caller from
    the card's resolved defense) adapts the architecture first (e.g. MID's VIB head).
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
    if defense is not None:
        model = defense.adapt_architecture(model)
    sd = map_state_dict(model, read_state_dict(path))
    head_key = "head." + getattr(model.head, "classes_key", "weight")
    if head_key in sd and sd[head_key].ndim >= 1 and sd[head_key].shape[0] != card.num_classes:
        raise CheckpointError(f"checkpoint has {sd[head_key].shape[0]} classes but card '{card.name}' says "
                              f"{card.num_classes} — fix num_classes or use the right file", path=path)
    _load_into(model, sd, path, f"'{card.architecture}' of card '{card.name}'")
    return model.to(device).eval()
