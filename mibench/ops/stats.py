"""Confidence intervals by the bootstrap: over identities (classes) within one run, and
hierarchically over replicates (target training seeds × attack seeds) and then classes, paired
where two results share their classes and seeds (a defense effect).

Every interval is a 95 % percentile bootstrap with a fixed resampling seed, so the same values
give the same bytes. The unit resampled is the attacked identity: the images of one class are not
independent draws (they share the class's optimisation), so resampling images would understate
the spread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
SEED = 20261202  # the resampling seed: intervals are a pure function of the values


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval and what the resampling covered."""

    value: float
    lo: float
    hi: float
    covers: tuple[str, ...] = ("identities",)  # sources of variation the interval includes
    n: int = 0  # resampled units (classes; or replicate × class pairs)
    level: float = LEVEL
    resamples: int = RESAMPLES
    method: str = "percentile bootstrap"

    @property
    def half_width(self) -> float:
        """Half the interval's width (printed as `value ± half_width`)."""
        return (self.hi - self.lo) / 2

    def excludes_zero(self) -> bool:
        """The interval lies entirely on one side of 0 (an effect distinguishable from none)."""
        return self.lo > 0 or self.hi < 0

    def as_dict(self) -> dict:
        """The JSON form recorded in entries."""
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "level": self.level, "covers": list(self.covers),
                "n": self.n, "resamples": self.resamples, "method": self.method}


def _percentile(stats: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    lo, hi = np.quantile(stats, [a, 1 - a], method="linear")
    return float(lo), float(hi)


def bootstrap_mean(values: Sequence[float], *, covers: tuple[str, ...] = ("identities",), level: float = LEVEL,
                   resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
    """Interval of the mean of `values` (one per class), resampling classes with replacement."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_mean needs at least one value")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    lo, hi = _percentile(x[idx].mean(axis=1), level)
    return Interval(float(x.mean()), lo, hi, covers, int(x.size), level, resamples)


def bootstrap_statistic(n: int, statistic: Callable[[np.ndarray], Mapping[str, float]], *, resamples: int = 200,
                        covers: tuple[str, ...] = ("identities",), level: float = LEVEL,
                        seed: int = SEED) -> dict[str, Interval]:
    """Intervals of whole-run statistics (e.g. FID over the reconstructions of all classes):
    `statistic(class_indices)` → {name: value}, recomputed on `resamples` class resamples (a costly
    statistic gets few). A statistic that is not finite on most resamples gets a NaN interval."""
    if n < 1:
        raise ValueError("bootstrap_statistic needs at least one class")
    rng = np.random.default_rng(seed)
    point = dict(statistic(np.arange(n)))
    draws = [statistic(rng.integers(0, n, size=n)) for _ in range(resamples)]
    out = {}
    for name, value in point.items():
        stats = np.array([d.get(name, np.nan) for d in draws], dtype=np.float64)
        stats = stats[np.isfinite(stats)]
        lo, hi = _percentile(stats, level) if stats.size >= max(10, resamples // 2) else (float("nan"),) * 2
        out[name] = Interval(float(value), lo, hi, covers, n, level, resamples)
    return out


def hierarchical_mean(groups: Mapping[object, Mapping[int, float]], *, covers: tuple[str, ...],
                      level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
    """Interval of the grand mean over replicates (`groups`: replicate → {class: value}): each
    bootstrap draw resamples replicates, then classes (the same class draw in every replicate, so
    identity effects shared by the replicates are not averaged away). With one replicate this is
    `bootstrap_mean` over its classes."""
    reps = list(groups)
    if not reps:
        raise ValueError("hierarchical_mean needs at least one replicate")
    classes = sorted(set.intersection(*(set(groups[r]) for r in reps)))
    if not classes:
        raise ValueError("the replicates share no class")
    m = np.array([[groups[r][c] for c in classes] for r in reps], dtype=np.float64)  # (R, C)
    rng = np.random.default_rng(seed)
    ri = rng.integers(0, m.shape[0], size=(resamples, m.shape[0]))
    ci = rng.integers(0, m.shape[1], size=(resamples, m.shape[1]))
    if m.shape[0] == 1:
        ri[:] = 0
    stats = np.array([m[ri[b]][:, ci[b]].mean() for b in range(resamples)])
    lo, hi = _percentile(stats, level)
    return Interval(float(m.mean()), lo, hi, covers, int(m.size), level, resamples)


def paired_difference(a: Mapping[object, Mapping[int, float]], b: Mapping[object, Mapping[int, float]], *,
                      covers: tuple[str, ...], level: float = LEVEL, resamples: int = RESAMPLES,
                      seed: int = SEED) -> Interval:
    """Interval of mean(a − b), paired by replicate key and class (only the pairs both sides have):
    e.g. a defended target's per-class acc@1 minus the undefended one's, for the same training-seed
    replicate, attack seed and identity."""
    keys = [k for k in a if k in b]
    if not keys:
        raise ValueError("no replicate is present on both sides")
    diff = {k: {c: a[k][c] - b[k][c] for c in a[k] if c in b[k]} for k in keys}
    # a replicate without the metric on one side (an entry made before the metric existed) has no pair
    diff = {k: d for k, d in diff.items() if d}
    if not diff:
        raise ValueError("no replicate has a class on both sides")
    return hierarchical_mean(diff, covers=covers, level=level, resamples=resamples, seed=seed)


def normal_mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """The closed-form large-sample interval of a mean, mean ± z·s/√n (population s): what the
    bootstrap of a mean converges to; used to check it."""
    from statistics import NormalDist

    x = np.asarray(values, dtype=np.float64)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    h = z * x.std() / np.sqrt(x.size)
    return float(x.mean() - h), float(x.mean() + h)
