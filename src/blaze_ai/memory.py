"""The memory a machine offers for models: the default of ``server.model_memory_budget_mb``.

The model cache has one budget. When ``model_memory_budget_mb`` is 0 (the default) it is sized at
start for the pool the models load on:

- a CUDA GPU, when any in-process model is placed on one (``device: auto`` with a GPU visible, or
  ``cuda[:N]``): the device's free memory at start, less a margin of 10 % of its total (at least
  1 GiB) for activations, CUDA graphs and allocator slack. With several GPUs, the smallest of them.
  Models placed on the CPU beside them count against that budget too.
- otherwise the machine's RAM: 75 % of the total (or of the container's cgroup limit when that is
  lower); the rest is for activations, the response cache, the server and the OS.

Readers are injected so the rules are tested without the machine's real memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

MIB = 1 << 20
GIB = 1 << 30
#: Share of the machine's RAM the model cache may fill when models run on the CPU.
RAM_SHARE = 0.75
#: Share of a GPU's total memory kept free beside its models, and the least kept free.
GPU_MARGIN_SHARE = 0.10
GPU_MARGIN_MIN_BYTES = GIB

_MEMINFO = Path("/proc/meminfo")
#: cgroup v2, then v1: a container's memory limit ("max" or a huge number when unlimited).
_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


@dataclass(frozen=True)
class Budget:
    """A model memory budget and where it came from (for the start log and refusals)."""

    bytes: int
    origin: str

    def describe(self) -> str:
        """``12,288 MiB (75 % of 16,384 MiB RAM)``."""
        return f"{self.bytes / MIB:,.0f} MiB ({self.origin})"


def ram_bytes(meminfo: Path = _MEMINFO, cgroup_limits: Iterable[Path] = _CGROUP_LIMITS) -> int:
    """The machine's RAM (``MemTotal``), or the container's memory limit when that is lower."""
    total = 0
    try:
        for line in meminfo.read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024  # kB
                break
    except (OSError, ValueError, IndexError):
        pass
    if not total:  # no /proc (not Linux): ask the C library
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in cgroup_limits:
        try:
            limit = path.read_text(encoding="ascii").strip()
        except OSError:
            continue
        if limit.isdigit() and 0 < int(limit) < total:
            total = int(limit)
    return total


def cuda_memory(device: str) -> tuple[int, int]:
    """(free, total) bytes of CUDA ``device`` now (initialises CUDA in this process)."""
    import torch

    free, total = torch.cuda.mem_get_info(torch.device(device))
    return int(free), int(total)


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU (imports torch)."""
    import torch

    return bool(torch.cuda.is_available())


def default_budget(
    devices: Iterable[str],
    *,
    ram: Callable[[], int] = ram_bytes,
    cuda: Callable[[str], tuple[int, int]] = cuda_memory,
    has_cuda: Callable[[], bool] = cuda_available,
) -> Budget:
    """The budget for models placed on ``devices`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""
    placed = set(devices)
    gpus = sorted({_cuda_name(d) for d in placed if d.startswith("cuda")})
    if "auto" in placed and has_cuda():
        gpus = sorted({*gpus, "cuda:0"})
    if gpus:
        return min((_gpu_budget(gpu, *cuda(gpu)) for gpu in gpus), key=lambda b: b.bytes)
    total = ram()
    return Budget(max(MIB, int(total * RAM_SHARE)), f"{RAM_SHARE:.0%} of {total / MIB:,.0f} MiB RAM")


def _cuda_name(device: str) -> str:
    return "cuda:0" if device == "cuda" else device


def _gpu_budget(device: str, free: int, total: int) -> Budget:
    margin = max(GPU_MARGIN_MIN_BYTES, int(total * GPU_MARGIN_SHARE))
    origin = f"{device}'s {free / MIB:,.0f} MiB free at start less {margin / MIB:,.0f} MiB margin"
    return Budget(max(MIB, free - margin), origin)
