"""A defense's cost in natural accuracy: the undefended twin, the warning past the card's
utility_cost, and the calibration helper."""

from __future__ import annotations

import logging

import pytest

from mibench.cards import get_card
from mibench.errors import MIBenchError
from mibench.zoo.build import build_zoo
from mibench.zoo.utility import calibrate, undefended_twin, utility_cost

from tiny_zoo import write_tiny_cards


@pytest.fixture
def cards(tmp_path, monkeypatch):
    root = write_tiny_cards(tmp_path / "cards", defenses=("none", "nls"))
    (root / "defenses").mkdir()
    # A defense whose intended cost is 0: any drop at all is over budget.
    (root / "defenses" / "nls-strict.yaml").write_text(
        "extends: nls\nutility_cost: 0.0\n")
    (root / "targets" / "tiny-target-strict.yaml").write_text(
        "extends: tiny-target\ndefense: {card: nls-strict, params: {alpha: -0.5}}\n")
    monkeypatch.setenv("MIBENCH_CARDS", str(root))
    return root


def test_the_twin_is_the_undefended_card_of_the_same_recipe(cards):
    assert undefended_twin(get_card("target", "tiny-target-nls")).name == "tiny-target"
    assert undefended_twin(get_card("target", "tiny-target")) is None
    assert get_card("defense", "nls").utility_cost == 0.05


def test_zoo_build_reports_the_drop_and_warns_past_the_intended_cost(cards, caplog):
    with caplog.at_level(logging.WARNING):
        rows = {r["name"]: r for r in build_zoo(["tiny-target", "tiny-target-strict"], progress=False)}
    cost = utility_cost(get_card("target", "tiny-target-strict"))
    assert rows["tiny-target-strict"]["defense_cost"].startswith(f"{-100 * cost.drop:+.1f} pts vs tiny-target")
    assert "defense_cost" not in rows["tiny-target"]
    warned = [r for r in caplog.records if "more than the 0 points" in r.getMessage()]
    assert bool(warned) == (cost.drop > 0)


def test_calibration_marks_the_strongest_value_within_the_budget(cards):
    rows = calibrate("tiny-target-nls", "alpha", [-0.01, -0.3], budget=1.0, device="cpu", progress=False)
    assert [r["value"] for r in rows] == [-0.01, -0.3]
    assert [r["chosen"] for r in rows] == [False, True] and all(r["within_budget"] for r in rows)
    strict = calibrate("tiny-target-nls", "alpha", [-0.01, -0.3], budget=-1.0, device="cpu", progress=False)
    assert not any(r["chosen"] for r in strict)  # nothing is within a negative budget
    with pytest.raises(MIBenchError, match="no parameter 'gamma'"):
        calibrate("tiny-target-nls", "gamma", [1.0], device="cpu", progress=False)
