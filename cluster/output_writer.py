"""Each step's outputs, written beside the loop by one background thread.

The loop hands a step's records to :class:`StepOutputs` and goes on to the next step; the writer thread writes the
metrics row, the rollout records (with each sample's PNG every ``logging.sample_images_every`` steps), the image
grid, the refreshed ``metrics.png`` and the TensorBoard / W&B entries. What the loop may rely on:

- bounded: at most ``logging.writer_queue`` steps wait to be written (each holds its images); beyond that
  :meth:`BackgroundWriter.submit` waits, so a slow disk slows the loop instead of filling memory;
- ordered: one thread writes the steps in the order they were submitted;
- drained: :meth:`BackgroundWriter.close` (the end of a run, and Trainer.shutdown after a failure) returns once every
  submitted step is written, and :meth:`BackgroundWriter.flush` runs before a checkpoint's state file lands, so a
  checkpoint never covers a step whose outputs are not on disk. A driver killed with steps still queued resumes from
  an earlier checkpoint, and RunOutputs.truncate_after drops whatever those steps had half-written before they are
  written again: nothing lost, nothing doubled;
- errors: a write that fails is logged, the later ones still run, and the first failure is raised in the loop at its
  next submit, flush or close.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from cluster.config import Config
from cluster.outputs import RunOutputs
from cluster.plots import write_metrics_plot
from core.records import RolloutGroup

log = logging.getLogger("cluster")

PLOT_FILE = "metrics.png"


class BackgroundWriter:
    """Runs jobs on one thread, in submission order, with at most ``max_pending`` waiting.

    The thread runs at a lower CPU priority (``nice``, Linux; elsewhere unchanged): where the actors keep every core
    busy (one machine), PNG encoding and plotting take the CPU they leave rather than slowing their stages."""

    def __init__(self, max_pending: int = 2, name: str = "output-writer", nice: int = 10):
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self._queue: queue.Queue[Optional[tuple[Callable[[], None], str]]] = queue.Queue(maxsize=max_pending)
        self._error: Optional[BaseException] = None
        self._closed = False
        self._nice = nice
        self.jobs = 0  # jobs run so far
        self.busy_s = 0.0  # their wall-clock seconds
        # a daemon thread: an interpreter that exits without close() (killed loop) must not hang on a stuck disk
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:  # a Linux thread is a task of its own: this lowers this thread's priority only
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        except (AttributeError, OSError):
            pass
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                job, what = item
                start = time.perf_counter()
                try:
                    job()
                except BaseException as e:  # reported to the loop; the later jobs still run
                    log.error("writing %s failed: %s: %s", what, type(e).__name__, e)
                    if self._error is None:
                        self._error = RuntimeError(f"the output writer failed on {what}: {type(e).__name__}: {e}")
                        self._error.__cause__ = e
                self.jobs += 1
                self.busy_s += time.perf_counter() - start
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def submit(self, job: Callable[[], None], what: str) -> None:
        """Queue ``job`` (``what`` names it in errors); waits while ``max_pending`` jobs are already waiting."""
        self._raise()
        if self._closed:
            raise RuntimeError(f"the output writer is closed; cannot write {what}")
        self._queue.put((job, what))

    def flush(self) -> None:
        """Return once every job submitted so far has run; raise the first failure."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Run every job still waiting, then stop the thread (idempotent)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
        self._raise()


def due(step: int, every: int, last_step: int) -> bool:
    """Whether an every-k-steps output is written at ``step`` (steps count from 1): the first step, steps k, 2k, ...
    and the last one."""
    return every > 0 and (step == 1 or step % every == 0 or step == last_step)


class StepOutputs:
    """What each step leaves in ``output_dir``, written by a :class:`BackgroundWriter` (see the module doc)."""

    def __init__(self, cfg: Config, out: RunOutputs, first_step: int = 1):
        """``first_step``: the first step this run writes (after a resume, the one after the checkpoint)."""
        self.cfg = cfg
        self.out = out
        self.plot_path = out.root / PLOT_FILE
        self.trackers = open_trackers(cfg, out, first_step)
        self.writer = BackgroundWriter(cfg.logging.writer_queue)
        self._closed = False

    def submit(
        self,
        step: int,
        groups: list[RolloutGroup],
        rewards: np.ndarray,
        per_scorer: dict[str, np.ndarray],
        advantages: np.ndarray,
        row: dict[str, Any],
    ) -> None:
        """Queue the step's outputs (``rewards``, ``per_scorer`` and ``advantages`` flat, one value per sample)."""
        self.writer.submit(lambda: self._write(step, groups, rewards, per_scorer, advantages, row), f"step {step}")

    def _write(
        self,
        step: int,
        groups: list[RolloutGroup],
        rewards: np.ndarray,
        per_scorer: dict[str, np.ndarray],
        advantages: np.ndarray,
        row: dict[str, Any],
    ) -> None:
        lc, last = self.cfg.logging, self.cfg.trainer.steps
        self.out.write_metrics(row)
        self.out.write_rollouts(
            step, groups, rewards, per_scorer, advantages, sample_images=due(step, lc.sample_images_every, last)
        )
        for t in self.trackers:
            t.scalars(step, row)
        if due(step, lc.image_every, last):
            grid = self.out.write_grid(step, groups, rewards, lc.grid_images)
            if self.trackers:
                image = read_rgb(grid)
                for t in self.trackers:
                    t.image(step, "rollouts/grid", image)
        if due(step, lc.plot_every, last):
            write_metrics_plot(self.out.metric_rows(), self.plot_path)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        """Write everything still queued, refresh the plot once more, close the trackers (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.writer.close()
        finally:
            w = self.writer
            log.info(
                "background writer: %d steps of outputs in %.1f s (%.2f s per step)",
                w.jobs,
                w.busy_s,
                w.busy_s / max(w.jobs, 1),
            )
            rows = self.out.metric_rows()
            if rows:
                write_metrics_plot(rows, self.plot_path)
            for t in self.trackers:
                t.close()


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def open_trackers(cfg: Config, out: RunOutputs, first_step: int) -> list:
    """The experiment trackers the config asks for: TensorBoard (default), Weights & Biases (optional)."""
    trackers: list = []
    if cfg.logging.tensorboard:
        from cluster.tensorboard_log import TensorBoardLog

        trackers.append(TensorBoardLog(out.root / "tensorboard", first_step))
    if cfg.logging.wandb:
        from cluster.wandb_log import WandbLog

        trackers.append(WandbLog(cfg, out.root))
    return trackers
