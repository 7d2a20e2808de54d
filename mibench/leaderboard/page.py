"""The static leaderboard page: `leaderboard/site/index.html` (+ reconstruction grids in `assets/`).

Rendered with Jinja2 (autoescaping every string taken from entries); sorting, filtering and the
details panels are a few lines of inline JavaScript, so the page works from `file://` with no server.
The privacy–utility and accuracy-vs-queries plots are inline SVG computed here.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2

from mibench import __version__
from mibench.leaderboard.aggregate import Cell, cells, config_key, config_labels
from mibench.leaderboard.entries import copy_grid
from mibench.metrics.base import Column, entry_columns
from mibench.ops.fileio import atomic_write_text
from mibench.run.protocol import entry_protocol

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).with_name("templates"))),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True)


def _fmt(v: Any, pct: bool = False, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if pct:
        return f"{100 * v:.1f}"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def metric_cell(col: Column, m: dict[str, Any], intervals: dict[str, Any] | None = None) -> tuple[str, Any, str]:
    """(page key, sort value, text) of one metric column, with its interval's half-width when the
    entry has one; a missing value falls back to the column's `fallback` (marked ᵉ, e.g. FID → FID
    in evaluation-model features)."""
    v, iv = m.get(col.name), (intervals or {}).get(col.name)
    if v is None and col.fallback and m.get(col.fallback) is not None:
        v = m.get(col.fallback)
        return col.page_key, v, col.format_with_interval(v, (intervals or {}).get(col.fallback)) + "ᵉ"
    return col.page_key, v, col.format_with_interval(v, iv)


def header_title(col: Column, entries: list[dict[str, Any]]) -> str:
    """A column header's tooltip: what it measures and, where entries record one, its chance level."""
    chances = sorted({e["chance"][col.name] for e in entries if col.name in (e.get("chance") or {})})
    if not chances:
        return col.description
    span = col.format(chances[0]) if len(chances) == 1 else f"{col.format(chances[0])}–{col.format(chances[-1])}"
    return f"{col.description} (chance {span}{' %' if col.percent else ''})"


def plot_points(cells: list[Cell], width: int = 520, height: int = 360, pad: int = 48) -> dict[str, Any]:
    """SVG geometry of the privacy–utility plot: one point per configuration (pooled over its
    replicates), x = natural accuracy (bar: its range over training-seed replicates), y = attack
    acc@1 (bar: its 95 % interval); both in %."""
    pts = [c for c in cells if c.natural is not None and c.acc1 is not None]
    attacks = sorted({c.attack for c in pts})
    colors = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(attacks)}
    xs = [v for c in pts for v in c.natural_range] or [0.0, 1.0]
    x_lo, x_hi = max(0.0, math.floor(min(xs) * 10) / 10 - 0.05), min(1.0, math.ceil(max(xs) * 10) / 10 + 0.0)
    if x_hi - x_lo < 0.1:
        x_lo, x_hi = max(0.0, x_hi - 0.2), min(1.0, x_hi + 0.05)

    def sx(x: float) -> float:
        return round(pad + (x - x_lo) / (x_hi - x_lo) * (width - 2 * pad), 1)

    def sy(y: float) -> float:
        return round(height - pad - min(max(y, 0.0), 1.0) * (height - 2 * pad), 1)

    points = []
    for c in pts:
        a, n = c.acc1, len(c.entries)
        points.append({
            "x": sx(c.natural), "y": sy(a.value), "y_lo": sy(a.lo), "y_hi": sy(a.hi),
            "x_lo": sx(c.natural_range[0]), "x_hi": sx(c.natural_range[1]), "color": colors[c.attack],
            "id": c.entries[0]["entry_id"], "protocol": c.protocol,
            "label": f"{c.target} × {c.attack} ({c.protocol}, {n} replicate{'s' if n != 1 else ''}): natural "
                     f"{100 * c.natural:.1f}%, attack acc@1 {100 * a.value:.1f}% "
                     f"[{100 * a.lo:.1f}, {100 * a.hi:.1f}] (95 % interval over {', '.join(a.covers)})"})
    xticks = [{"pos": sx(t), "label": f"{100 * t:.0f}"} for t in [x_lo + i * (x_hi - x_lo) / 4 for i in range(5)]]
    yticks = [{"pos": sy(t), "label": f"{100 * t:.0f}"} for t in (0, 0.25, 0.5, 0.75, 1.0)]
    legend = [{"name": a, "color": c} for a, c in colors.items()]
    return {"width": width, "height": height, "pad": pad, "points": points, "xticks": xticks, "yticks": yticks,
            "legend": legend}


QUERY_LEVELS = ("black-box", "label-only")


def queries_per_identity(cell: Cell) -> float:
    """Mean target queries per attacked identity over a cell's replicates (shared training queries
    spread over the identities the run attacked)."""
    return sum(e["queries"]["total"] / max(1, len(e["classes"])) for e in cell.entries) / len(cell.entries)


def query_curves(cells: list[Cell], width: int = 520, height: int = 360, pad: int = 48) -> dict[str, Any]:
    """SVG geometry of the accuracy-vs-queries plot of the query attacks (black-box, label-only): one
    line per (target, attack, protocol) through its configurations (e.g. the points of a `mibench
    sweep`), x = target queries per identity on a log scale, y = acc@1 with its 95 % interval. One
    colour per attack (the legend, right of the plot, lists attacks: targets are in each point's
    tooltip), dashed lines for protocols other than standard."""
    pts = [c for c in cells if c.acc1 is not None and c.entries[0]["attack"].get("access") in QUERY_LEVELS
           and queries_per_identity(c) > 0]
    groups: dict[tuple[str, str, str], list[Cell]] = {}
    for c in pts:
        groups.setdefault((c.target, c.attack, c.protocol), []).append(c)
    attacks = sorted({a for _, a, _ in groups})
    colors = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(attacks)}
    qs = [math.log10(queries_per_identity(c)) for c in pts] or [0.0, 1.0]
    x_lo, x_hi = math.floor(min(qs)), max(math.ceil(max(qs)), math.floor(min(qs)) + 1)

    def sx(q: float) -> float:
        return round(pad + (math.log10(q) - x_lo) / (x_hi - x_lo) * (width - 2 * pad), 1)

    def sy(y: float) -> float:
        return round(height - pad - min(max(y, 0.0), 1.0) * (height - 2 * pad), 1)

    series = []
    for key in sorted(groups):
        target, attack, protocol = key
        points = []
        for c in sorted(groups[key], key=queries_per_identity):
            q, a = queries_per_identity(c), c.acc1
            points.append({"x": sx(q), "y": sy(a.value), "y_lo": sy(a.lo), "y_hi": sy(a.hi), "id": c.entries[0]["entry_id"],
                           "label": f"{target} × {attack} ({protocol}): {q:,.0f} queries per identity, acc@1 "
                                    f"{100 * a.value:.1f}% [{100 * a.lo:.1f}, {100 * a.hi:.1f}] (95 % interval over "
                                    f"{', '.join(a.covers)})"})
        series.append({"name": f"{attack} · {target}" + ("" if protocol == "standard" else f" ({protocol})"),
                       "color": colors[attack], "dash": "" if protocol == "standard" else "4 3", "points": points,
                       "path": " ".join(f"{'M' if i == 0 else 'L'}{p['x']},{p['y']}" for i, p in enumerate(points))})
    xticks = [{"pos": sx(10.0 ** d), "label": f"{10 ** d:,}" if d >= 0 else f"{10.0 ** d:g}"}
              for d in range(x_lo, x_hi + 1)]
    yticks = [{"pos": sy(t), "label": f"{100 * t:.0f}"} for t in (0, 0.25, 0.5, 0.75, 1.0)]
    legend = [{"name": a, "color": colors[a]} for a in attacks]
    protocols = sorted({p for _, _, p in groups})
    return {"width": width, "height": height, "pad": pad, "series": series, "xticks": xticks, "yticks": yticks,
            "legend": legend, "legend_x": width + 8, "svg_width": width + 180,
            "dashed": [p for p in protocols if p != "standard"]}


def matrix_columns(sub: list[Cell]) -> list[tuple[str, tuple, str]]:
    """The matrix's columns: (attack, configuration key, header) — one per attack, or one per
    configuration where an attack has several (the header then names the settings that differ)."""
    out = []
    for a in sorted({c.attack for c in sub}):
        reps = {}
        for c in sub:
            if c.attack == a:
                reps.setdefault(config_key(c), c)
        keys = list(reps)
        labels = config_labels([reps[k] for k in keys])
        cols = sorted(zip(keys, labels), key=lambda kl: _natural(kl[1]))
        out += [(a, k, f"{a} ({lab})" if lab else a) for k, lab in cols]
    return out


def _natural(text: str) -> list:
    """Sort key that orders numbers by value (`steps=30` before `steps=100`)."""
    return [(0, float(t), "") if t.replace(".", "", 1).isdigit() else (1, 0.0, t)
            for t in re.split(r"(\d+(?:\.\d+)?)", text) if t]


def matrices(cells: list[Cell]) -> list[dict[str, Any]]:
    """Defense × attack tables, one per (dataset, protocol), one column per attack configuration:
    acc@1 ± the half-width of its interval, and for defended targets the paired effect Δacc@1
    against the undefended one (marked when its interval excludes 0)."""
    out = []
    for ds, proto in sorted({(c.dataset, c.protocol) for c in cells}):
        sub = [c for c in cells if (c.dataset, c.protocol) == (ds, proto)]
        columns = matrix_columns(sub)
        defenses = sorted({c.defense for c in sub}, key=lambda d: (d != "none", d))
        rows = []
        for d in defenses:
            row = []
            for a, key, _ in columns:
                hit = [c for c in sub if c.defense == d and c.attack == a and config_key(c) == key]
                if not hit or hit[0].acc1 is None:
                    row.append(None)
                    continue
                c = hit[0]
                eff = c.effect
                row.append({"value": f"{100 * c.acc1.value:.1f}", "pm": f"{100 * c.acc1.half_width:.1f}",
                            "bar": {"lo": round(100 * c.acc1.lo, 1), "hi": round(100 * c.acc1.hi, 1),
                                    "value": round(100 * c.acc1.value, 1)},
                            "n": len(c.entries),
                            "effect": None if eff is None else {
                                "value": f"{100 * eff.value:+.1f}", "lo": f"{100 * eff.lo:+.1f}",
                                "hi": f"{100 * eff.hi:+.1f}", "significant": eff.excludes_zero(),
                                "covers": ", ".join(eff.covers)}})
            rows.append({"defense": d, "cells": row})
        covers = sorted({x for c in sub if c.acc1 for x in c.acc1.covers})
        out.append({"dataset": ds, "protocol": proto, "attacks": [h for _, _, h in columns], "rows": rows,
                    "replicates": max(len(c.entries) for c in sub), "covers": ", ".join(covers)})
    return out


def render_site(entries: list[tuple[dict[str, Any], Path]], site_dir: Path) -> Path:
    """Write index.html and the grids; returns the page path."""
    site_dir.mkdir(parents=True, exist_ok=True)
    plain = [e for e, _ in entries]
    page_cols = [c for c in entry_columns(plain) if c.page_key]
    rows = []
    for entry, path in entries:
        grid_rel = f"assets/{entry['entry_id']}.png"
        has_grid = copy_grid(path, site_dir / grid_rel)
        m, t = entry["metrics"], entry["target"]
        rows.append({
            "id": entry["entry_id"], "dataset": entry["dataset"], "target": t["name"],
            "defense": t["defense"]["card"], "attack": entry["attack"]["name"],
            "prior": (entry.get("prior") or {}).get("name", "—"), "protocol": entry_protocol(entry),
            "preset": entry["attack"].get("preset") or "",
            "cells": [
                *(metric_cell(c, m, entry.get("intervals")) for c in page_cols),
                ("nat", t.get("natural_accuracy"), _fmt(t.get("natural_accuracy"), pct=True)),
                ("queries", entry["queries"]["total"], f"{entry['queries']['total']:,}"),
                ("time", entry["wall_time_s"], f"{entry['wall_time_s']:.0f}"),
            ],
            "grid": grid_rel if has_grid else None,
            "config": json.dumps({k: entry[k] for k in ("target", "attack", "prior", "evaluator", "classes", "seed",
                                                        "protocol", "metrics", "intervals", "chance", "unavailable",
                                                        "queries", "environment")
                                  if k in entry}, indent=2, sort_keys=True, default=str),
        })
    # Grids of entries no longer on the page (e.g. replaced baselines) would linger in assets/.
    current = {f"{e['entry_id']}.png" for e in plain}
    for stale in (site_dir / "assets").glob("*.png"):
        if stale.name not in current:
            stale.unlink()
    pooled = cells(plain)
    html = _env().get_template("index.html.j2").render(
        rows=rows, matrices=matrices(pooled), plot=plot_points(pooled), curves=query_curves(pooled),
        version=__version__,
        metric_headers=[{"key": c.page_key, "label": c.page_label or c.name, "title": header_title(c, plain)}
                        for c in page_cols],
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        datasets=sorted({r["dataset"] for r in rows}), defenses=sorted({r["defense"] for r in rows}),
        attacks=sorted({r["attack"] for r in rows}))
    index = site_dir / "index.html"
    atomic_write_text(index, html)
    return index
