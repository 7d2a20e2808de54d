"""Explicit, derivable seeds: every stochastic step takes a generator seeded from named parts.

`derive_seed(run_seed, "ppa", class_id)` gives the same number in every process, so a class yields
the same result whether it runs alone, in a batch, or on another rank.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that depends only on `parts` (stable across processes and machines)."""
    h = hashlib.sha256("\x1f".join(repr(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def make_generator(*parts: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A `torch.Generator` on `device` seeded with `derive_seed(*parts)`."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*parts))
    return g


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global RNGs (for third-party code that uses them)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
