"""The shared calibration layer: VarianceCalibrator, conformal intervals, CalibratedRegressor."""

import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import BayesianRidge
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skstellar import CalibratedRegressor, metrics
from skstellar.calibration import (
    CalibrationWarning,
    ConformalCalibrator,
    VarianceCalibrator,
    check_std,
    gaussian_interval,
)
from skstellar.nn.uncertainty import propagate_input_errors


def _heteroscedastic(n, a=4.0, b=0.3, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.05, 0.5, n)
    r = rng.normal(0, np.sqrt(a * s**2 + b**2))
    return r, s


class ScaledStd(RegressorMixin, BaseEstimator):
    """BayesianRidge whose std is multiplied by ``factor`` (a miscalibrated model)."""

    def __init__(self, factor=0.2):
        self.factor = factor

    def fit(self, X, y):
        self.model_ = BayesianRidge().fit(X, y)
        self.n_features_in_ = self.model_.n_features_in_
        return self

    def predict(self, X, return_std=False):
        m, s = self.model_.predict(X, return_std=True)
        return (m, self.factor * s) if return_std else m


def _linear(n=600, seed=0, noise=0.5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(0, noise, n)
    return X, y


# ------------------------------------------------------------ VarianceCalibrator
def test_variance_calibrator_recovers_scale_and_floor():
    r, s = _heteroscedastic(20000, a=4.0, b=0.3)
    cal = VarianceCalibrator().fit(r, np.zeros_like(r), s)
    assert cal.scale_[0] == pytest.approx(4.0, rel=0.1)
    assert cal.floor_[0] == pytest.approx(0.3, rel=0.1)
    z = r / cal.std(s)
    assert np.std(z) == pytest.approx(1.0, abs=0.03)
    # the raw std was badly calibrated
    assert np.std(r / s) > 2.0


def test_variance_calibrator_input_and_label_errors_are_not_rescaled():
    rng = np.random.default_rng(1)
    n = 20000
    sm, si, sy = rng.uniform(0.05, 0.3, n), rng.uniform(0.0, 0.4, n), rng.uniform(0, 0.2, n)
    true_var = 0.25 * sm**2 + si**2 + 0.1**2
    resid = rng.normal(0, np.sqrt(true_var + sy**2))
    cal = VarianceCalibrator().fit(resid, np.zeros(n), sm, si, label_std=sy)
    assert cal.scale_[0] == pytest.approx(0.25, rel=0.2)
    assert cal.floor_[0] == pytest.approx(0.1, rel=0.15)
    parts = cal.parts(sm, si)
    np.testing.assert_allclose(parts["input_std"], si)
    np.testing.assert_allclose(parts["total_std"] ** 2, parts["model_std"] ** 2 + si**2
                               + parts["intrinsic_std"] ** 2)


def test_variance_calibrator_multi_output_with_missing_labels_and_zero_model_std():
    r1, s1 = _heteroscedastic(3000, a=1.0, b=0.2, seed=2)
    r2 = np.random.default_rng(3).normal(0, 0.7, 3000)
    y = np.column_stack([r1, r2])
    y[::3, 1] = np.nan  # missing labels are skipped
    sm = np.column_stack([s1, np.zeros(3000)])  # no model spread for target 1: floor only
    cal = VarianceCalibrator().fit(y, np.zeros_like(y), sm)
    assert cal.n_samples_.tolist() == [3000, 2000]
    assert cal.scale_[1] == 1.0
    assert cal.floor_[1] == pytest.approx(0.7, rel=0.06)
    assert cal.std(sm).shape == (3000, 2)


def test_bad_sigma_inputs_raise():
    r, s = _heteroscedastic(200)
    cal = VarianceCalibrator()
    with pytest.raises(ValueError, match="negative"):
        cal.fit(r, 0 * r, -s)
    bad = s.copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match="NaN/inf.*row 7"):
        cal.fit(r, 0 * r, bad)
    with pytest.raises(ValueError, match="shape"):
        cal.fit(r, 0 * r, s[:100])
    with pytest.raises(ValueError, match="input_std.*negative"):
        cal.fit(r, 0 * r, s, -s)
    cal.fit(r, 0 * r, s)
    with pytest.raises(ValueError, match="negative"):
        cal.std(-s)
    with pytest.raises(ValueError, match="target column"):
        cal.std(np.ones((5, 2)))
    with pytest.raises(ValueError, match="shape"):
        check_std(np.ones(3), (4,))


def test_few_calibration_rows_warn_and_too_few_refuse():
    r, s = _heteroscedastic(40)
    with pytest.warns(CalibrationWarning, match="40 rows"):
        VarianceCalibrator().fit(r, 0 * r, s)
    with pytest.warns(CalibrationWarning):
        two = VarianceCalibrator().fit(r[:2], 0 * r[:2], s[:2])
    assert two.scale_[0] == 1.0  # two rows: floor only
    nan = np.full(5, np.nan)
    with pytest.raises(ValueError, match="labelled rows"):
        VarianceCalibrator().fit(nan, 0 * r[:5], s[:5])
    with pytest.warns(CalibrationWarning):
        ConformalCalibrator().fit(r, 0 * r, s)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r, s = _heteroscedastic(60)
        VarianceCalibrator().fit(r, 0 * r, s)


# ---------------------------------------------------------------- conformal
def test_split_conformal_covers_heavy_tailed_errors():
    rng = np.random.default_rng(4)
    s = rng.uniform(0.1, 1.0, 4000)
    r = s * rng.standard_t(3, 4000)  # heavy tails: Gaussian intervals would miscover
    cal = ConformalCalibrator().fit(r[:2000], np.zeros(2000), s[:2000])
    for alpha in (0.32, 0.1, 0.05):
        lo, hi = cal.interval(np.zeros(2000), s[2000:], alpha)
        cover = np.mean((r[2000:] >= lo) & (r[2000:] <= hi))
        assert cover == pytest.approx(1 - alpha, abs=0.03)
    # too few rows for the requested coverage: an infinite interval, as the theory says
    small = ConformalCalibrator(warn_below=0).fit(r[:9], np.zeros(9), s[:9])
    assert np.isinf(small.quantile(0.05)).all()
    with pytest.raises(ValueError, match="alpha"):
        cal.quantile(1.5)


def test_gaussian_interval_1sigma():
    lo, hi = gaussian_interval(np.zeros(3), np.ones(3))
    np.testing.assert_allclose(hi, 1.0, rtol=1e-6)
    np.testing.assert_allclose(lo, -1.0, rtol=1e-6)


# ----------------------------------------------------------- CalibratedRegressor
@pytest.mark.parametrize("method", ["scaling", "conformal"])
@pytest.mark.parametrize("cv", [5, 0.3])
def test_calibrated_regressor_fixes_a_miscalibrated_model(method, cv):
    X, y = _linear(1600, seed=5)
    raw = ScaledStd(0.2).fit(X[:800], y[:800])
    m, s = raw.predict(X[800:], return_std=True)
    assert metrics.calibration_summary(y[800:], m, s)["zscore_std"] > 3
    reg = CalibratedRegressor(estimator=ScaledStd(0.2), method=method, cv=cv, random_state=0)
    reg.fit(X[:800], y[:800])
    m, s = reg.predict(X[800:], return_std=True)
    summ = metrics.calibration_summary(y[800:], m, s)
    assert 0.85 < summ["zscore_std"] < 1.15
    assert 0.62 < summ["frac_within_1sigma"] < 0.74
    lo, hi = reg.predict_interval(X[800:], alpha=0.05)
    # 800 test rows: binomial sd ~0.008 around 0.95, plus the calibration set's own noise
    assert 0.90 < np.mean((y[800:] >= lo) & (y[800:] <= hi)) < 0.99
    assert np.all(hi >= lo)
    if method == "scaling":
        u = reg.predict_uncertainty(X[800:])
        np.testing.assert_allclose(u.total_std, s)
        assert np.all(u.intrinsic_std >= 0)
    else:
        with pytest.raises(ValueError, match="scaling"):
            reg.predict_uncertainty(X[800:])


def test_calibrated_regressor_in_pipeline_gridsearch_and_cross_val():
    X, y = _linear(300, seed=6)
    pipe = make_pipeline(StandardScaler(), CalibratedRegressor(cv=3))
    pipe.fit(X, y)
    mean, std = pipe.predict(X[:5], return_std=True)
    assert mean.shape == std.shape == (5,)
    scores = cross_val_score(CalibratedRegressor(cv=3), X, y, cv=3)
    assert np.all(scores > 0.8)
    gs = GridSearchCV(CalibratedRegressor(cv=3), {"method": ["scaling", "conformal"]}, cv=3)
    gs.fit(X, y)
    assert gs.best_estimator_.predict(X[:2]).shape == (2,)


def test_calibrated_regressor_rejects_models_without_std():
    from sklearn.linear_model import Ridge

    X, y = _linear(200)
    with pytest.raises(TypeError, match="return_std"):
        CalibratedRegressor(estimator=Ridge(), cv=3).fit(X, y)
    with pytest.raises(ValueError, match="method"):
        CalibratedRegressor(method="isotonic").fit(X, y)
    with pytest.raises(ValueError, match="parameter .cv. must be"):
        CalibratedRegressor(cv=1.5).fit(X, y)


def test_calibrated_regressor_survives_joblib_in_fresh_process(tmp_path):
    X, y = _linear(300, seed=7)
    reg = CalibratedRegressor(method="conformal", cv=4).fit(X, y)
    path = tmp_path / "model.joblib"
    joblib.dump(reg, path)
    np.save(tmp_path / "X.npy", X[:20])
    lo, hi = reg.predict_interval(X[:20], alpha=0.1)
    np.save(tmp_path / "ref.npy", np.stack([lo, hi]))
    code = (
        "import joblib, numpy as np, sys\n"
        f"m = joblib.load({str(path)!r}); X = np.load({str(tmp_path / 'X.npy')!r})\n"
        "lo, hi = m.predict_interval(X, alpha=0.1)\n"
        f"ref = np.load({str(tmp_path / 'ref.npy')!r})\n"
        "sys.exit(0 if np.allclose(np.stack([lo, hi]), ref) else 1)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------- input-error propagation
def test_propagate_input_errors_matches_dense_covariance():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Dropout(0.3),
                              torch.nn.Linear(8, 2))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3)).astype(np.float32)
    common = rng.uniform(0.01, 0.1, 6)
    err = np.sqrt(rng.uniform(0.0, 0.2, (6, 3)) ** 2 + common[:, None] ** 2)
    got = propagate_input_errors(net, X, err, common)
    net.eval()
    for i in range(6):
        J = torch.autograd.functional.jacobian(net, torch.as_tensor(X[i:i + 1]))[0, :, 0, :]
        J = J.double().numpy()
        cov = np.diag(err[i] ** 2 - common[i] ** 2) + common[i] ** 2
        np.testing.assert_allclose(got[i], np.sqrt(np.diag(J @ cov @ J.T)), rtol=1e-4)
    assert net.training is False or True  # mode restored below
    net.train()
    propagate_input_errors(net, X, err)
    assert net.training


def test_calibrated_regressor_routes_fit_params_to_a_skstellar_network():
    from skstellar import UncertainNNRegressor

    rng = np.random.default_rng(8)
    X = rng.normal(size=(300, 4))
    y = X[:, 0] - 0.5 * X[:, 1] + rng.normal(0, 0.1, 300)
    y_err = np.full(300, 0.1)
    net = UncertainNNRegressor(hidden=(16,), batch_size=64, max_iter=60, warmup_iter=0,
                               n_mc_passes=8, uncertainty="mc", random_state=0)
    reg = CalibratedRegressor(estimator=net, cv=3).fit(X, y, y_err=y_err)
    assert reg.estimator_.calibrator_ is None  # the wrapped network reports its raw spread
    assert len(reg.oof_y_) == 300
    mean, std = reg.predict(X[:10], return_std=True)
    assert mean.shape == std.shape == (10,) and np.all(std > 0)
    with pytest.raises(ValueError, match="y_err"):
        CalibratedRegressor(estimator=net, cv=3).fit(X, y, y_err=-y_err)
