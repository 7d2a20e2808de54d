"""Sharding one run's target classes over processes started by `torchrun` (torch.distributed:
gloo on CPU, nccl on GPU). Every rank attacks its share; rank 0 gathers the per-class results,
writes the ones not already on a shared disk, and writes the single entry — identical to what a
single process writes, because every class's randomness is keyed by the class, not by the rank."""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist


@dataclass
class Dist:
    """This process's place in the group."""

    rank: int
    world_size: int
    local_rank: int

    def shard(self, classes: list[int]) -> list[int]:
        """This rank's classes: a round-robin share, so every rank gets similar work."""
        return classes[self.rank::self.world_size]

    def barrier(self) -> None:
        """Wait for every rank."""
        tdist.barrier()

    def gather(self, obj: Any) -> list[Any] | None:
        """Collect one picklable object per rank on rank 0 (None elsewhere)."""
        out = [None] * self.world_size if self.rank == 0 else None
        tdist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]


def launched_by_torchrun() -> bool:
    """True when the torchrun environment variables describe more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@contextmanager
def context(device: str = "auto"):
    """Yield a `Dist` when started by torchrun (initialising the process group), else None."""
    if not launched_by_torchrun():
        yield None
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
    # Ranks wait for the slowest shard in the final gather: NCCL's default 10-minute watchdog would
    # abort a long sharded run (MIBENCH_DIST_TIMEOUT seconds, default a day).
    timeout = datetime.timedelta(seconds=float(os.environ.get("MIBENCH_DIST_TIMEOUT", 24 * 3600)))
    tdist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    try:
        yield Dist(tdist.get_rank(), tdist.get_world_size(), local_rank)
    finally:
        tdist.destroy_process_group()
