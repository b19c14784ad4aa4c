"""Outputs written beside the loop: the background writer's order, bound and errors; a writer killed mid-step, then
a resume: nothing lost, nothing doubled (files, metrics rows and TensorBoard steps); per-sample PNGs thinned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cluster.config import load_config
from cluster.output_writer import BackgroundWriter, StepOutputs
from cluster.outputs import RunOutputs
from core.records import PromptRecord, RolloutGroup, RolloutSample

REPO = Path(__file__).resolve().parents[1]
PROMPTS, GROUP, SIDE = 2, 3, 8  # samples per step: 6 images of 8 x 8


def _step(step: int):
    """A step's records, a pure function of the step (a resumed run redoes the same step)."""
    groups, rewards = [], []
    for p in range(PROMPTS):
        prompt = PromptRecord(f"prompt {p}", index=p)
        samples = []
        for g in range(GROUP):
            image = np.full((SIDE, SIDE, 3), (step * 10 + p * GROUP + g) % 256, np.uint8)
            samples.append(RolloutSample(prompt, g, [1], [5, 6], "a cot", [1], [3] * 4, image, policy_version=step))
            rewards.append(step + (p * GROUP + g) / 100)
        groups.append(RolloutGroup(prompt, samples))
    r = np.array(rewards)
    row = {"step": step, "reward_mean": float(r.mean()), "images": len(r), "step_s": 1.0, "kl": 0.01 * step}
    return groups, r, {"color": r}, r - r.mean(), row


def _cfg(out: Path, *overrides: str):
    return load_config(
        None, [f"output_dir={out}", "trainer.steps=6", "logging.image_every=1", "logging.plot_every=0", *overrides]
    )


def test_writer_runs_jobs_in_order_and_submit_waits_when_full():
    w = BackgroundWriter(max_pending=1)
    release, done = threading.Event(), []
    w.submit(lambda: (release.wait(10), done.append(0)), "job 0")  # the writer thread holds this one
    time.sleep(0.2)
    w.submit(lambda: done.append(1), "job 1")  # waits in the queue (its only slot)
    third = threading.Thread(target=lambda: w.submit(lambda: done.append(2), "job 2"))
    third.start()
    third.join(0.5)
    assert third.is_alive(), "submit returned although max_pending jobs were already waiting"
    release.set()
    third.join(10)
    w.submit(lambda: done.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())), "job 3")
    w.close()
    assert done[:3] == [0, 1, 2]
    assert done[3] == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)  # the writer yields the CPU to the loop


def test_a_failed_write_is_raised_in_the_loop_and_later_writes_still_run():
    w = BackgroundWriter(max_pending=4)
    done = []
    w.submit(lambda: 1 / 0, "step 7")
    w.submit(lambda: done.append("step 8"), "step 8")
    with pytest.raises(RuntimeError, match="step 7: ZeroDivisionError"):
        w.flush()
    w.close()  # the error was reported once
    assert done == ["step 8"]


# A training driver's outputs in a child process: steps 1-3, the checkpoint of step 3 (after a flush, as
# Trainer.checkpoint does), steps 4 to 6; the child stops forever inside step 6's per-sample PNGs and is killed.
CHILD = """
import json, sys, threading
from pathlib import Path
import cluster.outputs
from cluster.output_writer import StepOutputs
from cluster.outputs import RunOutputs
from tests.test_output_writer import _cfg, _step

out_dir, marker = Path(sys.argv[1]), Path(sys.argv[2])
encode, calls, per_step = cluster.outputs.encode_png, [0], {per_step}
def encode_then_stop(image):
    calls[0] += 1
    if calls[0] == 5 * per_step + 3:  # the third image of step 6
        marker.write_text("mid-step")
        threading.Event().wait()
    return encode(image)
cluster.outputs.encode_png = encode_then_stop
out = RunOutputs(out_dir)
outputs = StepOutputs(_cfg(out_dir), out)
for step in range(1, 7):
    outputs.submit(step, *_step(step))
    if step == 3:
        outputs.flush()
        (out.checkpoints / "trainer_state.json").write_text(json.dumps({{"step": 3}}))
threading.Event().wait()
"""


def _read_tensorboard(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_writer_killed_mid_step_then_resume_loses_nothing_and_doubles_nothing(tmp_path):
    out_dir, marker = tmp_path / "run", tmp_path / "marker"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(per_step=PROMPTS * GROUP), str(out_dir), str(marker)],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline, "the writer never reached step 6"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    out = RunOutputs(out_dir)
    assert [r["step"] for r in out.metric_rows()] == list(range(1, 7))  # step 6's row came first, then its PNGs
    assert len(list((out.rollouts / "images_step_000006").iterdir())) >= 2  # half of step 6's PNGs (and a tmp)
    assert not (out.rollouts / "step_000006.parquet").exists()

    # resume=true: from the checkpoint of step 3 (Trainer._resume), then steps 4 to 6 again
    state = json.loads((out.checkpoints / "trainer_state.json").read_text())
    out.truncate_after(state["step"])
    outputs = StepOutputs(_cfg(out_dir), out, first_step=state["step"] + 1)
    for step in range(state["step"] + 1, 7):
        outputs.submit(step, *_step(step))
    outputs.close()

    rows = pq.read_table(out.metrics_path).to_pylist()
    assert [r["step"] for r in rows] == list(range(1, 7))
    for step in range(1, 7):
        records = pq.read_table(out.rollouts / f"step_{step:06d}.parquet").to_pylist()
        want = _step(step)[1]
        assert [r["reward"] for r in records] == pytest.approx(list(want))
        files = sorted(p.name for p in (out.rollouts / f"images_step_{step:06d}").iterdir())
        assert files == sorted(Path(r["image_file"]).name for r in records)  # each sample once, no leftovers
        assert (out.images / f"step_{step:06d}.png").is_file()
    assert not list(out_dir.rglob(".*.tmp*"))

    # TensorBoard: one value per step, the resumed run's (the killed run's steps 4.. are purged)
    acc = _read_tensorboard(out_dir / "tensorboard")
    events = acc.Scalars("reward/reward_mean")
    assert [e.step for e in events] == list(range(1, 7))
    assert [e.value for e in events] == pytest.approx([r["reward_mean"] for r in rows])
    assert [e.step for e in acc.Images("rollouts/grid")] == list(range(1, 7))


def test_per_sample_images_are_thinned_but_every_record_is_kept(tmp_path):
    out = RunOutputs(tmp_path / "run")
    outputs = StepOutputs(
        _cfg(
            out.root,
            "logging.sample_images_every=2",
            "logging.tensorboard=false",
            "logging.image_every=0",
            "trainer.steps=7",
        ),
        out,
    )
    for step in range(1, 8):
        outputs.submit(step, *_step(step))
    outputs.close()
    with_images = sorted(int(d.name.rsplit("_", 1)[1]) for d in out.rollouts.glob("images_step_*"))
    assert with_images == [1, 2, 4, 6, 7]  # the first, every 2nd and the last
    for step in range(1, 8):
        records = pq.read_table(out.rollouts / f"step_{step:06d}.parquet").to_pylist()
        assert len(records) == PROMPTS * GROUP
        assert all((r["image_file"] is not None) == (step in with_images) for r in records)
    assert pq.read_table(out.rollouts / "step_000001.parquet").schema.field("image_file").type == "string"
    assert not list(out.images.iterdir())  # image_every=0
    assert (out.root / "metrics.png").is_file()  # plot_every=0: drawn once, at the end


def test_wandb_offline_run_holds_the_scalars_and_grids(tmp_path, monkeypatch):
    """Optional extra: skipped where wandb is not installed (`pip install -e '.[wandb]'`)."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = RunOutputs(tmp_path / "run")
    outputs = StepOutputs(
        _cfg(
            out.root,
            "logging.wandb=true",
            "logging.tensorboard=false",
            "logging.sample_images_every=0",
            "trainer.steps=3",
        ),
        out,
    )
    for step in range(1, 4):
        outputs.submit(step, *_step(step))
    outputs.close()
    (run_dir,) = (out.root / "wandb").glob("offline-run-*")
    assert next(run_dir.glob("run-*.wandb")).stat().st_size > 0  # the record log (compressed: read by `wandb sync`)
    # each step's grid, as W&B stored it, holds the pixels of the grid written to images/
    logged = sorted(
        (run_dir / "files" / "media" / "images" / "rollouts").glob("grid_*.png"),
        key=lambda f: int(f.name.split("_")[1]),
    )
    assert len(logged) == 3
    for step, f in enumerate(logged, start=1):
        with Image.open(f) as a, Image.open(out.images / f"step_{step:06d}.png") as b:
            np.testing.assert_array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
