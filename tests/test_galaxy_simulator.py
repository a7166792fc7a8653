"""Tests for skstellar.datasets.galaxy: the LAMOST-like galaxy-spectrum simulator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.linear_model import Ridge

from skstellar.datasets.galaxy import (
    CURTI2020_COEFFICIENTS,
    EMISSION_LINES,
    calzetti_k,
    curti2020_log_ratio,
    kauffmann03_o3hb,
    make_galaxy_spectra,
    pettini_pagel_n2_metallicity,
    te_scale_metallicity,
    tremonti_mass_metallicity,
)
from skstellar.io import find_shared_data
from skstellar.spectrum import SpectrumBatch

META_COLUMNS = ["z", "snr_r", "log_mstar", "oh", "star_forming", "a_v", "ew_halpha", "n2", "o3n2"]
LOG_STEP = 1e-4


@pytest.fixture(scope="module")
def batch():
    return make_galaxy_spectra(2000, random_state=0)


@pytest.fixture(scope="module")
def mixed():
    return make_galaxy_spectra(1200, random_state=1, star_forming_fraction=0.5)


@pytest.fixture(scope="module")
def bright():
    return make_galaxy_spectra(200, random_state=2, snr_range=(80, 100),
                               bad_pixel_fraction=0.0, sky_residuals=False)


def _pixel(wave_obs):
    return (np.log10(wave_obs) - np.log10(3700.0)) / LOG_STEP


# ----------------------------------------------------------------------------- structure


def test_deterministic_with_seed():
    a = make_galaxy_spectra(60, random_state=3, star_forming_fraction=0.6)
    b = make_galaxy_spectra(60, random_state=3, star_forming_fraction=0.6)
    np.testing.assert_array_equal(a.flux, b.flux)
    np.testing.assert_array_equal(a.ivar, b.ivar)
    np.testing.assert_array_equal(a.mask, b.mask)
    pd.testing.assert_frame_equal(a.meta, b.meta)
    c = make_galaxy_spectra(60, random_state=4, star_forming_fraction=0.6)
    assert not np.array_equal(a.flux, c.flux)
    rng = np.random.RandomState(5)
    d = make_galaxy_spectra(10, random_state=rng)
    e = make_galaxy_spectra(10, random_state=rng)
    assert not np.array_equal(d.flux, e.flux)


def test_shapes_grid_and_dtypes(batch):
    assert isinstance(batch, SpectrumBatch)
    wave = batch.wavelength
    assert wave.ndim == 1 and wave.size == 3861
    assert batch.flux.shape == batch.ivar.shape == batch.mask.shape == (2000, 3861)
    assert batch.flux.dtype == np.float32 and batch.ivar.dtype == np.float32
    assert batch.mask.dtype == bool
    assert wave[0] == pytest.approx(3700.0)
    assert wave[-1] <= 9000.0 and wave[-1] > 9000.0 * 10 ** (-LOG_STEP)
    np.testing.assert_allclose(np.diff(np.log10(wave)), LOG_STEP, rtol=1e-6)
    assert np.isfinite(batch.flux).all() and np.isfinite(batch.ivar).all()
    for name in META_COLUMNS + ["oh_te", "galaxy_type", "halpha_flux", "hbeta_flux"]:
        assert name in batch.meta.columns, name
    assert len(batch.meta) == 2000
    assert batch.meta["star_forming"].dtype == bool


def test_tuple_output_matches_batch():
    flux, wave, meta = make_galaxy_spectra(30, random_state=6, return_batch=False)
    ref = make_galaxy_spectra(30, random_state=6)
    np.testing.assert_array_equal(flux, ref.flux)
    np.testing.assert_array_equal(wave, ref.wavelength)
    pd.testing.assert_frame_equal(meta, ref.meta)


def test_custom_grid():
    b = make_galaxy_spectra(5, random_state=0, wave_min=3800.0, wave_max=8000.0, log_step=2e-4)
    assert b.wavelength[0] == pytest.approx(3800.0) and b.wavelength[-1] <= 8000.0
    np.testing.assert_allclose(np.diff(np.log10(b.wavelength)), 2e-4, rtol=1e-6)
    assert b.flux.shape == (5, b.wavelength.size)


def test_meta_ranges(batch):
    m = batch.meta
    assert m["star_forming"].all() and (m["galaxy_type"] == "star_forming").all()
    assert m[META_COLUMNS].notna().all().all()
    assert m["z"].between(0.0, 0.3).all()
    assert m["snr_r"].between(3.0, 30.0).all()
    assert m["log_mstar"].between(8.5, 11.5).all()
    assert m["oh"].between(7.9, 9.3).all()
    assert m["a_v"].between(0.0, 1.5).all()
    assert m["ew_halpha"].between(10.0, 200.0).all()
    assert m["oh_true"].between(7.9, 9.3).all()
    np.testing.assert_allclose(m["oh_te"], te_scale_metallicity(m["oh_true"]))
    assert 0.04 < np.std(m["oh"] - m["oh_true"]) < 0.06  # default label noise
    exact = make_galaxy_spectra(50, random_state=0, label_noise=0.0).meta
    np.testing.assert_array_equal(exact["oh"], exact["oh_true"])


# ----------------------------------------------------------------------------- physics


def test_redshift_distribution(batch):
    z = batch.meta["z"]
    assert ((z > 0.02) & (z < 0.15)).mean() > 0.75
    assert 0.03 < (z > 0.15).mean() < 0.15
    custom = make_galaxy_spectra(200, random_state=1, z_range=(0.05, 0.1)).meta["z"]
    assert custom.between(0.05, 0.1).all()


def test_mass_metallicity_relation(batch):
    m = batch.meta
    bins = np.arange(9.0, 11.01, 0.5)
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = m["log_mstar"].between(lo, hi)
        assert sel.sum() > 30
        resid = m.loc[sel, "oh"] - tremonti_mass_metallicity(m.loc[sel, "log_mstar"])
        assert abs(np.median(resid)) < 0.03, (lo, hi)
    resid = m["oh_true"] - tremonti_mass_metallicity(m["log_mstar"])
    assert 0.08 < resid.std() < 0.12
    resid = m["oh"] - tremonti_mass_metallicity(m["log_mstar"])
    assert 0.09 < resid.std() < 0.14  # with the label noise
    # quadratic refit recovers the Tremonti et al. (2004) curve
    coef = np.polyfit(m["log_mstar"], m["oh"], 2)
    x = np.linspace(9.0, 11.0, 9)
    np.testing.assert_allclose(np.polyval(coef, x), tremonti_mass_metallicity(x), atol=0.03)


def test_halpha_at_redshifted_vacuum_wavelength(bright):
    wave, m = bright.wavelength, bright.meta
    for line in ("Halpha", "Hbeta", "OIII_5007"):
        expected = _pixel(EMISSION_LINES[line] * (1.0 + m["z"].to_numpy()))
        offsets = []
        for i, centre in enumerate(expected):
            if not 12 < centre < wave.size - 12:
                continue
            lo = int(round(centre)) - 6
            if line != "Halpha" and m["oiii_5007_flux"][i] < 0.5 * m["hbeta_flux"][i]:
                continue
            offsets.append(lo + np.argmax(bright.flux[i, lo:lo + 13]) - centre)
        offsets = np.array(offsets)
        assert offsets.size > 20
        assert np.all(np.abs(offsets) <= 1.0), line
    # the air wavelength 6562.8 A is about one pixel bluer than the vacuum one
    assert _pixel(6564.61) - _pixel(6562.80) == pytest.approx(1.2, abs=0.1)


def test_snr_r_matches_request(batch):
    wave = batch.wavelength
    r = (wave >= 5500) & (wave <= 6900)
    f, iv, bad = batch.flux[:, r], batch.ivar[:, r], batch.mask[:, r]
    snr = np.nanmedian(np.where(bad, np.nan, f * np.sqrt(iv)), axis=1)
    ratio = snr / batch.meta["snr_r"].to_numpy()
    assert abs(np.median(ratio) - 1.0) < 0.03
    assert np.percentile(ratio, 1) > 0.85 and np.percentile(ratio, 99) < 1.15


def test_ivar_describes_the_noise(batch):
    wave = batch.wavelength
    sel = (wave > 4500) & (wave < 8500)
    f = batch.flux[:, sel].astype(float)
    bad = batch.mask[:, sel]
    var = 1.0 / np.where(bad, 1.0, batch.ivar[:, sel].astype(float))
    good = ~(bad[:, 1:] | bad[:, :-1])
    pull = (f[:, 1:] - f[:, :-1]) / np.sqrt(var[:, 1:] + var[:, :-1])
    pull = pull[good]
    robust_std = 1.4826 * np.median(np.abs(pull - np.median(pull)))
    assert robust_std == pytest.approx(1.0, abs=0.05)


def test_bad_pixels_masked(batch):
    assert np.all(batch.ivar[batch.mask] == 0) and np.all(batch.flux[batch.mask] == 0)
    assert np.all(batch.ivar[~batch.mask] > 0)
    per_spectrum = batch.mask.sum(axis=1)
    assert 2.5 < per_spectrum.mean() < 5.5
    clean = make_galaxy_spectra(20, random_state=0, bad_pixel_fraction=0.0)
    assert not clean.mask.any()


def test_sky_residuals_are_local():
    kw = dict(random_state=8, bad_pixel_fraction=0.0)
    with_sky = make_galaxy_spectra(100, sky_residuals=True, **kw)
    without = make_galaxy_spectra(100, sky_residuals=False, **kw)
    wave = with_sky.wavelength
    near = (np.abs(wave - 5578.89) < 10) | (np.abs(wave - 6302.05) < 10)
    np.testing.assert_array_equal(with_sky.flux[:, ~near], without.flux[:, ~near])
    diff = np.abs(with_sky.flux[:, near] - without.flux[:, near]).max(axis=1)
    assert 0.2 < (diff > 0).mean() < 1.0


def test_line_ratios_follow_metallicity(batch):
    m = batch.meta
    assert spearmanr(m["n2"], m["oh"]).statistic > 0.7  # N2 increases with O/H
    assert spearmanr(m["o3n2"], m["oh"]).statistic < -0.8  # O3N2 decreases
    # binned medians: N2 rises monotonically with O/H (until it saturates)
    edges = np.arange(8.5, 9.21, 0.1)
    medians = [m.loc[m["oh"].between(lo, hi), "n2"].median() for lo, hi in zip(edges, edges[1:])]
    assert np.all(np.diff(medians) > 0)
    # the observed N2 follows the Curti et al. (2020) polynomial on the T_e scale
    predicted = curti2020_log_ratio("N2", np.minimum(m["oh_te"], 8.87))
    assert abs(np.median(m["n2"] - predicted)) < 0.02
    assert 0.05 < np.std(m["n2"] - predicted) < 0.15


def test_pettini_pagel_cross_check(batch):
    m = batch.meta
    pp04 = pettini_pagel_n2_metallicity(m["n2"])
    assert abs(np.median(pp04 - m["oh_te"])) < 0.15
    assert np.std(pp04 - m["oh_te"]) < 0.1
    assert np.corrcoef(pp04, m["oh"])[0, 1] > 0.7


def test_line_fluxes_measured_in_spectra(bright):
    wave, m = bright.wavelength, bright.meta
    dlam = wave * np.log(10.0) * LOG_STEP
    ratios, d_n2 = [], []
    for i in range(len(m)):
        rest = wave / (1.0 + m["z"][i])
        if rest[-1] < 6700:
            continue
        side = ((rest > 6480) & (rest < 6530)) | ((rest > 6610) & (rest < 6690))
        cont = np.median(bright.flux[i, side])
        fluxes = {}
        for name in ("Halpha", "NII_6584"):
            win = np.abs(rest - EMISSION_LINES[name]) < 7.0
            fluxes[name] = np.sum((bright.flux[i, win] - cont) * dlam[win])
        ratios.append(fluxes["Halpha"] / m["halpha_flux"][i])
        d_n2.append(np.log10(fluxes["NII_6584"] / fluxes["Halpha"]) - m["n2"][i])
    assert 0.9 < np.median(ratios) < 1.05  # stellar Halpha absorption removes a few per cent
    assert np.median(np.abs(d_n2)) < 0.05


def test_balmer_decrement_follows_dust(batch):
    m = batch.meta
    ebv = m["a_v"] / 4.05
    expected = 2.86 * 10 ** (0.4 * ebv * (calzetti_k(EMISSION_LINES["Hbeta"])
                                          - calzetti_k(EMISSION_LINES["Halpha"])))
    np.testing.assert_allclose(m["halpha_flux"] / m["hbeta_flux"], expected, rtol=1e-8)
    assert (m["halpha_flux"] / m["hbeta_flux"] >= 2.86 - 1e-9).all()


def test_halpha_equivalent_width(batch):
    m = batch.meta
    rho = spearmanr(m["ew_halpha"], m["log_mstar"]).statistic
    assert -0.7 < rho < -0.1  # weakly anti-correlated with mass
    assert 25 < m["ew_halpha"].median() < 60


def test_star_forming_below_kauffmann_line(batch):
    m = batch.meta
    o3hb = m["o3n2"] + m["n2"]
    assert (o3hb < kauffmann03_o3hb(m["n2"])).all()


def test_non_star_forming_galaxies(mixed):
    m, wave = mixed.meta, mixed.wavelength
    sf = m["star_forming"].to_numpy()
    assert 0.44 < sf.mean() < 0.56
    assert m.loc[sf, "oh"].notna().all() and m.loc[~sf, "oh"].isna().all()
    assert m.loc[~sf, "oh_te"].isna().all()
    agn = (m["galaxy_type"] == "agn").to_numpy()
    passive = (m["galaxy_type"] == "passive").to_numpy()
    assert agn.sum() > 150 and passive.sum() > 150
    o3hb = m["o3n2"] + m["n2"]
    assert (o3hb[agn] > kauffmann03_o3hb(m["n2"][agn])).all()
    assert m.loc[agn, "n2"].median() > m.loc[sf, "n2"].median() + 0.3
    assert m.loc[agn, "ew_halpha"].between(0.5, 6.0).all()
    assert m.loc[passive, ["n2", "o3n2"]].isna().all().all()
    assert (m.loc[passive, "ew_halpha"] == 0).all() and (m.loc[passive, "halpha_flux"] == 0).all()
    # passive galaxies have a stronger 4000 A break than star-forming ones
    d4000 = []
    for i in range(len(m)):
        rest = wave / (1.0 + m["z"][i])
        red = mixed.flux[i, (rest > 4000) & (rest < 4100)].mean()
        blue = mixed.flux[i, (rest > 3850) & (rest < 3950)].mean()
        d4000.append(red / blue)
    d4000 = np.array(d4000)
    assert np.median(d4000[passive]) > np.median(d4000[sf]) + 0.3


def test_metallicity_recoverable_by_ridge():
    """A linear model on de-redshifted, min-max scaled spectra beats the label spread."""
    b = make_galaxy_spectra(2000, random_state=7)
    grid = np.arange(3700.0, 6900.0, 2.0)
    X = np.empty((len(b), grid.size))
    for i, z in enumerate(b.meta["z"]):
        good = ~b.mask[i]
        X[i] = np.interp(grid, b.wavelength[good] / (1.0 + z), b.flux[i, good])
    X -= X.min(axis=1, keepdims=True)
    X /= X.max(axis=1, keepdims=True)
    y = b.meta["oh"].to_numpy()
    train, test = slice(0, 1600), slice(1600, None)
    pred = Ridge(alpha=10.0).fit(X[train], y[train]).predict(X[test])
    assert np.std(pred - y[test]) < 0.6 * np.std(y[test])
    # control: shuffled labels cannot be learned
    shuffled = np.random.default_rng(0).permutation(y[train])
    pred = Ridge(alpha=10.0).fit(X[train], shuffled).predict(X[test])
    assert np.std(pred - y[test]) > 0.9 * np.std(y[test])


# ----------------------------------------------------------------------------- helpers & input


def test_published_relations():
    assert tremonti_mass_metallicity(10.0) == pytest.approx(8.952, abs=1e-6)
    oh = np.linspace(7.9, 9.3, 50)
    te = te_scale_metallicity(oh)
    assert np.all(np.diff(te) > 0) and np.all(te <= oh + 0.01)
    assert te_scale_metallicity(8.0) == pytest.approx(7.98, abs=0.03)
    for name, coeffs in CURTI2020_COEFFICIENTS.items():
        assert curti2020_log_ratio(name, 8.69) == pytest.approx(coeffs[0])
    assert pettini_pagel_n2_metallicity(-1.0) == pytest.approx(8.33)
    assert kauffmann03_o3hb(-0.55) == pytest.approx(0.61 / -0.6 + 1.3)
    assert kauffmann03_o3hb(0.1) == -np.inf
    assert calzetti_k(6564.61) == pytest.approx(3.33, abs=0.01)
    assert calzetti_k(4862.68) == pytest.approx(4.60, abs=0.01)
    assert calzetti_k(5500.0) == pytest.approx(4.05, abs=0.05)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_spectra": 0},
        {"n_spectra": 2.5},
        {"n_spectra": True},
        {"star_forming_fraction": 1.5},
        {"z_range": (0.3, 0.1)},
        {"z_range": (0.0, 2.0)},
        {"snr_range": (0, 10)},
        {"snr_range": "high"},
        {"wave_min": 3700.0, "wave_max": 5000.0},
        {"wave_min": 9000.0, "wave_max": 3700.0},
        {"log_step": 0.0},
        {"resolution": -1},
        {"bad_pixel_fraction": 0.6},
        {"label_noise": -0.1},
    ],
)
def test_invalid_arguments(kwargs):
    kwargs = {"n_spectra": 5, **kwargs}
    with pytest.raises(ValueError):
        make_galaxy_spectra(random_state=0, **kwargs)


def test_unknown_calibration():
    with pytest.raises(ValueError):
        curti2020_log_ratio("O3S2", 8.5)


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def hii_regions():
    folder = find_shared_data("galaxy_spectra")
    path = None if folder is None else folder / "HII_regions_direct_OH_line_ratios.dat"
    if path is None or not path.is_file():
        pytest.skip("HII_regions_direct_OH_line_ratios.dat not found in ../shared/data")
    data = np.genfromtxt(path, comments="#", usecols=(2, 4))
    return np.log10(data[:, 0] / 2.86), data[:, 1]  # N2 (Halpha/Hbeta = 2.86), 12+log(O/H)_Te


@pytest.mark.realdata
def test_n2_relation_matches_hii_regions(hii_regions, batch):
    """Simulated N2 vs O/H lies within the scatter of real T_e-based HII regions.

    The real abundances are direct-method (T_e) values, so they are compared
    with the simulator's T_e-scale abundance ``oh_te``; on the MPA-JHU label
    scale the simulated N2 is lower at fixed O/H, the known offset between
    the two abundance scales (Kewley & Ellison 2008).
    """
    n2_real, oh_real = hii_regions
    assert n2_real.size == 1009
    m = batch.meta
    offsets, label_offsets = [], []
    for lo in np.arange(8.3, 8.85, 0.1):
        real = (oh_real >= lo) & (oh_real < lo + 0.1)
        sim = m["oh_te"].between(lo, lo + 0.1, inclusive="left")
        if real.sum() < 8 or sim.sum() < 20:
            continue
        offset = np.median(m.loc[sim, "n2"]) - np.median(n2_real[real])
        assert abs(offset) < 0.3, lo
        assert abs(offset) < 1.5 * np.std(n2_real[real]), lo
        offsets.append(offset)
        on_label = m["oh"].between(lo, lo + 0.1, inclusive="left")
        if on_label.sum() >= 20:
            label_offsets.append(np.median(m.loc[on_label, "n2"]) - np.median(n2_real[real]))
    assert len(offsets) >= 4
    assert abs(np.median(offsets)) < 0.2
    assert np.median(label_offsets) < 0.0
