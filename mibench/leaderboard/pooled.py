"""The pooled result matrix as text: per attack × target, acc@1 (or another per-class metric) over
all replicates of a configuration with its 95 % interval, and each defense's paired effect Δacc@1 (`*` where its
interval excludes 0) — what `mibench leaderboard pooled` prints and the README quotes."""

from __future__ import annotations

from typing import Any

from mibench.leaderboard.aggregate import Cell, cells
from mibench.run.table import text_table


def _pts(v: float) -> str:
    return f"{100 * v:+.1f}"


def pooled_rows(entries: list[dict[str, Any]], protocol: str | None = "standard",
                metric: str = "acc@1") -> list[dict[str, Any]]:
    """One row per pooled cell (of `protocol`; None: all): `metric` ± half-width, replicates, what the
    interval covers, natural accuracy (mean over training seeds) and the defense effect on `metric`."""
    return [_row(c) for c in cells(entries, metric) if (protocol is None or c.protocol == protocol)
            and c.acc1 is not None]


def _row(c: Cell) -> dict[str, Any]:
    acc = c.acc1
    eff = c.effect
    return {
        "dataset": c.dataset, "protocol": c.protocol, "attack": c.attack, "target": c.target, "defense": c.defense,
        # replicates that carry the metric (an entry older than a metric does not count for it)
        "runs": sum(1 for v in c.replicates().values() if v),
        "nat_acc": "n/a" if c.natural is None else f"{100 * c.natural:.1f}",
        c.metric: "n/a" if acc is None else f"{100 * acc.value:.1f} ± {100 * acc.half_width:.1f}",
        "covers": "n/a" if acc is None else " + ".join(acc.covers),
        f"Δ{c.metric} vs none": "" if eff is None else
        f"{_pts(eff.value)} [{_pts(eff.lo)}, {_pts(eff.hi)}]{' *' if eff.excludes_zero() else ''}",
    }


def format_pooled(entries: list[dict[str, Any]], protocol: str | None = "standard", metric: str = "acc@1") -> str:
    """The pooled matrix of `metric` as an aligned text table."""
    rows = pooled_rows(entries, protocol, metric)
    if not rows:
        return f"no {protocol} entries" if protocol else "no entries"
    return text_table(rows, list(rows[0]))
