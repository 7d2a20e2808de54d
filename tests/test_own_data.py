"""A user's own image folders: presets fitted to the data, public data for attacks that train on it,
and no half-made run folder when a run fails before its first class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mibench.cards import get_card
from mibench.errors import DataError, MIBenchError
from mibench.run import RunSpec, resolve, run_one
from mibench.zoo.targets import target_artifact

RECIPE = {"epochs": 2, "batch_size": 8, "lr": 0.05, "seed": 0}


def _noise_images(folder: Path, n: int, seed: int, size: int = 16) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, 3)
    for i in range(n):
        pixels = np.clip(base + rng.integers(-40, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.fixture
def own(tmp_path, monkeypatch):
    """A 4-class 16 px private folder, a public folder, and cards for them (no paper preset applies)."""
    data, cards = tmp_path / "data", tmp_path / "cards"
    for c, name in enumerate(["ant", "bee", "cat", "dog"]):
        _noise_images(data / "private" / name, 10, seed=c)
    _noise_images(data / "public" / "all", 24, seed=9)
    private = {"name": "imagefolder", "root": str(data / "private"), "params": {"resolution": 16}}
    (cards / "targets").mkdir(parents=True)
    (cards / "generators").mkdir()
    common = {"architecture": "compact_resnet", "arch_params": {"width": 8, "depths": [1, 1]},
              "dataset": private, "num_classes": 4, "input_size": 16}
    (cards / "targets" / "own-eval.yaml").write_text(yaml.safe_dump(
        {**common, "role": "evaluator", "train": {**RECIPE, "seed": 1}}))
    (cards / "targets" / "own-target.yaml").write_text(yaml.safe_dump(
        {**common, "evaluator": "own-eval", "train": RECIPE}))
    monkeypatch.setenv("MIBENCH_CARDS", str(cards))
    return data, cards


def _prior_card(cards: Path, data: Path, default_for: bool) -> None:
    (cards / "generators" / "own-prior.yaml").write_text(yaml.safe_dump({
        "kind": "stylegan2", "resolution": 16,
        "params": {"z_dim": 16, "w_dim": 16, "mapping_kwargs": {"num_layers": 2},
                   "synthesis_kwargs": {"channel_base": 128, "channel_max": 16}},
        "dataset": {"name": "image-folder-unlabelled", "root": str(data / "public"), "params": {"resolution": 16}},
        "train": {"steps": 4, "batch_size": 8}, "default_for": ["imagefolder"] if default_for else []}))


def test_a_small_folder_gets_the_small_preset_not_a_224px_paper_preset(own):
    data, cards = own
    _prior_card(cards, data, default_for=True)
    for attack in ("ppa", "ifgmi", "lokt"):
        run = resolve(RunSpec(target="own-target", attack=attack))
        assert run.preset == "small", attack
        assert "fitted to 16 px" in run.preset_source
        assert run.config()["attack"]["preset"] == "small"
    # A paper dataset keeps its paper preset; a card or --preset still wins.
    assert resolve(RunSpec(target="synthfaces32-resnet", attack="ppa")).preset == "synthfaces"
    assert resolve(RunSpec(target="own-target", attack="ppa", preset="facescrub")).preset_source == "--preset"


def test_lokt_takes_public_data_from_the_prior_or_the_card_and_names_the_field_when_there_is_none(own, tmp_path):
    data, cards = own
    with pytest.raises(MIBenchError) as err:  # no public split, no prior for this dataset, no card field
        resolve(RunSpec(target="own-target", attack="lokt"))
    assert err.value.field == "public_data" and "own-target.yaml" in str(err.value)
    assert "public_data:" in err.value.fix
    with pytest.raises(MIBenchError):
        run_one(RunSpec(target="own-target", attack="lokt", classes=[0], preset="smoke"), out=tmp_path / "runs",
                device="cpu", progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

    _prior_card(cards, data, default_for=True)
    run = resolve(RunSpec(target="own-target", attack="lokt"))
    assert run.public_source == "prior own-prior" and run.public_data.root == str(data / "public")
    assert run.config()["public_data"]["dataset"]["name"] == "image-folder-unlabelled"

    # The card field wins, and is attacker-side only: the trained target's key does not change.
    before = target_artifact(get_card("target", "own-target")).key
    card = yaml.safe_load((cards / "targets" / "own-target.yaml").read_text())
    card["public_data"] = {"name": "image-folder-unlabelled", "root": str(data / "private" / "ant"),
                           "params": {"resolution": 16}}
    (cards / "targets" / "own-target.yaml").write_text(yaml.safe_dump(card))
    run = resolve(RunSpec(target="own-target", attack="lokt"))
    assert run.public_source == "card" and run.public_data.split == "public"
    assert target_artifact(get_card("target", "own-target")).key == before
    # PPA trains on no public data: its config does not record any.
    assert "public_data" not in resolve(RunSpec(target="own-target", attack="ppa", prior="own-prior")).config()


def test_a_run_failing_before_its_first_class_leaves_no_folder(own, tmp_path):
    data, cards = own
    card = yaml.safe_load((cards / "targets" / "own-target.yaml").read_text())
    (data / "empty").mkdir()
    card["public_data"] = {"name": "image-folder-unlabelled", "root": str(data / "empty"), "params": {"resolution": 16}}
    (cards / "targets" / "own-target.yaml").write_text(yaml.safe_dump(card))
    runs = tmp_path / "runs"
    with pytest.raises(DataError):  # LOKT's preparation finds no public images
        run_one(RunSpec(target="own-target", attack="lokt", classes=[0], preset="smoke"), out=runs,
                device="cpu", progress=False)
    assert runs.is_dir() and not list(runs.iterdir())


def test_entries_on_four_classes_carry_class_names_and_no_constant_acc5(own, tmp_path):
    from tiny_zoo import TINY_PPA

    data, cards = own
    _prior_card(cards, data, default_for=True)
    entry = run_one(RunSpec(target="own-target", attack="ppa", classes=[0, 2], overrides=TINY_PPA),
                    out=tmp_path / "runs", device="cpu", progress=False)
    assert entry["attack"]["preset"] == "small"
    assert entry["metrics"]["acc@5"] is None and "acc@5" not in entry["intervals"]
    assert "4 classes" in entry["unavailable"]["acc@5"]
    assert entry["metrics"]["acc@1"] is not None
    assert [(m["class"], m["name"]) for m in entry["per_class"]] == [(0, "ant"), (2, "cat")]
    folder = tmp_path / "runs" / entry["entry_id"]
    head = (folder / "per_class.csv").read_text().splitlines()
    assert head[0].startswith("class,name,n,") and head[1].startswith("0,ant,")
    assert (folder / "grid.png").is_file()


def test_init_writes_starter_cards_sized_from_the_data_and_never_overwrites(own, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mibench.cli import cli

    data, _ = own
    out = tmp_path / "mycards"
    monkeypatch.setenv("MIBENCH_CARDS", str(out))
    res = CliRunner().invoke(cli, ["init", str(data / "private"), "--public", str(data / "public"),
                                   "--name", "mine", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "4 classes, 40 images, median 16 px" in res.output
    target = get_card("target", "mine-resnet")
    assert (target.num_classes, target.input_size, target.dataset.params) == (4, 16, {"resolution": 16})
    assert target.prior == "mine-stylegan2" and target.evaluator == "mine-evaluator"
    prior = get_card("generator", "mine-stylegan2")
    assert prior.resolution == 16 and prior.train["steps"] == 3000 and prior.train["augment"]["p"] == 0.6
    assert prior.train["r1_gamma"] == 1.0 and prior.train["lr_g"] == prior.train["lr_d"] == 0.0025  # small data
    run = resolve(RunSpec(target="mine-resnet", attack="ppa"))
    assert (run.prior.name, run.preset) == ("mine-stylegan2", "small")
    again = CliRunner().invoke(cli, ["init", str(data / "private"), "--public", str(data / "public"),
                                     "--name", "mine", "--out", str(out)])
    assert again.exit_code != 0 and "exists" in str(again.exception)


def test_an_under_trained_prior_on_a_public_folder_is_reported_and_warned_about(own, caplog):
    import logging

    import torch

    from mibench.zoo import load_prior, prior_artifact

    data, cards = own
    _prior_card(cards, data, default_for=False)
    card = yaml.safe_load((cards / "targets" / "own-target.yaml").read_text())
    (cards / "targets" / "own-target.yaml").write_text(yaml.safe_dump({**card, "prior": "own-prior"}))
    with caplog.at_level(logging.INFO, logger="mibench.zoo"), torch.no_grad():  # a preview trains it under no_grad
        load_prior("own-prior", progress=False)  # 4 steps: far from trained
    art = prior_artifact(get_card("generator", "own-prior"))
    quality = art.meta()["quality"]  # judged by the evaluator of the target that names the prior
    assert quality["evaluator"] == "own-eval" and quality["fid_eval"] > 10 * quality["fid_floor"]
    assert any(r.levelno == logging.WARNING and "far above its floor" in r.getMessage() for r in caplog.records)
    assert art.file(".samples.png").is_file()
    assert [p["step"] for p in art.meta()["quality_curve"]] == [1, 2, 3]  # measured over training too


def test_the_prior_recipe_scales_with_the_public_data():
    from mibench.starter import prior_train_recipe

    small, large = prior_train_recipe(896), prior_train_recipe(40000)
    assert (small["steps"], small["lr_g"], small["r1_gamma"], small["augment"]["p"]) == (3000, 0.0025, 1.0, 0.6)
    assert (large["steps"], large["lr_g"], large["augment"]["p"]) == (20000, 0.005, 0.2) and "r1_gamma" not in large
    assert prior_train_recipe(20000)["steps"] == 10000  # 16 passes over the data
