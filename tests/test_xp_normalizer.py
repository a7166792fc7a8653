"""CovariantFeatures, CovariantStandardScaler and XPNormalizer (Gaia XP, Sect. 2.2)."""

import pickle

import numpy as np
import pytest

from skstellar.covariance import CovariantFeatures, pack_lower, unpack_lower
from skstellar.preprocessing.scaling import CovariantStandardScaler
from skstellar.preprocessing.xp import XPNormalizer, normalise_xp_coefficients


def _random_cov(rng, n, k, scale):
    A = rng.normal(size=(n, k, k)) / np.sqrt(k)
    C = A @ np.swapaxes(A, 1, 2) + 0.2 * np.eye(k)
    return C * scale[:, :, None] * scale[:, None, :]


def _corr_from_cov(C):
    e = np.sqrt(np.einsum("nii->ni", C))
    R = C / e[:, :, None] / e[:, None, :]
    i, j = np.tril_indices(C.shape[1], -1)
    return e, R[:, i, j].astype(np.float32)


def _xp_dict(rng, n=6, k=8, with_phot=True):
    """A small archive-like XP table as a dict of 2-D arrays."""
    rp = rng.normal(size=(n, k)) * 50.0
    rp[:, 0] = rng.uniform(2e3, 2e4, n)
    bp = rng.normal(size=(n, k)) * 50.0
    bp[:, 0] = rng.uniform(1e3, 1e4, n)
    table = {"source_id": np.arange(n) + 1000}
    for name, c in (("bp", bp), ("rp", rp)):
        C = _random_cov(rng, n, k, np.full((n, k), 5.0))
        e, r = _corr_from_cov(C)
        table[f"{name}_coefficients"] = c
        table[f"{name}_coefficient_errors"] = e
        table[f"{name}_coefficient_correlations"] = r
    if with_phot:
        table.update({
            "phot_bp_mean_mag": rng.uniform(12, 14, n), "phot_rp_mean_mag": rng.uniform(11, 13, n),
            "phot_bp_mean_flux_over_error": rng.uniform(200, 900, n),
            "phot_rp_mean_flux_over_error": rng.uniform(200, 900, n),
            "j_m": rng.uniform(10, 11, n), "h_m": rng.uniform(9.5, 10.5, n),
            "j_msigcom": np.full(n, 0.02), "h_msigcom": np.full(n, 0.03),
            "w1mpro": rng.uniform(9, 10, n), "w2mpro": rng.uniform(9, 10, n),
            "w1sigmpro": np.full(n, 0.02), "w2sigmpro": np.full(n, 0.025),
            "parallax": rng.uniform(0.5, 3, n), "parallax_error": np.full(n, 0.05),
        })
    return table


# ----------------------------------------------------------- container
def test_covariant_features_slicing_and_array_protocol():
    rng = np.random.RandomState(0)
    v = rng.normal(size=(7, 4))
    C = _random_cov(rng, 7, 4, np.ones((7, 4)))
    X = CovariantFeatures.from_dense(v, C, feature_names=list("abcd"))
    assert X.shape == (7, 4) and len(X) == 7
    np.testing.assert_array_equal(np.asarray(X), v)
    sub = X[np.array([5, 1])]
    np.testing.assert_allclose(sub.covariance(), C[[5, 1]], rtol=1e-6)
    np.testing.assert_allclose(X[2:4].values, v[2:4])
    mask = np.zeros(7, bool)
    mask[[0, 6]] = True
    np.testing.assert_allclose(X[mask].values, v[[0, 6]])
    np.testing.assert_allclose(X[np.array([3]), ...].values, v[[3]])  # sklearn's X[key, ...]
    with pytest.raises(IndexError, match="rows"):
        X[:, 1]
    np.testing.assert_allclose(X.variance(), np.einsum("nii->ni", C), rtol=1e-6)
    again = pickle.loads(pickle.dumps(X))
    np.testing.assert_array_equal(again.blocks[0][1], X.blocks[0][1])


def test_sklearn_splitters_keep_rows_aligned():
    from sklearn.model_selection import KFold, train_test_split
    from sklearn.utils import _safe_indexing

    rng = np.random.RandomState(1)
    v = rng.normal(size=(20, 3))
    X = CovariantFeatures.from_variance(v, np.abs(v) + 1.0)
    y = np.arange(20.0)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    assert isinstance(Xtr, CovariantFeatures)
    idx = ytr.astype(int)
    np.testing.assert_allclose(Xtr.values, v[idx])
    np.testing.assert_allclose(Xtr.variance(), np.abs(v[idx]) + 1.0, rtol=1e-6)
    for tr, te in KFold(4).split(X):
        part = _safe_indexing(X, te)
        np.testing.assert_allclose(part.variance(), np.abs(v[te]) + 1.0, rtol=1e-6)


def test_affine_transforms_covariance_consistently():
    rng = np.random.RandomState(2)
    v = rng.normal(size=(5, 3))
    C = _random_cov(rng, 5, 3, np.ones((5, 3)))
    X = CovariantFeatures.from_dense(v, C)
    mu, s = np.array([1.0, -2.0, 0.5]), np.array([2.0, 0.1, 5.0])
    Z = X.affine(mu, s)
    np.testing.assert_allclose(Z.values, (v - mu) / s)
    S_inv = np.diag(1 / s)
    np.testing.assert_allclose(Z.covariance(), S_inv @ C @ S_inv, rtol=1e-5)
    sel = X.select_features([2, 0])
    np.testing.assert_allclose(sel.covariance(), C[:, [2, 0]][:, :, [2, 0]], rtol=1e-6)
    both = CovariantFeatures.hstack([X, CovariantFeatures.from_variance(v[:, :1], np.ones((5, 1)))])
    assert both.shape == (5, 4) and len(both.blocks) == 2
    np.testing.assert_allclose(both.variance()[:, 3], 1.0)


def test_pack_unpack_round_trip():
    rng = np.random.RandomState(3)
    C = _random_cov(rng, 4, 6, np.ones((4, 6)))
    np.testing.assert_allclose(unpack_lower(pack_lower(C, np.float64)), C)
    with pytest.raises(ValueError, match="does not match"):
        unpack_lower(np.zeros((2, 5)), 3)


def test_covariant_standard_scaler():
    rng = np.random.RandomState(4)
    v = rng.normal(loc=3, scale=[1, 10, 0.1], size=(200, 3))
    C = _random_cov(rng, 200, 3, np.ones((200, 3)) * 0.01)
    X = CovariantFeatures.from_dense(v, C)
    sc = CovariantStandardScaler().fit(X)
    Z = sc.transform(X)
    np.testing.assert_allclose(Z.values.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.values.std(0), 1, rtol=1e-12)
    S = np.diag(1 / sc.scale_)
    np.testing.assert_allclose(Z.covariance(np.arange(3)), S @ C[:3] @ S, rtol=1e-5)
    back = sc.inverse_transform(Z)
    np.testing.assert_allclose(back.values, v)
    np.testing.assert_allclose(back.covariance(np.arange(3)), C[:3], rtol=1e-5)
    # plain arrays work too (no covariance)
    np.testing.assert_allclose(sc.transform(v), Z.values)


# ------------------------------------------------------ normalisation
@pytest.mark.parametrize("mode", ["exact", "paper"])
def test_normalisation_matches_monte_carlo(mode):
    """Draws from the raw covariance, normalised, reproduce the propagated covariance."""
    rng = np.random.RandomState(5)
    k = 6
    bp = rng.normal(size=(1, k)) * 100
    rp = rng.normal(size=(1, k)) * 100
    rp[0, 0] = 3000.0
    bp[0, 0] = 2000.0
    Cb = _random_cov(rng, 1, k, np.full((1, k), 20.0))
    Cr = _random_cov(rng, 1, k, np.full((1, k), 20.0))
    y_bp, y_rp, blocks = normalise_xp_coefficients(bp, Cb, rp, Cr, covariance=mode)
    m = 200_000
    db = rng.multivariate_normal(bp[0], Cb[0], size=m)
    dr = rng.multivariate_normal(rp[0], Cr[0], size=m)
    feats = np.hstack([dr[:, 1:] / dr[:, :1], db / dr[:, :1]])
    emp = np.cov(feats, rowvar=False)
    np.testing.assert_allclose(feats.mean(0), np.hstack([y_rp[0], y_bp[0]]),
                               atol=3e-3 * np.abs(feats).mean())
    dense = np.zeros_like(emp)
    for cols, S in blocks:
        dense[np.ix_(cols, cols)] = S[0]
    sd = np.sqrt(np.diag(emp))
    tol = 0.02 * np.outer(sd, sd)  # ~MC precision of 2e5 draws, relative to the scales
    rp_cols = np.arange(k - 1)
    np.testing.assert_array_less(np.abs(dense - emp)[np.ix_(rp_cols, rp_cols)],
                                 tol[np.ix_(rp_cols, rp_cols)])
    if mode == "exact":
        np.testing.assert_array_less(np.abs(dense - emp), tol)
    else:
        # the paper's BP block neglects the RP0 uncertainty: close but only
        # to the size of that term, and no BP-RP cross terms.
        bp_cols = np.arange(k - 1, 2 * k - 1)
        neglected = np.outer(y_bp[0], y_bp[0]) * Cr[0, 0, 0] / rp[0, 0] ** 2
        diff = np.abs(dense - emp)[np.ix_(bp_cols, bp_cols)]
        np.testing.assert_array_less(diff, tol[np.ix_(bp_cols, bp_cols)] + 1.5 * np.abs(neglected))


@pytest.mark.parametrize("mode", ["paper", "exact"])
def test_transform_equals_dense_reference(mode):
    """XPNormalizer's packed-triangle path equals normalise_xp_coefficients."""
    from skstellar.io import correlation_to_covariance

    rng = np.random.RandomState(11)
    t = _xp_dict(rng, n=5, k=7, with_phot=False)
    t["rp_coefficients"][3, 0] = 0.0  # the zero-RP0 fallback goes through too
    Z = XPNormalizer(photometry=False, covariance=mode).fit_transform(t)
    Cb = correlation_to_covariance(t["bp_coefficient_errors"], t["bp_coefficient_correlations"])
    Cr = correlation_to_covariance(t["rp_coefficient_errors"], t["rp_coefficient_correlations"])
    y_bp, y_rp, blocks = normalise_xp_coefficients(
        t["bp_coefficients"], Cb, t["rp_coefficients"], Cr, covariance=mode)
    np.testing.assert_allclose(Z.values, np.hstack([y_rp, y_bp]))
    dense = np.zeros((5, 13, 13))
    for cols, S in blocks:
        dense[:, cols[:, None], cols[None, :]] = S
    np.testing.assert_allclose(Z.covariance(), dense, rtol=2e-5, atol=1e-6 * np.abs(dense).max())


@pytest.mark.parametrize("mode", ["paper", "exact"])
def test_chunked_threaded_transform_equals_one_chunk(mode):
    """Chunks (run on parallel threads) and scattered rows give the one-chunk result."""
    from skstellar.nn.threads import torch_threads

    rng = np.random.RandomState(12)
    t = _xp_dict(rng, n=23, k=6, with_phot=False)
    t["rp_coefficients"][4, 0] = 0.0
    one = XPNormalizer(photometry=False, covariance=mode, chunk_size=1000).fit_transform(t)
    with torch_threads(2):
        many = XPNormalizer(photometry=False, covariance=mode, chunk_size=4).fit_transform(t)
    np.testing.assert_array_equal(many.values, one.values)
    for (_, a), (_, b) in zip(many.blocks, one.blocks):
        np.testing.assert_array_equal(a, b)
    # rows without a band make the chunks non-contiguous (gather/scatter path)
    t["bp_coefficients"][[2, 9], :] = np.nan
    Z = XPNormalizer(photometry=False, covariance=mode, missing_band="nan",
                     chunk_size=4).fit_transform(t)
    keep = np.setdiff1d(np.arange(23), [2, 9])
    assert np.all(np.isnan(Z.values[[2, 9]]))
    np.testing.assert_array_equal(Z.values[keep], one.values[keep])
    for (_, a), (_, b) in zip(Z.blocks, one.blocks):
        np.testing.assert_array_equal(a[keep], b[keep])
        assert np.all(np.isnan(a[[2, 9]]))


def test_zero_rp0_uses_its_uncertainty():
    rng = np.random.RandomState(6)
    k = 4
    bp, rp = rng.normal(size=(2, k)), rng.normal(size=(2, k))
    rp[0, 0] = 0.0
    Cb, Cr = _random_cov(rng, 2, k, np.ones((2, k))), _random_cov(rng, 2, k, np.ones((2, k)))
    y_bp, y_rp, blocks = normalise_xp_coefficients(bp, Cb, rp, Cr)
    e0 = np.sqrt(Cr[0, 0, 0])
    np.testing.assert_allclose(y_bp[0], bp[0] / e0)
    np.testing.assert_allclose(blocks[1][1][0], Cb[0] / e0**2)
    np.testing.assert_allclose(y_bp[1], bp[1] / rp[1, 0])


def test_xp_normalizer_on_array_table():
    rng = np.random.RandomState(7)
    t = _xp_dict(rng, n=5, k=8)
    norm = XPNormalizer().fit(t)
    Z = norm.transform(t)
    assert isinstance(Z, CovariantFeatures)
    assert Z.shape == (5, 2 * 8 - 1 + 5)
    names = norm.get_feature_names_out()
    assert names[0] == "rp_1" and names[7] == "bp_0" and names[-1] == "pseudo_abs_mag"
    np.testing.assert_allclose(Z.values[:, 7],
                               t["bp_coefficients"][:, 0] / t["rp_coefficients"][:, 0])
    np.testing.assert_allclose(
        Z.values[:, -1], t["parallax"] * 10 ** (0.2 * t["phot_rp_mean_mag"]))
    np.testing.assert_allclose(Z.values[:, -2], t["h_m"] - t["w2mpro"])
    assert np.all(Z.variance() > 0)
    exact = XPNormalizer(covariance="exact", photometry=False).fit_transform(t)
    assert exact.shape == (5, 15) and len(exact.blocks) == 1
    np.testing.assert_allclose(exact.values, Z.values[:, :15])


def test_photometric_covariance_matches_monte_carlo():
    rng = np.random.RandomState(8)
    t = _xp_dict(rng, n=1, k=4)
    Z = XPNormalizer().fit_transform(t)
    cov = Z.covariance()[0, -5:, -5:]
    m = 200_000
    fe = 2.5 / np.log(10)
    s = {"bp": fe / t["phot_bp_mean_flux_over_error"][0],
         "rp": fe / t["phot_rp_mean_flux_over_error"][0]}
    d = lambda mu, sig: mu + sig * rng.normal(size=m)  # noqa: E731
    BP, RP = d(t["phot_bp_mean_mag"][0], s["bp"]), d(t["phot_rp_mean_mag"][0], s["rp"])
    J, H = d(t["j_m"][0], 0.02), d(t["h_m"][0], 0.03)
    W1, W2 = d(t["w1mpro"][0], 0.02), d(t["w2mpro"][0], 0.025)
    plx = d(t["parallax"][0], 0.05)
    F = np.stack([BP - RP, W1 - W2, J - H, H - W2, plx * 10 ** (0.2 * RP)], 1)
    emp = np.cov(F, rowvar=False)
    sd = np.sqrt(np.diag(emp))
    np.testing.assert_array_less(np.abs(cov - emp), 0.02 * np.outer(sd, sd))


def test_xp_normalizer_bad_input():
    rng = np.random.RandomState(9)
    t = _xp_dict(rng, n=4, k=6)
    with pytest.raises(ValueError, match="plain array"):
        XPNormalizer().fit(np.zeros((3, 4)))
    bad = dict(t)
    del bad["rp_coefficient_correlations"]
    with pytest.raises(ValueError, match="rp_coefficient_correlations"):
        XPNormalizer().fit(bad)
    nan = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in t.items()}
    nan["bp_coefficients"][2, :] = np.nan  # a source without BP
    with pytest.raises(ValueError, match="lack BP or RP.*source_id 1002"):
        XPNormalizer().fit_transform(nan)
    Z = XPNormalizer(missing_band="nan").fit_transform(nan)
    assert np.isnan(Z.values[2, :11]).all() and np.isfinite(Z.values[[0, 1, 3]]).all()
    part = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in t.items()}
    part["bp_coefficients"][1, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        XPNormalizer().fit_transform(part)
    # a correlation vector in the wrong (upper, column-wise) order is not PSD
    npd = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in t.items()}
    npd["rp_coefficient_correlations"][0] = 0.95 * np.sign(rng.normal(size=15))
    with pytest.raises(ValueError, match="not positive semi-definite.*source_id 1000"):
        XPNormalizer().fit_transform(npd)
    rep = XPNormalizer(check_covariance="repair").fit_transform(npd)
    assert np.all(np.linalg.eigvalsh(rep.block_matrices(0, [0])) > -1e-6)
    mism = dict(t)
    mism["bp_coefficients"] = t["bp_coefficients"][:, :5]
    mism["bp_coefficient_errors"] = t["bp_coefficient_errors"][:, :5]
    mism["bp_coefficient_correlations"] = t["bp_coefficient_correlations"][:, :10]
    with pytest.raises(ValueError, match="BP has 5 coefficients but RP has 6"):
        XPNormalizer().fit(mism)
    nophot = dict(t)
    del nophot["w2mpro"]
    with pytest.raises(ValueError, match="w2mpro"):
        XPNormalizer().fit_transform(nophot)
    assert XPNormalizer(photometry=False).fit_transform(nophot).shape == (4, 11)
    with pytest.raises(ValueError, match="n_coefficients"):
        XPNormalizer(n_coefficients=9).fit(t)
    assert XPNormalizer(n_coefficients=3, photometry=False).fit_transform(t).shape == (4, 5)


# ------------------------------------------------------ real Gaia files
def _xp_folder():
    from skstellar.io import find_shared_data

    folder = find_shared_data("gaia_xp")
    if folder is None:
        pytest.skip("../shared/data/gaia_xp not available")
    return folder


def test_normalizer_on_real_xp_matches_monte_carlo():
    """Real DR3 covariances: MC draws, normalised, reproduce the exact propagation."""
    from skstellar.io import read_xp_continuous, xp_covariance

    t = read_xp_continuous(_xp_folder() / "XP_CONTINUOUS_RAW.csv")
    Z = XPNormalizer(photometry=False, covariance="exact").fit_transform(t)
    assert Z.shape == (len(t), 109)
    paper = XPNormalizer(photometry=False).fit_transform(t)
    np.testing.assert_allclose(paper.values, Z.values)
    rng = np.random.default_rng(0)
    for row in range(len(t)):
        bp, rp = t["bp_coefficients"][row], t["rp_coefficients"][row]
        Cb, Cr = xp_covariance(t, "bp")[row], xp_covariance(t, "rp")[row]
        m = 100_000
        db = rng.multivariate_normal(bp, Cb, size=m, method="cholesky")
        dr = rng.multivariate_normal(rp, Cr, size=m, method="cholesky")
        feats = np.hstack([dr[:, 1:] / dr[:, :1], db / dr[:, :1]])
        emp = np.cov(feats, rowvar=False)
        prop = Z.covariance([row])[0]
        sd = np.sqrt(np.diag(emp))
        # compare as correlations and variance ratios (MC precision ~1/sqrt(m))
        np.testing.assert_allclose(np.diag(prop) / np.diag(emp), 1.0, atol=0.03)
        corr_p = prop / np.outer(np.sqrt(np.diag(prop)), np.sqrt(np.diag(prop)))
        corr_e = emp / np.outer(sd, sd)
        assert np.max(np.abs(corr_p - corr_e)) < 0.03
        # the paper's RP block is the exact one; its BP variances lack exactly
        # the RP0 term y_i^2 Var(c0) / c0^2 (up to ~15 per cent of bp_0's variance
        # for these sources)
        pp = paper.covariance([row])[0]
        np.testing.assert_allclose(pp[:54, :54], prop[:54, :54], rtol=1e-5, atol=1e-12)
        neglected = (bp / rp[0]) ** 2 * Cr[0, 0] / rp[0] ** 2
        np.testing.assert_allclose(np.diag(prop)[54:] - np.diag(pp)[54:], neglected,
                                   rtol=1e-3, atol=1e-6 * np.diag(prop)[54:].max())


def test_normalizer_real_formats_and_missing_band():
    from skstellar.io import read_xp_continuous

    folder = _xp_folder()
    csv = XPNormalizer(photometry=False).fit_transform(
        read_xp_continuous(folder / "XP_CONTINUOUS_RAW.csv"))
    fits = XPNormalizer(photometry=False).fit_transform(
        read_xp_continuous(folder / "XP_CONTINUOUS_RAW.fits"))
    np.testing.assert_allclose(csv.values, fits.values, rtol=1e-12)
    np.testing.assert_allclose(csv.variance(), fits.variance(), rtol=1e-6)
    miss = read_xp_continuous(folder / "XP_CONTINUOUS_RAW_with_missing_BP.csv")
    with pytest.raises(ValueError, match="source_id 5405570973190252288"):
        XPNormalizer(photometry=False).fit_transform(miss)
    Z = XPNormalizer(photometry=False, missing_band="nan").fit_transform(miss)
    bad = np.asarray(miss["source_id"]) == 5405570973190252288
    assert np.isnan(Z.values[bad]).all() and np.isfinite(Z.values[~bad]).all()
    # features are brightness-free: RP0-normalised values are O(1), not e-/s
    assert np.abs(csv.values).max() < 10
