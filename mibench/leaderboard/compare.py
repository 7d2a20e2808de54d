"""Attack against attack on the same targets: per target (and protocol), the paired difference of a
per-class metric between two attacks — same identities, same target training-seed replicates and
attack seeds — with its 95 % interval (`*` where it excludes 0). What `mibench leaderboard compare`
prints, e.g. to check a published ordering such as "KED-MI > GMI"."""

from __future__ import annotations

from typing import Any

from mibench.leaderboard.aggregate import cells, covers
from mibench.ops.stats import paired_difference
from mibench.run.table import text_table


def compare_rows(entries: list[dict[str, Any]], attack: str, baseline: str, metric: str = "acc@1",
                 protocol: str | None = "standard") -> list[dict[str, Any]]:
    """One row per (target, protocol) both attacks were run on: each attack's pooled `metric` and
    their paired difference `attack − baseline` (None where they share no identity)."""
    by = {}
    for c in cells(entries, metric):
        if c.attack in (attack, baseline) and c.acc1 is not None and (protocol is None or c.protocol == protocol):
            by.setdefault((c.dataset, c.target, c.protocol), {}).setdefault(c.attack, c)
    rows = []
    for (dataset, target, proto), pair in sorted(by.items()):
        if len(pair) < 2:
            continue
        a, b = pair[attack], pair[baseline]
        mine, theirs = a.replicates(), b.replicates()
        shared = [k for k in mine if k in theirs and set(mine[k]) & set(theirs[k])]
        diff = paired_difference(mine, theirs, covers=covers(shared)) if shared else None
        rows.append({"dataset": dataset, "protocol": proto, "target": target, "defense": a.defense,
                     attack: f"{100 * a.acc1.value:.1f} ± {100 * a.acc1.half_width:.1f}",
                     baseline: f"{100 * b.acc1.value:.1f} ± {100 * b.acc1.half_width:.1f}",
                     f"Δ{metric}": "n/a" if diff is None else
                     f"{100 * diff.value:+.1f} [{100 * diff.lo:+.1f}, {100 * diff.hi:+.1f}]"
                     f"{' *' if diff.excludes_zero() else ''}",
                     "covers": "n/a" if diff is None else " + ".join(diff.covers)})
    return rows


def format_compare(entries: list[dict[str, Any]], attack: str, baseline: str, metric: str = "acc@1",
                   protocol: str | None = "standard") -> str:
    """The comparison as an aligned text table."""
    rows = compare_rows(entries, attack, baseline, metric, protocol)
    if not rows:
        return f"no target has {protocol or 'any'} entries of both {attack} and {baseline}"
    return text_table(rows, list(rows[0]))
