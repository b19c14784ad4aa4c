"""core.memory: the peak of a block from the kernel's high-water mark, against allocations of known size."""

from __future__ import annotations

import numpy as np
import pytest

from core.memory import peak_memory, resident_mib

pytestmark = pytest.mark.skipif(resident_mib() is None, reason="needs Linux's /proc/self/status")


def test_a_block_peak_counts_what_it_allocated_and_freed():
    start = resident_mib()
    memory: dict[str, float] = {}
    with peak_memory(memory, "block"):
        a = np.ones(256 * 2**20 // 8)  # 256 MiB, every page touched
        del a
    assert memory["block"] >= start + 250  # the freed array is in the block's peak
    # a later block that allocates little does not inherit that peak: the high-water mark was reset at its start
    with peak_memory(memory, "small"):
        b = np.ones(16 * 2**20 // 8)
    assert memory["small"] >= resident_mib() - 1  # the live array is in it
    assert memory["small"] < memory["block"] - 200
    del b
    assert set(memory) == {"block", "small"}  # no "_cuda" keys without CUDA in use
