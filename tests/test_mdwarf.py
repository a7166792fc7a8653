"""MDwarfMetallicityRegressor: recipe, uncertainty API, composition, persistence, bad input."""

import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import loguniform
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from torch import nn

from skstellar import MDwarfMetallicityRegressor
from skstellar.datasets import make_mdwarf_photometry
from skstellar.mdwarf import paper_search_space
from skstellar.nn import LinearWeightedMSELoss
from skstellar.preprocessing import AbsoluteMagnitudes

FAST = dict(max_epochs=15, batch_size=64, lr=2e-3, random_state=0)


@pytest.fixture(scope="module")
def catalog():
    return make_mdwarf_photometry(1200, random_state=1)


@pytest.fixture(scope="module")
def arrays():
    return make_mdwarf_photometry(1200, random_state=1, as_frame=False)


@pytest.fixture(scope="module")
def fitted(catalog):
    pipe = Pipeline([("mags", AbsoluteMagnitudes()),
                     ("reg", MDwarfMetallicityRegressor(**FAST))]).set_output(transform="pandas")
    return pipe.fit(catalog, catalog["fe_h"])


def test_default_network_is_the_papers():
    reg = MDwarfMetallicityRegressor()
    assert reg.lr == 2e-4 and reg.dropout == 0.2 and reg.n_mc_passes == 100
    m = reg._build_module(8, 1)
    kinds = [type(layer).__name__ for layer in m]
    assert kinds == ["BatchNorm1d", "Linear", "_Linear", "BatchNorm1d", "Dropout",
                     "Linear", "_Linear", "BatchNorm1d", "Dropout", "Linear", "Tanh"]
    assert [layer.out_features for layer in m if isinstance(layer, nn.Linear)] == [64, 64, 1]
    assert all(layer.bias is not None for layer in m if isinstance(layer, nn.Linear))
    crit = reg._build_criterion()
    assert isinstance(crit, LinearWeightedMSELoss) and (crit.slope, crit.intercept) == (4, 0.5)


def test_released_architecture_option():
    m = MDwarfMetallicityRegressor(architecture="released")._build_module(8, 1)
    lin = [layer for layer in m if isinstance(layer, nn.Linear)]
    assert lin[0].bias is None and lin[1].bias is None and lin[2].bias is not None
    # LeakyReLU(0.1) then BatchNorm (BatchNorm after the activation)
    assert isinstance(m[2], nn.LeakyReLU) and m[2].negative_slope == 0.1
    assert isinstance(m[3], nn.BatchNorm1d)
    with pytest.raises(ValueError, match="architecture"):
        MDwarfMetallicityRegressor(architecture="nope").fit(np.ones((10, 8)), np.zeros(10))


def test_fit_learns_and_mc_std(fitted, catalog):
    reg = fitted[-1]
    assert list(reg.feature_names_in_) == ["M_BP", "M_G", "M_RP", "M_J", "M_H", "M_Ks",
                                           "M_W1", "M_W2"]
    mean, std = fitted.predict(catalog.iloc[:300], return_std=True)
    y = catalog["fe_h"].to_numpy()[:300]
    assert mean.shape == std.shape == (300,)
    assert np.all(std > 0) and np.all(np.abs(mean) < 1)
    # better than predicting the mean metallicity, even after 15 epochs
    assert np.std(mean - y) < 0.8 * np.std(y)
    # MC mean differs from the deterministic pass, but not by much
    samples = reg.predict_samples(fitted[:-1].transform(catalog.iloc[:50]))
    assert samples.shape == (100, 50)
    np.testing.assert_allclose(samples.mean(0), mean[:50], atol=1e-5)


def test_seeded_fit_is_reproducible(arrays):
    X, y = arrays
    a = MDwarfMetallicityRegressor(**FAST).fit(X[:400], y[:400]).predict(X[:50])
    b = MDwarfMetallicityRegressor(**FAST).fit(X[:400], y[:400]).predict(X[:50])
    c = MDwarfMetallicityRegressor(**{**FAST, "random_state": 1}).fit(X[:400], y[:400]).predict(
        X[:50])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_weighting_changes_the_fit(arrays):
    X, y = arrays
    w = MDwarfMetallicityRegressor(**FAST).fit(X[:600], y[:600])
    u = MDwarfMetallicityRegressor(**{**FAST, "weight_slope": 0.0}).fit(X[:600], y[:600])
    assert not np.allclose(w.predict(X[:50]), u.predict(X[:50]))


def test_domain_flags(fitted, catalog):
    cat = catalog.iloc[:20].copy()
    # push two stars out of the colour box and check they are flagged
    cat.loc[cat.index[0], "j_m"] = cat["phot_g_mean_mag"].iloc[0] - 1.0  # G - J = 1.0
    cat.loc[cat.index[1], "w2mpro"] = cat["w1mpro"].iloc[1] - 0.5  # W1 - W2 = 0.5
    table = fitted[-1].predict_catalog(fitted[:-1].transform(cat))
    assert list(table.index) == list(cat.index)
    assert table["outside_colour_box"].iloc[0] and table["outside_colour_box"].iloc[1]
    assert not table["in_domain"].iloc[0]
    g_j = cat["phot_g_mean_mag"] - cat["j_m"]
    np.testing.assert_allclose(table["g_minus_j"], g_j, atol=1e-9)
    expected_box = (g_j < 1.85) | (g_j > 3.10) | ((cat["w1mpro"] - cat["w2mpro"]) < -0.10) | (
        (cat["w1mpro"] - cat["w2mpro"]) > 0.24)
    np.testing.assert_array_equal(table["outside_colour_box"], expected_box)
    sat = np.abs(table["fe_h_pred"]) > 0.9
    np.testing.assert_array_equal(table["saturated"], sat)


def test_domain_flags_need_feature_names(arrays):
    X, y = arrays
    reg = MDwarfMetallicityRegressor(**{**FAST, "max_epochs": 2}).fit(X[:, :6], y)
    with pytest.raises(ValueError, match="feature_names"):
        reg.domain_flags(X[:5, :6])


def test_pipeline_gridsearch_and_cross_val(catalog):
    cat = catalog.iloc[:500]
    pipe = Pipeline([("mags", AbsoluteMagnitudes()),
                     ("reg", MDwarfMetallicityRegressor(**{**FAST, "max_epochs": 4,
                                                           "n_mc_passes": 10}))])
    grid = GridSearchCV(pipe, {"reg__hidden_layer_sizes": [(16,), (32, 32)],
                               "reg__dropout": [0.1, 0.3]}, cv=2)
    grid.fit(cat, cat["fe_h"])
    assert set(grid.best_params_) == {"reg__hidden_layer_sizes", "reg__dropout"}
    assert np.isfinite(grid.best_score_)
    scores = cross_val_score(pipe, cat, cat["fe_h"], cv=3, scoring="neg_root_mean_squared_error")
    assert scores.shape == (3,) and np.all(np.isfinite(scores)) and np.all(scores < 0)


def test_randomized_search_over_paper_space(arrays):
    X, y = arrays
    space = paper_search_space()
    assert len(space["hidden_layer_sizes"]) == 30
    assert space["dropout"] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert isinstance(space["lr"].dist, type(loguniform(1e-4, 1e-2).dist))
    search = RandomizedSearchCV(MDwarfMetallicityRegressor(max_epochs=3, n_mc_passes=5,
                                                           random_state=0),
                                space, n_iter=3, cv=2, random_state=0)
    search.fit(X[:300], y[:300])
    assert 1e-4 <= search.best_params_["lr"] <= 1e-2


def test_joblib_round_trip_in_fresh_process(fitted, catalog, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(fitted, path)
    cat_path = tmp_path / "cat.parquet"
    catalog.iloc[:40].to_parquet(cat_path)
    expected_mean, expected_std = fitted.predict(catalog.iloc[:40], return_std=True)
    code = textwrap.dedent(f"""
        import joblib, numpy as np, pandas as pd
        model = joblib.load({str(path)!r})
        cat = pd.read_parquet({str(cat_path)!r})
        m, s = model.predict(cat, return_std=True)
        np.save({str(tmp_path / "m.npy")!r}, m); np.save({str(tmp_path / "s.npy")!r}, s)
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), expected_mean)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), expected_std)


@pytest.mark.parametrize("bad, match", [
    (np.nan, "NaN"), (np.inf, "inf"),
])
def test_non_finite_magnitudes_are_named(catalog, bad, match):
    cat = catalog.iloc[:30].copy()
    cat.loc[cat.index[4], "w1mpro"] = bad
    pipe = Pipeline([("mags", AbsoluteMagnitudes()),
                     ("reg", MDwarfMetallicityRegressor(max_epochs=1))])
    with pytest.raises(ValueError, match=match) as exc:
        pipe.fit(cat, cat["fe_h"])
    assert "w1mpro" in str(exc.value)


def test_bad_input_errors(arrays, catalog):
    X, y = arrays
    reg = MDwarfMetallicityRegressor(max_epochs=1)
    with pytest.raises(ValueError):
        reg.fit(X[:0], y[:0])  # empty
    with pytest.raises(ValueError):
        reg.fit(X[:, 0], y)  # 1-D X
    with pytest.raises(ValueError, match="n_samples=1|1 sample"):
        reg.fit(X[:1], y[:1])
    Xn = X[:50].copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reg.fit(Xn, y[:50])
    fitted = MDwarfMetallicityRegressor(max_epochs=1, random_state=0).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:5, :7])  # wrong shape
    df = pd.DataFrame(X[:50], columns=[f"M_{b}" for b in
                                       ("BP", "G", "RP", "J", "H", "Ks", "W1", "W2")])
    fitted_df = MDwarfMetallicityRegressor(max_epochs=1, random_state=0).fit(df, y[:50])
    df_bad = df.copy()
    df_bad.loc[7, "M_J"] = np.nan
    with pytest.raises(ValueError, match="M_J"):
        fitted_df.predict(df_bad)
    with pytest.raises(ValueError, match="return_std"):
        MDwarfMetallicityRegressor(max_epochs=1, n_mc_passes=0, uncertainty="mc",
                                   random_state=0).fit(X[:50], y[:50]).predict(
            X[:5], return_std=True)
    # without MC dropout the calibrated sigma is the held-out floor b alone
    with pytest.warns(UserWarning, match="rows"):
        no_mc = MDwarfMetallicityRegressor(max_epochs=1, n_mc_passes=0, random_state=0).fit(
            X[:50], y[:50])
    _, s = no_mc.predict(X[:5], return_std=True)
    np.testing.assert_allclose(s, no_mc.calibrator_.floor_[0])
    with pytest.raises(ValueError, match="uncertainty"):
        MDwarfMetallicityRegressor(uncertainty="bayes").fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="validation_fraction"):
        MDwarfMetallicityRegressor(max_epochs=1, validation_fraction=0.0).fit(X[:50], y[:50])
    # the paper's raw spread needs no validation rows
    MDwarfMetallicityRegressor(max_epochs=1, validation_fraction=0.0, uncertainty="mc",
                               early_stopping=False).fit(X[:50], y[:50])


# ------------------------------------------------------------ calibrated sigma
def _zstd(y, m, s):
    return float(np.std((y - m) / s))


def test_default_sigma_is_calibrated_and_mc_is_one_parameter_away(catalog):
    train, test = catalog.iloc[:900], catalog.iloc[900:]
    pipe = Pipeline([("mags", AbsoluteMagnitudes()),
                     ("reg", MDwarfMetallicityRegressor(**FAST))]).set_output(transform="pandas")
    pipe.fit(train, train["fe_h"])
    reg = pipe[-1]
    y = test["fe_h"].to_numpy()
    m, s = pipe.predict(test, return_std=True)
    reg.set_params(uncertainty="mc")
    m_mc, s_mc = pipe.predict(test, return_std=True)
    reg.set_params(uncertainty="calibrated")
    np.testing.assert_allclose(m, m_mc)  # same predictions, different sigma
    # the raw MC spread is far too small on held-out stars; calibrated is near 1
    assert _zstd(y, m, s_mc) > 1.5
    assert 0.8 < _zstd(y, m, s) < 1.25
    assert reg.calibrator_.floor_[0] > 0 and len(reg.validation_indices_) == reg.n_valid_
    u = reg.predict_uncertainty(pipe[:-1].transform(test))
    np.testing.assert_allclose(u.total_std, s)
    np.testing.assert_allclose(u.raw_std, s_mc)
    np.testing.assert_allclose(u.total_std**2, u.model_std**2 + u.input_std**2
                               + u.intrinsic_std**2)
    assert np.all(u.input_std == 0)  # no error columns: nothing propagated
    lo, hi = reg.predict_interval(pipe[:-1].transform(test), alpha=0.05)
    np.testing.assert_allclose(hi - m, 1.959964 * s, rtol=1e-5)
    table = reg.predict_catalog(pipe[:-1].transform(test.iloc[:5]))
    np.testing.assert_allclose(table["fe_h_pred_error"], s[:5], rtol=1e-5)  # float32 MC
    assert {"fe_h_error_model", "fe_h_error_input", "fe_h_error_intrinsic"} <= set(table)


def _error_pipeline(**reg_params):
    return Pipeline([
        ("mags", AbsoluteMagnitudes(return_errors=True, distance_error=True)),
        ("reg", MDwarfMetallicityRegressor(**{**FAST, **reg_params})),
    ]).set_output(transform="pandas")


def test_measurement_errors_propagate_faint_distant_star_gets_larger_sigma(catalog):
    pipe = _error_pipeline().fit(catalog, catalog["fe_h"])
    reg = pipe[-1]
    assert reg.network_features_ == ("M_BP", "M_G", "M_RP", "M_J", "M_H", "M_Ks", "M_W1",
                                     "M_W2")
    assert reg.error_features_[3] == "M_J_error"
    assert reg.module_[1].in_features == 8  # error columns are not network inputs
    star = catalog.iloc[[0, 0]].copy()
    # row 1: the same star 4x further away, with 10x larger photometric and
    # parallax errors (faint and distant)
    star.iloc[1, star.columns.get_loc("parallax")] /= 4.0
    shift = 5 * np.log10(4.0)
    for col in ("phot_bp_mean_mag", "phot_g_mean_mag", "phot_rp_mean_mag", "j_m", "h_m",
                "ks_m", "w1mpro", "w2mpro"):
        star.iloc[1, star.columns.get_loc(col)] += shift
    for col in ("j_msigcom", "h_msigcom", "ks_msigcom", "w1sigmpro", "w2sigmpro",
                "parallax_error"):
        star.iloc[1, star.columns.get_loc(col)] *= 10
    for col in ("phot_bp_mean_flux_over_error", "phot_g_mean_flux_over_error",
                "phot_rp_mean_flux_over_error"):
        star.iloc[1, star.columns.get_loc(col)] /= 10
    u = reg.predict_uncertainty(pipe[:-1].transform(star))
    assert u.input_std[1] > 5 * u.input_std[0] > 0
    assert u.total_std[1] > u.total_std[0]
    assert u.prediction[0] == pytest.approx(u.prediction[1], abs=1e-4)  # same magnitudes
    # the same network with errors ignored gives no input term
    reg.set_params(input_errors="ignore")
    reg2 = MDwarfMetallicityRegressor(**FAST, input_errors="ignore")
    feats = pipe[:-1].transform(catalog)
    reg2.fit(feats, catalog["fe_h"])
    assert np.all(reg2.predict_uncertainty(feats.iloc[:5]).input_std == 0)


def test_parallax_error_is_shared_by_all_bands():
    # a network that uses only a colour is blind to the distance-modulus error
    import torch

    from skstellar.nn.uncertainty import propagate_input_errors

    net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight[:] = torch.tensor([[1.0, -1.0]])
    X = np.zeros((1, 2), np.float32)
    dm = np.array([0.3])
    err = np.full((1, 2), 0.3)  # all of the error is the shared distance term
    assert propagate_input_errors(net, X, err, dm)[0, 0] == pytest.approx(0.0, abs=1e-7)
    assert propagate_input_errors(net, X, err)[0, 0] == pytest.approx(0.3 * np.sqrt(2))


def test_bad_error_columns(catalog):
    feats = _error_pipeline()[:-1].fit_transform(catalog)
    reg = MDwarfMetallicityRegressor(max_epochs=2, random_state=0).fit(feats, catalog["fe_h"])
    bad = feats.iloc[:10].copy()
    bad.iloc[4, bad.columns.get_loc("M_H_error")] = -0.1
    with pytest.raises(ValueError, match="M_H_error.*negative"):
        reg.predict(bad, return_std=True)
    bad = feats.iloc[:10].copy()
    bad.iloc[2, bad.columns.get_loc("distance_modulus_error")] = 5.0
    with pytest.raises(ValueError, match="distance_modulus_error.*row 2"):
        reg.predict(bad, return_std=True)
    bad = feats.iloc[:10].copy()
    bad.iloc[3, bad.columns.get_loc("M_W1_error")] = np.nan
    with pytest.raises(ValueError, match="M_W1_error"):
        reg.predict(bad, return_std=True)
    with pytest.raises(ValueError, match="feature names"):
        reg.predict(feats.iloc[:5, :8])  # error columns seen at fit are required
