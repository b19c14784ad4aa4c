"""Peak memory of a block, recorded under a name: ``with peak_memory(memory, "image"): ...``.

On Linux the process's resident set is tracked by the kernel's high-water mark (``VmHWM`` in
/proc/self/status), which writing ``5`` to /proc/self/clear_refs resets to the current resident size: so the
peak of a block is exact (no sampling), in MiB, everything resident included (weights, caches, the Python
runtime). Where this process uses CUDA, the device's peak allocation is recorded too (``key + "_cuda"``).
One block at a time per process: the high-water mark is per process, so nested or concurrent blocks would reset
each other's.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_MIB = 2**20


def _status_kib(field: str) -> Optional[int]:
    try:
        m = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def resident_mib() -> Optional[float]:
    """The process's resident set now, MiB (None where /proc is unavailable)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def _reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _cuda():
    """torch.cuda when this process has initialised CUDA (never initialises it, never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    return torch.cuda


@contextmanager
def peak_memory(memory: MutableMapping[str, float], key: str) -> Iterator[None]:
    """Store the block's peak resident memory in ``memory[key]`` (MiB) and, where CUDA is in use, its peak device
    allocation in ``memory[key + "_cuda"]``; nothing is stored for what the platform cannot measure."""
    host = _reset_peak()
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()
    try:
        yield
    finally:
        if host and (kib := _status_kib("VmHWM")) is not None:
            memory[key] = kib / 1024
        if cuda is not None:
            memory[key + "_cuda"] = cuda.max_memory_allocated() / _MIB
