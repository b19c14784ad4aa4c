"""The end of a run: the summary's numbers against values worked out by hand from a metrics file, and metrics.png
drawn from a synthetic metrics table (panels, smoothed line, a valid PNG)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cluster.config import load_config
from cluster.outputs import RunOutputs
from cluster.plots import PANELS, metrics_figure, trailing_mean, write_metrics_plot
from cluster.summary import end_of_run, summarize

# eight steps: a quarter is two steps
REWARD = [0.10, 0.20, 0.15, 0.25, 0.30, 0.20, 0.40, 0.50]
COLOR = [0.20, 0.30, 0.25, 0.35, 0.40, 0.30, 0.60, 0.70]
OBJECTS = [0.0, 0.1, 0.05, 0.15, 0.2, 0.1, 0.2, 0.3]
STEP_S = [4.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]


def _rows() -> list[dict]:
    return [
        {
            "step": i,
            "reward_mean": REWARD[i],
            "reward_color_mean": COLOR[i],
            "reward_objects_mean": OBJECTS[i],
            "reward_color_latency_s": 0.01,
            "reward_color_std": 0.1,
            "images": 16,
            "step_s": STEP_S[i],
            "kl": 0.01 * i,
            "loss": 0.001 * (i % 3),
            "rollout_s": 1.0,
            "reward_s": 0.5,
            "learner_s": 0.5,
            "sync_s": 0.1,
            "images_per_s": 16 / STEP_S[i],
            "version_lag_mean": 0.0,
            "version_lag_max": 0,
        }
        for i in range(8)
    ]


def test_summary_numbers_from_a_metrics_file(tmp_path):
    out = RunOutputs(tmp_path / "run")
    for row in _rows():
        out.write_metrics(row)
    s = summarize(out.metric_rows())
    assert (s.steps, s.quarter, s.images) == (8, 2, 128)
    # by hand: first quarter (0.10 + 0.20) / 2, last quarter (0.40 + 0.50) / 2
    assert (s.reward.first, s.reward.last) == pytest.approx((0.15, 0.45))
    assert s.reward.ratio == pytest.approx(3.0)
    assert set(s.per_scorer) == {"color", "objects"}  # not latency/std columns
    assert (s.per_scorer["color"].first, s.per_scorer["color"].last) == pytest.approx((0.25, 0.65))
    assert (s.per_scorer["objects"].first, s.per_scorer["objects"].last) == pytest.approx((0.05, 0.25))
    assert s.images_per_s == pytest.approx(128 / 18.0)  # 8 x 16 images over 4 + 7 x 2 seconds

    cfg = load_config(None, [f"output_dir={out.root}"])
    text = end_of_run(cfg, out)
    assert "0.1500 -> 0.4500" in text and "7.11 images/s" in text
    assert f"python -m cluster.run output_dir={out.root} resume=true" in text
    assert f"python -m evaluation.run --config {out.root / 'config.yaml'} 'eval.policies=[model,{out.root}]'" in text
    assert f"tensorboard --logdir {out.root / 'tensorboard'}" in text and str(out.root / "metrics.png") in text


def test_a_short_run_takes_its_quarter_as_one_step():
    s = summarize(_rows()[:3])
    assert s.quarter == 1 and (s.reward.first, s.reward.last) == pytest.approx((0.10, 0.15))
    with pytest.raises(ValueError, match="no metrics rows"):
        summarize([])


def test_trailing_mean_by_hand():
    got = trailing_mean(np.array([0.0, 1.0, 2.0, np.nan, 4.0]), 3)
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 1.5, 3.0])  # NaN skipped: (1 + 2) / 2, (2 + 4) / 2


def test_metrics_plot_has_the_panels_and_is_a_png(tmp_path):
    rows = _rows()
    fig = metrics_figure(rows, window=3)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == list(PANELS)
    reward = fig.axes[0]
    labels = [line.get_label() for line in reward.get_lines()]
    assert labels.count("total (mean of 3)") == 1 and "color (mean of 3)" in labels and "objects (mean of 3)" in labels
    smoothed = next(line for line in reward.get_lines() if line.get_label() == "total (mean of 3)")
    # trailing mean of 3 of REWARD, by hand
    np.testing.assert_allclose(smoothed.get_ydata(), [0.10, 0.15, 0.15, 0.20, 0.7 / 3, 0.25, 0.30, 1.1 / 3])
    stages = {line.get_label() for line in fig.axes[3].get_lines()}
    assert stages == {"rollout", "reward", "learner", "sync", "step"}  # the stage columns present, no others

    path = write_metrics_plot(rows, tmp_path / "metrics.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size == (1200, 640)  # 15 x 8 inches at 80 dpi
        assert len(np.unique(np.asarray(im.convert("L")))) > 10  # something is drawn
    assert not list(tmp_path.glob(".*"))  # replaced whole, no temporary file left
