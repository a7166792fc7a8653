"""Tests for skstellar.datasets.gaia_xp: the simulated Gaia XP + photometry + label catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.polynomial.hermite import hermval
from scipy.special import factorial
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skstellar.datasets.gaia_xp import (
    XP_LABELS,
    XP_N_SAMPLES,
    hermite_functions,
    make_xp_catalog,
    xp_design_matrix,
    xp_wavelength_grid,
)
from skstellar.io import find_shared_data

K = 55
ARRAY_COLUMNS = ("coefficients", "coefficient_errors", "coefficient_correlations")
PHOTOMETRY = (
    "phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag",
    "phot_g_mean_flux_over_error", "phot_bp_mean_flux_over_error",
    "phot_rp_mean_flux_over_error", "parallax", "parallax_error",
    "j_m", "h_m", "j_msigcom", "h_msigcom",
    "w1mpro", "w2mpro", "w1sigmpro", "w2sigmpro",
)


def stack(column):
    """(n, len) float array from an object column of 1-D arrays (no None allowed)."""
    return np.stack(column.to_numpy())


def rebuild_correlation(vectors, k):
    """(n, k, k) correlation matrices from strict-lower-triangle vectors (row by row)."""
    ti, tj = np.tril_indices(k, -1)
    r = np.zeros((len(vectors), k, k))
    r[:, ti, tj] = vectors
    r += r.transpose(0, 2, 1)
    r[:, np.arange(k), np.arange(k)] = 1.0
    return r


@pytest.fixture(scope="module")
def sim():
    return make_xp_catalog(2000, random_state=11, return_truth=True)


# ----------------------------------------------------------------------------- basis


def test_hermite_functions_match_definition_and_are_orthonormal():
    x = np.linspace(-14.0, 14.0, 8001)
    psi = hermite_functions(60, x)
    gram = psi @ psi.T * (x[1] - x[0])
    np.testing.assert_allclose(gram, np.eye(60), atol=1e-9)
    # Explicit psi_n = H_n(x) exp(-x^2/2) / sqrt(2^n n! sqrt(pi)) for low orders.
    for n in (0, 1, 2, 5, 12):
        coef = np.zeros(n + 1)
        coef[n] = 1.0
        explicit = hermval(x, coef) * np.exp(-0.5 * x**2) / np.sqrt(
            2.0**n * factorial(n) * np.sqrt(np.pi)
        )
        np.testing.assert_allclose(psi[n], explicit, atol=1e-12)
    with pytest.raises(ValueError, match="n_functions"):
        hermite_functions(0, x)
    with pytest.raises(ValueError, match="finite"):
        hermite_functions(3, [0.0, np.nan])


def test_design_matrix_and_wavelength_grid():
    for band, (lo, hi) in {"bp": (-9.800, 9.467), "rp": (-9.933, 9.600)}.items():
        a = xp_design_matrix(band)
        assert a.shape == (K, XP_N_SAMPLES)
        x = np.linspace(lo, hi, XP_N_SAMPLES)
        np.testing.assert_allclose(a[0], np.pi**-0.25 * np.exp(-0.5 * x**2))
        assert xp_design_matrix(band, 10).shape == (10, XP_N_SAMPLES)
        lam = xp_wavelength_grid(band)
        assert lam.shape == (XP_N_SAMPLES,) and np.all(np.diff(lam) > 0)
        # Finer dispersion in the blue, as in Gaia's prisms.
        assert np.diff(lam)[0] < np.diff(lam)[-1]
    assert xp_wavelength_grid("bp")[0] < 330 and xp_wavelength_grid("rp")[-1] > 1040
    with pytest.raises(ValueError, match="band"):
        xp_design_matrix("g")
    with pytest.raises(ValueError, match="n_coefficients"):
        xp_design_matrix("rp", 56)


# ----------------------------------------------------------------------------- layout


def test_layout_columns_dtypes_and_lengths(sim):
    cat, _ = sim
    expected = {"source_id"} | set(PHOTOMETRY)
    for b in ("bp", "rp"):
        expected |= {f"{b}_{c}" for c in ARRAY_COLUMNS}
        expected |= {f"{b}_standard_deviation", f"{b}_n_parameters"}
    expected |= set(XP_LABELS) | {f"{name}_err" for name in XP_LABELS}
    assert set(cat.columns) == expected
    assert len(cat) == 2000
    assert cat["source_id"].dtype == np.int64 and cat["source_id"].is_unique
    assert (cat["source_id"] > 0).all()
    for b in ("bp", "rp"):
        for c, dtype, length in zip(ARRAY_COLUMNS, (np.float64, np.float64, np.float32),
                                    (K, K, K * (K - 1) // 2)):
            col = cat[f"{b}_{c}"]
            assert col.dtype == object
            first, last = col.iloc[0], col.iloc[-1]
            for item in (first, last):
                assert isinstance(item, np.ndarray) and item.ndim == 1
                assert item.dtype == dtype and item.shape == (length,)
            assert np.isfinite(stack(col)).all()
        assert (stack(cat[f"{b}_coefficient_errors"]) > 0).all()
        assert (cat[f"{b}_n_parameters"] == K).all() and cat[f"{b}_n_parameters"].dtype == np.int64
        sd = cat[f"{b}_standard_deviation"]
        assert sd.between(0.9, 1.5).all() and 1.0 < sd.median() < 1.1
    numeric = cat[list(PHOTOMETRY) + list(XP_LABELS)].to_numpy()
    assert np.isfinite(numeric).all()
    # Observed G spans the requested range (true G is drawn inside it).
    assert cat["phot_g_mean_mag"].between(8.95, 17.55).all()


def test_n_coefficients_and_label_subset():
    cat = make_xp_catalog(40, n_coefficients=12, labels=("fe_h", "teff"), random_state=0)
    assert cat["rp_coefficients"].iloc[0].shape == (12,)
    assert cat["bp_coefficient_correlations"].iloc[0].shape == (66,)
    assert (cat["bp_n_parameters"] == 12).all()
    assert {"fe_h", "fe_h_err", "teff", "teff_err"} <= set(cat.columns)
    assert not {"logg", "alpha_m", "c_fe", "n_fe"} & set(cat.columns)
    # A label subset does not change the values of the labels it keeps.
    full = make_xp_catalog(40, n_coefficients=12, random_state=0)
    np.testing.assert_array_equal(cat["fe_h"], full["fe_h"])
    none = make_xp_catalog(5, labels=(), random_state=0)
    assert not set(XP_LABELS) & set(none.columns)


# ----------------------------------------------------------------------------- randomness


def _assert_catalogues_equal(a, b):
    assert list(a.columns) == list(b.columns)
    for col in a.columns:
        if a[col].dtype == object:
            np.testing.assert_array_equal(stack(a[col]), stack(b[col]))
        else:
            np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy())


def test_seeded_reproducibility():
    a, ta = make_xp_catalog(120, random_state=3, return_truth=True)
    b, tb = make_xp_catalog(120, random_state=np.random.RandomState(3), return_truth=True)
    _assert_catalogues_equal(a, b)
    _assert_catalogues_equal(ta, tb)
    c = make_xp_catalog(120, random_state=4)
    assert not np.allclose(a["teff"], c["teff"])
    assert not np.allclose(stack(a["rp_coefficients"]), stack(c["rp_coefficients"]))


# ----------------------------------------------------------------------------- covariance


def test_correlations_rebuild_positive_definite_matrices(sim):
    cat, _ = sim
    g = cat["phot_g_mean_mag"].to_numpy()
    pick = np.r_[np.argsort(g)[:150], np.argsort(g)[-150:]]  # brightest and faintest
    for b in ("bp", "rp"):
        vec = stack(cat[f"{b}_coefficient_correlations"].iloc[pick]).astype(np.float64)
        assert np.abs(vec).max() < 1.0
        r = rebuild_correlation(vec, K)
        np.linalg.cholesky(r)  # raises LinAlgError if any matrix is not positive definite
        assert np.linalg.eigvalsh(r)[:, 0].min() > 1e-3
        e = stack(cat[f"{b}_coefficient_errors"].iloc[pick])
        np.linalg.cholesky(e[:, :, None] * r * e[:, None, :])
        # Correlated, not diagonal: typical |rho| of a few per cent, some strong.
        assert 0.02 < np.abs(vec).mean() < 0.2
        assert np.abs(vec).max() > 0.3


def test_observed_coefficients_scatter_as_stated(sim):
    cat, truth = sim
    for b in ("bp", "rp"):
        obs = stack(cat[f"{b}_coefficients"])
        true = stack(truth[f"true_{b}_coefficients"])
        err = stack(cat[f"{b}_coefficient_errors"])
        z = (obs - true) / err
        assert abs(z.std() - 1.0) < 0.02
        assert abs(z.mean()) < 0.02
        per_coefficient = z.std(axis=0)
        assert per_coefficient.min() > 0.9 and per_coefficient.max() < 1.1
        # Whitening with the full covariance: chi2 ~ k, so the correlations are right too.
        r = rebuild_correlation(stack(cat[f"{b}_coefficient_correlations"]), K)
        chol = np.linalg.cholesky(r)
        white = np.linalg.solve(chol, z[:, :, None])[:, :, 0]
        chi2 = (white**2).sum(axis=1)
        assert abs(chi2.mean() / K - 1.0) < 0.03
        assert abs(chi2.std() / np.sqrt(2 * K) - 1.0) < 0.15
        # Ignoring the correlations would be visibly wrong.
        assert abs((z**2).sum(axis=1).mean() / K - 1.0) < 0.03
        assert not np.allclose(white, z)


@pytest.mark.parametrize("k", [20, 31])
def test_fewer_coefficients_keep_exact_noise_statistics(k):
    # k <= 30 inverts A W A^T directly, k > 30 uses the Schur complement.
    cat, truth = make_xp_catalog(500, n_coefficients=k, random_state=4, return_truth=True)
    for b in ("bp", "rp"):
        z = (stack(cat[f"{b}_coefficients"]) - stack(truth[f"true_{b}_coefficients"])) / stack(
            cat[f"{b}_coefficient_errors"]
        )
        r = rebuild_correlation(stack(cat[f"{b}_coefficient_correlations"]), k)
        white = np.linalg.solve(np.linalg.cholesky(r), z[:, :, None])[:, :, 0]
        assert abs((white**2).sum(axis=1).mean() / k - 1.0) < 0.05


def test_fainter_stars_have_larger_relative_errors():
    bright = make_xp_catalog(150, g_mag_range=(9.5, 10.5), random_state=1)
    faint = make_xp_catalog(150, g_mag_range=(16.8, 17.5), random_state=1)
    ratios = {}
    for name, cat in (("bright", bright), ("faint", faint)):
        c0 = np.abs(stack(cat["rp_coefficients"])[:, 0])
        ratios[name] = np.median(stack(cat["rp_coefficient_errors"]), axis=1) / c0
    # Gaia-like levels: a few 1e-4 at G ~ 10, a few 1e-3 at G ~ 17.
    assert 2e-4 < np.median(ratios["bright"]) < 2e-3
    assert 1.5e-3 < np.median(ratios["faint"]) < 2e-2
    assert np.median(ratios["faint"]) > 4 * np.median(ratios["bright"])
    # The trend is monotonic across magnitude bins.
    cat = make_xp_catalog(1200, random_state=2)
    g = cat["phot_g_mean_mag"].to_numpy()
    ratio = np.median(stack(cat["bp_coefficient_errors"]), axis=1) / np.abs(
        stack(cat["rp_coefficients"])[:, 0]
    )
    medians = [np.median(ratio[(g >= lo) & (g < lo + 2)]) for lo in (9.5, 11.5, 13.5, 15.5)]
    assert np.all(np.diff(medians) > 0)


def test_noise_scale_scales_errors_exactly():
    a = make_xp_catalog(60, random_state=5)
    b = make_xp_catalog(60, random_state=5, noise_scale=2.0)
    for band in ("bp", "rp"):
        np.testing.assert_allclose(
            stack(b[f"{band}_coefficient_errors"]), 2.0 * stack(a[f"{band}_coefficient_errors"])
        )
        np.testing.assert_allclose(
            stack(b[f"{band}_coefficient_correlations"]),
            stack(a[f"{band}_coefficient_correlations"]), atol=1e-6,
        )


# ----------------------------------------------------------------------------- missing BP


def test_missing_bp_fraction():
    cat, truth = make_xp_catalog(1000, missing_bp_fraction=0.2, random_state=8,
                                 return_truth=True)
    missing = cat["bp_coefficients"].isna().to_numpy()
    assert 0.15 < missing.mean() < 0.25
    np.testing.assert_array_equal(missing, truth["bp_missing"].to_numpy())
    for c in ARRAY_COLUMNS:
        assert cat[f"bp_{c}"][missing].map(lambda v: v is None).all()
        assert cat[f"bp_{c}"][~missing].map(lambda v: isinstance(v, np.ndarray)).all()
        assert cat[f"rp_{c}"].map(lambda v: isinstance(v, np.ndarray)).all()
    assert cat["bp_standard_deviation"][missing].isna().all()
    assert cat["bp_standard_deviation"][~missing].notna().all()
    assert (cat["bp_n_parameters"][missing] == 0).all()
    assert (cat["bp_n_parameters"][~missing] == K).all()
    # The truth keeps the noiseless BP spectrum; BP photometry is still given.
    assert truth["true_bp_coefficients"].map(lambda v: v.shape == (K,)).all()
    assert cat["phot_bp_mean_mag"].notna().all()
    assert not make_xp_catalog(50, random_state=8)["bp_coefficients"].isna().any()


# ----------------------------------------------------------------------------- labels


def test_labels_are_a_deterministic_function_of_noiseless_inputs(sim):
    # (Same seed -> same truth is checked in test_seeded_reproducibility.)
    _, truth = sim
    x = np.hstack([stack(truth["true_bp_coefficients"]), stack(truth["true_rp_coefficients"])])
    x /= x[:, [K]]  # normalise by RP c0 (Sect. 2.2) to remove the apparent brightness
    rng = np.random.default_rng(0)
    shuffled = x[rng.permutation(len(x))]
    train, test = slice(0, 1600), slice(1600, None)
    for label, min_r2 in (("teff", 0.95), ("logg", 0.8), ("fe_h", 0.7)):
        y = truth[f"true_{label}"].to_numpy()
        scores = []
        for features in (x, shuffled):
            model = make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=5))
            model.fit(features[train], y[train])
            scores.append(model.score(features[test], y[test]))
        assert scores[0] > min_r2, (label, scores)
        assert scores[1] < 0.1, (label, scores)


def test_observed_labels_scatter_with_their_errors(sim):
    cat, truth = sim
    assert cat["teff_err"].between(35, 150).all() and 50 < cat["teff_err"].median() < 90
    assert 0.03 < cat["logg_err"].median() < 0.08
    for name in ("fe_h", "c_fe", "n_fe", "alpha_m"):
        assert 0.005 < cat[f"{name}_err"].median() < 0.05
    for name in XP_LABELS:
        z = (cat[name] - truth[f"true_{name}"]) / cat[f"{name}_err"]
        assert abs(z.std() - 1.0) < 0.05 and abs(z.mean()) < 0.08
    exact = make_xp_catalog(30, label_error_scale=0.0, random_state=2, return_truth=True)
    for name in XP_LABELS:
        np.testing.assert_array_equal(exact[0][name], exact[1][f"true_{name}"])
        assert (exact[0][f"{name}_err"] == 0).all()
    double = make_xp_catalog(30, label_error_scale=2.0, random_state=2)
    base = make_xp_catalog(30, random_state=2)
    np.testing.assert_allclose(double["fe_h_err"], 2.0 * base["fe_h_err"])


def test_excess_scatter_is_flagged_and_sized():
    cat, truth = make_xp_catalog(2000, excess_fraction=0.3, excess_scale=4.0,
                                 random_state=9, return_truth=True)
    flag = truth["excess"].to_numpy()
    assert 0.26 < flag.mean() < 0.34
    for name in ("teff", "fe_h"):
        sig = truth[f"excess_sigma_{name}"].to_numpy()
        assert (sig[~flag] == 0).all() and (sig[flag] > 0).all()
        resid = (cat[name] - truth[f"true_{name}"]).to_numpy()
        err = cat[f"{name}_err"].to_numpy()
        # Reported errors under-state the scatter of flagged stars only.
        assert abs(np.std(resid[~flag] / err[~flag]) - 1.0) < 0.06
        assert np.std(resid[flag] / err[flag]) > 2.5
        z = resid / np.sqrt(err**2 + sig**2)
        assert abs(z.std() - 1.0) < 0.06
    clean = make_xp_catalog(200, random_state=9, return_truth=True)[1]
    assert not clean["excess"].any()


# ----------------------------------------------------------------------------- truth


def test_return_truth_structure_and_physics(sim):
    cat, truth = sim
    assert len(truth) == len(cat)
    np.testing.assert_array_equal(truth["source_id"], cat["source_id"])
    expected = {f"true_{name}" for name in XP_LABELS} | {
        "source_id", "mass", "evolutionary_class", "population", "distance_pc", "a_v",
        "true_parallax", "true_phot_g_mean_mag", "true_phot_bp_mean_mag",
        "true_phot_rp_mean_mag", "true_j_m", "true_h_m", "true_w1mpro", "true_w2mpro",
        "true_bp_coefficients", "true_rp_coefficients", "bp_missing", "excess",
    } | {f"excess_sigma_{name}" for name in XP_LABELS}
    assert set(truth.columns) == expected
    assert truth["true_rp_coefficients"].iloc[0].dtype == np.float64
    # Label domain of the brief.
    assert truth["true_teff"].between(3500, 7000).all()
    assert truth["true_logg"].between(1, 5).all()
    assert truth["true_fe_h"].between(-2, 0.5).all()
    assert set(truth["evolutionary_class"]) == {"dwarf", "subgiant", "rgb", "red_clump"}
    giants = truth["true_logg"] < 3.5
    assert 0.3 < giants.mean() < 0.7
    # Galactic chemistry: alpha-rich at low metallicity, C/N mixing in giants.
    metal_poor = truth["true_fe_h"] < -1.0
    alpha = truth["true_alpha_m"]
    assert alpha[metal_poor].mean() > alpha[~metal_poor].mean() + 0.1
    assert truth["true_n_fe"][giants].mean() > truth["true_n_fe"][~giants].mean() + 0.1
    # Geometry and photometry are self-consistent.
    np.testing.assert_allclose(truth["true_parallax"], 1000.0 / truth["distance_pc"])
    assert (truth["a_v"] >= 0).all() and truth["a_v"].max() <= 6.0
    g_true = truth["true_phot_g_mean_mag"]
    assert g_true.between(9.0, 17.5).all()
    sigma_g = 2.5 / np.log(10) / cat["phot_g_mean_flux_over_error"]
    z_g = (cat["phot_g_mean_mag"] - g_true) / sigma_g
    assert abs(z_g.std() - 1.0) < 0.06
    z_plx = (cat["parallax"] - truth["true_parallax"]) / cat["parallax_error"]
    assert abs(z_plx.std() - 1.0) < 0.06
    z_j = (cat["j_m"] - truth["true_j_m"]) / cat["j_msigcom"]
    assert abs(z_j.std() - 1.0) < 0.06
    # Cooler stars are redder (at low extinction), giants are more luminous.
    low = truth["a_v"] < 0.3
    colour = (truth["true_phot_bp_mean_mag"] - truth["true_phot_rp_mean_mag"])[low]
    assert np.corrcoef(colour, truth["true_teff"][low])[0, 1] < -0.9
    abs_g = g_true - 5 * np.log10(truth["distance_pc"] / 10.0)
    assert np.median(abs_g[giants]) < np.median(abs_g[~giants]) - 2.0
    # Noiseless spectra rebuilt from the coefficients are non-negative to ~1 %.
    for b in ("bp", "rp"):
        flux = stack(truth[f"true_{b}_coefficients"]) @ xp_design_matrix(b)
        assert (flux.min(axis=1) > -0.01 * flux.max(axis=1)).all()


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_stars": 0}, "n_stars"),
        ({"n_stars": 2.5}, "n_stars"),
        ({"labels": ("teff", "vsini")}, "vsini"),
        ({"labels": ("teff", "teff")}, "repeat"),
        ({"n_coefficients": 0}, "n_coefficients"),
        ({"n_coefficients": 56}, "n_coefficients"),
        ({"g_mag_range": (17.0, 9.0)}, "g_mag_range"),
        ({"g_mag_range": (1.0, 9.0)}, "g_mag_range"),
        ({"noise_scale": 0.0}, "noise_scale"),
        ({"missing_bp_fraction": 1.0}, "missing_bp_fraction"),
        ({"excess_fraction": 1.5}, "excess_fraction"),
        ({"excess_scale": -1.0}, "excess_scale"),
        ({"label_error_scale": np.nan}, "label_error_scale"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    args = {"n_stars": 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_xp_catalog(args.pop("n_stars"), **args)


# ----------------------------------------------------------------------------- real data


def _parse_array(text):
    return np.array([float(v) for v in str(text).strip("()[] ").split(",")])


@pytest.mark.realdata
def test_error_levels_match_real_dr3_spectra():
    folder = find_shared_data("gaia_xp")
    if folder is None:
        pytest.skip("shared gaia_xp folder not available")
    real = pd.concat(
        [pd.read_csv(folder / name) for name in
         ("XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv")],
        ignore_index=True,
    )
    sim_cat = make_xp_catalog(1500, g_mag_range=(7.0, 17.5), random_state=0)
    c0 = stack(sim_cat["rp_coefficients"])[:, 0]
    sim_ratio = stack(sim_cat["rp_coefficient_errors"])[:, 0] / c0
    sim_corr = np.abs(stack(sim_cat["rp_coefficient_correlations"])).mean(axis=1)
    for _, row in real.iterrows():
        rc = _parse_array(row["rp_coefficients"])
        re = _parse_array(row["rp_coefficient_errors"])
        rr = _parse_array(row["rp_coefficient_correlations"])
        near = np.abs(np.log(c0 / rc[0])) < np.log(1.5)  # simulated stars as bright
        assert near.sum() >= 10
        ratio = np.median(sim_ratio[near]) / (re[0] / rc[0])
        assert 0.7 < ratio < 3.0, (row["source_id"], ratio)
        # Mean |correlation| of the same order as the real spectra.
        assert 0.3 < np.median(sim_corr[near]) / np.abs(rr).mean() < 4.0
