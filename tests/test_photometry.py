"""Tests of skstellar.preprocessing.photometry (absolute magnitudes)."""

import re
import warnings

import astropy.units as u
import joblib
import numpy as np
import pandas as pd
import pytest
from astropy.table import MaskedColumn, QTable, Table
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

from skstellar import columns as C
from skstellar.preprocessing import (
    AbsoluteMagnitudes,
    absolute_magnitude,
    absolute_magnitude_error,
    magnitude_error_from_flux_over_error,
)

LN10 = np.log(10.0)

# The scikit-learn estimator checks of AbsoluteMagnitudes live in tests/test_common.py.


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------
@pytest.fixture
def catalog():
    """Four M dwarfs with the survey column names of skstellar.columns."""
    rng = np.random.default_rng(1)
    n = 4
    df = pd.DataFrame(
        {
            "source_id": np.arange(n) + 10**18,
            C.BAND_COLUMNS["BP"]: [15.1, 14.2, 16.0, 13.3],
            C.BAND_COLUMNS["G"]: [13.9, 13.0, 14.6, 12.1],
            C.BAND_COLUMNS["RP"]: [12.8, 11.9, 13.4, 11.0],
            C.BAND_COLUMNS["J"]: [11.2, 10.4, 11.6, 9.5],
            C.BAND_COLUMNS["H"]: [10.6, 9.8, 11.0, 8.9],
            C.BAND_COLUMNS["Ks"]: [10.4, 9.6, 10.7, 8.6],
            C.BAND_COLUMNS["W1"]: [10.2, 9.4, 10.5, 8.5],
            C.BAND_COLUMNS["W2"]: [10.1, 9.3, 10.3, 8.4],
            "parallax": [25.0, 40.0, 10.0, 100.0],
            "parallax_error": [0.05, 0.08, 0.5, 0.02],
            "ph_qual": ["AAA"] * n,
        },
        index=pd.Index([101, 205, 307, 409], name="star"),
    )
    for band in ("BP", "G", "RP"):
        df[C.BAND_FLUX_OVER_ERROR_COLUMNS[band]] = rng.uniform(100, 2000, n)
    for band in ("J", "H", "Ks", "W1", "W2"):
        df[C.BAND_ERROR_COLUMNS[band]] = rng.uniform(0.01, 0.05, n)
    return df


def _expected_M(df, bands=C.MDWARF_BANDS):
    m = df[[C.BAND_COLUMNS[b] for b in bands]].to_numpy()
    with np.errstate(invalid="ignore"):
        return m + 5 * np.log10(df["parallax"].to_numpy()[:, None] / 100)


# --------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------
def test_absolute_magnitude_known_values():
    # 10 pc: M = m; 100 pc: M = m - 5; 1 kpc: M = m - 10
    M = absolute_magnitude(np.array([10.0, 10.0, 10.0]), np.array([100.0, 10.0, 1.0]))
    np.testing.assert_allclose(M, [10.0, 5.0, 0.0], atol=1e-12)
    assert absolute_magnitude(12.0, 100.0) == pytest.approx(12.0)


def test_absolute_magnitude_invalid_parallax_is_nan():
    M = absolute_magnitude([10.0, 10.0, 10.0, 10.0], [-1.0, 0.0, np.nan, 50.0])
    assert np.isnan(M[:3]).all() and np.isfinite(M[3])


def test_absolute_magnitude_quantities():
    M = absolute_magnitude(10.0 * u.mag, 0.1 * u.arcsec)  # 0.1 arcsec = 100 mas
    assert isinstance(M, u.Quantity) and M.unit == u.mag
    assert M.value == pytest.approx(10.0)
    M_ab = absolute_magnitude(np.array([20.0]) * u.ABmag, np.array([10.0]) * u.mas)
    np.testing.assert_allclose(M_ab.value, [15.0])
    with pytest.raises(ValueError, match="wrong units"):
        absolute_magnitude(1.0 * u.Jy, 10.0)
    with pytest.raises(ValueError, match="wrong units"):
        absolute_magnitude(10.0, 3.0 * u.km)


def test_error_propagation_by_hand():
    m_err, plx, plx_err = 0.03, 20.0, 0.4
    # 5 / ln 10 * 0.4 / 20 = 2.171472 * 0.02 = 0.043429; hypot(0.03, 0.043429) = 0.052784
    expected = np.sqrt(0.03**2 + (5 / LN10 * 0.4 / 20.0) ** 2)
    assert absolute_magnitude_error(m_err, plx, plx_err) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.052784, abs=1e-6)
    q = absolute_magnitude_error(0.03 * u.mag, 0.02 * u.arcsec, 0.4 * u.mas)
    assert q.unit == u.mag and q.value == pytest.approx(expected)
    assert magnitude_error_from_flux_over_error(100.0) == pytest.approx(2.5 / LN10 / 100.0)


def test_error_propagation_monte_carlo():
    rng = np.random.default_rng(42)
    m0, m_err, plx0, plx_err = 12.0, 0.02, 30.0, 0.6  # parallax_over_error = 50
    n = 200_000
    M = absolute_magnitude(rng.normal(m0, m_err, n), rng.normal(plx0, plx_err, n))
    predicted = absolute_magnitude_error(m_err, plx0, plx_err)
    assert np.std(M) == pytest.approx(predicted, rel=0.01)
    assert np.mean(M) == pytest.approx(absolute_magnitude(m0, plx0), abs=0.001)


# --------------------------------------------------------------------------
# Transformer: values and names
# --------------------------------------------------------------------------
def test_dataframe_by_name(catalog):
    am = AbsoluteMagnitudes()
    out = am.fit_transform(catalog)
    assert out.dtype == np.float64 and out.shape == (4, 8)
    np.testing.assert_allclose(out, _expected_M(catalog), rtol=0, atol=1e-12)
    assert list(am.get_feature_names_out()) == list(C.MDWARF_FEATURES)
    assert am.n_features_in_ == catalog.shape[1]
    assert list(am.feature_names_in_) == list(catalog.columns)
    # column order and extra columns do not matter at transform time
    shuffled = catalog[catalog.columns[::-1]].assign(extra=1.0)
    np.testing.assert_allclose(am.transform(shuffled), out)


def test_return_errors_values_and_names(catalog):
    am = AbsoluteMagnitudes(return_errors=True)
    out = am.fit_transform(catalog)
    assert out.shape == (4, 16)
    names = list(am.get_feature_names_out())
    assert names[:8] == list(C.MDWARF_FEATURES)
    assert names[8:] == [f"M_{b}_error" for b in C.MDWARF_BANDS]
    plx, plx_err = catalog["parallax"].to_numpy(), catalog["parallax_error"].to_numpy()
    sig_plx = 5 / LN10 * plx_err / plx
    # Gaia band: sigma_m from flux_over_error
    foe = catalog["phot_g_mean_flux_over_error"].to_numpy()
    expected_g = np.sqrt((2.5 / LN10 / foe) ** 2 + sig_plx**2)
    np.testing.assert_allclose(out[:, 8 + 1], expected_g, rtol=1e-12)
    # 2MASS band: its own error column
    expected_j = np.sqrt(catalog["j_msigcom"].to_numpy() ** 2 + sig_plx**2)
    np.testing.assert_allclose(out[:, 8 + 3], expected_j, rtol=1e-12)
    assert dict(am.error_columns_[i] for i in (1, 3)) == {
        "phot_g_mean_flux_over_error": "flux_over_error",
        "j_msigcom": "magnitude",
    }


def test_distance_modulus_error_output(catalog):
    am = AbsoluteMagnitudes(return_errors=True, distance_error=True)
    out = am.fit_transform(catalog)
    assert out.shape == (4, 17)
    assert list(am.get_feature_names_out())[-1] == "distance_modulus_error"
    plx, plx_err = catalog["parallax"].to_numpy(), catalog["parallax_error"].to_numpy()
    np.testing.assert_allclose(out[:, 16], 5 / LN10 * plx_err / plx, rtol=1e-12)
    # the shared part is inside every band's total error
    assert np.all(out[:, 8:16] >= out[:, 16:17])
    np.testing.assert_allclose(out[:, :16], AbsoluteMagnitudes(return_errors=True)
                               .fit_transform(catalog))
    with pytest.raises(ValueError, match="distance_error=True needs return_errors"):
        AbsoluteMagnitudes(distance_error=True).fit(catalog)


def test_missing_error_column_is_named(catalog):
    with pytest.raises(ValueError, match="Missing column 'w1sigmpro' for the error of band W1"):
        AbsoluteMagnitudes(return_errors=True).fit(catalog.drop(columns="w1sigmpro"))
    with pytest.raises(ValueError, match="Missing column 'parallax_error'"):
        AbsoluteMagnitudes(return_errors=True).fit(catalog.drop(columns="parallax_error"))
    # errors not requested: the error columns are not needed
    AbsoluteMagnitudes().fit(catalog.drop(columns=["w1sigmpro", "parallax_error"]))


def test_missing_band_column_message(catalog):
    with pytest.raises(ValueError) as excinfo:
        AbsoluteMagnitudes().fit(catalog.drop(columns="w1mpro"))
    msg = str(excinfo.value)
    assert "Missing column 'w1mpro' for band W1" in msg
    assert "available columns:" in msg and "phot_g_mean_mag" in msg and "w2mpro" in msg
    # transform checks the same columns exist
    am = AbsoluteMagnitudes().fit(catalog)
    with pytest.raises(ValueError, match="Missing column 'parallax' for the parallax"):
        am.transform(catalog.drop(columns="parallax"))


def test_custom_columns_and_prefix(catalog):
    df = catalog.rename(columns={"phot_g_mean_mag": "G", "j_m": "J", "parallax": "plx"})
    am = AbsoluteMagnitudes(
        bands=["G", "J"], magnitude_columns={"G": "G", "J": "J"}, parallax_column="plx",
        output_prefix="abs_",
    )
    out = am.fit_transform(df)
    np.testing.assert_allclose(out, _expected_M(catalog, ("G", "J")))
    assert list(am.get_feature_names_out()) == ["abs_G", "abs_J"]
    am2 = AbsoluteMagnitudes(bands=["r"], magnitude_columns=["G"], parallax_column="plx")
    assert list(am2.fit(df).get_feature_names_out()) == ["M_r"]
    with pytest.raises(ValueError, match="Unknown band 'r'"):
        AbsoluteMagnitudes(bands=["r"]).fit(catalog)


def test_set_output_pandas_keeps_names_and_index(catalog):
    am = AbsoluteMagnitudes(return_errors=True).set_output(transform="pandas")
    out = am.fit_transform(catalog)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(C.MDWARF_FEATURES) + [
        f"{c}_error" for c in C.MDWARF_FEATURES
    ]
    pd.testing.assert_index_equal(out.index, catalog.index)
    np.testing.assert_allclose(out["M_G"].to_numpy(), _expected_M(catalog)[:, 1])


def test_numpy_positional_input(catalog):
    X = catalog[[C.BAND_COLUMNS[b] for b in C.MDWARF_BANDS] + ["parallax"]].to_numpy()
    am = AbsoluteMagnitudes()
    np.testing.assert_allclose(am.fit_transform(X), _expected_M(catalog))
    assert list(am.get_feature_names_out()) == list(C.MDWARF_FEATURES)
    assert not hasattr(am, "feature_names_in_") and am.n_features_in_ == 9
    # a width that does not match the bands: generic names
    am3 = AbsoluteMagnitudes().fit(X[:, [1, 3, 8]])
    assert list(am3.get_feature_names_out()) == ["M_x0", "M_x1"]
    with pytest.raises(ValueError, match="X has 3 features, but AbsoluteMagnitudes is expecting 9"):
        am.transform(X[:, [1, 3, 8]])


def test_numpy_positional_with_errors():
    X = np.array([[12.0, 11.0, 20.0, 0.02, 0.03, 0.4]])  # m1 m2 plx s1 s2 s_plx
    out = AbsoluteMagnitudes(bands=["G", "J"], return_errors=True).fit_transform(X)
    dm = 5 * np.log10(0.2)
    sp = 5 / LN10 * 0.4 / 20
    np.testing.assert_allclose(
        out, [[12 + dm, 11 + dm, np.hypot(0.02, sp), np.hypot(0.03, sp)]], rtol=1e-12
    )
    with pytest.raises(ValueError, match="2k \\+ 2 columns"):
        AbsoluteMagnitudes(return_errors=True).fit(np.ones((3, 5)))


def test_fit_named_transform_array_same_order(catalog):
    num = catalog.drop(columns="ph_qual")
    am = AbsoluteMagnitudes().fit(num)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        out = am.transform(num.to_numpy())
    np.testing.assert_allclose(out, am.transform(num))


def test_dataframe_without_configured_columns_is_positional():
    df = pd.DataFrame({"a": [10.0, 11.0], "b": [9.0, 9.5], "plx": [100.0, 10.0]})
    am = AbsoluteMagnitudes()
    with pytest.warns(UserWarning, match="None of the configured columns"):
        out = am.fit_transform(df)
    np.testing.assert_allclose(out, [[10.0, 9.0], [6.0, 4.5]])
    assert list(am.get_feature_names_out()) == ["M_a", "M_b"]


# --------------------------------------------------------------------------
# Transformer: other containers and units
# --------------------------------------------------------------------------
def test_qtable_units_converted(catalog):
    t = QTable.from_pandas(catalog.drop(columns="ph_qual"))
    for b in C.MDWARF_BANDS:
        t[C.BAND_COLUMNS[b]] = t[C.BAND_COLUMNS[b]] * u.mag
    t["parallax"] = (catalog["parallax"].to_numpy() * u.mas).to(u.arcsec)
    out = AbsoluteMagnitudes().fit_transform(t)
    np.testing.assert_allclose(out, _expected_M(catalog), atol=1e-10)


def test_plain_table_column_units(catalog):
    t = Table.from_pandas(catalog)
    t["parallax"] = t["parallax"] / 1000.0
    t["parallax"].unit = "arcsec"
    np.testing.assert_allclose(
        AbsoluteMagnitudes().fit_transform(t), _expected_M(catalog), atol=1e-10
    )


def test_wrong_units_rejected(catalog):
    t = QTable.from_pandas(catalog.drop(columns="ph_qual"))
    t["phot_g_mean_mag"] = t["phot_g_mean_mag"] * u.Jy
    with pytest.raises(ValueError, match="Column 'phot_g_mean_mag' has wrong units.*Jy"):
        AbsoluteMagnitudes().fit(t)
    t = QTable.from_pandas(catalog.drop(columns="ph_qual"))
    t["parallax"] = t["parallax"] * u.km
    with pytest.raises(ValueError, match="Column 'parallax' has wrong units.*km"):
        AbsoluteMagnitudes().fit(t)


def test_dict_input(catalog):
    d = {c: catalog[c].to_numpy() for c in catalog.columns if c != "ph_qual"}
    d["parallax"] = d["parallax"] * u.mas
    np.testing.assert_allclose(AbsoluteMagnitudes().fit_transform(d), _expected_M(catalog))


def test_masked_table_value_reported(catalog):
    t = Table.from_pandas(catalog)
    t["j_m"] = MaskedColumn(t["j_m"], mask=[False, False, True, False])
    msg = r"Column 'j_m' has 1 NaN magnitude\(s\) \(first at row 2\)"
    with pytest.raises(ValueError, match=msg):
        AbsoluteMagnitudes().fit(t)


# --------------------------------------------------------------------------
# Transformer: bad input
# --------------------------------------------------------------------------
def test_nan_and_inf_magnitudes_named(catalog):
    bad = catalog.copy()
    bad.loc[307, "j_m"] = np.nan
    msg = r"Column 'j_m' has 1 NaN magnitude\(s\) \(first at row 2, index 307\)"
    with pytest.raises(ValueError, match=msg):
        AbsoluteMagnitudes().fit(bad)
    bad = catalog.copy()
    bad.loc[205, "w2mpro"] = np.inf
    msg = r"Column 'w2mpro' has 1 inf magnitude\(s\) \(first at row 1"
    with pytest.raises(ValueError, match=msg):
        AbsoluteMagnitudes().fit(bad)


def test_invalid_parallax_raise(catalog):
    bad = catalog.copy()
    bad["parallax"] = [25.0, -1.0, 0.0, np.nan]
    with pytest.raises(ValueError) as excinfo:
        AbsoluteMagnitudes().fit(bad)
    msg = str(excinfo.value)
    assert "no usable parallax in 3 of 4 sample(s) (first at row 1, index 205)" in msg
    assert "invalid_parallax='nan'" in msg
    assert "Negative values in data: 1; zero: 1; NaN: 1" in msg


def test_invalid_parallax_nan_policy(catalog):
    bad = catalog.copy()
    bad["parallax"] = [25.0, -1.0, 40.0, np.nan]
    bad["parallax_error"] = [0.05, 0.1, 0.08, np.nan]  # NaN error with NaN parallax is fine
    am = AbsoluteMagnitudes(invalid_parallax="nan", return_errors=True)
    out = am.fit_transform(bad)
    assert out.shape == (4, 16)  # nothing dropped
    assert np.isnan(out[[1, 3]]).all()
    assert np.isfinite(out[[0, 2]]).all()
    np.testing.assert_allclose(out[[0, 2], :8], _expected_M(bad)[[0, 2]])


def test_nan_parallax_error_on_valid_row_rejected(catalog):
    bad = catalog.copy()
    bad.loc[409, "parallax_error"] = np.nan
    with pytest.raises(ValueError, match="Column 'parallax_error' has 1 NaN parallax error"):
        AbsoluteMagnitudes(return_errors=True).fit(bad)
    bad = catalog.copy()
    bad.loc[409, "phot_bp_mean_flux_over_error"] = -3.0
    with pytest.raises(ValueError, match="phot_bp_mean_flux_over_error' has 1 non-positive"):
        AbsoluteMagnitudes(return_errors=True).fit(bad)


def test_empty_and_1d_input(catalog):
    with pytest.raises(ValueError, match="0 sample"):
        AbsoluteMagnitudes().fit(catalog.iloc[:0])
    with pytest.raises(ValueError, match="0 sample"):
        AbsoluteMagnitudes().fit(np.empty((0, 9)))
    with pytest.raises(ValueError, match="Expected 2D array"):
        AbsoluteMagnitudes().fit(np.arange(9.0))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"invalid_parallax": "drop"}, "parameter .invalid_parallax. must be"),
        ({"bands": "G"}, "parameter .bands. must be a non-empty sequence"),
        ({"bands": ("G", "G")}, "all distinct"),
        ({"magnitude_columns": ["a"]}, "magnitude_columns has 1 entries but bands has 8"),
        ({"error_columns": {"g": "x"}}, r"error_columns has key\(s\) \['g'\] that are not in"),
    ],
)
def test_bad_parameters(catalog, params, match):
    with pytest.raises(ValueError, match=match):
        AbsoluteMagnitudes(**params).fit(catalog)


# --------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------
def test_pipeline_with_linear_regression(catalog):
    rng = np.random.default_rng(3)
    n = 200
    df = pd.DataFrame(
        {C.BAND_COLUMNS[b]: rng.uniform(9, 15, n) for b in ("G", "J")}
        | {"parallax": rng.uniform(5, 50, n)}
    )
    M = _expected_M(df, ("G", "J"))
    y = 0.3 * M[:, 0] - 0.1 * M[:, 1] + 1.0
    pipe = make_pipeline(AbsoluteMagnitudes(bands=("G", "J")), LinearRegression())
    pipe.fit(df, y)
    np.testing.assert_allclose(pipe[-1].coef_, [0.3, -0.1], atol=1e-10)
    np.testing.assert_allclose(pipe.predict(df), y, atol=1e-10)
    assert list(pipe[:-1].get_feature_names_out()) == ["M_G", "M_J"]


def test_clone_and_joblib_roundtrip(catalog, tmp_path):
    am = AbsoluteMagnitudes(return_errors=True).fit(catalog)
    assert clone(am).get_params() == am.get_params()
    path = tmp_path / "am.joblib"
    joblib.dump(am, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.transform(catalog), am.transform(catalog))


def test_refit_forgets_previous_layout(catalog):
    am = AbsoluteMagnitudes().fit(catalog)
    X = catalog[[C.BAND_COLUMNS[b] for b in C.MDWARF_BANDS] + ["parallax"]].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        am.fit(X)
    assert not am.input_by_name_ and not hasattr(am, "feature_names_in_")
    assert re.fullmatch(r"x\d", am.parallax_column_)


# --------------------------------------------------------------------------
# Real data: Birky et al. (2020) M dwarfs, whose README quotes M = m + 5 log10(PLX/100)
# --------------------------------------------------------------------------
@pytest.mark.realdata
def test_matches_published_absolute_magnitudes_birky2020():
    from skstellar.io import find_shared_data

    folder = find_shared_data("mdwarf_photometry")
    path = None if folder is None else folder / "birky2020_safe_8band.csv"
    if path is None or not path.exists():
        pytest.skip("shared data mdwarf_photometry/birky2020_safe_8band.csv not available")
    df = pd.read_csv(path)
    df = df[df["HAS_8BAND"]].head(500)
    names = ["BP", "G", "RP", "J", "H", "K", "W1", "W2"]
    am = AbsoluteMagnitudes(
        magnitude_columns=[f"{b}_MAG" for b in names], parallax_column="PLX"
    )
    out = am.fit_transform(df)
    np.testing.assert_allclose(out, df[[f"M_{b}" for b in names]].to_numpy(), atol=1e-5)
