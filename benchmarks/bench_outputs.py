"""What writing a run's outputs costs the loop, at 384-px images (`python -m cluster.run`, a local Ray cluster).

``outputs_384px_step``: median seconds per step of the whole loop with every output on (each sample's PNG, the
captioned grid, metrics.png and TensorBoard, all every step) against the same run with them off (metrics and
rollout records only), same config and seed, fresh processes one after the other. A step's seconds here are the
intervals between its console line and the previous one, so they include whatever the loop waits for outputs
(the background writer's queue) and not only the timed stages. The first steps (start-up, first allocations) are
not counted. Target: outputs on within 5 % of off (ratio >= 1 / 1.05).

The tiny random Janus with Janus-Pro's image shape: a 24 x 24 token grid, four 2x upsamples in the VQ decoder
(384 x 384 pixels), 2 prompts x 4 samples per step.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.results_io import Entry

STEPS, SKIP = 8, 2
REPO = Path(__file__).resolve().parents[1]
SHAPE = ["model.tiny.image_grid=24", "model.tiny.vq_upsamples=4", "trainer.prompts_per_step=2",
         "rollout.group_size=4", "trainer.save_every=0"]
ON = ["logging.sample_images_every=1", "logging.image_every=1", "logging.plot_every=1", "logging.tensorboard=true"]
OFF = ["logging.sample_images_every=0", "logging.image_every=0", "logging.plot_every=0", "logging.tensorboard=false"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(overrides: list[str]) -> dict[str, float]:
    """Median seconds between consecutive step lines, and of the timed step, over the steps after SKIP."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "cluster.run", f"output_dir={out}", f"trainer.steps={STEPS}",
               f"cluster.dashboard_port={_free_port()}", *SHAPE, *overrides]
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        arrivals, lines = [], []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("step "):
                arrivals.append(time.monotonic())
        if proc.wait() != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{''.join(lines[-60:])}")
        rows = pq.read_table(Path(out) / "metrics.parquet").to_pylist()[SKIP:]
        first_image = next(Path(out, "rollouts").glob("images_step_*/*.png"), None)
    periods = [b - a for a, b in zip(arrivals[SKIP - 1:], arrivals[SKIP:])]
    return {"period_s": statistics.median(periods), "step_s": statistics.median(r["step_s"] for r in rows),
            "image_px": _side(first_image)}


def _side(png) -> int:
    if png is None:
        return 0
    from PIL import Image

    with Image.open(png) as im:
        return im.size[0]


def run() -> list[Entry]:
    off = _run(OFF)
    on = _run(ON)
    if on["image_px"] != 384:
        raise RuntimeError(f"expected 384-px images, the run wrote {on['image_px']}-px ones")
    return [Entry(
        name="outputs_384px_step", ours=on["period_s"], baseline=off["period_s"], unit="s/step",
        higher_is_better=False, target=round(1 / 1.05, 3),
        details={"outputs_on": on, "outputs_off": off, "steps_counted": STEPS - SKIP, "images_per_step": 8,
                 "on": ON, "off": OFF, "shape": SHAPE},
    )]
