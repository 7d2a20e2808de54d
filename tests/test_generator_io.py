"""Generator checkpoints: official .pkl read without executing anything, .pth, our safetensors format."""

from __future__ import annotations

import hashlib
import os
import pickle
import pickletools

import pytest
import torch

from mibench.errors import CheckpointError
from mibench.generators.discriminator import Discriminator
from mibench.generators.io import load_generator, read_official_pickle, save_generator
from mibench.generators.stylegan2 import Generator

from official_pickle_helper import (
    marker_source,
    official_modules,
    official_pickle_bytes,
    write_official_pickle,
)

# Official-shaped constructor args (as train.py / legacy.py write them), scaled down.
OFFICIAL_KWARGS = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=16, img_channels=3,
                       mapping_kwargs={"num_layers": 2, "lr_multiplier": 0.01},
                       synthesis_kwargs={"channel_base": 512, "channel_max": 32, "num_fp16_res": 2,
                                         "conv_clamp": 256, "architecture": "skip"})


def make_official_g(seed: int = 0, **overrides) -> Generator:
    torch.manual_seed(seed)
    G = Generator(**{**OFFICIAL_KWARGS, **overrides})
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.2)
        G.mapping.w_avg.normal_()
    return G.eval()


def images(G: Generator) -> torch.Tensor:
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return G(z, psi=0.7, cutoff=2, noise_mode="const")


def assert_same_generator(a: Generator, b: Generator) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(images(a), images(b))


def globals_in(data: bytes) -> set[str]:
    """Module.name of every global a protocol-2/3 pickle references (GLOBAL opcodes)."""
    return {arg.replace(" ", ".") for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


@pytest.mark.parametrize("protocol", [3, 4])
def test_official_pickle_round_trip_gives_identical_images(tmp_path, protocol):
    G = make_official_g()
    torch.manual_seed(1)
    D = Discriminator(0, 16, 3, channel_base=512, channel_max=32)
    path = write_official_pickle(tmp_path / "network-snapshot.pkl", G, D, protocol=protocol)
    if protocol == 3:  # the file really uses the official layout (protocol 3 names globals inline)
        refs = globals_in(path.read_bytes())
        assert {"torch_utils.persistence._reconstruct_persistent_obj", "dnnlib.util.EasyDict",
                "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
                "torch.storage._load_from_bytes", "collections.OrderedDict"} <= refs
        assert any(r.endswith("multiarray.scalar") for r in refs)  # numpy gains
    loaded = load_generator(path, expected_resolution=16)
    assert_same_generator(G, loaded)
    assert loaded.init_kwargs == OFFICIAL_KWARGS


def test_read_official_pickle_returns_inert_records(tmp_path):
    G = make_official_g()
    path = write_official_pickle(tmp_path / "snap.pkl", G)
    data = read_official_pickle(path)
    assert set(data) >= {"G", "G_ema", "D", "augment_pipe", "training_set_kwargs"}
    rec = data["G_ema"]
    assert rec.class_name == "Generator" and "import torch" in rec.module_src  # kept as text only
    assert rec.state["_init_kwargs"]["synthesis_kwargs"]["conv_clamp"] == 256


def test_module_src_payload_runs_on_normal_unpickle_but_never_in_ours(tmp_path):
    marker = tmp_path / "pwned"
    G = make_official_g()
    path = write_official_pickle(tmp_path / "evil.pkl", G, module_src=marker_source(marker))
    # control: a normal unpickle with the official machinery importable executes the payload
    with official_modules():
        pickle.loads(path.read_bytes())
    assert marker.exists()
    marker.unlink()
    # ours: loads the weights (they are fine) and never executes the source — even with the
    # official modules importable
    with official_modules():
        loaded = load_generator(path)
    assert not marker.exists()
    assert_same_generator(G, loaded)


class _ExecPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('payload ran')",)


class _SystemPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.mark.parametrize("payload_cls, global_name",
                         [(_ExecPayload, "builtins.exec"), (_SystemPayload, f"{os.system.__module__}.system")])
def test_disallowed_global_is_refused_and_never_called(tmp_path, payload_cls, global_name):
    marker = tmp_path / "pwned"
    data = official_pickle_bytes({"G_ema": make_official_g(), "augment_pipe": payload_cls(marker)})
    with official_modules():  # control: the payload is live
        pickle.loads(data)
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=f"refusing to load.*'{global_name}'") as info:
        load_generator(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_truncated_and_garbage_pickles_give_clear_errors(tmp_path):
    path = write_official_pickle(tmp_path / "snap.pkl", make_official_g())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_generator(path)
    path.write_bytes(b"this is not a pickle at all")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_generator(path)


def test_pickle_without_g_ema_or_with_wrong_shapes(tmp_path):
    path = tmp_path / "nog.pkl"
    path.write_bytes(official_pickle_bytes({"G": make_official_g()}))
    with pytest.raises(CheckpointError, match="no 'G_ema'"):
        load_generator(path)
    G = make_official_g()
    G.init_kwargs["synthesis_kwargs"]["channel_max"] = 16  # constructor args disagree with the tensors
    path = write_official_pickle(tmp_path / "mismatch.pkl", G)
    with pytest.raises(CheckpointError, match="shape mismatch.*synthesis"):
        load_generator(path)


def test_missing_file_says_where_to_put_it(tmp_path):
    path = tmp_path / "weights" / "ffhq.pkl"
    with pytest.raises(CheckpointError, match="not found.*place the file at") as info:
        load_generator(path)
    assert str(path) in str(info.value)


def test_sha256_is_verified(tmp_path):
    path = write_official_pickle(tmp_path / "snap.pkl", make_official_g())
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    load_generator(path, sha256=good)
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_generator(path, sha256="0" * 64)


def test_expected_resolution_and_suffix_checks(tmp_path):
    path = write_official_pickle(tmp_path / "snap.pkl", make_official_g())
    with pytest.raises(CheckpointError, match="16 px, the card says 32 px"):
        load_generator(path, expected_resolution=32)
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unsupported generator file type"):
        load_generator(other)


def test_safetensors_round_trip_and_sidecar(tmp_path):
    G = make_official_g(seed=3)
    path = save_generator(G, tmp_path / "prior.safetensors")
    assert path.with_suffix(".json").is_file()
    assert_same_generator(G, load_generator(path, expected_resolution=16))
    path.with_suffix(".json").unlink()  # the constructor args are also embedded in the file's metadata
    assert_same_generator(G, load_generator(path))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_generator(path)
    with pytest.raises(CheckpointError, match=".safetensors"):
        save_generator(G, tmp_path / "prior.pt")


def test_pth_state_dicts(tmp_path):
    G = make_official_g(seed=4)
    bare = tmp_path / "bare.pth"
    torch.save(G.state_dict(), bare)
    params = {k: v for k, v in OFFICIAL_KWARGS.items() if k != "img_resolution"}
    assert_same_generator(G, load_generator(bare, params=params, expected_resolution=16))
    with pytest.raises(CheckpointError, match="needs the generator's constructor arguments"):
        load_generator(bare)
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"G_ema": G.state_dict(), "init_kwargs": G.init_kwargs}, wrapped)
    assert_same_generator(G, load_generator(wrapped))


def test_pth_with_code_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"G_ema": make_official_g().state_dict(), "x": _ExecPayload(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_generator(path, params={}, expected_resolution=16)
    assert not marker.exists()
