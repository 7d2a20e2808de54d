"""`mibench leaderboard build`: entries → leaderboard.csv + the static site."""

from __future__ import annotations

from pathlib import Path

from mibench.errors import MIBenchError
from mibench.leaderboard.entries import collect, import_runs
from mibench.leaderboard.page import render_site
from mibench.leaderboard.table import to_frame, write_csv


def build(root: Path = Path("leaderboard"), runs: list[Path] | None = None) -> dict[str, object]:
    """Import entries from run folders (optional), validate all, write the CSV and the page."""
    entries_dir = root / "entries"
    imported = []
    for r in runs or []:
        if not Path(r).is_dir():
            raise MIBenchError("runs folder not found", path=r, fix="pass the folder `mibench run --out` wrote to")
        imported += import_runs(Path(r), entries_dir)
    entries = collect(entries_dir)  # validates every entry before anything is written
    if not entries:
        raise MIBenchError("no leaderboard entries found", path=entries_dir,
                           fix="run `mibench run` and then `mibench leaderboard build --from runs`")
    csv_path = write_csv(to_frame([e for e, _ in entries]), root / "leaderboard.csv")
    page = render_site(entries, root / "site")
    return {"entries": len(entries), "imported": len(imported), "csv": csv_path, "page": page}
