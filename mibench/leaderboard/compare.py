"""Attack against attack on the same targets: per target (and protocol), the paired difference of a
per-class metric between two attacks — same identities, same target training-seed replicates and
attack seeds — with its 95 % interval (`*` where it excludes 0). What `mibench leaderboard compare`
prints, e.g. to check a published ordering such as "KED-MI > GMI". A side may name a prior as
`ATTACK:PRIOR` (`ppa:synthfaces32-stylegan2-v2` against `ppa:synthfaces32-stylegan2`), which compares
one attack through two priors."""

from __future__ import annotations

from typing import Any

from mibench.leaderboard.aggregate import cells, config_labels, covers
from mibench.ops.stats import paired_difference
from mibench.run.table import text_table


def _side(spec: str) -> tuple[str, str | None]:
    """(attack, prior or None) of a side written `ATTACK` or `ATTACK:PRIOR`."""
    attack, _, prior = spec.partition(":")
    return attack, prior or None


def compare_rows(entries: list[dict[str, Any]], attack: str, baseline: str, metric: str = "acc@1",
                 protocol: str | None = "standard") -> list[dict[str, Any]]:
    """One row per (target, protocol) both sides were run on — per pair of configurations when a side
    has several there (a `config` column then names the settings that tell them apart): each side's
    pooled `metric` and their paired difference `attack − baseline` (None where they share no
    identity). A side is `ATTACK` or `ATTACK:PRIOR` (only the entries through that prior)."""
    sides = (attack, baseline)
    wanted = [_side(s) for s in sides]
    by: dict[tuple, dict[str, list]] = {}
    for c in cells(entries, metric):
        if c.acc1 is None or (protocol is not None and c.protocol != protocol):
            continue
        for name, (att, prior) in zip(sides, wanted):
            if c.attack == att and (prior is None or c.prior == prior):
                by.setdefault((c.dataset, c.target, c.protocol), {}).setdefault(name, []).append(c)
    rows = []
    for (dataset, target, proto), pair in sorted(by.items()):
        if len(pair) < 2:
            continue
        labels = {name: config_labels(pair[name]) for name in sides}
        for i, a in enumerate(pair[attack]):
            for j, b in enumerate(pair[baseline]):
                mine, theirs = a.replicates(), b.replicates()
                shared = [k for k in mine if k in theirs and set(mine[k]) & set(theirs[k])]
                diff = paired_difference(mine, theirs, covers=covers(shared)) if shared else None
                row = {"dataset": dataset, "protocol": proto, "target": target, "defense": a.defense,
                       attack: f"{100 * a.acc1.value:.1f} ± {100 * a.acc1.half_width:.1f}",
                       baseline: f"{100 * b.acc1.value:.1f} ± {100 * b.acc1.half_width:.1f}",
                       f"Δ{metric}": "n/a" if diff is None else
                       f"{100 * diff.value:+.1f} [{100 * diff.lo:+.1f}, {100 * diff.hi:+.1f}]"
                       f"{' *' if diff.excludes_zero() else ''}",
                       "covers": "n/a" if diff is None else " + ".join(diff.covers)}
                label = " vs ".join(x for x in (labels[attack][i], labels[baseline][j]) if x)
                if any(labels[attack]) or any(labels[baseline]):
                    row["config"] = label or "(the same settings)"
                rows.append(row)
    return rows


def format_compare(entries: list[dict[str, Any]], attack: str, baseline: str, metric: str = "acc@1",
                   protocol: str | None = "standard") -> str:
    """The comparison as an aligned text table."""
    rows = compare_rows(entries, attack, baseline, metric, protocol)
    if not rows:
        return f"no target has {protocol or 'any'} entries of both {attack} and {baseline}"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return text_table([{k: r.get(k, "") for k in columns} for r in rows], columns)
