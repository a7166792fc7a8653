"""Tests of skstellar.cyclestarnet.payne (The Payne spectral emulator)."""

import copy
import warnings

import joblib
import numpy as np
import pytest
import torch

from skstellar.cyclestarnet.payne import PayneEmulator, PayneNetwork, PerPixelNetwork
from skstellar.io import find_shared_data

WAVE = np.linspace(7000.0, 7100.0, 50)


def smooth_spectra(labels):
    """Two absorption lines whose depth and width follow two labels."""
    teff, mh = labels[:, :1], labels[:, 1:2]
    depth = 0.2 + 0.3 * (mh + 1.0) / 1.5
    width = 2.0 + (teff - 3000.0) / 250.0
    line2 = 0.1 * (teff - 3500.0) / 500.0 * np.exp(-0.5 * ((WAVE - 7020.0) / 3.0) ** 2)
    return 1.0 - depth * np.exp(-0.5 * ((WAVE - 7050.0) / width) ** 2) - line2


def make_training_set(n=320, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.column_stack([rng.uniform(3000, 4000, n), rng.uniform(-1.0, 0.5, n)])
    return labels, smooth_spectra(labels)


@pytest.fixture(scope="module")
def trained():
    labels, spectra = make_training_set()
    emu = PayneEmulator(hidden=(64, 64), max_epochs=40, batch_size=32, lr=3e-3,
                        label_names=["teff", "mh"], wavelength=WAVE, random_state=0)
    return emu.fit(labels, spectra), labels, spectra


def leaky(a):
    return np.where(a > 0, a, 0.01 * a)


def payne_forward_numpy(arrays, labels):
    """The README's forward pass of the modern format, written independently."""
    s = (labels - arrays["x_min"]) / (arrays["x_max"] - arrays["x_min"]) - 0.5
    h1 = leaky(s @ arrays["w_array_0"].T + arrays["b_array_0"])
    h2 = leaky(h1 @ arrays["w_array_1"].T + arrays["b_array_1"])
    return h2 @ arrays["w_array_2"].T + arrays["b_array_2"]


def random_payne_arrays(n_labels=25, hidden=300, n_pixels=120, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "w_array_0": rng.normal(0, 1, (hidden, n_labels)).astype(np.float32),
        "b_array_0": rng.normal(0, 0.1, hidden).astype(np.float32),
        "w_array_1": rng.normal(0, 0.05, (hidden, hidden)).astype(np.float32),
        "b_array_1": rng.normal(0, 0.1, hidden).astype(np.float32),
        "w_array_2": rng.normal(0, 0.05, (n_pixels, hidden)).astype(np.float32),
        "b_array_2": (1 + rng.normal(0, 0.01, n_pixels)).astype(np.float32),
        "x_min": rng.uniform(-1, 0, n_labels),
        "x_max": rng.uniform(1, 2, n_labels),
    }


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------
def test_fit_learns_smooth_spectra(trained):
    emu, labels, spectra = trained
    valid = np.asarray(emu.history_[:, "valid_loss"])
    assert valid.min() < 0.1 * valid[0]
    # unseen labels: error far below the spectra's own variation
    test_labels, test_spectra = make_training_set(n=100, seed=1)
    mse = np.mean((emu.predict(test_labels) - test_spectra) ** 2)
    assert mse < 0.1 * test_spectra.var(0).mean()


def test_fitted_attributes(trained):
    emu, labels, spectra = trained
    np.testing.assert_allclose(emu.x_min_, labels.min(0), rtol=1e-6)
    np.testing.assert_allclose(emu.x_max_, labels.max(0), rtol=1e-6)
    assert emu.label_names_ == ["teff", "mh"]
    assert emu.n_pixels_ == 50 and emu.n_labels_ == 2
    assert emu.architecture_ == "mlp"
    np.testing.assert_array_equal(emu.wavelength_, WAVE)
    # the network is the default Payne shape on top of the scaling
    linears = [m for m in emu.module_.body if isinstance(m, torch.nn.Linear)]
    assert [lin.out_features for lin in linears] == [64, 64, 50]
    acts = [m for m in emu.module_.body if isinstance(m, torch.nn.LeakyReLU)]
    assert len(acts) == 2 and all(a.negative_slope == 0.01 for a in acts)
    out = emu.predict(labels[:3])
    assert out.shape == (3, 50) and out.dtype == np.float64


def test_scaling_is_payne_convention(trained):
    emu = trained[0]
    module = emu.module_
    ends = torch.tensor(np.vstack([emu.x_min_, emu.x_max_]), dtype=torch.float32)
    np.testing.assert_allclose(module.scale(ends).numpy(), [[-0.5, -0.5], [0.5, 0.5]], atol=1e-6)


def test_default_hyperparameters_are_the_papers():
    emu = PayneEmulator()
    assert emu.hidden == (300, 300)
    assert emu.activation == "leaky_relu:0.01"
    assert emu.validation_fraction == 0.2
    assert emu.loss == "l1"


def test_predict_torch_matches_predict_and_is_differentiable(trained):
    emu, labels, _ = trained
    x = torch.tensor(labels[:4], dtype=torch.float32, requires_grad=True)
    out = emu.predict_torch(x)
    np.testing.assert_allclose(out.detach().numpy(), emu.predict(labels[:4]), atol=1e-6)
    (g,) = torch.autograd.grad(out[:, 25].sum(), x)
    # finite-difference check of d flux[25] / d teff
    h = 1.0
    up, down = labels[:4].copy(), labels[:4].copy()
    up[:, 0] += h
    down[:, 0] -= h
    fd = (emu.predict(up)[:, 25] - emu.predict(down)[:, 25]) / (2 * h)
    np.testing.assert_allclose(g[:, 0].numpy(), fd, rtol=0.05, atol=1e-6)
    scaled = emu.module_.scale(x.detach())
    np.testing.assert_allclose(emu.predict_torch(scaled, scaled=True).detach().numpy(),
                               out.detach().numpy(), atol=1e-6)


def test_export_torch_is_frozen_copy(trained):
    emu, labels, _ = trained
    m64 = emu.export_torch(dtype=torch.float64)
    assert all(not p.requires_grad for p in m64.parameters())
    assert next(m64.parameters()).dtype == torch.float64
    out = m64(torch.tensor(labels[:3], dtype=torch.float64))
    np.testing.assert_allclose(out.numpy(), emu.predict(labels[:3]), atol=1e-5)
    # the estimator's own module is untouched
    assert next(emu.module_.parameters()).dtype == torch.float32


def test_out_of_range_policies(trained):
    emu = trained[0]
    outside = np.array([[2500.0, 0.0]])
    with pytest.warns(UserWarning, match="teff = 2500"):
        emu.predict(outside)
    strict = copy.deepcopy(emu).set_params(out_of_range="raise")
    with pytest.raises(ValueError, match="row 0: teff = 2500"):
        strict.predict(outside)
    quiet = copy.deepcopy(emu).set_params(out_of_range="allow")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.predict(outside)
    inside = np.array([[3500.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emu.predict(inside)
    assert emu.label_range_violations(np.array([[2500.0, 0.0], [3500.0, 0.9]])).tolist() == [
        [True, False], [False, True]]


def test_constant_label_raises():
    labels, spectra = make_training_set(n=50)
    labels[:, 1] = 0.3
    with pytest.raises(ValueError, match="'label_1' .*constant"):
        PayneEmulator(hidden=(8,), max_epochs=1).fit(labels, spectra)


def test_bad_wavelength_and_options_raise():
    labels, spectra = make_training_set(n=50)
    with pytest.raises(ValueError, match="wavelength has 10 entries"):
        PayneEmulator(hidden=(8,), max_epochs=1, wavelength=np.arange(10.0)).fit(labels, spectra)
    with pytest.raises(ValueError, match="loss"):
        PayneEmulator(loss="huber").fit(labels, spectra)
    with pytest.raises(ValueError, match="out_of_range"):
        PayneEmulator(out_of_range="ignore").fit(labels, spectra)
    with pytest.raises(ValueError, match="NaN|nan|infinity"):
        bad = spectra.copy()
        bad[3, 4] = np.nan
        PayneEmulator(hidden=(8,), max_epochs=1).fit(labels, bad)


def test_seeded_fit_is_reproducible():
    labels, spectra = make_training_set(n=80)
    kw = dict(hidden=(16,), max_epochs=3, batch_size=16, random_state=3)
    a = PayneEmulator(**kw).fit(labels, spectra).predict(labels[:5])
    b = PayneEmulator(**kw).fit(labels, spectra).predict(labels[:5])
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------
def test_npz_round_trip_is_exact(trained, tmp_path):
    emu, labels, _ = trained
    path = tmp_path / "emu.npz"
    emu.to_npz(path)
    with np.load(path) as data:
        assert data["w_array_0"].shape == (64, 2)  # (out, in), The Payne's layout
        assert data["w_array_2"].shape == (50, 64)
        np.testing.assert_array_equal(data["x_min"], emu.x_min_)
    back = PayneEmulator.from_npz(path)
    np.testing.assert_array_equal(back.predict(labels), emu.predict(labels))
    assert back.label_names_ == emu.label_names_
    np.testing.assert_array_equal(back.wavelength_, WAVE)
    assert back.hidden == (64, 64)


def test_joblib_round_trip(trained, tmp_path):
    emu, labels, _ = trained
    path = tmp_path / "emu.joblib"
    joblib.dump(emu, path)
    back = joblib.load(path)
    np.testing.assert_array_equal(back.predict(labels[:10]), emu.predict(labels[:10]))


def test_from_npz_modern_format_matches_readme_forward_pass(tmp_path):
    arrays = random_payne_arrays()
    path = tmp_path / "payne25.npz"
    np.savez(path, **arrays)
    emu = PayneEmulator.from_npz(path)
    assert emu.architecture_ == "mlp" and emu.hidden == (300, 300)
    assert emu.n_labels_ == 25 and emu.n_pixels_ == 120
    rng = np.random.default_rng(5)
    labels = rng.uniform(arrays["x_min"], arrays["x_max"], size=(7, 25))
    np.testing.assert_allclose(emu.predict(labels), payne_forward_numpy(arrays, labels),
                               rtol=1e-4, atol=1e-5)
    # and it writes the same arrays back
    emu.to_npz(tmp_path / "again.npz")
    with np.load(tmp_path / "again.npz") as again:
        for key in arrays:
            np.testing.assert_array_equal(again[key], arrays[key])


def test_from_npz_rejects_malformed_files(tmp_path):
    arrays = random_payne_arrays(n_labels=3, hidden=8, n_pixels=5)
    missing = {k: v for k, v in arrays.items() if k != "x_max"}
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(ValueError, match="'x_max' is missing"):
        PayneEmulator.from_npz(tmp_path / "missing.npz")
    transposed = dict(arrays, w_array_1=arrays["w_array_1"][:, :7])
    np.savez(tmp_path / "shape.npz", **transposed)
    with pytest.raises(ValueError, match="w_array_1 has shape"):
        PayneEmulator.from_npz(tmp_path / "shape.npz")
    legacy = {
        "w_array_0": np.zeros((4, 5, 3), np.float32), "b_array_0": np.zeros((4, 5), np.float32),
        "w_array_1": np.zeros((4, 6), np.float32), "b_array_1": np.zeros(4, np.float32),
        "x_min": np.zeros(3), "x_max": np.ones(3),
    }
    np.savez(tmp_path / "legacy.npz", **legacy)
    with pytest.raises(ValueError, match="w_array_1 of shape"):
        PayneEmulator.from_npz(tmp_path / "legacy.npz")


def test_to_npz_refuses_other_activations(tmp_path):
    labels, spectra = make_training_set(n=40)
    emu = PayneEmulator(hidden=(8,), activation="tanh", max_epochs=1, random_state=0)
    emu.fit(labels, spectra)
    with pytest.raises(ValueError, match="LeakyReLU\\(0.01\\)"):
        emu.to_npz(tmp_path / "x.npz")


def test_per_pixel_network_matches_loop_free_numpy():
    rng = np.random.default_rng(2)
    w0, b0 = rng.normal(size=(6, 5, 3)), rng.normal(size=(6, 5))
    w1, b1 = rng.normal(size=(6, 5)), rng.normal(size=6)
    net = PerPixelNetwork(w0, b0, w1, b1)
    s = rng.uniform(-0.5, 0.5, size=(4, 3))
    h = 1 / (1 + np.exp(-(np.einsum("phl,bl->bph", w0, s) + b0)))
    expected = np.einsum("bph,ph->bp", h, w1) + b1
    out = net(torch.tensor(s, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert isinstance(PayneNetwork(np.zeros(3), np.ones(3), net), torch.nn.Module)


# --------------------------------------------------------------------------
# Real pretrained network (../shared/data/payne)
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def payne_dir():
    folder = find_shared_data("payne")
    if folder is None:
        pytest.skip("shared data folder 'payne' is not available")
    return folder


def test_legacy_network_reproduces_readme_fluxes(payne_dir):
    wave = np.load(payne_dir / "apogee_wavelength.npz")["wavelength"]
    emu = PayneEmulator.from_npz(payne_dir / "legacy_2018" / "NN_normalized_spectra.npz",
                                 wavelength=wave)
    assert emu.architecture_ == "legacy_2018"
    assert emu.n_pixels_ == 7214 and emu.n_labels_ == 5
    assert emu.label_names_ == ["teff", "logg", "feh", "mgfe", "vmacro"]
    np.testing.assert_allclose(emu.x_min_, [4200.5, 4.000, -0.786, -0.298, -2.79], atol=0.01)
    flux = emu.predict([[5800, 4.44, 0, 0, 5], [5000, 4.6, 0, 0, 5]])
    # README: median 0.995, min 0.61, max 1.04; median 0.992, min 0.53
    np.testing.assert_allclose(np.median(flux, 1), [0.995, 0.992], atol=0.001)
    np.testing.assert_allclose(flux.min(1), [0.61, 0.53], atol=0.005)
    assert abs(flux[0].max() - 1.04) < 0.005
    # and the README's forward pass, evaluated independently in numpy
    with np.load(payne_dir / "legacy_2018" / "NN_normalized_spectra.npz") as d:
        s = (np.array([5000, 4.6, 0, 0, 5]) - d["x_min"]) / (d["x_max"] - d["x_min"]) - 0.5
        h = 1 / (1 + np.exp(-(np.einsum("phl,l->ph", d["w_array_0"], s) + d["b_array_0"])))
        ref = np.einsum("ph,ph->p", h, d["w_array_1"]) + d["b_array_1"]
    np.testing.assert_allclose(flux[1], ref, atol=2e-5)


def test_legacy_network_npz_round_trip(payne_dir, tmp_path):
    emu = PayneEmulator.from_npz(payne_dir / "legacy_2018" / "NN_normalized_spectra.npz")
    emu.to_npz(tmp_path / "legacy.npz")
    back = PayneEmulator.from_npz(tmp_path / "legacy.npz")
    assert back.architecture_ == "legacy_2018"
    labels = [[5500, 4.3, -0.2, 0.1, 8]]
    np.testing.assert_array_equal(back.predict(labels), emu.predict(labels))


def test_unnormalised_legacy_network_loads(payne_dir):
    emu = PayneEmulator.from_npz(payne_dir / "legacy_2018" / "NN_unnormalized_spectra.npz")
    assert emu.n_labels_ == 4 and emu.n_pixels_ == 7214
    flux = emu.predict([[5000, 4.5, 0.0, 0.0]]) / 1e6  # README: divide by 1e6 for f_nu
    assert np.all(np.isfinite(flux)) and np.median(flux) > 0
