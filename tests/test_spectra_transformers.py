"""Tests of skstellar.preprocessing.spectra: resampling, rest-frame shift, min-max scaling."""

import pickle

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline

from skstellar.preprocessing import spectra as spectra_module
from skstellar.preprocessing.spectra import (
    C_KMS,
    RestFrameShifter,
    SpectrumMinMaxScaler,
    SpectrumResampler,
    to_rest_frame,
)
from skstellar.spectrum import SpectrumBatch

GRID = 3800.0 + np.arange(4201.0)


def _lamost_like(n=12, p=1200, seed=0, w0=3700.0, w1=9100.0, jitter=3e-4):
    """Log-linear per-spectrum grids (LAMOST-like), smooth flux with noise, ivar."""
    rng = np.random.default_rng(seed)
    log0 = np.log10(w0) + rng.uniform(-jitter, jitter, n)
    dlog = (np.log10(w1) - np.log10(w0)) / (p - 1)
    wave = 10 ** (log0[:, None] + dlog * np.arange(p))
    flux = 1.0 + 0.3 * np.sin(wave / 37.0) + 0.05 * rng.standard_normal((n, p))
    ivar = rng.uniform(50.0, 200.0, (n, p))
    return wave, flux, ivar


def _interp_rows(grid, wave, flux):
    """Reference: np.interp per spectrum, NaN outside the spectrum's range."""
    out = np.empty((len(flux), grid.size))
    for i in range(len(flux)):  # a loop is fine in the reference
        ok = np.isfinite(wave[i])
        w, f = wave[i][ok], flux[i][ok]
        out[i] = np.interp(grid, w, f, left=np.nan, right=np.nan)
    return out


# ---------------------------------------------------------------------------
# Linear interpolation
# ---------------------------------------------------------------------------
def test_linear_matches_np_interp_per_spectrum_grids():
    wave, flux, ivar = _lamost_like()
    batch = SpectrumBatch(wave, flux, ivar)
    res = SpectrumResampler().fit(batch)
    out = res.transform(batch)
    assert out.shape == (12, 4201)
    assert out.dtype == np.float64
    assert_allclose(res.grid_, GRID)
    assert_allclose(out, _interp_rows(GRID, wave, flux), rtol=1e-10, atol=1e-10)


def test_linear_shared_grid_equals_per_spectrum_grid():
    wave, flux, ivar = _lamost_like(jitter=0.0)
    shared = SpectrumBatch(wave[0], flux, ivar)
    per_row = SpectrumBatch(wave, flux, ivar)
    res = SpectrumResampler().fit(shared)
    a = res.transform_batch(shared)
    b = res.transform_batch(per_row)
    assert_allclose(a.flux, b.flux, rtol=1e-12)
    assert_allclose(a.ivar, b.ivar, rtol=1e-12)
    assert_allclose(a.flux, _interp_rows(GRID, wave, flux), rtol=1e-10, atol=1e-10)


def test_linear_non_uniform_explicit_grid():
    wave, flux, _ = _lamost_like(n=5)
    grid = np.geomspace(4000.0, 7000.0, 777)
    out = SpectrumResampler(grid=grid).fit_transform(SpectrumBatch(wave, flux))
    assert_allclose(out, _interp_rows(grid, wave, flux), rtol=1e-10, atol=1e-10)


def test_ragged_padded_batch_and_list_of_tuples():
    rng = np.random.default_rng(1)
    lengths = [300, 250, 280]
    starts = [3700.0, 3750.0, 3790.0]
    items, p = [], max(lengths)
    wave = np.full((3, p), np.nan)
    flux = np.full((3, p), np.nan)
    ivar = np.zeros((3, p))
    for i, (n_i, s_i) in enumerate(zip(lengths, starts)):
        w = np.sort(rng.uniform(s_i, 8100.0, n_i))
        w[0], w[-1] = s_i, 8100.0
        f = rng.normal(5.0, 1.0, n_i)
        iv = rng.uniform(1.0, 2.0, n_i)
        items.append((w, f, iv))
        wave[i, :n_i], flux[i, :n_i], ivar[i, :n_i] = w, f, iv
    batch = SpectrumBatch(wave, flux, ivar, mask=~np.isfinite(wave), npix=lengths)
    res = SpectrumResampler().fit(batch)
    from_batch = res.transform_batch(batch)
    from_list = res.transform_batch(items)
    assert_allclose(from_batch.flux, _interp_rows(GRID, wave, flux), rtol=1e-10)
    assert_allclose(from_list.flux, from_batch.flux)
    assert_allclose(from_list.ivar, from_batch.ivar)
    assert not from_batch.mask.any()
    # pixels past npix are padding even when their wavelengths are not NaN
    garbage = np.where(np.isfinite(wave), wave, 0.0)
    batch2 = SpectrumBatch(garbage, np.nan_to_num(flux), ivar, npix=lengths)
    assert_allclose(res.transform(batch2), from_batch.flux)


def test_list_of_tuples_without_ivar_and_plain_flux():
    wave = np.linspace(3700.0, 8100.0, 500)
    items = [(wave, np.sin(wave / 100.0)), (wave * 1.001, np.cos(wave / 100.0))]
    out = SpectrumResampler().fit_transform(items)
    ref = _interp_rows(GRID, np.stack([wave, wave * 1.001]), np.stack([f for _, f in items]))
    assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    batch = SpectrumResampler().fit(items).transform_batch(items)
    assert batch.ivar is None
    assert batch.mask.shape == (2, 4201)


def test_coverage_flags_and_exact_end_points():
    wave = np.linspace(4000.0, 7000.0, 301)  # 10 A pixels, ends on the grid
    flux = 2.0 + wave / 1000.0
    res = SpectrumResampler(fill_value=-1.0).fit([(wave, flux)])
    batch = res.transform_batch([(wave, flux)])
    inside = (GRID >= 4000.0) & (GRID <= 7000.0)
    assert_array_equal(batch.mask[0], ~inside)
    assert_array_equal(batch.flux[0, ~inside], -1.0)  # flagged, not extrapolated
    assert_allclose(batch.flux[0, inside], 2.0 + GRID[inside] / 1000.0, rtol=1e-12)


def test_masked_ivar_zero_and_nan_pixels_flag_their_neighbourhood():
    wave = np.linspace(3700.0, 8100.0, 441)  # 10 A pixels on integer wavelengths
    flux = np.ones((3, wave.size))
    ivar = np.ones((3, wave.size))
    mask = np.zeros((3, wave.size), bool)
    k = int(np.flatnonzero(wave == 5000.0)[0])
    mask[0, k] = True
    ivar[1, k] = 0.0
    flux[2, k] = np.nan
    batch = SpectrumBatch(wave, flux, ivar, mask)
    out = SpectrumResampler().fit(batch).transform_batch(batch)
    expected = (GRID > 4990.0) & (GRID < 5010.0)  # 4990 and 5010 hit good pixels
    for i in range(3):
        assert_array_equal(out.mask[i], expected)
        assert np.isnan(out.flux[i, expected]).all()
        assert_array_equal(out.ivar[i, expected], 0.0)
        assert_allclose(out.flux[i, ~expected], 1.0)


def test_identity_resampling_keeps_values_and_masks():
    rng = np.random.default_rng(2)
    flux = rng.normal(10.0, 1.0, (4, GRID.size))
    ivar = rng.uniform(1.0, 4.0, (4, GRID.size))
    mask = np.zeros_like(flux, bool)
    mask[0, [0, 17, 4200]] = True
    mask[1, 2000:2005] = True
    batch = SpectrumBatch(GRID, flux, ivar, mask)
    out = SpectrumResampler().fit(batch).transform_batch(batch)
    assert_array_equal(out.mask, mask)
    assert_allclose(out.flux[~mask], flux[~mask], rtol=1e-12)
    assert_allclose(out.ivar[~mask], ivar[~mask], rtol=1e-12)


def test_max_gap_flags_detector_gaps():
    wave = np.concatenate([np.arange(3700.0, 5001.0, 10.0), np.arange(5500.0, 8101.0, 10.0)])
    flux = np.ones(wave.size)
    plain = SpectrumResampler().fit_transform([(wave, flux)])
    gapped = SpectrumResampler(max_gap=100.0).fit_transform([(wave, flux)])
    in_gap = (GRID > 5000.0) & (GRID < 5500.0)
    assert np.isfinite(plain).all()
    assert_array_equal(np.isnan(gapped[0]), in_gap)


def test_linear_error_propagation_matches_monte_carlo():
    rng = np.random.default_rng(3)
    wave = np.sort(rng.uniform(3990.0, 4110.0, 60))
    sigma = rng.uniform(0.5, 2.0, wave.size)
    truth = np.sin(wave / 7.0)
    n_draws = 4000
    flux = truth + sigma * rng.standard_normal((n_draws, wave.size))
    ivar = np.broadcast_to(1.0 / sigma**2, flux.shape)
    grid = np.arange(4000.0, 4100.0, 0.7)
    res = SpectrumResampler(grid=grid).fit(SpectrumBatch(wave, flux[:1]))
    out = res.transform_batch(SpectrumBatch(wave, flux, ivar))
    predicted = 1.0 / out.ivar[0]
    assert_allclose(out.ivar, np.broadcast_to(out.ivar[0], out.ivar.shape))
    ratio = out.flux.var(axis=0, ddof=1) / predicted
    assert abs(ratio.mean() - 1.0) < 0.02
    assert np.all(np.abs(ratio - 1.0) < 0.15)
    # the explicit formula at one pixel
    t_grid = grid[10]
    i = np.searchsorted(wave, t_grid) - 1
    t = (t_grid - wave[i]) / (wave[i + 1] - wave[i])
    assert_allclose(predicted[10], (1 - t) ** 2 * sigma[i] ** 2 + t**2 * sigma[i + 1] ** 2)


def test_float32_flux_gives_float32_output():
    wave, flux, ivar = _lamost_like(n=3)
    batch = SpectrumBatch(wave, flux.astype(np.float32), ivar.astype(np.float32))
    res = SpectrumResampler().fit(batch)
    assert res.transform(batch).dtype == np.float32
    out = res.transform_batch(batch)
    assert out.flux.dtype == np.float32 and out.ivar.dtype == np.float32
    assert_allclose(out.flux, _interp_rows(GRID, wave, flux.astype(np.float32)), rtol=1e-5)


def test_threads_and_blocks_do_not_change_the_result(monkeypatch):
    wave, flux, ivar = _lamost_like(n=9)
    ivar[2, 100:110] = 0.0
    batch = SpectrumBatch(wave, flux, ivar)
    ref = SpectrumResampler().fit(batch).transform_batch(batch)
    for name in ("_BLOCK_ELEMENTS", "_BLOCK_ELEMENTS_THREADS"):
        monkeypatch.setattr(spectra_module, name, 2 * 4201)  # 2 spectra per block
    for n_jobs in (1, 2):
        got = SpectrumResampler(n_jobs=n_jobs).fit(batch).transform_batch(batch)
        assert_array_equal(got.flux, ref.flux)
        assert_array_equal(got.ivar, ref.ivar)
        assert_array_equal(got.mask, ref.mask)


def test_transform_batch_output_and_meta():
    wave, flux, ivar = _lamost_like(n=4)
    meta = pd.DataFrame({"z": [0.01, 0.02, 0.03, 0.04], "name": list("abcd")})
    batch = SpectrumBatch(wave, flux, ivar, meta=meta)
    res = SpectrumResampler(output="batch").fit(batch)
    out = res.transform(batch)
    assert isinstance(out, SpectrumBatch)
    assert_array_equal(out.wavelength, GRID)
    pd.testing.assert_frame_equal(out.meta, meta)
    assert out.meta is not meta
    assert_array_equal(out.npix, 4201)
    assert (out.ivar > 0).all()


# ---------------------------------------------------------------------------
# Flux-conserving rebinning
# ---------------------------------------------------------------------------
def _flux_conserving_reference(edges_out, wave, flux):
    """Mean of the piecewise-constant input over each output bin (loop per spectrum)."""
    out = np.empty((len(flux), edges_out.size - 1))
    for i in range(len(flux)):
        w, f = wave[i], flux[i]
        e = np.concatenate([[1.5 * w[0] - 0.5 * w[1]], 0.5 * (w[1:] + w[:-1]),
                            [1.5 * w[-1] - 0.5 * w[-2]]])
        cum = np.concatenate([[0.0], np.cumsum(f * np.diff(e))])
        c = np.interp(edges_out, e, cum)  # exact: the integral is piecewise linear
        out[i] = np.diff(c) / np.diff(edges_out)
        out[i, (edges_out[:-1] < e[0]) | (edges_out[1:] > e[-1])] = np.nan
    return out


def test_flux_conserving_matches_reference_and_conserves_integral():
    wave, flux, ivar = _lamost_like(n=6, p=2500)
    batch = SpectrumBatch(wave, flux, ivar)
    res = SpectrumResampler(method="flux_conserving").fit(batch)
    out = res.transform(batch)
    edges = res.bin_edges_
    assert_allclose(edges[:3], [3799.5, 3800.5, 3801.5])
    ref = _flux_conserving_reference(edges, wave, flux)
    assert_allclose(out, ref, rtol=1e-9, atol=1e-9)
    # integral over a range of whole output bins = integral of the input there
    k0, k1 = 100, 3900
    for i in range(len(flux)):
        e = np.concatenate([[1.5 * wave[i, 0] - 0.5 * wave[i, 1]],
                            0.5 * (wave[i, 1:] + wave[i, :-1]),
                            [1.5 * wave[i, -1] - 0.5 * wave[i, -2]]])
        cum = np.concatenate([[0.0], np.cumsum(flux[i] * np.diff(e))])
        total_in = np.interp(edges[k1], e, cum) - np.interp(edges[k0], e, cum)
        assert_allclose(np.sum(out[i, k0:k1] * np.diff(edges)[k0:k1]), total_in, rtol=1e-10)


def test_flux_conserving_aligned_pixels_average_exactly():
    # 0.25 A pixels whose edges fall on the 1 A output bin edges (x.5)
    wave = 3700.125 + 0.25 * np.arange(4 * 4400)
    rng = np.random.default_rng(4)
    flux = rng.normal(3.0, 1.0, (2, wave.size))
    out = SpectrumResampler(method="flux_conserving").fit_transform(SpectrumBatch(wave, flux))
    first = int(np.flatnonzero(np.isclose(wave, 3799.625))[0])
    expected = flux[:, first:first + 4 * 4201].reshape(2, 4201, 4).mean(axis=2)
    assert_allclose(out, expected, rtol=1e-10)
    assert_allclose(out.sum(axis=1), flux[:, first:first + 4 * 4201].sum(axis=1) / 4, rtol=1e-11)


def test_flux_conserving_masks_and_errors_match_monte_carlo():
    rng = np.random.default_rng(5)
    wave = np.sort(rng.uniform(3990.0, 4060.0, 200))  # ~0.35 A pixels, 1 A bins
    sigma = rng.uniform(0.5, 2.0, wave.size)
    n_draws = 4000
    flux = 1.0 + sigma * rng.standard_normal((n_draws, wave.size))
    ivar = np.broadcast_to(1.0 / sigma**2, flux.shape).copy()
    grid = np.arange(4000.0, 4050.0)
    res = SpectrumResampler(grid=grid, method="flux_conserving").fit(SpectrumBatch(wave, flux[:1]))
    out = res.transform_batch(SpectrumBatch(wave, flux, ivar))
    ratio = out.flux.var(axis=0, ddof=1) * out.ivar[0]
    assert abs(ratio.mean() - 1.0) < 0.02
    assert np.all(np.abs(ratio - 1.0) < 0.15)
    # a bad pixel flags exactly the bins its extent overlaps
    ivar[:, 50] = 0.0
    out = res.transform_batch(SpectrumBatch(wave, flux[:2], ivar[:2]))
    lo = 0.5 * (wave[49] + wave[50])
    hi = 0.5 * (wave[50] + wave[51])
    e = res.bin_edges_
    overlaps = (e[1:] > lo) & (e[:-1] < hi)
    assert_array_equal(out.mask[0], overlaps)
    assert_array_equal(out.ivar[0, overlaps], 0.0)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------
def test_non_monotonic_wavelengths_name_the_spectrum(monkeypatch):
    wave, flux, _ = _lamost_like(n=8, p=300)
    wave[5, 100] = wave[5, 98]
    with pytest.raises(ValueError, match=r"Spectrum 5 is not strictly increasing: pixel 99"):
        SpectrumResampler().fit_transform(SpectrumBatch(wave, flux))
    for name in ("_BLOCK_ELEMENTS", "_BLOCK_ELEMENTS_THREADS"):
        monkeypatch.setattr(spectra_module, name, 2 * 4201)  # in a later block
    for n_jobs in (1, 2):
        for method in ("linear", "flux_conserving"):
            with pytest.raises(ValueError, match=r"Spectrum 5 is not strictly increasing"):
                SpectrumResampler(method=method, n_jobs=n_jobs).fit_transform(
                    SpectrumBatch(wave, flux)
                )
    shared = SpectrumBatch(wave[5], flux)
    with pytest.raises(ValueError, match="shared wavelength grid is not strictly increasing"):
        SpectrumResampler().fit_transform(shared)


def test_nan_and_inf_wavelengths_inside_a_spectrum():
    wave, flux, _ = _lamost_like(n=3, p=300)
    bad = wave.copy()
    bad[1, 50] = np.nan
    with pytest.raises(ValueError, match=r"Spectrum 1 has a NaN wavelength at pixel 50"):
        SpectrumResampler().fit_transform(SpectrumBatch(bad, flux))
    bad = wave.copy()
    bad[2, -1] = np.inf
    with pytest.raises(ValueError, match=r"Spectrum 2 has an infinite wavelength"):
        SpectrumResampler().fit_transform(SpectrumBatch(bad, flux))


def test_shape_mismatches():
    w = np.linspace(3700.0, 8100.0, 10)
    with pytest.raises(ValueError, match=r"Spectrum 1: wavelength has 10 pixels but flux has 9"):
        SpectrumResampler().fit([(w, np.ones(10)), (w, np.ones(9))])
    with pytest.raises(ValueError, match=r"Spectrum 0: ivar has 3 pixels"):
        SpectrumResampler().fit([(w, np.ones(10), np.ones(3))])
    with pytest.raises(ValueError, match="1 of 2 spectra carry an ivar"):
        SpectrumResampler().fit([(w, np.ones(10), np.ones(10)), (w, np.ones(10))])
    with pytest.raises(ValueError, match=r"Spectrum 1: flux must be 1-D"):
        SpectrumResampler().fit([(w, np.ones(10)), (w, np.ones((2, 10)))])
    batch = SpectrumBatch(w, np.ones((2, 10)))
    batch.flux = np.ones((2, 11))  # mutated after construction
    with pytest.raises(ValueError, match="Shared wavelength grid has 10 pixels but flux has 11"):
        SpectrumResampler().fit(SpectrumBatch(w, np.ones((2, 10)))).transform(batch)
    with pytest.raises(ValueError, match=r"Spectrum 1: npix = 12"):
        SpectrumResampler().fit_transform(SpectrumBatch(w, np.ones((2, 10)), npix=[10, 12]))


def test_all_masked_spectrum():
    wave, flux, ivar = _lamost_like(n=4, p=300)
    ivar[2] = 0.0
    batch = SpectrumBatch(wave, flux, ivar)
    with pytest.raises(ValueError, match=r"Spectrum 2 has no valid pixel"):
        SpectrumResampler().fit_transform(batch)
    out = SpectrumResampler(on_empty="nan").fit(batch).transform_batch(batch)
    assert out.mask[2].all() and np.isnan(out.flux[2]).all()
    assert not out.mask[[0, 1, 3]].any()


def test_spectrum_outside_the_grid_and_min_coverage():
    w_far = np.linspace(8500.0, 9000.0, 100)
    w_ok = np.linspace(3700.0, 8100.0, 100)
    w_half = np.linspace(5900.0, 8100.0, 100)
    items = [(w_ok, np.ones(100)), (w_far, np.ones(100))]
    msg = r"Spectrum 1 \(valid pixels at 8500.0-9000.0 A\) does not overlap"
    with pytest.raises(ValueError, match=msg):
        SpectrumResampler().fit_transform(items)
    out = SpectrumResampler(on_uncovered="nan", fill_value=0.0).fit_transform(items)
    assert_array_equal(out[1], 0.0)
    assert_allclose(out[0], 1.0)
    half = [(w_ok, np.ones(100)), (w_half, np.ones(100))]
    assert np.isfinite(SpectrumResampler().fit_transform(half)[1, -100:]).all()
    with pytest.raises(ValueError, match=r"Spectrum 1 .* only 50.0% of \(min_coverage=0.9\)"):
        SpectrumResampler(min_coverage=0.9).fit_transform(half)
    out = SpectrumResampler(min_coverage=0.9, on_uncovered="nan").fit_transform(half)
    assert np.isnan(out[1]).all() and np.isfinite(out[0]).all()


def test_plain_arrays_pass_through_or_are_refused():
    wave, flux, _ = _lamost_like(n=3, p=300)
    res = SpectrumResampler().fit(SpectrumBatch(wave, flux))
    on_grid = res.transform(SpectrumBatch(wave, flux))
    on_grid[0, 5] = np.nan
    again = res.transform(on_grid)
    assert_array_equal(again, on_grid)
    assert again is not on_grid
    assert_array_equal(SpectrumResampler(fill_value=0.0).fit(on_grid).transform(on_grid)[0, 5], 0.0)
    msg = "X has 300 features, but SpectrumResampler is expecting 4201"
    with pytest.raises(ValueError, match=msg):
        res.transform(flux)
    with pytest.raises(ValueError, match="expecting 50 features"):
        SpectrumResampler(grid=np.arange(50.0) + 4000.0).fit(flux)
    # grid=None and an array in fit: the width is recorded and checked
    narrow = SpectrumResampler().fit(flux)
    assert narrow.n_features_in_ == 300
    assert_array_equal(narrow.transform(flux), flux)
    with pytest.raises(ValueError, match="X has 299 features"):
        narrow.transform(flux[:, 1:])
    with pytest.raises(ValueError, match="transform_batch needs an array on the grid"):
        narrow.transform_batch(flux)
    batch = res.transform_batch(on_grid)
    assert batch.mask[0, 5] and batch.mask.sum() == 1 and batch.ivar is None


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(method="cubic"), "parameter .method. must be one of"),
        (dict(output="table"), "parameter .output. must be one of"),
        (dict(on_empty="skip"), "parameter .on_empty. must be one of"),
        (dict(max_gap=-1.0), "parameter .max_gap. must be None or a float > 0"),
        (dict(min_coverage=2.0), "parameter .min_coverage. must be a float in"),
        (dict(step=0.0), "parameter .step. must be a float > 0"),
        (dict(wave_min=5000.0, wave_max=4000.0),
         "wave_min..wave_max at this step needs at least 2 pixels"),
        (dict(grid=[4000.0, 4002.0, 4001.0]), r"grid must be strictly increasing; grid\[1\]"),
        (dict(grid=[4000.0]), "at least 2"),
    ],
)
def test_invalid_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        SpectrumResampler(**params).fit([(np.linspace(3700.0, 8100.0, 10), np.ones(10))])


def test_feature_names_and_pandas_output():
    items = [(np.linspace(3700.0, 8100.0, 100), np.ones(100))]
    res = SpectrumResampler().fit(items)
    names = res.get_feature_names_out()
    assert names[0] == "flux_3800.0" and names[-1] == "flux_8000.0" and len(names) == 4201
    assert SpectrumResampler(step=0.1, wave_max=3800.5).fit(items).get_feature_names_out()[3] == (
        "flux_3800.3"
    )
    df = res.set_output(transform="pandas").transform(items)
    assert isinstance(df, pd.DataFrame) and list(df.columns[:2]) == ["flux_3800.0", "flux_3801.0"]


def test_pickle_round_trip():
    wave, flux, ivar = _lamost_like(n=3, p=300)
    batch = SpectrumBatch(wave, flux, ivar)
    res = SpectrumResampler(method="flux_conserving").fit(batch)
    clone = pickle.loads(pickle.dumps(res))
    assert_array_equal(clone.transform(batch), res.transform(batch))


# ---------------------------------------------------------------------------
# Rest frame
# ---------------------------------------------------------------------------
def test_to_rest_frame():
    assert_allclose(to_rest_frame(6600.0, z=0.1), 6000.0)
    assert_allclose(
        to_rest_frame([5000.0, 6000.0], z=[0.0, 1.0]), [[5000.0, 6000.0], [2500.0, 3000.0]]
    )
    assert_allclose(
        to_rest_frame(np.array([[5000.0], [6000.0]]), z=[0.0, 1.0]), [[5000.0], [3000.0]]
    )
    assert_allclose(to_rest_frame(5000.0, rv=C_KMS * 0.01), 5000.0 / 1.01)
    import astropy.units as u

    q = to_rest_frame([5000.0, 6000.0] * u.AA, rv=3.0 * u.km / u.s)
    assert q.unit == u.AA
    assert_allclose(q.value, np.array([5000.0, 6000.0]) / (1 + 3.0 / C_KMS))
    with pytest.raises(ValueError, match="exactly one of z"):
        to_rest_frame(5000.0)
    with pytest.raises(ValueError, match="z > -1"):
        to_rest_frame(5000.0, z=-1.0)


def test_rest_frame_shifter_then_resampler():
    wave, flux, ivar = _lamost_like(n=4)
    z = np.array([0.0, 0.05, 0.1, 0.2])
    batch = SpectrumBatch(wave[0], flux, ivar, meta=pd.DataFrame({"z": z}))
    shifted = RestFrameShifter().fit_transform(batch)
    assert_allclose(shifted.wavelength, wave[0] / (1 + z[:, None]))
    assert_array_equal(shifted.flux, flux)
    assert shifted.flux is not batch.flux
    pipe = make_pipeline(RestFrameShifter(), SpectrumResampler(wave_min=3000.0, wave_max=7000.0))
    out = pipe.fit_transform(batch)
    grid = np.arange(3000.0, 7000.5)
    assert_allclose(out, _interp_rows(grid, wave[0] / (1 + z[:, None]), flux), rtol=1e-10)
    # flux conservation of the shift itself
    cons = RestFrameShifter(conserve_flux=True).fit_transform(batch)
    assert_allclose(cons.flux, flux * (1 + z[:, None]))
    assert_allclose(cons.ivar, ivar / (1 + z[:, None]) ** 2)
    # radial velocities in km/s
    batch.meta["rv"] = [0.0, 30.0, -50.0, 100.0]
    rv = RestFrameShifter(rv_column="rv").fit_transform(batch)
    assert_allclose(rv.wavelength, wave[0] / (1 + batch.meta["rv"].to_numpy()[:, None] / C_KMS))


def test_rest_frame_shifter_errors():
    batch = SpectrumBatch(np.array([5000.0, 6000.0]), np.ones((2, 2)),
                          meta=pd.DataFrame({"redshift": [0.1, np.nan]}))
    msg = "Missing column 'z' for the redshift; available columns: redshift"
    with pytest.raises(ValueError, match=msg):
        RestFrameShifter().fit_transform(batch)
    msg = r"Column 'redshift' has 1 NaN redshift\(s\) \(first at row 1"
    with pytest.raises(ValueError, match=msg):
        RestFrameShifter(z_column="redshift").fit_transform(batch)
    batch.meta["redshift"] = [0.1, -1.5]
    with pytest.raises(ValueError, match=r"first at row 1: -1.5"):
        RestFrameShifter(z_column="redshift").fit_transform(batch)
    with pytest.raises(TypeError, match="needs a SpectrumBatch"):
        RestFrameShifter().fit_transform(np.ones((2, 2)))
    assert RestFrameShifter().__sklearn_tags__().input_tags.two_d_array is False


def test_rest_frame_shifter_follows_sklearn_conventions():
    from sklearn.base import clone

    est = RestFrameShifter(z_column="redshift", conserve_flux=True)
    assert clone(est).get_params() == est.get_params()
    assert "z_column='redshift'" in repr(est)
    batch = SpectrumBatch(np.array([5500.0, 6600.0]), np.ones((1, 2)),
                          meta=pd.DataFrame({"redshift": [0.1]}))
    again = pickle.loads(pickle.dumps(est.fit(batch)))
    assert_allclose(again.transform(batch).wavelength, [[5000.0, 6000.0]])
    assert not hasattr(est, "n_features_in_")


# ---------------------------------------------------------------------------
# Min-max scaler
# ---------------------------------------------------------------------------
def test_min_max_scaler_per_spectrum():
    rng = np.random.default_rng(6)
    X = rng.normal(50.0, 10.0, (5, 300)) * np.arange(1, 6)[:, None]
    X[1, 7] = np.nan
    out = SpectrumMinMaxScaler().fit_transform(X)
    fin = np.delete(out, 7, axis=1)
    assert_allclose(fin.min(axis=1), 0.0, atol=1e-15)
    assert_allclose(fin.max(axis=1), 1.0)
    assert out[1, 7] == 0.0  # filled after scaling
    row = X[3]
    assert_allclose(out[3], (row - row.min()) / (row.max() - row.min()))
    kept = SpectrumMinMaxScaler(fill_value=None).fit_transform(X)
    assert np.isnan(kept[1, 7])
    ranged = SpectrumMinMaxScaler(feature_range=(-1, 1)).fit_transform(X)
    assert_allclose(np.delete(ranged, 7, axis=1).min(axis=1), -1.0)
    assert_allclose(np.delete(ranged, 7, axis=1).max(axis=1), 1.0)
    # each spectrum on its own: a batch of one gives the same row
    assert_allclose(SpectrumMinMaxScaler().transform(X[2:3]), out[2:3])
    assert SpectrumMinMaxScaler().transform(X.astype(np.float32)).dtype == np.float32


def test_min_max_scaler_constant_and_empty_spectra():
    X = np.array([[1.0, 2.0, 3.0], [4.0, 4.0, np.nan], [np.nan, np.nan, np.nan]])
    with pytest.raises(ValueError, match=r"Spectrum 1 is constant \(min == max == 4"):
        SpectrumMinMaxScaler().fit_transform(X[:2])
    with pytest.raises(ValueError, match=r"Spectrum 1 has no finite pixel"):
        SpectrumMinMaxScaler().fit_transform(X[[0, 2, 1]])
    out = SpectrumMinMaxScaler(on_constant="zero").fit_transform(X)
    assert_allclose(out, [[0.0, 0.5, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    out = SpectrumMinMaxScaler(on_constant="zero", fill_value=None).fit_transform(X)
    assert_allclose(out[1, :2], 0.0)
    assert np.isnan(out[2]).all()
    with pytest.raises(ValueError, match="infinity|inf"):
        SpectrumMinMaxScaler().fit_transform(np.array([[1.0, np.inf, 2.0]]))
    with pytest.raises(ValueError, match="feature_range"):
        SpectrumMinMaxScaler(feature_range=(1, 0)).fit(X)


def test_min_max_scaler_on_a_batch():
    wave, flux, ivar = _lamost_like(n=3, p=200)
    mask = np.zeros_like(flux, bool)
    flux[0, 10] = 1e6  # a masked cosmic ray must not set the maximum
    mask[0, 10] = True
    batch = SpectrumBatch(wave, flux, ivar, mask)
    out = SpectrumMinMaxScaler().fit_transform(batch)
    assert isinstance(out, SpectrumBatch)
    good = ~mask
    rng = flux[0, good[0]].max() - flux[0, good[0]].min()
    assert_allclose(out.flux[0, good[0]].max(), 1.0)
    assert out.flux[0, 10] == 0.0 and out.mask[0, 10] and out.ivar[0, 10] == 0.0
    assert_allclose(out.ivar[0, good[0]], ivar[0, good[0]] * rng**2)


# ---------------------------------------------------------------------------
# Pipelines and scikit-learn conventions
# ---------------------------------------------------------------------------
def _simulated_batch(n=120, seed=7):
    """Ragged LAMOST-like spectra whose [NII]/H-alpha peak ratio is the target.

    The ratio survives per-spectrum min-max scaling (unlike a line amplitude
    relative to an arbitrary flux scale).
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(900, 1000, n)
    p = lengths.max()
    z = rng.uniform(0.0, 0.003, n)
    y = rng.uniform(0.2, 1.5, n)
    idx = np.arange(p)
    wave = 10 ** (np.log10(3700.0) + rng.uniform(-2e-4, 2e-4, n)[:, None] + 4e-4 * idx)
    wave[idx >= lengths[:, None]] = np.nan

    def line(center, amp):
        return amp * np.exp(-0.5 * ((wave - center * (1 + z)[:, None]) / 5.0) ** 2)

    flux = 1.0 + line(6564.6, 2.0) + line(6585.3, y[:, None])
    flux = flux * rng.uniform(0.5, 20.0, n)[:, None]
    flux += 0.01 * flux * rng.standard_normal((n, p))
    ivar = np.where(np.isfinite(wave), 2500.0, 0.0)
    mask = rng.uniform(size=(n, p)) < 1e-3
    return SpectrumBatch(wave, flux, ivar, mask, meta=pd.DataFrame({"z": z}), npix=lengths), y


def test_pipeline_on_resampled_arrays_with_cross_validation():
    batch, y = _simulated_batch()
    # the realistic pattern: resample once to an array, then CV on arrays
    X = SpectrumResampler(wave_min=6450.0, wave_max=6700.0, step=2.0).fit_transform(batch)
    assert np.isnan(X).any()  # masked pixels reach the scaler as NaN
    pipe = make_pipeline(
        SpectrumResampler(wave_min=6450.0, wave_max=6700.0, step=2.0),
        SpectrumMinMaxScaler(),
        Ridge(alpha=1e-3),
    )
    scores = cross_val_score(pipe, X, y, cv=KFold(4, shuffle=True, random_state=0))
    assert np.all(np.isfinite(scores)) and scores.mean() > 0.8
    search = GridSearchCV(pipe, {"ridge__alpha": [1e-3, 1e-1]}, cv=3).fit(X, y)
    assert search.best_score_ > 0.8
    # the same pipeline fed the SpectrumBatch itself (fit / predict, no CV split)
    pred = make_pipeline(
        SpectrumResampler(wave_min=6450.0, wave_max=6700.0, step=2.0),
        SpectrumMinMaxScaler(),
        Ridge(alpha=1e-3),
    ).fit(batch, y).predict(batch)
    assert_allclose(pred, pipe.fit(X, y).predict(X), rtol=1e-8)


# The scikit-learn estimator checks of these transformers live in tests/test_common.py.
