"""Tests for skstellar.datasets.mdwarf_spectra: M-dwarf synthetic/observed domains, known gap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp, spearmanr

from skstellar.cyclestarnet.indices import spectral_subtype_from_tio5, tio5_index
from skstellar.datasets.mdwarf_spectra import (
    LABEL_NAMES,
    LABEL_RANGES,
    MDWARF_ATOMIC_LINES,
    draw_mdwarf_labels,
    make_mdwarf_spectra,
    mdwarf_model_spectrum,
    mdwarf_wavelength_grid,
)
from skstellar.io import find_shared_data
from skstellar.preprocessing.continuum import PAPER_MASK_WINDOWS
from skstellar.spectrum import SpectrumBatch

GAP_COLUMNS = ["active", "halpha_emission_ew", "tio_scale", "cah_scale", "vo_scale",
               "alkali_wing_scale", "extra_band_strength", "forest_strength",
               "telluric_strength", "rv_residual", "cont_c1", "cont_c2", "cont_c3"]
WAVE = mdwarf_wavelength_grid()


@pytest.fixture(scope="module")
def paired():
    return make_mdwarf_spectra(240, 240, paired=True, random_state=0, return_truth=True)


@pytest.fixture(scope="module")
def unpaired():
    return make_mdwarf_spectra(250, 200, random_state=1)


def _window(flux, lo, hi, wave=WAVE):
    sel = (wave >= lo) & (wave <= hi)
    return flux[:, sel].mean(axis=1)


def _grid_labels(teff=3500.0, logg=5.0, m_h=0.0, n=11, vary="teff", lo=None, hi=None):
    lo = LABEL_RANGES[vary][0] if lo is None else lo
    hi = LABEL_RANGES[vary][1] if hi is None else hi
    lab = np.tile([teff, logg, m_h], (n, 1)).astype(float)
    lab[:, LABEL_NAMES.index(vary)] = np.linspace(lo, hi, n)
    return lab


def _good_outside_masks(batch):
    win = np.zeros(batch.n_pixels, dtype=bool)
    for a, b in PAPER_MASK_WINDOWS:
        win |= (batch.wavelength >= a) & (batch.wavelength <= b)
    return ~batch.bad_pixels() & ~win


# ----------------------------------------------------------------------------- structure


def test_grid_shapes_dtypes_and_meta(unpaired):
    syn, obs = unpaired
    assert isinstance(syn, SpectrumBatch) and isinstance(obs, SpectrumBatch)
    assert WAVE.shape == (2901,) and WAVE[0] == 6000.0 and WAVE[-1] == 8900.0
    assert np.allclose(np.diff(WAVE), 1.0)
    for batch, n in ((syn, 250), (obs, 200)):
        np.testing.assert_array_equal(batch.wavelength, WAVE)
        assert batch.flux.shape == batch.ivar.shape == batch.mask.shape == (n, 2901)
        assert batch.flux.dtype == np.float32 and batch.ivar.dtype == np.float32
        assert batch.mask.dtype == bool
        assert np.isfinite(batch.flux).all() and (batch.ivar >= 0).all()
    assert list(syn.meta.columns) == ["star_id", *LABEL_NAMES, "snr"]
    assert list(obs.meta.columns) == ["star_id", *LABEL_NAMES, "snr", *GAP_COLUMNS]
    # unpaired: disjoint ids, independent stars
    assert not set(syn.meta["star_id"]) & set(obs.meta["star_id"])
    np.testing.assert_allclose(syn.ivar, 1e4)  # synthetic error fixed to 0.01
    assert not syn.mask.any()


def test_seeded_reproducibility():
    a = make_mdwarf_spectra(20, 25, random_state=7)
    b = make_mdwarf_spectra(20, 25, random_state=7)
    c = make_mdwarf_spectra(20, 25, random_state=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.flux, y.flux)
        np.testing.assert_array_equal(x.ivar, y.ivar)
        np.testing.assert_array_equal(x.mask, y.mask)
        pd.testing.assert_frame_equal(x.meta, y.meta)
    assert not np.array_equal(a[1].flux, c[1].flux)
    assert not np.array_equal(a[0].meta["teff"], c[0].meta["teff"])


def test_label_distribution():
    lab = draw_mdwarf_labels(4000, random_state=3)
    for name, (lo, hi) in LABEL_RANGES.items():
        assert lab[name].between(lo, hi).all(), name
    # early-M dominated, logg rises towards cooler dwarfs (main sequence)
    assert 3450 < lab["teff"].median() < 3750
    assert spearmanr(lab["teff"], lab["logg"])[0] < -0.8
    # at fixed Teff, metal-poor dwarfs are more compact
    resid = lab["logg"] - np.poly1d(np.polyfit(lab["teff"], lab["logg"], 2))(lab["teff"])
    assert spearmanr(lab["m_h"], resid)[0] < -0.3
    assert -0.3 < lab["m_h"].mean() < 0.0


def test_paired_and_unpaired(paired, unpaired):
    syn, obs, truth = paired
    pd.testing.assert_frame_equal(syn.meta[["star_id", *LABEL_NAMES]],
                                  obs.meta[["star_id", *LABEL_NAMES]])
    np.testing.assert_array_equal(truth.synthetic, syn.flux)
    pd.testing.assert_frame_equal(truth.labels, obs.meta[list(LABEL_NAMES)])
    syn_u, obs_u = unpaired
    assert not np.isin(obs_u.meta["teff"], syn_u.meta["teff"]).any()
    # same label distribution in both domains
    for name in LABEL_NAMES:
        assert ks_2samp(syn_u.meta[name], obs_u.meta[name]).pvalue > 1e-3, name
    with pytest.raises(ValueError, match="n_synthetic == n_observed"):
        make_mdwarf_spectra(10, 12, paired=True)


# ----------------------------------------------------------------------------- the model


def test_synthetic_domain_is_the_exact_model(unpaired):
    syn, _ = unpaired
    model = mdwarf_model_spectrum(syn.meta[list(LABEL_NAMES)][:60], WAVE, resolution=2000)
    assert model.dtype == np.float64 and model.shape == (60, WAVE.size)
    np.testing.assert_allclose(syn.flux[:60], model, atol=2e-5)


def test_model_continuum_and_band_shapes():
    flux = mdwarf_model_spectrum(_grid_labels(n=6))
    # feature-free stretch blueward of the first TiO head: continuum ~1
    np.testing.assert_allclose(_window(flux, 6010, 6100), 1.0, atol=2e-3)
    assert (flux <= 1.0 + 1e-6).all() and (flux > 0.05).all()
    # band heads: a sharp drop at the TiO 7055 A head (degraded to the red)
    assert (_window(flux, 7060, 7066) < _window(flux, 7040, 7046) - 0.05).all()
    # atomic lines sit at their vacuum wavelengths
    lines = MDWARF_ATOMIC_LINES["KI"]["wavelengths"] + MDWARF_ATOMIC_LINES["NaI"]["wavelengths"]
    for c in lines:
        near = np.abs(WAVE - c) <= 6
        assert np.all(np.abs(WAVE[near][np.argmin(flux[:, near], axis=1)] - c) <= 1.5)


def test_bands_deepen_monotonically_towards_cooler_teff():
    lab = _grid_labels(n=21)  # Teff 3000 -> 4000 K
    flux = mdwarf_model_spectrum(lab)
    cont = _window(flux, 7042, 7046)
    tio5 = _window(flux, 7126, 7135) / cont
    cah2 = _window(flux, 6814, 6846) / cont
    nai = _window(flux, 8183, 8200) / _window(flux, 8150, 8170)
    cat = _window(flux, 8538, 8550) / _window(flux, 8520, 8530)
    for name, index in (("TiO5", tio5), ("CaH2", cah2), ("NaI", nai)):
        assert np.all(np.diff(index) > 0), name  # shallower as Teff rises
    assert np.all(np.diff(cat) < 0)  # Ca II triplet weakens towards cooler dwarfs
    # the band-index scale: the paper's SpT-TiO5 relation gives M5-M6 at 3000 K, ~K7 at 4000 K
    spt = spectral_subtype_from_tio5(tio5_index(flux, wavelength=WAVE))
    assert 4.5 < spt[0] < 6.5 and -1.5 < spt[-1] < 0.5
    assert np.all(np.diff(spt) < 0)


def test_metallicity_and_gravity_dependence():
    flux = mdwarf_model_spectrum(_grid_labels(vary="m_h", n=7))  # [M/H] -1 -> +0.5
    cont = _window(flux, 7042, 7046)
    tio_depth = 1 - _window(flux, 7126, 7135) / cont
    cah_depth = 1 - _window(flux, 6960, 6990) / cont
    assert np.all(np.diff(tio_depth) > 0)  # TiO deepens with metallicity
    ratio = cah_depth / tio_depth
    assert np.all(np.diff(ratio) < 0) and ratio[0] > 1.5 * ratio[-1]  # zeta-like CaH/TiO
    flux_g = mdwarf_model_spectrum(_grid_labels(vary="logg", n=5))  # logg 4.5 -> 5.5
    nai_depth = 1 - _window(flux_g, 8183, 8200) / _window(flux_g, 8150, 8170)
    cah_g = 1 - _window(flux_g, 6814, 6846) / _window(flux_g, 7042, 7046)
    assert np.all(np.diff(nai_depth) > 0) and np.all(np.diff(cah_g) > 0)


def test_model_vectorised_and_input_forms():
    lab = draw_mdwarf_labels(5, random_state=4)
    batch = mdwarf_model_spectrum(lab.to_numpy())
    for i in range(len(lab)):  # row-by-row equals the batch
        single = mdwarf_model_spectrum(lab.to_numpy()[i])
        assert single.shape == (1, WAVE.size)
        np.testing.assert_allclose(single[0], batch[i], atol=1e-12)
    np.testing.assert_allclose(mdwarf_model_spectrum(lab), batch, atol=1e-12)
    np.testing.assert_allclose(mdwarf_model_spectrum({k: lab[k] for k in LABEL_NAMES}), batch,
                               atol=1e-12)
    # any output grid samples the same model: a sub-grid exactly, a random
    # non-uniform grid like the interpolated dense (0.1 A) model
    np.testing.assert_allclose(mdwarf_model_spectrum(lab, WAVE[100:-100:7]),
                               batch[:, 100:-100:7], atol=1e-10)
    wave = np.sort(np.random.default_rng(0).uniform(6100, 8800, 400))
    dense_wave = np.arange(6050.0, 8850.0, 0.1)
    dense = mdwarf_model_spectrum(lab, dense_wave)
    np.testing.assert_allclose(mdwarf_model_spectrum(lab, wave),
                               [np.interp(wave, dense_wave, f) for f in dense], atol=5e-4)
    # resolution: lower R washes features out; None is the intrinsic model
    sharp = mdwarf_model_spectrum(lab, resolution=None)
    low = mdwarf_model_spectrum(lab, resolution=1000)
    assert (sharp.min(axis=1) < batch.min(axis=1)).all()
    assert (low.min(axis=1) > batch.min(axis=1)).all()


def test_model_is_smooth_in_labels():
    base = np.array([[3500.0, 4.9, -0.2]])
    f0 = mdwarf_model_spectrum(base)[0]
    for j, h in enumerate((2.0, 0.01, 0.01)):  # Teff [K], logg, [M/H]
        up, down = base.copy(), base.copy()
        up[0, j] += h
        down[0, j] -= h
        fu, fd = mdwarf_model_spectrum(up)[0], mdwarf_model_spectrum(down)[0]
        first = np.abs(fu - fd).max()
        second = np.abs(fu - 2 * f0 + fd).max()
        assert 1e-5 < first < 2e-2, LABEL_NAMES[j]  # responds, but gently
        assert second < 0.02 * first, LABEL_NAMES[j]  # locally linear: no kinks/jumps


# ----------------------------------------------------------------------------- noise


def test_noise_matches_ivar_and_snr(paired):
    _, obs, truth = paired
    good = ~obs.bad_pixels()
    z = ((obs.flux - truth.observed_noiseless) * np.sqrt(obs.ivar))[good]
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    np.testing.assert_allclose(truth.error[good], 1 / np.sqrt(obs.ivar[good]), rtol=1e-5)
    snr = obs.meta["snr"].to_numpy()
    assert (snr >= 5).all() and (snr <= 100).all()
    # log-uniform: half below the geometric mean sqrt(5 * 100)
    assert 0.4 < np.mean(snr < np.sqrt(500.0)) < 0.6
    med = np.median(truth.observed_noiseless / truth.error, axis=1)
    np.testing.assert_allclose(med, snr, rtol=1e-3)
    # i-band S/N above r-band S/N, as for LAMOST M dwarfs
    s_r = _window(truth.observed_noiseless / truth.error, 6000, 6900)
    s_i = _window(truth.observed_noiseless / truth.error, 7700, 8600)
    assert np.mean(s_i > s_r) > 0.9


def test_bad_pixels_and_telluric_mask():
    syn, obs = make_mdwarf_spectra(40, 60, random_state=5, bad_pixel_fraction=0.01,
                                   snr_range=(30, 30), mask_telluric=True)
    np.testing.assert_allclose(obs.meta["snr"], 30.0)
    win = np.zeros(WAVE.size, dtype=bool)
    for a, b in PAPER_MASK_WINDOWS:
        win |= (WAVE >= a) & (WAVE <= b)
    assert syn.mask[:, win].all() and not syn.mask[:, ~win].any()
    assert obs.mask[:, win].all()
    bad = obs.ivar == 0
    assert bad.any() and obs.mask[bad].all() and (obs.flux[bad] == 0).all()
    assert abs(bad[:, ~win].mean() - 0.01) < 0.003
    assert (syn.ivar > 0).all()  # telluric windows are flagged, not zeroed


def test_unnormalised_flux_is_scaled_by_the_planck_continuum():
    kw = dict(random_state=6, return_truth=True)
    s1, o1, t1 = make_mdwarf_spectra(15, 15, **kw)
    s0, o0, t0 = make_mdwarf_spectra(15, 15, normalized=False, **kw)
    for a, b in ((s1, s0), (o1, o0)):
        ratio = b.flux / np.where(a.flux == 0, 1, a.flux)
        good = a.flux != 0
        # smooth, red-falling-or-rising continuum, same for every pixel set
        assert np.isfinite(ratio[good]).all()
        np.testing.assert_allclose((b.flux * np.sqrt(b.ivar))[good],
                                   (a.flux * np.sqrt(a.ivar))[good], rtol=1e-4, atol=1e-4)
        near = np.abs(WAVE - 7500) < 0.5
        np.testing.assert_allclose(ratio[:, near][good[:, near]], 1.0, rtol=1e-5)
    # an M dwarf's Planck continuum rises from 6000 to 8900 A
    sed = t0.synthetic / t1.synthetic
    assert (sed[:, -1] > sed[:, 0]).all()


# ----------------------------------------------------------------------------- the gap


def test_zero_gap_equals_model_at_observed_resolution():
    syn, obs, truth = make_mdwarf_spectra(40, 40, gap_scale=0.0, paired=True, random_state=2,
                                          return_truth=True)
    np.testing.assert_allclose(truth.observed_noiseless, truth.synthetic_observed_resolution,
                               atol=1e-5)
    model = mdwarf_model_spectrum(obs.meta[list(LABEL_NAMES)], resolution=1800)
    np.testing.assert_allclose(truth.observed_noiseless, model, atol=2e-5)
    # only the resolution mismatch separates it from the synthetic domain
    diff = np.abs(truth.observed_noiseless - syn.flux)
    assert 1e-3 < diff.max() < 0.05
    assert not obs.meta["active"].any()
    for col in ("halpha_emission_ew", "extra_band_strength", "forest_strength",
                "telluric_strength", "rv_residual", "cont_c1", "cont_c2", "cont_c3"):
        assert (obs.meta[col] == 0).all(), col
    np.testing.assert_allclose(obs.meta[["tio_scale", "cah_scale", "vo_scale"]], 1.0)
    # same resolution too: the observed flux is model + noise (z-scores ~ N(0, 1))
    syn2, obs2 = make_mdwarf_spectra(40, 40, gap_scale=0.0, paired=True, random_state=2,
                                     observed_resolution=2000)
    good = ~obs2.bad_pixels()
    z = ((obs2.flux - syn2.flux) * np.sqrt(obs2.ivar))[good]
    assert abs(np.sqrt(np.mean(z**2)) - 1.0) < 0.01


def _gap_rms(gap_scale):
    syn, obs = make_mdwarf_spectra(100, 100, paired=True, gap_scale=gap_scale, random_state=3,
                                   snr_range=(40, 100), observed_resolution=2000)
    good = _good_outside_masks(obs)
    z = (obs.flux - syn.flux) * np.sqrt(obs.ivar)
    return np.sqrt(np.mean(z[good] ** 2))


def test_gap_residual_grows_with_gap_scale():
    rms = [_gap_rms(g) for g in (0.0, 0.5, 1.0)]
    assert abs(rms[0] - 1.0) < 0.02
    assert rms[1] > 1.3 and rms[2] > 2.0 and rms[2] > rms[1] * 1.3


def test_gap_features_are_where_documented(paired):
    _, obs, truth = paired
    meta = obs.meta
    model = truth.synthetic_observed_resolution
    true = truth.observed_noiseless
    err = truth.error
    # (1) H-alpha emission only in active stars, above the activity threshold
    act = meta["active"].to_numpy()
    assert 0.03 < act.mean() < 0.35
    ha = np.abs(WAVE - 6564.61) <= 3
    excess = ((true - model)[:, ha]).max(axis=1)
    assert (excess[act] > 0.1).all() and (excess[~act] < 0.1).all()
    assert (meta.loc[act, "halpha_emission_ew"] >= 0.75).all()
    # (1) the missing TiO system at 8435-8600 A tracks the hidden strength
    dip = _window(model - true, 8440, 8480)
    tio_law = np.exp(-(meta["teff"] - 3500) / 520)
    assert spearmanr(dip, meta["extra_band_strength"] * tio_law)[0] > 0.7
    # (2) TiO distortion: deeper than the model in warm stars, shallower in cool ones
    tio = _window(true, 7126, 7135) / _window(true, 7042, 7046)
    tio_m = _window(model, 7126, 7135) / _window(model, 7042, 7046)
    warm, cool = meta["teff"] > 3750, meta["teff"] < 3250
    assert (tio[warm] < tio_m[warm]).mean() > 0.9 and (tio[cool] > tio_m[cool]).mean() > 0.9
    # (3) continuum distortion: the true/model ratio follows the hidden polynomial
    u = lambda lam: (lam - 7450.0) / 1450.0  # noqa: E731
    c1, c2, c3 = (meta[f"cont_c{k}"].to_numpy() for k in (1, 2, 3))
    for lam in (6050.0, 8880.0):
        x = u(lam)
        expected = 1 + c1 * x + c2 * 0.5 * (3 * x**2 - 1) + c3 * 0.5 * (5 * x**3 - 3 * x)
        near = np.abs(WAVE - lam) <= 15
        measured = np.median(true[:, near] / model[:, near], axis=1)
        assert spearmanr(measured, expected)[0] > 0.9
    # in units of the flux uncertainty the gap is large at high S/N, small at low S/N
    good = _good_outside_masks(obs)
    z = np.where(good, (true - model) / err, np.nan)
    per_star = np.sqrt(np.nanmean(z**2, axis=1))
    snr = meta["snr"].to_numpy()
    assert np.median(per_star[snr > 50]) > 1.5 > np.median(per_star[snr < 10])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_synthetic=0), "n_synthetic"),
        (dict(n_observed=2.5), "n_observed"),
        (dict(gap_scale=-1), "gap_scale"),
        (dict(snr_range=(50, 5)), "snr_range"),
        (dict(snr_range=(0, 5)), "snr_range"),
        (dict(resolution=0), "resolution"),
        (dict(observed_resolution="high"), "observed_resolution"),
        (dict(bad_pixel_fraction=0.7), "bad_pixel_fraction"),
        (dict(wavelength=[7000.0, 6999.0, 7001.0]), "increase"),
        # outside the observed domain's range the noise model gave infinite ivar
        (dict(wavelength=np.linspace(4500.0, 4550.0, 20)), "6000-8900 A, got 4500-4550"),
        (dict(wavelength=[8800.0, 9000.0]), "within the observed domain"),
        (dict(synthetic_error=0), "synthetic_error"),
    ],
)
def test_make_rejects_bad_parameters(kwargs, match):
    params = dict(n_synthetic=3, n_observed=3)
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_mdwarf_spectra(**params)


def test_model_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"shape \(n_stars, 3\)"):
        mdwarf_model_spectrum(np.ones((4, 2)))
    with pytest.raises(ValueError, match="Missing column 'm_h'"):
        mdwarf_model_spectrum(pd.DataFrame({"teff": [3500.0], "logg": [5.0]}))
    with pytest.raises(ValueError, match="Column 'logg' has 1 NaN"):
        mdwarf_model_spectrum([[3500.0, np.nan, 0.0]])
    with pytest.raises(ValueError, match="teff"):
        mdwarf_model_spectrum([[-3500.0, 5.0, 0.0]])


# ----------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_band_depths_match_bt_settl_m0v_template():
    root = find_shared_data("synthetic_spectra")
    path = None if root is None else root / "bt_settl_pfs_etc" / "star_m0v.fits"
    if path is None or not path.exists():
        pytest.skip("BT-Settl templates (../shared/data/synthetic_spectra) not available")
    from astropy.table import Table
    from scipy.ndimage import gaussian_filter1d

    tab = Table.read(path, hdu=1)
    wave = np.asarray(tab["wavelength"], dtype=float)
    flux = np.asarray(tab["flux"], dtype=float)
    keep = (wave > 5800) & (wave < 9100)
    wave, flux = wave[keep], flux[keep]
    # uniform 0.5 A grid: R = 2000 at 7500 A is sigma = 1.59 A = 3.2 pixels
    tpl = gaussian_filter1d(flux, 7500.0 / 2000.0 / 2.3548 / 0.5)[None, :]
    model = mdwarf_model_spectrum([[3800.0, 4.5, 0.0]])  # the template's labels

    def indices(f, w):
        c = _window(f, 7042, 7046, w)
        return np.array([
            _window(f, 7126, 7135, w) / c,  # TiO5
            _window(f, 6814, 6846, w) / c,  # CaH2
            _window(f, 6960, 6990, w) / c,  # CaH3
            _window(f, 6160, 6180, w) / _window(f, 6130, 6150, w),  # TiO 6160
            _window(f, 8183, 8200, w) / _window(f, 8150, 8170, w),  # Na I
        ])[:, 0]

    got, ref = indices(model, WAVE), indices(tpl, wave)
    np.testing.assert_allclose(got, ref, atol=0.15)
    assert np.all(got < 1) and np.all(ref < 1)
