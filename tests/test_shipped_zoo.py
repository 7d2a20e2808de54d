"""The shipped zoo: artifacts committed with the code are used when their content matches, a forced
local build overrides them, a modified shipped file is one clear error, and training-seed replicates."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mibench.errors import CardError, CheckpointError, MIBenchError
from mibench.ops import cache

from tiny_zoo import write_tiny_cards


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """An empty shipped store in a temporary folder."""
    root = tmp_path / "shipped"
    monkeypatch.setattr(cache, "SHIPPED", root)
    return root


def _build(area: cache.ArtifactCache, content, text: str, force: bool = False) -> cache.Artifact:
    def write(a):
        a.file(".txt").write_text(text)
        return [".txt"], {"text": text}

    art = area.artifact("thing", content, ("mibench.ops.cache",))
    area.get_or_build(art, write, force=force)
    return area.artifact("thing", content, ("mibench.ops.cache",))


def test_shipped_artifact_is_preferred_and_a_forced_build_overrides_it(store, monkeypatch):
    area = cache.ArtifactCache("things", shippable=True)
    local = _build(area, {"card": "a"}, "first build")
    assert not local.shipped
    shipped, changed = area.ship(local, {"note": "test"})
    assert changed and shipped.shipped and shipped.root == store / "things"
    assert area.ship(local, {"note": "again"}) == (shipped, False)  # unchanged bytes: nothing rewritten
    found = area.artifact("thing", {"card": "a"}, ("mibench.ops.cache",))
    assert found.shipped and found.meta() == {"text": "first build"}
    assert json.loads(found.sidecar.read_text())["manifest"] == {"note": "test"}
    # the code that produced an artifact is not part of a shipped key: another content is not found
    assert not area.artifact("thing", {"card": "b"}, ("mibench.ops.cache",)).shipped
    # get_or_build returns the shipped copy without building …
    assert area.get_or_build(found, lambda a: pytest.fail("must not build")) == {"text": "first build"}
    # … and `force` builds a local one that overrides it on this machine
    forced = _build(area, {"card": "a"}, "retrained", force=True)
    assert not forced.shipped and forced.file(".txt").read_text() == "retrained"
    monkeypatch.setenv("MIBENCH_SHIPPED", "0")
    assert not area.artifact("thing", {"card": "a"}, ("mibench.ops.cache",)).shipped


def test_a_modified_shipped_file_is_one_error_naming_it(store):
    area = cache.ArtifactCache("things", shippable=True)
    shipped, _ = area.ship(_build(area, {"card": "a"}, "weights"), {})
    shipped.file(".txt").write_text("tampered")
    with pytest.raises(CheckpointError) as exc:
        area.artifact("thing", {"card": "a"}, ("mibench.ops.cache",)).meta()
    assert str(shipped.file(".txt")) in str(exc.value)
    with pytest.raises(CheckpointError, match="read-only"):
        shipped.commit([".txt"], {})


def test_targets_load_from_the_shipped_store_without_training(tmp_path, store, monkeypatch):
    from mibench.classifiers import checkpoint
    from mibench.zoo import load_target, target_status
    from mibench.zoo import targets as zoo_targets
    from mibench.zoo.shipping import ship

    monkeypatch.setenv("MIBENCH_CARDS", str(write_tiny_cards(tmp_path / "cards")))
    model, info = load_target("tiny-target")  # trained locally
    rows = ship(["tiny-target"])
    assert rows[0]["status"] == "shipped (updated)" and ship(["tiny-target"])[0]["status"] == "unchanged"
    manifest = json.loads(next((store / "zoo" / "targets").glob("tiny-target-*.artifact.json")).read_text())["manifest"]
    assert manifest["card_hash"] and manifest["sha256"][".safetensors"] and manifest["natural_accuracy"] == info["natural_accuracy"]
    assert manifest["code_version"] and manifest["machine"]["torch"]

    # A new machine: empty cache. The shipped weights are used; nothing is trained.
    monkeypatch.setenv("MIBENCH_CACHE", str(tmp_path / "fresh-cache"))
    monkeypatch.setattr(zoo_targets, "train_target_files", lambda *a, **k: pytest.fail("must not train"))
    assert target_status(zoo_targets.get_card("target", "tiny-target")) == "shipped"
    again, info2 = load_target("tiny-target")
    assert info2["natural_accuracy"] == info["natural_accuracy"] and "shipped" in info2["source"]
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), again.state_dict().values()))

    weights = next((store / "zoo" / "targets").glob("tiny-target-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError) as exc:
        load_target("tiny-target")
    assert weights.name in str(exc.value)
    assert checkpoint  # weights are read by safetensors only after this check


def test_zoo_verify_retrains_and_compares(tmp_path, store, monkeypatch):
    from mibench.zoo import load_target
    from mibench.zoo.shipping import ship, verify

    monkeypatch.setenv("MIBENCH_CARDS", str(write_tiny_cards(tmp_path / "cards")))
    load_target("tiny-target")
    ship(["tiny-target"])
    (row,) = verify(["tiny-target"], progress=False)
    # Same machine, same code: the retrain is bit-identical.
    assert row["identical_weights"] == "yes" and row["delta_pts"] == "+0.00" and row["prediction_agreement"] == "100.0%"
    assert "attack" not in row  # no short attack unless asked


def test_zoo_verify_short_attack_compares_shipped_and_retrained(tmp_path, store, monkeypatch):
    from mibench.zoo import load_target
    from mibench.zoo.attack_check import short_attack
    from mibench.zoo.shipping import ship, verify

    from tiny_zoo import TINY_PPA

    monkeypatch.setenv("MIBENCH_CARDS", str(write_tiny_cards(tmp_path / "cards")))
    load_target("tiny-target")
    ship(["tiny-target"])
    settings = {"attack": "ppa", "classes": 3, "prior": "tiny-prior", "overrides": TINY_PPA}
    (row,) = verify(["tiny-target"], progress=False, attack=settings)
    # A bit-identical retrain is attacked to the same result.
    assert row["attack"] == "ppa/synthfaces × 3 classes" and row["attack_shipped"] == row["attack_retrained"]
    assert row["attack_delta_pts"] == "+0.0"

    # The same weights twice (one copy per model: `prepare` state is not shared) give the same result.
    from mibench.cards import get_card

    card = get_card("target", "tiny-target")
    model, _ = load_target(card)
    out = short_attack(card, {"a": model, "a again": model}, "cpu", **settings)
    assert out["classes"] == 3 and out["acc1"]["a"] == out["acc1"]["a again"]
    assert f"{out['acc1']['a']:.1f}%" == row["attack_shipped"]
    with pytest.raises(MIBenchError, match="public data"):
        short_attack(card, {"a": model}, "cpu", attack="lokt", classes=1)
    # A short attack that cannot run is refused before anything is retrained.
    monkeypatch.setattr("mibench.zoo.shipping.verify_one", lambda *a: pytest.fail("must not retrain"))
    for bad, match in (({"attack": "bogus"}, "unknown attack"), ({"attack": "lokt"}, "public data"),
                       ({"attack": "ppa", "classes": 0}, "attacks nothing")):
        with pytest.raises(MIBenchError, match=match):
            verify(["tiny-target"], progress=False, attack=bad)


def test_replicates_are_the_card_with_another_training_seed(tmp_path, monkeypatch):
    from mibench.cards import card_hash, get_card, replicate_card
    from mibench.zoo.build import zoo_cards

    base = get_card("target", "synthfaces32-resnet-nls")
    rep = get_card("target", "synthfaces32-resnet-nls@2")
    assert rep.name == "synthfaces32-resnet-nls@2" and rep.train.seed == base.train.seed + 2
    assert rep.defense == base.defense and card_hash(rep) != card_hash(base)
    assert get_card("target", "synthfaces32-resnet-nls@0").name == base.name
    with pytest.raises(CardError, match="whole number"):
        get_card("target", "synthfaces32-resnet-nls@x")
    with pytest.raises(CardError, match="training recipe"):
        replicate_card(dataclasses.replace(base, train=None), 1)  # a weights-only card has no replicates
    names = {c.name for _, c in zoo_cards()}
    assert {"synthfaces32-resnet-nls@1", "synthfaces32-resnet-nls@2", "synthfaces32-resnet@2"} <= names
    assert not any(n.startswith("synthfaces32-evaluator@") for n in names)  # the evaluator is pinned


def test_prior_quality_report_and_the_collapsed_prior_warning(tmp_path, monkeypatch, caplog):
    import logging

    import torch

    from mibench.cards import get_card
    from mibench.zoo import load_prior, prior_artifact
    from mibench.zoo.prior_quality import prior_quality

    monkeypatch.setenv("MIBENCH_CARDS", str(write_tiny_cards(tmp_path / "cards")))
    card = get_card("generator", "tiny-prior")
    with caplog.at_level(logging.INFO, logger="mibench.zoo.prior_quality"):
        G, _ = load_prior(card)  # trained: the build reports its quality
    assert any("FID_eval" in r.getMessage() and "floor" in r.getMessage() for r in caplog.records)
    quality = prior_artifact(card).meta()["quality"]
    assert quality["evaluator"] == "tiny-eval" and quality["fid_floor"] < quality["fid_eval"]

    class Collapsed(torch.nn.Module):
        """Every latent gives the same grey image: the extreme of mode collapse."""
        z_dim = 16

        def forward(self, z, c=None, **kwargs):
            return torch.zeros(z.shape[0], 3, 16, 16)

    q = prior_quality(card, Collapsed())
    assert q.class_coverage == 1 / 6 and any("collapsed" in w for w in q.warnings())
    assert any("far above its floor" in w for w in q.warnings())
    assert q.recall_real is not None and q.recall < q.recall_real


def test_a_prior_built_from_another_starts_from_its_weights(tmp_path, monkeypatch):
    """`init_from`: the build trains (or finds) the source prior first, starts from its generator,
    and records the source's card and artifact key in the manifest. `storage_dtype: float16` stores
    half-precision weights, and what loads (in float32) is exactly the rounded generator."""
    import torch
    from safetensors.torch import load_file

    from mibench.cards import get_card
    from mibench.zoo import load_prior, prior_artifact

    root = write_tiny_cards(tmp_path / "cards")
    (root / "generators" / "tiny-prior-ft.yaml").write_text(
        "extends: tiny-prior\ninit_from: tiny-prior\nstorage_dtype: float16\n"
        "train: {steps: 2, d_warmup_steps: 1}\n")
    monkeypatch.setenv("MIBENCH_CARDS", str(root))
    source, child = get_card("generator", "tiny-prior"), get_card("generator", "tiny-prior-ft")
    assert not prior_artifact(source).exists()
    G, _ = load_prior(child)
    assert prior_artifact(source).exists()  # built first, as the child's starting point
    art = prior_artifact(child)
    meta = art.meta()
    assert meta["init_from"] == {"card": "tiny-prior", "key": prior_artifact(source).key}
    assert meta["init_new_tensors"] == [] and meta["steps"] == 2 and meta["quality"] is not None
    stored = load_file(str(art.file(".safetensors")))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    for name, t in G.state_dict().items():
        assert t.dtype == torch.float32 or not t.is_floating_point()
        assert torch.equal(t, stored[name].to(t.dtype)), name
    assert {v.dtype for v in load_file(str(prior_artifact(source).file(".safetensors"))).values()} == {torch.float32}


def test_a_frozen_transfer_stores_only_the_tensors_it_trained(tmp_path, monkeypatch):
    """`storage: delta` with `train.freeze_g`: the stored file holds only what training changed (the
    unfrozen 16 px block and the mean w), the rest loads from the source prior bit for bit, and a
    source whose weights are not the ones the changes were taken against is refused."""
    import torch
    from safetensors.torch import load_file

    from mibench.cards import get_card
    from mibench.errors import CheckpointError
    from mibench.zoo import load_prior, prior_artifact
    from mibench.zoo.prior_delta import load_delta

    root = write_tiny_cards(tmp_path / "cards")
    (root / "generators" / "tiny-prior-grown.yaml").write_text(
        "extends: tiny-prior\ninit_from: tiny-prior\nstorage: delta\n"
        "train: {steps: 2, d_warmup_steps: 1, freeze_g: [mapping., synthesis.b4., synthesis.b8.]}\n")
    monkeypatch.setenv("MIBENCH_CARDS", str(root))
    child = get_card("generator", "tiny-prior-grown")
    G, _ = load_prior(child)
    source = load_prior("tiny-prior")[0].state_dict()
    path = prior_artifact(child).file(".safetensors")
    stored = load_file(str(path))
    assert stored and set(stored) <= {k for k in source if k.startswith("synthesis.b16.")} | {"mapping.w_avg"}
    for k, v in G.state_dict().items():
        assert torch.equal(v, stored[k] if k in stored else source[k]), k
    assert path.stat().st_size < prior_artifact(get_card("generator", "tiny-prior")).file(".safetensors").stat().st_size
    again, _ = load_prior(child)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in G.state_dict().items())
    with pytest.raises(CheckpointError, match="changes to prior 'tiny-prior'") as e:
        load_delta(again, source, "0" * 64, path)
    assert "tiny-prior-grown" in str(e.value) and "--force" in str(e.value)


def test_the_shipped_shifted_prior_loads_from_its_float16_weights_without_training():
    """The shifted-domain prior ships in float16 and starts from the shipped v2: an empty cache finds
    it (its key follows v2's shipped key), checks its sha256 and gives a float32 generator."""
    import torch

    from mibench.cards import get_card
    from mibench.zoo import load_prior, prior_artifact

    card = get_card("generator", "synthfaces32-stylegan2-shifted")
    art = prior_artifact(card)
    assert art.shipped and prior_artifact(get_card("generator", card.init_from)).shipped
    G, info = load_prior(card, build=False)
    assert info["source"].startswith("shipped:")
    assert all(p.dtype == torch.float32 for p in G.parameters())
    assert all(torch.equal(p, p.half().float()) for p in G.parameters())  # float16 values, run in float32
    with torch.no_grad():
        x = G(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)), None, noise_mode="const")
    assert x.shape == (2, 3, 32, 32) and torch.isfinite(x).all()


def test_a_prior_with_little_recall_is_called_collapsed_even_when_it_covers_the_classes():
    """On a user's public folder of other classes the evaluator's classes say little: a prior whose
    samples reach a tenth of the recall other real images reach is collapsed (the digits prior of
    docs/own-data: recall 0.013), one at a fifth is not (the shipped 500-step prior: 0.169)."""
    from mibench.zoo.prior_quality import PriorQuality

    def quality(recall):
        return PriorQuality(evaluator="e", samples=448, fid_eval=0.5, fid_floor=0.08, class_coverage=1.0,
                            class_coverage_real=1.0, precision=0.95, recall=recall, density=1.0, coverage=0.3,
                            recall_real=0.8)

    assert any("collapsed" in w and "recall 0.013" in w for w in quality(0.013).warnings())
    assert quality(0.169).warnings() == []
    assert PriorQuality("e", 10, 1.0, 0.5, 1.0, 1.0, 0.9, 0.0, 1.0, 0.3).warnings() == []  # no real recall: no claim


def test_the_shipped_64px_prior_loads_from_its_delta_on_the_shipped_v2():
    """The 64 px prior ships as its changes from the shipped v2 (`storage: delta`): an empty cache
    finds it without training, its frozen layers are v2's bit for bit and it makes 64 px images."""
    import torch

    from mibench.cards import get_card
    from mibench.zoo import load_prior, prior_artifact

    card = get_card("generator", "synthfaces64-stylegan2")
    assert card.storage == "delta" and prior_artifact(card).shipped
    G, info = load_prior(card, build=False)
    v2 = load_prior(card.init_from, build=False)[0].state_dict()
    assert info["source"].startswith("shipped:")
    frozen = [k for k, _ in G.named_parameters() if k.startswith(tuple(card.train["freeze_g"]))]
    assert frozen and all(torch.equal(G.state_dict()[k], v2[k]) for k in frozen)
    assert not torch.equal(G.state_dict()["mapping.w_avg"], v2["mapping.w_avg"])  # tracked while training
    with torch.no_grad():
        x = G(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)), None, noise_mode="const")
    assert x.shape == (2, 3, 64, 64) and torch.isfinite(x).all()
