"""The default suite's schedule: one costly run first (it trains shared cached stages), cheap runs
next to keep the other workers busy, then the rest of the costly runs; entries come back in order."""

from mibench.run import RunSpec
from mibench.run.suite import schedule as _schedule


def test_one_costly_run_first_then_cheap_then_the_rest():
    specs = [RunSpec(target=t, attack=a) for t in "abc" for a in ("ppa", "ifgmi", "lokt")]
    order = [(specs[i].target, specs[i].attack) for i in _schedule(specs)]
    assert order[0] == ("a", "lokt")
    assert {a for _, a in order[1:7]} == {"ppa", "ifgmi"}
    assert order[7:] == [("b", "lokt"), ("c", "lokt")]
    assert sorted(_schedule(specs)) == list(range(len(specs)))  # every run exactly once


def test_bad_runs_fail_early_and_a_failing_worker_stops_the_suite(tmp_path, monkeypatch):
    import pytest

    from mibench.errors import MIBenchError
    from mibench.run.suite import run_many

    from tiny_zoo import TINY_PPA, write_tiny_cards

    monkeypatch.setenv("MIBENCH_CARDS", str(write_tiny_cards(tmp_path / "cards")))
    specs = [RunSpec(target="tiny-target", attack="ppa", prior="tiny-prior", classes=[c], overrides=TINY_PPA)
             for c in (0, 1)]
    with pytest.raises(MIBenchError, match="out of range"):  # checked before any worker starts
        run_many([*specs, RunSpec(target="tiny-target", attack="ppa", classes=[999])], out=tmp_path, jobs=2)
    with pytest.raises(MIBenchError, match="not built"):  # raised in a worker, reported here
        run_many(specs, out=tmp_path / "runs", device="cpu", build=False, jobs=2)
    assert not any((tmp_path / "runs").glob("*/entry.json"))


def test_suite_replicate_attacks_every_targets_replicate_on_the_protocol():
    """`mibench run --replicate 2 --protocol standard`: every suite target's `@2` replicate, all classes."""
    from mibench.run.spec import resolve
    from mibench.run.suite import suite_specs

    base, rep = suite_specs(protocol="standard"), suite_specs(protocol="standard", replicate=2)
    assert [f"{s.target}@2" for s in base] == [s.target for s in rep]
    assert [s.attack for s in base] == [s.attack for s in rep]
    r = resolve(rep[0])
    assert r.target.name == f"{base[0].target}@2" and r.classes == list(range(r.target.num_classes))
