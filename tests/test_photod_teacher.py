"""Tests of skstellar.photod.teacher.BayesianPhotoD (the Bayesian photo-D teacher)."""

import astropy.units as u
import joblib
import numpy as np
import pandas as pd
import pytest
from astropy.table import QTable, Table
from photod_toys import toy_locus, toy_priors
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from skstellar.datasets.photod import make_lsst_catalog
from skstellar.io import find_shared_data
from skstellar.io.photod import (
    ColourLocus,
    PriorMaps,
    load_locus,
    load_prior_maps,
    load_stripe82_priors,
    load_stripe82_sample,
    reddening_vector,
)
from skstellar.metrics import robust_std
from skstellar.photod.teacher import BayesianPhotoD

# scikit-learn's parametrize_with_checks is not run on BayesianPhotoD: it reads named
# survey columns with physical constraints (colour errors > 0, Ar_max > 0, r inside the
# prior maps) and learns nothing from (X, y), so the generic checks' random arrays are
# meaningless inputs. clone / get_params / set_params / joblib round trips are tested below.

COLOURS = ["ug", "gr", "ri", "iz"]
ERRORS = ["ugErr", "grErr", "riErr", "izErr"]
RED = reddening_vector()


# --------------------------------------------------------------------------
# Small synthetic locus and priors (same as tests/test_photod_data.py)
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy():
    return toy_locus(), toy_priors()


@pytest.fixture(scope="module")
def toy_catalog(toy):
    locus, maps = toy
    # uniform A_r on [0, Ar_max] = the teacher's prior: a well-specified test
    return make_lsst_catalog(300, locus=locus, prior_maps=maps, r_range=(15, 21),
                             ar_distribution="uniform", random_state=0)


@pytest.fixture(scope="module")
def fitted(toy, toy_catalog):
    locus, maps = toy
    return BayesianPhotoD(locus=locus, prior_maps=maps).fit(toy_catalog)


def star_at(locus, i, j, ar, r=18.0, err=0.002, ar_max=0.5):
    """One noiseless star on locus node (feh[i], mr[j]) reddened by ar."""
    col = locus.colours[i, j] + ar * RED
    row = {"rmag": r, "rErr": 0.005, "Ar_max": ar_max}
    row.update({c: v for c, v in zip(COLOURS, col)})
    row.update({e: err for e in ERRORS})
    return row


def check_recovery(cat, post, max_rstd_mr):
    for name, true in (("Mr", "Mr_true"), ("FeH", "FeH_true"), ("Ar", "Ar_true")):
        resid = post[name] - cat[true]
        z = resid / post[f"{name}_std"]
        assert abs(np.median(resid)) < 0.25 * robust_std(resid) + 0.01, name
        assert 0.75 < np.std(z) < 1.3, (name, np.std(z))
    assert robust_std(post["Mr"] - cat["Mr_true"]) < max_rstd_mr


# --------------------------------------------------------------------------
# Fit / predict basics
# --------------------------------------------------------------------------
def test_fit_prepares_grid_and_priors(fitted, toy):
    locus, maps = toy
    n_valid = int(locus.valid.sum())
    assert fitted.grid_mr_.shape == fitted.grid_feh_.shape == (n_valid,)
    assert fitted.grid_colours_.shape == (n_valid, 4)
    assert fitted.log_prior_.shape == (maps.n_bins, n_valid)
    np.testing.assert_allclose(np.exp(fitted.log_prior_).sum(axis=1), 1.0)
    np.testing.assert_allclose(fitted.reddening_, RED)
    assert fitted.input_columns_ == ["rmag", *COLOURS, *ERRORS, "Ar_max", "rErr"]
    assert fitted.n_features_in_ == 11 and list(fitted.feature_names_in_) == fitted.input_columns_
    assert fitted.target_names_ == ("Mr", "FeH", "Ar")


def test_recovers_truth_on_simulated_catalogue(fitted, toy_catalog):
    post = fitted.predict_posterior(toy_catalog)
    assert list(post.columns) == ["Mr", "Mr_std", "FeH", "FeH_std", "Ar", "Ar_std", "DM", "DM_std",
                                  "dist_pc", "chi2_min", "r_bin"]
    assert post.index.equals(toy_catalog.index)
    assert np.isfinite(post.to_numpy()).all()
    check_recovery(toy_catalog, post, max_rstd_mr=0.3)
    # DM = r - Mr - Ar, with the distance at the mean DM
    np.testing.assert_allclose(post["DM"], toy_catalog["rmag"] - post["Mr"] - post["Ar"])
    np.testing.assert_allclose(post["dist_pc"], 10 ** (0.2 * post["DM"] + 1))
    z = (post["DM"] - toy_catalog["DM_true"]) / post["DM_std"]
    assert 0.75 < np.std(z) < 1.3
    # chi2 of four colours with three fitted parameters: about one degree of freedom
    assert 0.4 < np.median(post["chi2_min"]) < 2.0
    np.testing.assert_array_equal(post["r_bin"], fitted.prior_maps_.bin_index(toy_catalog["rmag"]))
    mean, std = fitted.predict(toy_catalog, return_std=True)
    np.testing.assert_allclose(mean, post[["Mr", "FeH", "Ar"]].to_numpy())
    np.testing.assert_allclose(std, post[["Mr_std", "FeH_std", "Ar_std"]].to_numpy())
    np.testing.assert_allclose(fitted.predict(toy_catalog), mean)


def test_noiseless_star_on_a_grid_node(toy):
    locus, maps = toy
    est = BayesianPhotoD(locus=locus, prior_maps=maps).fit()
    i, j, ar = 12, 30, 0.2  # [Fe/H] = -0.8, Mr = 6.0
    post = est.predict_posterior(pd.DataFrame([star_at(locus, i, j, ar)]))
    assert post["chi2_min"].iloc[0] < 1e-8  # 0 up to float64 cancellation in the chi^2 expansion
    assert post["Mr"].iloc[0] == pytest.approx(locus.mr[j], abs=0.02)
    assert post["FeH"].iloc[0] == pytest.approx(locus.feh[i], abs=0.02)
    assert post["Ar"].iloc[0] == pytest.approx(ar, abs=0.005)
    assert post["Mr_std"].iloc[0] < 0.02 and post["Ar_std"].iloc[0] < 0.01
    # the same star in photoD's discrete-A_r mode (A_r = 0.2 is a grid value)
    grid = BayesianPhotoD(locus=locus, prior_maps=maps, ar_integration="grid").fit()
    postg = grid.predict_posterior(pd.DataFrame([star_at(locus, i, j, ar)]))
    assert postg["Mr"].iloc[0] == pytest.approx(locus.mr[j], abs=0.02)
    assert postg["Ar"].iloc[0] == pytest.approx(ar, abs=0.005)


def test_noisier_star_is_pulled_towards_the_prior(toy):
    locus, maps = toy
    est = BayesianPhotoD(locus=locus, prior_maps=maps).fit()
    # far from the prior centre (Mr ~ 6 at r = 18): Mr = 8.5
    rows = pd.DataFrame([star_at(locus, 15, 55, 0.1, err=e) for e in (0.002, 0.05, 0.2)])
    post = est.predict_posterior(rows)
    assert post["Mr_std"].is_monotonic_increasing
    assert post["Mr"].iloc[0] > post["Mr"].iloc[2]  # shrinks towards the prior mean


def test_batch_size_invariance(toy, toy_catalog):
    locus, maps = toy
    kw = dict(quantiles=(0.16, 0.5, 0.84))
    small = BayesianPhotoD(locus=locus, prior_maps=maps, batch_size=7, **kw).fit()
    small = small.predict_posterior(toy_catalog)
    large = BayesianPhotoD(locus=locus, prior_maps=maps, batch_size=1000, **kw).fit()
    large = large.predict_posterior(toy_catalog)
    # equal up to BLAS summation order (the chi^2 expansion is evaluated by matrix products)
    pd.testing.assert_frame_equal(small, large, rtol=1e-8, atol=1e-10)


def test_analytic_and_grid_ar_integration_agree(toy, toy_catalog):
    locus, maps = toy
    cat = toy_catalog.iloc[:60]
    qs = (0.16, 0.5, 0.84)
    ana = BayesianPhotoD(locus=locus, prior_maps=maps, quantiles=qs).fit().predict_posterior(cat)
    grid = BayesianPhotoD(locus=locus, prior_maps=maps, quantiles=qs, ar_integration="grid",
                          ar_grid_step=0.001).fit().predict_posterior(cat)
    for col in ("Mr", "FeH", "Mr_std", "FeH_std"):
        np.testing.assert_allclose(ana[col], grid[col], atol=0.01)
    for col in ("Ar", "Ar_std", "Ar_q16", "Ar_q50", "Ar_q84"):
        np.testing.assert_allclose(ana[col], grid[col], atol=0.003)
    np.testing.assert_allclose(ana["chi2_min"], grid["chi2_min"])


def test_quantiles(fitted, toy, toy_catalog):
    locus, maps = toy
    est = clone(fitted).set_params(quantiles=[0.025, 0.16, 0.5, 0.84, 0.975]).fit()
    post = est.predict_posterior(toy_catalog)
    for name in ("Mr", "FeH", "Ar"):
        q = post[[f"{name}_q{p}" for p in ("2.5", "16", "50", "84", "97.5")]].to_numpy()
        assert np.all(np.diff(q, axis=1) >= -1e-9), name
        half = 0.5 * (q[:, 3] - q[:, 1])
        ratio = half / post[f"{name}_std"]
        assert 0.6 < np.median(ratio) < 1.3, name
    assert (post["Ar_q2.5"] >= 0).all() and (post["Ar_q97.5"] <= toy_catalog["Ar_max"] + 1e-9).all()
    # empirical coverage of the central 68% interval against the truth
    inside = (toy_catalog["Mr_true"] >= post["Mr_q16"]) & (toy_catalog["Mr_true"] <= post["Mr_q84"])
    assert 0.55 < inside.mean() < 0.82


# --------------------------------------------------------------------------
# Input formats and parameters
# --------------------------------------------------------------------------
def test_input_formats_give_identical_results(fitted, toy_catalog):
    cat = toy_catalog.iloc[:20]
    ref = fitted.predict(cat)
    arr = cat[fitted.input_columns_].to_numpy()
    np.testing.assert_allclose(fitted.predict(arr), ref)
    np.testing.assert_allclose(fitted.predict(Table.from_pandas(cat)), ref)
    as_dict = {c: cat[c].to_numpy() for c in fitted.input_columns_}
    np.testing.assert_allclose(fitted.predict(as_dict), ref)
    with pytest.raises(ValueError, match="must have 11 columns"):
        fitted.predict(arr[:, :5])
    # astropy Quantities in mag are accepted; other units are refused by name
    qt = QTable({c: cat[c].to_numpy() * u.mag for c in fitted.input_columns_})
    np.testing.assert_allclose(fitted.predict(qt), ref)
    qt["rmag"] = cat["rmag"].to_numpy() * u.Jy
    with pytest.raises(ValueError, match="Column 'rmag' has wrong units"):
        fitted.predict(qt)


def test_constant_ar_max(toy, toy_catalog):
    locus, maps = toy
    cat = toy_catalog.iloc[:30].copy()
    cat["Ar_max"] = 0.3
    ref = BayesianPhotoD(locus=locus, prior_maps=maps).fit().predict(cat)
    const = BayesianPhotoD(locus=locus, prior_maps=maps, ar_max_column=None, ar_max=0.3).fit()
    np.testing.assert_allclose(const.predict(cat.drop(columns="Ar_max")), ref)
    assert (ref[:, 2] <= 0.3).all()
    with pytest.raises(ValueError, match="ar_max must be a positive number"):
        BayesianPhotoD(locus=locus, prior_maps=maps, ar_max_column=None).fit()


def test_invalid_parameters(toy):
    locus, maps = toy
    bad = [
        (dict(ar_integration="mcmc"), "ar_integration"),
        (dict(batch_size=0), "batch_size"),
        (dict(quantiles=[0.5, 1.0]), "quantiles"),
        (dict(r_policy="nearest"), "r_policy"),
        (dict(on_invalid="drop"), "on_invalid"),
        (dict(colour_columns=("ug", "gr")), "one error per colour"),
        (dict(ar_grid_step=-0.01), "ar_grid_step"),
    ]
    for params, match in bad:
        with pytest.raises(ValueError, match=match):
            BayesianPhotoD(locus=locus, prior_maps=maps, **params).fit()
    with pytest.raises(ValueError,
                       match="parameter .locus. must be None or an instance of ColourLocus"):
        BayesianPhotoD(locus="locus", prior_maps=maps).fit()
    short = ColourLocus(mr=locus.mr, feh=locus.feh, colours=locus.colours[..., :3],
                        colour_names=("ug", "gr", "ri"))
    with pytest.raises(ValueError, match="has 3 colours"):
        BayesianPhotoD(locus=short, prior_maps=maps).fit()
    far = PriorMaps(r_centres=[18.0], mr=[20.0, 21.0], feh=[0.0, 0.1], density=np.ones((1, 2, 2)))
    with pytest.raises(ValueError, match="do not overlap"):
        BayesianPhotoD(locus=locus, prior_maps=far).fit()
    with pytest.raises(NotFittedError):
        BayesianPhotoD(locus=locus, prior_maps=maps).predict(
            pd.DataFrame([star_at(locus, 5, 5, 0.1)]))


# --------------------------------------------------------------------------
# Bad input policies
# --------------------------------------------------------------------------
def test_missing_column_is_named(fitted, toy_catalog):
    with pytest.raises(ValueError, match="Missing column 'riErr' for colour error"):
        fitted.predict(toy_catalog.drop(columns="riErr"))
    twin = clone(fitted)
    with pytest.raises(ValueError, match="Missing column 'Ar_max'"):
        twin.fit(toy_catalog.drop(columns="Ar_max"))
    assert not hasattr(twin, "log_prior_")  # nothing half-fitted
    with pytest.raises(ValueError, match="0 sample"):
        fitted.predict(toy_catalog.iloc[:0])


def test_nan_colour_raises_or_gives_nan_row(fitted, toy_catalog):
    cat = toy_catalog.iloc[:12].copy()
    cat.index = cat.index + 100
    cat.iloc[4, cat.columns.get_loc("gr")] = np.nan
    cat.iloc[7, cat.columns.get_loc("izErr")] = np.inf
    msg = r"Column 'gr' has 1 NaN value\(s\) \(first at row 4, index 104\)"
    with pytest.raises(ValueError, match=msg):
        fitted.predict(cat)
    est = clone(fitted).set_params(on_invalid="nan").fit()
    post = est.predict_posterior(cat)
    bad = post.index.isin([104, 107])
    assert post.loc[bad, ["Mr", "FeH", "Ar", "DM", "chi2_min"]].isna().all().all()
    assert (post.loc[bad, "r_bin"] == -1).all()
    ref = fitted.predict_posterior(cat[~bad])
    pd.testing.assert_frame_equal(post[~bad], ref)


def test_non_positive_errors_and_ar_max(fitted, toy_catalog):
    cat = toy_catalog.iloc[:5].copy()
    cat.iloc[2, cat.columns.get_loc("ugErr")] = 0.0
    with pytest.raises(ValueError, match=r"Column 'ugErr' has 1 non-positive .*row 2.*> 0"):
        fitted.predict(cat)
    cat = toy_catalog.iloc[:5].copy()
    cat.iloc[1, cat.columns.get_loc("Ar_max")] = -0.1
    with pytest.raises(ValueError, match=r"Column 'Ar_max' .* row 1.*Ar_max > 0"):
        fitted.predict(cat)
    est = clone(fitted).set_params(on_invalid="nan").fit()
    assert np.isnan(est.predict(cat)[1]).all() and np.isfinite(est.predict(cat)[[0, 2, 3, 4]]).all()


def test_r_outside_prior_range(fitted, toy, toy_catalog):
    locus, maps = toy
    cat = toy_catalog.iloc[:3].copy()
    cat.iloc[1, cat.columns.get_loc("rmag")] = 30.0  # beyond the last bin (22 +/- 0.5)
    post = fitted.predict_posterior(cat)  # default r_policy="clip": the last bin
    assert post["r_bin"].iloc[1] == maps.n_bins - 1
    assert np.isfinite(post.iloc[1][["Mr", "FeH", "Ar"]]).all()
    est = clone(fitted).set_params(r_policy="raise").fit()
    with pytest.raises(ValueError, match=r"Column 'rmag' has 1 value\(s\) outside .* row 1"):
        est.predict(cat)


# --------------------------------------------------------------------------
# scikit-learn API: clone, params, persistence
# --------------------------------------------------------------------------
def test_clone_params_and_joblib_round_trip(fitted, toy_catalog, tmp_path):
    params = fitted.get_params()
    assert params["batch_size"] == 128 and params["ar_integration"] == "analytic"
    twin = clone(fitted)
    assert not hasattr(twin, "log_prior_")
    assert twin.get_params()["mag_column"] == "rmag"
    np.testing.assert_allclose(twin.fit().predict(toy_catalog.iloc[:10]),
                               fitted.predict(toy_catalog.iloc[:10]))
    path = tmp_path / "teacher.joblib"
    joblib.dump(fitted, path)
    loaded = joblib.load(path)
    pd.testing.assert_frame_equal(loaded.predict_posterior(toy_catalog),
                                  fitted.predict_posterior(toy_catalog))
    y = toy_catalog[["Mr_true", "FeH_true", "Ar_true"]].to_numpy()
    assert np.isfinite(fitted.score(toy_catalog, y))


# --------------------------------------------------------------------------
# Real locus, priors and Stripe 82 stars (skipped when the data are absent)
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_grids():
    if find_shared_data("photod") is None:
        pytest.skip("photod data not found in ../shared/data")
    return load_locus(), load_prior_maps()


def test_recovers_truth_with_real_locus_and_priors(real_grids):
    locus, maps = real_grids
    cat = make_lsst_catalog(300, locus=locus, prior_maps=maps, r_range=(14, 24),
                            ar_distribution="uniform", random_state=5)
    post = BayesianPhotoD(locus=locus, prior_maps=maps).fit(cat).predict_posterior(cat)
    assert np.isfinite(post.to_numpy()).all()
    # paper, Table 1 (Bayes vs truth, TRILEGAL stars): robust std 0.28 mag in Mr
    check_recovery(cat, post, max_rstd_mr=0.4)
    assert robust_std(post["Ar"] - cat["Ar_true"]) < 0.08


def test_runs_on_real_stripe82_stars(real_grids):
    locus, _ = real_grids
    pytest.importorskip("pyarrow")
    stars = load_stripe82_sample().iloc[:200]
    est = BayesianPhotoD(locus=locus, prior_maps=load_stripe82_priors(0),
                         quantiles=(0.16, 0.84)).fit(stars)
    post = est.predict_posterior(stars)
    assert np.isfinite(post.to_numpy()).all()
    assert post["Mr"].between(-2.0, 15.9).all() and post["FeH"].between(-2.5, 0.5).all()
    assert (post["Ar"] >= 0).all() and (post["Ar"] <= stars["Ar_max"]).all()
    # SDSS stars sit on the SDSS locus: small chi2 for most
    assert np.median(post["chi2_min"]) < 5.0
    # distances from ~100 pc (bright M dwarfs) to the halo
    assert post["dist_pc"].between(10, 2e5).all()
    # the posterior A_r of this high-latitude field is close to the SFD value (0.19-0.33)
    assert abs(np.median(post["Ar"] - stars["Ar"])) < 0.1
