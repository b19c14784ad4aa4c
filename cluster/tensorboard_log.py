"""TensorBoard: every numeric column of a step's metrics row as a scalar, and the image grids
(``tensorboard --logdir OUTPUT_DIR/tensorboard``).

Tags are grouped the way the columns read: ``reward/*`` (total and per scorer), ``seconds/*`` (stages, the
reward calls' latency and its split),
``learner/*`` (the update's statistics; its per-level ones keep their ``semantic/`` and ``token/`` prefix),
``rollout/*`` and ``run/*``. A resumed run opens its writer with ``purge_step`` at its first step, so TensorBoard
drops the earlier run's events of the steps being redone: no step is shown twice.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

LEARNER_KEYS = ("loss", "kl")


def scalar_tag(key: str) -> str:
    """The TensorBoard tag of a metrics column."""
    if "/" in key:
        return key
    if key.endswith("_s"):
        return f"seconds/{key}"
    if key.startswith("reward"):
        return f"reward/{key}"
    if key in LEARNER_KEYS:
        return f"learner/{key}"
    if key.startswith(("cot_", "images", "version_lag", "rollout_")):
        return f"rollout/{key}"
    return f"run/{key}"


def numeric_items(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row, but the step itself."""
    return {
        k: float(v)
        for k, v in row.items()
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def _after_existing_event_files(log_dir: Path) -> None:
    """TensorBoard reads a directory's event files in name order, and a name starts with the second the file was
    created (``events.out.tfevents.{seconds}.{host}.{pid}...``). A resumed run's purge only works if its file comes
    after the earlier run's: when that run's file is from this very second (a quick restart), wait for the next."""
    import time

    seconds = [
        int(p.name.split(".")[3])
        for p in log_dir.glob("events.out.tfevents.*")
        if len(p.name.split(".")) > 3 and p.name.split(".")[3].isdigit()
    ]
    if seconds and max(seconds) >= int(time.time()):
        time.sleep(max(seconds) + 1 - time.time())


class TensorBoardLog:
    def __init__(self, log_dir: Path, first_step: int = 1):
        from torch.utils.tensorboard import SummaryWriter

        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        _after_existing_event_files(log_dir)
        # purge_step: TensorBoard hides what earlier runs in this directory wrote for steps >= first_step (a resumed
        # run redoes them; on a fresh directory there is nothing to hide)
        self._writer = SummaryWriter(str(log_dir), purge_step=first_step)

    def scalars(self, step: int, row: dict[str, Any]) -> None:
        for key, value in numeric_items(row).items():
            self._writer.add_scalar(scalar_tag(key), value, global_step=step)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        """``image``: uint8 H x W x 3."""
        self._writer.add_image(tag, image, global_step=step, dataformats="HWC")

    def close(self) -> None:
        self._writer.close()
