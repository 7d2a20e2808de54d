"""The uniform classifier interface every architecture is wrapped in.

A `Classifier` = `backbone` (images → penultimate features (N, D)) + `head` (features → logits
(N, K)). Callers always pass float images (N, 3, H, W) in [0, 1] at any size: the classifier resizes
to its `input_size` (antialiased bilinear) and normalises with its own mean/std buffers, so nothing
upstream ever normalises. A defense may replace the head (MID's VIB head) or freeze leading stages
(TL-DMI); heads are registered in `HEADS` so checkpoints can rebuild them.

Backbones describe their structure as a *stem* plus an ordered list of *stages* (module paths). That
one description drives `hidden()` (BiDO's intermediate activations) and `freeze_leading()` (TL-DMI).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mibench.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Head kinds by name, so a checkpoint sidecar can say which head to rebuild ("linear", "vib", ...).
# A head class provides `spec() -> dict` (with "kind") and `from_spec(feature_dim, num_classes, spec)`.
HEADS: Registry[Any] = Registry("classifier head")

# Attribute set on BatchNorm modules whose statistics must not change (frozen by TL-DMI).
_FROZEN_FLAG = "mibench_frozen"


@HEADS.register("linear", description="one fully connected layer")
class LinearHead(nn.Linear):
    """The plain classification head: logits = W f + b, (N, D) → (N, K)."""

    classes_key = "weight"  # state-dict key (within the head) whose first dimension is K

    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__(feature_dim, num_classes)

    def spec(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild this head."""
        return {"kind": "linear"}

    @classmethod
    def from_spec(cls, feature_dim: int, num_classes: int, spec: dict[str, Any]) -> LinearHead:
        """Rebuild from `spec()` output."""
        return cls(feature_dim, num_classes)


class Backbone(nn.Module):
    """Images (N, 3, H, W), already resized and normalised → features (N, feature_dim).

    Subclasses set `feature_dim`, `stem` (module paths of the stem, may be empty) and `stages`
    (module paths of the stages in forward order, each a module whose output is a stage output).
    """

    feature_dim: int
    stem: list[str]
    stages: list[str]

    def external_key(self, key: str) -> str | None:
        """Map a key of a foreign state dict to this Classifier's key (None: drop it).

        The default treats the file as this backbone's own state dict.
        """
        return "backbone." + key

    def unit_names(self) -> list[str]:
        """Names of the freezable units in forward order: 'stem' (if any) then each stage."""
        return (["stem"] if self.stem else []) + list(self.stages)

    def units(self) -> list[list[nn.Module]]:
        """Modules owning parameters/buffers, grouped by unit (stem, stage 1, …) in forward order.

        Each module that directly owns tensors is assigned to the first unit whose subtree ends at or
        after it in registration order (which follows forward order for every supported model);
        anything after the last stage (e.g. a final norm) joins the last unit.
        """
        names = [n for n, _ in self.named_modules()]
        pos = {n: i for i, n in enumerate(names)}
        boundaries = []  # index of the last module in each unit's subtree
        for group in ([self.stem] if self.stem else []) + [[s] for s in self.stages]:
            last = 0
            for root in group:
                if root not in pos:
                    raise KeyError(f"backbone has no module '{root}'")
                sub = [i for n, i in pos.items() if n == root or n.startswith(root + ".")]
                last = max(last, max(sub))
            boundaries.append(last)
        out: list[list[nn.Module]] = [[] for _ in boundaries]
        for name, module in self.named_modules():
            if not any(True for _ in module.parameters(recurse=False)) and not any(
                    True for _ in module.buffers(recurse=False)):
                continue
            i = pos[name]
            unit = next((u for u, b in enumerate(boundaries) if i <= b), len(boundaries) - 1)
            out[unit].append(module)
        return out


class Classifier(nn.Module):
    """Images in [0, 1] (N, 3, H, W), any size → logits (N, K); also features and hidden activations."""

    def __init__(self, backbone: Backbone, *, num_classes: int, input_size: int, arch: str,
                 arch_params: dict[str, Any] | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, head: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head if head is not None else LinearHead(backbone.feature_dim, num_classes)
        self.num_classes = int(num_classes)
        self.input_size = int(input_size)
        self.feature_dim = int(backbone.feature_dim)
        self.arch = arch
        self.arch_params = dict(arch_params or {})
        # Non-persistent: normalisation is part of the architecture (arch_params), not the weights,
        # so foreign state dicts (which never contain these) load strictly.
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    # ----------------------------------------------------------------------------- inputs
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) in [0, 1] (uint8 accepted) → resized, normalised (N, 3, S, S)."""
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W), got shape {tuple(x.shape)}")
        s = self.input_size
        if x.shape[-2] != s or x.shape[-1] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False,
                              antialias=max(x.shape[-2], x.shape[-1]) > s)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    # ----------------------------------------------------------------------------- outputs
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate (backbone) features (N, D) of images in [0, 1]."""
        return self.backbone(self.preprocess(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) of images (N, 3, H, W) in [0, 1]."""
        return self.head(self.features(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, D), logits (N, K)) from one forward pass."""
        f = self.features(x)
        return f, self.head(f)

    def forward_hidden(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(hidden activations, logits (N, K)) from one forward pass; see `hidden`."""
        wanted = self.backbone.stages[:-1]
        captured: dict[str, torch.Tensor] = {}
        modules = dict(self.backbone.named_modules())
        handles = []
        for name in wanted:
            def hook(_m, _inp, out, name=name):
                captured[name] = out
            handles.append(modules[name].register_forward_hook(hook))
        try:
            f = self.features(x)
        finally:
            for h in handles:
                h.remove()
        hidden = [captured[n] for n in wanted] + [f]
        return hidden, self.head(f)

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate activations: the output of every backbone stage but the last, then the features.

        Mirrors BiDO, which constrains the output of each convolutional block and the final
        features (the last stage's output only differs from the features by pooling).
        """
        return self.forward_hidden(x)[0]

    # ----------------------------------------------------------------------------- structure
    def set_head(self, head: nn.Module) -> None:
        """Replace the head (it must map (N, feature_dim) → (N, num_classes) and provide `spec()`)."""
        self.head = head

    def head_spec(self) -> dict[str, Any]:
        """How to rebuild the head (recorded in checkpoints)."""
        return self.head.spec()

    def freeze_leading(self, count: int) -> list[str]:
        """Freeze the first `count` backbone units (stem, stages…): no gradients, BatchNorm in eval.

        Returns the names of the frozen units. Frozen BatchNorm layers stay in eval mode through
        `train()`, so their running statistics never change.
        """
        names = self.backbone.unit_names()
        if not 0 <= count <= len(names):
            raise ValueError(f"can freeze 0..{len(names)} units ({', '.join(names)}), not {count}")
        for group in self.backbone.units()[:count]:
            for module in group:
                for p in module.parameters(recurse=False):
                    p.requires_grad_(False)
                if isinstance(module, _BatchNorm):
                    setattr(module, _FROZEN_FLAG, True)
                    module.eval()
        return names[:count]

    def frozen_norms(self) -> Iterator[nn.Module]:
        """BatchNorm modules frozen by `freeze_leading`."""
        return (m for m in self.modules() if getattr(m, _FROZEN_FLAG, False))

    def train(self, mode: bool = True) -> Classifier:
        """Set training mode, keeping frozen BatchNorm layers in eval mode."""
        super().train(mode)
        for m in self.frozen_norms():
            m.eval()
        return self

    def describe(self) -> dict[str, Any]:
        """The architecture as plain data (recorded in checkpoints and entries)."""
        return {"architecture": self.arch, "arch_params": dict(self.arch_params),
                "num_classes": self.num_classes, "input_size": self.input_size,
                "feature_dim": self.feature_dim, "head": self.head_spec(),
                "mean": [round(float(v), 6) for v in self.mean.flatten()],
                "std": [round(float(v), 6) for v in self.std.flatten()],
                "parameters": sum(p.numel() for p in self.parameters())}
