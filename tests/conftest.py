"""Test-wide settings: one torch thread (fast and reproducible on small CPUs) and a private cache."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its cache into a temporary folder, never the user's ~/.cache/mibench."""
    monkeypatch.setenv("MIBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
