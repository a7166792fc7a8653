"""Tests for skstellar.io.spectra (LAMOST readers, spectrum tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skstellar.io import find_shared_data
from skstellar.io.spectra import (
    lamost_header_wavelength,
    read_lamost_spectra,
    read_spectra_table,
    write_spectra_table,
)
from skstellar.spectrum import SpectrumBatch

fits = pytest.importorskip("astropy.io.fits")

COEFF0, COEFF1 = 3.5682, 1e-4


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def lamost_folder():
    folder = find_shared_data("lamost_spectra")
    if folder is None:
        pytest.skip("shared LAMOST spectra (../shared/data/lamost_spectra) not available")
    return folder


@pytest.fixture(scope="module")
def lamost(lamost_folder):
    return read_lamost_spectra(lamost_folder, recursive=True, return_normalized=True)


@pytest.mark.realdata
def test_real_layouts_and_lengths(lamost):
    batch, normalized = lamost
    meta = batch.meta
    assert len(batch) == 21
    assert (meta["layout"] == "DR1").sum() == 18
    assert (meta["layout"] == "DR6").sum() == 3
    assert batch.n_pixels == 3909
    npix = dict(zip(meta["filename"], batch.npix))
    for name, n in npix.items():
        if name.startswith("spec-55862-B6212"):
            assert n == 3904
    assert npix["spec-55863-M31_011N40_B1_sp07-211.fits.gz"] == 3892
    assert npix["spec-55863-M31_011N40_B1_sp08-025.fits.gz"] == 3909
    assert npix["spec-55863-M31_011N40_B1_sp08-093.fits.gz"] == 3909
    # Normalised flux: present for DR1 (median about 1), NaN for DR6 rows.
    dr1 = (meta["layout"] == "DR1").to_numpy()
    assert normalized.shape == batch.flux.shape
    assert np.isnan(normalized[~dr1]).all()
    med = np.nanmedian(normalized[dr1], axis=1)
    assert np.all((med > 0.5) & (med < 1.5))


@pytest.mark.realdata
def test_real_wavelengths(lamost):
    batch, _ = lamost
    for i, n in enumerate(batch.npix):
        wl = batch.wavelength[i, :n]
        assert abs(wl[0] - 3700.0) < 0.1
        assert np.all(np.diff(wl) > 0)
        np.testing.assert_allclose(np.diff(np.log10(wl)), 1e-4, atol=1e-6)
    assert abs(batch.wavelength[0, 3903] - 9088.7) < 0.1


@pytest.mark.realdata
def test_real_dr6_rows_match_header(lamost):
    batch, _ = lamost
    for i in np.flatnonzero(batch.meta["layout"] == "DR6"):
        header = fits.getheader(batch.meta["path"].iloc[i])
        n = batch.npix[i]
        expected = lamost_header_wavelength(header, n)
        assert np.max(np.abs(batch.wavelength[i, :n] - expected)) < 0.01


@pytest.mark.realdata
def test_real_meta(lamost):
    batch, _ = lamost
    meta = batch.meta.set_index("filename")
    assert np.isnan(meta.loc["spec-55863-M31_011N40_B1_sp08-093.fits.gz", "z"])
    assert np.isnan(meta.loc["spec-55863-M31_011N40_B1_sp08-093.fits.gz", "z_err"])
    row = meta.loc["spec-55862-B6212_sp06-005.fits"]
    assert row["snr_r"] == 19.68
    assert row["designation"] == "LAMOST J063759.87+270908.4"
    assert row["subclass"] == "M0"
    assert row["class"] == "STAR"
    assert row["mjd"] == 55862
    assert pd.isna(row["obsid"])
    assert row["z"] == pytest.approx(-0.0002856)
    assert meta.loc["spec-55863-M31_011N40_B1_sp08-093.fits.gz", "obsid"] == 1608093
    assert meta.loc["spec-55863-M31_011N40_B1_sp08-025.fits.gz", "snr_r"] == 90.51
    assert meta["vacuum"].dtype == bool and meta["vacuum"].all()
    assert meta["class"].eq("STAR").all()
    assert meta["subclass"].str.startswith("M").all()


@pytest.mark.realdata
def test_real_masks_and_padding(lamost):
    batch, _ = lamost
    assert np.all(batch.mask[batch.ivar == 0])
    for i, n in enumerate(batch.npix):
        assert 200 < np.count_nonzero(batch.ivar[i, :n] == 0) < 1200
        assert np.isnan(batch.wavelength[i, n:]).all()
        assert np.isnan(batch.flux[i, n:]).all()
        assert np.all(batch.ivar[i, n:] == 0)
        assert batch.mask[i, n:].all()
        assert np.isfinite(batch.flux[i, :n]).all()
    # mask_bad=False masks only the padding.
    raw = read_lamost_spectra(
        [batch.meta["path"].iloc[0], batch.meta["path"].iloc[-3]], mask_bad=False
    )
    assert raw.npix.tolist() == [3904, 3892]
    assert not raw.mask[0].any()
    assert raw.mask[1].sum() == 3904 - 3892


@pytest.mark.realdata
def test_real_path_forms(lamost_folder):
    dr6 = read_lamost_spectra(lamost_folder / "dr6_M31_011N40_B1")
    assert len(dr6) == 3 and (dr6.meta["layout"] == "DR6").all()
    pattern = str(lamost_folder / "*" / "spec-55862-*sp06-0[01]*.fits*")
    dr1 = read_lamost_spectra(pattern)
    assert dr1.meta["filename"].tolist() == [
        "spec-55862-B6212_sp06-005.fits",
        "spec-55862-B6212_sp06-014.fits",
        "spec-55862-B6212_sp06-015.fits",
    ]
    one = read_lamost_spectra(lamost_folder / "dr1_B6212_sp06" / "spec-55862-B6212_sp06-025.fits")
    assert len(one) == 1 and one.meta["subclass"].iloc[0] == "M2"
    with pytest.raises(FileNotFoundError, match="recursive"):
        read_lamost_spectra(lamost_folder)


# --------------------------------------------------------------------------- synthetic FITS


def _write_lamost(path, npix, layout, *, exten0=True, coeffs="COEFF", z=0.001, seed=0):
    rng = np.random.default_rng(seed)
    wl = 10 ** (COEFF0 + COEFF1 * np.arange(npix))
    flux = rng.normal(100.0, 5.0, npix)
    ivar = np.full(npix, 0.04)
    ivar[:3] = 0.0
    andmask = np.zeros(npix)
    andmask[10] = 4.0
    flux[20] = np.nan
    row2 = wl if layout == "DR6" else flux / 100.0
    data = np.vstack([flux, ivar, row2, andmask, np.zeros(npix)]).astype(np.float32)
    header = fits.Header()
    if exten0:
        header["EXTEN0"] = (
            "Flux, Inverse, Wavelength, Andmask, Ormask"
            if layout == "DR6"
            else "Flux Inverse Subcontinuum Andmask Ormask"
        )
    if coeffs == "COEFF":
        header["COEFF0"], header["COEFF1"] = COEFF0, COEFF1
    elif coeffs == "WCS":
        header["CRVAL1"], header["CD1_1"], header["CRPIX1"] = COEFF0, COEFF1, 1
    header["DESIG"] = "LAMOST JTEST"
    header["RA"], header["DEC"] = 10.5, -5.25
    header["Z"], header["Z_ERR"] = z, 1e-5
    header["CLASS"], header["SUBCLASS"] = "STAR", "M3"
    for band in "UGRIZ":
        header[("SNR" if layout == "DR6" else "SN_") + band] = 10.0
    header["MJD"] = 58000
    header["VACUUM"] = True
    if layout == "DR6":
        header["OBSID"] = 123
    fits.PrimaryHDU(data, header=header).writeto(path)
    return wl, flux, ivar


def test_synthetic_both_layouts(tmp_path):
    wl1, flux1, _ = _write_lamost(tmp_path / "a_dr1.fits", 50, "DR1")
    wl6, _, _ = _write_lamost(tmp_path / "b_dr6.fits.gz", 60, "DR6", z=-9999.0)
    (tmp_path / "notes.txt").write_text("not a spectrum")
    batch, norm = read_lamost_spectra(tmp_path, return_normalized=True)
    assert batch.meta["layout"].tolist() == ["DR1", "DR6"]
    assert batch.npix.tolist() == [50, 60]
    assert batch.flux.shape == (2, 60)
    np.testing.assert_allclose(batch.wavelength[0, :50], wl1, rtol=1e-12)
    np.testing.assert_allclose(batch.wavelength[1], wl6, atol=1e-3)
    np.testing.assert_allclose(norm[0, :50], (flux1 / 100.0).astype(np.float32), rtol=1e-6)
    assert np.isnan(norm[0, 50:]).all() and np.isnan(norm[1]).all()
    assert np.isnan(batch.wavelength[0, 50:]).all() and batch.mask[0, 50:].all()
    for i in range(2):
        assert batch.mask[i, :3].all() and batch.mask[i, 10] and batch.mask[i, 20]
        assert batch.mask[i, : batch.npix[i]].sum() == 5
    meta = batch.meta
    assert meta.loc[0, "z"] == pytest.approx(0.001) and np.isnan(meta.loc[1, "z"])
    assert pd.isna(meta.loc[0, "obsid"]) and meta.loc[1, "obsid"] == 123
    assert meta["mjd"].tolist() == [58000, 58000]
    assert meta["snr_r"].tolist() == [10.0, 10.0]
    assert np.isnan(meta["helio_rv"]).all()
    assert meta["vacuum"].tolist() == [True, True]


def test_synthetic_layout_without_exten0_and_wcs_fallback(tmp_path):
    wl1, _, _ = _write_lamost(tmp_path / "dr1.fits", 40, "DR1", exten0=False, coeffs="WCS")
    _write_lamost(tmp_path / "dr6.fits", 40, "DR6", exten0=False, coeffs=None)
    batch, norm = read_lamost_spectra(
        [tmp_path / "dr6.fits", str(tmp_path / "dr1.fits")], return_normalized=True
    )
    assert batch.meta["layout"].tolist() == ["DR6", "DR1"]
    np.testing.assert_allclose(batch.wavelength[1], wl1, rtol=1e-12)
    assert np.isnan(norm[0]).all() and np.isfinite(norm[1]).sum() == 39  # flux[20] is NaN
    only_dr6, none = read_lamost_spectra(tmp_path / "dr6.fits", return_normalized=True)
    assert none is None and len(only_dr6) == 1


def test_header_wavelength_variants():
    n = 5
    log = lamost_header_wavelength({"CRVAL1": 3.6, "CD1_1": 1e-4, "CRPIX1": 2}, n)
    np.testing.assert_allclose(log, 10 ** (3.6 + 1e-4 * (np.arange(n) - 1)))
    lin = lamost_header_wavelength({"CRVAL1": 4000.0, "CDELT1": 2.0}, n)
    np.testing.assert_allclose(lin, 4000.0 + 2.0 * np.arange(n))
    with pytest.raises(ValueError, match="wavelength solution"):
        lamost_header_wavelength({}, n)


def test_exten0_disagreement_warns(tmp_path):
    path = tmp_path / "odd.fits"
    _write_lamost(path, 30, "DR1")
    with fits.open(path, mode="update") as hdul:
        hdul[0].header["EXTEN0"] = "Flux, Inverse, Wavelength, Andmask, Ormask"
    with pytest.warns(UserWarning, match="DR1"):
        batch = read_lamost_spectra(path)
    assert batch.meta["layout"].iloc[0] == "DR1"


def test_lamost_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        read_lamost_spectra(str(tmp_path / "nothing_here*.fits"))
    with pytest.raises(FileNotFoundError, match="missing.fits"):
        read_lamost_spectra(tmp_path / "missing.fits")
    with pytest.raises(FileNotFoundError):
        read_lamost_spectra(tmp_path)  # empty folder
    with pytest.raises(FileNotFoundError):
        read_lamost_spectra([])
    bad = tmp_path / "bad_shape.fits"
    fits.PrimaryHDU(np.zeros((3, 20), dtype=np.float32)).writeto(bad)
    with pytest.raises(ValueError, match="bad_shape.fits"):
        read_lamost_spectra(bad)
    empty = tmp_path / "no_image.fits"
    fits.PrimaryHDU().writeto(empty)
    with pytest.raises(ValueError, match="no_image.fits"):
        read_lamost_spectra(empty)
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"definitely not FITS" * 10)
    with pytest.raises(ValueError, match="junk.fits"):
        read_lamost_spectra(junk)
    nowl = tmp_path / "nowl.fits"
    _write_lamost(nowl, 30, "DR1", coeffs=None)
    with pytest.raises(ValueError, match="nowl.fits"):
        read_lamost_spectra(nowl)


# --------------------------------------------------------------------------- tables


def _ragged_batch():
    rng = np.random.default_rng(1)
    npix = np.array([6, 4, 5])
    width = npix.max()
    inside = np.arange(width) < npix[:, None]
    wl = np.where(inside, 4000.0 + np.arange(width) * 2.0, np.nan)
    flux = np.where(inside, rng.normal(1.0, 0.1, (3, width)), np.nan)
    ivar = np.where(inside, rng.uniform(1.0, 5.0, (3, width)), 0.0)
    mask = ~inside
    mask[0, 1] = True
    meta = pd.DataFrame({"name": ["a", "b", "c"], "teff": [3100.0, 3300.0, np.nan],
                         "idx": [1, 2, 3]})
    return SpectrumBatch(wl, flux, ivar=ivar, mask=mask, meta=meta, npix=npix)


def _assert_same(a, b):
    np.testing.assert_array_equal(a.npix, b.npix)
    np.testing.assert_array_equal(a.wavelength_2d(), b.wavelength_2d())
    np.testing.assert_array_equal(a.flux, b.flux)
    np.testing.assert_array_equal(a.ivar, b.ivar)
    np.testing.assert_array_equal(a.mask, b.mask)


@pytest.mark.parametrize("ext", [".fits", ".fits.gz", ".parquet"])
def test_table_round_trip_ragged(tmp_path, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    batch = _ragged_batch()
    path = write_spectra_table(batch, tmp_path / f"spec{ext}")
    back = read_spectra_table(path, mask="mask")
    _assert_same(batch, back)
    assert back.meta["name"].tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(back.meta["teff"], batch.meta["teff"])
    assert back.meta["idx"].tolist() == [1, 2, 3]
    assert set(back.meta.columns) == {"name", "teff", "idx"}
    with pytest.raises(FileExistsError):
        write_spectra_table(batch, path)
    write_spectra_table(batch, path, overwrite=True)


@pytest.mark.parametrize("ext", [".fits", ".parquet"])
def test_table_round_trip_fixed_and_shared(tmp_path, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    grid = np.linspace(5000.0, 5010.0, 8)
    flux = np.arange(16.0).reshape(2, 8)
    batch = SpectrumBatch(grid, flux)  # no ivar, mask or meta
    path = write_spectra_table(batch, tmp_path / f"fixed{ext}")
    back = read_spectra_table(path)
    assert back.ivar is None and back.npix.tolist() == [8, 8]
    np.testing.assert_array_equal(back.wavelength, np.broadcast_to(grid, (2, 8)))
    np.testing.assert_array_equal(back.flux, flux)
    assert not back.mask.any() and len(back.meta) == 2
    # Shared grid for a table without wavelength column.
    shared = read_spectra_table(path, wavelength=None, shared_wavelength=grid)
    assert shared.wavelength.shape == (8,)
    with pytest.raises(ValueError, match="wavelength=None"):
        read_spectra_table(path, shared_wavelength=grid)
    with pytest.raises(ValueError, match="shared_wavelength has 7"):
        read_spectra_table(path, wavelength=None, shared_wavelength=grid[:7])


def test_table_error_column_and_nan_padding(tmp_path):
    from astropy.table import Table

    wl = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, np.nan]]) * 1000 + 4000
    err = np.array([[0.5, 0.0, -1.0, np.nan], [2.0, 1.0, 0.25, 9.0]])
    t = Table({"lam": wl, "f": np.ones((2, 4)), "sig": err, "bad": np.zeros((2, 4), bool),
               "star": ["x", "y"], "extra": np.zeros((2, 3))})
    path = tmp_path / "custom.fits"
    t.write(path)
    batch = read_spectra_table(path, wavelength="lam", flux="f", error="sig", mask="bad")
    np.testing.assert_allclose(batch.ivar[0], [4.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(batch.ivar[1], [0.25, 1.0, 16.0, 0.0])
    assert batch.npix.tolist() == [4, 3]  # trailing NaN wavelength = padding
    assert np.isnan(batch.flux[1, 3]) and batch.mask[1, 3] and not batch.mask[0].any()
    assert list(batch.meta.columns) == ["star"]


def test_table_parquet_written_by_pandas(tmp_path):
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({
        "id": [7, 8],
        "wavelength": [np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0])],
        "flux": [np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0])],
        "ivar": [np.array([1.0, np.nan, 1.0]), np.array([1.0, 1.0])],
    })
    path = tmp_path / "pd.parquet"
    df.to_parquet(path)
    batch = read_spectra_table(path)
    assert batch.npix.tolist() == [3, 2]
    np.testing.assert_array_equal(batch.ivar, [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert batch.mask.tolist() == [[False, False, False], [False, False, True]]
    assert batch.meta["id"].tolist() == [7, 8]


def test_table_errors(tmp_path):
    from astropy.table import Table

    with pytest.raises(FileNotFoundError):
        read_spectra_table(tmp_path / "missing.fits")
    with pytest.raises(ValueError, match="format"):
        read_spectra_table(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="format"):
        write_spectra_table(_ragged_batch(), tmp_path / "x.csv")
    path = tmp_path / "t.fits"
    Table({"wavelength": np.ones((2, 3)), "flux": np.ones((2, 4)), "s": [1.0, 2.0]}).write(path)
    with pytest.raises(ValueError, match="row 0"):
        read_spectra_table(path)
    with pytest.raises(KeyError, match="nope"):
        read_spectra_table(path, flux="nope")
    with pytest.raises(ValueError, match="array"):
        read_spectra_table(path, flux="s")
    with pytest.raises(KeyError, match="wavelength"):
        read_spectra_table(path, wavelength="lam")
    with pytest.raises(ValueError, match="No wavelength"):
        read_spectra_table(path, wavelength=None)
    clash = _ragged_batch()
    clash.meta["flux"] = 1.0
    with pytest.raises(ValueError, match="clash"):
        write_spectra_table(clash, tmp_path / "clash.fits")
    with pytest.raises(FileNotFoundError):
        write_spectra_table(_ragged_batch(), tmp_path / "nodir" / "a.fits")
