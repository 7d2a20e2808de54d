"""The printed results table: one row per entry, each value with the half-width of its 95 % interval
over the attacked identities (`62.5 ± 3.1`); its metric columns come from the metric registry
(`Column.in_table`)."""

from __future__ import annotations

from typing import Any

from mibench.metrics.base import entry_columns
from mibench.run.protocol import entry_protocol


def text_table(rows: list[dict], columns: list[str]) -> str:
    """A plain fixed-width text table."""
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def results_table(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, columns) of the printed results table."""
    cols = [c for c in entry_columns(entries) if c.in_table]
    rows = []
    for e in entries:
        m, iv = e["metrics"], e.get("intervals") or {}
        row = {"target": e["target"]["name"], "defense": e["target"]["defense"]["card"], "attack": e["attack"]["name"],
               "preset": e["attack"].get("preset"), "protocol": entry_protocol(e), "nat_acc": _pct(e["target"]["natural_accuracy"])}
        row.update({c.label or c.name: c.format_with_interval(m.get(c.name), iv.get(c.name)) for c in cols})
        row.update({"queries": e["queries"]["total"], "time_s": round(e["wall_time_s"]),
                    "agree": _pct((e["attack"].get("info") or {}).get("surrogate_agreement", {}).get("ensemble"))})
        rows.append(row)
    return rows, ["target", "defense", "attack", "preset", "protocol", "nat_acc", *[c.label or c.name for c in cols], "queries", "agree",
                  "time_s"]


def chance_line(entries: list[dict[str, Any]]) -> str:
    """'chance: attr 27.3, reid@1 1.0, …' — what a random guess scores, for the table's columns that
    record one (the range over the entries when they differ); '' when none does."""
    parts = []
    for c in entry_columns(entries):
        vals = sorted({e["chance"][c.name] for e in entries if c.in_table and c.name in (e.get("chance") or {})})
        if vals:
            span = c.format(vals[0]) if len(vals) == 1 else f"{c.format(vals[0])}–{c.format(vals[-1])}"
            parts.append(f"{c.label or c.name} {span}")
    return f"chance (a random other identity): {', '.join(parts)}" if parts else ""


def format_table(entries: list[dict[str, Any]]) -> str:
    """The results table printed after runs (percentages for accuracies), with the chance levels."""
    line = chance_line(entries)
    return text_table(*results_table(entries)) + (f"\n{line}" if line else "")
