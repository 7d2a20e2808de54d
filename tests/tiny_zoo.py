"""A tiny zoo for end-to-end tests: 16 px synthfaces with 6 identities, two small classifiers and a
small StyleGAN2, written as cards into a temporary folder (used through $MIBENCH_CARDS)."""

from __future__ import annotations

from pathlib import Path

DATA = {"name": "synthfaces32", "params": {"resolution": 16, "num_private": 6, "train_per_class": 12,
                                           "test_per_class": 3, "num_public": 24, "public_per_identity": 4,
                                           "num_shifted": 8, "shifted_per_identity": 2}}


def _yaml(obj) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False)


def write_tiny_cards(root: Path, defenses: tuple[str, ...] = ("none",)) -> Path:
    """Write target / evaluator / prior cards under `root`; returns root."""
    (root / "targets").mkdir(parents=True, exist_ok=True)
    (root / "generators").mkdir(parents=True, exist_ok=True)
    recipe = {"epochs": 3, "batch_size": 16, "lr": 0.05, "augment": {"crop_scale": [0.9, 1.0]}, "seed": 0}
    for d in defenses:
        name = "tiny-target" if d == "none" else f"tiny-target-{d}"
        (root / "targets" / f"{name}.yaml").write_text(_yaml({
            "description": "tiny test target", "architecture": "compact_resnet",
            "arch_params": {"width": 8, "depths": [1, 1, 1]}, "dataset": DATA, "num_classes": 6,
            "input_size": 16, "evaluator": "tiny-eval", "defense": {"card": d}, "train": recipe}))
    # A target judged by itself: attack accuracy is then what the target believes, a large and
    # stable signal for tests of the regression check.
    (root / "targets" / "tiny-self.yaml").write_text(_yaml({
        "extends": "tiny-target", "description": "tiny target that is its own evaluator", "evaluator": "tiny-self"}))
    (root / "targets" / "tiny-eval.yaml").write_text(_yaml({
        "description": "tiny test evaluator", "role": "evaluator", "architecture": "compact_resnet",
        "arch_params": {"width": 8, "depths": [1, 1, 1]}, "dataset": DATA, "num_classes": 6, "input_size": 16,
        "train": {**recipe, "seed": 7}}))
    (root / "generators" / "tiny-prior.yaml").write_text(_yaml({
        "kind": "stylegan2", "description": "tiny test prior", "resolution": 16,
        "params": {"z_dim": 16, "w_dim": 16, "mapping_kwargs": {"num_layers": 2},
                   "synthesis_kwargs": {"channel_base": 128, "channel_max": 16}},
        "dataset": {**DATA, "split": "public"}, "train": {"steps": 6, "batch_size": 8, "seed": 0},
        "truncation_psi": 1.0, "truncation_cutoff": None}))
    return root


# Attack settings small enough for seconds-long runs (4 candidates per class, 2 kept).
TINY_PPA = {"search_space_size": 24, "num_candidates": 4, "num_final": 2, "steps": 2, "final_views": 2,
            "batch_size": 8, "selection_batch_size": 16}
TINY_IFGMI = {**TINY_PPA, "stage_steps": [2, 1, 1], "radii": [50.0, 50.0, 50.0]}
