"""Tests for the M-dwarf simulator (datasets), the Birky reader and catalogue I/O (skstellar.io)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skstellar.columns import (
    BAND_COLUMNS,
    BAND_ERROR_COLUMNS,
    BAND_FLUX_OVER_ERROR_COLUMNS,
    FEH,
    FEH_ERROR,
    MDWARF_BANDS,
    MDWARF_FEATURES,
)
from skstellar.datasets import make_mdwarf_photometry, mdwarf_absolute_magnitudes
from skstellar.io import find_shared_data, load_mdwarf_catalog, read_catalog, write_catalog

APPARENT = [BAND_COLUMNS[b] for b in MDWARF_BANDS]


def absolute_from_frame(df):
    """M = m + 5 log10(parallax / 100) for the eight bands, in MDWARF_BANDS order."""
    return df[APPARENT].to_numpy() + 5.0 * np.log10(df["parallax"].to_numpy() / 100.0)[:, None]


@pytest.fixture(scope="module")
def sim():
    return make_mdwarf_photometry(5000, random_state=42, return_truth=True)


# ----------------------------------------------------------------------------- simulator


def test_same_seed_gives_identical_catalogue():
    a = make_mdwarf_photometry(300, random_state=7)
    b = make_mdwarf_photometry(300, random_state=7)
    pd.testing.assert_frame_equal(a, b)
    c = make_mdwarf_photometry(300, random_state=np.random.RandomState(7))
    pd.testing.assert_frame_equal(a, c)
    d = make_mdwarf_photometry(300, random_state=8)
    assert not np.allclose(a[FEH], d[FEH])


def test_columns_and_shapes(sim):
    plain = make_mdwarf_photometry(50, random_state=0)
    expected = set(APPARENT) | {FEH, FEH_ERROR, "parallax", "parallax_error",
                                "parallax_over_error", "ruwe", "ph_qual", "ph_qual_wise"}
    expected |= {c for c in BAND_ERROR_COLUMNS.values() if c is not None}
    expected |= set(BAND_FLUX_OVER_ERROR_COLUMNS.values())
    assert set(plain.columns) == expected
    assert plain.shape == (50, len(expected))
    assert (plain["ph_qual"] == "AAA").all() and (plain["ph_qual_wise"] == "AA").all()
    truth = {"fe_h_true", "parallax_true", "spt_true"} | {f"{f}_true" for f in MDWARF_FEATURES}
    assert truth <= set(sim.columns)
    assert sim.shape[0] == 5000
    assert np.isfinite(sim.select_dtypes("number").to_numpy()).all()


def test_physical_sanity(sim):
    gj = sim["phot_g_mean_mag"] - sim["j_m"]
    w12 = sim["w1mpro"] - sim["w2mpro"]
    assert np.mean((gj > 1.7) & (gj < 3.3)) > 0.97
    assert np.mean((w12 > -0.2) & (w12 < 0.35)) > 0.97
    assert 1.8 < gj.median() < 2.9
    assert (sim["parallax"] > 0).all()
    assert 4.0 < sim["parallax"].median() < 8.0
    assert sim["fe_h_true"].between(-0.45, 0.45).all()
    assert sim[FEH].between(-0.45 - 5 * 0.09, 0.45 + 5 * 0.09).all()
    assert sim[FEH_ERROR].between(0.05, 0.09).all()
    # Realistic errors per survey and the Table 1 quality cuts of the paper.
    assert sim["j_msigcom"].between(0.01, 0.06).all()
    assert sim["w1sigmpro"].between(0.01, 0.06).all()
    assert sim["parallax_error"].between(0.005, 0.2).all()
    assert (sim["parallax_over_error"] > 10).all()
    assert (sim["ruwe"] < 1.4).all()
    assert (sim["phot_g_mean_flux_over_error"] > 50).all()
    assert (sim["phot_bp_mean_flux_over_error"] > 20).all()
    # Reported Gaia magnitude errors are in the mmag range.
    sigma_g = 2.5 / np.log(10) / sim["phot_g_mean_flux_over_error"]
    assert sigma_g.between(1e-4, 1e-2).all()


def test_solar_metallicity_sequence_matches_m_dwarf_colours():
    mags = mdwarf_absolute_magnitudes(np.arange(6), 0.0)
    gj = mags[:, 1] - mags[:, 3]
    assert 1.85 < gj[0] < 2.0 and 3.0 < gj[-1] < 3.15  # M0V ... M5V (Cifuentes+2020)
    assert np.all(np.diff(gj) > 0)
    assert np.all(np.diff(mags[:, MDWARF_BANDS.index("Ks")]) > 0)
    w12 = mags[:, 6] - mags[:, 7]
    assert -0.1 < w12[0] < 0.0 and 0.15 < w12[-1] < 0.25


def test_metallicity_trends_have_published_signs():
    # At fixed mass (M_Ks), metal-rich M dwarfs are redder in G-J and J-Ks and bluer in W1-W2.
    spt = np.full(2, 2.5)
    lo, hi = mdwarf_absolute_magnitudes(spt, [-0.3, 0.3])
    assert lo[5] == hi[5]
    assert (hi[1] - hi[3]) > (lo[1] - lo[3]) + 0.2
    assert (hi[3] - hi[5]) > (lo[3] - lo[5])
    assert (hi[6] - hi[7]) < (lo[6] - lo[7])


def test_feh_recoverable_from_absolute_magnitudes():
    from sklearn.linear_model import LinearRegression

    X, y, _, y_true = make_mdwarf_photometry(5000, random_state=3, as_frame=False,
                                             return_truth=True)
    model = LinearRegression().fit(X[:4000], y[:4000])
    pred = model.predict(X[4000:])
    resid_std = np.std(pred - y[4000:])
    assert 0.05 < resid_std < 0.15, resid_std
    # Against the true labels the scatter is below the label noise.
    assert np.std(pred - y_true[4000:]) < 0.08
    # ... and the photometry carries the information: shuffled labels do not work.
    assert resid_std < 0.7 * np.std(y[4000:])


def test_as_frame_false_matches_frame(sim):
    X, y = make_mdwarf_photometry(5000, random_state=42, as_frame=False)
    assert X.shape == (5000, 8) and y.shape == (5000,)
    np.testing.assert_allclose(X, absolute_from_frame(sim), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(y, sim[FEH].to_numpy())
    X2, y2, X_true, y_true = make_mdwarf_photometry(5000, random_state=42, as_frame=False,
                                                    return_truth=True)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(X_true, sim[[f"{f}_true" for f in MDWARF_FEATURES]].to_numpy())
    np.testing.assert_array_equal(y_true, sim["fe_h_true"].to_numpy())


def test_no_noise_returns_truth(sim):
    df = make_mdwarf_photometry(500, random_state=1, add_noise=False, return_truth=True)
    np.testing.assert_array_equal(df[FEH], df["fe_h_true"])
    np.testing.assert_array_equal(df["parallax"], df["parallax_true"])
    np.testing.assert_allclose(absolute_from_frame(df),
                               df[[f"{f}_true" for f in MDWARF_FEATURES]].to_numpy(), atol=1e-9)
    # With noise the observed magnitudes differ by about the reported errors.
    dj = (sim["j_m"] - (sim["M_J_true"] - 5 * np.log10(sim["parallax_true"] / 100)))
    assert 0.7 < np.std(dj / sim["j_msigcom"]) < 1.3


def test_feh_distributions():
    uni = make_mdwarf_photometry(4000, random_state=0, feh_distribution="uniform",
                                 feh_range=(-0.4, 0.4), return_truth=True)["fe_h_true"]
    assert uni.between(-0.4, 0.4).all()
    assert abs(uni.std() - 0.8 / np.sqrt(12)) < 0.02
    birky = make_mdwarf_photometry(4000, random_state=0, return_truth=True)["fe_h_true"]
    assert abs(birky.mean()) < 0.02 and 0.13 < birky.std() < 0.18


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_samples": 0},
        {"n_samples": 2.5},
        {"feh_distribution": "gaussian"},
        {"feh_range": (0.3, -0.3)},
        {"feh_range": (-2.0, 0.5)},
        {"spectral_type_range": (0, 9)},
    ],
)
def test_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        make_mdwarf_photometry(**{"n_samples": 10, **kwargs})


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def birky():
    try:
        return load_mdwarf_catalog()
    except FileNotFoundError:
        pytest.skip("birky2020_safe_8band.csv not found in ../shared/data")


@pytest.mark.realdata
def test_real_catalogue(birky):
    assert len(birky) == 2459
    for name in APPARENT + list(MDWARF_FEATURES) + ["parallax", "parallax_error", FEH, "teff",
                                                    "spt", "ra", "dec", "apogee_id",
                                                    "j_msigcom", "h_msigcom", "ks_msigcom"]:
        assert name in birky.columns, name
    assert "m_h_apogee" in birky.columns and "has_8band" in birky.columns
    assert not birky[list(MDWARF_FEATURES)].isna().any().any()
    assert not birky[APPARENT].isna().any().any()
    np.testing.assert_allclose(absolute_from_frame(birky),
                               birky[list(MDWARF_FEATURES)].to_numpy(), rtol=0, atol=1e-6)
    assert "DR2" in birky.attrs["photometry"] and "AllWISE" in birky.attrs["photometry"]


@pytest.mark.realdata
def test_real_catalogue_all_rows_and_explicit_path(birky):
    full = load_mdwarf_catalog(birky.attrs["path"], eight_band_only=False)
    assert len(full) == 5875
    assert full["has_8band"].sum() == 2459
    folder = load_mdwarf_catalog(find_shared_data("mdwarf_photometry"))
    assert len(folder) == 2459


@pytest.mark.realdata
def test_simulator_resembles_real_sample(birky):
    sim = make_mdwarf_photometry(3000, random_state=0)
    for colour in [("phot_g_mean_mag", "j_m"), ("j_m", "ks_m"), ("w1mpro", "w2mpro")]:
        real = birky[colour[0]] - birky[colour[1]]
        fake = sim[colour[0]] - sim[colour[1]]
        assert abs(real.median() - fake.median()) < 0.3, colour


@pytest.mark.realdata
def test_read_catalog_on_real_files():
    folder = find_shared_data("mdwarf_photometry")
    if folder is None or not (folder / "birky2020_full_sample_results.fits.gz").exists():
        pytest.skip("Birky et al. (2020) source files not found in ../shared/data")
    full = read_catalog(folder / "birky2020_full_sample_results.fits.gz")
    assert len(full) == 14827 and "FE_H" in full.columns
    assert all(full[c].dtype.byteorder in "=|" for c in full.columns if c != "APOGEE_ID")
    safe = read_catalog(folder / "birky2020_table6_safe_sample.csv.gz")
    assert len(safe) == 5875


def test_missing_real_file_message(tmp_path, monkeypatch):
    import skstellar.io.paths as paths

    monkeypatch.setenv("SKSTELLAR_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(paths, "_REPO_ROOT", tmp_path / "repo")
    assert find_shared_data("mdwarf_photometry") is None
    with pytest.raises(FileNotFoundError, match="SKSTELLAR_DATA") as err:
        load_mdwarf_catalog()
    assert "nowhere" in str(err.value)
    with pytest.raises(FileNotFoundError):
        load_mdwarf_catalog(tmp_path / "missing.csv")


def test_find_shared_data_prefers_environment(tmp_path, monkeypatch):
    (tmp_path / "mdwarf_photometry").mkdir()
    monkeypatch.setenv("SKSTELLAR_DATA", str(tmp_path))
    assert find_shared_data("mdwarf_photometry") == tmp_path / "mdwarf_photometry"
    assert find_shared_data("no_such_subdir_xyz") is None


# ----------------------------------------------------------------------------- catalogue I/O


@pytest.fixture
def table_df():
    df = pd.DataFrame(
        {
            "source_id": np.array([1, 2, 3], dtype=np.int64) * 10**17 + 1,
            "phot_g_mean_mag": [12.5, np.nan, 14.25],
            "name": ["a", "bb", "ccc"],
            "flag": [True, False, True],
        }
    )
    df.attrs["units"] = {"phot_g_mean_mag": "mag"}
    return df


@pytest.mark.parametrize(
    "ext", ["csv", "csv.gz", "ecsv", "ecsv.gz", "fits", "fits.gz", "fit", "parquet", "pq",
            "xml", "vot"]
)
def test_round_trip(tmp_path, table_df, ext):
    path = write_catalog(table_df, tmp_path / f"cat.{ext}")
    back = read_catalog(path)
    pd.testing.assert_frame_equal(back, table_df, check_dtype=False)
    assert back["source_id"].dtype == np.int64  # no precision lost on 64-bit IDs
    assert back["flag"].dtype == bool
    if ext not in ("csv", "csv.gz"):
        assert back.attrs["units"]["phot_g_mean_mag"] == "mag"


def test_round_trip_simulated_catalogue(tmp_path):
    df = make_mdwarf_photometry(200, random_state=0)
    for ext in ("csv", "fits", "parquet", "ecsv"):
        back = read_catalog(write_catalog(df, tmp_path / f"sim.{ext}"))
        pd.testing.assert_frame_equal(back, df, check_dtype=False, check_exact=False,
                                      rtol=1e-12)


def test_explicit_format_and_errors(tmp_path, table_df):
    path = write_catalog(table_df, tmp_path / "cat.dat", format="csv")
    pd.testing.assert_frame_equal(read_catalog(path, format="csv"), table_df)
    with pytest.raises(ValueError, match=r"\.parquet"):
        read_catalog(path)
    with pytest.raises(ValueError, match="format"):
        read_catalog(path, format="hdf5")
    with pytest.raises(FileNotFoundError):
        read_catalog(tmp_path / "absent.fits")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_catalog(table_df, path, format="csv")
    write_catalog(table_df.iloc[:1], path, format="csv", overwrite=True)
    assert len(read_catalog(path, format="csv")) == 1


def test_masked_bytes_and_multidim_from_astropy(tmp_path):
    from astropy.io import fits
    from astropy.table import MaskedColumn, Table

    table = Table()
    table["id"] = MaskedColumn([1, 2, 3], mask=[False, True, False], dtype=np.int32)
    table["mag"] = MaskedColumn([10.0, 11.0, 12.0], mask=[False, False, True])
    table["band"] = np.array([b"G", b"BP", b"RP"])
    table["coeff"] = np.arange(6.0).reshape(3, 2)
    path = tmp_path / "masked.fits"
    # An image HDU and a second table: the first table HDU is read.
    other = fits.BinTableHDU(Table({"z": [0.0]}))
    fits.HDUList([fits.PrimaryHDU(np.zeros((2, 2))), fits.table_to_hdu(table), other]).writeto(path)
    df = read_catalog(path)
    assert list(df.columns) == ["id", "mag", "band", "coeff"]
    np.testing.assert_array_equal(df["id"].to_numpy(), [1.0, np.nan, 3.0])
    assert np.isnan(df["mag"].iloc[2])
    assert list(df["band"]) == ["G", "BP", "RP"] and isinstance(df["band"].iloc[0], str)
    np.testing.assert_array_equal(df["coeff"].iloc[1], [2.0, 3.0])
    assert list(read_catalog(path, hdu=2).columns) == ["z"]
    # Multidimensional columns survive a FITS / Parquet round trip.
    for ext in ("fits", "parquet"):
        back = read_catalog(write_catalog(df, tmp_path / f"again.{ext}"))
        np.testing.assert_array_equal(np.stack(back["coeff"].to_numpy()), np.stack(df["coeff"]))

    votable = tmp_path / "masked.vot"
    table.write(votable, format="votable")
    dv = read_catalog(votable)
    assert np.isnan(dv["id"].iloc[1]) and np.isnan(dv["mag"].iloc[2])
    assert list(dv["band"]) == ["G", "BP", "RP"]


def test_fits_without_table_raises(tmp_path):
    from astropy.io import fits

    path = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((2, 2))).writeto(path)
    with pytest.raises(ValueError, match="table"):
        read_catalog(path)
