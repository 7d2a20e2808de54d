"""CI's regression check of attack accuracy: `mibench leaderboard check` against the committed entries.

Builds the zoo entries the regression suite needs (in the test's private cache), re-runs the suite
and fails when an attack accuracy leaves the tolerance band of `leaderboard/regression.yaml`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_committed_baselines_are_reproduced(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "mibench", "leaderboard", "check", "--device", "cpu",
                           "--out", str(tmp_path / "regression")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=3500)
    report = proc.stdout + proc.stderr[-4000:]
    assert proc.returncode == 0, report
    assert "regression check passed" in proc.stdout
