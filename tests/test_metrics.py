"""Tests for skstellar.metrics."""

import numpy as np
import pandas as pd
import pytest

from skstellar import metrics as m


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# --------------------------------------------------------------------------
# point-estimate metrics, hand-computed values
# --------------------------------------------------------------------------
T = np.array([0.0, 1.0, 2.0, 3.0])
P = np.array([0.5, 1.0, 1.0, 4.0])  # residuals: +0.5, 0, -1, +1


def test_residuals_sign_convention():
    np.testing.assert_allclose(m.residuals(T, P), [0.5, 0.0, -1.0, 1.0])


def test_bias_is_mean_residual_pred_minus_true():
    assert m.bias(T, P) == pytest.approx(0.125)
    # over-prediction gives a positive bias
    assert m.bias([0.0, 0.0], [1.0, 3.0]) == pytest.approx(2.0)


def test_rmse():
    assert m.rmse(T, P) == pytest.approx(np.sqrt((0.25 + 0 + 1 + 1) / 4))
    assert m.rmse(T, T) == 0.0


def test_mad_and_robust_std_hand_values():
    x = [1.0, 2.0, 3.0, 4.0, 100.0]
    # median 3, |x - 3| = 2,1,0,1,97 -> median 1
    assert m.mad(x) == pytest.approx(1.0)
    assert m.robust_std(x) == pytest.approx(1.4826)


def test_robust_std_matches_sigma_for_normal(rng):
    x = rng.normal(3.0, 2.5, size=20000)
    assert m.robust_std(x) == pytest.approx(2.5, rel=0.03)
    assert m.mad(x) == pytest.approx(2.5 * 0.6745, rel=0.03)


def test_robust_std_resists_outliers(rng):
    x = rng.normal(0.0, 1.0, size=5000)
    x[:250] = 1e3  # 5 % wild outliers
    assert np.std(x) > 100
    assert m.robust_std(x) < 1.2


def test_correlations():
    x = np.arange(10.0)
    assert m.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert m.pearson(x, -x) == pytest.approx(-1.0)
    # monotone but non-linear: Spearman is exactly 1, Pearson is not
    assert m.spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert m.pearson(x, np.exp(x)) < 0.9
    assert np.isnan(m.pearson(x, np.ones(10)))


def test_accepts_series_and_lists():
    s_true = pd.Series(T, index=[10, 11, 12, 13])
    s_pred = pd.Series(P)
    assert m.bias(s_true, s_pred) == pytest.approx(0.125)
    assert m.rmse(list(T), list(P)) == pytest.approx(m.rmse(T, P))


def test_residual_summary_1d():
    out = m.residual_summary(T, P)
    assert set(out) == {
        "n", "mean", "median", "std", "robust_std", "mad", "rmse", "pearson", "spearman"
    }
    r = P - T
    assert out["n"] == 4
    assert out["mean"] == pytest.approx(0.125)
    assert out["median"] == pytest.approx(0.25)
    assert out["std"] == pytest.approx(np.std(r, ddof=1))
    # residuals 0.5,0,-1,1 ; median 0.25 ; |dev| .25,.25,1.25,.75 -> 0.5
    assert out["mad"] == pytest.approx(0.5)
    assert out["robust_std"] == pytest.approx(1.4826 * 0.5)
    assert out["rmse"] == pytest.approx(m.rmse(T, P))
    assert out["pearson"] == pytest.approx(np.corrcoef(T, P)[0, 1])


def test_residual_summary_2d_per_target():
    t = np.c_[T, 10 * T]
    p = np.c_[P, 10 * T + 1.0]
    df = m.residual_summary(t, p, target_names=["feh", "teff"])
    assert isinstance(df, pd.DataFrame)
    assert list(df.index) == ["feh", "teff"]
    assert df.loc["feh", "mean"] == pytest.approx(0.125)
    assert df.loc["teff", "mean"] == pytest.approx(1.0)
    assert df.loc["teff", "std"] == pytest.approx(0.0)
    # DataFrame input supplies the names
    df2 = m.residual_summary(pd.DataFrame(t, columns=["a", "b"]), p)
    assert list(df2.index) == ["a", "b"]


def test_residual_summary_2d_omit_is_per_target():
    t = np.c_[T, T]
    p = np.c_[P, P]
    t[0, 1] = np.nan
    with pytest.raises(ValueError, match="1 in y_true"):
        m.residual_summary(t, p)
    df = m.residual_summary(t, p, nan_policy="omit")
    assert df["n"].tolist() == [4, 3]
    assert df.loc[1, "mean"] == pytest.approx(np.mean((P - T)[1:]))


# --------------------------------------------------------------------------
# validation and NaN policy
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "func", [m.bias, m.residuals, m.rmse, m.pearson, m.spearman, m.residual_summary]
)
def test_pair_validation(func):
    with pytest.raises(ValueError, match="empty"):
        func([], [])
    with pytest.raises(ValueError, match="different lengths"):
        func([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="2 in y_pred"):
        func([1.0, 2.0, 3.0], [np.nan, 2.0, np.nan])
    with pytest.raises(ValueError, match="nan_policy"):
        func([1.0, 2.0], [1.0, 2.0], nan_policy="ignore")


def test_single_array_validation():
    with pytest.raises(ValueError, match="empty"):
        m.robust_std([])
    with pytest.raises(ValueError, match="1 in x"):
        m.mad([1.0, np.nan, 3.0])
    assert m.mad([1.0, np.nan, 3.0, 10.0], nan_policy="omit") == pytest.approx(2.0)
    with pytest.raises(ValueError, match="1-D"):
        m.robust_std(np.ones((3, 2)))


def test_nan_policy_omit_drops_pairs():
    t = np.array([0.0, 1.0, np.nan, 3.0, 4.0])
    p = np.array([1.0, 2.0, 2.0, np.nan, 5.0])
    assert m.bias(t, p, nan_policy="omit") == pytest.approx(1.0)
    assert m.residuals(t, p, nan_policy="omit").shape == (3,)
    assert m.residual_summary(t, p, nan_policy="omit")["n"] == 3
    with pytest.raises(ValueError, match="no rows left"):
        m.bias([np.nan], [1.0], nan_policy="omit")


def test_nan_in_series_with_missing_values():
    s = pd.Series([1.0, None, 3.0], dtype="Float64")
    with pytest.raises(ValueError, match="1 in y_true"):
        m.bias(s, [1.0, 2.0, 3.0])
    assert m.bias(s, [2.0, 2.0, 4.0], nan_policy="omit") == pytest.approx(1.0)


def test_residuals_rejects_2d():
    with pytest.raises(ValueError, match="1-D"):
        m.residuals(np.ones((3, 2)), np.ones((3, 2)))


# --------------------------------------------------------------------------
# binned statistics
# --------------------------------------------------------------------------
def test_binned_statistics_counts_and_values(rng):
    n = 3000
    x = rng.uniform(0, 10, n)
    t = rng.normal(size=n)
    # scatter grows with x: sigma = 0.1 * (1 + x)
    p = t + rng.normal(size=n) * 0.1 * (1 + x)
    df = m.binned_statistics(x, t, p, bins=5)
    assert list(df.columns) == [
        "bin_lo", "bin_hi", "bin_center", "n", "mean", "median", "std", "robust_std"
    ]
    assert len(df) == 5
    assert df["n"].sum() == n  # every point in exactly one bin (max included)
    assert df["bin_lo"].iloc[0] == pytest.approx(x.min())
    assert df["bin_hi"].iloc[-1] == pytest.approx(x.max())
    np.testing.assert_allclose(df["bin_center"], (df["bin_lo"] + df["bin_hi"]) / 2)
    assert np.all(np.diff(df["std"]) > 0)
    expected = 0.1 * (1 + df["bin_center"])
    np.testing.assert_allclose(df["std"], expected, rtol=0.15)
    # each bin matches a direct computation
    sel = (x >= df["bin_lo"][2]) & (x < df["bin_hi"][2])
    assert df["n"][2] == sel.sum()
    assert df["median"][2] == pytest.approx(np.median((p - t)[sel]))
    assert df["robust_std"][2] == pytest.approx(m.robust_std((p - t)[sel]))


def test_binned_statistics_explicit_edges_and_empty_bins():
    x = np.array([0.5, 0.6, 2.5, 3.0, 99.0, -1.0])
    t = np.zeros(6)
    p = np.array([1.0, 3.0, 5.0, 7.0, 0.0, 0.0])
    df = m.binned_statistics(x, t, p, bins=[0, 1, 2, 3], statistics=("n", "mean", "rmse"))
    assert df["n"].tolist() == [2, 0, 2]  # 99 and -1 are outside; 3.0 in last bin
    assert df["mean"].iloc[0] == pytest.approx(2.0)
    assert np.isnan(df["mean"].iloc[1])
    assert np.isnan(df["rmse"].iloc[1])
    assert df["mean"].iloc[2] == pytest.approx(6.0)
    assert df["rmse"].iloc[2] == pytest.approx(np.sqrt((25 + 49) / 2))


def test_binned_statistics_with_y_std(rng):
    n = 4000
    x = rng.uniform(0, 1, n)
    t = rng.normal(size=n)
    sigma = np.where(x < 0.5, 0.1, 0.3)
    # uncertainties honest in the low-x half, underestimated x2 in the high-x half
    true_scatter = np.where(x < 0.5, 0.1, 0.6)
    p = t + rng.normal(size=n) * true_scatter
    df = m.binned_statistics(x, t, p, bins=[0, 0.5, 1.0], y_std=sigma)
    assert {"median_sigma", "zscore_std"} <= set(df.columns)
    np.testing.assert_allclose(df["median_sigma"], [0.1, 0.3])
    assert df["zscore_std"].iloc[0] == pytest.approx(1.0, rel=0.08)
    assert df["zscore_std"].iloc[1] == pytest.approx(2.0, rel=0.08)


def test_binned_statistics_validation():
    x = np.arange(5.0)
    with pytest.raises(ValueError, match="unknown statistic"):
        m.binned_statistics(x, x, x, 2, statistics=("n", "kurtosis"))
    with pytest.raises(ValueError, match="increasing"):
        m.binned_statistics(x, x, x, bins=[0, 2, 1])
    with pytest.raises(ValueError, match="different lengths"):
        m.binned_statistics(x[:4], x, x, 2)
    with pytest.raises(ValueError, match="1 in x"):
        m.binned_statistics([0.0, np.nan, 1.0], [0, 0, 0], [0, 0, 0], 2)
    with pytest.raises(ValueError, match="positive"):
        m.binned_statistics(x, x, x, 2, y_std=np.zeros(5))
    df = m.binned_statistics([0.0, np.nan, 1.0], [0, 0, 0], [1, 1, 1], 2, nan_policy="omit")
    assert df["n"].sum() == 2


def test_binned_statistics_constant_x():
    df = m.binned_statistics(np.ones(4), np.zeros(4), np.ones(4), bins=3)
    assert df["n"].sum() == 4


# --------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------
def test_zscore_definition_and_errors():
    z = m.zscore([1.0, 2.0, 3.0], [0.0, 2.0, 5.0], [0.5, 1.0, 2.0])
    np.testing.assert_allclose(z, [2.0, 0.0, -1.0])
    np.testing.assert_allclose(m.zscore([1.0, 2.0], [0.0, 0.0], 2.0), [0.5, 1.0])
    with pytest.raises(ValueError, match="positive"):
        m.zscore([1.0, 2.0], [1.0, 2.0], [0.1, 0.0])
    with pytest.raises(ValueError, match="positive"):
        m.zscore([1.0, 2.0], [1.0, 2.0], [-0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        m.zscore([1.0, 2.0], [1.0, 2.0], [np.inf, 0.2])
    with pytest.raises(ValueError, match="1 in y_std"):
        m.zscore([1.0, 2.0], [1.0, 2.0], [np.nan, 0.2])
    np.testing.assert_allclose(
        m.zscore([1.0, 2.0], [1.0, 1.0], [np.nan, 0.5], nan_policy="omit"), [2.0]
    )
    with pytest.raises(ValueError, match="different lengths"):
        m.zscore([1.0, 2.0], [1.0, 2.0], [0.1, 0.2, 0.3])


def _calib_sample(rng, n=20000, scale=1.0):
    t = rng.normal(size=n)
    sigma = rng.uniform(0.05, 0.3, n)
    p = t + scale * sigma * rng.normal(size=n)
    return t, p, sigma


def test_calibration_summary_calibrated(rng):
    t, p, sigma = _calib_sample(rng)
    out = m.calibration_summary(t, p, sigma)
    assert out["n"] == t.size
    assert out["zscore_std"] == pytest.approx(1.0, abs=0.03)
    assert out["zscore_robust_std"] == pytest.approx(1.0, abs=0.04)
    assert abs(out["zscore_mean"]) < 0.03
    assert out["frac_within_1sigma"] == pytest.approx(0.683, abs=0.015)
    assert out["frac_within_2sigma"] == pytest.approx(0.954, abs=0.01)
    assert out["frac_within_3sigma"] == pytest.approx(0.997, abs=0.005)
    assert out["expected_within_1sigma"] == pytest.approx(0.6827, abs=1e-4)
    assert out["expected_within_2sigma"] == pytest.approx(0.9545, abs=1e-4)
    assert out["expected_within_3sigma"] == pytest.approx(0.9973, abs=1e-4)
    assert out["ks_pvalue"] > 0.001


def test_calibration_summary_underestimated_sigma(rng):
    t, p, sigma = _calib_sample(rng, scale=2.0)
    out = m.calibration_summary(t, p, sigma)
    assert out["zscore_std"] == pytest.approx(2.0, rel=0.03)
    assert out["frac_within_1sigma"] == pytest.approx(0.383, abs=0.02)
    assert out["ks_pvalue"] < 1e-6


def test_calibration_summary_sign_of_mean():
    # predictions too high -> residual positive -> z = (true - pred)/sigma negative
    t = np.zeros(5)
    p = np.full(5, 0.2)
    out = m.calibration_summary(t, p, 0.1)
    assert out["zscore_mean"] == pytest.approx(-2.0)
    assert out["frac_within_1sigma"] == 0.0
    assert out["frac_within_2sigma"] == 1.0


def test_calibration_summary_2d(rng):
    t1, p1, s1 = _calib_sample(rng, n=5000)
    t2, p2, s2 = _calib_sample(rng, n=5000, scale=2.0)
    t = np.c_[t1, t2]
    p = np.c_[p1, p2]
    s = np.c_[s1, s2]
    df = m.calibration_summary(t, p, s, target_names=["feh", "teff"])
    assert isinstance(df, pd.DataFrame)
    assert list(df.index) == ["feh", "teff"]
    assert "ks_pvalue" in df.columns
    assert df.loc["feh", "zscore_std"] == pytest.approx(1.0, rel=0.05)
    assert df.loc["teff", "zscore_std"] == pytest.approx(2.0, rel=0.05)
    df0 = m.calibration_summary(t, p, s)
    assert list(df0.index) == [0, 1]
    with pytest.raises(ValueError, match="target_names"):
        m.calibration_summary(t, p, s, target_names=["only_one"])


def test_calibration_summary_2d_nan_and_bad_std():
    t = np.zeros((4, 2))
    p = np.zeros((4, 2))
    s = np.ones((4, 2))
    s[1, 0] = np.nan
    with pytest.raises(ValueError, match="1 in y_std"):
        m.calibration_summary(t, p, s)
    df = m.calibration_summary(t, p, s, nan_policy="omit")
    assert df["n"].tolist() == [3, 4]
    s[1, 0] = -1.0
    with pytest.raises(ValueError, match="positive"):
        m.calibration_summary(t, p, s)


def test_calibration_summary_validation():
    with pytest.raises(ValueError, match="empty"):
        m.calibration_summary([], [], [])
    with pytest.raises(ValueError, match="different lengths"):
        m.calibration_summary([0.0, 1.0], [0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        m.calibration_summary([0.0, 1.0], [0.0, 1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="2 in y_pred"):
        m.calibration_summary([0.0, 1.0, 2.0], [np.nan, 1.0, np.nan], 1.0)
    out = m.calibration_summary([0.0, 1.0, 2.0], [np.nan, 1.0, 2.0], 1.0, nan_policy="omit")
    assert out["n"] == 2
