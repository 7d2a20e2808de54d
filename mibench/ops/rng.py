"""Counter-based random numbers: each value is a pure function of (seed, key, counter, slot).

Attacks draw per-sample randomness (latents, augmentation crops, final-selection views) from here,
keyed by (run seed, class, candidate index, step). A sample therefore gets the same numbers whether
its class runs alone, batched with others, on another rank, or on another device — the core of
mibench's batching-invariance and sharding guarantees.
"""

from __future__ import annotations

import math

import torch

from mibench.seeding import derive_seed

_M64 = (1 << 64) - 1


def _to_signed(v: int) -> int:
    v &= _M64
    return v - (1 << 64) if v >= 1 << 63 else v


_GOLDEN = _to_signed(0x9E3779B97F4A7C15)
_MIX1 = _to_signed(0xBF58476D1CE4E5B9)
_MIX2 = _to_signed(0x94D049BB133111EB)


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _splitmix(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser on int64 tensors (wrapping arithmetic)."""
    x = x + _GOLDEN
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    return x ^ _shr(x, 31)


def hash_bits(seed: int, keys: torch.Tensor, *counters: int | torch.Tensor) -> torch.Tensor:
    """64 pseudo-random bits (int64) for each key, mixed with the given counters."""
    x = _splitmix(torch.full_like(keys, _to_signed(seed)) ^ keys.long())
    for c in counters:
        x = _splitmix(x ^ (c.long() if torch.is_tensor(c) else torch.full_like(x, _to_signed(int(c)))))
    return x


def uniform(seed: int, keys: torch.Tensor, *counters: int | torch.Tensor) -> torch.Tensor:
    """Uniform floats in [0, 1) (float32, same shape as keys) from 53 hashed bits."""
    bits = _shr(hash_bits(seed, keys, *counters), 11)
    return (bits.double() * (1.0 / (1 << 53))).float()


def normal(seed: int, keys: torch.Tensor, *counters: int | torch.Tensor) -> torch.Tensor:
    """Standard normal floats (float32, shape of keys) by Box–Muller on two hashed uniforms."""
    bits1 = _shr(hash_bits(seed, keys, *counters, 0x6E31), 11).double() * (1.0 / (1 << 53))
    bits2 = _shr(hash_bits(seed, keys, *counters, 0x6E32), 11).double() * (1.0 / (1 << 53))
    u1 = 1.0 - bits1  # in (0, 1]: log is finite
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * bits2)).float()


def normal_matrix(seed: int, rows: torch.Tensor, dim: int, *counters: int) -> torch.Tensor:
    """A (len(rows), dim) standard-normal matrix; row r depends only on (seed, rows[r], counters)."""
    keys = rows.long().view(-1, 1) * dim + torch.arange(dim, device=rows.device).view(1, -1)
    return normal(seed, keys, *counters)


def stream_seed(*parts: object) -> int:
    """A named 63-bit seed for one random stream (e.g. `stream_seed(run_seed, 'ppa', 'pool')`)."""
    return derive_seed(*parts)
