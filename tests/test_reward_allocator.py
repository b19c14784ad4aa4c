"""rewards/allocator.py: glibc's thresholds set once per process, a logged no-op where mallopt is missing."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rewards import allocator

REPO = Path(__file__).resolve().parents[1]
# malloc.h: M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3

# Allocates and frees 8 MB twice and prints the minor page faults of the second allocation. Untuned, glibc mmaps
# the first block and grows the heap anew for the second (after raising its dynamic threshold): 8 MB of fresh
# pages, ~2,048 faults. Tuned, the second reuses the first's heap memory.
FAULTS_OF_A_SECOND_8MB_BLOCK = """
import resource, sys
from rewards.allocator import tune_allocator
if sys.argv[1] == "tuned":
    print(tune_allocator(), tune_allocator())
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
bytearray(8 * 2**20)  # allocated, filled and freed
before = faults()
block = bytearray(8 * 2**20)
print(faults() - before)
"""


def _run(mode: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc's own tunables off
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run(
        [sys.executable, "-c", FAULTS_OF_A_SECOND_8MB_BLOCK, mode], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_tuning_makes_a_freed_block_reusable_without_page_faults():
    untuned = int(_run("untuned")[0])
    *answers, tuned = _run("tuned")
    assert answers == ["True", "True"]  # mallopt accepted both thresholds; the second call repeats the outcome
    pages = 8 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    assert untuned > pages // 2, f"untuned: {untuned} faults for {pages} fresh pages"
    assert int(tuned) < pages // 20, f"tuned: {tuned} faults, the freed 8 MB should have been reused"


@pytest.fixture
def fresh(monkeypatch):
    """The module as in a process that has not tuned yet; mallopt replaced by a recorder answering ``answer``."""
    monkeypatch.setattr(allocator, "_tuned", None)
    calls: list[tuple[int, int]] = []

    def install(answer: int | None):
        def mallopt(param: int, value: int) -> int:
            calls.append((param, value))
            return answer

        monkeypatch.setattr(allocator, "_mallopt", lambda: None if answer is None else mallopt)
        return calls

    return install


def test_sets_both_thresholds_once(fresh):
    calls = fresh(1)
    assert allocator.tune_allocator() and allocator.tune_allocator()
    assert calls == [(M_MMAP_THRESHOLD, 32 * 2**20), (M_TRIM_THRESHOLD, 128 * 2**20)]


@pytest.mark.parametrize("answer", [None, 0], ids=["no mallopt (macOS)", "mallopt refuses (musl)"])
def test_without_glibc_it_changes_nothing_and_says_so(fresh, caplog, answer):
    calls = fresh(answer)
    with caplog.at_level(logging.DEBUG, logger="rewards.allocator"):
        assert allocator.tune_allocator() is False
        assert allocator.tune_allocator() is False
    assert len(calls) <= 1  # a refusal is not retried
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["allocator left as is"]
