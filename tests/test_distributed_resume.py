"""Scale and faults: a 2-rank torchrun run equals the single-process run, and a run killed with
SIGKILL mid-way resumes to the same entry (`mibench run --resume RUN_DIR`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tiny_zoo import write_tiny_cards

pytestmark = pytest.mark.slow

SETS = {"search_space_size": 24, "num_candidates": 4, "num_final": 2, "steps": 3, "final_views": 2,
        "batch_size": 4, "selection_batch_size": 16}  # batch 4 = one class per group: many small steps


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    write_tiny_cards(root / "cards")
    e = {**os.environ, "MIBENCH_CARDS": str(root / "cards"), "MIBENCH_CACHE": str(root / "cache"),
         "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # Build the tiny zoo once so the timed parts below only attack.
    subprocess.run([sys.executable, "-m", "mibench", "zoo", "build", "tiny-target", "tiny-eval", "tiny-prior",
                    "--device", "cpu", "--jobs", "1"], env=e, check=True, capture_output=True)
    return root, e


def _args(out: Path, classes: str = "0-5") -> list[str]:
    args = ["run", "--target", "tiny-target", "--attack", "ppa", "--prior", "tiny-prior", "--classes", classes,
            "--device", "cpu", "--out", str(out)]
    for k, v in SETS.items():
        args += ["--set", f"{k}={v}"]
    return args


def _run_dir(out: Path) -> Path:
    [d] = [p for p in out.iterdir() if p.is_dir()]
    return d


def _same_results(a: Path, b: Path) -> None:
    ea, eb = json.loads((a / "entry.json").read_text()), json.loads((b / "entry.json").read_text())
    assert ea["entry_id"] == eb["entry_id"]
    assert ea["metrics"] == eb["metrics"] and ea["per_class"] == eb["per_class"] and ea["queries"] == eb["queries"]
    for c in ea["classes"]:
        ta = load_file(str(a / "classes" / f"c{c:05d}.safetensors"))
        tb = load_file(str(b / "classes" / f"c{c:05d}.safetensors"))
        assert torch.equal(ta["images"], tb["images"]) and torch.equal(ta["latents"], tb["latents"])


def test_two_ranks_equal_one_process(env, tmp_path):
    root, e = env
    subprocess.run([sys.executable, "-m", "mibench", *_args(tmp_path / "one")], env=e, check=True,
                   capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533"]
    proc = subprocess.run([*torchrun, "-m", "mibench", *_args(tmp_path / "two")], env=e, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _same_results(_run_dir(tmp_path / "one"), _run_dir(tmp_path / "two"))
    assert json.loads((_run_dir(tmp_path / "two") / "entry.json").read_text())["environment"]["world_size"] == 2


def test_sigkill_then_resume_gives_the_same_entry(env, tmp_path):
    root, e = env
    subprocess.run([sys.executable, "-m", "mibench", *_args(tmp_path / "full")], env=e, check=True,
                   capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "mibench", *_args(tmp_path / "killed")], env=e,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    classes = tmp_path / "killed"
    while time.time() < deadline:
        done = list(classes.glob("*/classes/*.json"))
        if len(done) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("the run finished before it could be killed")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = _run_dir(tmp_path / "killed")
    assert not (run_dir / "entry.json").exists()
    before = {p.name: p.read_bytes() for p in (run_dir / "classes").glob("*.json")}
    assert 2 <= len(before) < 6
    res = subprocess.run([sys.executable, "-m", "mibench", "run", "--resume", str(run_dir), "--device", "cpu"],
                         env=e, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    for name, data in before.items():  # finished classes were kept, not redone
        assert (run_dir / "classes" / name).read_bytes() == data
    _same_results(_run_dir(tmp_path / "full"), run_dir)
