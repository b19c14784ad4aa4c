"""The training loop's per-step bookkeeping: the metrics row and the console line, from hand-made records."""

import numpy as np
import pytest

from cluster.trainer import StepResult, metrics_row, progress_line
from core.records import PromptRecord, RolloutGroup, RolloutSample
from rewards.client import GroupRewards, RewardBatch, ScorerReply


def _sample(prompt: PromptRecord, j: int, version: int, cot_len: int, cot_s: float) -> RolloutSample:
    return RolloutSample(
        prompt=prompt,
        group_index=j,
        cot_prompt_ids=[1],
        cot_ids=[5] * cot_len,
        cot_text="",
        image_prompt_ids=[1, 2],
        image_ids=[3, 4],
        image=np.zeros((2, 2, 3), np.uint8),
        policy_version=version,
        timings={"cot": cot_s, "image": 1.0, "decode": 0.5},
    )


def _result() -> StepResult:
    prompts = [PromptRecord("a", index=0), PromptRecord("b", index=1)]
    groups = [
        RolloutGroup(prompts[0], [_sample(prompts[0], 0, 4, 2, 0.2), _sample(prompts[0], 1, 4, 4, 0.2)]),
        RolloutGroup(prompts[1], [_sample(prompts[1], 0, 3, 6, 0.6), _sample(prompts[1], 1, 3, 8, 0.6)]),
    ]
    reply = lambda scores, latency, attempts: ScorerReply(
        "color",
        "1",
        scores,
        [{}, {}],
        "r",
        latency,
        attempts,
        encode_s=0.01,
        wire_s=0.02 * attempts,
        queue_s=0.0,
        decode_s=0.03,
        prepare_s=0.02,
        score_s=0.1,
    )
    batch = RewardBatch(
        [
            GroupRewards(prompts[0], "0", {"color": reply([0.0, 1.0], 0.3, 1)}),
            GroupRewards(prompts[1], "1", {"color": reply([0.5, 0.5], 0.5, 2)}),
        ],
        scorers=["color"],
        replicas={"color": 3},
    )
    stats = {"loss": 0.25, "semantic/kl": 0.1, "semantic/tokens": 10.0, "token/kl": 0.4, "token/tokens": 30.0}
    times = {"rollout_s": 2.0, "reward_s": 1.0, "learner_s": 4.0, "sync_s": 1.0, "step_s": 8.0}
    return StepResult(
        step=2,
        groups=groups,
        batch=batch,
        rewards=[np.array([0.0, 1.0]), np.array([0.5, 0.5])],
        advantages=[np.array([-1.0, 1.0]), np.zeros(2)],
        stats=stats,
        times=times,
        learner_version=4,
        version=5,
        restarts=1,
    )


def test_metrics_row_is_worked_out_from_the_records():
    row = metrics_row(_result())
    assert row["step"] == 2 and row["policy_version"] == 5 and row["images"] == 4
    assert row["reward_mean"] == pytest.approx(0.5) and row["reward_std"] == pytest.approx(np.sqrt(0.125))
    assert row["reward_color_mean"] == pytest.approx(0.5) and row["reward_color_retries"] == 1
    assert row["reward_color_latency_s"] == pytest.approx(0.4)
    assert row["reward_color_wire_s"] == pytest.approx(0.03) and row["reward_color_score_s"] == pytest.approx(0.1)
    assert row["cot_tokens_mean"] == 5.0
    assert row["image_codes_distinct"] == 2  # every image uses codes 3 and 4
    assert row["group_reward_std_mean"] == pytest.approx(0.25)  # groups [0, 1] (std 0.5) and [0.5, 0.5] (std 0)
    assert (row["version_lag_mean"], row["version_lag_max"]) == (0.5, 1)  # versions 4, 4, 3, 3 against 4
    assert row["kl"] == pytest.approx((0.1 * 10 + 0.4 * 30) / 40)  # token-weighted over the two levels
    assert row["images_per_s"] == 0.5 and row["rollout_cot_s"] == pytest.approx(0.4)
    assert row["rollout_worker_restarts"] == 1 and row["loss"] == 0.25
    assert row["reward_color_replicas"] == 3  # the replicas the step's rewards could go to


def test_progress_line_names_step_stages_and_version():
    r = _result()
    line = progress_line(metrics_row(r), r.times, steps=10)
    # one numbering: the metrics row of step 2 is "step 2" on the console too (steps count from 1)
    assert line.startswith("step 2/10  reward 0.5000 (std 0.3536)  loss 0.2500  kl 0.32500  cot 5 tok  0.5 img/s")
    assert "step 8.00s (rollout 2.00, reward 1.00, learner 4.00, sync 1.00)  version 5" in line


def test_metrics_row_takes_each_stages_largest_rollout_peak():
    r = _result()
    for i, s in enumerate(r.samples):  # the groups came from two workers with different peaks
        s.memory_mib = {"cot": 100.0 + i // 2, "image": 300.0 - i // 2, "image_cuda": 50.0}
    row = metrics_row(r)
    assert (row["rollout_cot_peak_mib"], row["rollout_image_peak_mib"]) == (101.0, 300.0)
    assert row["rollout_image_peak_mib_cuda"] == 50.0 and "rollout_decode_peak_mib" not in row
