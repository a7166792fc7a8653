"""Tests of the random draws shared by the simulators (skstellar.datasets.simulation)."""

import numpy as np
from scipy import stats

from skstellar.datasets.simulation import (
    flag_bad_pixels,
    scattered_magnitude_error,
    truncated_normal,
)


def test_truncated_normal_stays_in_bounds_and_matches_the_truncated_law():
    rng = np.random.RandomState(0)
    mean = np.full(20000, 0.2)
    x = truncated_normal(rng, mean, 0.5, -0.3, 0.4)
    assert x.shape == mean.shape
    assert x.min() >= -0.3 and x.max() <= 0.4
    law = stats.truncnorm((-0.3 - 0.2) / 0.5, (0.4 - 0.2) / 0.5, loc=0.2, scale=0.5)
    assert stats.kstest(x, law.cdf).pvalue > 1e-3


def test_truncated_normal_u_clip_only_acts_in_the_far_tails():
    mean = np.linspace(-1.0, 1.0, 1000)
    plain = truncated_normal(np.random.default_rng(1), mean, 0.3, -1.5, 1.5)
    clipped = truncated_normal(np.random.default_rng(1), mean, 0.3, -1.5, 1.5,
                               u_clip=(1e-12, 1 - 1e-12))
    np.testing.assert_array_equal(plain, clipped)
    # an interval 40 sigma out: the deviate is clipped below 1, the draw lands on ``low``
    far = truncated_normal(np.random.default_rng(1), np.zeros(10), 1.0, 40.0, 41.0,
                           u_clip=(1e-12, 1 - 1e-12))
    np.testing.assert_array_equal(far, 40.0)


def test_scattered_magnitude_error_follows_the_law_with_a_ten_percent_spread():
    rng = np.random.RandomState(2)
    mag = np.full(5000, 17.0)
    sigma = scattered_magnitude_error((0.001, 0.004, 17.0), mag, rng)
    ratio = np.log(sigma / 0.005)
    assert abs(ratio.mean()) < 0.01
    assert abs(ratio.std() - 0.1) < 0.01


def test_flag_bad_pixels_masks_and_zeroes_the_same_pixels():
    rng = np.random.default_rng(3)
    flux = np.ones((50, 400))
    ivar = np.ones((50, 400))
    mask = np.zeros((50, 400), dtype=bool)
    flag_bad_pixels(rng, 0.01, flux, ivar, mask)
    assert mask.any()
    assert (flux[mask] == 0).all() and (ivar[mask] == 0).all()
    assert (flux[~mask] == 1).all() and (ivar[~mask] == 1).all()
    assert 0.005 < mask.mean() < 0.015
