"""Test-wide settings: one torch thread (fast and reproducible on small CPUs) and a private cache."""

import sys
from pathlib import Path

import pytest
import torch

# The test plug-in (one attack, one metric) is found through its `mibench.plugins` entry point, as
# an installed third-party package would be: every registry-driven test sees it.
sys.path.insert(0, str(Path(__file__).parent / "plugins"))

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its cache into a temporary folder, never the user's ~/.cache/mibench."""
    monkeypatch.setenv("MIBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
