"""The default suite's schedule: one costly run first (it trains shared cached stages), cheap runs
next to keep the other workers busy, then the rest of the costly runs; entries come back in order."""

from mibench.runner import RunSpec
from mibench.suite import _schedule


def test_one_costly_run_first_then_cheap_then_the_rest():
    specs = [RunSpec(target=t, attack=a) for t in "abc" for a in ("ppa", "ifgmi", "lokt")]
    order = [(specs[i].target, specs[i].attack) for i in _schedule(specs)]
    assert order[0] == ("a", "lokt")
    assert {a for _, a in order[1:7]} == {"ppa", "ifgmi"}
    assert order[7:] == [("b", "lokt"), ("c", "lokt")]
    assert sorted(_schedule(specs)) == list(range(len(specs)))  # every run exactly once
