"""The default model memory budget: RAM (within a cgroup limit) on CPU, free memory less a margin on CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest

from blaze_ai.memory import GIB, MIB, default_budget, ram_bytes


def no_cuda(device: str) -> tuple[int, int]:
    raise AssertionError(f"CUDA memory of {device} read for a CPU-only placement")


def gpus(**free_total: tuple[int, int]) -> dict[str, tuple[int, int]]:
    return {name.replace("_", ":"): value for name, value in free_total.items()}


def test_ram_is_memtotal(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683520 kB\nMemFree:         1000 kB\n")
    assert ram_bytes(meminfo, cgroup_limits=()) == 24683520 * 1024


@pytest.mark.parametrize(("limit", "expected_gib"), [("4294967296\n", 4), ("max\n", 16), (str(64 * GIB), 16)])
def test_a_lower_container_limit_wins(tmp_path: Path, limit: str, expected_gib: int) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: {16 * GIB // 1024} kB\n")
    cgroup = tmp_path / "memory.max"
    cgroup.write_text(limit)
    assert ram_bytes(meminfo, cgroup_limits=(tmp_path / "missing", cgroup)) == expected_gib * GIB


def test_without_proc_meminfo_the_c_library_answers(tmp_path: Path) -> None:
    assert ram_bytes(tmp_path / "missing", cgroup_limits=()) > 0


@pytest.mark.parametrize("devices", [["cpu"], ["auto"], ["cpu", "auto"], []])
def test_on_cpu_the_budget_is_three_quarters_of_ram(devices: list[str]) -> None:
    budget = default_budget(devices, ram=lambda: 16 * GIB, cuda=no_cuda, has_cuda=lambda: False)
    assert budget.bytes == 12 * GIB
    assert budget.origin == "75% of 16,384 MiB RAM"
    assert budget.describe() == "12,288 MiB (75% of 16,384 MiB RAM)"


def test_auto_with_a_gpu_takes_its_free_memory_less_a_tenth_of_its_total() -> None:
    memory = gpus(cuda_0=(100 * GIB, 140 * GIB))
    budget = default_budget(
        ["auto", "cpu"], ram=lambda: 8 * GIB, cuda=memory.__getitem__, has_cuda=lambda: True
    )
    assert budget.bytes == 86 * GIB  # 100 free - 14 margin; the CPU-placed model counts against it
    assert budget.origin == "cuda:0's 102,400 MiB free at start less 14,336 MiB margin"


def test_a_small_gpu_keeps_at_least_one_gib_free() -> None:
    budget = default_budget(["cuda"], cuda=gpus(cuda_0=(6 * GIB, 8 * GIB)).__getitem__, has_cuda=lambda: True)
    assert budget.bytes == 5 * GIB


def test_with_several_gpus_the_smallest_budget_applies() -> None:
    memory = gpus(cuda_0=(70 * GIB, 80 * GIB), cuda_1=(30 * GIB, 80 * GIB))
    budget = default_budget(["cuda:0", "cuda:1"], cuda=memory.__getitem__, has_cuda=lambda: True)
    assert budget.bytes == 22 * GIB and budget.origin.startswith("cuda:1's")


def test_a_full_gpu_leaves_a_budget_of_one_mib_so_the_first_load_says_by_how_much() -> None:
    budget = default_budget(
        ["cuda:0"], cuda=gpus(cuda_0=(GIB // 2, 80 * GIB)).__getitem__, has_cuda=lambda: True
    )
    assert budget.bytes == MIB
