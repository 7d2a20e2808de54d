"""The wheel ships the cards and the shipped zoo: built offline, installed into a fresh venv (no dependencies: the test
environment provides them), mibench lists the shipped cards and resolves a run spec from a folder
that has no cards of its own."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_with_its_cards(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in ("mibench", "targets", "generators", "defenses"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "_cards"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True)
    wheel = next((tmp_path / "dist").glob("mibench-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The dependencies come from the running environment; mibench itself only from the wheel.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site.getsitepackages()),
           "MIBENCH_CACHE": str(tmp_path / "cache")}
    env.pop("MIBENCH_CARDS", None)
    listed = subprocess.run([str(venv / "bin" / "mibench"), "list", "targets"], cwd=elsewhere, env=env,
                            capture_output=True, text=True, check=True).stdout
    assert "synthfaces32-resnet-nls" in listed and "facescrub-resnet152" in listed
    # the wheel carries the shipped zoo: an empty cache still has every embedded target
    nls = next(line for line in listed.splitlines() if line.startswith("synthfaces32-resnet-nls "))
    assert "shipped" in nls, nls
    code = ("import mibench, mibench.api as mb; "
            "r = mb.resolve_spec(mb.spec('synthfaces32-resnet', 'ppa', classes=range(3))); "
            "print(mibench.__file__); print(r.run_id()); print(r.prior.name, r.preset)")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=elsewhere, env=env,
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert str(venv) in out[0]  # the installed copy, not the checkout
    assert out[1].startswith("synthfaces32-resnet__ppa__synthfaces32-stylegan2-v2__seed0__")
    assert out[2] == "synthfaces32-stylegan2-v2 synthfaces"
