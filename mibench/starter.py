"""Starter cards for a user's own labelled image folder (`mibench init`): a target, an evaluation
model and a StyleGAN2 prior on a public folder, with the resolution, class count and data size read
from the data, so a first run uses settings that fit it (the small-image attack presets, a prior
recipe scaled to the public data) instead of a 224 px paper setting.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from mibench.data.imagefolder import class_folders, nonempty_images, require_dir
from mibench.errors import DataError, MIBenchError

# The prior recipe for public data. On a folder of fewer than SMALL_DATA images the embedded recipe
# (lr 0.005, the R1 heuristic γ = 0.0002·R²/batch, 500 steps on 20 k images) collapses: measured on
# the 896 public digits of benchmarks/demo_folders.py, every sample showed the same glyph (recall
# 0.004–0.013 at 500–1000 steps). The small-data recipe is the StyleGAN2 default lr 0.0025, R1
# γ 1 — which let the digits prior leave the collapse (recall 0.205 at 1500 steps, 0.52 at 2000,
# 0.58 at 2500) — augmentation on 60 % of D's images (ADA's finding: the smaller the data, the
# more augmentation D needs) and at least 3000 steps. Steps scale with the data: about 16 passes.
SMALL_DATA = 10000
PRIOR_MIN_STEPS = 1500
PRIOR_MIN_STEPS_SMALL = 3000
PRIOR_EPOCHS = 16
PRIOR_MAX_STEPS = 20000
TARGET_MIN_STEPS = 1500  # classifier SGD steps (batch 64) at least, whatever the folder's size


@dataclass
class FolderSummary:
    """What the starter cards are derived from."""

    classes: list[str]
    images: int  # private (labelled) images
    size: int  # median short side of the private images, px
    public_images: int | None = None


def _median_size(files: list[Path], sample: int = 64) -> int:
    step = max(1, len(files) // sample)
    sizes = []
    for f in files[::step][:sample]:
        with Image.open(f) as im:
            sizes.append(min(im.size))
    return int(statistics.median(sizes))


def summarize(private: Path, public: Path | None = None) -> FolderSummary:
    """Class folders, image count and typical size of `private` (root/<class>/*), and the image count of `public`."""
    private = require_dir(Path(private), "imagefolder", "root/<class>/*.png|jpg")
    classes = class_folders(private)
    if len(classes) < 2:
        raise DataError(f"found {len(classes)} class folder(s); a labelled folder needs one sub-folder per class "
                        "(at least 2)", path=private, fix="point at the folder that holds the class folders")
    files = [f for c in classes for f in nonempty_images(c, "imagefolder")]
    pub = None
    if public is not None:
        pub = len(nonempty_images(require_dir(Path(public), "image-folder-unlabelled", "root/**/*.png|jpg"),
                                  "image-folder-unlabelled"))
    return FolderSummary([c.name for c in classes], len(files), _median_size(files), pub)


def prior_resolution(size: int) -> int:
    """The StyleGAN2 resolution for images of `size` px: the largest power of two ≤ size, in [16, 256]."""
    return max(16, min(256, 2 ** int(math.log2(max(size, 1)))))


def prior_train_recipe(public_images: int) -> dict[str, Any]:
    """The `train:` block of a prior on `public_images` images (see SMALL_DATA and PRIOR_* above)."""
    small = public_images < SMALL_DATA
    floor = PRIOR_MIN_STEPS_SMALL if small else PRIOR_MIN_STEPS
    steps = max(floor, min(PRIOR_MAX_STEPS, PRIOR_EPOCHS * public_images // 32))
    recipe = {"steps": int(steps), "batch_size": 32, "lr_g": 0.0025 if small else 0.005,
              "lr_d": 0.0025 if small else 0.005}
    if small:
        recipe["r1_gamma"] = 1.0
    return {**recipe, "style_mixing_prob": 0.0, "discriminator": {"channel_base": 1024, "channel_max": 64},
            "augment": {"p": 0.6 if small else 0.2}, "seed": 0}


def starter_cards(name: str, private: Path, public: Path, summary: FolderSummary) -> dict[str, dict[str, Any]]:
    """{relative path: card} for the target, evaluator and prior of `name`."""
    res = prior_resolution(summary.size)
    data = {"name": "imagefolder", "root": str(Path(private).resolve()), "params": {"resolution": res}}
    # Epochs so that the classifier takes at least TARGET_MIN_STEPS steps on small folders.
    epochs = min(200, max(12, math.ceil(TARGET_MIN_STEPS * 64 / max(summary.images * 0.9, 1))))
    common = {"dataset": data, "num_classes": len(summary.classes), "input_size": res}
    gen = f"{name}-stylegan2"
    return {
        f"targets/{name}-evaluator.yaml": {
            "extends": "synthfaces32-evaluator",
            "description": f"Evaluation model for {name} ({len(summary.classes)} classes, {res} px)",
            **common, "train": {"epochs": epochs, "seed": 1000}},
        f"targets/{name}-resnet.yaml": {
            "extends": "synthfaces32-resnet",
            "description": f"Compact ResNet on {name} ({len(summary.classes)} classes, {res} px), no defense",
            **common, "evaluator": f"{name}-evaluator", "prior": gen, "train": {"epochs": epochs, "seed": 0}},
        f"generators/{gen}.yaml": {
            "extends": "synthfaces32-stylegan2",
            "description": f"StyleGAN2 prior ({res} px) trained on the public images of {name}",
            "resolution": res, "default_for": [],
            "dataset": {"name": "image-folder-unlabelled", "root": str(Path(public).resolve()),
                        "params": {"resolution": res}, "split": "public"},
            "train": prior_train_recipe(summary.public_images or 0)},
    }


def write_starter_cards(name: str, private: Path, public: Path, out: Path, force: bool = False) -> list[Path]:
    """Write the starter cards under `out` (targets/, generators/); refuses to overwrite unless `force`."""
    summary = summarize(private, public)
    cards = starter_cards(name, private, public, summary)
    paths = [Path(out) / rel for rel in cards]
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise MIBenchError("card file exists; nothing was written", path=existing[0],
                           fix="choose another --name, or pass --force to overwrite")
    header = (f"# Starter card written by `mibench init` from {summary.images} images in "
              f"{len(summary.classes)} classes (median {summary.size} px); edit freely.\n")
    for p, card in zip(paths, cards.values()):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(header + yaml.safe_dump(card, sort_keys=False))
    return paths
