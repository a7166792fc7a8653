"""UncertainNNRegressor: loss, Jacobian propagation, uncertainty parts, sklearn integration."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from skstellar.covariance import CovariantFeatures
from skstellar.nn.uncertainty import TorchCovariance, batched_jacobian, gaussian_nll
from skstellar.xp.regressor import UncertainNNRegressor

FAST = dict(hidden=(32, 32), batch_size=128, max_iter=150, warmup_iter=40, n_mc_passes=20,
            random_state=0)


def _data(n=600, d=6, noise=0.1, seed=0):
    rng = np.random.RandomState(seed)
    xt = rng.normal(size=(n, d))
    sig = np.full((n, d), noise)
    x = xt + sig * rng.normal(size=(n, d))
    y = np.stack([np.sin(xt[:, 0]) + 0.5 * xt[:, 1], 0.3 * xt[:, 2] ** 2 - xt[:, 3]], 1)
    yerr = np.full_like(y, 0.05)
    yo = y + yerr * rng.normal(size=y.shape)
    return CovariantFeatures.from_variance(x, sig**2), yo, yerr, y


# -------------------------------------------------------- shared pieces
def test_batched_jacobian_matches_autograd_functional():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x = torch.randn(7, 5, requires_grad=True)
    J = batched_jacobian(net(x), x)
    for i in range(7):
        ref = torch.autograd.functional.jacobian(net, x[i].detach())
        torch.testing.assert_close(J[i], ref, rtol=1e-5, atol=1e-6)


def test_torch_covariance_propagation_matches_dense():
    rng = np.random.RandomState(1)
    n, d, L = 4, 5, 2
    A = rng.normal(size=(n, 3, 3))
    C3 = A @ np.swapaxes(A, 1, 2) + np.eye(3)
    v = rng.normal(size=(n, d))
    X = CovariantFeatures.hstack([
        CovariantFeatures.from_dense(v[:, :3], C3),
        CovariantFeatures.from_variance(v[:, 3:], np.abs(v[:, 3:]) + 0.5),
    ])
    J = rng.normal(size=(n, L, d))
    tc = TorchCovariance(X)
    got = tc.propagate(torch.as_tensor(J, dtype=torch.float32)).numpy()
    dense = X.covariance()
    ref = np.einsum("nld,nde,nle->nl", J, dense, J)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # pass-stacked Jacobians share one covariance
    JP = torch.as_tensor(np.stack([J, 2 * J]), dtype=torch.float32)
    got2 = tc.propagate(JP).numpy()
    np.testing.assert_allclose(got2[1], 4 * ref, rtol=1e-5)


def test_gaussian_nll_masks_missing_labels():
    pred = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    target = torch.tensor([[1.0, 999.0], [2.0, 0.5]])
    var = torch.tensor([[1.0, 1.0], [4.0, 0.25]])
    mask = torch.tensor([[True, False], [True, True]])
    got = gaussian_nll(pred, target, var, mask)
    terms = [0.5 * 1 + 0.0, 0.5 * np.log(4.0) + 0.5 * 0.25 / 0.25 + 0.5 * np.log(0.25)]
    assert got.item() == pytest.approx(np.mean([terms[0], terms[1]]), rel=1e-6)


# ------------------------------------------------------------ estimator
def test_defaults_are_the_papers():
    m = UncertainNNRegressor()
    assert tuple(m.hidden) == (128, 128) and m.dropout == 0.2
    assert m.lr == 5e-4 and m.weight_decay == 1e-5 and m.batch_size == 10000
    assert m.max_iter == 20000 and m.warmup_iter == 2500 and m.shuffle is False
    assert m.n_mc_passes == 50 and m.point_estimate == "median"
    X, y, yerr, _ = _data(n=50, d=115 - 6)
    y6 = np.repeat(y, 3, axis=1)
    fitted = UncertainNNRegressor(max_iter=2, warmup_iter=1, random_state=0).fit(X, y6)
    layers = [l for l in fitted.module_ if isinstance(l, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in layers] == [(109, 128), (128, 128), (128, 12)]
    assert sum(isinstance(l, torch.nn.Dropout) and l.p == 0.2 for l in fitted.module_) == 2


def test_fit_predict_uncertainty_parts():
    X, y, yerr, truth = _data()
    m = UncertainNNRegressor(**FAST).fit(X[:500], y[:500], y_err=yerr[:500])
    assert m.n_iter_ == 150
    flags = [h["input_term"] for h in m.history_]
    assert not flags[0] and flags[-1]  # warm-up without the input term, then with it
    u = m.predict_uncertainty(X[500:])
    for key in ("prediction", "model_var", "input_var", "excess_var", "total_std"):
        assert u[key].shape == (100, 2) and np.all(np.isfinite(u[key]))
    assert np.all(u["model_var"] > 0) and np.all(u["input_var"] > 0) and np.all(u["excess_var"] > 0)
    # the paper's Eq. 11 total, and the default calibrated total built from it
    np.testing.assert_allclose(u["raw_std"] ** 2, u["model_var"] + u["input_var"] + u["excess_var"])
    a, b = m.calibrator_.scale_, m.calibrator_.floor_
    np.testing.assert_allclose(u["total_std"] ** 2,
                               a * (u["model_var"] + u["excess_var"]) + u["input_var"] + b**2)
    np.testing.assert_allclose(u["input_std"] ** 2, u["input_var"])
    mean, std = m.predict(X[500:], return_std=True)
    np.testing.assert_allclose(mean, u["prediction"])
    np.testing.assert_allclose(std, u["total_std"])
    m.set_params(uncertainty="mc")
    np.testing.assert_allclose(m.predict(X[500:], return_std=True)[1], u["raw_std"])
    lo, hi = m.predict_interval(X[500:], alpha=0.05)
    np.testing.assert_allclose(hi - mean, 1.959964 * u["raw_std"], rtol=1e-5)
    m.set_params(uncertainty="calibrated")
    # calibration rows were held out of training (no validation split: 10 %)
    assert len(m.calibration_indices_) == 50
    # it learned something: better than predicting the mean
    rmse = np.sqrt(np.mean((mean - truth[500:]) ** 2, 0))
    assert np.all(rmse < 0.8 * truth[500:].std(0))


def test_input_variance_scales_with_input_covariance():
    X, y, yerr, _ = _data(n=300)
    m = UncertainNNRegressor(**FAST).fit(X, y, y_err=yerr)
    base = m.predict_uncertainty(X[:50])
    X4 = CovariantFeatures.from_variance(X.values[:50], 4 * X.variance()[:50])
    four = m.predict_uncertainty(X4)
    np.testing.assert_allclose(four["input_var"], 4 * base["input_var"], rtol=1e-4)
    np.testing.assert_allclose(four["prediction"], base["prediction"])
    np.testing.assert_allclose(four["model_var"], base["model_var"])
    plain = m.predict_uncertainty(X.values[:50])  # no covariance -> no input term
    assert np.all(plain["input_var"] == 0)
    np.testing.assert_allclose(plain["prediction"], base["prediction"])


def test_input_variance_equals_jacobian_propagation():
    X, y, yerr, _ = _data(n=200)
    m = UncertainNNRegressor(**{**FAST, "n_mc_passes": 0}).fit(X, y, y_err=yerr)
    u = m.predict_uncertainty(X[:20])
    J = m.input_jacobian(X[:20])
    ref = np.einsum("nld,nd->nl", J**2, X.variance()[:20])
    np.testing.assert_allclose(u["input_var"], ref, rtol=1e-4)
    # Jacobian against finite differences of the deterministic prediction
    x0 = X.values[:1].copy()
    h = 1e-3
    for i in range(X.shape[1]):
        xp, xm = x0.copy(), x0.copy()
        xp[0, i] += h
        xm[0, i] -= h
        fd = (m.predict(xp) - m.predict(xm)) / (2 * h)
        np.testing.assert_allclose(fd[0], J[0, :, i], rtol=2e-2, atol=2e-3)


def test_missing_labels_and_label_errors():
    X, y, yerr, truth = _data(n=400)
    y = y.copy()
    y[::2, 1] = np.nan
    yerr = yerr.copy()
    yerr[::2, 1] = np.nan
    m = UncertainNNRegressor(**FAST).fit(X, y, y_err=yerr)
    pred = m.predict(X)
    assert np.all(np.isfinite(pred))
    with pytest.raises(ValueError, match="no valid"):
        UncertainNNRegressor(**FAST).fit(X, np.c_[y[:, 0], np.full(400, np.nan)])
    with pytest.raises(ValueError, match="y_err has shape"):
        UncertainNNRegressor(**FAST).fit(X, y, y_err=yerr[:, :1].repeat(3, 1))
    with pytest.raises(ValueError, match=">= 0"):
        UncertainNNRegressor(**FAST).fit(X, y, y_err=-np.abs(yerr))
    with pytest.raises(ValueError, match="infinit"):
        UncertainNNRegressor(**FAST).fit(X, np.where(np.isnan(y), np.inf, y))


def test_label_errors_enter_the_likelihood():
    """Quoted label errors are taken out of the learned excess variance.

    With sigma_y = 0.3 given, the excess variance should drop by about
    0.3^2 = 0.09 relative to the same fit without label errors.
    """
    X, y, _, _ = _data(n=400, seed=3)
    rng = np.random.RandomState(0)
    noisy = y + 0.3 * rng.normal(size=y.shape)
    kw = {**FAST, "max_iter": 300}
    without = UncertainNNRegressor(**kw).fit(X, noisy).predict_uncertainty(X)
    withe = (UncertainNNRegressor(**kw).fit(X, noisy, y_err=np.full_like(y, 0.3))
             .predict_uncertainty(X))
    drop = np.median(without["excess_var"] - withe["excess_var"], axis=0)
    np.testing.assert_allclose(drop, 0.09, rtol=0.4)


def test_seeded_and_subset_invariant():
    X, y, yerr, _ = _data(n=300)
    a = UncertainNNRegressor(**FAST).fit(X, y, y_err=yerr)
    b = UncertainNNRegressor(**FAST).fit(X, y, y_err=yerr)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    full = a.predict_uncertainty(X)
    sub = a.predict_uncertainty(X[[7, 3, 250]])
    for k in full:
        np.testing.assert_allclose(sub[k], full[k][[7, 3, 250]], rtol=1e-5, atol=1e-8)
    s = a.predict_samples(X[:10])
    assert s.shape == (20, 10, 2)
    np.testing.assert_allclose(np.median(s, axis=0), a.predict(X[:10]), rtol=1e-5, atol=1e-6)
    mean_est = a.set_params(point_estimate="mean").predict(X[:10])
    np.testing.assert_allclose(mean_est, s.mean(0), rtol=1e-5, atol=1e-6)


def test_one_dimensional_target_and_attention():
    X, y, yerr, _ = _data(n=300)
    m = UncertainNNRegressor(**FAST).fit(X, y[:, 0], y_err=yerr[:, 0])
    p, s = m.predict(X[:5], return_std=True)
    assert p.shape == (5,) and s.shape == (5,)
    att = m.feature_attention(X)
    assert att.shape == (6, 1)
    # y0 = sin(x0) + 0.5 x1: features 0 and 1 must dominate
    assert set(att["y0"].nlargest(2).index) == {"x0", "x1"}


def test_bad_inputs():
    X, y, yerr, _ = _data(n=100)
    with pytest.raises(ValueError, match="early_stopping"):
        UncertainNNRegressor(early_stopping=True).fit(X, y)
    with pytest.raises(ValueError, match="point_estimate"):
        UncertainNNRegressor(point_estimate="mode").fit(X, y)
    v = X.values.copy()
    v[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        UncertainNNRegressor(**FAST).fit(CovariantFeatures.from_variance(v, X.variance()), y)
    neg = X.variance().copy()
    neg[5, 1] = -1
    with pytest.raises(ValueError, match="negative"):
        UncertainNNRegressor(**FAST).fit(CovariantFeatures.from_variance(X.values, neg), y)
    m = UncertainNNRegressor(**FAST).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        m.predict(X.values[:, :4])


def test_early_stopping_and_validation():
    X, y, yerr, _ = _data(n=300)
    m = UncertainNNRegressor(**{**FAST, "max_iter": 2000, "warmup_iter": 10},
                             validation_fraction=0.2, early_stopping=True,
                             patience=3).fit(X, y, y_err=yerr)
    assert m.n_valid_ == 60
    assert "valid_loss" in m.history_[0]
    assert m.n_iter_ < 2000


def test_pipeline_gridsearch_cross_val_with_label_errors():
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline

    from skstellar.preprocessing.scaling import CovariantStandardScaler

    X, y, yerr, _ = _data(n=240)
    pipe = make_pipeline(CovariantStandardScaler(),
                         UncertainNNRegressor(**{**FAST, "max_iter": 60, "n_mc_passes": 5}))
    grid = GridSearchCV(pipe, {"uncertainnnregressor__hidden": [(16,), (32, 32)]}, cv=2)
    grid.fit(X, y, uncertainnnregressor__y_err=yerr)
    assert set(grid.cv_results_["param_uncertainnnregressor__hidden"]) == {(16,), (32, 32)}
    scores = cross_val_score(pipe, X, y, cv=3, params={"uncertainnnregressor__y_err": yerr})
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_joblib_round_trip_in_fresh_process(tmp_path):
    import joblib

    X, y, yerr, _ = _data(n=200)
    m = UncertainNNRegressor(**FAST).fit(X, y, y_err=yerr)
    path = tmp_path / "unn.joblib"
    joblib.dump((m, X[:30]), path)
    u = m.predict_uncertainty(X[:30])
    np.save(tmp_path / "ref.npy", np.stack([u["prediction"], u["total_std"], u["input_var"]]))
    code = textwrap.dedent(f"""
        import joblib, numpy as np
        m, X = joblib.load({str(path)!r})
        u = m.predict_uncertainty(X)
        ref = np.load({str(tmp_path / 'ref.npy')!r})
        got = np.stack([u["prediction"], u["total_std"], u["input_var"]])
        assert np.array_equal(got, ref), np.abs(got - ref).max()
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


def _xp_named_features(n=300, seed=0):
    rng = np.random.RandomState(seed)
    names = [f"rp_{i}" for i in range(1, 55)] + [f"bp_{i}" for i in range(55)] + ["bp_rp"]
    v = rng.normal(size=(n, len(names))) * np.r_[np.full(109, 0.1), 1.0]
    y = 2.0 * v[:, names.index("bp_3")] + 0.5 * v[:, -1]
    return CovariantFeatures.from_variance(v, np.full(v.shape, 1e-4), feature_names=names), y


def test_derivative_coefficients_and_spectra():
    from skstellar.xp.diagnostics import derivative_coefficients, derivative_spectra

    X, y = _xp_named_features()
    m = UncertainNNRegressor(**{**FAST, "max_iter": 200}).fit(X, y)
    d = derivative_coefficients(m, X)
    assert d.shape == (110, 1)
    # Eq. 14 is a right inverse of the weighted gradient: (J w2) . (dx/dy / w2 * w2)...
    J = m.input_jacobian(X).mean(0)
    np.testing.assert_allclose(J @ d.to_numpy(), np.eye(1), rtol=1e-6)
    spec = derivative_spectra(m, X, calibrated=True)
    assert set(spec.columns) == {"label", "band", "wavelength", "derivative"}
    assert spec["wavelength"].between(330, 1050).all() and len(spec) == 343
    assert np.isfinite(spec["derivative"]).all() and np.abs(spec["derivative"]).max() > 0
    internal = derivative_spectra(m, X, calibrated=False)
    assert set(internal["band"]) == {"BP", "RP"}
    with pytest.raises(ValueError, match="bp_<i>"):
        derivative_spectra(UncertainNNRegressor(**{**FAST, "max_iter": 5}).fit(X.values, y),
                           X.values)


def test_diagnostic_plots():
    import matplotlib

    matplotlib.use("Agg")
    from skstellar.xp.diagnostics import plot_uncertainty_parts, plot_zscores

    X, y, yerr, truth = _data(n=200)
    m = UncertainNNRegressor(**FAST).fit(X, y, y_err=yerr)
    u = m.predict_uncertainty(X)
    ax = plot_uncertainty_parts(u["prediction"], u, label=1, label_name="y1")
    assert len(ax.lines) == 4
    fig = plot_zscores(truth, u["prediction"], u["total_std"], label_names=["a", "b"])
    assert [a.get_title() for a in fig.axes[:2]] == ["a", "b"]


def test_analytic_mlp_jacobian_matches_autograd():
    from skstellar.nn.builders import build_mlp
    from skstellar.nn.uncertainty import mlp_forward_with_jacobian

    for act in ("relu", "gelu", "leaky_relu:0.1", "tanh"):
        torch.manual_seed(0)
        net = build_mlp(7, (16, 12), 6, activation=act, dropout=0.3)
        x = torch.randn(9, 7, dtype=torch.float64)
        net = net.double()
        net.eval()
        out, J = mlp_forward_with_jacobian(net, x, 3, create_graph=False)
        torch.testing.assert_close(out, net(x))
        xr = x.clone().requires_grad_(True)
        ref = batched_jacobian(net(xr)[:, :3], xr)
        torch.testing.assert_close(J, ref)
        # training mode: the Jacobian is that of the thinned network of this pass
        net.train()
        torch.manual_seed(5)
        out_t, J_t = mlp_forward_with_jacobian(net, x, 3, create_graph=True)
        assert not torch.allclose(out_t, out)
        # gradient of a loss on J flows to the weights
        (J_t**2).sum().backward()
        assert all(p.grad is not None for p in net.parameters() if p.dim() == 2)


def test_input_variance_passes_options():
    X, y, yerr, _ = _data(n=300)
    m = UncertainNNRegressor(**FAST, input_variance_passes=None).fit(X, y, y_err=yerr)
    full = m.predict_uncertainty(X[:40])
    # the first k passes reproduce the all-pass value when k = n_mc_passes
    same = m.set_params(input_variance_passes=20).predict_uncertainty(X[:40])
    np.testing.assert_allclose(same["input_var"], full["input_var"], rtol=1e-4)
    np.testing.assert_allclose(same["prediction"], full["prediction"])
    # dropout-off Jacobian: the deterministic network's propagation
    det = m.set_params(input_variance_passes=0).predict_uncertainty(X[:40])
    m.set_params(n_mc_passes=0, input_variance_passes=None)
    J = m.input_jacobian(X[:40])
    ref = np.einsum("nld,nd->nl", J**2, X.variance()[:40])
    np.testing.assert_allclose(det["input_var"], ref, rtol=1e-4)
    # a few passes: same order of magnitude as all passes
    m.set_params(n_mc_passes=20, input_variance_passes=5)
    few = m.predict_uncertainty(X[:40])
    ratio = np.median(few["input_var"] / full["input_var"])
    assert 0.5 < ratio < 2.0


def test_detached_jacobian_option_trains():
    X, y, yerr, truth = _data(n=300)
    m = UncertainNNRegressor(**FAST, jacobian_gradient=False).fit(X, y, y_err=yerr)
    u = m.predict_uncertainty(X)
    assert np.all(np.isfinite(u["total_std"])) and np.all(u["input_var"] > 0)
    full = UncertainNNRegressor(**FAST).fit(X, y, y_err=yerr)
    # same warm-up phase, different gradients once the input term is on
    assert not np.allclose(m.predict(X), full.predict(X))


def test_calibration_fixes_overestimated_sigma_and_paper_split_is_kept():
    X, y, yerr, truth = _data()
    m = UncertainNNRegressor(**FAST).fit(X[:500], y[:500], y_err=yerr[:500])
    u = m.predict_uncertainty(X[500:])
    z_raw = np.std((truth[500:] - u["prediction"]) / u["raw_std"], axis=0)
    z_cal = np.std((truth[500:] - u["prediction"]) / u["total_std"], axis=0)
    # calibrated is at least as close to 1 as the raw Eq. 11 total, for every label
    assert np.all(np.abs(np.log(z_cal)) <= np.abs(np.log(z_raw)) + 0.05)
    assert np.all((z_cal > 0.7) & (z_cal < 1.4))
    paper = UncertainNNRegressor(**FAST, uncertainty="mc").fit(X[:500], y[:500], y_err=yerr[:500])
    assert paper.calibrator_ is None and len(paper.calibration_indices_) == 0
    with pytest.raises(ValueError, match="uncertainty"):
        UncertainNNRegressor(uncertainty="x").fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="refit"):
        paper.set_params(uncertainty="calibrated").predict(X[:5], return_std=True)
