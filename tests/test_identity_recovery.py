"""Ground-truth identity recovery on synthfaces: the data's ground truth, the attribute reader, the
re-identification arithmetic, the metric kinds and the no-prior control attack."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mibench.data import load_dataset
from mibench.data.base import TensorImageDataset
from mibench.data.synthfaces import identity_attributes
from mibench.metrics.attribute_reader import (
    TOLERANCE,
    AttributeReader,
    identity_scores,
    load_reader,
    reader_artifact,
    recovered,
    reid_hits,
)
from mibench.metrics.base import ClassBatch, MetricUnavailable
from mibench.metrics.evaluator import ReconstructionScorer
from mibench.registry import METRICS

P = {"resolution": 16, "num_private": 6, "train_per_class": 6, "test_per_class": 3, "num_public": 24,
     "public_per_identity": 4}


def _private_test():
    return load_dataset("synthfaces32", "private-test", **P)


def _exact_readings(reader: AttributeReader, attrs: dict, rows: np.ndarray) -> dict[str, torch.Tensor]:
    """Readings that say exactly what identities `rows` are (one-hot palettes, exact values)."""
    out = {}
    for s in reader.specs:
        v = np.asarray(attrs[s.name])[rows]
        if s.kind == "categorical":
            out[s.name] = torch.nn.functional.one_hot(torch.from_numpy(v.astype(np.int64)), s.size).double()
        else:
            out[s.name] = torch.from_numpy((v - s.lo) / (s.hi - s.lo))
    return out


def test_synthfaces_carries_its_ground_truth():
    ds = _private_test()
    truth = ds.ground_truth
    ids = truth.class_attributes()
    assert np.array_equal(ids["hair_colour"], identity_attributes(np.arange(6), seed=0)["hair_colour"])
    images, labels, per_image = truth.split_with_attributes("private-test")
    assert torch.equal(images, ds.load_tensors()[0]) and len(per_image["face_w"]) == len(labels)
    # Per-image values jitter around the identity's; palettes stay (but glasses may come off).
    assert np.array_equal(per_image["hair_style"], ids["hair_style"][labels.numpy()])
    assert not np.array_equal(per_image["face_w"], ids["face_w"][labels.numpy()])
    assert truth.with_split("public").population == "public"
    assert TensorImageDataset(images, labels, ["a"] * 6).ground_truth is None


def test_the_reader_is_cached_and_deterministic():
    truth = _private_test().ground_truth
    first = load_reader(truth, progress=False)
    art = reader_artifact(truth)
    assert art.exists() and first.meta["holdout_identities"] >= 2 and set(first.readable) <= {
        s.name for s in first.specs}
    again = load_reader(truth, progress=False)  # from the cache
    for a, b in zip(first.net.state_dict().values(), again.net.state_dict().values()):
        assert torch.equal(a, b)
    retrained = load_reader(truth, progress=False, force=True)  # trained again: the same bytes
    for a, b in zip(first.net.state_dict().values(), retrained.net.state_dict().values()):
        assert torch.equal(a, b)


def test_exact_readings_recover_and_reidentify_their_identity():
    truth = _private_test().ground_truth
    reader = load_reader(truth, progress=False)
    reader.readable = tuple(s.name for s in reader.specs)  # every attribute counts, for the arithmetic
    ids = truth.class_attributes()
    rows = np.arange(6)
    readings = _exact_readings(reader, ids, rows)
    scores = identity_scores(reader, readings, ids)
    assert torch.equal(scores.argmax(1), torch.arange(6))
    assert torch.all(reid_hits(scores, torch.arange(6), 1) == 1)
    identity0 = {k: v[0] for k, v in ids.items()}
    assert recovered(reader, {k: v[:1] for k, v in readings.items()}, identity0)[0] == 1.0
    other = recovered(reader, {k: v[1:2] for k, v in readings.items()}, identity0)[0]
    assert 0 <= other < 1  # another person's attributes match only in part


def test_reid_ties_are_broken_uniformly_and_exactly():
    scores = torch.tensor([[1.0, 1.0, 1.0, 0.0], [2.0, 3.0, 2.0, 2.0], [0.0, 0.0, 0.0, 5.0]])
    truth = torch.tensor([0, 0, 1])
    assert reid_hits(scores, truth, 1).tolist() == pytest.approx([1 / 3, 0.0, 0.0])
    assert reid_hits(scores, truth, 2).tolist() == pytest.approx([2 / 3, 1 / 3, 1 / 3])


def test_chance_levels_follow_the_attribute_distributions():
    from mibench.data.synthfaces import ATTRIBUTES

    glasses = next(s for s in ATTRIBUTES if s.name == "glasses")
    w = np.array(glasses.weights) / sum(glasses.weights)
    assert glasses.chance(TOLERANCE) == pytest.approx(float((w ** 2).sum()))
    face_w = next(s for s in ATTRIBUTES if s.name == "face_w")
    assert face_w.chance(0.1) == pytest.approx(0.19)


def _scorer(private):
    from mibench.classifiers.architectures import build_classifier

    evaluator = build_classifier("compact_resnet", 6, 16, {"width": 8, "depths": [1, 1]}, seed=0).eval()
    return ReconstructionScorer.create(evaluator, private, torch.device("cpu"))


def test_the_metrics_score_real_images_above_fake_ones_and_report_chance():
    private = load_dataset("synthfaces32", "private-train", **P)
    scorer = _scorer(private)
    assert not {"attr_recovery", "reid@1", "eval_fp"} & set(scorer.unavailable)
    kind = METRICS.get("identity_recovery")
    test = _private_test()
    x, y = test.load_tensors()
    real = kind.score_class(scorer, ClassBatch(0, x[y == 0], y[y == 0], None, None))
    grey = torch.full((3, 3, 16, 16), 128, dtype=torch.uint8)
    fake = kind.score_class(scorer, ClassBatch(0, grey, torch.zeros(3, dtype=torch.long), None, None))
    assert all(0 <= v <= 1 for v in (*real.values(), *fake.values()))
    chance = kind.chance(scorer)
    assert chance["reid@1"] == pytest.approx(1 / 6) and chance["reid@5"] == pytest.approx(5 / 6)
    fp = METRICS.get("evaluator_fp")
    never = torch.tensor([[0.0, 9, 0, 0, 0, 0]]).repeat(3, 1)  # the evaluator never says class 0
    assert fp.score_class(scorer, ClassBatch(0, grey, torch.zeros(3, dtype=torch.long), None, never)) == {
        "eval_fp": None}
    always = torch.tensor([[9.0, 0, 0, 0, 0, 0]]).repeat(3, 1)
    v = fp.score_class(scorer, ClassBatch(0, grey, torch.zeros(3, dtype=torch.long), None, always))["eval_fp"]
    assert 0 <= v <= 1


def test_data_without_ground_truth_reports_why():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8, generator=g)
    private = TensorImageDataset(imgs, torch.arange(6).repeat_interleave(2), [f"c{i}" for i in range(6)])
    scorer = _scorer(private)
    assert "synthfaces" in scorer.unavailable["reid@1"] and "eval_fp" in scorer.unavailable
    with pytest.raises(MetricUnavailable):
        METRICS.get("identity_recovery").setup(scorer)


def test_the_no_prior_control_optimises_pixels_with_ppas_budget():
    from mibench.attacks.noprior import NoPriorAttack
    from mibench.attacks.ppa import PPA_PRESETS
    from tests.test_contracts import _ctx

    attack = NoPriorAttack.from_preset("smoke")
    assert not NoPriorAttack.needs_prior and attack.config.lr == 0.5
    for field in ("search_space_size", "num_candidates", "num_final", "steps", "final_views"):
        assert getattr(attack.config, field) == PPA_PRESETS["smoke"][field]
    ctx = _ctx(NoPriorAttack, None)
    assert ctx.prior is None
    res = attack.attack_classes(ctx, [0, 1])
    again = NoPriorAttack.from_preset("smoke").attack_classes(_ctx(NoPriorAttack, None), [0, 1])
    assert [r.images.shape for r in res] == [(2, 3, 16, 16)] * 2
    assert all(torch.equal(a.images, b.images) for a, b in zip(res, again))


def test_a_second_evaluator_of_the_same_data_judges_every_run(tmp_path, monkeypatch):
    import yaml

    from mibench.run.execute import run_one
    from mibench.run.spec import RunSpec, resolve
    from tests.tiny_zoo import write_tiny_cards

    cards = write_tiny_cards(tmp_path / "cards")
    monkeypatch.setenv("MIBENCH_CARDS", str(cards))
    assert resolve(RunSpec(target="tiny-target", attack="ppa", prior="tiny-prior")).evaluator2 is None
    eval_card = yaml.safe_load((cards / "targets" / "tiny-eval.yaml").read_text())
    eval_card.update(description="second tiny evaluator", arch_params={"width": 8, "depths": [2, 2, 2]})
    eval_card["train"]["seed"] = 8
    (cards / "targets" / "tiny-eval2.yaml").write_text(yaml.safe_dump(eval_card))
    spec = RunSpec(target="tiny-target", attack="ppa", prior="tiny-prior", classes=[0, 1], seed=0, preset="smoke")
    run = resolve(spec)
    assert run.evaluator2.name == "tiny-eval2"
    entry = run_one(spec, out=tmp_path / "runs", device="cpu", progress=False)
    assert entry["evaluator"]["second"]["name"] == "tiny-eval2"
    assert 0 <= entry["metrics"]["acc2@1"] <= 1 and "acc2@1" in entry["intervals"]
    # The second judge is not part of the attack: the run id is the one without it.
    (cards / "targets" / "tiny-eval2.yaml").unlink()
    assert resolve(spec).run_id() == entry["entry_id"]


def test_pooled_results_rank_defenses_by_any_per_class_metric():
    from mibench.leaderboard.pooled import format_pooled
    from tests.entry_factory import make_entry

    def entry(defense, acc, reid):
        e = make_entry(f"t-{defense}__ppa__p__seed0__abc", target="synthfaces32-resnet" + (
            "" if defense == "none" else f"-{defense}"), defense=defense, acc1=acc)
        e["per_class"] = [{"class": c, "acc@1": acc, "reid@1": reid + 0.01 * (c % 3)} for c in range(10)]
        return e

    entries = [entry("none", 0.8, 0.3), entry("nls", 0.5, 0.3)]
    by_acc = format_pooled(entries, protocol=None)
    by_reid = format_pooled(entries, protocol=None, metric="reid@1")
    assert "Δacc@1 vs none" in by_acc and "-30.0" in by_acc
    assert "Δreid@1 vs none" in by_reid and "+0.0" in by_reid  # the same defense does nothing to reid@1
