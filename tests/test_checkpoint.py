"""Checkpoint I/O: own format round trips, external weights, and every failure a user can hit."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from mibench.cards import DatasetRef, TargetCard, Weights
from mibench.classifiers import build_classifier, load_classifier, read_meta, save_classifier
from mibench.classifiers.checkpoint import load_external_classifier, read_state_dict
from mibench.defenses import DefenseContext, build_defense
from mibench.errors import CheckpointError
from mibench.ops.fileio import sha256_file

TINY = {"width": 8, "depths": [1, 1], "stem_stride": 1}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, size: int = 16) -> bool:
    x = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def _card(tmp_path, path, arch="resnet18", num_classes=7, sha256=None, name="facescrub-resnet18"):
    return TargetCard(name=name, architecture=arch, dataset=DatasetRef(name="facescrub"),
                      num_classes=num_classes, input_size=32, weights=Weights(path=str(path), sha256=sha256),
                      path=str(tmp_path / f"{name}.yaml"))


# ------------------------------------------------------------------------------------ own format

def test_round_trip_with_meta(tmp_path):
    model = build_classifier("compact_resnet", 4, 16, TINY, seed=3)
    with torch.no_grad():  # make BN statistics non-trivial so they are checked too
        model.train()(torch.rand(8, 3, 16, 16))
    meta = {"class_names": ["a", "b", "c", "d"], "defense": {"kind": "none", "params": {}},
            "card_hash": "abc", "natural_accuracy": 0.5, "code_version": "0.1.0+x"}
    weights = save_classifier(model, tmp_path / "m", meta)
    assert weights == tmp_path / "m.safetensors" and (tmp_path / "m.json").is_file()
    loaded, got = load_classifier(tmp_path / "m", expected_arch="compact_resnet", expected_num_classes=4)
    assert _same_outputs(model, loaded)
    assert got["class_names"] == ["a", "b", "c", "d"] and got["architecture"] == "compact_resnet"
    assert got["arch_params"] == {"width": 8, "depths": [1, 1], "stem_stride": 1}
    assert got["weights_sha256"] == sha256_file(weights)
    assert not loaded.training
    # any of the three spellings of the path works
    assert _same_outputs(model, load_classifier(weights)[0])
    assert read_meta(tmp_path / "m.json")["card_hash"] == "abc"
    with pytest.raises(ValueError, match="num_classes"):
        save_classifier(model, tmp_path / "n", {"num_classes": 3})


def test_vib_head_round_trip(tmp_path):
    defense = build_defense("mid_vib", {"bottleneck_dim": 6})
    model = defense.prepare(build_classifier("compact_resnet", 4, 16, TINY, seed=3), DefenseContext(seed=1))
    save_classifier(model, tmp_path / "vib", {"defense": defense.describe()})
    loaded, meta = load_classifier(tmp_path / "vib")
    assert meta["head"] == {"kind": "vib", "bottleneck_dim": 6, "test_sampling": True, "noise_seed": 0}
    assert type(loaded.head).__name__ == "VIBHead" and _same_outputs(model, loaded)


def test_expectation_and_integrity_errors(tmp_path):
    model = build_classifier("compact_resnet", 4, 16, TINY, seed=3)
    weights = save_classifier(model, tmp_path / "m", {})
    with pytest.raises(CheckpointError, match="'resnet18' was expected"):
        load_classifier(weights, expected_arch="resnet18")
    with pytest.raises(CheckpointError, match="has 4 classes but 5"):
        load_classifier(weights, expected_num_classes=5)
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_classifier(weights, sha256="0" * 64)
    load_classifier(weights, sha256=sha256_file(weights))  # the right hash passes
    # weights replaced behind the sidecar's back (e.g. two writers): caught by the recorded hash
    other = build_classifier("compact_resnet", 4, 16, TINY, seed=4)
    save_classifier(other, tmp_path / "o", {})
    os.replace(tmp_path / "o.safetensors", weights)
    with pytest.raises(CheckpointError, match="sidecar"):
        load_classifier(weights)


def test_missing_and_damaged_own_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_classifier(tmp_path / "nothing")
    model = build_classifier("compact_resnet", 4, 16, TINY, seed=3)
    weights = save_classifier(model, tmp_path / "m", {})
    (tmp_path / "m.json").unlink()
    with pytest.raises(CheckpointError, match="no JSON sidecar"):
        load_classifier(weights)
    weights = save_classifier(model, tmp_path / "t", {})
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    meta = json.loads((tmp_path / "t.json").read_text())
    meta["weights_sha256"] = None  # isolate the truncation from the hash check
    (tmp_path / "t.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_classifier(weights)
    (tmp_path / "t.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_classifier(weights)


# ------------------------------------------------------------------------------------ external files

def test_external_torchvision_checkpoint_nested_and_prefixed(tmp_path):
    import torchvision

    tv = torchvision.models.resnet18(num_classes=7).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    sd = {f"module.model.{k}": v for k, v in tv.state_dict().items()}
    path = tmp_path / "target.pth"
    torch.save({"epoch": 3, "model_state_dict": sd, "optimizer": {"lr": 0.1}}, path)
    card = _card(tmp_path, path, sha256=sha256_file(path))
    model = load_external_classifier(card)
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), tv((x - mean) / std), atol=1e-5)
    # safetensors input works the same way
    from safetensors.torch import save_file

    save_file(tv.state_dict(), str(tmp_path / "target.safetensors"))
    model2 = load_external_classifier(card, tmp_path / "target.safetensors", sha256="")
    assert _same_outputs(model, model2, 32)


def test_external_class_count_mismatch(tmp_path):
    import torchvision

    path = tmp_path / "in1k.pth"
    torch.save({"state_dict": torchvision.models.resnet18(num_classes=1000).state_dict()}, path)
    card = _card(tmp_path, path, num_classes=530)
    with pytest.raises(CheckpointError, match="checkpoint has 1000 classes but card 'facescrub-resnet18' "
                                              "says 530 — fix num_classes or use the right file"):
        load_external_classifier(card)


def test_external_wrong_architecture(tmp_path):
    compact = build_classifier("compact_resnet", 7, 16, TINY, seed=0)
    path = tmp_path / "compact.pt"
    torch.save(compact.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"missing keys .*unexpected keys"):
        load_external_classifier(_card(tmp_path, path))


def test_external_missing_truncated_and_hash(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_external_classifier(_card(tmp_path, tmp_path / "absent.pth"))
    path = tmp_path / "w.pth"
    torch.save(build_classifier("resnet18", 7, 32).state_dict(), path)
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_external_classifier(_card(tmp_path, path, sha256="f" * 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_external_classifier(_card(tmp_path, path))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a plain PyTorch state dict"):
        read_state_dict(tmp_path / "junk.pth")
    torch.save({"epoch": 1, "note": "no tensors"}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="no state dict found"):
        read_state_dict(tmp_path / "empty.pth")


class _Payload:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("container", ["torch_zip", "plain_pickle", "plain_pickle_protocol2"])
def test_code_payload_is_refused_never_executed(tmp_path, container):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    if container == "torch_zip":
        torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "x": _Payload(marker)}, path)
    else:
        proto = 2 if container.endswith("2") else pickle.HIGHEST_PROTOCOL
        path.write_bytes(pickle.dumps({"fc.weight": _Payload(marker)}, protocol=proto))
    with pytest.raises(CheckpointError, match="refusing to unpickle") as info:
        read_state_dict(path)
    if container != "plain_pickle":  # protocol ≥ 4 framing is rejected before the global is even read
        assert "posix.system" in str(info.value) or "nt.system" in str(info.value)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_external_classifier(_card(tmp_path, path))
    assert not marker.exists()
