"""Registered classifier architectures: a compact ResNet for the embedded 32–64 px zoo and timm models.

Every entry of `ARCHITECTURES` is a builder `build(num_classes, input_size, **arch_params) ->
Classifier`. `build_classifier` is the one way to call them: it validates `arch_params`, seeds the
weight initialisation and loads an optional local `pretrained` file. Nothing is ever downloaded:
timm models are created with `pretrained=False`; `pretrained` is a path on disk.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mibench.classifiers.base import IMAGENET_MEAN, IMAGENET_STD, Backbone, Classifier
from mibench.classifiers.state_dict import map_state_dict, read_state_dict, summarise_mismatch
from mibench.errors import CardError, CheckpointError
from mibench.registry import ARCHITECTURES

# ---------------------------------------------------------------------------------------- compact


class _BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (projection shortcut when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CompactResNet(Backbone):
    """A small ResNet for 32–64 px inputs: 3×3 stem, stages of basic blocks (×2 width, /2 size), GAP.

    The stem has stride 2 by default: at 32 px a full-resolution first stage costs ~4× the compute
    for little gain on face identities, and the embedded zoo must train in about a minute per model.
    """

    def __init__(self, width: int = 32, depths: Sequence[int] = (1, 1, 1), stem_stride: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stem_stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        cin, stages = width, []
        for i, depth in enumerate(depths):
            cout = width * 2 ** i
            blocks = [_BasicBlock(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1)
                      for j in range(depth)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layers = nn.ModuleList(stages)
        self.feature_dim = cin
        self.stem = ["conv1", "bn1"]
        self.stages = [f"layers.{i}" for i in range(len(stages))]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            # Zero-init the last BN of each residual branch: every block starts as the identity,
            # which makes short CPU trainings markedly more stable.
            if isinstance(m, _BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, S, S) → features (N, feature_dim)."""
        x = torch.relu(self.bn1(self.conv1(x)))
        for layer in self.layers:
            x = layer(x)
        return x.mean(dim=(2, 3))


def _norm_stats(mean: Sequence[float] | None, std: Sequence[float] | None, default_mean: Sequence[float],
                default_std: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = tuple(float(v) for v in (mean if mean is not None else default_mean))
    std = tuple(float(v) for v in (std if std is not None else default_std))
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise CardError("mean and std must be 3 numbers each (std > 0)", field="arch_params")
    return mean, std


@ARCHITECTURES.register("compact_resnet", input_size=32, source="mibench",
                        description="compact ResNet for 32–64 px inputs (embedded zoo; ~0.3–1.5 M params)")
def compact_resnet(num_classes: int, input_size: int, *, width: int = 32, depths: Sequence[int] = (1, 1, 1),
                   stem_stride: int = 2, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> Classifier:
    """A `CompactResNet` classifier; `depths` gives the number of blocks per stage.

    The default (width 32, one block per stage, stride-2 stem: 32 px → stages at 16/8/4 px) has
    0.31 M parameters + the head and trains at several hundred images/s on two CPU cores.
    """
    if width < 1 or not depths or min(depths) < 1 or stem_stride not in (1, 2):
        raise CardError("compact_resnet needs width ≥ 1, depths of positive ints, stem_stride 1 or 2",
                        field="arch_params")
    m, s = _norm_stats(mean, std, IMAGENET_MEAN, IMAGENET_STD)
    params = {"width": width, "depths": list(depths), "stem_stride": stem_stride}
    if mean is not None or std is not None:
        params.update(mean=list(m), std=list(s))
    return Classifier(CompactResNet(width, depths, stem_stride), num_classes=num_classes,
                      input_size=input_size, arch="compact_resnet", arch_params=params, mean=m, std=s)


# ---------------------------------------------------------------------------------------- timm

_DENSENET_OLD_KEY = re.compile(r"\.(norm|relu|conv)\.([12])\.")


class TimmBackbone(Backbone):
    """A timm model created without a classifier (`num_classes=0`): images → pooled features."""

    def __init__(self, model_name: str, input_size: int, **kwargs: Any):
        super().__init__()
        import timm

        if model_name.startswith("vit_") or model_name.startswith("deit"):
            kwargs.setdefault("img_size", input_size)  # positional embeddings follow the input size
        try:
            self.model = timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)
        except TypeError as exc:
            raise CardError(f"timm model '{model_name}' rejected a parameter: {exc}", field="arch_params",
                            fix="remove the parameter or check timm's documentation for this model") from None
        except RuntimeError as exc:
            if "Unknown model" in str(exc):
                raise CardError(f"timm has no model '{model_name}'", field="arch_params.model_name",
                                fix="see timm.list_models() for valid names") from None
            raise
        self.model_name = model_name
        self.feature_dim = int(self.model.num_features)
        cfg = getattr(self.model, "pretrained_cfg", None) or {}
        self.default_mean = tuple(cfg.get("mean", IMAGENET_MEAN))
        self.default_std = tuple(cfg.get("std", IMAGENET_STD))
        self.classifier_name = cfg.get("classifier", "fc")
        if isinstance(self.classifier_name, (list, tuple)):  # some models list several heads
            self.classifier_name = self.classifier_name[0]
        info = getattr(self.model, "feature_info", None)
        if not info:
            raise CardError(f"timm model '{model_name}' does not describe its stages (feature_info)",
                            field="arch_params.model_name", fix="use a CNN/ViT family timm supports")
        entries = [dict(e) for e in info]
        # Entries at stride ≤ 2 are the stem (e.g. ResNet's act1); the rest are stages.
        stem_ends = [e["module"] for e in entries if e.get("reduction", 4) <= 2]
        self.stages = ["model." + e["module"] for e in entries if e.get("reduction", 4) > 2]
        self.stem = []
        if stem_ends:
            # The stem is every top-level module up to (and including) the last stem output.
            top = stem_ends[-1].split(".")[0]
            children = [n for n, _ in self.model.named_children()]
            if top in children and "." not in stem_ends[-1]:
                self.stem = ["model." + n for n in children[:children.index(top) + 1]]
            else:
                self.stem = ["model." + stem_ends[-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, S, S) → pooled features (N, feature_dim)."""
        return self.model(x)

    def external_key(self, key: str) -> str | None:
        """torchvision/timm state-dict keys → Classifier keys (classifier weights → `head.`)."""
        if key.startswith(self.classifier_name + "."):
            return "head." + key[len(self.classifier_name) + 1:]
        if key.startswith("AuxLogits."):  # torchvision Inception-v3's auxiliary head: unused at inference
            return None
        if self.model_name.startswith("densenet"):
            key = _DENSENET_OLD_KEY.sub(r".\1\2.", key)  # old torchvision names (norm.1 → norm1)
        return "backbone.model." + key


def timm_classifier(num_classes: int, input_size: int, *, model_name: str,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    arch: str = "timm", **timm_kwargs: Any) -> Classifier:
    """Any timm model (created with `pretrained=False, num_classes=0`) with our linear head."""
    backbone = TimmBackbone(model_name, input_size, **timm_kwargs)
    m, s = _norm_stats(mean, std, backbone.default_mean, backbone.default_std)
    params: dict[str, Any] = dict(timm_kwargs)
    if arch == "timm":
        params["model_name"] = model_name
    if mean is not None or std is not None:
        params.update(mean=list(m), std=list(s))
    return Classifier(backbone, num_classes=num_classes, input_size=input_size, arch=arch,
                      arch_params=params, mean=m, std=s)


@ARCHITECTURES.register("timm", input_size=224, source="timm",
                        description="any timm model by `model_name` (e.g. convnext_tiny); pretrained=False")
def generic_timm(num_classes: int, input_size: int, *, model_name: str, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, **timm_kwargs: Any) -> Classifier:
    """The `timm` architecture: `model_name` picks the model, other params go to timm.create_model."""
    return timm_classifier(num_classes, input_size, model_name=model_name, mean=mean, std=std, **timm_kwargs)

_TIMM_MODELS = {
    "resnet18": (224, "ResNet-18 (PPA / TL-DMI target)"),
    "resnet34": (224, "ResNet-34"),
    "resnet50": (224, "ResNet-50"),
    "resnet101": (224, "ResNet-101"),
    "resnet152": (224, "ResNet-152 (PPA default target)"),
    "densenet121": (224, "DenseNet-121 (PPA target; LOKT surrogate)"),
    "densenet161": (224, "DenseNet-161 (LOKT surrogate)"),
    "densenet169": (224, "DenseNet-169 (PPA target; LOKT surrogate)"),
    "resnest50d": (224, "ResNeSt-50d"),
    "resnest101e": (256, "ResNeSt-101e (PPA target)"),
    "inception_v3": (299, "Inception-v3 (PPA evaluation model)"),
    "vit_base_patch16_224": (224, "ViT-B/16"),
}


def _named_timm_builder(name: str):
    def build(num_classes: int, input_size: int, *, mean: Sequence[float] | None = None,
              std: Sequence[float] | None = None, **timm_kwargs: Any) -> Classifier:
        return timm_classifier(num_classes, input_size, model_name=name, mean=mean, std=std, arch=name,
                               **timm_kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"timm `{name}` backbone with our linear head (extra params go to timm.create_model)."
    return build


for _name, (_size, _desc) in _TIMM_MODELS.items():
    ARCHITECTURES.register(_name, input_size=_size, source="timm",
                           description=_desc)(_named_timm_builder(_name))


# ---------------------------------------------------------------------------------------- entry point


def _check_params(arch: str, builder: Any, params: dict[str, Any]) -> None:
    sig = inspect.signature(builder)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return  # timm builders forward unknown keywords to timm.create_model
    allowed = [n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    for key in params:
        if key not in allowed:
            from mibench.registry import suggest

            raise CardError(f"architecture '{arch}' has no parameter '{key}'{suggest(key, allowed)}",
                            field=f"arch_params.{key}", fix=f"allowed: {', '.join(allowed)}, pretrained")


def build_classifier(arch: str, num_classes: int, input_size: int, arch_params: dict[str, Any] | None = None,
                     *, seed: int | None = None, load_pretrained: bool = True) -> Classifier:
    """Build the registered architecture `arch`; weights are initialised from `seed` when given.

    `arch_params["pretrained"]` (optional) is a local weights file loaded into the backbone (its
    classifier weights are ignored); with `load_pretrained=False` it is only recorded.
    """
    builder = ARCHITECTURES.get(arch)
    params = dict(arch_params or {})
    pretrained = params.pop("pretrained", None)
    _check_params(arch, builder, params)
    if seed is not None:
        # fork_rng keeps the caller's global RNG untouched while making initialisation reproducible.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = builder(num_classes, input_size, **params)
    else:
        model = builder(num_classes, input_size, **params)
    if pretrained is not None:
        model.arch_params["pretrained"] = str(pretrained)
        if load_pretrained:
            load_backbone_weights(model, pretrained)
    return model


def load_backbone_weights(model: Classifier, path: str | Path) -> None:
    """Load a local weights file (e.g. ImageNet weights) into `model.backbone`, ignoring its classifier."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError("pretrained weights file not found", path=path,
                              fix="put the file there or remove `pretrained` from arch_params "
                                  "(mibench never downloads weights)")
    mapped = map_state_dict(model, read_state_dict(path))
    backbone_sd = {k[len("backbone."):]: v for k, v in mapped.items() if k.startswith("backbone.")}
    own = model.backbone.state_dict()
    problem = summarise_mismatch(own, backbone_sd)
    if problem:
        raise CheckpointError(f"pretrained weights do not fit architecture '{model.arch}': {problem}",
                              path=path, fix="use weights for this architecture")
    own.update(backbone_sd)
    model.backbone.load_state_dict(own)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
