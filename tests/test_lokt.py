"""LOKT: label-only access only, query accounting by phase, batching invariance, resume, runner integration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mibench.attacks.access import LabelOnly
from mibench.attacks.base import AttackContext
from mibench.classifiers.architectures import build_classifier
from mibench.data.base import TensorImageDataset
from mibench.errors import AttackError, QueryBudgetExceeded
from mibench.registry import ATTACKS

NUM_CLASSES, RES = 4, 16
# Seconds-long settings: a 16 px T-ACGAN, 2 + 2 GAN steps, 6 images per class, two tiny surrogates.
TINY_LOKT = {
    "gan_resolution": RES, "gan_z_dim": 8, "gan_g_width": 4, "gan_d_width": 4, "gan_warmup_steps": 2,
    "gan_steps": 2, "gan_batch_size": 8, "gan_n_dis": 2, "gan_calibration_batches": 2,
    "samples_per_class": 6, "holdout_per_class": 2, "surrogate_input_size": RES, "surrogate_epochs": 1,
    "surrogate_batch_size": 8, "generation_batch_size": 10,
    "surrogates": [{"architecture": "compact_resnet", "arch_params": {"width": 8, "depths": [1, 1]}},
                   {"architecture": "compact_resnet", "arch_params": {"width": 8, "depths": [1]}}],
    "num_candidates": 3, "num_final": 2, "steps": 2, "batch_size": 4, "final_views": 2,
    "selection_batch_size": 5,
}
GAN_QUERIES = 2 * 2 * 8  # gan_steps × gan_n_dis × gan_batch_size
DATA_QUERIES = 6 * NUM_CLASSES  # samples_per_class × classes


class GuardedTarget(nn.Module):
    """A target that allows exactly one thing: a forward pass without gradients. Its network is not
    a registered sub-module, and every way of reaching weights, features or gradients raises."""

    def __init__(self, model: nn.Module):
        super().__init__()
        object.__setattr__(self, "_net", model.eval())
        object.__setattr__(self, "forward_calls", 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.requires_grad:
            raise AssertionError("the target was called with gradients enabled")
        object.__setattr__(self, "forward_calls", self.forward_calls + 1)
        return self._net(x)

    def _refuse(self, *args, **kwargs):
        raise AssertionError("the attack reached into the target")

    parameters = named_parameters = buffers = named_buffers = _refuse
    modules = named_modules = children = named_children = state_dict = _refuse
    features = forward_with_features = hidden = train = requires_grad_ = _refuse


def _target(seed: int = 0) -> nn.Module:
    return build_classifier("compact_resnet", NUM_CLASSES, RES, {"width": 4, "depths": [1]}, seed=seed).eval()


def _public() -> TensorImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, RES, RES), generator=g, dtype=torch.uint8)
    return TensorImageDataset(images, torch.full((40,), -1), [], name="toy", split="public")


def _ctx(model: nn.Module, run_dir=None, budget: int | None = None) -> AttackContext:
    access = LabelOnly(model, NUM_CLASSES, RES, "cpu", budget=budget)
    return AttackContext(access=access, prior=None, device=torch.device("cpu"), seed=0, output_size=RES,
                         progress=False, public_data=_public, store_dir=run_dir)


def _attack(**over):
    return ATTACKS.get("lokt").from_preset("synthfaces", {**TINY_LOKT, **over})


def test_declares_label_only_access_and_no_prior():
    cls = ATTACKS.get("lokt")
    assert cls.access_level == "label-only" and cls.needs_prior is False
    for preset in ("synthfaces", "celeba", "facescrub"):
        assert cls.from_preset(preset).config.steps > 0
    assert cls.from_preset("celeba").config.surrogates[0].architecture == "densenet121"


def test_runs_on_a_target_that_only_allows_no_grad_forward_passes():
    guarded = GuardedTarget(_target())
    ctx = _ctx(guarded)
    attack = _attack()
    ctx.access.set_phase("prepare")
    attack.prepare(ctx)
    ctx.access.set_phase("attack")
    results = attack.attack_classes(ctx, [0, 3])
    assert [r.class_id for r in results] == [0, 3]
    for r in results:
        assert r.images.shape == (2, 3, RES, RES) and 0 <= r.images.min() and r.images.max() <= 1
        assert r.scores.shape == (2,) and bool((r.scores[:-1] >= r.scores[1:]).all())
    # Queries by phase are exactly what the configuration implies; the attack phase queries nothing.
    assert ctx.access.queries_by_phase == {"gan-training": GAN_QUERIES, "surrogate-data": DATA_QUERIES}
    assert ctx.access.queries == GAN_QUERIES + DATA_QUERIES and guarded.forward_calls > 0
    info = attack.phase_info()
    assert info["queries_by_phase"] == ctx.access.queries_by_phase
    assert info["surrogate_data"]["images"] == DATA_QUERIES and info["surrogate_data"]["held_out"] == 8
    assert len(info["surrogates"]) == 2 and all(0 <= s["heldout_accuracy"] <= 1 for s in info["surrogates"])
    assert info["tacgan"]["queries"] == GAN_QUERIES and info["tacgan"]["warmup"]["steps"] == 2
    logits = attack.surrogate_ensemble()(torch.rand(5, 3, RES, RES))
    assert logits.shape == (5, NUM_CLASSES)


def test_refuses_other_access_levels_and_missing_public_data():
    from mibench.attacks.access import WhiteBox

    ctx = _ctx(_target())
    white = WhiteBox(_target(), NUM_CLASSES, RES, "cpu")
    with pytest.raises(AttackError, match="label-only"):
        _attack().prepare(AttackContext(white, None, torch.device("cpu"), 0, RES, False, {"public_data": _public}))
    ctx.public_data = None
    with pytest.raises(AttackError, match="public data"):
        _attack().prepare(ctx)


def test_query_budget_is_enforced():
    with pytest.raises(QueryBudgetExceeded, match="surrogate-data"):
        _attack().prepare(_ctx(_target(), budget=GAN_QUERIES + DATA_QUERIES - 1))
    with pytest.raises(QueryBudgetExceeded, match="gan-training"):
        _attack().prepare(_ctx(_target(), budget=GAN_QUERIES - 1))


def test_a_class_gives_the_same_images_alone_or_with_others():
    attack = _attack()
    ctx = _ctx(_target())
    attack.prepare(ctx)
    alone = attack.attack_classes(ctx, [2])[0]
    together = attack.attack_classes(ctx, [0, 2, 1])[1]
    assert together.class_id == 2
    assert torch.equal(alone.images, together.images) and torch.equal(alone.latents, together.latents)
    assert torch.equal(alone.scores, together.scores)


def test_prepare_resumes_from_the_run_folder_without_querying(tmp_path):
    first = _attack()
    ctx = _ctx(_target(), run_dir=tmp_path)
    first.prepare(ctx)
    for name in ("tacgan-*.safetensors", "surrogate-labels-*.safetensors", "surrogate-0-*.safetensors",
                 "surrogate-1-????????????????.json", "tacgan-*.artifact.json"):
        assert len(list(tmp_path.glob(name))) == 1, name

    class NoQueries(nn.Module):
        def forward(self, x):
            raise AssertionError("a resumed prepare must not query the target")

    again = _attack(steps=3)  # attack-phase settings do not invalidate the prepared state
    ctx2 = _ctx(NoQueries(), run_dir=tmp_path)
    again.prepare(ctx2)
    assert ctx2.access.queries_by_phase == ctx.access.queries_by_phase
    assert again.phase_info()["resumed"] == {"tacgan": True, "surrogate_data": True, "surrogates": [0, 1]}
    x = torch.rand(3, 3, RES, RES)
    assert torch.equal(first.surrogate_ensemble()(x), again.surrogate_ensemble()(x))
    for k, v in first.G.state_dict().items():
        assert torch.equal(v, again.G.state_dict()[k]), k
    # Other GAN settings are another state: retrained (and queried) rather than reused.
    other = _attack(gan_steps=1)
    ctx3 = _ctx(_target(), run_dir=tmp_path)
    other.prepare(ctx3)
    assert ctx3.access.queries_by_phase["gan-training"] == 16 and other.phase_info()["resumed"] == {}


def test_lokt_through_the_runner(tmp_path, monkeypatch):
    from mibench.run import RunSpec, run_one

    from tiny_zoo import write_tiny_cards

    cards = write_tiny_cards(tmp_path / "cards")
    monkeypatch.setenv("MIBENCH_CARDS", str(cards))
    over = {k: v for k, v in TINY_LOKT.items()}
    entry = run_one(RunSpec(target="tiny-target", attack="lokt", classes=[0, 1], overrides=over),
                    out=tmp_path / "runs", device="cpu", progress=False)
    assert entry["attack"]["access"] == "label-only" and entry["prior"] is None
    by_phase = entry["queries"]["by_phase"]
    assert by_phase["gan-training"] == GAN_QUERIES and by_phase["surrogate-data"] == 6 * 6
    assert by_phase.get("attack", 0) == 0 and entry["queries"]["total"] == GAN_QUERIES + 36
    assert len(entry["attack"]["info"]["surrogates"]) == 2
    assert 0 <= entry["metrics"]["acc@1"] <= 1 and len(entry["per_class"]) == 2
    agreement = entry["attack"]["info"]["surrogate_agreement"]
    assert agreement["split"] == "private-test" and agreement["images"] > 0
    assert 0 <= agreement["ensemble"] <= 1 and len(agreement["members"]) == 2
    assert entry["queries"]["total"] == GAN_QUERIES + 36  # measuring agreement is not an attack query


def test_the_runner_records_how_far_a_budget_stopped_run_got(tmp_path, monkeypatch):
    import json

    from mibench.run import RunSpec, resolve, run_one

    from tiny_zoo import write_tiny_cards

    monkeypatch.setenv("MIBENCH_CARDS", str(write_tiny_cards(tmp_path / "cards")))
    spec = RunSpec(target="tiny-target", attack="lokt", classes=[0, 1], overrides=dict(TINY_LOKT),
                   query_budget=GAN_QUERIES + 5)
    with pytest.raises(QueryBudgetExceeded, match="surrogate-data"):
        run_one(spec, out=tmp_path / "runs", device="cpu", progress=False)
    stopped = json.loads((tmp_path / "runs" / resolve(spec).run_id() / "stopped.json").read_text())
    assert stopped["queries_by_phase"]["gan-training"] == GAN_QUERIES and stopped["queries"] <= GAN_QUERIES + 5
    assert stopped["classes_done"] == [] and "budget" in stopped["reason"]
    # A budget the run stays within is recorded in its entry (what the figure was measured under).
    roomy = RunSpec(target="tiny-target", attack="lokt", classes=[0, 1], overrides=dict(TINY_LOKT),
                    query_budget=GAN_QUERIES + 1000)
    entry = run_one(roomy, out=tmp_path / "runs", device="cpu", progress=False)
    assert entry["queries"]["budget"] == GAN_QUERIES + 1000 and entry["queries"]["total"] <= GAN_QUERIES + 1000


def test_stages_shipped_for_a_target_are_used_instead_of_training(tmp_path, monkeypatch):
    """`mibench zoo ship-stages RUN`: a later run on the same target card loads the run's T-ACGAN and
    surrogates from the shipped store (queries still counted) and gives the same results."""
    from mibench.ops import cache
    from mibench.run import RunSpec, run_one
    from mibench.zoo.shipping import ship_stages

    from tiny_zoo import write_tiny_cards

    monkeypatch.setattr(cache, "SHIPPED", tmp_path / "shipped")
    monkeypatch.setenv("MIBENCH_CARDS", str(write_tiny_cards(tmp_path / "cards")))
    spec = RunSpec(target="tiny-target", attack="lokt", classes=[0, 1], overrides=dict(TINY_LOKT))
    first = run_one(spec, out=tmp_path / "a", device="cpu", progress=False)
    rows = ship_stages([tmp_path / "a" / first["entry_id"]])
    assert len(rows) == 4 and all(r["status"].startswith("shipped") for r in rows)
    assert {r["status"] for r in ship_stages([tmp_path / "a" / first["entry_id"]])} == {"unchanged"}
    again = run_one(spec, out=tmp_path / "b", device="cpu", progress=False)
    assert again["attack"]["info"]["shipped_stages"] == ["labels", "surrogates", "tacgan"]
    assert again["per_class"] == first["per_class"] and again["queries"] == first["queries"]
    assert not list((tmp_path / "b" / again["entry_id"] / "lokt").glob("*.safetensors"))  # nothing trained
    monkeypatch.setenv("MIBENCH_SHIPPED", "0")  # the store ignored: trained again
    local = run_one(spec, out=tmp_path / "c", device="cpu", progress=False)
    assert "shipped_stages" not in local["attack"]["info"] and local["per_class"] == first["per_class"]
