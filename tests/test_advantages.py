"""Group advantages against values worked by hand."""

import math

import numpy as np
import pytest

from learner.advantages import batch_advantages, group_advantages
from learner.config import AdvantageConfig


def test_zscore_uses_unbiased_std_and_eps():
    # rewards 1, 2, 3, 4: mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5; unbiased var 5 / 3
    std = math.sqrt(5 / 3)
    expected = [(-1.5) / (std + 1e-4), (-0.5) / (std + 1e-4), 0.5 / (std + 1e-4), 1.5 / (std + 1e-4)]
    got = group_advantages([1, 2, 3, 4], AdvantageConfig(mode="zscore", eps=1e-4))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # a large eps visibly shrinks them (eps is added to the std, not the variance)
    got = group_advantages([1, 2, 3, 4], AdvantageConfig(mode="zscore", eps=1.0))
    np.testing.assert_allclose(got, [-1.5 / (std + 1), -0.5 / (std + 1), 0.5 / (std + 1), 1.5 / (std + 1)])


def test_center_and_leave_one_out():
    np.testing.assert_allclose(group_advantages([1, 2, 3, 4], AdvantageConfig(mode="center")), [-1.5, -0.5, 0.5, 1.5])
    # r_i minus the mean of the others: 1 - 3, 2 - 8/3, 3 - 7/3, 4 - 2
    np.testing.assert_allclose(
        group_advantages([1, 2, 3, 4], AdvantageConfig(mode="leave_one_out")), [-2, -2 / 3, 2 / 3, 2], rtol=1e-12
    )


@pytest.mark.parametrize("mode", ["zscore", "center", "leave_one_out"])
@pytest.mark.parametrize("value", [0.1, 0.3, 7.0, 0.0])
def test_all_equal_group_is_exactly_zero(mode, value):
    # 0.1 * 3 / 3 != 0.1 in floating point: without the explicit check zscore gives about 1e-13, not 0
    got = group_advantages([value] * 3, AdvantageConfig(mode=mode))
    assert got.tolist() == [0.0, 0.0, 0.0]


def test_single_sample_group_and_bad_rewards():
    assert group_advantages([0.7], AdvantageConfig()).tolist() == [0.0]
    with pytest.raises(ValueError, match="non-finite reward"):
        group_advantages([0.1, float("nan")], AdvantageConfig())


def test_batch_of_groups_of_different_sizes():
    out = batch_advantages([[0.0, 1.0], [5.0, 5.0, 5.0]], AdvantageConfig(mode="zscore", eps=1e-4))
    s = math.sqrt(0.5)  # unbiased std of (0, 1)
    np.testing.assert_allclose(out[0], [-0.5 / (s + 1e-4), 0.5 / (s + 1e-4)])
    assert out[1].tolist() == [0.0, 0.0, 0.0]
