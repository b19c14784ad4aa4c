"""Keep glibc's heap for the multi-megabyte reward requests (``rewards.tune_allocator``, on by default).

By default glibc serves every allocation above its mmap threshold (128 KB, raised by itself up to 32 MB as large
blocks are freed) with a fresh ``mmap`` and gives the top of the heap back to the kernel once more than twice that
threshold is free. A group of 8 raw 384-px images is a 3.5 MB request, built on the client and received, parsed
and copied on the server for every call: each copy lands in memory the kernel must map and zero again, about
2,500 page faults per call, a third of the hop's time in the kernel (benchmarks/bench_reward.py).
:func:`tune_allocator` fixes both thresholds once per process so that such buffers are carved from, and returned
to, the heap.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Optional

log = logging.getLogger(__name__)

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks up to this size come from the heap: 32 MB is glibc's ceiling for its own dynamic threshold (and for the
# setting on some versions), a whole group of 8 images up to about 1,100 px square; larger ones are still mmapped.
MMAP_THRESHOLD_BYTES = 32 * 2**20
# Free memory at the top of a heap is given back to the kernel only beyond this. It bounds what the setting keeps
# per process (per malloc arena) over glibc's default: four 32-MB requests in flight can be reused without faults.
TRIM_THRESHOLD_BYTES = 128 * 2**20

_tuned: Optional[bool] = None  # this process's outcome, once tried


def _mallopt() -> Optional[ctypes._CFuncPtr]:
    try:
        return getattr(ctypes.CDLL(None), "mallopt", None)
    except (OSError, TypeError):  # no C library handle (Windows: CDLL(None) raises TypeError)
        return None


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds for this process; True when they are set. Idempotent: later calls
    return the first call's outcome. Without glibc's ``mallopt`` (macOS, musl refuses it) it changes nothing and
    logs why at debug level."""
    global _tuned
    if _tuned is not None:
        return _tuned
    mallopt = _mallopt()
    if mallopt is None:
        log.debug("allocator left as is: this C library has no mallopt (not glibc)")
        _tuned = False
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt answers 1 when it took the value, 0 when it refused it
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    if ok:
        log.debug(
            "allocator tuned: mmap threshold %d MB, trim threshold %d MB",
            MMAP_THRESHOLD_BYTES >> 20,
            TRIM_THRESHOLD_BYTES >> 20,
        )
    else:
        log.debug("allocator left as is: mallopt refused the thresholds (not glibc?)")
    _tuned = ok
    return ok
