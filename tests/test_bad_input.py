"""The bad-input matrix at the level a user meets it: one clear error, non-zero exit, nothing lost."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from mibench.errors import CheckpointError, MIBenchError
from mibench.run import RunFolder, RunSpec, run_one

from tiny_zoo import DATA, TINY_PPA, write_tiny_cards


@pytest.fixture
def cards(tmp_path, monkeypatch):
    root = write_tiny_cards(tmp_path / "cards")
    monkeypatch.setenv("MIBENCH_CARDS", str(root))
    return root


def _external_target(cards: Path, weights: Path, sha256: str | None = None, num_classes: int = 6) -> str:
    card = {"description": "user-provided weights", "architecture": "compact_resnet",
            "arch_params": {"width": 8, "depths": [1, 1, 1]}, "dataset": DATA, "num_classes": num_classes,
            "input_size": 16, "evaluator": "tiny-eval", "weights": {"path": str(weights), "sha256": sha256}}
    (cards / "targets" / "ext-target.yaml").write_text(yaml.safe_dump(card))
    return "ext-target"


def _run_ext(cards, tmp_path):
    return run_one(RunSpec(target="ext-target", attack="ppa", prior="tiny-prior", classes=[0], overrides=TINY_PPA),
                   out=tmp_path / "runs", device="cpu", progress=False)


def _state_dict(num_classes=6):
    from mibench.classifiers.architectures import build_classifier

    return build_classifier("compact_resnet", num_classes, 16, {"width": 8, "depths": [1, 1, 1]}).state_dict()


def test_missing_weights_file_says_where_to_put_it(cards, tmp_path):
    _external_target(cards, tmp_path / "nowhere" / "w.safetensors")
    with pytest.raises(CheckpointError) as err:
        _run_ext(cards, tmp_path)
    assert "nowhere/w.safetensors" in str(err.value) and "not found" in str(err.value)


def test_sha256_mismatch(cards, tmp_path):
    w = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in _state_dict().items()}, str(w))
    _external_target(cards, w, sha256="0" * 64)
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        _run_ext(cards, tmp_path)


def test_wrong_class_count(cards, tmp_path):
    w = tmp_path / "w.pt"
    torch.save(_state_dict(num_classes=10), w)
    _external_target(cards, w)
    with pytest.raises(CheckpointError, match="10 classes but card 'ext-target' says 6"):
        _run_ext(cards, tmp_path)


def test_truncated_checkpoint(cards, tmp_path):
    w = tmp_path / "w.pt"
    torch.save(_state_dict(), w)
    w.write_bytes(w.read_bytes()[:200])
    _external_target(cards, w)
    with pytest.raises(CheckpointError):
        _run_ext(cards, tmp_path)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/mibench-payload-marker")


def test_pickle_with_code_payload_never_runs(cards, tmp_path):
    MARKER.unlink(missing_ok=True)
    w = tmp_path / "w.pt"
    w.write_bytes(pickle.dumps({"state_dict": _Payload()}))
    _external_target(cards, w)
    with pytest.raises(CheckpointError):
        _run_ext(cards, tmp_path)
    assert not MARKER.exists()


def test_disk_full_while_writing_keeps_earlier_results(cards, tmp_path, monkeypatch):
    spec = RunSpec(target="tiny-target", attack="ppa", prior="tiny-prior", classes=[0, 1, 2],
                   overrides={**TINY_PPA, "batch_size": 4})  # one class per group
    import mibench.ops.fileio as fileio

    real_replace = os.replace
    calls = {"n": 0}

    def flaky_replace(src, dst):
        if str(dst).endswith("c00001.safetensors"):
            raise OSError(errno.ENOSPC, "No space left on device")
        calls["n"] += 1
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", flaky_replace)
    with pytest.raises(MIBenchError, match="No space left on device") as err:
        run_one(spec, out=tmp_path / "runs", device="cpu", progress=False)
    assert "earlier results are untouched" in str(err.value)
    [run_dir] = (tmp_path / "runs").iterdir()
    kept = RunFolder(run_dir).class_stem(0).with_suffix(".json").read_text()
    assert json.loads(kept)["class"] == 0
    assert not list(run_dir.rglob("*.tmp"))  # the failed temp file was removed
    monkeypatch.setattr(fileio.os, "replace", real_replace)
    entry = run_one(spec, out=tmp_path / "runs", device="cpu", progress=False, resume=run_dir)
    assert [m["class"] for m in entry["per_class"]] == [0, 1, 2]
    assert RunFolder(run_dir).class_stem(0).with_suffix(".json").read_text() == kept


def test_cli_exit_code_for_missing_weights(cards, tmp_path):
    _external_target(cards, tmp_path / "missing.safetensors")
    env = {**os.environ, "MIBENCH_CARDS": str(cards), "MIBENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "mibench", "run", "--target", "ext-target", "--attack", "ppa",
                           "--prior", "tiny-prior", "--classes", "0", "--device", "cpu", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]  # earlier lines are progress logs
    assert last.startswith("error: ") and "missing.safetensors" in last
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())  # nothing half-made


def test_a_query_budget_on_a_white_box_attack_is_refused_not_ignored(cards, tmp_path):
    from mibench.run import resolve

    spec = RunSpec(target="tiny-target", attack="ppa", prior="tiny-prior", classes=[0], overrides=TINY_PPA,
                   query_budget=1000)
    with pytest.raises(MIBenchError, match="applies only to black-box and label-only") as err:
        resolve(spec)
    assert err.value.field == "--query-budget" and "drop --query-budget" in err.value.fix
    with pytest.raises(MIBenchError, match="not positive"):
        resolve(RunSpec(target="tiny-target", attack="lokt", classes=[0], query_budget=0))
    assert not (tmp_path / "runs").exists()
