"""Deterministic classifier training: seeded shuffling and batch augmentation, defense-provided loss.

The whole (small) dataset is materialised once with `ds.load_tensors()` (uint8) and indexed in
memory. Every random draw comes from explicit `torch.Generator`s seeded from `recipe.seed`, so the
same model initialisation + recipe on the same machine gives bit-identical weights (on GPU, cuDNN
may still pick non-deterministic kernels). The loss is `defense.loss(model, x, y, progress)`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from mibench.classifiers.base import Classifier
from mibench.classifiers.recipe import Augment, TrainRecipe
from mibench.data.base import ImageDataset
from mibench.errors import DataError
from mibench.ops.transforms import rotate
from mibench.seeding import make_generator

# Datasets up to this many bytes (uint8) are moved to the accelerator once instead of per batch.
_ON_DEVICE_LIMIT = 1 << 30


@dataclass
class TrainResult:
    """The trained model, its natural (test) accuracy, per-epoch history and optionally the best state."""

    model: Classifier
    natural_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_accuracy: float | None = None
    seconds: float = 0.0
    images_per_second: float = 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary for checkpoint sidecars and entries."""
        last = self.history[-1] if self.history else {}
        return {"epochs": len(self.history), "natural_accuracy": self.natural_accuracy,
                "best_accuracy": self.best_accuracy, "final_loss": last.get("loss"),
                "final_train_accuracy": last.get("train_acc"), "seconds": round(self.seconds, 2),
                "images_per_second": round(self.images_per_second, 1), "history": self.history}


# ------------------------------------------------------------------------------------ augmentation

def augment_batch(x: torch.Tensor, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop, horizontal flip and colour jitter of a float batch (N, 3, H, W) in [0, 1].

    All random parameters are drawn on the CPU from `generator` (identical on every device), then
    applied in one vectorised `grid_sample` per batch.
    """
    n, dev = x.shape[0], x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    sx = torch.ones(n)
    sy = torch.ones(n)
    tx = torch.zeros(n)
    ty = torch.zeros(n)
    if aug.crop_scale is not None:
        area = uniform(*aug.crop_scale)
        log_ratio = uniform(math.log(aug.crop_ratio[0]), math.log(aug.crop_ratio[1]))
        ratio = torch.exp(log_ratio)
        # Crop side lengths as fractions of the image side (width/height = ratio, area fraction = area).
        sx = torch.sqrt(area * ratio).clamp(max=1.0)
        sy = torch.sqrt(area / ratio).clamp(max=1.0)
        tx = (1 - sx) * (2 * torch.rand(n, generator=generator) - 1)  # centre in normalised coordinates
        ty = (1 - sy) * (2 * torch.rand(n, generator=generator) - 1)
    flip = torch.rand(n, generator=generator) < 0.5 if aug.flip else torch.zeros(n, dtype=torch.bool)
    if aug.crop_scale is not None or aug.flip:
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = torch.where(flip, -sx, sx)
        theta[:, 0, 2] = tx
        theta[:, 1, 1] = sy
        theta[:, 1, 2] = ty
        grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if aug.color_jitter > 0:
        j = aug.color_jitter
        b = uniform(1 - j, 1 + j).to(dev, x.dtype).view(n, 1, 1, 1)
        c = uniform(1 - j, 1 + j).to(dev, x.dtype).view(n, 1, 1, 1)
        s = uniform(1 - j, 1 + j).to(dev, x.dtype).view(n, 1, 1, 1) if aug.jitter_saturation else None
        # Extra draws only for the options that need them: recipes without them keep their numbers.
        keep = (torch.rand(n, generator=generator) >= aug.jitter_p).to(dev).view(n, 1, 1, 1) if aug.jitter_p < 1 else None
        y = x * b
        gray = (0.299 * y[:, 0:1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:3])
        y = (y - gray.mean(dim=(2, 3), keepdim=True)) * c + gray.mean(dim=(2, 3), keepdim=True)
        if s is not None:
            gray = (0.299 * y[:, 0:1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:3])
            y = gray + (y - gray) * s
        x = y if keep is None else torch.where(keep, x, y)
    if aug.rotation > 0:
        x = x.clamp(0, 1)
        angle = (2 * torch.rand(n, generator=generator) - 1) * math.radians(aug.rotation)
        x = rotate(x, angle, torch.rand(n, generator=generator) < aug.rotation_p)
    return x.clamp(0, 1)


# ------------------------------------------------------------------------------------ schedule

def lr_factor(step: int, recipe: TrainRecipe, steps_per_epoch: int) -> float:
    """Multiplier of `recipe.lr` at optimizer step `step` (linear warm-up, then the schedule)."""
    total = recipe.epochs * steps_per_epoch
    warm = min(recipe.warmup_epochs * steps_per_epoch, total)
    if step < warm:
        return (step + 1) / warm
    if recipe.schedule == "cosine":
        span = max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / span)))
    if recipe.schedule == "step":
        epoch = step // steps_per_epoch
        return recipe.gamma ** sum(1 for m in recipe.milestones if epoch >= m)
    return 1.0


def _optimizer(params: list[torch.nn.Parameter], recipe: TrainRecipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                               weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


# ------------------------------------------------------------------------------------ evaluation

@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, device: str | torch.device = "cpu",
            batch_size: int = 256) -> torch.Tensor:
    """Top-1 labels (N,) on CPU of uint8 `images` (N, 3, H, W) (eval mode; the previous mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(images[i:i + batch_size].to(device).float() / 255.0).argmax(dim=1).cpu()
                              for i in range(0, images.shape[0], batch_size)])
    finally:
        model.train(was_training)


def evaluate_accuracy(model: Classifier, ds: ImageDataset, device: str | torch.device = "cpu",
                      batch_size: int = 256) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of `model` on `ds` (eval mode; the previous mode is restored)."""
    x_all, y_all = ds.load_tensors()
    if x_all.shape[0] == 0:
        return 0.0
    return int((predict(model, x_all, device, batch_size) == y_all).sum()) / x_all.shape[0]


# ------------------------------------------------------------------------------------ training

class PlainCrossEntropy:
    """The loss of an undefended classifier (what `train_classifier` uses without a defense):
    cross-entropy, every parameter with requires_grad trained. Defenses implement the same three
    members (`mibench.defenses.base.Defense`)."""

    kind = "none"
    needs_prepare = False

    def loss(self, model: Classifier, x: torch.Tensor, y: torch.Tensor,
             progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        """(scalar loss, logs) for images x (N, 3, H, W) in [0, 1] and labels y (N,)."""
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        return ce, {"ce": float(ce.detach()), "acc": float((logits.detach().argmax(dim=1) == y).float().mean())}

    def trainable_parameters(self, model: Classifier):
        """The parameters the optimizer updates (those with requires_grad)."""
        return (p for p in model.parameters() if p.requires_grad)


def train_classifier(model: Classifier, train_ds: ImageDataset, test_ds: ImageDataset | None,
                     recipe: TrainRecipe, *, defense: Any = None, device: str | torch.device = "cpu",
                     progress: bool = True, desc: str = "", keep_best: bool = False,
                     eval_batch_size: int = 256, channels_last: bool = True) -> TrainResult:
    """Train `model` with `recipe`, the loss coming from `defense` (plain CE when None).

    Call `defense.prepare(model, ctx)` before this (it may replace the head or freeze layers).
    The final weights are kept; `keep_best=True` additionally evaluates after every epoch and
    returns the best state (selected on `test_ds`, so its accuracy is optimistic).
    `channels_last` (NHWC) convolutions are ~15–20 % faster on CPU (oneDNN) and on recent GPUs.
    """
    from tqdm import tqdm

    if defense is None:
        defense = PlainCrossEntropy()
    if getattr(defense, "needs_prepare", False) and not getattr(defense, "prepared", False):
        raise ValueError(f"defense '{defense.kind}' must be prepared first: call defense.prepare(model, ctx)")
    device = torch.device(device)
    model.to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    x_all, y_all = train_ds.load_tensors()
    n = int(x_all.shape[0])
    if n < 2:
        raise ValueError("training needs at least 2 images")
    if int(y_all.min()) < 0 or int(y_all.max()) >= model.num_classes:
        span = f"{int(y_all.min())}..{int(y_all.max())}"
        raise DataError(f"labels of '{train_ds.name}:{train_ds.split}' span {span} but the model has "
                        f"{model.num_classes} classes",
                        fix="train on a labelled split whose class count matches the card's num_classes")
    if device.type != "cpu" and x_all.numel() <= _ON_DEVICE_LIMIT:
        x_all, y_all = x_all.to(device), y_all.to(device)
    bs = min(recipe.batch_size, n)
    # A trailing batch of one sample would break BatchNorm (and HSIC): drop it.
    steps_per_epoch = n // bs + (1 if n % bs >= 2 else 0)
    total = recipe.epochs * steps_per_epoch

    params = list(defense.trainable_parameters(model))
    if not params:
        raise ValueError("no trainable parameters (everything is frozen)")
    opt = _optimizer(params, recipe)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, recipe, steps_per_epoch))
    shuffle_gen = make_generator("train-shuffle", recipe.seed)
    aug_gen = make_generator("train-augment", recipe.seed)

    history: list[dict[str, float]] = []
    best_state, best_acc = None, None
    step, images, start = 0, 0, time.perf_counter()
    bar = tqdm(total=total, desc=desc or "train", disable=not progress, unit="step", leave=False)
    try:
        for epoch in range(recipe.epochs):
            model.train()
            perm = torch.randperm(n, generator=shuffle_gen)
            sums: dict[str, float] = {}
            seen = 0
            t0 = time.perf_counter()
            for b in range(steps_per_epoch):
                idx = perm[b * bs:(b + 1) * bs]
                x = x_all[idx.to(x_all.device)].to(device, non_blocking=True).float() / 255.0
                y = y_all[idx.to(y_all.device)].to(device, non_blocking=True)
                x_aug = augment_batch(x, recipe.augment, aug_gen).contiguous(memory_format=fmt)
                loss, logs = defense.loss(model, x_aug, y, step / total)
                if recipe.clean_weight > 0:
                    # Two passes (separate batch-norm statistics), as LOKT's surrogate training does.
                    clean, _ = defense.loss(model, x.contiguous(memory_format=fmt), y, step / total)
                    loss = recipe.clean_weight * clean + (1 - recipe.clean_weight) * loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step}: "
                                             "lower the learning rate or the defense's strength")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                m = x.shape[0]
                seen += m
                images += m
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * m
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * m
                bar.update(1)
                if progress:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{sums['loss'] / seen:.3f}",
                                    acc=f"{sums.get('acc', 0.0) / seen:.3f}")
            row = {k: v / seen for k, v in sums.items()}
            row["train_acc"] = row.pop("acc", float("nan"))
            row.update(epoch=epoch + 1, lr=opt.param_groups[0]["lr"], seconds=time.perf_counter() - t0)
            if keep_best and test_ds is not None:
                acc = evaluate_accuracy(model, test_ds, device, eval_batch_size)
                row["test_acc"] = acc
                if best_acc is None or acc > best_acc:
                    best_acc = acc
                    best_state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
            history.append(row)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    model.eval()
    natural = (evaluate_accuracy(model, test_ds, device, eval_batch_size) if test_ds is not None
               else float("nan"))
    return TrainResult(model=model, natural_accuracy=natural, history=history, best_state=best_state,
                       best_accuracy=best_acc, seconds=seconds,
                       images_per_second=images / seconds if seconds > 0 else 0.0)
