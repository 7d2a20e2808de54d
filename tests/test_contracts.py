"""Contract tests over the registries, as timm's tests iterate `list_models()`: every registered
attack (built-ins and plug-ins alike), defense and metric kind gets the same checks, with no list of
names here. An attack runs its `smoke` preset against a tiny random target and prior."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mibench.attacks.access import ACCESS_LEVELS, BlackBox, LabelOnly, WhiteBox
from mibench.attacks.addon import attack_class, attack_names
from mibench.attacks.base import Attack, AttackContext
from mibench.classifiers.architectures import build_classifier
from mibench.classifiers.recipe import TrainRecipe
from mibench.data import load_dataset
from mibench.data.base import TensorImageDataset
from mibench.errors import AttackError, CardError
from mibench.metrics.base import ClassBatch, Metric, RunBatch
from mibench.registry import DEFENSES, GENERATORS, METRICS

from access_spy import Spy

RES, K = 16, 4
PUBLIC = {"resolution": RES, "num_private": K, "train_per_class": 4, "test_per_class": 2, "num_public": 12,
          "public_per_identity": 2, "num_shifted": 2, "shifted_per_identity": 1}
# What each access level lets an attack touch on its access object.
ALLOWED = {"white-box": {"logits", "features_and_logits", "model"}, "black-box": {"probs"}, "label-only": {"labels"}}
COMMON = {"num_classes", "input_size", "device", "queries", "queries_by_phase", "set_phase", "credit", "level",
          "budget"}



def _target():
    return build_classifier("compact_resnet", K, RES, {"width": 8, "depths": [1, 1]}, seed=0).eval()


def _prior(cls):
    """A tiny random prior of the first generator kind the attack runs on (the kind's smoke params)."""
    kind = GENERATORS.get(cls.prior_kinds[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        G = kind.build(kind.smoke_params, RES)
    return G.eval().requires_grad_(False)


def _ctx(cls, store, spy: bool = False):
    access = ACCESS_LEVELS[cls.access_level](_target(), K, RES, "cpu")
    return AttackContext(access=Spy(access) if spy else access, prior=_prior(cls) if cls.needs_prior else None,
                         device=torch.device("cpu"), seed=0, output_size=RES, progress=False, store_dir=store,
                         public_data=lambda: load_dataset("synthfaces32", "public", **PUBLIC))


def _run(cls, classes, ctx):
    attack = cls.from_preset("smoke")
    attack.prepare(ctx)
    return attack.attack_classes(ctx, classes)


@pytest.mark.parametrize("name", attack_names())
def test_attack_declares_what_the_runner_needs(name):
    cls = attack_class(name)
    assert issubclass(cls, Attack) and cls.name == name and cls.description
    assert cls.access_level in ACCESS_LEVELS
    assert "smoke" in cls.presets, "every attack declares a seconds-long `smoke` preset for these tests"
    assert cls.cost > 0 and isinstance(cls.in_default_suite, bool)
    for preset in cls.presets:
        cls.from_preset(preset)  # every preset validates
    for field in cls.prior_fields:
        assert field in {f.name for f in dataclasses.fields(cls.config_cls)}
    if cls.needs_prior:
        assert cls.prior_kinds and all(k in GENERATORS for k in cls.prior_kinds)
        assert all(GENERATORS.get(k).smoke_params for k in cls.prior_kinds), "each prior kind declares smoke_params"


@pytest.mark.parametrize("name", attack_names())
def test_attack_rejects_a_bad_config_field(name):
    cls = attack_class(name)
    with pytest.raises(AttackError, match="no_such_setting"):
        cls.from_preset("smoke", {"no_such_setting": 1})
    with pytest.raises(AttackError, match="has no preset"):
        cls.from_preset("no-such-preset")


@pytest.mark.parametrize("name", attack_names())
def test_attack_is_deterministic_batching_invariant_and_stays_in_its_access_level(name, tmp_path):
    cls = attack_class(name)
    ctx = _ctx(cls, tmp_path / "a", spy=True)
    together = _run(cls, [0, 1], ctx)
    used = ctx.access.used - COMMON
    assert used <= ALLOWED[cls.access_level], f"{name} used {used - ALLOWED[cls.access_level]}"
    again = _run(cls, [0, 1], _ctx(cls, tmp_path / "b"))
    alone = [_run(cls, [c], _ctx(cls, tmp_path / f"c{c}"))[0] for c in (0, 1)]
    for a, b, c in zip(together, again, alone):
        assert a.images.shape[0] >= 1 and a.images.shape[1:] == (3, RES, RES)
        assert torch.equal(a.images, b.images), "same seed, same images"
        assert torch.equal(a.images, c.images), "a class gives the same images alone or batched"


def test_access_objects_have_no_path_to_what_their_level_hides():
    model = _target()
    for access in (LabelOnly(model, K, RES, "cpu"), BlackBox(model, K, RES, "cpu")):
        assert not any(isinstance(v, torch.nn.Module) for v in vars(access).values())
        with pytest.raises(AttackError, match="may only use"):
            access.logits(torch.rand(1, 3, RES, RES))
        with pytest.raises(AttackError):
            access.model  # noqa: B018
    x = torch.rand(2, 3, RES, RES)
    labels = LabelOnly(model, K, RES, "cpu").labels(x)
    assert labels.dtype == torch.int64 and not labels.is_floating_point()
    assert torch.allclose(BlackBox(model, K, RES, "cpu").probs(x).sum(1), torch.ones(2))
    assert isinstance(WhiteBox(model, K, RES, "cpu").logits(x), torch.Tensor)


@pytest.mark.parametrize("name", DEFENSES.names())
def test_defense_contract(name):
    cls = DEFENSES.get(name)
    defense = cls({})
    assert defense.describe()["kind"] == name and cls.paper is not None
    with pytest.raises(CardError, match="no_such_param"):
        cls({"no_such_param": 1})
    access = WhiteBox(_target(), K, RES, "cpu")
    assert defense.wrap_access(access) is not None
    if cls.needs_public_pretraining:
        return  # needs public data; covered by tests/test_defenses.py
    model = _target().train()
    from mibench.defenses.base import DefenseContext

    model = defense.prepare(model, DefenseContext(recipe=TrainRecipe(epochs=1), seed=0))
    x, y = torch.rand(4, 3, RES, RES), torch.tensor([0, 1, 2, 3])
    loss, logs = defense.loss(model, x, y, 0.5)
    assert loss.ndim == 0 and torch.isfinite(loss) and "acc" in logs
    loss.backward()
    assert any(p.grad is not None for p in defense.trainable_parameters(model))


@pytest.mark.parametrize("name", METRICS.names())
def test_metric_contract(name):
    kind = METRICS.get(name)
    assert isinstance(kind, Metric) and kind.name == name and kind.description and kind.columns
    assert kind.scope in ("class", "run") and kind.aggregate in ("all", "scored")
    assert len({c.name for c in kind.columns}) == len(kind.columns)
    for col in kind.columns:
        assert col.more_leakage in ("higher", "lower") and col.format(None) == "n/a"


def test_metric_kinds_produce_their_columns():
    """Every metric that needs nothing beyond the evaluation model computes exactly its columns."""
    from mibench.metrics.base import MetricUnavailable
    from mibench.metrics.evaluator import ReconstructionScorer

    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (24, 3, RES, RES), dtype=torch.uint8, generator=g)
    labels = torch.arange(K).repeat_interleave(6)
    private = TensorImageDataset(imgs, labels, [f"c{i}" for i in range(K)])
    evaluator = _target()
    scorer = ReconstructionScorer(evaluator, private, torch.device("cpu"), private_test=lambda: private)
    scorer.ensure_real()
    fake = imgs[:8]
    fake_labels = torch.tensor([0] * 4 + [1] * 4)
    feats, logits = scorer._eval_forward(fake)
    for name in METRICS.names():
        kind = METRICS.get(name)
        try:
            kind.setup(scorer)
        except MetricUnavailable:
            continue  # needs local weights (FaceNet, Inception): its unavailability is reported instead
        if kind.scope == "class":
            out = kind.score_class(scorer, ClassBatch(0, fake[:4], fake_labels[:4], feats[:4], logits[:4]))
        else:
            mask = torch.isin(labels, torch.tensor([0, 1]))
            out = kind.score_run(scorer, RunBatch([0, 1], fake, fake_labels, feats, imgs[mask], labels[mask],
                                                  scorer.real_feats[mask]))
        assert set(out) == {c.name for c in kind.columns}, name
        na = kind.not_applicable(K)  # e.g. acc@5 on 4 classes: None, never a constant 100 %
        assert all(v is None if k in na else isinstance(v, float) for k, v in out.items()), name
