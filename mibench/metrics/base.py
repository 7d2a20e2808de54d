"""Shared pieces of the metrics: the `MetricUnavailable` error, batched feature extraction, and the
safe local-weights loading used by the pretrained feature extractors (Inception, FaceNet).

Pretrained extractors never download: their weights come from a path the user gives (argument or
environment variable). A metric that cannot be computed here (no weights, too few samples) raises
`MetricUnavailable` so a run can record *why* it is missing instead of crashing or faking a value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from mibench.errors import CheckpointError, MIBenchError


class MetricUnavailable(MIBenchError):
    """A metric cannot be computed in this setting; `.reason` says why (and how to fix it) in plain words."""

    def __init__(self, reason: str, **kwargs):
        super().__init__(reason, **kwargs)
        self.reason = str(self)  # the full text, fix included, is what a run records for the metric


def to_unit_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] images → float32 [0, 1] (no copy when already float32)."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    if not batch.is_floating_point():
        raise ValueError(f"images must be uint8 or floating point, got {batch.dtype}")
    return batch.float()


def _module_device(fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.device | None:
    """The device of `fn`'s first parameter or buffer when it is an nn.Module, else None."""
    if isinstance(fn, nn.Module):
        for t in fn.parameters():
            return t.device
        for t in fn.buffers():
            return t.device
    return None


@torch.no_grad()
def extract_features(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                     batch_size: int = 64, device: str | torch.device | None = None) -> torch.Tensor:
    """Run `fn` over `images` (N, 3, H, W) (float [0, 1] or uint8) in batches → (N, D) float32 on CPU.

    `device` defaults to the device of `fn` (when it is a module) or of `images`. Batches are moved
    (and uint8 converted) one at a time so a large uint8 dataset never materialises as float.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = torch.device(device) if device is not None else (_module_device(fn) or images.device)
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = to_unit_float(images[start:start + batch_size].to(dev, non_blocking=True))
        feats = fn(batch)
        if isinstance(feats, (list, tuple)):  # some backbones return a list of feature maps
            feats = feats[-1]
        out.append(feats.reshape(feats.shape[0], -1).float().cpu())
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


def check_unit_range(images: torch.Tensor, what: str, tol: float = 1e-3) -> None:
    """Raise ValueError unless `images` is floating point with values in [0, 1] (up to `tol`).

    Catches the common mistake of feeding generator output in [-1, 1] (or 0–255 values) to an
    extractor that normalises internally — the bug that puts published FID values off scale.
    """
    if not images.is_floating_point():
        raise ValueError(f"{what}: images must be float in [0, 1], got {images.dtype}")
    if images.numel() == 0:
        return
    lo, hi = float(images.min()), float(images.max())
    if lo < -tol or hi > 1.0 + tol:
        raise ValueError(f"{what}: images must be in [0, 1] (got values in [{lo:.3g}, {hi:.3g}]); "
                         "convert generator output with (x + 1) / 2 and do not normalise beforehand")


def resolve_weights_path(explicit: str | Path | None, env_var: str, *, what: str,
                         standard_name: str, fallbacks: Sequence[Path] = ()) -> Path:
    """The local weights file to use: `explicit`, else `$env_var`, else the first existing fallback.

    Raises MetricUnavailable (with the environment variable and file name to set) when none exists.
    """
    hint = f"set {env_var}=/path/to/{standard_name} (or pass weights_path=)"
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise MetricUnavailable(f"{what} not found at {path}", fix=hint)
        return path
    env = os.environ.get(env_var, "")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise MetricUnavailable(f"{what} not found at {path} (from ${env_var})", fix=hint)
        return path
    for cand in fallbacks:
        if cand.is_file():
            return cand
    raise MetricUnavailable(f"{what} not found", fix=hint)


def load_state_dict_file(path: str | Path, *, what: str) -> dict[str, torch.Tensor]:
    """Load a tensor state dict from a `.safetensors` file or a torch file (weights_only=True).

    A `{"state_dict": {...}}` wrapper is unwrapped. Anything else (corrupt file, pickled code, no
    tensors) raises a CheckpointError naming the file.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (UnpicklingError, RuntimeError, EOFError)
        raise CheckpointError(f"could not read {what}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                              path=path, fix="point to the original weights file (a tensor state dict; "
                                             "files that need arbitrary unpickling are refused)") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{what} is not a tensor state dict", path=path,
                              fix="point to the original weights file")
    return obj


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], *, path: str | Path, what: str) -> None:
    """`module.load_state_dict(state, strict=True)`, turning any mismatch into a CheckpointError."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{what}: the state dict does not match the network: {summarise_load_error(exc)}", path=path,
                              fix="use the original weights file for this network") from exc


def summarise_load_error(exc: RuntimeError) -> str:
    """The first lines of torch's (very long) load_state_dict error message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = " ".join(lines[1:3] if len(lines) > 1 else lines)
    return text[:300] + ("…" if len(text) > 300 else "")


def torch_hub_checkpoints_dir() -> Path:
    """`$TORCH_HOME/hub/checkpoints` (where torch.hub caches files), without importing torch.hub state."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def torch_home() -> Path:
    """`$TORCH_HOME` (default `$XDG_CACHE_HOME/torch`, i.e. `~/.cache/torch`)."""
    default = os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.environ.get("TORCH_HOME", default)).expanduser()


# ----------------------------------------------------------------------------- metric kinds

@dataclass(frozen=True)
class Column:
    """One value a metric kind writes into an entry's `metrics` (and the table, CSV, schema, page)."""

    name: str  # key in entry["metrics"] and the CSV column
    more_leakage: str  # "higher" or "lower": which direction means the attack recovered more
    description: str = ""
    percent: bool = False  # shown as a percentage
    digits: int = 3  # significant digits when not a percentage
    label: str = ""  # text-table header (default: name)
    page_key: str = ""  # the page's column key ('' = not on the page)
    page_label: str = ""  # the page's column header
    fallback: str = ""  # the page shows this column's value (marked) when this one is missing
    in_table: bool = False  # shown in the printed results table
    required: bool = False  # every entry has this key (the schema requires it)
    unit: str = ""

    def format(self, v: Any) -> str:
        """The value as printed in tables ('n/a' when missing)."""
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "n/a"
        if self.percent:
            return f"{100 * v:.1f}"
        return f"{v:.{self.digits}g}" if isinstance(v, float) else str(v)

    def format_with_interval(self, v: Any, interval: dict[str, Any] | None) -> str:
        """'62.5 ± 3.1': the value and half the width of its 95 % interval (the value alone without one)."""
        text = self.format(v)
        if interval is None or text == "n/a":
            return text
        half = (interval["hi"] - interval["lo"]) / 2
        return f"{text} ± {100 * half:.1f}" if self.percent else f"{text} ± {half:.2g}"


@dataclass
class ClassBatch:
    """One attacked class's reconstructions as the evaluation model sees them."""

    class_id: int
    images: torch.Tensor  # (n, 3, H, W) uint8
    labels: torch.Tensor  # (n,) the attacked class
    feats: torch.Tensor  # (n, D) evaluation-model penultimate features
    logits: torch.Tensor  # (n, K) evaluation-model logits


@dataclass
class RunBatch:
    """All scored reconstructions of a run, and the private images of the attacked classes."""

    classes: list[int]
    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,)
    feats: torch.Tensor  # (N, D) evaluation-model features
    real_images: torch.Tensor  # (M, 3, H', W') uint8, private-train images of the attacked classes
    real_labels: torch.Tensor  # (M,)
    real_feats: torch.Tensor  # (M, D)


class Metric:
    """A metric kind: the columns it produces, its scope, what it needs, and how to compute it.

    Registered in `METRICS` under `name` (an instance); the scorer, the text table, the CSV, the
    entry schema and the page iterate the registry, so adding a metric is one file. `scope` is
    'class' (computed as each class finishes, kept if a run is interrupted) or 'run'. Per-class
    values aggregate to the entry as the mean over all attacked classes (`aggregate='all'`: a
    failed class counts as 0) or over the scored classes (`'scored'`). `setup` loads what the
    metric needs (e.g. local Inception weights) and raises MetricUnavailable with the reason when
    it cannot; the run then records the reason for each of its columns."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    columns: ClassVar[tuple[Column, ...]] = ()
    scope: ClassVar[str] = "class"
    aggregate: ClassVar[str] = "scored"
    requires: ClassVar[str] = "evaluation model"  # what the metric's features come from
    default: ClassVar[bool] = True  # computed in every run (others on request: RunSpec.extra_metrics)
    order: ClassVar[int] = 100  # position in tables and the CSV
    # Scope 'run': class resamples for the bootstrap interval (the statistic is recomputed on each:
    # 50 keep a 100-class run's finalisation at ~15 s on one core); 0 = no interval, for a kind too
    # costly to recompute (`interval_note` says why). Scope 'class' kinds always get one: the
    # bootstrap of their per-class values (2000 resamples).
    interval_resamples: ClassVar[int] = 50
    interval_note: ClassVar[str] = ""

    def setup(self, ctx: Any) -> None:
        """Load what the metric needs (raise MetricUnavailable when it cannot be computed here)."""

    def not_applicable(self, num_classes: int) -> dict[str, str]:
        """Columns that mean nothing for a target with `num_classes` classes, with the reason (the
        entry records them as null with that reason instead of a value that cannot vary)."""
        return {}

    def chance(self, ctx: Any) -> dict[str, float]:
        """Column → the value a random guess scores in this run (recorded beside the values); {} when
        no chance level is defined."""
        return {}

    def score_class(self, ctx: Any, batch: ClassBatch) -> dict[str, float]:
        """Per-class values (scope 'class')."""
        return {}

    def score_run(self, ctx: Any, batch: RunBatch) -> dict[str, float]:
        """Whole-run values (scope 'run')."""
        return {}


def metric_kinds(names: Any = ()) -> list[Metric]:
    """The default metric kinds plus the named optional ones, in table order."""
    from mibench.registry import METRICS

    kinds = [METRICS.get(n) for n in METRICS.names()]
    extra = set(names or ())
    return sorted((k for k in kinds if k.default or k.name in extra), key=lambda k: (k.order, k.name))


def all_columns(names: Any = ()) -> list[Column]:
    """Every column of `metric_kinds(names)`, in table order."""
    return [c for k in metric_kinds(names) for c in k.columns]


def entry_columns(entries: Sequence[dict[str, Any]]) -> list[Column]:
    """The columns to show for some entries: every default metric's, and an optional metric's when
    one of the entries has it (in table order)."""
    from mibench.registry import METRICS

    present = {k for e in entries for k in e["metrics"]}
    return all_columns([n for n in METRICS.names() if any(c.name in present for c in METRICS.get(n).columns)])
