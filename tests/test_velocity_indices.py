"""Tests of skstellar.preprocessing.velocity (radial velocity, rest frame) and
skstellar.cyclestarnet.indices (H-alpha EW, TiO5/SpT, precision versus S/N)."""

import pickle

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone

from skstellar.cyclestarnet.indices import (
    HALPHA_AIR,
    HALPHA_VACUUM,
    activity_flag,
    fit_precision_snr,
    halpha_equivalent_width,
    precision_model,
    repeat_precision,
    spectral_subtype_from_tio5,
    tio5_index,
)
from skstellar.io import find_shared_data
from skstellar.preprocessing.continuum import ContinuumNormalizer
from skstellar.preprocessing.velocity import (
    DEFAULT_WINDOW,
    PAPER_MASK_WINDOWS,
    RadialVelocityCorrector,
    air_to_vacuum,
    default_rv_template,
    measure_radial_velocity,
    vacuum_to_air,
)
from skstellar.spectrum import SpectrumBatch

C_KMS = 299792.458
LAMOST_WAVE = 10 ** (3.5682 + 1e-4 * np.arange(3904))  # LAMOST LRS log-linear grid


@pytest.fixture(scope="module")
def template():
    """M-dwarf-like template at R ~ 1800: a few hundred lines and two band heads."""
    rng = np.random.default_rng(42)
    wave = np.arange(5400.0, 9600.0, 0.25)
    centres = rng.uniform(5450, 9550, 400)
    depths = rng.uniform(0.05, 0.5, 400)
    sig = centres / 1800.0 / 2.3548
    prof = np.ones_like(wave)
    for c, d, s in zip(centres, depths, sig):  # building a fixture, 400 lines
        near = np.abs(wave - c) < 6 * s
        prof[near] *= 1.0 - d * np.exp(-0.5 * ((wave[near] - c) / s) ** 2)
    for head, depth in ((7053.0, 0.3), (7666.0, 0.25)):  # TiO/VO-like band heads
        prof *= 1.0 - depth * (wave > head) * np.exp(-np.clip(wave - head, 0, None) / 150.0)
    smooth = 1.0 + 0.4 * np.sin(wave / 700.0)
    return wave, prof * smooth


def _observe(template, rv, snr, rng, wave=LAMOST_WAVE, scale=None):
    """Template shifted by rv [km/s] onto ``wave``, with noise of S/N ``snr`` per pixel."""
    tw, tf = template
    rv = np.atleast_1d(rv)
    flux = np.interp(wave[None, :] / (1.0 + rv[:, None] / C_KMS), tw, tf)
    if scale is None:
        scale = rng.uniform(0.3, 30.0, (rv.size, 1))
    flux = flux * scale
    err = flux / snr
    noisy = flux + err * rng.standard_normal(flux.shape)
    return SpectrumBatch(wave, noisy, ivar=1.0 / err**2)


# ---------------------------------------------------------------------------
# Radial velocities
# ---------------------------------------------------------------------------
def test_rv_recovered_at_snr_20_for_50_spectra(template):
    rng = np.random.default_rng(0)
    rv_true = rng.uniform(-400.0, 400.0, 50)
    obs = _observe(template, rv_true, 20.0, rng)
    res = measure_radial_velocity(obs, *template)
    assert list(res.columns) == ["rv", "rv_err", "ccf_peak", "chi2_reduced", "n_pixels",
                                 "at_edge", "ok"]
    assert res["ok"].all() and not res["at_edge"].any()
    d = res["rv"].to_numpy() - rv_true
    assert np.abs(d).max() < 3.0  # "within a few km/s"
    assert abs(d.mean()) < 0.5
    # the uncertainties describe the scatter (within a factor of 2)
    pull = d / res["rv_err"].to_numpy()
    assert 0.5 < pull.std() < 2.0
    assert (res["ccf_peak"] > 0.9).all()
    assert (res["chi2_reduced"] < 3.0).all()
    # the velocity is the same when the data are on a uniform 1 A grid instead
    obs_lin = _observe(template, rv_true[:5], 20.0, rng, wave=np.arange(5900.0, 9000.0))
    res_lin = measure_radial_velocity(obs_lin, *template)
    assert np.abs(res_lin["rv"].to_numpy() - rv_true[:5]).max() < 3.0


def test_rv_batch_equals_one_by_one_and_list_input(template):
    rng = np.random.default_rng(1)
    obs = _observe(template, np.array([-120.0, 15.0, 260.0]), 30.0, rng)
    whole = measure_radial_velocity(obs, *template)
    for i in range(3):  # reference: one spectrum at a time
        one = measure_radial_velocity(obs[i], *template)
        assert_allclose(one["rv"].to_numpy(), whole["rv"].to_numpy()[i:i + 1], rtol=1e-10)
    as_list = [(obs.wavelength, obs.flux[i], obs.ivar[i]) for i in range(3)]
    assert_allclose(measure_radial_velocity(as_list, *template)["rv"], whole["rv"], rtol=1e-10)


def test_rv_precision_improves_with_snr(template):
    rng = np.random.default_rng(2)
    rv_true = rng.uniform(-200.0, 200.0, 30)
    scat = []
    for snr in (5.0, 50.0):
        res = measure_radial_velocity(_observe(template, rv_true, snr, rng), *template)
        scat.append(np.std(res["rv"].to_numpy() - rv_true))
    assert scat[1] < scat[0] / 3


def test_rv_failures_are_flagged_not_raised(template):
    rng = np.random.default_rng(3)
    obs = _observe(template, np.array([50.0, 50.0, 700.0]), 30.0, rng)
    obs.mask = np.zeros(obs.flux.shape, dtype=bool)
    obs.mask[1] = True  # a dead fibre
    res, v, chi2 = measure_radial_velocity(obs, *template, v_grid=(-500.0, 500.0, 10.0),
                                           return_chi2=True)
    assert v.shape == (101,) and chi2.shape == (3, 101)
    assert res["ok"].tolist() == [True, False, False]
    assert res["n_pixels"][1] == 0 and np.isnan(res["rv"][1])
    assert res["at_edge"][2] and np.isnan(res["rv"][2])  # true rv outside the grid
    assert abs(res["rv"][0] - 50.0) < 3.0


def test_mask_windows_matter(template):
    # Contamination fixed in the observed frame (here: template-like features at
    # zero velocity inside the paper's windows, as telluric or sky features
    # would be) pulls the velocity towards 0 unless the windows are masked.
    rng = np.random.default_rng(4)
    tw, tf = template
    obs = _observe(template, np.full(10, 150.0), 100.0, rng, scale=np.ones((10, 1)))
    at_rest = np.interp(obs.wavelength, tw, tf)
    inside = np.zeros(obs.wavelength.shape, dtype=bool)
    for lo, hi in PAPER_MASK_WINDOWS:
        inside |= (obs.wavelength >= lo) & (obs.wavelength <= hi)
    obs.flux[:, inside] = at_rest[inside]
    masked = measure_radial_velocity(obs, tw, tf)  # mask="paper" by default
    unmasked = measure_radial_velocity(obs, tw, tf, mask=None)
    assert np.abs(masked["rv"] - 150.0).max() < 3.0
    assert np.all(unmasked["rv"] < 150.0 - 10.0)


def test_template_resolution_degrades_a_sharp_template(template):
    rng = np.random.default_rng(5)
    # a sharp-lined template (R ~ 20000) and data with the same lines at R ~ 1800
    sharp_w = np.arange(5700.0, 9300.0, 0.05)
    centres = np.array([6123.0, 6555.5, 7012.3, 7432.1, 7911.0, 8333.3, 8777.7])
    s_sharp = 0.15
    s_broad = centres / 1800.0 / 2.3548
    d = sharp_w[:, None] - centres[None, :]
    sharp = 1.0 - 0.6 * np.exp(-0.5 * (d / s_sharp) ** 2).sum(axis=1)
    broad = 1.0 - (0.6 * s_sharp / s_broad * np.exp(-0.5 * (d / s_broad) ** 2)).sum(axis=1)
    obs = _observe((sharp_w, broad), np.array([-80.0, 33.0, 120.0]), 200.0, rng)
    res_deg = measure_radial_velocity(obs, sharp_w, sharp, template_resolution=1800.0, mask=None)
    # the degraded sharp template behaves like the true R ~ 1800 template
    res_true = measure_radial_velocity(obs, sharp_w, broad, mask=None)
    assert_allclose(res_deg["rv"], res_true["rv"], atol=0.3)
    assert_allclose(res_deg["ccf_peak"], res_true["ccf_peak"], atol=2e-3)
    assert (res_deg["chi2_reduced"] < 1.2).all()
    assert np.all(np.abs(res_deg["rv"] - [-80.0, 33.0, 120.0]) < 4 * res_deg["rv_err"])
    # while the raw sharp template is a poor match
    res_raw = measure_radial_velocity(obs, sharp_w, sharp, mask=None)
    assert (res_raw["ccf_peak"] < 0.6 * res_deg["ccf_peak"]).all()
    assert (res_raw["chi2_reduced"] > 1.5).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(v_grid=(-500.0, 500.0)), "v_grid"),
    (dict(v_grid=(500.0, -500.0, 5.0)), "v_max > v_min"),
    (dict(v_grid=np.array([0.0, 1.0, 3.0, 4.0])), "uniformly spaced"),
    (dict(v_grid=(-1e5, 1e5, 100.0)), "0.1 c"),
    (dict(window=(8900.0, 6000.0)), "window"),
    (dict(mask="tellurics"), "mask"),
    (dict(template_resolution=-5), "template_resolution"),
    (dict(pixel_velocity=0.0), "pixel_velocity"),
])
def test_rv_bad_parameters(template, kwargs, match):
    obs = _observe(template, np.array([0.0]), 20.0, np.random.default_rng(6))
    with pytest.raises(ValueError, match=match):
        measure_radial_velocity(obs, *template, **kwargs)


def test_rv_template_checks(template):
    tw, tf = template
    obs = _observe(template, np.array([0.0]), 20.0, np.random.default_rng(7))
    with pytest.raises(ValueError, match="template covers .* needs"):
        measure_radial_velocity(obs, tw[tw > 6500], tf[tw > 6500])
    with pytest.raises(ValueError, match="strictly increasing"):
        measure_radial_velocity(obs, tw[::-1], tf)
    with pytest.raises(ValueError, match="equal length"):
        measure_radial_velocity(obs, tw, tf[:-1])
    with pytest.raises(TypeError, match="SpectrumBatch"):
        measure_radial_velocity(obs.flux, tw, tf)


def test_air_vacuum_conversion():
    assert_allclose(vacuum_to_air(HALPHA_VACUUM), HALPHA_AIR, atol=0.01)
    assert_allclose(air_to_vacuum(HALPHA_AIR), HALPHA_VACUUM, atol=0.01)
    w = np.linspace(3000.0, 10000.0, 50)
    assert_allclose(vacuum_to_air(air_to_vacuum(w)), w, atol=1e-7)
    # the shift is ~2.8e-4 of the wavelength: an 83 km/s velocity bias if ignored
    assert 80.0 < np.median((air_to_vacuum(w) / w - 1) * C_KMS) < 86.0


# ---------------------------------------------------------------------------
# RadialVelocityCorrector
# ---------------------------------------------------------------------------
def test_corrector_outputs_rest_frame_on_paper_grid(template):
    rng = np.random.default_rng(8)
    rv_true = np.array([-210.0, -5.0, 90.0, 333.0])
    obs = _observe(template, rv_true, 40.0, rng, scale=np.ones((4, 1)))
    obs.meta = pd.DataFrame({"obsid": [11, 12, 13, 14]})
    rvc = RadialVelocityCorrector(template=template)
    out = rvc.fit_transform(obs)
    assert DEFAULT_WINDOW == (6000.0, 8900.0)
    assert out.wavelength.ndim == 1 and out.wavelength.shape == (2901,)
    assert_array_equal(out.wavelength, 6000.0 + np.arange(2901.0))
    assert_array_equal(rvc.grid_, out.wavelength)
    assert out.flux.shape == (4, 2901) and out.ivar.shape == (4, 2901)
    assert list(out.meta["obsid"]) == [11, 12, 13, 14]
    assert np.abs(out.meta["rv"].to_numpy() - rv_true).max() < 3.0
    assert {"rv_err", "rv_ccf_peak", "rv_chi2_reduced", "rv_ok"} <= set(out.meta.columns)
    assert out.meta["rv_ok"].all() and (out.meta["rv_err"] > 0).all()
    # rest frame: every spectrum now lines up with the unshifted template
    tmpl = np.interp(out.wavelength, *template)
    for i in range(4):  # four correlation coefficients
        r = np.corrcoef(out.flux[i], tmpl)[0, 1]
        assert r > 0.97
    # ... which the observed-frame spectra did not
    obs_on_grid = np.interp(out.wavelength, obs.wavelength, obs.flux[3])
    assert np.corrcoef(obs_on_grid, tmpl)[0, 1] < 0.9
    # the input is left untouched
    assert obs.flux.shape == (4, 3904)


def test_corrector_then_continuum_normaliser(template):
    rng = np.random.default_rng(9)
    obs = _observe(template, rng.uniform(-300, 300, 6), 25.0, rng)
    out = RadialVelocityCorrector(template=template).fit_transform(obs)
    norm = ContinuumNormalizer(mask="paper").fit_transform(out)
    assert np.isfinite(norm.flux).all() and not norm.mask.any()
    assert np.all(np.abs(np.median(norm.flux, axis=1) - 1.0) < 0.05)


def test_corrector_failure_policy_and_input_types(template):
    rng = np.random.default_rng(10)
    obs = _observe(template, np.array([10.0, 20.0]), 30.0, rng)
    obs.mask = np.zeros(obs.flux.shape, dtype=bool)
    obs.mask[1] = True
    with pytest.raises(ValueError, match="Spectrum 1: the radial velocity could not be measured"):
        RadialVelocityCorrector(template=template).fit_transform(obs)
    out = RadialVelocityCorrector(template=template, on_failure="nan").fit_transform(obs)
    assert out.meta["rv_ok"].tolist() == [True, False]
    assert np.isnan(out.flux[1]).all() and out.mask[1].all() and (out.ivar[1] == 0).all()
    assert np.isfinite(out.flux[0]).all()
    with pytest.raises(TypeError, match="SpectrumBatch"):
        RadialVelocityCorrector(template=template).fit(obs).transform(obs.flux)
    # no template: the shipped default (an M-dwarf spectrum, not these toy lines)
    default = RadialVelocityCorrector().fit(obs)
    assert_allclose(default.template_wavelength_, default_rv_template()[0])
    with pytest.raises(ValueError, match="on_failure"):
        RadialVelocityCorrector(template=template, on_failure="skip").fit(obs)
    tb = SpectrumBatch(template[0], template[1][None, :])
    a = RadialVelocityCorrector(template=tb).fit(obs).measure(obs[:1])
    b = RadialVelocityCorrector(template=template).fit(obs).measure(obs[:1])
    assert_allclose(a["rv"], b["rv"])


def test_corrector_clone_and_pickle(template):
    rng = np.random.default_rng(11)
    obs = _observe(template, np.array([42.0]), 30.0, rng)
    rvc = RadialVelocityCorrector(template=template, v_grid=(-300.0, 300.0, 4.0), step=2.0)
    c = clone(rvc)
    assert c.get_params()["v_grid"] == (-300.0, 300.0, 4.0) and c.step == 2.0
    fitted = c.fit(obs)
    assert fitted.grid_.shape == (1451,)
    restored = pickle.loads(pickle.dumps(fitted))
    assert_allclose(restored.transform(obs).flux, fitted.transform(obs).flux)


# ---------------------------------------------------------------------------
# H-alpha
# ---------------------------------------------------------------------------
HA_WAVE = np.arange(6400.0, 6750.0, 1.0)


def _gauss(wave, centre, sigma, area):
    return area / (np.sqrt(2 * np.pi) * sigma) * np.exp(-0.5 * ((wave - centre) / sigma) ** 2)


def test_halpha_emission_line_of_known_ew():
    scale = np.array([[1.0], [3.7], [250.0]])
    ews = np.array([1.3, 5.0, -2.0])  # last: absorption
    flux = scale * (1.0 + _gauss(HA_WAVE, HALPHA_VACUUM, 1.6, ews[:, None]))
    ew = halpha_equivalent_width(SpectrumBatch(HA_WAVE, flux))
    assert_allclose(ew, ews, atol=2e-3)  # emission positive, absorption negative
    assert_allclose(halpha_equivalent_width(flux, wavelength=HA_WAVE), ews, atol=2e-3)
    assert_allclose(halpha_equivalent_width(flux[0], wavelength=HA_WAVE), ews[0], atol=2e-3)
    # an air-wavelength spectrum needs the air centre
    air = scale * (1.0 + _gauss(HA_WAVE, HALPHA_AIR, 1.6, ews[:, None]))
    assert_allclose(halpha_equivalent_width(air, wavelength=HA_WAVE, center=HALPHA_AIR), ews,
                    atol=2e-3)
    # a line outside the +-7 A window is not counted
    off = 1.0 + _gauss(HA_WAVE, HALPHA_VACUUM + 12.0, 1.0, 3.0)
    assert abs(halpha_equivalent_width(off, wavelength=HA_WAVE, continuum="normalized")) < 1e-3
    inside = 1.0 + _gauss(HA_WAVE, HALPHA_VACUUM + 3.0, 1.0, 3.0)
    assert halpha_equivalent_width(inside, wavelength=HA_WAVE, continuum="normalized") > 2.9


def test_halpha_continuum_options():
    slope = 2.0 + 0.004 * (HA_WAVE - 6400.0)  # sloped continuum
    flux = slope * (1.0 + _gauss(HA_WAVE, HALPHA_VACUUM, 1.5, 2.5))
    # per-pixel continuum given
    assert_allclose(halpha_equivalent_width(flux, wavelength=HA_WAVE, continuum=slope), 2.5,
                    atol=2e-3)
    # already normalised flux
    assert_allclose(halpha_equivalent_width(flux / slope, wavelength=HA_WAVE,
                                            continuum="normalized"), 2.5, atol=2e-3)
    # side bands on a linear slope: symmetric bands around the line average it out
    ew = halpha_equivalent_width(flux, wavelength=HA_WAVE,
                                 continuum_windows=((6520.0, 6550.0), (6579.22, 6609.22)))
    assert_allclose(ew, 2.5, atol=0.01)
    # a ContinuumNormalizer with the paper mask skips H-alpha in its continuum
    batch = SpectrumBatch(HA_WAVE, flux[None, :])
    norm = ContinuumNormalizer(mask="paper").fit_transform(batch)
    assert_allclose(halpha_equivalent_width(norm, continuum="normalized"), 2.5, atol=0.1)
    with pytest.raises(ValueError, match="continuum must be"):
        halpha_equivalent_width(flux, wavelength=HA_WAVE, continuum="median")
    with pytest.raises(ValueError, match="must match the flux"):
        halpha_equivalent_width(flux, wavelength=HA_WAVE, continuum=slope[:-1])


def test_halpha_bad_pixels_and_coverage_give_nan():
    flux = np.ones((3, HA_WAVE.size))
    flux[0, np.argmin(np.abs(HA_WAVE - HALPHA_VACUUM))] = np.nan  # in the line window
    mask = np.zeros(flux.shape, dtype=bool)
    mask[1, np.argmin(np.abs(HA_WAVE - 6520.0))] = True  # in a continuum band
    ew = halpha_equivalent_width(SpectrumBatch(HA_WAVE, flux, mask=mask))
    assert np.isnan(ew[0]) and np.isnan(ew[1]) and abs(ew[2]) < 1e-12
    short = np.arange(6560.0, 6700.0)
    assert np.isnan(halpha_equivalent_width(np.ones(short.size), wavelength=short))
    with pytest.raises(ValueError, match="wavelength"):
        halpha_equivalent_width(flux)


def test_activity_flag():
    ew = np.array([0.0, 0.75, 0.7501, 3.0, -1.0, np.nan])
    assert_array_equal(activity_flag(ew), [0, 0, 1, 1, 0, 0])
    assert_array_equal(activity_flag(ew, undefined=-1), [0, 0, 1, 1, 0, -1])
    assert_array_equal(activity_flag(ew, threshold=2.0), [0, 0, 0, 1, 0, 0])
    assert activity_flag(1.0) == 1


# ---------------------------------------------------------------------------
# TiO5 and spectral subtype
# ---------------------------------------------------------------------------
TIO_WAVE = np.arange(7000.0, 7200.0, 1.0)


def test_tio5_of_flat_spectrum_and_subtype():
    flat = np.full((2, TIO_WAVE.size), 3.3)
    tio = tio5_index(flat, wavelength=TIO_WAVE)
    assert_allclose(tio, 1.0)
    assert_allclose(spectral_subtype_from_tio5(tio), -2.575)  # K5-ish, the paper's Eq. 11


def test_tio5_band_depth_and_subtype_scale():
    depth = np.array([0.0, 0.3, 0.6])
    band = (TIO_WAVE >= 7126) & (TIO_WAVE <= 7135)
    flux = np.ones((3, TIO_WAVE.size)) * 2.0
    flux[:, band] *= 1.0 - depth[:, None]
    tio = tio5_index(SpectrumBatch(TIO_WAVE, flux))
    assert_allclose(tio, 1.0 - depth, atol=1e-12)
    spt = spectral_subtype_from_tio5(tio)
    assert np.all(np.diff(spt) > 0)  # deeper band: later subtype
    assert_allclose(np.diff(spt), 10.775 * np.diff(depth))
    assert_allclose(spectral_subtype_from_tio5([0.0, 0.5, 1.2], out_of_range="nan"),
                    [np.nan, 2.8125, np.nan])
    with pytest.raises(ValueError, match="out_of_range"):
        spectral_subtype_from_tio5(0.5, out_of_range="clip")


def test_tio5_sub_pixel_windows_and_bad_pixels():
    # a linear spectrum on a coarse, non-uniform grid: exact band means
    wave = np.sort(np.r_[7000.0, 7200.0, np.random.default_rng(12).uniform(7001, 7199, 40)])
    flux = 1.0 + 0.01 * (wave - 7000.0)
    expected = (1.0 + 0.01 * (7130.5 - 7000.0)) / (1.0 + 0.01 * (7044.0 - 7000.0))
    assert_allclose(tio5_index(flux, wavelength=wave), expected, rtol=1e-12)
    bad = np.ones((2, TIO_WAVE.size))
    bad[0, TIO_WAVE == 7044.0] = np.nan
    bad[1, TIO_WAVE == 7130.0] = -np.inf
    assert np.isnan(tio5_index(bad, wavelength=TIO_WAVE)).all()


# ---------------------------------------------------------------------------
# Precision versus S/N
# ---------------------------------------------------------------------------
def test_fit_precision_snr_exact_and_checks():
    snr = np.array([5.0, 10.0, 20.0, 40.0, 80.0, 160.0])
    err = precision_model(snr, 55.0, 3.2)
    a, b = fit_precision_snr(snr, err)
    assert_allclose([a, b], [55.0, 3.2], rtol=1e-10)
    a, b, cov = fit_precision_snr(snr, err + 1e-3 * np.sin(snr), return_cov=True)
    assert cov.shape == (2, 2) and np.all(np.diag(cov) > 0)
    assert precision_model(10.0, 55.0, 3.2) == pytest.approx(8.7)
    with pytest.raises(ValueError, match="snr must be > 0"):
        fit_precision_snr([0.0, 10.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="distinct S/N"):
        fit_precision_snr([10.0, 10.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="err has 1 non-finite"):
        fit_precision_snr([5.0, 10.0, 20.0], [1.0, np.nan, 2.0])


def test_repeat_precision_recovers_a_and_b():
    rng = np.random.default_rng(13)
    n_obj, n_rep = 4000, 4
    a_true = {"rv": 60.0, "teff": 400.0}
    b_true = {"rv": 3.0, "teff": 20.0}
    base = np.exp(rng.uniform(np.log(5.0), np.log(150.0), n_obj))
    snr = (base[:, None] * np.exp(0.1 * rng.standard_normal((n_obj, n_rep)))).ravel()
    ids = np.repeat(np.array([f"J{i:05d}" for i in range(n_obj)]), n_rep)
    perm = rng.permutation(ids.size)  # observations arrive in any order
    truth = {"rv": np.repeat(rng.normal(0, 30, n_obj), n_rep),
             "teff": np.repeat(rng.normal(3500, 200, n_obj), n_rep)}
    meas = pd.DataFrame({k: truth[k] + precision_model(snr, a_true[k], b_true[k])
                         * rng.standard_normal(ids.size) for k in truth})
    table = repeat_precision(meas.iloc[perm].reset_index(drop=True), ids[perm], snr[perm],
                             bins=10.0)
    assert list(table.columns) == ["snr_lo", "snr_hi", "snr", "n_pairs", "err_rv", "err_teff"]
    # every object gives n_rep - 1 pairs; bins with < 5 pairs (highest S/N) are dropped
    assert 0.99 * n_obj * (n_rep - 1) < table["n_pairs"].sum() <= n_obj * (n_rep - 1)
    assert (table["snr"] >= table["snr_lo"]).all() and (table["snr"] < table["snr_hi"]).all()
    for k in truth:
        a, b = fit_precision_snr(table["snr"], table[f"err_{k}"], sample_weight=table["n_pairs"])
        assert a == pytest.approx(a_true[k], rel=0.1)
        assert b == pytest.approx(b_true[k], abs=0.15 * a_true[k] / 10)
    robust = repeat_precision(meas["rv"], ids, snr, statistic="robust")
    a, b = fit_precision_snr(robust["snr"], robust["err"], sample_weight=robust["n_pairs"])
    assert a == pytest.approx(60.0, rel=0.15)


def test_repeat_precision_selection_and_checks():
    ids = np.array(["a", "a", "b", "c", "c", "c", None, None])
    vals = np.array([1.0, 3.0, 5.0, 0.0, 2.0, 6.0, 100.0, -100.0])
    snr = np.full(8, 20.0)
    t = repeat_precision(vals, ids, snr, min_pairs=1)
    # pairs: a (3-1), c (2-0), c (6-2); b alone; None ids ignored
    assert t["n_pairs"].tolist() == [3]
    assert_allclose(t["err"], np.sqrt((4 + 4 + 16) / 3 / 2))
    t4 = repeat_precision(vals, ids, snr, min_pairs=1, min_observations=3)
    assert t4["n_pairs"].tolist() == [2]  # only star c
    assert repeat_precision(vals, ids, snr).empty  # fewer than min_pairs=5
    with pytest.raises(ValueError, match="same length"):
        repeat_precision(vals, ids[:-1], snr)
    with pytest.raises(ValueError, match="statistic"):
        repeat_precision(vals, ids, snr, statistic="mad")
    with pytest.raises(ValueError, match="min_observations"):
        repeat_precision(vals, ids, snr, min_observations=1)


# ---------------------------------------------------------------------------
# Real LAMOST spectra
# ---------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_lamost_rv_correction_continuum_and_indices():
    lamost = find_shared_data("lamost_spectra")
    synth = find_shared_data("synthetic_spectra")
    if lamost is None or synth is None:
        pytest.skip("shared LAMOST spectra or BT-Settl templates (../shared/data) not available")
    from astropy.table import Table

    from skstellar.io import read_lamost_spectra

    files = sorted((lamost / "dr6_M31_011N40_B1").glob("*.fits*")) + sorted(
        (lamost / "dr1_B6212_sp06").glob("*.fits"))[:3]
    batch = read_lamost_spectra(files)
    tab = Table.read(synth / "bt_settl_pfs_etc" / "star_m0v.fits", hdu=1)
    # the BT-Settl template is in air (its Na D / Ca II lines sit at the air
    # wavelengths); LAMOST is vacuum
    tw = air_to_vacuum(np.asarray(tab["wavelength"], dtype=float))
    tf = np.asarray(tab["flux"], dtype=float)
    rvc = RadialVelocityCorrector(template=(tw, tf), template_resolution=1800.0)
    out = rvc.fit_transform(batch)
    norm = ContinuumNormalizer(mask="paper").fit_transform(out)
    assert_array_equal(norm.wavelength, 6000.0 + np.arange(2901.0))
    good = ~norm.mask
    assert good.mean(axis=1).min() > 0.9
    assert np.isfinite(norm.flux[good]).all() and np.isfinite(norm.ivar[good]).all()
    assert np.all(norm.ivar[good] > 0)
    assert np.all(np.abs(np.nanmedian(np.where(good, norm.flux, np.nan), axis=1) - 1.0) < 0.05)
    rv = out.meta["rv"].to_numpy()
    assert out.meta["rv_ok"].all() and np.all(np.abs(rv) < 400.0)
    # the DR6 stars agree with the LAMOST pipeline's redshift (M4 star: pipeline failed)
    cz = out.meta["z"].to_numpy() * C_KMS
    dr6 = (out.meta["layout"] == "DR6").to_numpy() & np.isfinite(cz)
    assert dr6.sum() == 2
    assert np.all(np.abs(rv[dr6] - cz[dr6]) < 30.0)
    # TiO5 subtypes: M0-M4 stars fall in the relation's range and order
    spt = spectral_subtype_from_tio5(tio5_index(out))
    assert np.all((spt > -2.5) & (spt < 6.0))
    sub = out.meta["subclass"].str[1].astype(int).to_numpy()
    assert spt[sub == 4].min() > spt[sub == 0].max()
    ew = halpha_equivalent_width(out)
    assert np.isfinite(ew).all()


# ---------------------------------------------------------------- default template
def test_default_template_is_a_vacuum_mdwarf_spectrum():
    wave, flux = default_rv_template()
    assert wave.shape == flux.shape == (6201,)
    assert wave[0] < 5990 and wave[-1] > 8915  # the 6000-8900 A window +- 500 km/s
    assert np.all(np.diff(wave) > 0) and np.isfinite(flux).all()
    # TiO band at 7050-7250 A deeper than the pseudo-continuum near 7040 A
    assert np.median(flux[(wave > 7060) & (wave < 7150)]) < 0.9 * flux[np.argmin(abs(wave - 7040))]


def test_default_template_recovers_velocities_of_simulated_mdwarfs():
    from skstellar.datasets import mdwarf_model_spectrum

    rng = np.random.default_rng(3)
    rv_true = rng.uniform(-300, 300, 12)
    labels = np.column_stack([rng.uniform(3300, 3900, 12), np.full(12, 4.8),
                              rng.uniform(-0.5, 0.3, 12)])
    rest = mdwarf_model_spectrum(labels, LAMOST_WAVE, resolution=1800.0)
    # observed = rest-frame model seen at rv_true (interpolate the rest spectrum)
    flux = np.stack([np.interp(LAMOST_WAVE / (1 + v / C_KMS), LAMOST_WAVE, f)
                     for v, f in zip(rv_true, rest)])
    flux = flux * (1 + rng.normal(0, 1 / 30.0, flux.shape))
    ivar = np.full(flux.shape, 30.0 ** 2)
    out = RadialVelocityCorrector().fit_transform(SpectrumBatch(LAMOST_WAVE, flux, ivar))
    # the shipped template carries a -25.2 km/s zero point (scripts/build_rv_template.py),
    # so the simulator's own spectra come out 25.2 km/s high
    d = out.meta["rv"].to_numpy() - rv_true
    assert abs(d.mean() - 25.2) < 3.0 and np.all(np.abs(d - 25.2) < 10.0)
    assert out.flux.shape == (12, 2901) and out.meta["rv_ok"].all()


def test_default_template_on_real_lamost_mdwarfs():
    folder = find_shared_data("lamost_spectra")
    if folder is None:
        pytest.skip("../shared/data/lamost_spectra not available")
    from skstellar.io import read_lamost_spectra

    batch = read_lamost_spectra(sorted(str(p) for p in folder.iterdir() if p.is_dir()))
    out = RadialVelocityCorrector().fit_transform(batch)
    rv = out.meta["rv"].to_numpy()
    assert len(rv) == 21 and out.meta["rv_ok"].all()
    assert np.all(np.abs(rv) < 400) and np.all(out.meta["rv_err"] < 60)
    assert out.flux.shape == (21, 2901) and np.isfinite(out.flux).mean() > 0.9
    # against a physical model: BT-Settl M0V (air -> vacuum, R 1800) when available
    synth = find_shared_data("synthetic_spectra")
    if synth is None:
        return
    from astropy.io import fits

    t = fits.getdata(synth / "bt_settl_pfs_etc" / "star_m0v.fits", 1)
    w, f = np.asarray(t["wavelength"], float), np.asarray(t["flux"], float)
    keep = (w > 5800) & (w < 9100)
    ref = RadialVelocityCorrector(template=(air_to_vacuum(w[keep]), f[keep]),
                                  template_resolution=1800.0).fit().measure(batch)["rv"]
    d = rv - ref.to_numpy()
    # zero point tuned on these stars (|median| small by construction); the per-star
    # scatter is the test: measured 9.4 km/s robust
    assert abs(np.median(d)) < 3.0
    assert 1.4826 * np.median(np.abs(d - np.median(d))) < 15.0
