"""`mibench run` end to end on a tiny zoo: the run folder, determinism, resume, and bad input."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from mibench.errors import MIBenchError, RegistryError
from mibench.run import RunFolder, RunSpec, parse_classes, resolve, run_one

from tiny_zoo import TINY_IFGMI, TINY_PPA, write_tiny_cards


@pytest.fixture(scope="module")
def tiny_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("tinyzoo")
    write_tiny_cards(root / "cards")
    return root


@pytest.fixture
def env(tiny_env, monkeypatch):
    monkeypatch.setenv("MIBENCH_CARDS", str(tiny_env / "cards"))
    monkeypatch.setenv("MIBENCH_CACHE", str(tiny_env / "cache"))  # the tiny zoo is built once
    return tiny_env


def _spec(attack="ppa", classes=(0, 1, 2), seed=0, **over):
    config = TINY_PPA if attack == "ppa" else TINY_IFGMI
    return RunSpec(target="tiny-target", attack=attack, prior="tiny-prior", classes=list(classes), seed=seed,
                   overrides={**config, **over})


def _images(run_dir, c):
    return load_file(str(RunFolder(run_dir).class_stem(c).with_suffix(".safetensors")))["images"]


@pytest.mark.parametrize("attack", ["ppa", "ifgmi"])
def test_run_writes_the_run_folder(env, tmp_path, attack):
    entry = run_one(_spec(attack), out=tmp_path, device="cpu", progress=False)
    run_dir = tmp_path / entry["entry_id"]
    for name in ("config.json", "entry.json", "per_class.csv", "grid.png", "prepare.json"):
        assert (run_dir / name).is_file(), name
    assert entry["schema_version"] == 2 and entry["classes"] == [0, 1, 2]
    assert entry["protocol"]["name"] == "custom"
    acc = entry["intervals"]["acc@1"]  # every metric carries its 95 % interval over the identities
    assert acc["lo"] <= entry["metrics"]["acc@1"] <= acc["hi"] and acc["covers"] == ["identities"] and acc["n"] == 3
    assert {"knn_dist", "fid_eval"} <= set(entry["intervals"])
    assert "fid" not in entry["intervals"]  # unavailable here: no interval either
    assert entry["attack"]["name"] == attack and entry["attack"]["access"] == "white-box"
    assert 0 <= entry["metrics"]["acc@1"] <= 1 and entry["metrics"]["knn_dist"] > 0
    assert entry["evaluator"]["name"] == "tiny-eval" and entry["evaluator"]["accuracy"] is not None
    assert entry["target"]["natural_accuracy"] is not None
    assert entry["queries"]["total"] > 0
    assert set(entry["unavailable"]) >= {"fid", "facenet_dist"}  # no local weights here: reported, not faked
    assert len(entry["per_class"]) == 3 and _images(run_dir, 0).dtype == torch.uint8
    assert (run_dir / "per_class.csv").read_text().count("\n") == 4
    # Ground truth on synthfaces: identity recovery with intervals, and the chance levels beside it.
    assert {"attr_recovery", "reid@1", "reid@5"} <= set(entry["intervals"])
    assert entry["chance"]["reid@1"] == pytest.approx(1 / 6) and 0 < entry["chance"]["attr_recovery"] < 1


def test_same_seed_same_entry_metrics_and_images(env, tmp_path):
    a = run_one(_spec(), out=tmp_path / "a", device="cpu", progress=False)
    b = run_one(_spec(), out=tmp_path / "b", device="cpu", progress=False)
    assert a["metrics"] == b["metrics"] and a["per_class"] == b["per_class"]
    for c in (0, 1, 2):
        assert torch.equal(_images(tmp_path / "a" / a["entry_id"], c), _images(tmp_path / "b" / b["entry_id"], c))
    other = run_one(_spec(seed=1), out=tmp_path / "c", device="cpu", progress=False)
    assert other["entry_id"] != a["entry_id"]


def test_a_finished_run_is_not_redone(env, tmp_path):
    a = run_one(_spec(), out=tmp_path, device="cpu", progress=False)
    sessions = (tmp_path / a["entry_id"] / "sessions.json").read_text()
    b = run_one(_spec(), out=tmp_path, device="cpu", progress=False)
    assert b == a and (tmp_path / a["entry_id"] / "sessions.json").read_text() == sessions


def test_resume_redoes_only_missing_classes(env, tmp_path):
    full = run_one(_spec(), out=tmp_path, device="cpu", progress=False)
    run_dir = tmp_path / full["entry_id"]
    kept = RunFolder(run_dir).class_stem(0).with_suffix(".json").read_text()
    for c in (1, 2):  # as if the run died before these classes
        RunFolder(run_dir).class_stem(c).with_suffix(".json").unlink()
        RunFolder(run_dir).class_stem(c).with_suffix(".safetensors").unlink()
    (run_dir / "entry.json").unlink()
    resumed = run_one(_spec(), out=tmp_path, device="cpu", progress=False, resume=run_dir)
    assert RunFolder(run_dir).class_stem(0).with_suffix(".json").read_text() == kept  # not redone
    assert resumed["metrics"] == full["metrics"] and resumed["per_class"] == full["per_class"]


def test_resume_with_other_options_is_refused(env, tmp_path):
    full = run_one(_spec(), out=tmp_path, device="cpu", progress=False)
    with pytest.raises(MIBenchError, match="different configuration"):
        run_one(_spec(seed=3), out=tmp_path, device="cpu", progress=False, resume=tmp_path / full["entry_id"])


def test_bad_run_input_is_reported_clearly(env):
    with pytest.raises(RegistryError, match="did you mean 'tiny-target'"):
        resolve(RunSpec(target="tiny-targt", attack="ppa", prior="tiny-prior"))
    with pytest.raises(RegistryError, match="did you mean 'ppa'"):
        resolve(RunSpec(target="tiny-target", attack="ppaa", prior="tiny-prior"))
    with pytest.raises(MIBenchError, match="out of range"):
        resolve(RunSpec(target="tiny-target", attack="ppa", prior="tiny-prior", classes=[0, 6]))
    with pytest.raises(MIBenchError, match="evaluation model"):
        resolve(RunSpec(target="tiny-eval", attack="ppa", prior="tiny-prior"))


def test_parse_classes():
    assert parse_classes("0-3,7,5") == [0, 1, 2, 3, 5, 7]
    assert parse_classes(None) is None and parse_classes("all") is None
    with pytest.raises(MIBenchError, match="--classes"):
        parse_classes("1-x")


def test_a_diverging_class_is_reported_and_the_run_continues(env, tmp_path, monkeypatch):
    import mibench.attacks.ppa as ppa

    real = ppa.PPAttack.identity_loss

    def nan_for_class_1(self, ctx, x, targets, keys, step, seed, n_real=None):
        loss = real(self, ctx, x, targets, keys, step, seed, n_real)
        scale = torch.where(targets == 1, float("nan"), 1.0)  # NaN gradients reach class 1's latents only
        return loss * scale

    monkeypatch.setattr(ppa.PPAttack, "identity_loss", nan_for_class_1)
    entry = run_one(_spec(), out=tmp_path, device="cpu", progress=False)
    assert [f["class"] for f in entry["failed_classes"]] == [1]
    assert "NaN" in entry["failed_classes"][0]["reason"]
    ok = [m for m in entry["per_class"] if not m.get("failed")]
    assert [m["class"] for m in ok] == [0, 2]
    shutil.rmtree(tmp_path)


def test_run_id_and_config_do_not_depend_on_where_the_cards_are(tmp_path, monkeypatch):
    """A fresh clone elsewhere must find the committed baselines: same run id, same config."""
    ids, configs = [], []
    for where in ("a", "deeper/b"):
        monkeypatch.setenv("MIBENCH_CARDS", str(write_tiny_cards(tmp_path / where / "cards")))
        run = resolve(_spec())
        ids.append(run.run_id())
        configs.append(run.config())
    assert ids[0] == ids[1] and configs[0] == configs[1]
    assert "path" not in configs[0]["target"]["card"] and "path" not in configs[0]["prior"]["card"]


def test_entry_of_an_older_schema_is_rewritten_without_attacking_again(env, tmp_path):
    import json

    entry = run_one(_spec(), out=tmp_path, device="cpu", progress=False)
    run_dir = tmp_path / entry["entry_id"]
    old = {k: v for k, v in entry.items() if k not in ("protocol", "intervals", "interval_notes")}
    (run_dir / "entry.json").write_text(json.dumps({**old, "schema_version": 1}))
    images = (run_dir / "classes" / "c00000.safetensors").read_bytes()
    again = run_one(_spec(), out=tmp_path, device="cpu", progress=False)
    assert again["schema_version"] == 2 and again["intervals"] == entry["intervals"]
    assert again["metrics"] == entry["metrics"] and again["wall_time_s"] == entry["wall_time_s"]
    assert (run_dir / "classes" / "c00000.safetensors").read_bytes() == images


def test_protocols_choose_the_classes_and_leave_run_ids_alone(env):
    from mibench.errors import MIBenchError
    from mibench.run.spec import resolve

    quick = resolve(RunSpec(target="tiny-target", attack="ppa", prior="tiny-prior", protocol="quick"))
    explicit = resolve(RunSpec(target="tiny-target", attack="ppa", prior="tiny-prior", classes=quick.classes))
    assert quick.run_id() == explicit.run_id()
    n = quick.target.num_classes
    assert quick.classes == list(range(min(10, n)))
    standard = resolve(RunSpec(target="tiny-target", attack="ppa", prior="tiny-prior", protocol="standard"))
    assert standard.classes == list(range(n))
    with pytest.raises(MIBenchError, match="both a protocol and a class list"):
        resolve(RunSpec(target="tiny-target", attack="ppa", prior="tiny-prior", protocol="quick", classes=[0]))


def test_a_class_the_attack_could_not_start_is_reported_with_the_attacks_reason():
    import torch

    from mibench.attacks.base import ClassResult
    from mibench.run.execute import score_class

    res = ClassResult(3, torch.zeros(1, 3, 4, 4), torch.zeros(1, 2), torch.tensor([float("nan")]),
                      {"failed": "no pool latent is labelled 3"})
    out = score_class(None, res)  # never scored: the scorer is not touched
    assert out["failed"] == "no pool latent is labelled 3" and out["n"] == 0
    res.info = {}
    assert "NaN" in score_class(None, res)["failed"]


def test_a_groups_queries_are_split_exactly_by_phase():
    from mibench.run.execute import split_queries

    shares = split_queries({"attack": 10, "selection": 3, "unused": 0}, 4)
    assert [s["attack"] for s in shares] == [3, 3, 2, 2] and sum(s.get("selection", 0) for s in shares) == 3
    assert all("unused" not in s for s in shares)
