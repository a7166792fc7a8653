"""Tests of skstellar.cyclestarnet.evaluation (the Cycle-StarNet end-to-end evaluation and
demo) and of the real-LAMOST end-to-end path: read -> RV-correct -> continuum-normalise ->
Cycle-StarNet on the paper's 6000-8900 A, 1 A grid."""

import json

import numpy as np
import pytest

from skstellar.cyclestarnet.adapter import CycleStarNet
from skstellar.cyclestarnet.evaluation import (
    PAPER_FIGURES,
    continuum_throughput,
    evaluate_cyclestarnet,
    label_statistics,
    residual_rms,
    run_cyclestarnet_demo,
)
from skstellar.datasets.mdwarf_spectra import make_mdwarf_spectra, mdwarf_wavelength_grid
from skstellar.io import find_shared_data

#: A tiny adapter for 2,901-pixel spectra (32-fold compression, a few hundred weights).
TINY_ADAPTER = dict(domain_channels=(4,), shared_channels=(8, 8), kernel_size=5,
                    strides=(4, 4, 2), latent_channels=4, split_channels=2, split_width=4,
                    lr=1e-3, lr_decay_every=None, log_every=10)
TINY_RUN = dict(n_iter=30, n_train=40, n_test=24, n_emulator=300, emulator_hidden=(16, 16),
                emulator_epochs=20, n_continuum=64, adapter_params=TINY_ADAPTER)


# ---------------------------------------------------------------------------
# Small measurements
# ---------------------------------------------------------------------------
def test_residual_rms_is_one_for_gaussian_noise_and_respects_masks():
    rng = np.random.default_rng(0)
    model = 1.0 - 0.3 * rng.uniform(size=(50, 400))
    err = rng.uniform(0.01, 0.05, size=model.shape)
    flux = model + err * rng.standard_normal(model.shape)
    r = residual_rms(flux, err, model)
    assert r.shape == (50,)
    assert abs(np.median(r) - 1.0) < 0.05
    # a model off by 2 sigma everywhere: rms = sqrt(1 + 4)
    assert abs(np.median(residual_rms(flux, err, model + 2 * err)) - np.sqrt(5.0)) < 0.1
    # masked pixels (and non-finite errors) do not count, whatever their flux
    wild = flux.copy()
    wild[:, :100] += 1e3
    mask = np.zeros(400, dtype=bool)
    mask[:50] = True
    err2 = err.copy()
    err2[:, 50:100] = np.inf
    np.testing.assert_allclose(residual_rms(wild, err2, model, mask),
                               residual_rms(flux[:, 100:], err[:, 100:], model[:, 100:]))
    all_bad = np.ones(400, dtype=bool)
    assert np.isnan(residual_rms(flux, err, model, all_bad)).all()
    with pytest.raises(ValueError, match="share one shape"):
        residual_rms(flux, err[:, :10], model)
    with pytest.raises(ValueError, match="mask must have shape"):
        residual_rms(flux, err, model, mask[:10])


def test_label_statistics_recovers_known_bias_and_scatter():
    rng = np.random.default_rng(1)
    truth = np.column_stack([rng.uniform(3000, 4000, 4000), rng.uniform(4.5, 5.5, 4000),
                             rng.uniform(-1, 0.5, 4000)])
    fit = truth + np.array([30.0, -0.05, 0.1]) + rng.normal(0, 1, truth.shape) * [70, 0.1, 0.2]
    fit[5] = np.nan  # a failed fit
    s = label_statistics(fit, truth)
    assert s["n_failed"] == 1 and s["teff"]["n"] == 3999
    assert abs(s["teff"]["bias"] - 30.0) < 5 and abs(s["teff"]["scatter"] - 70.0) < 5
    assert abs(s["logg"]["bias"] + 0.05) < 0.01 and abs(s["logg"]["scatter"] - 0.1) < 0.01
    assert abs(s["m_h"]["bias"] - 0.1) < 0.02 and abs(s["m_h"]["scatter"] - 0.2) < 0.02
    sub = label_statistics(fit, truth, rows=np.arange(4000) < 100)
    assert sub["teff"]["n"] == 99
    with pytest.raises(ValueError, match="shape"):
        label_statistics(fit[:, :2], truth[:, :2])


def test_continuum_throughput_normalises_to_unity():
    out = continuum_throughput(64, random_state=0)
    assert out["n_pixels"] == 2901 and out["n_spectra"] == 64
    assert out["spectra_per_second"] > 0 and out["seconds"] > 0
    # the simulated spectra carry a Planck slope; after normalisation the median is ~1
    assert abs(out["median_normalised_flux"] - 1.0) < 0.05
    with pytest.raises(ValueError, match="n_spectra"):
        continuum_throughput(0)


def test_evaluate_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_test"):
        evaluate_cyclestarnet(n_test=1)
    with pytest.raises(ValueError, match="n_iter"):
        evaluate_cyclestarnet(n_iter=0)
    with pytest.raises(ValueError, match="random_state"):
        evaluate_cyclestarnet(random_state=None)


# ---------------------------------------------------------------------------
# The demo, at a tiny size
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "csn.json"
    lines = []
    res = run_cyclestarnet_demo(**TINY_RUN, random_state=0, out=lines.append, json_path=path)
    return res, lines, path


def test_demo_reports_finite_residuals_and_label_stats(demo):
    res, lines, path = demo
    r = res["residuals"]
    for key in ("without_adaptation", "with_adaptation", "noise_floor",
                "true_labels_synthetic", "true_labels_adapted", "ratio"):
        assert np.isfinite(r[key]), key
    assert r["without_adaptation"] > 0 and r["with_adaptation"] > 0
    assert r["ratio"] == pytest.approx(r["with_adaptation"] / r["without_adaptation"])
    for key in ("without_adaptation", "with_adaptation"):
        assert r["excess_" + key] == pytest.approx(
            np.sqrt(max(r[key] ** 2 - r["noise_floor"] ** 2, 0.0)))
    assert r["excess_ratio"] == pytest.approx(
        r["excess_with_adaptation"] / r["excess_without_adaptation"])
    # the noiseless truth leaves only the noise: rms ~ 1 (24 spectra, ~2,000 pixels each)
    assert 0.9 < r["noise_floor"] < 1.1
    # the true labels' synthetic spectrum misses the simulated gap: worse than the noise
    assert r["true_labels_synthetic"] > r["noise_floor"]
    for kind in ("without_adaptation", "with_adaptation", "synthetic_stage"):
        stats = res["labels"][kind]
        for name in ("teff", "logg", "m_h"):
            assert np.isfinite(stats[name]["bias"]) and stats[name]["scatter"] > 0
            assert stats[name]["n"] == TINY_RUN["n_test"] - stats["n_failed"]
    tm = res["timing"]
    assert tm["csn_seconds_per_1000_iter"] > 0
    assert tm["label_fit_spectra_per_second_without"] > 0
    assert tm["label_fit_spectra_per_second_with"] > 0
    assert tm["continuum_n_pixels"] == 2901 and tm["continuum_spectra_per_second"] > 0
    fitted = res["fitted"]
    assert fitted["adapter"].n_iter_ == TINY_RUN["n_iter"]
    assert fitted["result_with"].labels.shape == (TINY_RUN["n_test"], 3)
    assert fitted["residual_rms"]["with_adaptation"].shape == (TINY_RUN["n_test"],)
    # the printed table names the paper's figures and says the run is short
    text = "\n".join(lines)
    assert "2.00 -> 1.68" in text and "with adaptation" in text
    assert "not the paper's" in text and "500,000" in text


def test_demo_writes_json_without_fitted_objects(demo):
    res, lines, path = demo
    data = json.loads(path.read_text())
    assert "fitted" not in data
    assert data["residuals"]["with_adaptation"] == pytest.approx(
        res["residuals"]["with_adaptation"])
    assert data["paper"]["residual_with_adaptation"] == PAPER_FIGURES["residual_with_adaptation"]
    assert data["config"]["n_iter"] == TINY_RUN["n_iter"]
    assert any(str(path) in line for line in lines)


# ---------------------------------------------------------------------------
# Real LAMOST spectra through the whole preprocessing chain into Cycle-StarNet
# ---------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_lamost_spectra_through_rv_continuum_and_cyclestarnet():
    lamost = find_shared_data("lamost_spectra")
    synth_dir = find_shared_data("synthetic_spectra")
    if lamost is None or synth_dir is None:
        pytest.skip("shared LAMOST spectra or BT-Settl templates (../shared/data) not available")
    from astropy.table import Table

    from skstellar.io import read_lamost_spectra
    from skstellar.preprocessing.continuum import ContinuumNormalizer
    from skstellar.preprocessing.velocity import RadialVelocityCorrector, air_to_vacuum

    files = sorted((lamost / "dr6_M31_011N40_B1").glob("*.fits*"))[:2] + sorted(
        (lamost / "dr1_B6212_sp06").glob("*.fits"))[:4]
    batch = read_lamost_spectra(files)
    # BT-Settl M0V template: air wavelengths -> vacuum (LAMOST's convention)
    tab = Table.read(synth_dir / "bt_settl_pfs_etc" / "star_m0v.fits", hdu=1)
    tw = air_to_vacuum(np.asarray(tab["wavelength"], dtype=float))
    tf = np.asarray(tab["flux"], dtype=float)
    rest = RadialVelocityCorrector(template=(tw, tf), template_resolution=1800.0
                                   ).fit_transform(batch)
    assert rest.meta["rv_ok"].all()
    obs = ContinuumNormalizer(mask="paper", flag_windows=True).fit_transform(rest)
    grid = mdwarf_wavelength_grid()
    np.testing.assert_array_equal(obs.wavelength, grid)
    n = len(files)

    # synthetic domain on the same grid; the real spectra are the observed domain
    synth, _ = make_mdwarf_spectra(32, 1, mask_telluric=True, random_state=0)
    csn = CycleStarNet(n_iter=8, random_state=0, **TINY_ADAPTER).fit(obs, synthetic=synth)
    np.testing.assert_allclose(csn.wavelength_, grid)
    to_synth = csn.transform(obs)
    assert to_synth.flux.shape == (n, grid.size)
    assert np.isfinite(to_synth.flux).all()
    split = csn.encode_split(obs)
    assert split.shape == (n, *csn.split_shape_) and np.isfinite(split).all()
    back = csn.inverse_transform(to_synth, split=split)
    assert back.flux.shape == (n, grid.size) and np.isfinite(back.flux).all()
    # continuum-normalised in, continuum-normalised out: values of order unity
    assert np.all(np.abs(np.median(back.flux, axis=1) - 1.0) < 0.5)
    # a spectrum off the fitted grid is refused with a pointer to the resampler
    with pytest.raises(ValueError, match="SpectrumResampler"):
        csn.transform(obs.flux[:, :-1])
