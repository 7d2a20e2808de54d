"""Confidence intervals (`mibench.ops.stats`): checked against closed-form cases."""

from __future__ import annotations

import numpy as np
import pytest

from mibench.ops.stats import (
    bootstrap_mean,
    bootstrap_statistic,
    hierarchical_mean,
    normal_mean_interval,
    paired_difference,
)


def test_bootstrap_of_a_mean_matches_the_normal_interval():
    # 0/1 outcomes with p = 0.3 over 400 classes: the interval is p ± 1.96·sqrt(p(1−p)/n) ≈ ±4.5 points.
    x = np.r_[np.ones(120), np.zeros(280)]
    iv = bootstrap_mean(x, resamples=4000)
    lo, hi = normal_mean_interval(x)
    assert iv.value == pytest.approx(0.3)
    assert hi - lo == pytest.approx(2 * 1.959964 * np.sqrt(0.3 * 0.7 / 400))
    assert iv.lo == pytest.approx(lo, abs=0.004) and iv.hi == pytest.approx(hi, abs=0.004)


def test_constant_values_give_a_zero_width_interval_and_same_values_same_bytes():
    iv = bootstrap_mean([0.625] * 10)
    assert (iv.lo, iv.value, iv.hi) == (0.625, 0.625, 0.625) and iv.half_width == 0
    assert bootstrap_mean([0.1, 0.5, 0.9]).as_dict() == bootstrap_mean([0.1, 0.5, 0.9]).as_dict()


def test_hierarchical_interval_widens_with_replicate_spread():
    classes = range(50)
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 50)
    same = {k: dict(zip(classes, base)) for k in range(3)}
    spread = {k: dict(zip(classes, np.clip(base + 0.2 * (k - 1), 0, 1))) for k in range(3)}
    one = hierarchical_mean({0: dict(zip(classes, base))}, covers=("identities",))
    assert one.as_dict() | {"covers": []} == bootstrap_mean(base).as_dict() | {"covers": [], "n": one.n}
    a = hierarchical_mean(same, covers=("identities", "target seed"))
    b = hierarchical_mean(spread, covers=("identities", "target seed"))
    assert a.half_width == pytest.approx(one.half_width, rel=0.15)
    assert b.half_width > 1.5 * a.half_width


def test_paired_difference_removes_shared_class_effects():
    # Class difficulty varies a lot, the defense lowers every class by exactly 5 points: paired, the
    # interval is [−0.05, −0.05]; unpaired it would be far wider than 5 points.
    rng = np.random.default_rng(0)
    hard = rng.uniform(0.1, 0.9, 30)
    undefended = {0: {c: float(hard[c]) for c in range(30)}}
    defended = {0: {c: float(hard[c] - 0.05) for c in range(30)}}
    iv = paired_difference(defended, undefended, covers=("identities",))
    assert iv.value == pytest.approx(-0.05) and iv.lo == pytest.approx(-0.05) and iv.hi == pytest.approx(-0.05)
    assert iv.excludes_zero()
    unpaired = bootstrap_mean(hard).half_width
    assert unpaired > 0.05


def test_run_statistic_bootstrap_recomputes_on_class_resamples():
    vals = np.arange(20, dtype=float)
    iv = bootstrap_statistic(20, lambda idx: {"max": float(vals[idx].max())}, resamples=100)["max"]
    assert iv.value == 19 and iv.hi == 19 and iv.lo < 19
    nan = bootstrap_statistic(5, lambda idx: {"x": float("nan")}, resamples=20)["x"]
    assert np.isnan(nan.lo) and np.isnan(nan.hi)


def test_a_replicate_without_the_metric_on_one_side_is_left_out_of_the_pairing():
    from mibench.ops.stats import paired_difference

    a = {0: {0: 1.0, 1: 0.0}, 1: {0: 1.0, 1: 1.0}}
    b = {0: {0: 0.0, 1: 0.0}, 1: {}}  # replicate 1 of b lacks the metric
    iv = paired_difference(a, b, covers=("identities",), resamples=200)
    assert iv.value == pytest.approx(0.5) and iv.n == 2
    with pytest.raises(ValueError, match="no replicate has a class on both sides"):
        paired_difference({1: {0: 1.0}}, b, covers=("identities",), resamples=10)
