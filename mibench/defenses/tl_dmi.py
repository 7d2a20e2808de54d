"""`tl_dmi`: transfer-learning defense — pre-train on public data, fine-tune only the last layers.

Ho et al.: "Model Inversion Robustness: Can Transfer Learning Help?" (CVPR 2024).
The same architecture is first trained on *public* data; the private classifier then starts from
those weights with a fresh head, its leading layers frozen (the paper freezes e.g. the first 8 of 13
convolutions of VGG16), and only the remaining layers are fine-tuned on the private data with plain
cross-entropy. Early layers then encode only public-data features, which limits what an attack
can recover about private identities.

Here the freezable units are the backbone's stem and stages (`Classifier.freeze_leading`); frozen
parameters get `requires_grad=False` and frozen BatchNorm layers stay in eval mode, so their
running statistics never change during fine-tuning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mibench.classifiers.architectures import build_classifier
from mibench.classifiers.base import Classifier
from mibench.defenses.base import Defense, DefenseContext, build_defense
from mibench.errors import DataError, MIBenchError
from mibench.registry import DEFENSES
from mibench.seeding import derive_seed

PAPER = "Ho et al.: Model Inversion Robustness: Can Transfer Learning Help? (CVPR 2024)"


@dataclass
class TLDMIParams:
    """`freeze`: leading units (stem + stages) to freeze — an int (negative: all but the last |k|) or a
    fraction in [0, 1] of the units; `pretrain_epochs`: public pre-training epochs (default: the recipe's)."""

    freeze: int | float = -1
    pretrain_epochs: int | None = None

    def validate(self) -> None:
        if isinstance(self.freeze, float) and not 0.0 <= self.freeze <= 1.0:
            raise ValueError("freeze: a fraction must lie in [0, 1] (or give an integer count of units)")
        if self.pretrain_epochs is not None and self.pretrain_epochs < 1:
            raise ValueError("pretrain_epochs: must be at least 1")


def resolve_freeze(freeze: int | float, units: int) -> int:
    """How many leading units `freeze` means for a backbone with `units` units."""
    if isinstance(freeze, float):
        return int(round(freeze * units))
    count = units + freeze if freeze < 0 else freeze
    if not 0 <= count <= units:
        raise MIBenchError(f"freeze={freeze} is out of range for a backbone with {units} units",
                           field="params.freeze", fix=f"use an integer in [-{units}, {units}] or a fraction")
    return count


@DEFENSES.register("tl_dmi", paper=PAPER,
                   description="pre-train on public data, freeze leading stages, fine-tune the rest (TL-DMI)")
class TLDMI(Defense):
    """Public pre-training + partial fine-tuning with plain cross-entropy."""

    kind = "tl_dmi"
    paper = PAPER
    Params = TLDMIParams
    needs_prepare = True
    needs_public_pretraining = True

    def pretrain(self, model: Classifier, ctx: DefenseContext) -> dict:
        """Train a copy of `model`'s architecture on the public data; returns its backbone state dict."""
        if ctx.public_train is None:
            raise MIBenchError("tl_dmi needs labelled public data for pre-training, but none was given",
                               fix="give the target a public dataset split (or a cached pre-trained state)")
        if ctx.public_train.num_classes < 2 or bool((ctx.public_train.labels < 0).any()):
            raise DataError(f"tl_dmi pre-training needs labelled public data; "
                            f"'{ctx.public_train.name}:{ctx.public_train.split}' is unlabelled",
                            fix="use a public split with identity labels")
        if ctx.recipe is None:
            raise MIBenchError("tl_dmi pre-training needs a training recipe (DefenseContext.recipe)")
        recipe = ctx.recipe
        if self.params.pretrain_epochs is not None:
            recipe = dataclasses.replace(recipe, epochs=self.params.pretrain_epochs)
        recipe = dataclasses.replace(recipe, seed=derive_seed(recipe.seed, "tl_dmi-pretrain"))
        public = build_classifier(model.arch, ctx.public_train.num_classes, model.input_size,
                                  model.arch_params, seed=derive_seed(ctx.seed, "tl_dmi-pretrain-init"))
        if ctx.train_fn is None:
            from mibench.classifiers.train import train_classifier as train_fn
        else:
            train_fn = ctx.train_fn
        result = train_fn(public, ctx.public_train, ctx.public_test, recipe, defense=build_defense("none"),
                          device=ctx.device, progress=ctx.progress, desc="tl_dmi pre-train")
        state = {k: v.detach().to("cpu").clone() for k, v in public.backbone.state_dict().items()}
        info = {"pretrain_accuracy": getattr(result, "natural_accuracy", None),
                "pretrain_classes": ctx.public_train.num_classes, "pretrain_epochs": recipe.epochs}
        self.info.update(info)
        if ctx.on_pretrained is not None:
            ctx.on_pretrained(state, info)
        return state

    def _prepare(self, model: Classifier, ctx: DefenseContext) -> Classifier:
        state = ctx.pretrained_state if ctx.pretrained_state is not None else self.pretrain(model, ctx)
        missing, unexpected = model.backbone.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise MIBenchError(f"tl_dmi: the pre-trained state does not fit this backbone "
                               f"({len(missing)} missing, {len(unexpected)} unexpected keys)",
                               fix="delete the cached pre-training result so it is rebuilt")
        count = resolve_freeze(self.params.freeze, len(model.backbone.unit_names()))
        self.info["frozen_units"] = model.freeze_leading(count)
        self.info["trainable_units"] = model.backbone.unit_names()[count:]
        model.to(ctx.device)
        return model
