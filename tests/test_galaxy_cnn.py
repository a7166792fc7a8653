"""SpectralCNNRegressor / SpectralCNNClassifier: the paper's network, composition, persistence."""

import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn

from skstellar import SpectralCNNClassifier, SpectralCNNRegressor

SMALL = dict(channels=(4, 8), max_epochs=6, batch_size=32, lr=3e-3, random_state=0)


def _toy_spectra(n=240, n_pix=180, seed=0):
    """Continuum + one emission line whose strength is the label."""
    rng = np.random.RandomState(seed)
    x = np.linspace(0, 1, n_pix)
    y = rng.uniform(8.0, 9.0, n)
    centre = rng.uniform(0.3, 0.7, n)  # redshift-like shift of the line
    line = (y - 8.0)[:, None] * np.exp(-0.5 * ((x[None] - centre[:, None]) / 0.01) ** 2)
    flux = 0.5 + 0.2 * x[None] + line + rng.normal(0, 0.02, (n, n_pix))
    return flux.astype(np.float32), y


def test_default_network_is_the_papers():
    m = SpectralCNNRegressor()._build_module(4201, 1)
    convs = [layer for layer in m if isinstance(layer, nn.Conv1d)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3,) and c.stride == (1,) and c.padding == (0,) for c in convs)
    pools = [layer for layer in m if isinstance(layer, nn.MaxPool1d)]
    assert len(pools) == 4 and all(p.kernel_size == 3 and p.stride == 3 for p in pools)
    assert sum(isinstance(layer, nn.ReLU) for layer in m) == 8
    lin = [layer for layer in m if isinstance(layer, nn.Linear)]
    assert len(lin) == 1 and lin[0].in_features == 6272  # 128 x 49, the paper's flatten size
    reg = SpectralCNNRegressor()
    assert (reg.lr, reg.batch_size, reg.max_epochs, reg.lr_factor, reg.lr_patience) == (
        1e-3, 128, 100, 0.1, 10)
    # any input length works
    assert SpectralCNNRegressor()._build_module(3000, 1)[-1].in_features == 128 * 35


def test_too_short_spectra_raise():
    with pytest.raises(ValueError, match="too short"):
        SpectralCNNRegressor().fit(np.random.rand(20, 50), np.random.rand(20))


def test_regressor_learns_line_strength_and_mc_dropout():
    X, y = _toy_spectra()
    reg = SpectralCNNRegressor(**{**SMALL, "max_epochs": 25}).fit(X[:200], y[:200])
    pred = reg.predict(X[200:])
    assert np.std(pred - y[200:]) < 0.6 * np.std(y[200:])
    # the paper's network has no dropout: the calibrated sigma is the held-out floor b
    _, s = reg.predict(X[:3], return_std=True)
    np.testing.assert_allclose(s, reg.calibrator_.floor_[0])
    resid = y[200:] - pred
    assert 0.5 < np.std(resid / s[0]) < 2.0
    with pytest.raises(ValueError, match="return_std"):
        reg.set_params(uncertainty="mc").predict(X[:3], return_std=True)
    mc = SpectralCNNRegressor(**{**SMALL, "dropout": 0.3, "n_mc_passes": 20}).fit(X, y)
    mean, std = mc.predict(X[:10], return_std=True)
    assert mean.shape == std.shape == (10,) and np.all(std > 0)
    u = mc.predict_uncertainty(X[:10])
    np.testing.assert_allclose(u.total_std**2, u.model_std**2 + u.intrinsic_std**2)
    mc.set_params(uncertainty="mc")
    _, raw = mc.predict(X[:10], return_std=True)
    np.testing.assert_allclose(raw, u.raw_std)


def test_classifier_string_labels_and_proba():
    X, y = _toy_spectra(seed=1)
    labels = np.where(y > 8.5, "star-forming", "other")
    clf = SpectralCNNClassifier(**{**SMALL, "max_epochs": 40, "lr": 1e-2})
    clf.fit(X[:200], labels[:200])
    assert list(clf.classes_) == ["other", "star-forming"]
    proba = clf.predict_proba(X[200:])
    assert proba.shape == (40, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    assert set(clf.predict(X[200:])) <= set(clf.classes_)
    assert clf.score(X[200:], labels[200:]) > 0.7
    with pytest.raises(ValueError, match="one class"):
        SpectralCNNClassifier(**SMALL).fit(X[:20], ["a"] * 20)


def test_pipeline_gridsearch_cross_val():
    X, y = _toy_spectra(n=160)
    per_spectrum_minmax = FunctionTransformer(
        lambda a: (a - a.min(1, keepdims=True)) / np.ptp(a, 1, keepdims=True))
    pipe = Pipeline([("scale", per_spectrum_minmax),
                     ("cnn", SpectralCNNRegressor(**{**SMALL, "max_epochs": 2}))])
    grid = GridSearchCV(pipe, {"cnn__channels": [(4,), (4, 8)]}, cv=2).fit(X, y)
    assert grid.best_params_["cnn__channels"] in [(4,), (4, 8)]
    scores = cross_val_score(pipe, X, y, cv=2)
    assert np.all(np.isfinite(scores))


def test_joblib_round_trip_in_fresh_process(tmp_path):
    X, y = _toy_spectra(n=120)
    reg = SpectralCNNRegressor(**{**SMALL, "dropout": 0.2, "n_mc_passes": 10}).fit(X, y)
    joblib.dump(reg, tmp_path / "m.joblib")
    np.save(tmp_path / "X.npy", X[:20])
    mean, std = reg.predict(X[:20], return_std=True)
    code = textwrap.dedent(f"""
        import joblib, numpy as np
        m = joblib.load({str(tmp_path / "m.joblib")!r})
        a, b = m.predict(np.load({str(tmp_path / "X.npy")!r}), return_std=True)
        np.save({str(tmp_path / "a.npy")!r}, a); np.save({str(tmp_path / "b.npy")!r}, b)
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), mean)
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), std)


def test_nan_spectra_rejected():
    X, y = _toy_spectra(n=40)
    X[3, 10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SpectralCNNRegressor(**SMALL).fit(X, y)


def test_classifier_joblib_round_trip_in_fresh_process(tmp_path):
    X, y = _toy_spectra(n=120, seed=2)
    labels = np.where(y > 8.5, "star-forming", "other")
    clf = SpectralCNNClassifier(**SMALL).fit(X, labels)
    joblib.dump(clf, tmp_path / "c.joblib")
    np.save(tmp_path / "X.npy", X[:20])
    code = textwrap.dedent(f"""
        import joblib, numpy as np
        m = joblib.load({str(tmp_path / "c.joblib")!r})
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "p.npy")!r}, m.predict_proba(X))
        np.save({str(tmp_path / "l.npy")!r}, m.predict(X))
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), clf.predict_proba(X[:20]))
    np.testing.assert_array_equal(np.load(tmp_path / "l.npy"), clf.predict(X[:20]))
