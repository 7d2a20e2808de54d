"""CI's regression check of attack accuracy: `mibench leaderboard check` against the committed
baselines in leaderboard/regression/.

An unchanged re-run under another CPU's kernels (`ATEN_CPU_CAPABILITY=avx2`) must pass, and a planted
weakening of each attack that costs it about 5–10 points of acc@1 must fail (figures of the
measured drops: leaderboard/regression.yaml, `spread:`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SUITE = yaml.safe_load((REPO / "leaderboard" / "regression.yaml").read_text())


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the module's check runs: the synthfaces renders are made once."""
    return tmp_path_factory.mktemp("regression-cache")


def _check(tmp_path: Path, cache: Path, *args: str, env: dict[str, str] | None = None):
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, "-m", "mibench", "leaderboard", "check", "--device", "cpu",
                           "--out", str(tmp_path / "regression"), "--json", str(out), *args],
                          cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1", "MIBENCH_CACHE": str(cache),
                                         **(env or {})}, capture_output=True, text=True, timeout=1500)
    rows = json.loads(out.read_text()) if out.is_file() else []
    return proc, rows


def test_suite_covers_every_attack_of_the_default_suite():
    from mibench.run.suite import suite_attacks

    assert {r["attack"] for r in SUITE["runs"]} == set(suite_attacks())
    assert set(SUITE["tolerance"]) == set(suite_attacks())
    assert all("command" in v for v in SUITE["spread"].values())  # every figure says how it was measured


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_unchanged_code_under_other_cpu_kernels_passes(tmp_path, shared_cache):
    proc, rows = _check(tmp_path, shared_cache, env={"ATEN_CPU_CAPABILITY": "avx2"})
    report = proc.stdout + proc.stderr[-4000:]
    assert proc.returncode == 0, report
    assert "regression check passed" in proc.stdout
    assert {r["run"].split(" × ")[1] for r in rows} == {r["attack"] for r in SUITE["runs"]}


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("weakening", SUITE["weakenings"], ids=lambda w: w.split(":")[0])
def test_a_planted_weakening_of_each_attack_fails(tmp_path, shared_cache, weakening):
    attack = weakening.split(":")[0]
    proc, rows = _check(tmp_path, shared_cache, "--attack", attack, "--set", weakening)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-4000:]
    acc = next(r for r in rows if r["metric"] == "acc@1")
    assert acc["delta"] < -acc["tolerance"]  # it fails because accuracy dropped, not for another reason
