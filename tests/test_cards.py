"""Cards: validation into typed dataclasses, one clear error naming the file and field, `extends`."""

from __future__ import annotations

import pytest

from mibench.cards import card_hash, expand_path, get_card, list_cards, load_card, resolve_defense
from mibench.errors import CardError, RegistryError

GOOD = """
description: test
architecture: compact_resnet
dataset: {name: synthfaces32}
num_classes: 100
input_size: 32
train: {epochs: 2}
"""


def _card(tmp_path, text, name="t", kind="targets"):
    (tmp_path / kind).mkdir(exist_ok=True)
    p = tmp_path / kind / f"{name}.yaml"
    p.write_text(text)
    return p


def test_good_card_loads_typed(tmp_path):
    card = load_card(_card(tmp_path, GOOD), "target")
    assert card.name == "t" and card.train.epochs == 2 and card.train.augment.flip is True
    assert card.defense.card == "none" and card.path.endswith("t.yaml")


@pytest.mark.parametrize("edit, field, message", [
    (("num_classes: 100", "num_classes: many"), "num_classes", "expected an integer"),
    (("input_size: 32", "input_sise: 32"), "input_sise", "did you mean 'input_size'"),
    (("architecture: compact_resnet", "architecture: compact_resnt"), "architecture", "did you mean 'compact_resnet'"),
    (("dataset: {name: synthfaces32}", "dataset: {name: synthface32}"), "dataset.name", "did you mean"),
    (("train: {epochs: 2}", "train: {epochs: 0}"), "train.epochs", "at least 1"),
    (("train: {epochs: 2}", "train: {epochs: 2, optimizer: rmsprop}"), "train.optimizer", "must be one of"),
    (("train: {epochs: 2}", ""), "train", "training recipe"),
    (("input_size: 32", ""), "input_size", "required field is missing"),
])
def test_bad_field_names_file_and_field(tmp_path, edit, field, message):
    p = _card(tmp_path, GOOD.replace(*edit))
    with pytest.raises(CardError) as err:
        load_card(p, "target")
    text = str(err.value)
    assert str(p) in text and f"field '{field}'" in text and message in text
    assert "\n" not in text  # one line


def test_malformed_yaml_and_non_mapping(tmp_path):
    with pytest.raises(CardError, match=r"not valid YAML at line \d+"):
        load_card(_card(tmp_path, "a: [1, 2\nb: 3"), "target")
    with pytest.raises(CardError, match="must be a YAML mapping"):
        load_card(_card(tmp_path, "- just\n- a list"), "target")
    with pytest.raises(CardError, match="card file not found"):
        load_card(tmp_path / "targets" / "nope.yaml", "target")


def test_name_must_match_file(tmp_path):
    with pytest.raises(CardError, match="differs from the file name"):
        load_card(_card(tmp_path, GOOD + "name: other\n"), "target")


def test_extends_merges_and_detects_loops(tmp_path, monkeypatch):
    monkeypatch.setenv("MIBENCH_CARDS", str(tmp_path))
    _card(tmp_path, GOOD, "base")
    child = load_card(_card(tmp_path, "extends: base\ndefense: {card: nls}\ntrain: {epochs: 5}\n", "child"), "target")
    assert child.defense.card == "nls" and child.train.epochs == 5 and child.num_classes == 100
    assert child.name == "child"
    _card(tmp_path, "extends: b2\n", "a2")
    _card(tmp_path, "extends: a2\n", "b2")
    with pytest.raises(CardError, match="loop"):
        load_card(tmp_path / "targets" / "a2.yaml", "target")
    with pytest.raises(CardError, match="did you mean 'base'"):
        load_card(_card(tmp_path, "extends: bse\n", "c3"), "target")


def test_shipped_cards_are_valid_and_found():
    targets = {c.name for c in list_cards("target")}
    assert {"synthfaces32-resnet", "synthfaces32-resnet-nls", "synthfaces32-evaluator", "facescrub-resnet152"} <= targets
    assert {c.name for c in list_cards("generator")} >= {"synthfaces32-stylegan2", "ffhq-1024", "metfaces-1024"}
    assert {c.name for c in list_cards("defense")} >= {"none", "nls", "label-smoothing", "tl-dmi", "bido", "mid"}
    dcard, params = resolve_defense(get_card("target", "synthfaces32-resnet-nls"))
    assert dcard.kind == "negative_label_smoothing" and params["alpha"] < 0


def test_unknown_card_suggests(monkeypatch):
    with pytest.raises(RegistryError, match="did you mean 'synthfaces32-resnet'"):
        get_card("target", "synthfaces32-resnt")


def test_card_hash_changes_with_content(tmp_path):
    a = load_card(_card(tmp_path, GOOD, "a"), "target")
    b = load_card(_card(tmp_path, GOOD.replace("epochs: 2", "epochs: 3"), "a2"), "target")
    assert card_hash(a) != card_hash(b)
    assert card_hash(a) == card_hash(load_card(tmp_path / "targets" / "a.yaml", "target"))


def test_expand_path_defaults(monkeypatch):
    monkeypatch.delenv("MIBENCH_WEIGHTS", raising=False)
    assert str(expand_path("$MIBENCH_WEIGHTS/x.pkl")).endswith("mibench-weights/x.pkl")
    monkeypatch.setenv("MIBENCH_WEIGHTS", "/w")
    assert str(expand_path("${MIBENCH_WEIGHTS}/x.pkl")) == "/w/x.pkl"


def test_shipped_prior_variants_and_the_default_zoo():
    """The shifted-domain and 64 px priors start from the faces prior (v2) and train on other data;
    `mibench zoo build` without names builds only the default priors (one per kind) of the targets'
    dataset and the evaluators of that dataset (not synthfaces64's, which judges no shipped target)."""
    from mibench import zoo
    from mibench.zoo.priors import prior_artifact

    base = get_card("generator", "synthfaces32-stylegan2-v2")
    shifted = get_card("generator", "synthfaces32-stylegan2-shifted")
    big = get_card("generator", "synthfaces64-stylegan2")
    for card in (shifted, big):
        assert card.init_from == base.name and card.params == base.params
        assert prior_artifact(card).content["init_from"] == prior_artifact(base).key
    assert shifted.dataset.split == "public-shifted" and shifted.default_for == []
    assert big.resolution == 64 and big.dataset.name == "synthfaces64" and big.default_for == ["synthfaces64"]
    default = {c.name for kind, c in zoo.zoo_cards() if kind == "generator"}
    assert default == {"synthfaces32-stylegan2-v2", "synthfaces32-gmi"}  # the dataset's default prior of each kind
    evaluators = {c.name for kind, c in zoo.zoo_cards() if kind == "target" and c.role == "evaluator"}
    assert evaluators == {"synthfaces32-evaluator", "synthfaces32-evaluator2"}


PRIOR = """
kind: stylegan2
resolution: 8
params: {z_dim: 16, w_dim: 16, mapping_kwargs: {num_layers: 2}, synthesis_kwargs: {channel_base: 128, channel_max: 16}}
dataset: {name: synthfaces32, split: public}
train: {steps: 2, batch_size: 4}
"""


def test_init_from_names_a_prior_without_loops_and_keys_the_child_on_it(tmp_path, monkeypatch):
    """A prior's `init_from` must name another prior card, with no loop and a recipe to fine-tune;
    the child's artifact key follows its source's, so a retrained source retrains the child."""
    from mibench.zoo.priors import prior_artifact

    monkeypatch.setenv("MIBENCH_CARDS", str(tmp_path))
    monkeypatch.setenv("MIBENCH_CACHE", str(tmp_path / "cache"))
    _card(tmp_path, PRIOR, "src", "generators")
    child = load_card(_card(tmp_path, PRIOR + "init_from: src\n", "child", "generators"), "generator")
    key = prior_artifact(child).key
    _card(tmp_path, PRIOR.replace("steps: 2", "steps: 3"), "src", "generators")
    assert prior_artifact(load_card(tmp_path / "generators" / "child.yaml", "generator")).key != key
    with pytest.raises(CardError, match="did you mean 'src'") as e:
        load_card(_card(tmp_path, PRIOR + "init_from: scr\n", "typo", "generators"), "generator")
    assert e.value.field == "init_from" and "typo.yaml" in str(e.value)
    _card(tmp_path, PRIOR + "init_from: b\n", "a", "generators")
    _card(tmp_path, PRIOR + "init_from: a\n", "b", "generators")
    with pytest.raises(CardError, match="loop"):
        load_card(tmp_path / "generators" / "a.yaml", "generator")
    with pytest.raises(CardError, match="must be one of") as e:
        load_card(_card(tmp_path, PRIOR + "storage_dtype: float8\n", "small", "generators"), "generator")
    assert e.value.field == "storage_dtype"
    delta_float16 = "init_from: src\nstorage: delta\nstorage_dtype: float16\n"
    for extra, says in (("storage: delta\n", "init_from"), (delta_float16, "float32")):
        with pytest.raises(CardError, match=says) as e:
            load_card(_card(tmp_path, PRIOR + extra, "grown", "generators"), "generator")
        assert e.value.field == "storage"
    external = "kind: stylegan2\nresolution: 8\nweights: {path: /x.pkl}\ninit_from: src\n"
    with pytest.raises(CardError, match="training recipe"):
        load_card(_card(tmp_path, external, "ext", "generators"), "generator")


def test_making_a_prior_the_default_keeps_its_trained_artifact():
    """`default_for` says which datasets attack through a prior, not what it trains: changing it
    must not retrain the prior nor orphan its shipped weights."""
    from mibench.cards import replace, trained_card
    from mibench.zoo.priors import prior_artifact

    card = get_card("generator", "synthfaces32-stylegan2-v2")
    other = replace(card, default_for=["synthfaces64", "synthfaces32"])
    assert card_hash(other) != card_hash(card)  # a run through it records the card as it was
    assert card_hash(trained_card(other)) == card_hash(trained_card(card))
    assert prior_artifact(other).stem == prior_artifact(card).stem and prior_artifact(card).shipped
    changed = replace(card, train={**card.train, "steps": card.train["steps"] + 1})
    assert prior_artifact(changed).key != prior_artifact(card).key
