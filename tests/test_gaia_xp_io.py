"""Tests of skstellar.io.gaia_xp (Gaia DR3 XP continuous tables and covariances).

The real-file tests use GaiaXPy's test tables in ``../shared/data/gaia_xp``
(ESA/Gaia/DPAC data, see that folder's README) and skip when that folder is
absent; the synthetic tests always run.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from skstellar.io import find_shared_data
from skstellar.io.gaia_xp import (
    BANDS,
    XPBand,
    correlation_to_covariance,
    is_positive_definite,
    n_from_packed_size,
    packed_lower_size,
    read_xp_avro,
    read_xp_continuous,
    unpack_lower_triangle,
    xp_band_arrays,
    xp_covariance,
)

RAW = "XP_CONTINUOUS_RAW"
BRIGHT, FAINT, RP_ONLY = 5853498713190525696, 5762406957886626816, 5405570973190252288
SCO18 = 4345775217221821312
K = 55


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def xp_dir():
    folder = find_shared_data("gaia_xp")
    if folder is None:
        pytest.skip("shared data folder gaia_xp not found")
    return folder


@pytest.fixture(scope="module")
def raw_frames(xp_dir):
    """The same two sources read from all four formats."""
    return {ext: read_xp_continuous(xp_dir / f"{RAW}.{ext}")
            for ext in ("csv", "ecsv", "fits", "xml")}


@pytest.fixture(scope="module")
def avro(xp_dir):
    return read_xp_avro(xp_dir / "MeanSpectrumSolutionWithCov.avro")


def hand_covariance(errors, correlations):
    """Reference C = diag(e) R diag(e) with explicit loops over i > j (one source)."""
    k = len(errors)
    R = np.eye(k)
    p = 0
    for i in range(1, k):
        for j in range(i):  # row by row through the strict lower triangle
            R[i, j] = R[j, i] = correlations[p]
            p += 1
    assert p == len(correlations)
    return np.outer(errors, errors) * R


def wrong_order_covariance(errors, correlations):
    """The same values put in the *upper* triangle row by row (the wrong order)."""
    k = len(errors)
    R = np.eye(k)
    rows, cols = np.triu_indices(k, 1)
    R[rows, cols] = correlations
    R[cols, rows] = correlations
    return np.outer(errors, errors) * R


def synthetic_table(n=4, k=6, seed=0):
    """A small dict table with valid XP-like arrays (lists of arrays)."""
    rng = np.random.default_rng(seed)
    m = k * (k - 1) // 2
    return {
        "source_id": np.arange(n, dtype=np.int64) + 10**18,
        "bp_coefficients": [rng.normal(size=k) for _ in range(n)],
        "bp_coefficient_errors": [rng.uniform(0.1, 1.0, k) for _ in range(n)],
        "bp_coefficient_correlations": [rng.uniform(-0.2, 0.2, m).astype(np.float32)
                                        for _ in range(n)],
    }


# --------------------------------------------------------------------------- reading


def test_canonical_layout_of_csv(raw_frames):
    df = raw_frames["csv"]
    assert list(df["source_id"]) == [BRIGHT, FAINT]
    assert df["source_id"].dtype == np.int64
    for band in BANDS:
        for col, dtype, size in (("coefficients", np.float64, K),
                                 ("coefficient_errors", np.float64, K),
                                 ("coefficient_correlations", np.float32, K * (K - 1) // 2)):
            cells = df[f"{band}_{col}"]
            assert cells.dtype == object
            for cell in cells:
                assert isinstance(cell, np.ndarray) and cell.dtype == dtype
                assert cell.shape == (size,)
        assert str(df[f"{band}_n_parameters"].dtype) == "Int64"
        assert (df[f"{band}_n_parameters"] == K).all()
        assert df[f"{band}_standard_deviation"].dtype == np.float64
        assert df[f"{band}_standard_deviation"].between(0.9, 1.5).all()
    # README: RP c0 ~ 7.4e5 (bright) and ~ 3.2e3 (faint).
    rp0 = np.array([c[0] for c in df["rp_coefficients"]])
    np.testing.assert_allclose(rp0, [7.4e5, 3.2e3], rtol=0.02)
    # scalar columns are passed through, including the DPAC basis ids
    assert (df["bp_basis_function_id"] == 56).all() and (df["rp_basis_function_id"] == 57).all()


@pytest.mark.parametrize("ext", ["ecsv", "fits", "xml"])
def test_all_formats_give_the_same_arrays(raw_frames, ext):
    ref, other = raw_frames["csv"], raw_frames[ext]
    assert list(other.columns) == list(ref.columns)
    np.testing.assert_array_equal(other["source_id"], ref["source_id"])
    for band in BANDS:
        a, b = xp_band_arrays(ref, band), xp_band_arrays(other, band)
        assert b.correlations.dtype == np.float32 and b.errors.dtype == np.float64
        np.testing.assert_allclose(b.coefficients, a.coefficients, rtol=1e-12, atol=0)
        np.testing.assert_allclose(b.errors, a.errors, rtol=1e-7, atol=0)
        np.testing.assert_allclose(b.correlations, a.correlations,
                                   rtol=np.finfo(np.float32).eps, atol=1e-8)
        assert b.present.all()
        for col in ("standard_deviation", "chi_squared", "n_parameters", "degrees_of_freedom"):
            np.testing.assert_allclose(other[f"{band}_{col}"].astype(float),
                                       ref[f"{band}_{col}"].astype(float), rtol=1e-7)


def test_format_argument_and_path_types(xp_dir, tmp_path):
    renamed = tmp_path / "xp_table.txt"
    shutil.copy(xp_dir / f"{RAW}.csv", renamed)
    with pytest.raises(ValueError, match="Cannot infer the XP table format"):
        read_xp_continuous(renamed)
    df = read_xp_continuous(str(renamed), format="csv")
    assert len(df) == 2
    with pytest.raises(ValueError, match="Unknown XP table format"):
        read_xp_continuous(renamed, format="parquet-ish")
    with pytest.raises(FileNotFoundError):
        read_xp_continuous(tmp_path / "absent.csv")


def test_missing_bp_band(xp_dir, raw_frames):
    df = read_xp_continuous(xp_dir / f"{RAW}_with_missing_BP.csv")
    assert list(df["source_id"]) == [BRIGHT, RP_ONLY, FAINT]
    row = 1
    for col in ("coefficients", "coefficient_errors", "coefficient_correlations"):
        assert df[f"bp_{col}"].iloc[row] is None  # None, not an array of NaN
        assert isinstance(df[f"rp_{col}"].iloc[row], np.ndarray)
    assert np.isnan(df["bp_standard_deviation"].iloc[row])
    assert pd.isna(df["bp_n_parameters"].iloc[row])
    assert df["rp_n_parameters"].iloc[row] == K

    bp, rp = xp_band_arrays(df, "bp"), xp_band_arrays(df, "rp")
    np.testing.assert_array_equal(bp.present, [True, False, True])
    assert rp.present.all()
    for arr in (bp.coefficients, bp.errors, bp.correlations):
        assert np.isnan(arr[row]).all()
        assert np.isfinite(arr[[0, 2]]).all()
    # the other rows are the very same spectra as in XP_CONTINUOUS_RAW
    raw = raw_frames["csv"]
    for band, arrays in (("bp", bp), ("rp", rp)):
        ref = xp_band_arrays(raw, band)
        np.testing.assert_array_equal(arrays.coefficients[[0, 2]], ref.coefficients)
        np.testing.assert_array_equal(arrays.correlations[[0, 2]], ref.correlations)
    cov = xp_covariance(df, "bp")
    assert np.isnan(cov[row]).all() and np.isfinite(cov[[0, 2]]).all()
    np.testing.assert_array_equal(is_positive_definite(cov), [True, False, True])
    # The RP-only source still has a formal covariance: its own standard deviation is there.
    assert np.isfinite(xp_covariance(df, "rp", scaled=False)).all()


@pytest.mark.parametrize("fmt, ext", [("fits", "fits"), ("ascii.ecsv", "ecsv"), ("votable", "xml")])
def test_missing_band_in_variable_length_formats(xp_dir, tmp_path, fmt, ext):
    """A missing band stored as zero-length arrays (FITS/ECSV/VOTable) reads as None."""
    df = read_xp_continuous(xp_dir / f"{RAW}_with_missing_BP.csv")
    table = Table()
    table["source_id"] = df["source_id"].to_numpy()
    table["phot_g_mean_mag"] = np.array([10.0, 15.5, 17.0])
    for band in BANDS:
        for col in ("coefficients", "coefficient_errors", "coefficient_correlations"):
            dtype = np.float32 if col == "coefficient_correlations" else np.float64
            cells = np.empty(len(df), dtype=object)
            for i, cell in enumerate(df[f"{band}_{col}"]):
                cells[i] = np.zeros(0, dtype) if cell is None else cell
            table[f"{band}_{col}"] = cells
    path = tmp_path / f"missing.{ext}"
    table.write(path, format=fmt)
    back = read_xp_continuous(path)
    assert back["bp_coefficients"].iloc[1] is None
    assert back["bp_coefficient_correlations"].iloc[1] is None
    assert pd.isna(back["bp_n_parameters"].iloc[1]) and back["rp_n_parameters"].iloc[1] == K
    assert back["bp_standard_deviation"].isna().all()  # absent column -> NaN
    np.testing.assert_allclose(back["phot_g_mean_mag"], [10.0, 15.5, 17.0])
    for band in BANDS:
        a, b = xp_band_arrays(df, band), xp_band_arrays(back, band)
        np.testing.assert_array_equal(b.present, a.present)
        np.testing.assert_array_equal(b.coefficients, a.coefficients)
        np.testing.assert_array_equal(b.correlations, a.correlations)


def test_18sco_reduced_table(xp_dir):
    df = read_xp_continuous(xp_dir / "18Sco-XP-spectra.csv")
    assert list(df["source_id"]) == [SCO18]
    np.testing.assert_allclose(df["phot_g_mean_mag"], 5.33, atol=0.01)
    for band in BANDS:
        assert df[f"{band}_standard_deviation"].isna().all()
        arrays = xp_band_arrays(df, band)
        assert arrays.coefficients.shape == (1, K) and arrays.present.all()
        cov = xp_covariance(df, band)
        np.testing.assert_allclose(np.sqrt(np.diagonal(cov, axis1=1, axis2=2)), arrays.errors,
                                   rtol=1e-12)
        assert is_positive_definite(cov).all()
        with pytest.raises(ValueError, match="standard_deviation"):
            xp_covariance(df, band, scaled=False)


def test_dr3int6_table_reads_and_is_positive_definite(xp_dir):
    df = read_xp_continuous(xp_dir / f"{RAW}_colour_eq_dr3int6.csv")
    assert len(df) == 3 and df["source_id"].is_unique
    for band in BANDS:
        assert is_positive_definite(xp_covariance(df, band)).all()


def test_upper_case_archive_names_are_recognised(xp_dir, tmp_path):
    raw = pd.read_csv(xp_dir / f"{RAW}.csv")
    raw.columns = [c.upper() for c in raw.columns]
    path = tmp_path / "upper.csv"
    raw.to_csv(path, index=False)
    df = read_xp_continuous(path)
    assert "source_id" in df and "rp_coefficient_correlations" in df
    assert df["source_id"].iloc[0] == BRIGHT


# --------------------------------------------------------------------------- covariance vs AVRO


def test_avro_reader_structure(avro):
    assert list(avro["source_id"]) == [BRIGHT, FAINT]
    for band, basis in (("bp", 56), ("rp", 57)):
        assert (avro[f"{band}_basis_function_id"] == basis).all()
        for coeffs, cov in zip(avro[f"{band}_coefficients"], avro[f"{band}_covariance"]):
            assert coeffs.shape == (K,) and cov.shape == (K, K)
            np.testing.assert_array_equal(cov, cov.T)
            assert np.all(np.diag(cov) > 0)


def test_rebuilt_covariance_matches_avro(raw_frames, avro):
    df = raw_frames["csv"]
    order = [list(avro["source_id"]).index(s) for s in df["source_id"]]
    for band in BANDS:
        truth = np.stack(avro[f"{band}_covariance"].to_numpy()[order])
        sd = avro[f"{band}_standard_deviation"].to_numpy()[order]
        np.testing.assert_array_equal(
            np.stack(avro[f"{band}_coefficients"].to_numpy()[order]),
            xp_band_arrays(df, band).coefficients)
        scaled = xp_covariance(df, band)
        np.testing.assert_allclose(scaled, truth * sd[:, None, None] ** 2, rtol=1e-5, atol=0)
        formal = xp_covariance(df, band, scaled=False)
        np.testing.assert_allclose(formal, truth, rtol=1e-5, atol=0)
        # archive standard deviation == AVRO's, to float32 precision
        np.testing.assert_allclose(df[f"{band}_standard_deviation"], sd, rtol=1e-7)


def test_triangle_order_guard(raw_frames):
    """Right order: positive definite, equal to a hand-built loop; wrong order: not PD."""
    df = raw_frames["csv"]
    for band in BANDS:
        arrays = xp_band_arrays(df, band)
        cov = correlation_to_covariance(arrays.errors, arrays.correlations)
        assert is_positive_definite(cov).all()
        wrong = np.stack([wrong_order_covariance(e, r)
                          for e, r in zip(arrays.errors, arrays.correlations)])
        assert not is_positive_definite(wrong).any()
        assert (np.linalg.eigvalsh(wrong)[:, 0] < 0).all()
        for i in range(len(df)):
            np.testing.assert_allclose(
                cov[i], hand_covariance(arrays.errors[i], arrays.correlations[i].astype(float)),
                rtol=1e-15, atol=0)


# --------------------------------------------------------------------------- input variety


def test_band_arrays_accept_tables_dicts_and_strings(xp_dir, raw_frames):
    ref = xp_band_arrays(raw_frames["csv"], "rp")
    as_text = pd.read_csv(xp_dir / f"{RAW}.csv")  # cells are "(v1, v2, ...)" strings
    as_table = Table.read(xp_dir / f"{RAW}.fits")
    names = ("rp_coefficients", "rp_coefficient_errors", "rp_coefficient_correlations")
    as_lists = {c: [list(v) for v in raw_frames["csv"][c]] for c in names}
    as_dense = {"rp_coefficients": ref.coefficients, "rp_coefficient_errors": ref.errors,
                "rp_coefficient_correlations": ref.correlations}
    bracketed = {c: ["[" + " ".join(repr(float(x)) for x in v) + "]"
                     for v in raw_frames["csv"][c]] for c in as_lists}
    for table in (as_text, as_table, as_lists, as_dense, bracketed):
        got = xp_band_arrays(table, "RP")
        assert isinstance(got, XPBand)
        np.testing.assert_allclose(got.coefficients, ref.coefficients, rtol=1e-12)
        np.testing.assert_allclose(got.errors, ref.errors, rtol=1e-7)
        np.testing.assert_allclose(got.correlations, ref.correlations, rtol=1e-6, atol=1e-8)
        assert got.present.all()


def test_n_coefficients_keeps_the_leading_block(raw_frames):
    df = raw_frames["csv"]
    full = xp_covariance(df, "rp")
    for n in (1, 10, K):
        part = xp_band_arrays(df, "rp", n_coefficients=n)
        assert part.coefficients.shape == (2, n)
        assert part.correlations.shape == (2, n * (n - 1) // 2)
        np.testing.assert_array_equal(xp_covariance(df, "rp", n_coefficients=n),
                                      full[:, :n, :n])
    with pytest.raises(ValueError, match="hold only 55"):
        xp_band_arrays(df, "rp", n_coefficients=56)


def test_band_entirely_missing_uses_dr3_size():
    table = {"source_id": [1, 2], "bp_coefficients": [None, np.nan],
             "bp_coefficient_errors": ["", None], "bp_coefficient_correlations": [None, None]}
    got = xp_band_arrays(table, "bp")
    assert got.coefficients.shape == (2, K) and got.correlations.shape == (2, K * (K - 1) // 2)
    assert not got.present.any() and np.isnan(got.errors).all()


# --------------------------------------------------------------------------- errors


def test_wrong_correlation_length_is_reported():
    table = synthetic_table()
    table["bp_coefficient_correlations"][2] = table["bp_coefficient_correlations"][2][:-1]
    with pytest.raises(ValueError, match=r"14 values in row 2 \(source_id 1000000000000000002\)"
                                         r".*k \(k - 1\) / 2 = 15 for k = 6"):
        xp_band_arrays(table, "bp")
    with pytest.raises(ValueError, match="expected k"):
        correlation_to_covariance(np.ones((3, 6)), np.zeros((3, 14)))


def test_inconsistent_coefficient_counts_are_reported():
    table = synthetic_table()
    table["bp_coefficients"][3] = np.ones(5)
    with pytest.raises(ValueError, match=r"5 values in row 3 \(source_id 1000000000000000003\) "
                                         r"but 6 in row 0"):
        xp_band_arrays(table, "bp")
    table = synthetic_table()
    table["bp_coefficient_errors"][1] = np.ones(7)
    with pytest.raises(ValueError, match=r"'bp_coefficient_errors' has 7 values in row 1"):
        xp_band_arrays(table, "bp")
    table = synthetic_table()
    table["bp_coefficient_errors"][0] = None
    with pytest.raises(ValueError, match="has bp_coefficients but no bp_coefficient_errors"):
        xp_band_arrays(table, "bp")


def test_missing_column_is_reported(xp_dir, tmp_path):
    table = synthetic_table()
    del table["bp_coefficient_errors"]
    with pytest.raises(ValueError, match="Missing column 'bp_coefficient_errors' for the BP"):
        xp_band_arrays(table, "bp")
    with pytest.raises(ValueError, match="Missing column 'rp_coefficients'"):
        xp_band_arrays(synthetic_table(), "rp")
    with pytest.raises(ValueError, match="band must be 'bp' or 'rp'"):
        xp_band_arrays(synthetic_table(), "g")
    raw = pd.read_csv(xp_dir / f"{RAW}.csv").drop(columns="rp_coefficient_correlations")
    path = tmp_path / "no_corr.csv"
    raw.to_csv(path, index=False)
    with pytest.raises(ValueError, match="missing column.*'rp_coefficient_correlations'"):
        read_xp_continuous(path)


def test_unparsable_cells_are_reported():
    table = synthetic_table(n=2)
    table["bp_coefficients"] = ["(1, 2, 3, 4, 5, 6)", "(1, 2, x, 4, 5, 6)"]
    with pytest.raises(ValueError, match=r"'bp_coefficients', row 1 .*cannot parse"):
        xp_band_arrays(table, "bp")
    table["bp_coefficients"] = ["(1, 2, 3, 4, 5, 6)", "(1, 2,, 4, 5, 6)"]
    with pytest.raises(ValueError, match="cannot parse"):
        xp_band_arrays(table, "bp")
    table["bp_coefficients"] = ["(1, 2, 3, 4, 5, 6)", "[1. 2. ... 6.]"]
    with pytest.raises(ValueError, match="truncated"):
        xp_band_arrays(table, "bp")


def test_avro_needs_fastavro(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "fastavro", None)
    with pytest.raises(ImportError, match="pip install fastavro"):
        read_xp_avro(tmp_path / "x.avro")


# --------------------------------------------------------------------------- helpers


def test_packed_sizes_round_trip():
    assert packed_lower_size(K) == 1485 and packed_lower_size(K, diagonal=True) == 1540
    for k in range(0, 70):
        for diagonal in (False, True):
            m = packed_lower_size(k, diagonal)
            if m or diagonal:
                assert n_from_packed_size(m, diagonal) == k
    with pytest.raises(ValueError, match="1484"):
        n_from_packed_size(1484)
    rng = np.random.default_rng(3)
    A = rng.normal(size=(5, 7, 7))
    S = A @ np.swapaxes(A, 1, 2)
    rows, cols = np.tril_indices(7)
    np.testing.assert_array_equal(unpack_lower_triangle(S[:, rows, cols]), S)


def test_is_positive_definite_matches_eigenvalues():
    rng = np.random.default_rng(7)
    n, k = 300, 12
    A = rng.normal(size=(n, k, k))
    cov = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(k)
    bad = rng.choice(n, size=9, replace=False)
    cov[bad, 0, 0] = -1.0  # negative variance: indefinite
    cov[5] = np.nan  # e.g. a missing band
    truth = np.linalg.eigvalsh(np.nan_to_num(cov))[:, 0] > 0
    truth[5] = False
    np.testing.assert_array_equal(is_positive_definite(cov), truth)
    assert truth.sum() == n - len(set(bad) | {5})
    assert bool(is_positive_definite(cov[0] if 0 not in bad else cov[1]))
    with pytest.raises(ValueError, match="shape"):
        is_positive_definite(np.ones((3, 4, 5)))


def test_correlation_to_covariance_is_vectorised_over_many_sources():
    rng = np.random.default_rng(11)
    n, k = 20_000, K
    errors = rng.uniform(0.5, 2.0, size=(n, k))
    corr = rng.random((n, k * (k - 1) // 2), dtype=np.float32)
    corr -= 0.5
    corr *= 0.1
    cov = correlation_to_covariance(errors, corr, dtype=np.float32)
    assert cov.shape == (n, k, k) and cov.dtype == np.float32
    assert np.array_equal(cov, np.swapaxes(cov, 1, 2))  # exactly symmetric
    np.testing.assert_allclose(np.diagonal(cov, axis1=1, axis2=2), errors**2, rtol=1e-6)
    i = 12_345
    np.testing.assert_allclose(cov[i], hand_covariance(errors[i], corr[i].astype(float)),
                               rtol=1e-5)
    # a single source (1-D inputs) gives one matrix
    one = correlation_to_covariance(errors[i], corr[i])
    np.testing.assert_allclose(one, cov[i], rtol=1e-5)
