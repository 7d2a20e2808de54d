"""`mibench sweep`: one run per value of an attack setting, accuracy against queries spent."""

from __future__ import annotations

import pytest

from mibench.errors import MIBenchError
from mibench.run import RunSpec, resolve
from mibench.run.sweep import parse_vary, run_sweep, sweep_specs, sweep_table

from tiny_zoo import TINY_PPA, write_tiny_cards


def test_vary_parses_yaml_values_and_refuses_a_single_point():
    assert parse_vary("steps=10, 20,40") == ("steps", [10, 20, 40])
    assert parse_vary("lomma.lambda_reg=0,0.5") == ("lomma.lambda_reg", [0, 0.5])
    for bad in ("steps", "steps=", "=1,2", "steps=10"):
        with pytest.raises(MIBenchError) as err:
            parse_vary(bad)
        assert err.value.field == "--vary"


def test_each_point_is_its_own_run_and_the_table_reports_queries_per_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("MIBENCH_CARDS", str(write_tiny_cards(tmp_path / "cards")))
    spec = RunSpec(target="tiny-target", attack="ppa", prior="tiny-prior", classes=[0, 1], overrides=TINY_PPA)
    specs = sweep_specs(spec, "steps", [1, 2])
    assert [s.overrides["steps"] for s in specs] == [1, 2] and spec.overrides == TINY_PPA
    assert len({resolve(s).run_id() for s in specs}) == 2  # the swept value is in the run id
    with pytest.raises(MIBenchError):  # a bad value fails before any point runs
        run_sweep(spec, "steps", [1, -5], out=tmp_path / "runs", device="cpu", progress=False)
    assert not (tmp_path / "runs").exists()
    entries = run_sweep(spec, "steps", [1, 2], out=tmp_path / "runs", device="cpu", progress=False)
    assert [e["attack"]["config"]["steps"] for e in entries] == [1, 2]
    assert entries[1]["queries"]["total"] > entries[0]["queries"]["total"]
    table = sweep_table(entries, "steps", [1, 2])
    assert "queries/id" in table and f"{round(entries[1]['queries']['total'] / 2)}" in table
