"""Tests of skstellar.nn.optimize and skstellar.cyclestarnet.fitting (batched label fits)."""

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator

from skstellar.cyclestarnet.fitting import (
    SPEED_OF_LIGHT_KMS,
    SpectralLabelFitter,
    doppler_shift_torch,
)
from skstellar.cyclestarnet.payne import PayneEmulator
from skstellar.io import find_shared_data
from skstellar.nn.optimize import (
    BoxTransform,
    batched_lbfgs,
    batched_levenberg_marquardt,
    coupled_lbfgs,
    fit_batched,
    forward_jacobian,
    gauss_newton_covariance,
)

LO = np.array([2500.0, 4.5, -2.0])
HI = np.array([4000.0, 5.5, 0.5])
NAMES = ["teff", "logg", "mh"]


# --------------------------------------------------------------------------
# A small Payne-format emulator built without training: random hidden
# layers, output layer solved by least squares on analytic toy spectra.
# --------------------------------------------------------------------------
def toy_spectra(labels, wave):
    """Ten absorption lines whose depths/widths depend on Teff, log g, [M/H]."""
    t = (labels[:, :1] - 3250.0) / 750.0
    logg, mh = labels[:, 1:2], labels[:, 2:3]
    flux = np.ones((len(labels), len(wave)))
    for k, c in enumerate(np.linspace(wave[0], wave[-1], 12)[1:-1]):
        depth = 0.25 + 0.1 * np.sin(k) * t + 0.08 * (mh + 1) * (1 + 0.3 * np.cos(k)) \
            + 0.03 * (k % 3 - 1) * (logg - 5)
        width = np.ptp(wave) / 150 * (1 + 0.3 * t * np.cos(2 * k) + 0.2 * (logg - 5))
        flux -= depth * np.exp(-0.5 * ((wave - c) / width) ** 2)
    return flux + 0.05 * t * (wave - wave.mean()) / np.ptp(wave)


def write_toy_npz(path, n_pixels=200, hidden=300, n_train=3000, seed=0):
    rng = np.random.default_rng(seed)
    wave = np.linspace(6000.0, 8900.0, n_pixels)
    lab = rng.uniform(LO, HI, size=(n_train, 3))
    y = toy_spectra(lab, wave)
    s = (lab - LO) / (HI - LO) - 0.5

    def leaky(a):
        return np.where(a > 0, a, 0.01 * a)

    w0, b0 = rng.normal(0, 3, (hidden, 3)), rng.normal(0, 1, hidden)
    w1, b1 = rng.normal(0, hidden**-0.5, (hidden, hidden)), rng.normal(0, 0.3, hidden)
    h = leaky(leaky(s @ w0.T + b0) @ w1.T + b1)
    A = np.column_stack([h, np.ones(len(h))])
    coef = np.linalg.solve(A.T @ A + 1e-6 * np.eye(A.shape[1]), A.T @ y)
    np.savez(path, w_array_0=w0.astype(np.float32), b_array_0=b0.astype(np.float32),
             w_array_1=w1.astype(np.float32), b_array_1=b1.astype(np.float32),
             w_array_2=coef[:-1].T.astype(np.float32), b_array_2=coef[-1].astype(np.float32),
             x_min=LO, x_max=HI, wavelength=wave, label_names=np.array(NAMES))


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "toy_payne.npz"
    write_toy_npz(path)
    return PayneEmulator.from_npz(path)


def noisy_spectra(emulator, n, sigma=0.01, seed=0, q=(0.1, 0.9)):
    rng = np.random.default_rng(seed)
    truth = LO + (HI - LO) * rng.uniform(*q, size=(n, 3))
    clean = emulator.predict(truth)
    flux = clean + sigma * rng.standard_normal(clean.shape)
    return truth, flux, np.full_like(flux, sigma)


@pytest.fixture(scope="module")
def batch64(emulator):
    truth, flux, err = noisy_spectra(emulator, 64)
    fitter = SpectralLabelFitter(emulator=emulator, random_state=0).fit()
    return truth, flux, err, fitter.fit_labels(flux, err)


# --------------------------------------------------------------------------
# skstellar.nn.optimize
# --------------------------------------------------------------------------
def test_box_transform_keeps_parameters_inside():
    box = BoxTransform([0.0, -5.0], [1.0, 5.0])
    z = torch.tensor([[-50.0, 50.0], [0.0, 0.0], [3.0, -2.0]], dtype=torch.float64)
    x = box(z)
    assert torch.all(box.contains(x))
    np.testing.assert_allclose(x[1].numpy(), [0.5, 0.0])
    np.testing.assert_allclose(box.inverse(box(z[1:])).numpy(), z[1:].numpy(), atol=1e-9)
    edge = box.inverse(torch.tensor([[0.0, 5.0]], dtype=torch.float64))
    assert torch.all(torch.isfinite(edge))
    with pytest.raises(ValueError, match="Parameter 1: upper bound"):
        BoxTransform([0.0, 1.0], [1.0, 1.0])


def test_forward_jacobian_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(7, 3, generator=gen, dtype=torch.float64)

    def fn(x):
        return torch.sin(x @ W.T) * x[:, :1] ** 2

    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    for vectorize in (True, False):
        J = forward_jacobian(fn, x, vectorize=vectorize)
        assert J.shape == (5, 7, 3)
        for i in range(5):
            ref = torch.autograd.functional.jacobian(lambda r: fn(r[None])[0], x[i])
            np.testing.assert_allclose(J[i].numpy(), ref.numpy(), atol=1e-12)


def _quadratic_bowls(n=64, d=4, seed=0):
    """Rows with curvatures spread over six decades, different for every row."""
    gen = torch.Generator().manual_seed(seed)
    a = 10 ** (torch.rand(n, d, generator=gen, dtype=torch.float64) * 6 - 2)
    c = torch.randn(n, d, generator=gen, dtype=torch.float64)

    def fun(z, idx):
        return 0.5 * (a[idx] * (z - c[idx]) ** 2).sum(1)

    return fun, c


def test_per_row_lbfgs_solves_independent_problems():
    fun, c = _quadratic_bowls()
    res = batched_lbfgs(fun, torch.zeros_like(c), max_iter=100, tol=1e-10)
    assert bool(res.converged.all())
    assert float((res.x - c).abs().max()) < 1e-2
    assert int(res.n_iter.max()) < 60


def test_coupled_lbfgs_converges_badly_on_mixed_curvatures():
    """Why fit_batched defaults to per-row L-BFGS: the coupled version shares
    one history and one step length across rows and stalls."""
    fun, c = _quadratic_bowls(n=32)
    indep = batched_lbfgs(fun, torch.zeros_like(c), max_iter=100, tol=1e-10)
    coupled = coupled_lbfgs(fun, torch.zeros_like(c), max_iter=100)
    assert coupled.n_evals > indep.n_evals  # more work...
    assert float((coupled.x - c).abs().max()) > 100 * float((indep.x - c).abs().max())  # ...worse


def test_lbfgs_on_nonconvex_rosenbrock_rows():
    a = torch.tensor([1.0, 0.5, -0.7, 1.5], dtype=torch.float64)

    def fun(z, idx):
        return (a[idx] - z[:, 0]) ** 2 + 100 * (z[:, 1] - z[:, 0] ** 2) ** 2

    res = batched_lbfgs(fun, torch.full((4, 2), -1.0, dtype=torch.float64), max_iter=500, tol=1e-14)
    np.testing.assert_allclose(res.x[:, 0].numpy(), a.numpy(), atol=1e-4)
    np.testing.assert_allclose(res.x[:, 1].numpy(), (a**2).numpy(), atol=1e-3)


class _Plateau(torch.autograd.Function):
    """A flat loss whose gradient claims a slope: what a loss at its float
    rounding floor looks like to a line search (no step decreases it)."""

    @staticmethod
    def forward(ctx, z):
        return torch.ones(z.shape[0], dtype=z.dtype)

    @staticmethod
    def backward(ctx, g):
        return g[:, None] * torch.ones(1, 3, dtype=g.dtype)


def test_line_search_gives_up_at_the_precision_floor():
    """A row whose loss cannot decrease must not cost max_ls evaluations per
    line search (the slow path of the Cycle-StarNet label fit)."""
    fun_bowl, c = _quadratic_bowls(n=8, d=3)
    calls = []

    def fun(z, idx):
        calls.append(len(idx))
        flat = idx < 2
        out = fun_bowl(z, idx)
        return torch.where(flat, _Plateau.apply(z), out)

    counts, fits = {}, {}
    for floor in (None, 0.0):
        calls.clear()
        res = batched_lbfgs(fun, torch.zeros_like(c), max_iter=100, tol=1e-3, min_decrease=floor)
        counts[floor], fits[floor] = len(calls), res
        assert bool(res.converged.all())
        assert float(res.x[:2].abs().max()) == 0.0  # the flat rows never moved
    # the bowls' fits are unchanged by the floor...
    np.testing.assert_allclose(fits[None].x[2:].numpy(), fits[0.0].x[2:].numpy(), atol=1e-6)
    assert float(fits[None].fun[2:].max()) < 0.1 * float(fun_bowl(torch.zeros_like(c),
                                                                   torch.arange(8))[2:].min())
    # ...but the flat rows no longer make every line search try all max_ls=25 steps
    assert counts[0.0] >= 26 and counts[None] <= counts[0.0] - 8


def test_max_rows_evaluates_in_pieces_with_the_same_result():
    fun, c = _quadratic_bowls(n=40)
    sizes = []

    def counted(z, idx):
        sizes.append(len(idx))
        return fun(z, idx)

    whole = batched_lbfgs(fun, torch.zeros_like(c), max_iter=100, tol=1e-10)
    parts = batched_lbfgs(counted, torch.zeros_like(c), max_iter=100, tol=1e-10, max_rows=7)
    assert max(sizes) == 7
    np.testing.assert_allclose(parts.x.numpy(), whole.x.numpy(), atol=1e-12)
    # fit_batched: optimiser, Levenberg-Marquardt and covariance all chunked
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    truth = torch.rand(10, 2, generator=gen, dtype=torch.float64)
    y = truth @ A.T
    seen = []

    def model(x, rows):
        seen.append(len(rows))
        return x @ A.T

    for method in ("lbfgs", "lm"):
        seen.clear()
        ref = fit_batched(lambda x, rows: x @ A.T, y, torch.ones_like(y), np.full((10, 2), 0.5),
                          [-1, -1], [2, 2], method=method, tol=1e-12)
        got = fit_batched(model, y, torch.ones_like(y), np.full((10, 2), 0.5), [-1, -1], [2, 2],
                          method=method, tol=1e-12, max_rows=4)
        assert max(seen) <= 4
        np.testing.assert_allclose(got.x, ref.x, atol=1e-8)
        np.testing.assert_allclose(got.covariance, ref.covariance, rtol=1e-8)


def test_levenberg_marquardt_matches_scipy():
    rng = np.random.default_rng(3)
    t = np.linspace(0, 4, 40)
    amp, rate = rng.uniform(1, 3, 12), rng.uniform(0.3, 2.0, 12)
    y = amp[:, None] * np.exp(-rate[:, None] * t) + 0.02 * rng.standard_normal((12, 40))
    tt, yt = torch.tensor(t), torch.tensor(y)

    def residual(z, idx):
        return z[:, :1] * torch.exp(-z[:, 1:] * tt) - yt[idx]

    res = batched_levenberg_marquardt(residual, torch.ones(12, 2, dtype=torch.float64),
                                      max_iter=100, tol=1e-12)
    for i in range(12):
        ref = least_squares(lambda p: p[0] * np.exp(-p[1] * t) - y[i], [1.0, 1.0],
                            xtol=1e-14, ftol=1e-14, gtol=1e-14)
        np.testing.assert_allclose(res.x[i].numpy(), ref.x, rtol=1e-5)


def test_gauss_newton_covariance_of_a_linear_model():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(3, 30, 2))
    w = rng.uniform(0.5, 2.0, size=(3, 30))
    cov = gauss_newton_covariance(torch.tensor(X), torch.tensor(w)).numpy()
    for i in range(3):
        ref = np.linalg.inv(X[i].T @ (w[i][:, None] * X[i]))
        np.testing.assert_allclose(cov[i], ref, rtol=1e-10)


def test_fit_batched_linear_model_errors_and_bounds():
    # y = a + b t with known errors: the fit and its covariance are analytic
    rng = np.random.default_rng(5)
    t = torch.linspace(-1, 1, 50, dtype=torch.float64)
    truth = np.array([[0.3, -0.4], [0.1, 0.2], [0.0, 2.5]])  # last slope beyond the box
    sigma = 0.05
    y = truth[:, :1] + truth[:, 1:] * t.numpy() + sigma * rng.standard_normal((3, 50))
    w = np.full_like(y, sigma**-2)

    def model(x, rows):
        return x[:, :1] + x[:, 1:] * t

    res = fit_batched(model, torch.tensor(y), torch.tensor(w), np.zeros((3, 2)),
                      [-1.0, -1.0], [1.0, 1.0], tol=1e-8)
    A = np.column_stack([np.ones(50), t.numpy()])
    for i in range(2):
        beta = np.linalg.lstsq(A, y[i], rcond=None)[0]
        np.testing.assert_allclose(res.x[i], beta, atol=2e-4)
        np.testing.assert_allclose(res.covariance[i], sigma**2 * np.linalg.inv(A.T @ A),
                                   rtol=1e-4, atol=1e-12)
    assert 0.999 < res.x[2, 1] <= 1.0  # pinned at the upper bound, never beyond
    with pytest.raises(ValueError, match="parameter 1 = 1.5 lies outside"):
        fit_batched(model, torch.tensor(y), torch.tensor(w), np.array([[0, 0], [0, 1.5], [0, 0]]),
                    [-1.0, -1.0], [1.0, 1.0])


def test_fit_batched_multistart_keeps_best():
    t = torch.linspace(0, 6, 80, dtype=torch.float64)
    y = torch.cos(2.2 * t)[None].repeat(2, 1)

    def model(x, rows):
        return torch.cos(x[:, :1] * t)

    starts = np.array([[[1.0], [1.0]], [[2.0], [2.0]]])  # wrong basin, right basin
    res = fit_batched(model, y, torch.ones_like(y), starts, [0.5], [3.0], tol=1e-10)
    assert res.best_start.tolist() == [1, 1]
    np.testing.assert_allclose(res.x[:, 0], 2.2, atol=1e-5)
    single = fit_batched(model, y, torch.ones_like(y), starts[0], [0.5], [3.0], tol=1e-10)
    assert np.all(single.chi2 > res.chi2 + 1.0)


# --------------------------------------------------------------------------
# SpectralLabelFitter on a toy emulator
# --------------------------------------------------------------------------
def test_self_consistency_and_calibrated_errors(batch64):
    truth, flux, err, res = batch64
    assert res.labels.shape == (64, 3) and res.labels_err.shape == (64, 3)
    assert res.fit_ok.all() and res.converged.all()
    z = (res.labels - truth) / res.labels_err
    assert np.all(np.abs(z) < 5)
    zstd = z.std(0)
    assert np.all((zstd > 0.7) & (zstd < 1.4)), zstd
    assert np.all(np.abs(z.mean(0)) < 0.5)
    assert 0.9 < np.mean(res.chi2_reduced) < 1.1
    np.testing.assert_array_equal(res.n_good_pixels, 200)
    assert not res.at_bound.any()
    frame = res.to_frame()
    assert list(frame.columns[:6]) == ["teff", "teff_err", "logg", "logg_err", "mh", "mh_err"]
    np.testing.assert_array_equal(frame["teff"], res.labels[:, 0])


def test_optimizers_agree(emulator, batch64):
    truth, flux, err, ref = batch64
    for opt in ("lm", "torch_lbfgs"):
        res = SpectralLabelFitter(emulator=emulator, optimizer=opt, random_state=0).fit()
        res = res.fit_labels(flux[:16], err[:16])
        # the piecewise-linear LeakyReLU emulator has shallow chi^2 kinks: fits
        # may end on either side of one (documented in SpectralLabelFitter.tol)
        assert np.all(np.abs(res.labels - ref.labels[:16]) < 0.35 * ref.labels_err[:16])
        assert np.median(np.abs(res.labels - ref.labels[:16]) / ref.labels_err[:16]) < 0.05
        np.testing.assert_allclose(res.chi2, ref.chi2[:16], atol=0.05)


def test_float64_agrees_with_float32(emulator, batch64):
    truth, flux, err, ref = batch64
    res = SpectralLabelFitter(emulator=emulator, dtype="float64", random_state=0).fit()
    res = res.fit_labels(flux[:8], err[:8])
    assert np.all(np.abs(res.labels - ref.labels[:8]) < 0.1 * ref.labels_err[:8])


def test_reproducible_and_predict(emulator, batch64):
    truth, flux, err, ref = batch64
    # (max_iter caps a losing random start that creeps along a shallow valley)
    fitter = SpectralLabelFitter(emulator=emulator, init="random", n_starts=2, max_iter=40,
                                 random_state=7).fit()
    a = fitter.fit_labels(flux[:6], err[:6])
    b = fitter.fit_labels(flux[:6], err[:6])
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(fitter.predict(flux[:6], err[:6]), a.labels)
    assert np.all(np.abs(a.labels - truth[:6]) < 5 * a.labels_err)


def test_truth_outside_bounds_is_flagged(emulator):
    truth = np.array([[3800.0, 5.0, -0.5], [3200.0, 5.0, -0.5]])
    flux = emulator.predict(truth)
    err = np.full_like(flux, 0.01)
    fitter = SpectralLabelFitter(emulator=emulator, bounds={"teff": (2500.0, 3500.0)},
                                 random_state=0).fit()
    res = fitter.fit_labels(flux, err)
    assert res.labels[0, 0] <= 3500.0 and res.labels[0, 0] > 3490.0
    assert res.at_bound[0].tolist() == [True, False, False]
    assert not res.at_bound[1].any()
    assert abs(res.labels[1, 0] - 3200.0) < 5.0
    np.testing.assert_allclose(fitter.bounds_[:, 0], [2500.0, 3500.0])


def test_bounds_outside_emulator_range_raise(emulator):
    with pytest.raises(ValueError, match="Bounds of 'teff' .*leave the emulator's range"):
        SpectralLabelFitter(emulator=emulator, bounds={"teff": (2000.0, 3500.0)}).fit()
    with pytest.raises(ValueError, match="lacks"):
        SpectralLabelFitter(emulator=emulator, bounds={"vsini": (0.0, 1.0)}).fit()
    with pytest.raises(ValueError, match="shape \\(2, 3\\)"):
        SpectralLabelFitter(emulator=emulator, bounds=[[0, 1]]).fit()


def test_x0_is_checked_and_used(emulator, batch64):
    truth, flux, err, ref = batch64
    fitter = SpectralLabelFitter(emulator=emulator, random_state=0).fit()
    with pytest.raises(ValueError, match="x0 row 1: logg = 6 is outside"):
        fitter.fit_labels(flux[:2], err[:2], x0=[[3000, 5, -1], [3000, 6, -1]])
    res = fitter.fit_labels(flux[:2], err[:2], x0=truth[:2])
    assert np.all(np.abs(res.labels - ref.labels[:2]) < 0.1 * ref.labels_err[:2])


def test_pixel_count_mismatch_raises(emulator, batch64):
    _, flux, err, _ = batch64
    fitter = SpectralLabelFitter(emulator=emulator).fit()
    with pytest.raises(ValueError, match="199 pixels but the emulator predicts 200"):
        fitter.fit_labels(flux[:2, :-1], err[:2, :-1])
    with pytest.raises(ValueError, match="flux_err has shape"):
        fitter.fit_labels(flux[:2], err[:3])
    with pytest.raises(ValueError, match="exactly one of flux_err"):
        fitter.fit_labels(flux[:2])
    with pytest.raises(ValueError, match="mask must have shape"):
        fitter.fit_labels(flux[:2], err[:2], mask=np.zeros(10, bool))


def test_bad_pixels_are_masked(emulator, batch64):
    _, flux, err, _ = batch64
    fitter = SpectralLabelFitter(emulator=emulator, random_state=0).fit()
    f, e = flux[:4].copy(), err[:4].copy()
    f[0, 10:20] = np.nan
    e[1, 30:35] = 0.0
    e[2, 40:42] = -1.0
    e[3, 50] = np.inf
    f[3, 51] = 1e30 * 0 + np.inf
    mask = np.zeros_like(f, dtype=bool)
    mask[0, 10:20] = mask[1, 30:35] = mask[2, 40:42] = mask[3, 50:52] = True
    dirty = fitter.fit_labels(f, e)
    clean = fitter.fit_labels(flux[:4], err[:4], mask=mask)
    np.testing.assert_array_equal(dirty.n_good_pixels, [190, 195, 198, 198])
    assert np.all(np.abs(dirty.labels - clean.labels) < 1e-3 * clean.labels_err)
    assert np.all(np.isfinite(dirty.labels)) and np.all(np.isfinite(dirty.chi2))


def test_all_masked_spectrum_policy(emulator, batch64):
    _, flux, err, ref = batch64
    fitter = SpectralLabelFitter(emulator=emulator, random_state=0).fit()
    f = flux[:3].copy()
    f[1] = np.nan
    with pytest.warns(UserWarning, match="1 of 3 spectra \\(first: row 1\\)"):
        res = fitter.fit_labels(f, err[:3])
    assert res.fit_ok.tolist() == [True, False, True]
    assert np.all(np.isnan(res.labels[1])) and np.isnan(res.chi2[1])
    assert res.n_good_pixels[1] == 0 and not res.at_bound[1].any()
    # the others are fitted as if alone (up to float32 batch-size rounding)
    assert np.all(np.abs(res.labels[[0, 2]] - ref.labels[[0, 2]]) < 0.02 * ref.labels_err[[0, 2]])
    # a shared 1-D mask that leaves fewer pixels than parameters + 1
    mask = np.ones(200, dtype=bool)
    mask[:3] = False
    with pytest.warns(UserWarning, match="fewer than 4 good pixels"):
        res = fitter.fit_labels(flux[:2], err[:2], mask=mask)
    assert not res.fit_ok.any()


def test_ivar_spectrum_batch_and_error_floor(emulator, batch64):
    from skstellar.spectrum import SpectrumBatch

    _, flux, err, ref = batch64
    fitter = SpectralLabelFitter(emulator=emulator, random_state=0).fit()
    by_ivar = fitter.fit_labels(flux[:3], ivar=err[:3] ** -2)
    same = fitter.fit_labels(flux[:3], err[:3])
    np.testing.assert_allclose(by_ivar.labels, same.labels, rtol=1e-12)
    batch = SpectrumBatch(wavelength=emulator.wavelength_, flux=flux[:3], ivar=err[:3] ** -2)
    by_batch = fitter.fit_labels(batch)
    np.testing.assert_allclose(by_batch.labels, same.labels, rtol=1e-12)
    floored = clone(fitter).set_params(emulator=emulator, error_floor=0.01).fit()
    res = floored.fit_labels(flux[:3], err[:3])
    np.testing.assert_allclose(res.chi2, same.chi2 / 2, rtol=0.05)  # variance doubled
    np.testing.assert_allclose(res.labels_err, same.labels_err * np.sqrt(2), rtol=0.05)


def test_doppler_shift_matches_numpy_interp():
    wave = np.linspace(8000.0, 8100.0, 300)
    flux = 1 - 0.5 * np.exp(-0.5 * ((wave[None] - np.array([[8040.0], [8060.0]])) / 0.8) ** 2)
    rv = np.array([30.0, -55.0])
    out = doppler_shift_torch(torch.tensor(flux), torch.tensor(wave), torch.tensor(rv)).numpy()
    beta = rv / SPEED_OF_LIGHT_KMS
    for i in range(2):
        src = wave * np.sqrt((1 - beta[i]) / (1 + beta[i]))
        np.testing.assert_allclose(out[i], np.interp(src, wave, flux[i]), atol=1e-12)
    # a receding star's line moves red
    assert wave[np.argmin(out[0])] > 8040.0


def test_fit_rv_recovers_velocity(emulator):
    rng = np.random.default_rng(11)
    truth = np.array([[3300.0, 5.0, -0.5], [3600.0, 4.8, -1.2]])
    rv = np.array([40.0, -25.0])
    wave = emulator.wavelength_
    rest = emulator.predict(truth)
    beta = rv / SPEED_OF_LIGHT_KMS
    flux = np.stack([np.interp(wave * np.sqrt((1 - b) / (1 + b)), wave, r)
                     for b, r in zip(beta, rest)])
    flux += 0.005 * rng.standard_normal(flux.shape)
    fitter = SpectralLabelFitter(emulator=emulator, fit_rv=True, rv_bounds=(-100, 100),
                                 random_state=0).fit()
    res = fitter.fit_labels(flux, np.full_like(flux, 0.005))
    assert res.param_names == ["teff", "logg", "mh", "rv"]
    assert np.all(np.abs(res.rv - rv) < 4 * res.rv_err), (res.rv, res.rv_err)
    assert np.all(np.abs(res.labels - truth) < 4 * res.labels_err)
    assert "rv" in res.to_frame()


def test_fit_rv_needs_wavelength(tmp_path, emulator):
    emulator.to_npz(tmp_path / "e.npz")
    with np.load(tmp_path / "e.npz") as d:
        np.savez(tmp_path / "nowave.npz", **{k: d[k] for k in d.files if k != "wavelength"})
    bare = PayneEmulator.from_npz(tmp_path / "nowave.npz")
    with pytest.raises(ValueError, match="wavelength grid"):
        SpectralLabelFitter(emulator=bare, fit_rv=True).fit()


class AffineAdapter:
    """A toy domain adapter: observed = a * synthetic + b, pixel by pixel."""

    def __init__(self, n_pixels):
        x = np.linspace(0, 1, n_pixels)
        self.a = torch.tensor(0.9 + 0.15 * np.sin(6 * x), dtype=torch.float32)
        self.b = torch.tensor(0.05 * np.cos(4 * x) + 0.08, dtype=torch.float32)
        self.calls = 0

    def to_synthetic_torch(self, flux_obs):
        return (flux_obs - self.b.to(flux_obs)) / self.a.to(flux_obs)

    def to_observed_torch(self, flux_synth, flux_obs):
        self.calls += 1
        assert flux_obs.shape[0] == flux_synth.shape[0]
        return self.a.to(flux_synth) * flux_synth + self.b.to(flux_synth)


def test_adapter_two_stage_fit(emulator):
    rng = np.random.default_rng(12)
    truth = LO + (HI - LO) * rng.uniform(0.2, 0.8, size=(12, 3))
    adapter = AffineAdapter(200)
    observed = adapter.to_observed_torch(
        torch.tensor(emulator.predict(truth), dtype=torch.float32), torch.zeros(12, 1)).numpy()
    flux = observed + 0.01 * rng.standard_normal(observed.shape)
    err = np.full_like(flux, 0.01)
    fitter = SpectralLabelFitter(emulator=emulator, adapter=adapter, random_state=0).fit()
    res = fitter.fit_labels(flux, err)
    assert adapter.calls > 0 and res.labels_synthetic.shape == (12, 3)
    z = (res.labels - truth) / res.labels_err
    assert np.all(np.abs(z) < 5)
    assert 0.8 < np.mean(res.chi2_reduced) < 1.2
    # without the adapter the domain gap biases the fit
    plain = SpectralLabelFitter(emulator=emulator, random_state=0).fit().fit_labels(flux, err)
    assert np.mean(plain.chi2_reduced) > 5 * np.mean(res.chi2_reduced)
    # final_domain="synthetic": stop after the first stage, never map synthetic -> observed
    calls = adapter.calls
    syn = SpectralLabelFitter(emulator=emulator, adapter=adapter, final_domain="synthetic",
                              random_state=0).fit().fit_labels(flux, err)
    assert adapter.calls == calls
    np.testing.assert_allclose(syn.labels, syn.labels_synthetic, rtol=1e-6)
    np.testing.assert_allclose(syn.labels_synthetic, res.labels_synthetic, rtol=1e-6)
    # errors from the observed weights: close to the two-stage fit's (the affine
    # map rescales the noise by 1/a, a = 0.9-1.05, which this approximation ignores)
    ratio = syn.labels_err / res.labels_err
    assert np.all((ratio > 0.7) & (ratio < 1.4))
    assert np.all(np.abs((syn.labels - truth) / syn.labels_err) < 5)
    assert np.all(np.isfinite(syn.chi2)) and syn.converged.all()
    with pytest.raises(ValueError, match="parameter .final_domain. must be"):
        SpectralLabelFitter(emulator=emulator, adapter=adapter, final_domain="both").fit()
    with pytest.raises(ValueError, match="not available with a domain adapter"):
        SpectralLabelFitter(emulator=emulator, adapter=adapter, fit_rv=True).fit()
    with pytest.raises(TypeError, match="to_synthetic_torch"):
        SpectralLabelFitter(emulator=emulator, adapter=object()).fit()


def test_batches_eval_rows_and_worker_processes(emulator, batch64):
    truth, flux, err, ref = batch64
    # batches, evaluation pieces and processes change only float rounding
    small = SpectralLabelFitter(emulator=emulator, random_state=0, batch_size=20,
                                eval_batch_size=8).fit().fit_labels(flux, err)
    blocks = SpectralLabelFitter(emulator=emulator, random_state=0, batch_size=20).fit()._blocks(64)
    assert blocks == [
        slice(0, 16), slice(16, 32), slice(32, 48), slice(48, 64)]
    par = SpectralLabelFitter(emulator=emulator, random_state=0, n_jobs=2).fit()
    assert len(par._blocks(64)) == 2
    res = par.fit_labels(flux, err)
    for other in (small, res):
        z = np.abs(other.labels - ref.labels) / ref.labels_err
        assert np.median(z) < 0.05 and np.all(z < 1.0)
        ratio = other.labels_err / ref.labels_err  # kinks of the LeakyReLU emulator
        assert np.median(np.abs(ratio - 1)) < 0.01 and np.all(np.abs(ratio - 1) < 0.3)
    # random starts are drawn once for all spectra: independent of the batches
    kw = dict(init="random", n_starts=2, random_state=3, max_iter=3)
    a = SpectralLabelFitter(emulator=emulator, **kw).fit().fit_labels(flux[:12], err[:12])
    b = SpectralLabelFitter(emulator=emulator, batch_size=5, **kw).fit().fit_labels(flux[:12],
                                                                                err[:12])
    np.testing.assert_allclose(a.labels, b.labels, rtol=1e-4)
    for bad in ({"n_jobs": 0}, {"eval_batch_size": 0}, {"synthetic_tol": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SpectralLabelFitter(emulator=emulator, **bad).fit()


def test_sklearn_conventions(emulator, batch64):
    _, flux, err, _ = batch64
    fitter = SpectralLabelFitter(emulator=emulator, max_iter=50)
    assert fitter.get_params()["max_iter"] == 50
    with pytest.raises(NotFittedError):
        fitter.fit_labels(flux[:1], err[:1])
    with pytest.raises(NotFittedError, match="emulator is not fitted"):
        SpectralLabelFitter(emulator=PayneEmulator()).fit()
    # clone re-creates a bare nested emulator unfitted; FrozenEstimator keeps it
    with pytest.raises(NotFittedError):
        clone(SpectralLabelFitter(emulator=emulator)).fit()
    frozen = clone(SpectralLabelFitter(emulator=FrozenEstimator(emulator), random_state=0)).fit()
    assert frozen.emulator_ is emulator
    with pytest.raises(ValueError, match="parameter .optimizer. must be one of"):
        SpectralLabelFitter(emulator=emulator, optimizer="adam").fit()


# --------------------------------------------------------------------------
# The real legacy APOGEE emulator and spectrum (../shared/data/payne)
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def legacy():
    folder = find_shared_data("payne")
    if folder is None:
        pytest.skip("shared data folder 'payne' is not available")
    wave = np.load(folder / "apogee_wavelength.npz")["wavelength"]
    emu = PayneEmulator.from_npz(folder / "legacy_2018" / "NN_normalized_spectra.npz",
                                 wavelength=wave)
    return emu, folder


def test_real_apogee_spectrum_recovers_readme_labels(legacy):
    emu, folder = legacy
    spec = np.load(folder / "apogee_combined_2M13012770+5754582.npz")
    mask = np.load(folder / "apogee_mask.npz")["apogee_mask"]
    flux, err = spec["spectrum"], spec["spec_err"]
    bad = mask | (err >= 0.1)
    fitter = SpectralLabelFitter(emulator=emu, fit_rv=True, random_state=0).fit()
    res = fitter.fit_labels(flux, err, mask=bad)
    teff, logg, feh, mgfe, vmacro = res.labels[0]
    # README: Teff 4920, log g 4.52, [Fe/H] -0.20, [Mg/Fe] 0.12, vmacro 15.7, RV +0.9, chi2/pix 4.2
    assert abs(teff - 4920) < 100
    assert abs(logg - 4.52) < 0.15
    assert abs(feh + 0.20) < 0.1
    assert abs(mgfe - 0.12) < 0.1
    assert abs(vmacro - 15.7) < 3
    assert abs(res.rv[0] - 0.9) < 0.5
    assert 3.0 < res.chi2_reduced[0] < 6.0
    assert res.converged[0] and not res.at_bound.any()
    assert 0 < res.labels_err[0, 0] < 50 and res.n_good_pixels[0] == int((~bad).sum())


def test_legacy_self_consistency(legacy):
    emu, _ = legacy
    rng = np.random.default_rng(2)
    truth = emu.x_min_ + (emu.x_max_ - emu.x_min_) * rng.uniform(0.15, 0.85, size=(32, 5))
    flux = emu.predict(truth) + 0.01 * rng.standard_normal((32, 7214))
    res = SpectralLabelFitter(emulator=emu, random_state=0).fit().fit_labels(
        flux, np.full_like(flux, 0.01))
    z = (res.labels - truth) / res.labels_err
    assert np.all(np.abs(z) < 5)
    zstd = z.std(0)
    assert np.all((zstd > 0.7) & (zstd < 1.4)), zstd
    assert res.converged.all()
