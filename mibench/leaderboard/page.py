"""The static leaderboard page: `leaderboard/site/index.html` (+ reconstruction grids in `assets/`).

Rendered with Jinja2 (autoescaping every string taken from entries); sorting, filtering and the
details panels are a few lines of inline JavaScript, so the page works from `file://` with no server.
The privacy–utility plot is inline SVG computed here.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from mibench import __version__
from mibench.leaderboard.entries import copy_grid
from mibench.leaderboard.table import matrix, to_frame
from mibench.metrics.base import Column, entry_columns
from mibench.ops.fileio import atomic_write_text

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


def metric_cell(col: Column, m: dict[str, Any]) -> tuple[str, Any, str]:
    """(page key, sort value, text) of one metric column; a missing value falls back to the column's
    `fallback` (marked ᵉ, e.g. FID → FID in evaluation-model features)."""
    v = m.get(col.name)
    if v is None and col.fallback and m.get(col.fallback) is not None:
        v = m.get(col.fallback)
        return col.page_key, v, col.format(v) + "ᵉ"
    return col.page_key, v, col.format(v)


def plot_points(entries: list[dict[str, Any]], width: int = 520, height: int = 360,
                pad: int = 48) -> dict[str, Any]:
    """SVG geometry of the privacy–utility plot: x = natural accuracy, y = attack acc@1 (both %)."""
    pts = [(e, e["target"].get("natural_accuracy"), e["metrics"].get("acc@1")) for e in entries]
    pts = [(e, x, y) for e, x, y in pts if x is not None and y is not None]
    attacks = sorted({e["attack"]["name"] for e, _, _ in pts})
    colors = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(attacks)}
    xs = [x for _, x, _ in pts] or [0.0, 1.0]
    x_lo, x_hi = max(0.0, math.floor(min(xs) * 10) / 10 - 0.05), min(1.0, math.ceil(max(xs) * 10) / 10 + 0.0)
    if x_hi - x_lo < 0.1:
        x_lo, x_hi = max(0.0, x_hi - 0.2), min(1.0, x_hi + 0.05)

    def sx(x: float) -> float:
        return pad + (x - x_lo) / (x_hi - x_lo) * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - y * (height - 2 * pad)

    points = [{"x": round(sx(x), 1), "y": round(sy(y), 1), "color": colors[e["attack"]["name"]],
               "id": e["entry_id"],
               "label": f"{e['target']['name']} × {e['attack']['name']}: natural {100 * x:.1f}%, "
                        f"attack acc@1 {100 * y:.1f}%"} for e, x, y in pts]
    xticks = [{"pos": round(sx(t), 1), "label": f"{100 * t:.0f}"}
              for t in [x_lo + i * (x_hi - x_lo) / 4 for i in range(5)]]
    yticks = [{"pos": round(sy(t), 1), "label": f"{100 * t:.0f}"} for t in (0, 0.25, 0.5, 0.75, 1.0)]
    legend = [{"name": a, "color": c} for a, c in colors.items()]
    return {"width": width, "height": height, "pad": pad, "points": points, "xticks": xticks, "yticks": yticks,
            "legend": legend}


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
            "prior": (entry.get("prior") or {}).get("name", "—"),
            "cells": [
                *(metric_cell(c, m) for c in page_cols),
                ("nat", t.get("natural_accuracy"), _fmt(t.get("natural_accuracy"), pct=True)),
                ("queries", entry["queries"]["total"], f"{entry['queries']['total']:,}"),
                ("time", entry["wall_time_s"], f"{entry['wall_time_s']:.0f}"),
            ],
            "grid": grid_rel if has_grid else None,
            "config": json.dumps({k: entry[k] for k in ("target", "attack", "prior", "evaluator", "classes", "seed",
                                                        "metrics", "unavailable", "queries", "environment")
                                  if k in entry}, indent=2, sort_keys=True, default=str),
        })
    # Grids of entries no longer on the page (e.g. replaced baselines) would linger in assets/.
    current = {f"{e['entry_id']}.png" for e in plain}
    for stale in (site_dir / "assets").glob("*.png"):
        if stale.name not in current:
            stale.unlink()
    df = to_frame(plain) if plain else pd.DataFrame()
    matrices = []
    for ds in sorted(df["dataset"].unique()) if len(df) else []:
        mat = matrix(df, ds)
        matrices.append({"dataset": ds, "attacks": list(mat.columns),
                         "rows": [{"defense": d, "cells": [_fmt(mat.loc[d, a], pct=True) for a in mat.columns]}
                                  for d in mat.index]})
    html = _env().get_template("index.html.j2").render(
        rows=rows, matrices=matrices, plot=plot_points(plain), version=__version__,
        metric_headers=[{"key": c.page_key, "label": c.page_label or c.name} for c in page_cols],
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        datasets=sorted({r["dataset"] for r in rows}), defenses=sorted({r["defense"] for r in rows}),
        attacks=sorted({r["attack"] for r in rows}))
    index = site_dir / "index.html"
    atomic_write_text(index, html)
    return index
