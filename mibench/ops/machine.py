"""What machine this is, as recorded in entries and shipped-artifact manifests: the CPU model and the
CPU code path PyTorch's kernels take (which changes floating-point results)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model ('model name' in /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capability() -> str:
    """ATen's CPU kernel level (e.g. AVX512, AVX2, DEFAULT; `ATEN_CPU_CAPABILITY` lowers it)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()
