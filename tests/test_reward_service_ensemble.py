"""The reward ensemble against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rewards.config import ColorScorerConfig, RewardsConfig, ScorerConfig
from rewards.ensemble import combine, combine_for, standardize

A = [1.0, 2.0, 3.0, 4.0]
B = [0.5, 0.5, 1.0, 0.0]
S5, S2 = math.sqrt(5), math.sqrt(2)


def test_sum_is_t2i_r1s():
    np.testing.assert_allclose(combine({"a": A, "b": B}, "sum"), [1.5, 2.5, 4.0, 4.0])


def test_mean():
    np.testing.assert_allclose(combine({"a": A, "b": B}, "mean"), [0.75, 1.25, 2.0, 2.0])


def test_weighted():
    np.testing.assert_allclose(combine({"a": A, "b": B}, "weighted", {"a": 2.0, "b": -1.0}), [1.5, 3.5, 5.0, 8.0])


def test_standardize_by_hand():
    # A: mean 2.5, population std sqrt(1.25) = sqrt(5)/2 -> (-3, -1, 1, 3) / sqrt(5)
    np.testing.assert_allclose(standardize(np.array(A)), [-3 / S5, -1 / S5, 1 / S5, 3 / S5])
    # B: mean 0.5, deviations (0, 0, .5, -.5), std sqrt(0.125) -> (0, 0, sqrt 2, -sqrt 2)
    np.testing.assert_allclose(standardize(np.array(B)), [0, 0, S2, -S2])
    np.testing.assert_array_equal(standardize(np.array([0.3, 0.3, 0.3])), [0.0, 0.0, 0.0])


def test_standardized_sum_and_weighted():
    np.testing.assert_allclose(
        combine({"a": A, "b": B}, "sum", standardize_each=True), [-3 / S5, -1 / S5, 1 / S5 + S2, 3 / S5 - S2]
    )
    np.testing.assert_allclose(
        combine({"a": A, "b": B}, "weighted", {"a": 0.5, "b": 2.0}, standardize_each=True),
        [-1.5 / S5, -0.5 / S5, 0.5 / S5 + 2 * S2, 1.5 / S5 - 2 * S2],
    )


def test_config_supplies_mode_weights_and_standardisation():
    cfg = RewardsConfig(
        color=ColorScorerConfig(enabled=True, weight=3.0),
        objects=ScorerConfig(enabled=True, weight=0.5),
        ensemble="weighted",
    )
    np.testing.assert_allclose(combine_for({"color": A, "objects": B}, cfg), [3.25, 6.25, 9.5, 12.0])
    cfg.ensemble, cfg.standardize = "mean", True
    np.testing.assert_allclose(
        combine_for({"color": A, "objects": B}, cfg), [-1.5 / S5, -0.5 / S5, (1 / S5 + S2) / 2, (3 / S5 - S2) / 2]
    )


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(per_scorer={"a": A, "b": B[:3]}), "one score per sample"),
        (dict(per_scorer={"a": A, "b": [1.0, float("nan"), 0.0, 0.0]}), "non-finite scores from b"),
        (dict(per_scorer={}), "no scorer results"),
        (dict(per_scorer={"a": A}, mode="median"), "unknown ensemble mode 'median'"),
        (dict(per_scorer={"a": A, "b": B}, mode="weighted", weights={"a": 1.0}), r"missing \['b'\]"),
    ],
)
def test_refuses_what_it_cannot_combine(kw, message):
    with pytest.raises(ValueError, match=message):
        combine(**kw)
