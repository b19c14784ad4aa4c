"""Wall-clock seconds of a block, recorded under a name: ``with timed(times, "reward_s"): ...``."""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager


@contextmanager
def timed(times: MutableMapping[str, float], key: str) -> Iterator[None]:
    """Store the seconds the block took in ``times[key]`` (also when it raises, for the log of a failed step)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        times[key] = time.perf_counter() - start
