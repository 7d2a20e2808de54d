"""A plug-in package (tests/plugins: one attack file, one metric file, an entry point in its
.dist-info) appears in `mibench list`, runs in a suite, gets the contract tests (tests/test_contracts.py
iterates the registries) and shows up in the results table, the CSV and the page — without any edit
under `mibench/`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_zoo import write_tiny_cards

PLUGINS = Path(__file__).parent / "plugins"
REPO = Path(__file__).resolve().parent.parent


def _cli(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "mibench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_plugin_kinds_are_registered_in_process():
    from mibench.registry import ATTACKS, METRICS

    assert "prior_sampling" in ATTACKS.names() and "mean_brightness" in METRICS.names()
    assert ATTACKS.get("prior_sampling").access_level == "black-box"


@pytest.mark.slow
def test_plugin_attack_and_metric_end_to_end(tmp_path):
    cards = write_tiny_cards(tmp_path / "cards")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]),
           "MIBENCH_CARDS": str(cards), "MIBENCH_CACHE": str(tmp_path / "cache")}
    listed = _cli(["list", "attacks"], env, tmp_path)
    assert listed.returncode == 0 and "prior_sampling" in listed.stdout and "black-box" in listed.stdout
    assert "mean_brightness" in _cli(["list", "metrics"], env, tmp_path).stdout
    # A suite of two runs of the plug-in attack (the same worker pool as the default suite).
    code = ("from pathlib import Path\n"
            "from mibench.run import RunSpec\nfrom mibench.run.suite import run_many\n"
            "from mibench.run.table import format_table\n"
            "specs = [RunSpec(target='tiny-target', attack='prior_sampling', prior='tiny-prior', classes=[0, 1],"
            " seed=s, preset='smoke', extra_metrics=['mean_brightness']) for s in (0, 1)]\n"
            "print(format_table(run_many(specs, out=Path('runs'), device='cpu', jobs=2)))\n")
    suite = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert suite.returncode == 0, suite.stderr[-2000:]
    header = suite.stdout.splitlines()[0]
    assert "bright" in header and "acc@1" in header
    assert suite.stdout.count("prior_sampling") == 2
    entry = json.loads(next((tmp_path / "runs").glob("*/entry.json")).read_text())
    assert 0 <= entry["metrics"]["brightness"] <= 1 and entry["attack"]["access"] == "black-box"
    built = _cli(["leaderboard", "build", "--root", str(tmp_path / "lb"), "--from", "runs"], env, tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    csv_header = (tmp_path / "lb" / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert "brightness" in csv_header and "acc@1" in csv_header
    page = (tmp_path / "lb" / "site" / "index.html").read_text()
    assert 'data-key="bright"' in page and "brightness %" in page
