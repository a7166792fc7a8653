"""Tests of skstellar.preprocessing.continuum: the Gaussian-weighted pseudo-continuum."""

import pickle

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skstellar.preprocessing.continuum import (
    PAPER_MASK_WINDOWS,
    ContinuumNormalizer,
    pseudo_continuum,
    window_mask,
)
from skstellar.preprocessing.spectra import SpectrumResampler
from skstellar.spectrum import SpectrumBatch

WAVE = 6000.0 + np.arange(2901.0)  # the paper's 6000-8900 A grid at 1 A


def _direct_continuum(wave, flux, good, sigma=30.0):
    """Reference: Eq. 2 summed over all pixel pairs (O(n_pixels**2); fine for a test)."""
    d = wave[:, None] - wave[None, :]
    w = np.exp(-((d / sigma) ** 2))  # Eq. 3, no truncation
    out = np.empty(flux.shape)
    for i in range(flux.shape[0]):  # a loop is fine in the reference
        g = good[i].astype(float)
        out[i] = (w @ (np.where(good[i], flux[i], 0.0))) / (w @ g)
    return out


def _smooth_continuum(n=4, seed=0, wave=WAVE):
    """Smooth polynomial continua times per-spectrum constants."""
    rng = np.random.default_rng(seed)
    u = (wave - wave.mean()) / np.ptp(wave)
    shape = 1.0 + 0.3 * u - 0.2 * u**2 + 0.1 * u**3
    scale = rng.uniform(0.5, 50.0, (n, 1))
    return scale * shape


def _lines(wave, centres, depth=0.5, width=1.2):
    """Multiplicative absorption-line profile (Gaussian lines)."""
    prof = np.ones_like(wave)
    for c in centres:  # a handful of lines
        prof *= 1.0 - depth * np.exp(-0.5 * ((wave - c) / width) ** 2)
    return prof


# ---------------------------------------------------------------------------
# Fidelity to Eq. 2
# ---------------------------------------------------------------------------
def test_matches_direct_sum_of_eq2_with_masks_and_edges():
    rng = np.random.default_rng(1)
    wave = 6000.0 + np.arange(700.0)
    flux = _smooth_continuum(3, wave=wave) * _lines(wave, [6100, 6233, 6480])
    flux += 0.01 * rng.standard_normal(flux.shape)
    good = rng.random(flux.shape) > 0.05
    good[1, 300:380] = False  # a masked stretch
    cont = pseudo_continuum(flux, good, step=1.0, sigma=30.0, truncate=6.0)
    ref = _direct_continuum(wave, flux, good)
    assert_allclose(cont, ref, rtol=1e-9)
    # the default truncation (4 sigma, neglected weights < 1e-7) is as good to 1e-6
    assert_allclose(pseudo_continuum(flux, good), ref, rtol=1e-6)


def test_weights_use_exp_minus_d2_over_sigma2_not_two_sigma2():
    # A step tells the kernel width: the continuum of a unit step at offset d
    # is the weight fraction beyond the step, 0.5 * erfc(-d / sigma) for
    # w = exp(-d**2 / sigma**2) (Eq. 3), not 0.5 * erfc(-d / (sqrt(2) sigma))
    from scipy.special import erfc

    flux = np.where(WAVE < 7450.0, 0.0, 1.0)[None, :] + 1.0
    cont = pseudo_continuum(flux)[0]
    d = WAVE - 7449.5
    mid = np.abs(d) < 100
    assert_allclose(cont[mid] - 1.0, 0.5 * erfc(-d[mid] / 30.0), atol=1e-4)
    assert np.abs(cont[mid] - 1.0 - 0.5 * erfc(-d[mid] / (np.sqrt(2) * 30.0))).max() > 0.05


def test_pure_continuum_is_recovered():
    flux = _smooth_continuum(5)
    batch = SpectrumBatch(WAVE, flux, ivar=np.full(flux.shape, 100.0))
    cn = ContinuumNormalizer()
    cont = cn.continuum(batch)
    inner = (WAVE > 6100) & (WAVE < 8800)
    # bias of a Gaussian smoothing of a cubic: (sigma**2 / 4) f'' ~ 1e-5 relative
    assert_allclose(cont[:, inner], flux[:, inner], rtol=1e-4)
    # at the ends the one-sided weights shift the mean inward (Eq. 2 as printed)
    assert_allclose(cont, flux, rtol=5e-3)
    out = cn.fit_transform(batch)
    assert_allclose(out.flux[:, inner], 1.0, atol=1e-4)


def test_absorption_lines_normalise_to_one_away_from_lines():
    rng = np.random.default_rng(2)
    centres = np.arange(6050.0, 8900.0, 97.0)
    flux = _smooth_continuum(3) * _lines(WAVE, centres, depth=0.6)
    flux *= 1.0 + 0.002 * rng.standard_normal(flux.shape)
    out = ContinuumNormalizer().fit_transform(SpectrumBatch(WAVE, flux))
    far = np.min(np.abs(WAVE[:, None] - centres[None, :]), axis=1) > 10
    inner = far & (WAVE > 6100) & (WAVE < 8800)
    # the lines pull the pseudo-continuum down by their EW over the kernel (~3%)
    assert np.all(np.abs(np.median(out.flux[:, inner], axis=1) - 1.0) < 0.04)
    assert np.all(out.flux[:, inner].std(axis=1) < 0.01)
    # line cores keep their depth relative to the continuum
    core = np.isin(WAVE, centres[(centres > 6100) & (centres < 8800)])
    assert np.all(np.abs(out.flux[:, core] - 0.4) < 0.03)


# ---------------------------------------------------------------------------
# Masks, errors and bad pixels
# ---------------------------------------------------------------------------
def test_masked_window_spike_does_not_bias_the_continuum():
    flux = _smooth_continuum(2)
    spiky = flux.copy()
    spiky[:, (WAVE > 7240) & (WAVE < 7260)] *= 100.0  # inside the 7150-7350 window
    cn = ContinuumNormalizer(mask="paper")
    assert_allclose(cn.continuum(SpectrumBatch(WAVE, spiky)),
                    cn.continuum(SpectrumBatch(WAVE, flux)), rtol=1e-12)
    # without the mask the spike does pull the continuum up (the test can fail)
    plain = ContinuumNormalizer()
    ratio = plain.continuum(SpectrumBatch(WAVE, spiky)) / plain.continuum(SpectrumBatch(WAVE, flux))
    assert ratio.max() > 5.0


def test_window_pixels_are_normalised_and_optionally_flagged():
    flux = _smooth_continuum(2)
    batch = SpectrumBatch(WAVE, flux, ivar=np.ones(flux.shape))
    out = ContinuumNormalizer(mask="paper").fit_transform(batch)
    in_win = window_mask(WAVE, PAPER_MASK_WINDOWS)
    assert in_win.sum() == 60 + 40 + 25 + 35 + 200 + 100 + 140 + 7  # closed windows: +1 each
    assert not out.mask.any()
    # the 200 A window is bridged by the weighted mean of its edges (~1% off a sloped continuum)
    assert_allclose(out.flux, 1.0, atol=0.02)
    flagged = ContinuumNormalizer(mask="paper", flag_windows=True).fit_transform(batch)
    assert_array_equal(flagged.mask, np.broadcast_to(in_win, flux.shape))
    assert_allclose(flagged.flux, out.flux)


def test_errors_are_divided_by_the_continuum():
    rng = np.random.default_rng(3)
    flux = _smooth_continuum(4) * _lines(WAVE, [6500.0, 7000.0, 8000.0])
    ivar = rng.uniform(0.5, 2.0, flux.shape) / flux**2
    batch = SpectrumBatch(WAVE, flux, ivar=ivar)
    cn = ContinuumNormalizer()
    out = cn.fit_transform(batch)
    cont = cn.continuum(batch)
    assert_allclose(out.flux, flux / cont, rtol=1e-12)
    assert_allclose(out.ivar, ivar * cont**2, rtol=1e-12)
    assert_allclose(out.error(), batch.error() / cont, rtol=1e-12)
    # S/N per pixel is unchanged by the normalisation
    assert_allclose(out.flux * np.sqrt(out.ivar), flux * np.sqrt(ivar), rtol=1e-12)


def test_nan_and_zero_errors_are_left_out_and_flagged():
    rng = np.random.default_rng(4)
    flux = _smooth_continuum(2) * (1 + 0.01 * rng.standard_normal((2, WAVE.size)))
    ivar = np.full(flux.shape, 1e4)
    ivar[0, 100:110] = 0.0
    ivar[1, 2000:2005] = np.nan
    wild = flux.copy()
    wild[0, 100:110] = 1e6  # garbage flux where the errors say "no data"
    wild[1, 2000:2005] = -1e6
    out = ContinuumNormalizer().fit_transform(SpectrumBatch(WAVE, wild, ivar=ivar))
    good = np.isfinite(ivar) & (ivar > 0)
    expected_cont = pseudo_continuum(flux, good)
    assert_allclose(wild / out.flux, expected_cont, rtol=1e-10)
    assert_array_equal(out.mask, ~good)
    assert np.all(out.ivar[~good] == 0.0)
    assert np.all(np.isfinite(out.ivar))


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(5)
    flux = _smooth_continuum(7) * _lines(WAVE, rng.uniform(6000, 8900, 40))
    ivar = rng.uniform(10, 100, flux.shape)
    mask = rng.random(flux.shape) < 0.02
    mask[3, 1000:1100] = True
    batch = SpectrumBatch(WAVE, flux, ivar=ivar, mask=mask)
    cn = ContinuumNormalizer(mask="paper")
    whole = cn.fit_transform(batch)
    for i in range(len(batch)):  # reference: one spectrum at a time
        one = cn.transform(batch[i])
        assert_allclose(one.flux[0], whole.flux[i], rtol=1e-12, atol=0)
        assert_allclose(one.ivar[0], whole.ivar[i], rtol=1e-12, atol=0)
        assert_array_equal(one.mask[0], whole.mask[i])


def test_per_spectrum_grids_with_a_common_step():
    flux = _smooth_continuum(3) * _lines(WAVE, [6400.0, 7777.0])
    offsets = np.array([0.0, 3.0, -7.5])
    wave2d = WAVE[None, :] + offsets[:, None]
    batch = SpectrumBatch(wave2d, flux)
    out = ContinuumNormalizer(mask=[(6600.0, 6700.0)]).fit_transform(batch)
    for i, off in enumerate(offsets):  # each row alone, on its own shared grid
        one = ContinuumNormalizer(mask=[(6600.0, 6700.0)]).fit_transform(
            SpectrumBatch(WAVE + off, flux[i:i + 1]))
        assert_allclose(out.flux[i], one.flux[0], rtol=1e-12)


def test_padded_ragged_batch():
    flux = _smooth_continuum(2)
    wave2d = np.vstack([WAVE, WAVE])
    flux = flux.copy()
    wave2d[1, 2500:] = np.nan
    flux[1, 2500:] = np.nan
    batch = SpectrumBatch(wave2d, flux, npix=np.array([2901, 2500]))
    out = ContinuumNormalizer().fit_transform(batch)
    assert np.all(out.mask[1, 2500:])
    assert_allclose(out.flux[1, :2500],
                    ContinuumNormalizer().fit_transform(
                        SpectrumBatch(WAVE[:2500], flux[1:, :2500])).flux[0], rtol=1e-12)


# ---------------------------------------------------------------------------
# Policies and errors
# ---------------------------------------------------------------------------
def test_non_uniform_grid_raises_and_suggests_resampling():
    log_grid = 10 ** np.linspace(np.log10(6000), np.log10(8900), 2901)
    batch = SpectrumBatch(log_grid, _smooth_continuum(1))
    with pytest.raises(ValueError, match="uniform wavelength grid.*SpectrumResampler"):
        ContinuumNormalizer().fit(batch)
    with pytest.raises(ValueError, match="uniform wavelength grid"):
        ContinuumNormalizer().transform(batch)
    with pytest.raises(ValueError, match="uniform"):
        ContinuumNormalizer(wavelength=log_grid).fit(_smooth_continuum(1))
    # per-spectrum grids with different steps are refused too
    two = SpectrumBatch(np.vstack([WAVE, 6000.0 + 1.01 * np.arange(2901.0)]), _smooth_continuum(2))
    with pytest.raises(ValueError, match="spectrum 1"):
        ContinuumNormalizer().transform(two)
    # after resampling onto a uniform grid it works
    res = SpectrumResampler(wave_min=6000, wave_max=8900, output="batch").fit(batch)
    out = ContinuumNormalizer().fit_transform(res.transform(batch))
    assert np.isfinite(out.flux[~out.mask]).all() and (~out.mask).sum() >= 2899


def test_all_masked_spectrum_policy():
    flux = _smooth_continuum(3)
    mask = np.zeros(flux.shape, dtype=bool)
    mask[1] = True
    ivar = np.ones(flux.shape)
    batch = SpectrumBatch(WAVE, flux, ivar=ivar, mask=mask)
    with pytest.raises(ValueError, match="Spectrum 1 has no usable pixel.*on_empty='nan'"):
        ContinuumNormalizer().fit_transform(batch)
    out = ContinuumNormalizer(on_empty="nan").fit_transform(batch)
    assert np.isnan(out.flux[1]).all() and out.mask[1].all() and np.all(out.ivar[1] == 0)
    assert_allclose(out.flux[[0, 2]], 1.0, atol=5e-3)
    # zero errors everywhere count as "no usable pixel" too
    zero_ivar = np.ones(flux.shape)
    zero_ivar[2] = 0.0
    zero = SpectrumBatch(WAVE, flux, ivar=zero_ivar)
    with pytest.raises(ValueError, match="Spectrum 2"):
        ContinuumNormalizer().transform(zero)


def test_long_masked_stretch_gives_nan_and_flag():
    flux = _smooth_continuum(1)
    mask = np.zeros(flux.shape, dtype=bool)
    gap = (WAVE >= 7000) & (WAVE < 7400)  # 400 A > 2 * 4 * 30 A
    mask[0, gap] = True
    out = ContinuumNormalizer().fit_transform(SpectrumBatch(WAVE, flux, mask=mask))
    centre = (WAVE > 7130) & (WAVE < 7270)  # > 120 A from any good pixel
    assert np.isnan(out.flux[0, centre]).all()
    assert out.mask[0, gap].all()
    assert np.isfinite(out.flux[0, ~gap]).all()
    # min_weight flags pixels whose continuum rests on few, distant pixels
    strict = ContinuumNormalizer(min_weight=0.3).fit_transform(SpectrumBatch(WAVE, flux, mask=mask))
    assert np.isnan(strict.flux[0]).sum() > np.isnan(out.flux[0]).sum()
    assert np.isfinite(strict.flux[0, 100:800]).all()


def test_non_positive_continuum_is_undefined():
    flux = _smooth_continuum(1)
    flux[0, :200] = -5.0  # e.g. noise-dominated negative flux
    out = ContinuumNormalizer().fit_transform(SpectrumBatch(WAVE, flux))
    assert np.isnan(out.flux[0, :150]).all() and out.mask[0, :150].all()
    assert np.isfinite(out.flux[0, 400:]).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(sigma=0.0), "sigma"),
    (dict(sigma=np.nan), "sigma"),
    (dict(truncate=-1), "truncate"),
    (dict(min_weight=1.0), "min_weight"),
    (dict(on_empty="drop"), "on_empty"),
    (dict(mask="telluric"), "mask"),
    (dict(mask=[(7000.0, 6900.0)]), "window 0"),
    (dict(mask=[(1, 2, 3)]), "mask"),
    (dict(flag_windows="yes"), "flag_windows"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContinuumNormalizer(**kwargs).fit(SpectrumBatch(WAVE, _smooth_continuum(1)))


# ---------------------------------------------------------------------------
# Array input and scikit-learn behaviour
# ---------------------------------------------------------------------------
def test_array_input_with_and_without_wavelength():
    flux = _smooth_continuum(3) * _lines(WAVE, [6543.0, 8123.0])
    flux[1, 50] = np.nan
    a = ContinuumNormalizer(wavelength=WAVE).fit_transform(flux)
    b = ContinuumNormalizer().fit_transform(flux)  # 1 A pixels assumed
    batch = ContinuumNormalizer().fit_transform(SpectrumBatch(WAVE, flux))
    assert_allclose(a, b, rtol=1e-12)
    assert_allclose(a, batch.flux, rtol=1e-12)
    assert np.isnan(a[1, 50])
    f32 = ContinuumNormalizer().fit_transform(flux.astype(np.float32))
    assert f32.dtype == np.float32
    assert_allclose(f32, a, rtol=1e-5)
    with pytest.raises(ValueError, match="wavelength=<grid>"):
        ContinuumNormalizer(mask="paper").fit(flux)
    with pytest.raises(ValueError, match="one wavelength"):
        ContinuumNormalizer(wavelength=WAVE[:-1]).fit(flux)
    fitted = ContinuumNormalizer().fit(flux)
    assert fitted.n_features_in_ == WAVE.size
    with pytest.raises(ValueError, match="features"):
        fitted.transform(flux[:, :100])


def test_pandas_output_pipeline_clone_and_pickle():
    flux = _smooth_continuum(3)
    cols = [f"flux_{w:.0f}" for w in WAVE]
    df = pd.DataFrame(flux, columns=cols)
    cn = ContinuumNormalizer(wavelength=WAVE, mask="paper").set_output(transform="pandas")
    out = cn.fit_transform(df)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == cols
    assert_array_equal(cn.get_feature_names_out(), cols)
    pipe = make_pipeline(ContinuumNormalizer(), FunctionTransformer(np.log))
    assert_allclose(pipe.fit_transform(flux), np.log(ContinuumNormalizer().fit_transform(flux)))
    c = clone(ContinuumNormalizer(sigma=20.0, mask="paper"))
    assert c.get_params()["sigma"] == 20.0 and c.get_params()["mask"] == "paper"
    restored = pickle.loads(pickle.dumps(cn))
    assert_allclose(restored.transform(df).to_numpy(), out.to_numpy())


def test_threads_do_not_change_the_result():
    rng = np.random.default_rng(6)
    flux = _smooth_continuum(70) * (1 + 0.01 * rng.standard_normal((70, WAVE.size)))
    mask = rng.random(flux.shape) < 0.01
    batch = SpectrumBatch(WAVE, flux, mask=mask)
    one = ContinuumNormalizer().fit_transform(batch)
    two = ContinuumNormalizer(n_jobs=2).fit_transform(batch)
    assert_allclose(one.flux, two.flux, rtol=1e-13)
