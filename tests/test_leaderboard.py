"""Leaderboard: entry validation, collection, CSV, page rendering (escaping), regression check."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mibench.errors import MIBenchError
from mibench.leaderboard.build import build
from mibench.leaderboard.check import CheckRow, RegressionRun, RegressionSuite, run_check
from mibench.leaderboard.entries import collect, load_entry
from mibench.run import run_one

from entry_factory import make_entry, write_entries
from tiny_zoo import TINY_PPA, write_tiny_cards


def _board(tmp_path, entries):
    write_entries(tmp_path / "lb" / "entries", entries)
    return build(tmp_path / "lb")


def test_build_writes_csv_and_page(tmp_path):
    res = _board(tmp_path, [make_entry("a", acc1=0.7), make_entry("b", defense="nls", acc1=0.2, natural=0.88),
                            make_entry("c", attack="lokt", acc1=0.4)])
    df = pd.read_csv(res["csv"])
    assert len(df) == 3 and set(df["defense"]) == {"none", "nls"}
    assert df.loc[df.entry_id == "b", "acc@1"].item() == pytest.approx(0.2)
    html = res["page"].read_text()
    assert html.count('class="entry"') == 3 and "<svg" in html and html.count('class="point"') == 3
    assert (tmp_path / "lb" / "site" / "assets" / "a.png").is_file()


def test_rebuild_drops_grids_of_entries_no_longer_there(tmp_path):
    _board(tmp_path, [make_entry("a", acc1=0.7), make_entry("old", acc1=0.3)])
    (tmp_path / "lb" / "entries" / "old.json").unlink()
    build(tmp_path / "lb")
    assets = tmp_path / "lb" / "site" / "assets"
    assert (assets / "a.png").is_file() and not (assets / "old.png").exists()


def test_strings_from_entries_are_escaped(tmp_path):
    evil = '<script>alert("x")</script>'
    res = _board(tmp_path, [make_entry("evil", target=evil)])
    html = res["page"].read_text()
    assert evil not in html and "&lt;script&gt;alert(" in html


def test_newest_entry_wins_for_one_id(tmp_path):
    write_entries(tmp_path / "e", [make_entry("x", acc1=0.1, created="2026-01-01T00:00:00Z")])
    (tmp_path / "e" / "x-copy.json").write_text(json.dumps(make_entry("x", acc1=0.9, created="2026-02-01T00:00:00Z")))
    [(entry, _)] = collect(tmp_path / "e")
    assert entry["metrics"]["acc@1"] == 0.9


def test_invalid_entry_names_file_and_field_and_writes_nothing(tmp_path):
    bad = make_entry("bad")
    bad["metrics"]["acc@1"] = 1.7
    write_entries(tmp_path / "lb" / "entries", [make_entry("good"), bad])
    with pytest.raises(MIBenchError) as err:
        build(tmp_path / "lb")
    assert "bad.json" in str(err.value) and "metrics.acc@1" in str(err.value)
    assert not (tmp_path / "lb" / "leaderboard.csv").exists()
    (tmp_path / "lb" / "entries" / "bad.json").write_text("{not json")
    with pytest.raises(MIBenchError, match="not valid JSON"):
        load_entry(tmp_path / "lb" / "entries" / "bad.json")


def test_check_row_tolerance():
    assert CheckRow("r", "acc@1", 0.5, 0.58, 0.1).ok
    assert not CheckRow("r", "acc@1", 0.5, 0.38, 0.1).ok
    assert not CheckRow("r", "acc@1", None, 0.5, 0.1).ok


def test_check_compares_class_by_class():
    from mibench.leaderboard.check import paired_change

    base = make_entry(per_class=[{"class": c, "acc@1": v} for c, v in enumerate([1.0, 0.5, 0.0, 0.25])])
    # A re-run that moves two classes in opposite directions has no net change; a failed class counts 0.
    same = make_entry(per_class=[{"class": c, "acc@1": v} for c, v in enumerate([0.75, 0.75, 0.0, 0.25])])
    worse = make_entry(per_class=[{"class": 0, "failed": "NaN"}] +
                       [{"class": c, "acc@1": v} for c, v in zip((1, 2, 3), [0.5, 0.0, 0.25])])
    assert paired_change(base, same, "acc@1") == (0.0, 4)
    assert paired_change(base, worse, "acc@1") == (-0.25, 4)
    row = CheckRow("r", "acc@1", 0.4375, 0.1875, 0.03, *paired_change(base, worse, "acc@1"))
    assert not row.ok and row.as_dict()["delta"] == "-25.0" and row.as_dict()["classes"] == 4


def test_suite_variants_and_per_attack_tolerances():
    suite = RegressionSuite(runs=[RegressionRun("t", "ppa"), RegressionRun("t", "lokt", overrides={"lr": 0.1})],
                            tolerance={"ppa": {"acc@1": 0.02}, "lokt": {"acc@1": 0.04}}, classes="0-3")
    assert suite.tolerance_for("lokt") == {"acc@1": 0.04}
    with pytest.raises(MIBenchError, match="no tolerance for attack 'ifgmi'"):
        suite.tolerance_for("ifgmi")
    specs = suite.specs(seed=2, overrides={"lokt": {"steps": 5}}, replicate=1)
    assert [s.target for s in specs] == ["t@1", "t@1"] and {s.seed for s in specs} == {2}
    assert specs[1].overrides == {"lr": 0.1, "steps": 5} and specs[0].overrides == {}
    assert [r.attack for r in suite.only(["lokt"]).runs] == ["lokt"]
    with pytest.raises(MIBenchError, match="no run of ifgmi"):
        suite.only(["ifgmi"])


@pytest.mark.slow
def test_regression_check_catches_a_broken_attack(tmp_path, monkeypatch):
    """Baselines from a normal run pass; the same run with the loss sign flipped fails."""
    cards = write_tiny_cards(tmp_path / "cards")
    monkeypatch.setenv("MIBENCH_CARDS", str(cards))
    over = {**TINY_PPA, "steps": 30, "lr": 0.1, "num_candidates": 8, "num_final": 4}
    suite = RegressionSuite(runs=[RegressionRun("tiny-self", "ppa", "tiny-prior", over)], classes="0-5",
                            tolerance={"acc@1": 0.1, "acc@5": 0.1})
    base = run_one(suite.specs()[0], out=tmp_path / "runs", device="cpu", progress=False)
    build(tmp_path / "lb", [tmp_path / "runs"])
    rows = run_check(suite, entries_dir=tmp_path / "lb" / "entries", out=tmp_path / "re", device="cpu",
                     progress=False)
    assert all(r.ok for r in rows)
    assert base["metrics"]["acc@1"] >= 0.5  # the attack works: there is room to regress

    import mibench.attacks.ppa as ppa

    real = ppa.PPAttack.identity_loss
    monkeypatch.setattr(ppa.PPAttack, "identity_loss", lambda self, *a, **k: -real(self, *a, **k))
    rows = run_check(suite, entries_dir=tmp_path / "lb" / "entries", out=tmp_path / "broken", device="cpu",
                     progress=False)
    assert not all(r.ok for r in rows)


def test_check_without_baseline_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setenv("MIBENCH_CARDS", str(write_tiny_cards(tmp_path / "cards")))
    suite = RegressionSuite(runs=[RegressionRun("tiny-target", "ppa", "tiny-prior", TINY_PPA)], classes="0-1")
    with pytest.raises(MIBenchError, match="no baseline entry"):
        run_check(suite, entries_dir=tmp_path / "none", out=tmp_path / "re", device="cpu", progress=False)


def _replicated(defense: str, k: int, seed: int, accs: list[float], natural: float = 0.9) -> dict:
    name = "synthfaces32-resnet" + ("" if defense == "none" else f"-{defense}") + (f"@{k}" if k else "")
    per_class = [{"class": c, "acc@1": a} for c, a in enumerate(accs)]
    return make_entry(f"{name}__ppa__s{seed}", target=name, defense=defense, acc1=sum(accs) / len(accs),
                      natural=natural, seed=seed, per_class=per_class, classes=list(range(len(accs))))


def test_replicates_pool_into_one_cell_and_defense_effects_are_paired():
    from mibench.leaderboard.aggregate import cells

    rng = __import__("numpy").random.default_rng(0)
    hard = rng.uniform(0.2, 1.0, 40)  # identities differ a lot in how easy they are
    entries = []
    for k in range(3):
        for seed in (0, 1):
            noise = rng.normal(0, 0.02, 40)
            entries.append(_replicated("none", k, seed, list(hard + noise)))
            entries.append(_replicated("nls", k, seed, list(hard + noise - 0.08)))  # a real 8-point effect
            entries.append(_replicated("ls", k, seed, list(hard + rng.normal(0, 0.02, 40))))  # no effect
    out = {c.defense: c for c in cells(entries)}
    assert len(out) == 3 and all(len(c.entries) == 6 for c in out.values())
    assert out["none"].acc1.covers == ("identities", "target training seed", "attack seed")
    assert out["none"].effect is None
    nls, ls = out["nls"].effect, out["ls"].effect
    assert nls.value == pytest.approx(-0.08) and nls.excludes_zero() and nls.half_width < 0.02
    assert not ls.excludes_zero()
    # Unpaired, the two cells' own intervals overlap: only the pairing shows the effect.
    assert out["nls"].acc1.hi > out["none"].acc1.lo


def test_pooled_table_marks_only_effects_whose_interval_excludes_zero():
    """`mibench leaderboard pooled`: one row per cell with its replicate count and coverage; `*` only
    on a defense effect whose paired interval excludes 0."""
    from mibench.leaderboard.pooled import format_pooled, pooled_rows

    base = [0.9, 0.5, 0.7, 0.3] * 10
    entries = [_replicated("none", k, 0, base) for k in (0, 1)]
    entries += [_replicated("nls", k, 0, [v - 0.2 for v in base]) for k in (0, 1)]
    entries += [_replicated("ls", k, 0, base[1:] + base[:1]) for k in (0, 1)]  # same mean, other identities
    rows = {r["defense"]: r for r in pooled_rows(entries, protocol=None)}
    assert rows["none"]["runs"] == 2 and rows["none"]["covers"] == "identities + target training seed"
    assert rows["nls"]["Δacc@1 vs none"] == "-20.0 [-20.0, -20.0] *"
    assert rows["ls"]["Δacc@1 vs none"].startswith("+0.0 [") and not rows["ls"]["Δacc@1 vs none"].endswith("*")
    assert rows["none"]["Δacc@1 vs none"] == ""
    assert "no standard entries" in format_pooled(entries)  # these are custom-protocol entries


def test_pooled_runs_count_only_replicates_that_carry_the_metric():
    """An entry made before a metric existed (no per-class value) is not counted as a run of that metric."""
    from mibench.leaderboard.pooled import pooled_rows

    with_reid = [_replicated("none", k, 0, [0.9, 0.5] * 5) for k in (0, 2)]
    for e in with_reid:
        for m in e["per_class"]:
            m["reid@1"] = 0.3
    entries = with_reid + [_replicated("none", 1, 0, [0.9, 0.5] * 5)]
    assert pooled_rows(entries, protocol=None)[0]["runs"] == 3
    assert pooled_rows(entries, protocol=None, metric="reid@1")[0]["runs"] == 2


def test_page_draws_error_bars_and_marks_distinguishable_effects(tmp_path):
    entries = [_replicated("none", 0, 0, [0.9, 0.5, 0.7, 0.3] * 10),
               _replicated("nls", 0, 0, [0.7, 0.3, 0.5, 0.1] * 10, natural=0.88),
               make_entry("q", acc1=0.6, classes=list(range(10)))]
    res = _board(tmp_path, entries)
    html = res["page"].read_text()
    assert html.count('class="errorbar"') == 3
    assert 'data-protocol="custom"' in html and 'data-protocol="quick"' in html  # protocols in separate matrices
    assert 'class="effect sig"' in html and "Δ -20.0 [-20.0, -20.0] *" in html
    assert "± " in html


def test_attacks_are_compared_pairwise_on_shared_identities(tmp_path):
    """`mibench leaderboard compare A B`: per target, the paired difference of A and B over the same
    identities and seeds, `*` only where its interval excludes 0."""
    from click.testing import CliRunner

    from mibench.cli import cli
    from mibench.leaderboard.compare import compare_rows, format_compare

    hard = [0.9, 0.5, 0.7, 0.3] * 10

    def entry(attack, accs, defense="none"):
        e = _replicated(defense, 0, 0, accs)
        e["entry_id"] = e["entry_id"].replace("__ppa__", f"__{attack}__")
        e["attack"] = {**e["attack"], "name": attack}
        return e

    entries = [entry("gmi", hard), entry("kedmi", [v + 0.1 for v in hard]),
               entry("gmi", hard, "nls"), entry("kedmi", hard[1:] + hard[:1], "nls"), entry("ppa", hard, "ls")]
    rows = {r["defense"]: r for r in compare_rows(entries, "kedmi", "gmi", protocol=None)}
    assert set(rows) == {"none", "nls"}, "a target with only one of the two attacks has no row"
    assert rows["none"]["Δacc@1"] == "+10.0 [+10.0, +10.0] *" and rows["none"]["covers"] == "identities"
    assert rows["nls"]["Δacc@1"].startswith("+0.0 [") and not rows["nls"]["Δacc@1"].endswith("*")
    assert "no target has standard entries of both" in format_compare(entries, "kedmi", "gmi")
    # An attack run with two configurations on one target: one row each, named by what differs.
    clipped = entry("kedmi", hard)
    clipped["attack"] = {**clipped["attack"], "config": {**(clipped["attack"].get("config") or {}), "clip_z": 1.0}}
    clipped["entry_id"] += "-clip"
    two = [r for r in compare_rows(entries + [clipped], "kedmi", "gmi", protocol=None) if r["defense"] == "none"]
    assert len(two) == 2 and {r["config"] for r in two} == {"clip_z=1.0", "clip_z=None"}
    assert {r["Δacc@1"] for r in two} == {"+10.0 [+10.0, +10.0] *", "+0.0 [+0.0, +0.0]"}
    assert "config" not in rows["none"], "one configuration each: no config column"
    write_entries(tmp_path / "entries", entries, grids=False)
    out = CliRunner().invoke(cli, ["leaderboard", "compare", "kedmi", "gmi", "--root", str(tmp_path),
                                    "--protocol", "all"])
    assert out.exit_code == 0, out.output
    assert "+10.0 [+10.0, +10.0] *" in out.output
    bad = CliRunner().invoke(cli, ["leaderboard", "compare", "kedmi", "gmi", "--root", str(tmp_path),
                                    "--metric", "acc@2"])
    assert bad.exit_code != 0 and "not a per-class metric" in str(bad.exception)


def test_one_attack_is_compared_through_two_priors():
    """`compare ppa:NEW ppa:OLD`: the same attack, paired over identities, through two priors."""
    from mibench.leaderboard.compare import compare_rows

    hard = [0.9, 0.5, 0.7, 0.3] * 10
    old = _replicated("none", 0, 0, hard)
    new = _replicated("none", 0, 0, [v + 0.05 for v in hard])
    new["prior"] = {**(new.get("prior") or {}), "name": "prior-v2"}
    new["entry_id"] += "-v2"
    old_prior = (old.get("prior") or {}).get("name")
    rows = compare_rows([old, new], "ppa:prior-v2", f"ppa:{old_prior}", protocol=None)
    assert len(rows) == 1 and rows[0]["Δacc@1"] == "+5.0 [+5.0, +5.0] *"
    assert rows[0]["ppa:prior-v2"].startswith("65.0 ± ")
    assert compare_rows([old, new], "ppa:prior-v2", "ppa:missing", protocol=None) == []


def test_page_plots_query_attacks_accuracy_against_queries_per_identity(tmp_path):
    def point(i, steps, queries, acc):
        e = make_entry(f"lokt{i}", attack="lokt", acc1=acc, queries={"total": queries, "by_phase": {"attack": queries}})
        e["attack"]["config"] = {"steps": steps}  # another configuration: another point
        return e

    entries = [point(0, 10, 1000, 0.2), point(1, 40, 100_000, 0.6), point(2, 20, 10_000, 0.4),
               make_entry("wb", acc1=0.9)]  # a white-box attack: not on the plot
    html = _board(tmp_path, entries)["page"].read_text()
    assert html.count('class="qpoint"') == 3 and 'id="queries-plot"' in html
    # One line through the three configurations, ordered by queries (100, 1 000, 10 000 per identity).
    path = html.split('<g class="curve"')[1].split('d="')[1].split('"')[0]
    xs = [float(p.split(",")[0].lstrip("ML")) for p in path.split()]
    assert len(xs) == 3 and xs == sorted(xs)
    assert "1,000 queries per identity, acc@1 40.0%" in html
    # One colour per attack: the same attack under another protocol is another line in the same
    # colour, the non-standard one dashed, and the legend lists the attack once.
    standard = point(3, 10, 1000, 0.3)
    standard["classes"] = list(range(100))
    standard["per_class"] = [{"class": c, "acc@1": 0.3} for c in range(100)]
    html = _board(tmp_path / "q", entries + [standard])["page"].read_text()
    colours = {g.split('stroke="')[1].split('"')[0] for g in html.split('<g class="curve"')[1:]}
    assert html.count('<g class="curve"') == 2 and len(colours) == 1 and html.count('stroke-dasharray') == 1
    assert html.count('class="legend"') == 1
    only_white_box = _board(tmp_path / "wb", [make_entry("wb", acc1=0.9)])["page"].read_text()
    assert 'id="queries-plot"' not in only_white_box


def test_matrix_has_a_column_per_attack_configuration():
    """Two configurations of one attack on the same targets are two matrix columns, each headed by
    the setting that differs — never one of them silently."""
    from mibench.leaderboard.aggregate import cells
    from mibench.leaderboard.page import matrices

    def entry(defense: str, steps: int, acc: float) -> dict:
        e = make_entry(f"{defense}-{steps}", target="synthfaces32-resnet" + ("" if defense == "none" else f"-{defense}"),
                       defense=defense, acc1=acc)
        e["attack"]["config"] = {"steps": steps, "lr": 0.1}
        return e

    entries = [entry("none", 40, 0.9), entry("none", 10, 0.5), entry("nls", 40, 0.6), entry("nls", 10, 0.3),
               make_entry("lokt", attack="lokt", acc1=0.4)]
    [m] = matrices(cells(entries))
    assert m["attacks"] == ["lokt", "ppa (steps=10)", "ppa (steps=40)"]
    rows = {r["defense"]: [c and c["value"] for c in r["cells"]] for r in m["rows"]}
    assert rows == {"none": ["40.0", "50.0", "90.0"], "nls": [None, "30.0", "60.0"]}
    nls = {h: c for h, c in zip(m["attacks"], m["rows"][1]["cells"])}
    assert nls["ppa (steps=10)"]["effect"]["value"] == "-20.0" and nls["ppa (steps=40)"]["effect"]["value"] == "-30.0"


def test_a_run_under_a_query_budget_is_its_own_configuration():
    """Same attack settings with and without `--query-budget`: two results, never pooled as replicates."""
    from mibench.leaderboard.aggregate import cells
    from mibench.leaderboard.page import matrices

    capped = make_entry("capped", attack="lokt", acc1=0.2)
    capped["queries"]["budget"] = 1000
    cs = cells([make_entry("full", attack="lokt", acc1=0.6), capped])
    assert len(cs) == 2 and all(len(c.entries) == 1 for c in cs)
    [m] = matrices(cs)
    assert m["attacks"] == ["lokt (query_budget=1000)", "lokt (query_budget=None)"]
