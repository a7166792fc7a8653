"""Tests of skstellar.cyclestarnet.networks and the CycleStarNet domain adapter.

The toy domains: "synthetic" spectra are a continuum with six Gaussian lines
and a band whose depths follow one hidden label ``t``; "observed" spectra of
the same label have every feature 25 % deeper, an extra absorption line of
random (hidden) strength at x = 0.7 that the synthetic model lacks, a random
continuum tilt, and white noise of 0.01 (the error). The synthetic and
observed training sets are unpaired (independent labels); test spectra are
paired, so the adaptation can be scored against the synthetic truth.
"""

import copy
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import (
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
)

from skstellar.cyclestarnet.adapter import CycleStarNet, _noise_der_snr
from skstellar.cyclestarnet.networks import (
    CycleStarNetGenerator,
    PairDiscriminator,
    closing_length,
    decoded_length,
    encoded_length,
)
from skstellar.spectrum import SpectrumBatch

NOISE = 0.01
#: A tiny network for ~200-pixel toy spectra (strides 2, 2, 2: 8-fold compression).
TINY = dict(domain_channels=(8,), shared_channels=(16, 16), kernel_size=4, strides=(2, 2, 2),
            latent_channels=8, split_channels=2, split_width=8, lr=1e-3, lr_decay_every=None,
            log_every=10, random_state=0)


def _synth_flux(t, x):
    centers = np.array([0.12, 0.3, 0.45, 0.62, 0.8, 0.9])
    depth = np.where(np.arange(6) % 2 == 0, 0.15 + 0.45 * t[:, None], 0.6 - 0.45 * t[:, None])
    lines = depth[:, :, None] * np.exp(
        -0.5 * ((x[None, None, :] - centers[None, :, None]) / 0.012) ** 2)
    band = 0.15 * t[:, None] * (x[None, :] > 0.5) * (1 - np.exp(-(x[None, :] - 0.5) / 0.05))
    return 1.0 - lines.sum(1) - band


def _observe(t, x, rng):
    base = _synth_flux(t, x)
    gap_line = rng.uniform(0.1, 0.4, len(t))[:, None] * np.exp(-0.5 * ((x - 0.7) / 0.015) ** 2)
    tilt = 1 + rng.uniform(-0.05, 0.05, len(t))[:, None] * (x - 0.5)
    clean = (1 - 1.25 * (1 - base)) * tilt - gap_line
    return clean + NOISE * rng.standard_normal(clean.shape), base


def make_toy(n_synth=256, n_obs=256, n_test=64, p=201, seed=0):
    """Unpaired training domains and paired test spectra on a grid of ``p`` pixels."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, p)
    S = _synth_flux(rng.uniform(0, 1, n_synth), x)
    O, _ = _observe(rng.uniform(0, 1, n_obs), x, rng)
    t_test = rng.uniform(0, 1, n_test)
    O_test, S_test = _observe(t_test, x, rng)
    return dict(x=x, wave=6000.0 + 2.0 * np.arange(p), S=S, O=O, O_test=O_test, S_test=S_test,
                t_test=t_test)


def _rms(a, b, cols=slice(None)):
    """Root mean square residual in units of the flux error."""
    return float(np.sqrt(np.mean(((a - b)[:, cols] / NOISE) ** 2)))


@pytest.fixture(scope="module")
def toy():
    return make_toy()


@pytest.fixture(scope="module")
def fitted(toy):
    csn = CycleStarNet(synthetic=toy["S"], n_iter=150, **TINY)
    return csn.fit(toy["O"], obs_err=np.full_like(toy["O"], NOISE))


def _tensors_equal(m1, m2):
    s1, s2 = m1.state_dict(), m2.state_dict()
    return s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)


# ---------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------
def test_closing_length_matches_reference_and_formula():
    # The reference APOGEE network closes on 256 n + 1023 pixels (7167 -> 24 positions).
    assert closing_length(7167, 7, (4, 4, 4, 2, 2)) == (7167, 24)
    assert closing_length(7000, 7, (4, 4, 4, 2, 2)) == (7167, 24)
    assert closing_length(7168, 7, (4, 4, 4, 2, 2)) == (7423, 25)
    for p in (1, 97, 201, 2901):
        L, m = closing_length(p, 5, (2, 4, 2))
        assert L >= p and m >= 2
        assert encoded_length(L, 5, (2, 4, 2)) == m
        assert decoded_length(m, 5, (2, 4, 2)) == L
        if m > 2:  # the next shorter closing length would not hold the spectrum
            assert decoded_length(m - 1, 5, (2, 4, 2)) < p


@pytest.mark.parametrize("p", [97, 202])
def test_generator_and_discriminator_shapes(p):
    torch.manual_seed(0)
    gen = CycleStarNetGenerator((4, 6), (8,), kernel_size=5, strides=(2, 2, 2), latent_channels=3,
                                split_channels=2, split_width=4)
    L, m = closing_length(p, 5, (2, 2, 2))
    x = torch.randn(3, L)
    out = gen.cycle(x, x + 0.1)
    for key in ("ss", "oo", "os", "so", "sos", "oso"):
        assert out[key].shape == (3, L)
    assert out["z_s"].shape == out["z_o"].shape == (3, 3, m)
    assert out["z_sp"].shape == (3, 2, m)
    disc = PairDiscriminator((4, 6, 8), 5, (2, 2, 2), latent_channels=5)
    z = torch.cat([out["z_o"], out["z_sp"]], dim=1)
    assert disc(out["oo"], z).shape == (3, m)


def test_tied_init_makes_obs_to_synth_the_synthetic_autoencoder():
    torch.manual_seed(1)
    gen = CycleStarNetGenerator((4,), (8,), kernel_size=4, strides=(2, 2), latent_channels=3,
                                split_channels=2, split_width=4)
    L, _ = closing_length(60, 4, (2, 2))
    x = torch.randn(2, L)
    with torch.no_grad():
        assert not torch.allclose(gen.obs_to_synth(x), gen.decode_synth(gen.encode_synth(x)))
        gen.tie_domains_()
        auto = gen.decode_synth(gen.encode_synth(x))
        assert torch.allclose(gen.obs_to_synth(x), auto)
        z_sp = torch.randn(2, 2, gen.encode_split(x).shape[-1])
        assert torch.allclose(gen.synth_to_obs(x, z_sp), auto)  # split weights start at 0


def test_generator_rejects_bad_geometry():
    with pytest.raises(ValueError, match="strides has 2 entries"):
        CycleStarNetGenerator((4,), (8, 8), kernel_size=4, strides=(2, 2))
    with pytest.raises(ValueError, match="stride must be <= kernel_size"):
        CycleStarNetGenerator((4,), (8,), kernel_size=3, strides=(4, 2))


# ---------------------------------------------------------------------------
# The core claim: adaptation
# ---------------------------------------------------------------------------
def test_transform_brings_observed_spectra_closer_to_their_synthetic_truth(fitted, toy):
    O, S, gap = toy["O_test"], toy["S_test"], np.abs(toy["x"] - 0.7) < 0.04
    T = fitted.transform(O)
    assert T.shape == O.shape and T.dtype == np.float64
    raw, adapted = _rms(O, S), _rms(T, S)
    # Raw residuals ~6.3 sigma; noise alone is 1 sigma, so denoising cannot explain a drop
    # below ~6.2: the gap (deeper lines, extra line, tilt) must be partly removed.
    assert adapted < 0.7 * raw, (raw, adapted)
    assert _rms(T, S, gap) < 0.85 * _rms(O, S, gap)  # the extra line is weakened


def test_inverse_transform_models_observed_spectra(fitted, toy):
    O, S = toy["O_test"], toy["S_test"]
    split = fitted.encode_split(O)
    assert split.shape == (len(O), *fitted.split_shape_)
    model = fitted.inverse_transform(S, split=split)
    assert model.shape == S.shape
    assert _rms(model, O) < 0.85 * _rms(S, O)


def test_history_records_the_losses(fitted):
    h = fitted.history_
    assert len(h) == 15 and h[-1]["iteration"] == 150 and fitted.n_iter_ == 150
    keys = {"iteration", "lr", "loss", "rec_synth", "cyc_synth", "rec_obs", "cyc_obs",
            "adv_synth", "adv_obs", "disc_synth", "disc_obs"}
    assert set(h[0]) == keys
    assert all(np.isfinite(r[k]) for r in h for k in keys)
    for k in ("rec_synth", "rec_obs", "cyc_synth", "cyc_obs"):
        assert h[-1][k] < 0.1 * h[0][k], k
    # discriminator losses start near 2 ln 2 (chance) and fall as they learn
    assert abs(h[0]["disc_synth"] - 2 * np.log(2)) < 0.2
    assert h[-1]["disc_obs"] < h[0]["disc_obs"]
    total = (3.0 * (h[-1]["rec_synth"] + h[-1]["cyc_synth"])
             + 9.0 * (h[-1]["rec_obs"] + h[-1]["cyc_obs"]) + h[-1]["adv_synth"] + h[-1]["adv_obs"])
    assert h[-1]["loss"] == pytest.approx(total, rel=1e-5)  # Eq. 7 with the default lambdas


def test_fitted_attributes(fitted, toy):
    assert fitted.n_features_in_ == 201
    assert fitted.padded_length_ == closing_length(201, 4, (2, 2, 2))[0]
    assert sum(fitted.padding_) == fitted.padded_length_ - 201
    assert fitted.latent_shape_ == (8, closing_length(201, 4, (2, 2, 2))[1])
    assert fitted.wavelength_ is None
    assert not any(p.requires_grad for p in fitted.generator_.parameters())
    assert fitted.split_bank_.shape == (256, *fitted.split_shape_)
    assert_allclose(fitted.split_mean_, fitted.encode_split(toy["O"]).mean(0), atol=1e-5)
    assert fitted.n_pixels_observed == 201


# ---------------------------------------------------------------------------
# Mappings, split policies, torch entry points
# ---------------------------------------------------------------------------
def test_split_policies(fitted, toy):
    S = toy["S_test"][:5]
    outs = {p: fitted.inverse_transform(S, split=p) for p in ("mean", "zeros", "sample")}
    assert_array_equal(fitted.inverse_transform(S), outs["mean"])  # the default policy
    assert not np.allclose(outs["mean"], outs["zeros"])
    assert not np.allclose(outs["mean"], outs["sample"])
    assert_array_equal(fitted.inverse_transform(S, split="sample"), outs["sample"])  # reproducible
    one = fitted.split_mean_
    assert_allclose(fitted.inverse_transform(S, split=one), outs["mean"], atol=1e-6)
    with pytest.raises(ValueError, match="split has shape"):
        fitted.inverse_transform(S, split=np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="split must be one of"):
        fitted.inverse_transform(S, split="median")


def test_encode_shared_aligns_domains(fitted, toy):
    z_obs = fitted.encode_shared(toy["O_test"])
    z_syn = fitted.encode_shared(toy["S_test"], domain="synthetic")
    assert z_obs.shape == z_syn.shape == (64, *fitted.latent_shape_)
    # paired spectra are closer in the shared latent than random pairs
    d_pair = np.mean(np.sum((z_obs - z_syn) ** 2, axis=(1, 2)))
    d_rand = np.mean(np.sum((z_obs - np.roll(z_syn, 7, axis=0)) ** 2, axis=(1, 2)))
    assert d_pair < 0.7 * d_rand
    with pytest.raises(ValueError, match="domain must be"):
        fitted.encode_shared(toy["O_test"], domain="obs")


def test_torch_entry_points_match_numpy_and_are_differentiable(fitted, toy):
    O, S = toy["O_test"][:6], toy["S_test"][:6]
    x = torch.tensor(O, dtype=torch.float64, requires_grad=True)
    y = fitted.to_synthetic_torch(x)
    assert y.dtype == torch.float64 and y.shape == x.shape
    assert_allclose(y.detach().numpy(), fitted.transform(O), atol=1e-6)
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in fitted.generator_.parameters())

    s = torch.tensor(S, dtype=torch.float32, requires_grad=True)
    o = fitted.to_observed_torch(s, torch.tensor(O))  # the label fitter's call
    assert o.dtype == torch.float32
    expected = fitted.inverse_transform(S, split=fitted.encode_split(O))
    assert_allclose(o.detach().numpy(), expected, atol=1e-5)
    o.square().sum().backward()
    assert s.grad.abs().sum() > 0
    assert_allclose(fitted.to_observed_torch(torch.tensor(S)).numpy(),
                    fitted.inverse_transform(S), atol=1e-5)
    z = torch.tensor(fitted.encode_split(O), requires_grad=True)
    fitted.to_observed_torch(torch.tensor(S), split=z).sum().backward()
    assert z.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at most one of"):
        fitted.to_observed_torch(torch.tensor(S), torch.tensor(O), split="mean")
    # the label fitter's fast path: split latents decoded once, then reused
    feats = fitted.split_features_torch(torch.tensor(O))
    s2 = torch.tensor(S, dtype=torch.float32, requires_grad=True)
    o2 = fitted.to_observed_torch(s2, split_features=feats)
    assert_allclose(o2.detach().numpy(), expected, atol=1e-5)
    o2.square().sum().backward()
    assert_allclose(s2.grad.numpy(), s.grad.numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="split_features has 5 rows"):
        fitted.to_observed_torch(torch.tensor(S), split_features=feats[:5])
    with pytest.raises(ValueError, match=r"shape \(n_spectra, 201\)"):
        fitted.to_synthetic_torch(torch.ones(2, 200))


def test_spectrum_batch_in_and_out(fitted, toy):
    O = toy["O_test"][:4]
    ivar = np.full(O.shape, NOISE ** -2)
    mask = np.zeros(O.shape, bool)
    mask[1, 50:60] = True
    batch = SpectrumBatch(toy["wave"], O, ivar=ivar, mask=mask)
    out = fitted.transform(batch)
    assert isinstance(out, SpectrumBatch)
    assert_array_equal(out.wavelength, batch.wavelength)
    assert_array_equal(out.mask, mask)
    assert_array_equal(out.ivar, ivar)
    # masked pixels enter the network as fill_value: same as giving them 1.0 in an array
    O_filled = O.copy()
    O_filled[1, 50:60] = 1.0
    assert_allclose(out.flux, fitted.transform(O_filled), atol=1e-12)
    inv = fitted.inverse_transform(batch)
    assert isinstance(inv, SpectrumBatch) and inv.flux.shape == O.shape


def test_set_output_pandas(fitted, toy):
    est = copy.deepcopy(fitted)
    df = est.set_output(transform="pandas").transform(toy["O_test"][:3])
    assert list(df.columns[:2]) == ["x0", "x1"] and df.shape == (3, 201)


# ---------------------------------------------------------------------------
# Input policies
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("p", [97, 150])
def test_any_pixel_count_round_trips(p):
    d = make_toy(n_synth=16, n_obs=16, n_test=3, p=p)
    csn = CycleStarNet(synthetic=d["S"], n_iter=2, **TINY).fit(d["O"])
    L, _ = closing_length(p, 4, (2, 2, 2))
    assert csn.padded_length_ == L
    assert csn.transform(d["O_test"]).shape == (3, p)
    assert csn.inverse_transform(d["S_test"]).shape == (3, p)
    assert csn.encode_split(d["O_test"]).shape == (3, 2, closing_length(p, 4, (2, 2, 2))[1])


def test_without_split_latent():
    d = make_toy(n_synth=16, n_obs=16, n_test=3, p=101)
    csn = CycleStarNet(synthetic=d["S"], n_iter=2, **{**TINY, "split_channels": 0}).fit(d["O"])
    assert csn.generator_.enc_split is None
    out = csn.inverse_transform(d["S_test"])
    assert_array_equal(out, csn.inverse_transform(d["S_test"], split="zeros"))
    assert out.shape == (3, 101) and csn.transform(d["O_test"]).shape == (3, 101)
    with pytest.raises(ValueError, match="no split latent"):
        csn.encode_split(d["O_test"])


def test_masked_pixels_carry_no_weight():
    """Whatever the flux in masked / NaN / zero-error pixels, the fit is identical."""
    d = make_toy(n_synth=32, n_obs=32, p=101)
    fits = []
    for junk in (1e3, -7.0):
        O, err = d["O"].copy(), np.full(d["O"].shape, NOISE)
        O[3, 10:20] = junk                 # zero errors there
        err[3, 10:20] = 0.0
        O[5, 40:45] = np.nan               # NaN flux
        err[7, 60:65] = np.nan             # NaN errors
        O[7, 60:65] = junk
        S = d["S"].copy()
        S[2, 30:40] = np.nan
        csn = CycleStarNet(synthetic=S, n_iter=5, **TINY).fit(O, obs_err=err)
        fits.append(csn)
    assert all(np.isfinite(r["loss"]) for r in fits[0].history_)
    assert fits[0].history_ == fits[1].history_
    assert _tensors_equal(fits[0].generator_, fits[1].generator_)


def test_mask_in_spectrum_batch_equals_nan_errors():
    d = make_toy(n_synth=32, n_obs=32, p=101)
    err = np.full(d["O"].shape, NOISE)
    err[4, 20:30] = np.nan
    a = CycleStarNet(synthetic=d["S"], n_iter=4, **TINY).fit(d["O"], obs_err=err)
    mask = np.zeros(d["O"].shape, bool)
    mask[4, 20:30] = True
    batch = SpectrumBatch(d["wave"], d["O"], ivar=np.full(d["O"].shape, NOISE ** -2), mask=mask)
    b = CycleStarNet(synthetic=d["S"], n_iter=4, **TINY).fit(batch)

    def table(h):
        return np.array([[r[k] for k in sorted(r)] for r in h])

    assert_allclose(table(a.history_), table(b.history_), rtol=1e-5)
    assert_allclose(b.wavelength_, d["wave"])


def test_error_floor_and_default_errors():
    rng = np.random.default_rng(3)
    flux = 1.0 + 0.02 * rng.standard_normal((50, 400))
    noise = _noise_der_snr(flux, np.ones(flux.shape, bool))
    assert_allclose(np.median(noise), 0.02, rtol=0.1)
    d = make_toy(n_synth=16, n_obs=16, p=101)
    # observed errors far below the floor are raised to it: same fit as err = floor
    a = CycleStarNet(synthetic=d["S"], n_iter=3, error_floor=0.02, **TINY)
    a.fit(d["O"], obs_err=np.full(d["O"].shape, 1e-4))
    b = CycleStarNet(synthetic=d["S"], n_iter=3, error_floor=0.02, **TINY)
    b.fit(d["O"], obs_err=np.full(d["O"].shape, 0.02))
    assert a.history_ == b.history_
    # synthetic spectra without errors get synthetic_error
    c = CycleStarNet(synthetic=d["S"], n_iter=3, **TINY).fit(d["O"])
    e = CycleStarNet(synthetic=d["S"], n_iter=3, **TINY)
    e.fit(d["O"], synth_err=np.full(d["S"].shape, 0.01))
    assert c.history_ == e.history_


def test_all_masked_spectrum_is_rejected_at_fit_and_nan_at_transform(fitted, toy):
    O = toy["O"][:20].copy()
    O[13] = np.nan
    with pytest.raises(ValueError, match=r"observed spectra \(X\).*row\(s\) 13"):
        CycleStarNet(synthetic=toy["S"], n_iter=1, **TINY).fit(O)
    err = np.full(toy["S"][:20].shape, 0.01)
    err[4] = 0.0
    with pytest.raises(ValueError, match="synthetic spectra.*row\\(s\\) 4"):
        CycleStarNet(synthetic=toy["S"][:20], n_iter=1, **TINY).fit(toy["O"], synth_err=err)
    X = toy["O_test"][:3].copy()
    X[1] = np.nan
    with pytest.warns(UserWarning, match="rows 1"):
        out = fitted.transform(X)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()


def test_pixel_count_and_grid_mismatches(fitted, toy):
    with pytest.raises(ValueError, match="synthetic spectra have 150 pixels and the observed "
                                         "spectra 201"):
        CycleStarNet(synthetic=toy["S"][:, :150], n_iter=1, **TINY).fit(toy["O"])
    with pytest.raises(ValueError, match="X has 200 pixels but this CycleStarNet was fitted on "
                                         "201 pixels.*SpectrumResampler"):
        fitted.transform(toy["O_test"][:, :200])
    with pytest.raises(ValueError, match="200 pixels.*201"):
        fitted.inverse_transform(toy["S_test"][:, 1:])

    wave = toy["wave"]
    d = make_toy(n_synth=16, n_obs=16, p=201)
    csn = CycleStarNet(n_iter=1, **TINY).fit(SpectrumBatch(wave, d["O"]),
                                             synthetic=SpectrumBatch(wave, d["S"]))
    shifted = SpectrumBatch(wave + 1.0, d["O_test"])
    with pytest.raises(ValueError, match="6001-6401 A, 201 pixels.*differs from the fitted grid "
                                         "6000-6400 A"):
        csn.transform(shifted)
    with pytest.raises(ValueError, match="synthetic grid"):
        CycleStarNet(n_iter=1, **TINY).fit(SpectrumBatch(wave, d["O"]),
                                           synthetic=SpectrumBatch(wave * 1.01, d["S"]))
    ragged = np.tile(wave, (16, 1))
    ragged[5] += 0.5
    with pytest.raises(ValueError, match="spectrum 5 has a different wavelength grid"):
        CycleStarNet(synthetic=d["S"], n_iter=1, **TINY).fit(SpectrumBatch(ragged, d["O"]))


def test_missing_synthetic_set_and_bad_parameters(toy):
    with pytest.raises(ValueError, match="needs a synthetic training set"):
        CycleStarNet(n_iter=1, **TINY).fit(toy["O"])
    bad = [dict(split_latent="median"), dict(batch_size=0), dict(betas=(0.5, 1.5)),
           dict(lambda_obs=-1.0), dict(lr_gamma=0.0), dict(synthetic_error=0.0)]
    for kw in bad:
        with pytest.raises(ValueError):
            CycleStarNet(synthetic=toy["S"], **{**TINY, "n_iter": 1, **kw}).fit(toy["O"])
    with pytest.raises(ValueError, match="resume=True needs checkpoint_path"):
        CycleStarNet(synthetic=toy["S"], **{**TINY, "n_iter": 1}).fit(toy["O"], resume=True)
    with pytest.raises(ValueError, match="errors of observed spectra"):
        CycleStarNet(synthetic=toy["S"], **{**TINY, "n_iter": 1}).fit(
            toy["O"], obs_err=np.ones((3, 201)))


# ---------------------------------------------------------------------------
# scikit-learn integration, persistence, seeding, checkpoints
# ---------------------------------------------------------------------------
def test_pipeline_with_regressor(toy):
    d = make_toy(n_synth=64, n_obs=96, n_test=40, p=201, seed=4)
    rng = np.random.default_rng(4)
    t_train = rng.uniform(0, 1, 96)
    O_train, _ = _observe(t_train, d["x"], rng)
    pipe = Pipeline([("adapt", CycleStarNet(synthetic=d["S"], n_iter=20, **TINY)),
                     ("reg", Ridge(alpha=1e-3))])
    pipe.fit(O_train, t_train)
    pred = pipe.predict(d["O_test"])
    assert pred.shape == (40,)
    assert np.corrcoef(pred, d["t_test"])[0, 1] > 0.9
    # the synthetic set can instead be routed as a fit parameter
    pipe2 = Pipeline([("adapt", CycleStarNet(n_iter=20, **TINY)), ("reg", Ridge(alpha=1e-3))])
    pipe2.fit(O_train, t_train, adapt__synthetic=d["S"])
    assert_allclose(pipe2.predict(d["O_test"]), pred, atol=1e-8)


def test_clone_and_params(toy):
    est = CycleStarNet(synthetic=toy["S"], n_iter=7, strides=(2, 2, 2), random_state=3)
    c = clone(est)
    assert c.get_params()["n_iter"] == 7 and c.get_params()["strides"] == (2, 2, 2)
    assert_array_equal(c.synthetic, toy["S"])
    assert not hasattr(c, "generator_")
    c.set_params(lambda_adv=0.5, split_latent="zeros")
    assert c.lambda_adv == 0.5 and est.lambda_adv == 1.0
    check_no_attributes_set_in_init("CycleStarNet", CycleStarNet())
    check_parameters_default_constructible("CycleStarNet", CycleStarNet())


def test_joblib_round_trip_in_fresh_process(fitted, toy, tmp_path):
    joblib.dump(fitted, tmp_path / "csn.joblib")
    np.save(tmp_path / "O.npy", toy["O_test"])
    np.save(tmp_path / "S.npy", toy["S_test"])
    code = textwrap.dedent(f"""
        import joblib, numpy as np
        m = joblib.load({str(tmp_path / "csn.joblib")!r})
        O, S = np.load({str(tmp_path / "O.npy")!r}), np.load({str(tmp_path / "S.npy")!r})
        np.save({str(tmp_path / "t.npy")!r}, m.transform(O))
        np.save({str(tmp_path / "i.npy")!r}, m.inverse_transform(S, split="sample"))
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert_array_equal(np.load(tmp_path / "t.npy"), fitted.transform(toy["O_test"]))
    assert_array_equal(np.load(tmp_path / "i.npy"),
                       fitted.inverse_transform(toy["S_test"], split="sample"))


def test_seeded_reproducibility_and_global_rng_untouched():
    d = make_toy(n_synth=32, n_obs=32, p=101)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = CycleStarNet(synthetic=d["S"], n_iter=6, **TINY).fit(d["O"])
    assert torch.equal(torch.get_rng_state(), before)
    b = CycleStarNet(synthetic=d["S"], n_iter=6, **TINY).fit(d["O"])
    c = CycleStarNet(synthetic=d["S"], n_iter=6, **{**TINY, "random_state": 1}).fit(d["O"])
    assert a.history_ == b.history_
    assert_array_equal(a.transform(d["O_test"]), b.transform(d["O_test"]))
    assert a.history_ != c.history_


def test_checkpoint_resume_equals_uninterrupted_training(tmp_path):
    d = make_toy(n_synth=24, n_obs=40, p=101)
    path = tmp_path / "ck" / "csn.pt"
    kw = {**TINY, "log_every": 4, "lr_decay_every": 7}  # blocks and LR steps straddle the cut
    first = CycleStarNet(synthetic=d["S"], n_iter=10, checkpoint_path=path, checkpoint_every=5,
                         **kw)
    first.fit(d["O"])
    assert path.exists()
    resumed = CycleStarNet(synthetic=d["S"], n_iter=20, checkpoint_path=path, **kw)
    resumed.fit(d["O"], resume=True)
    straight = CycleStarNet(synthetic=d["S"], n_iter=20, **kw).fit(d["O"])
    assert resumed.n_iter_ == straight.n_iter_ == 20
    assert resumed.history_ == straight.history_
    assert _tensors_equal(resumed.generator_, straight.generator_)
    assert _tensors_equal(resumed.discriminator_obs_, straight.discriminator_obs_)
    assert_array_equal(resumed.transform(d["O_test"]), straight.transform(d["O_test"]))
    # a checkpoint of another architecture is refused, naming the difference
    other = CycleStarNet(synthetic=d["S"], n_iter=21, checkpoint_path=path,
                         **{**kw, "latent_channels": 5})
    with pytest.raises(ValueError, match="latent_channels"):
        other.fit(d["O"], resume=True)
    # resume=True without a file yet starts afresh
    fresh = CycleStarNet(synthetic=d["S"], n_iter=3, checkpoint_path=tmp_path / "new.pt", **kw)
    fresh.fit(d["O"], resume=True)
    assert fresh.n_iter_ == 3 and (tmp_path / "new.pt").exists()


def test_verbose_shows_progress(toy, capsys):
    d = make_toy(n_synth=16, n_obs=16, p=101)
    CycleStarNet(synthetic=d["S"], n_iter=3, verbose=1, **TINY).fit(d["O"])
    err = capsys.readouterr().err
    assert "CycleStarNet" in err and "3/3" in err
