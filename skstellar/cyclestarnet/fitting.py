"""Stellar labels from spectra by batched, bounded chi^2 fits through The Payne.

:class:`SpectralLabelFitter` derives labels (and optionally a residual radial
velocity) for many spectra at once by minimising
``chi2(y) = sum_p (F_obs,p - model_p(y))**2 / sigma_p**2`` through a
:class:`~skstellar.cyclestarnet.payne.PayneEmulator` (possibly Doppler shifted)
or, with a Cycle-StarNet ``adapter``, by the label derivation of the M-dwarf
paper (Sect. 3.5): L-BFGS on ``|Payne(y) - CSN_obs->synth(F_obs)|^2``, whose
result starts ``|F_obs - CSN_synth->obs(Payne(y))|^2 / sigma_obs^2``.

The fits of all spectra of a batch run together in torch
(:func:`skstellar.nn.optimize.fit_batched`), labels are kept inside the
emulator's grid by the reparametrisation ``y = lo + (hi - lo) sigmoid(z)``,
the start comes from a quasi-random grid of emulated spectra (chi^2 of every
spectrum against every grid point in three matrix products), and the label
uncertainties are the Gauss-Newton curvature ``(J^T W J)^-1`` at the optimum.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from .._validation import check_numeric_input
from ..nn.optimize import METHODS, BoxTransform, fit_batched
from ..nn.threads import torch_threads as _threads
from ..nn.training import Progress, draw_seed, seed_from
from ..parameters import RANGE, Interval, Options, Rule, validate_parameters
from ..spectrum import SPEED_OF_LIGHT_KMS

__all__ = ["LabelFitResult", "SpectralLabelFitter", "doppler_shift_torch", "SPEED_OF_LIGHT_KMS"]

_INITS = ("grid", "center", "random")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: A parameter closer than this fraction of its box width to a bound is flagged.
_AT_BOUND_FRACTION = 1e-3
#: Spectra optimised together for batch_size="auto".
_AUTO_BATCH = 1024
#: Rows per evaluation of an adapter's model for eval_batch_size="auto".
_AUTO_ADAPTER_ROWS = 128


def doppler_shift_torch(flux, wavelength, rv):
    """Doppler shift spectra on a fixed grid by linear interpolation (differentiable in ``rv``).

    The observed flux at wavelength ``lambda`` is the rest-frame flux at
    ``lambda * sqrt((1 - v/c) / (1 + v/c))`` (relativistic Doppler factor;
    positive ``v`` is a receding source), linearly interpolated on the grid;
    beyond the grid's ends the edge flux is repeated. Across gaps of the grid
    (e.g. APOGEE's chip gaps) the interpolation is linear over the gap.

    Parameters
    ----------
    flux : torch.Tensor of shape (k, n_pixels)
        Rest-frame flux on ``wavelength``.
    wavelength : torch.Tensor of shape (n_pixels,)
        Strictly increasing wavelengths in Angstrom (float64 recommended).
    rv : torch.Tensor of shape (k,)
        Radial velocities in km/s.

    Returns
    -------
    torch.Tensor of shape (k, n_pixels)
        The flux the moving source shows on ``wavelength``.
    """
    wave = wavelength.to(torch.float64)
    beta = rv.to(torch.float64) / SPEED_OF_LIGHT_KMS
    factor = torch.sqrt((1.0 - beta) / (1.0 + beta))
    src = wave[None, :] * factor[:, None]
    n = wave.shape[0]
    idx = torch.searchsorted(wave, src.detach()).clamp(1, n - 1)
    w0 = wave[idx - 1]
    w1 = wave[idx]
    t = ((src - w0) / (w1 - w0)).clamp(0.0, 1.0).to(flux.dtype)
    f0 = torch.gather(flux, 1, idx - 1)
    f1 = torch.gather(flux, 1, idx)
    return f0 + t * (f1 - f0)


@dataclass
class LabelFitResult:
    """Labels fitted to a batch of spectra (one row per spectrum).

    Attributes
    ----------
    label_names : list of str
    labels : ndarray of shape (n_spectra, n_labels)
        Best-fitting labels in the emulator's units (NaN where ``fit_ok`` is
        False).
    labels_err : ndarray of shape (n_spectra, n_labels)
        1-sigma uncertainties from the curvature, ``sqrt(diag((J^T W J)^-1))``
        with ``J`` the emulator's Jacobian in label units at the optimum
        (formal errors: multiply by ``sqrt(chi2_reduced)`` to absorb a
        model mismatch). At a bound they describe the unconstrained curvature.
    covariance : ndarray of shape (n_spectra, n_params, n_params)
        Full covariance of the fitted parameters (labels, then rv if fitted).
    chi2 : ndarray of shape (n_spectra,)
        ``sum(w (F_obs - model)**2)`` over the good pixels.
    chi2_reduced : ndarray of shape (n_spectra,)
        ``chi2 / (n_good_pixels - n_params)``.
    n_good_pixels : ndarray of int, shape (n_spectra,)
        Pixels used (finite flux, finite positive error, not masked).
    at_bound : ndarray of bool, shape (n_spectra, n_params)
        True where a parameter ended within 0.1 % of the box width of a bound:
        the true value may lie outside the fitted range.
    converged : ndarray of bool, shape (n_spectra,)
        The optimiser met its convergence test before ``max_iter``.
    fit_ok : ndarray of bool, shape (n_spectra,)
        False for spectra not fitted (fewer good pixels than parameters + 1,
        e.g. all pixels masked); their outputs are NaN.
    n_iter : ndarray of int, shape (n_spectra,)
    rv, rv_err : ndarray of shape (n_spectra,) or None
        Residual radial velocity and its error in km/s (``fit_rv=True``).
    labels_synthetic : ndarray of shape (n_spectra, n_labels) or None
        With an adapter: the labels of the first, synthetic-domain fit.
    param_names : list of str
        Names of the covariance's axes.
    """

    label_names: list
    labels: np.ndarray
    labels_err: np.ndarray
    covariance: np.ndarray
    chi2: np.ndarray
    chi2_reduced: np.ndarray
    n_good_pixels: np.ndarray
    at_bound: np.ndarray
    converged: np.ndarray
    fit_ok: np.ndarray
    n_iter: np.ndarray
    rv: np.ndarray | None = None
    rv_err: np.ndarray | None = None
    labels_synthetic: np.ndarray | None = None
    param_names: list = field(default_factory=list)

    def __len__(self):
        return self.labels.shape[0]

    @property
    def any_at_bound(self) -> np.ndarray:
        """True for spectra with at least one parameter at a bound."""
        return self.at_bound.any(1)

    def to_frame(self) -> pd.DataFrame:
        """One row per spectrum: labels, ``<label>_err``, rv, chi^2 and flags."""
        cols = {}
        for j, name in enumerate(self.label_names):
            cols[name] = self.labels[:, j]
            cols[f"{name}_err"] = self.labels_err[:, j]
        if self.rv is not None:
            cols.update(rv=self.rv, rv_err=self.rv_err)
        cols.update(chi2=self.chi2, chi2_reduced=self.chi2_reduced,
                    n_good_pixels=self.n_good_pixels, at_bound=self.any_at_bound,
                    converged=self.converged, fit_ok=self.fit_ok)
        return pd.DataFrame(cols)


class SpectralLabelFitter(BaseEstimator):
    """Fit stellar labels to many spectra at once through a Payne emulator.

    For each spectrum, minimises ``chi2 = sum_p w_p (F_obs,p - model_p)**2``
    with ``w_p = 1 / (sigma_p**2 + error_floor**2)`` over the labels (and a
    residual radial velocity if ``fit_rv``), the labels kept inside
    ``bounds`` (default: the emulator's training range) by a sigmoid
    reparametrisation. With ``adapter=None`` the model is the emulator's
    spectrum; with a Cycle-StarNet ``adapter`` the fit follows the paper's
    Sect. 3.5: a fit in the synthetic domain against
    ``adapter.to_synthetic_torch(F_obs)`` (uniform errors
    ``synthetic_err``, the paper's 0.01), whose labels start the fit in the
    observed domain against ``adapter.to_observed_torch(Payne(y), F_obs)``.

    Spectra are processed in batches of ``batch_size``; within a batch every
    spectrum's problem stays independent (per-spectrum L-BFGS history, step
    length and convergence, see :func:`skstellar.nn.optimize.batched_lbfgs`).

    Bad input policies:

    * a pixel count different from the emulator's (or the adapter's
      ``n_pixels_observed``): ``ValueError`` naming both counts;
    * pixels with NaN/inf flux, NaN/inf/zero/negative error (or ``ivar <= 0``)
      or ``mask=True``: left out of the fit (weight 0);
    * spectra with fewer good pixels than ``n_params + 1`` (e.g. all masked):
      not fitted; NaN labels, ``fit_ok=False`` and a ``UserWarning``;
    * ``bounds`` outside the emulator's range, or starting labels ``x0``
      outside ``bounds``: ``ValueError`` naming the label.

    Parameters
    ----------
    emulator : PayneEmulator
        A fitted emulator (or a ``sklearn.frozen.FrozenEstimator`` wrapping
        one, which survives ``sklearn.base.clone``; a bare emulator is
        re-created unfitted by ``clone``, as for any nested estimator).
    bounds : array-like of shape (2, n_labels) or dict, optional
        Lower and upper label bounds, or ``{label_name: (lo, hi)}`` for some
        labels (the others keep the emulator's range). Must lie within the
        emulator's range.
    optimizer : {"lbfgs", "lm", "torch_lbfgs"}, default="lbfgs"
        Per-spectrum L-BFGS (the paper's optimiser), per-spectrum
        Levenberg-Marquardt, or ``torch.optim.LBFGS`` on the batch's summed
        chi^2 (coupled; for comparison, see
        :func:`skstellar.nn.optimize.coupled_lbfgs`).
    max_iter : int, default=200
        Maximum iterations per spectrum.
    tol : float, default=1e-3
        Convergence when the chi^2 decrease predicted by a quasi-Newton step
        is below ``tol`` (or when float precision stops progress). Measured on
        256 toy spectra against a Levenberg-Marquardt fit to 1e-8: the 95th
        percentile label difference was 0.13, 0.03, 0.018 and 0.02 sigma for
        ``tol`` = 1e-2, 1e-3, 1e-4 and 1e-5 (median 7, 8, 10, 11 iterations),
        while 1e-4 took twice as long as 1e-3 on a 2,900-pixel emulator (the
        slowest rows of a batch set its pace).
        A LeakyReLU emulator is piecewise linear, so chi^2 has shallow kinks:
        fits can end on different sides of one (up to ~0.3 sigma apart, with
        chi^2 within ~0.02) whatever the optimiser.
    init : {"grid", "center", "random"}, default="grid"
        Starting labels: the ``n_starts`` best of ``n_grid`` quasi-random
        (scrambled Sobol) emulated spectra inside the bounds; the centre of
        the bounds (plus random points for ``n_starts > 1``); or random
        points. Ignored when ``x0`` is passed to :meth:`fit_labels`.
    n_grid : int, default=256
        Number of grid spectra for ``init="grid"``.
    n_starts : int, default=1
        Starts per spectrum, optimised side by side; the lowest chi^2 wins.
    batch_size : int or "auto", default="auto"
        Spectra optimised together ("auto": 1024). Each spectrum's problem
        stays independent; a large batch keeps many rows in every model call
        late in the optimisation, when most spectra have converged and the
        fixed cost of a call would otherwise dominate (measured with a
        Cycle-StarNet adapter on 2 cores: 300 spectra fitted in one batch ran
        at 15 spectra/s, in batches of 100 at 11/s).
    eval_batch_size : int or "auto", default="auto"
        Rows (spectra x starts) per model evaluation, the memory bound of one
        forward/backward pass. The fits are memory-bound, so rows that keep
        their activations in cache are fastest: "auto" aims at
        ``rows * widest_activation ~ 2**20`` floats (32 rows for the legacy
        7214-pixel network, 256 for a dense 2 x 300 network), clipped to
        [16, 256]; with an adapter, whose convolutions are wider, 128.
    fit_rv : bool, default=False
        Also fit a radial velocity (km/s) by Doppler shifting the emulated
        spectrum on the emulator's ``wavelength_`` grid (linear
        interpolation). Meant for spectra already close to rest frame: the
        starts use ``rv=0``. Not available with an adapter (Cycle-StarNet
        works on rest-frame spectra: shift them first).
    rv_bounds : (float, float), default=(-50.0, 50.0)
        Box of the radial velocity in km/s.
    adapter : object, optional
        Domain adapter with torch-differentiable methods
        ``to_synthetic_torch(flux_obs) -> flux_synth`` and
        ``to_observed_torch(flux_synth, flux_obs) -> flux_obs_model`` (the
        observed spectra are passed so that an adapter can freeze per-spectrum
        information such as Cycle-StarNet's split latent). Both must be row
        independent (eval mode). An optional attribute ``n_pixels_observed``
        declares the observed pixel count (default: the emulator's). Masked
        observed pixels are filled with 1.0 (the normalised continuum) before
        they enter the adapter.
    synthetic_err : float, default=0.01
        Flux error assigned to the synthetic-domain spectrum in the first
        adapter stage (the paper's value for synthetic spectra).
    synthetic_tol : float, default=1e-3
        ``tol`` of the first, synthetic-domain stage of an adapter fit (in
        the chi^2 units of that stage, with errors ``synthetic_err``). Its
        result only starts the observed-domain fit.
    final_domain : {"observed", "synthetic"}, default="observed"
        With an adapter: where the reported fit is made. "observed" is the
        paper's two-stage fit (Sect. 3.5). "synthetic" stops after the first
        stage and reports its labels, with chi^2 and curvature errors from
        the synthetic-domain residuals weighted by the observed spectra's
        own errors (an approximation: it assumes the adapter leaves the
        pixel noise unchanged). It is about 5 times faster, and on the
        simulated M dwarfs of ``benchmarks/cycle_starnet.py`` its labels
        were the more accurate ones (12,000 adapter iterations: log g bias
        -0.006 against -0.195 dex, [M/H] -0.03 against -0.23 dex), because
        the observed-domain model, with the spectrum's own split latent,
        also fits part of the gap with shifted labels.
    error_floor : float, default=0.0
        Added in quadrature to the flux errors (normalised flux units), e.g.
        to absorb the emulator's ~0.5-1 % accuracy.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the emulator evaluations (the optimiser's state and the
        chi^2 sums are float64 in both cases).
    n_threads : int or None, default=1
        torch intra-op threads while fitting (restored afterwards); None
        keeps torch's setting. The batched fits are memory-bound small
        operations: on the 2-core test machine shared with other jobs one
        thread was 2-3 times faster than two.
    n_jobs : int or None, default=None
        Worker processes (joblib) that fit batches in parallel; None or 1
        fits in this process, -1 uses every core. With ``n_jobs > 1`` the
        spectra are split into a multiple of ``n_jobs`` equal batches. Each
        worker starts torch once (a few seconds), so it pays off for
        hundreds of spectra and more. Measured with the reduced
        Cycle-StarNet adapter on 2 cores: 20.6 spectra/s in one process,
        36.6/s with ``n_jobs=2``. The labels do not depend on ``n_jobs``
        beyond float rounding (batch composition changes the rounding of the
        batched products; see ``tol`` on how far apart nearby minima of a
        rugged chi^2 can be).
    device : str, default="cpu"
    random_state : int, RandomState or None, default=None
        Seeds the grid and random starts.
    verbose : int, default=0
        1 shows a progress bar over batches.

    Attributes
    ----------
    bounds_ : ndarray of shape (2, n_params)
        Box of every fitted parameter (labels, then rv).
    label_names_, param_names_ : list of str
    n_labels_, n_params_, n_pixels_ : int
    emulator_ : PayneEmulator
        The (unwrapped) emulator.
    grid_labels_ : ndarray of shape (n_grid, n_labels)
        Labels of the starting grid.
    start_seed_ : int
        Seed of the random starts (drawn at fit time, so repeated calls of
        :meth:`fit_labels` give identical results).

    Examples
    --------
    >>> fitter = SpectralLabelFitter(emulator, random_state=0).fit()   # doctest: +SKIP
    >>> res = fitter.fit_labels(flux, flux_err, mask=bad_pixels)       # doctest: +SKIP
    >>> res.to_frame()[["teff", "teff_err", "chi2_reduced"]]           # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        emulator=None,
        bounds=None,
        optimizer="lbfgs",
        max_iter=200,
        tol=1e-3,
        init="grid",
        n_grid=256,
        n_starts=1,
        batch_size="auto",
        eval_batch_size="auto",
        fit_rv=False,
        rv_bounds=(-50.0, 50.0),
        adapter=None,
        synthetic_err=0.01,
        synthetic_tol=1e-3,
        final_domain="observed",
        error_floor=0.0,
        dtype="float32",
        n_threads=1,
        n_jobs=None,
        device="cpu",
        random_state=None,
        verbose=0,
    ):
        self.emulator = emulator
        self.bounds = bounds
        self.optimizer = optimizer
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.n_grid = n_grid
        self.n_starts = n_starts
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.fit_rv = fit_rv
        self.rv_bounds = rv_bounds
        self.adapter = adapter
        self.synthetic_err = synthetic_err
        self.synthetic_tol = synthetic_tol
        self.final_domain = final_domain
        self.error_floor = error_floor
        self.dtype = dtype
        self.n_threads = n_threads
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def fit(self, X=None, y=None):
        """Check the emulator, bounds and options; build the starting grid.

        Parameters
        ----------
        X, y : ignored
            Present for scikit-learn API compatibility.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On invalid options, bounds outside the emulator's range, or
            ``fit_rv`` without an emulator wavelength grid.
        """
        emu = self._unwrap_emulator()
        self._check_adapter_methods()
        validate_parameters(self)
        names = list(emu.label_names_)
        n_lab = len(names)
        lo, hi = self._resolve_bounds(emu, names)
        if self.fit_rv:
            if getattr(emu, "wavelength_", None) is None:
                raise ValueError(
                    "fit_rv=True needs the emulator's wavelength grid: pass wavelength= to "
                    "PayneEmulator (or PayneEmulator.from_npz)."
                )
            rv_lo, rv_hi = (float(v) for v in self.rv_bounds)  # low < high: validated
            lo, hi = np.append(lo, rv_lo), np.append(hi, rv_hi)
        self.emulator_ = emu
        self.label_names_ = names
        self.param_names_ = names + (["rv"] if self.fit_rv else [])
        self.n_labels_ = n_lab
        self.n_params_ = len(self.param_names_)
        self.n_pixels_ = int(emu.n_pixels_)
        self.bounds_ = np.vstack([lo, hi])
        rng = np.random.RandomState(seed_from(self.random_state))
        self.grid_labels_ = self._make_grid(lo[:n_lab], hi[:n_lab], rng)
        self.start_seed_ = draw_seed(rng)
        return self

    def _unwrap_emulator(self):
        emu = self.emulator
        if emu is None:
            raise ValueError("SpectralLabelFitter needs an emulator (a fitted PayneEmulator).")
        emu = getattr(emu, "estimator", emu) if type(emu).__name__ == "FrozenEstimator" else emu
        try:
            check_is_fitted(emu, ["x_min_", "x_max_", "n_pixels_"])
        except NotFittedError as exc:
            raise NotFittedError(
                "The emulator is not fitted: call emulator.fit(labels, spectra) or load one with "
                "PayneEmulator.from_npz first. (sklearn.base.clone re-creates a nested emulator "
                "unfitted; wrap it in sklearn.frozen.FrozenEstimator to keep it.)"
            ) from exc
        if not hasattr(emu, "export_torch"):
            raise TypeError(f"{type(emu).__name__} has no export_torch(); use a PayneEmulator.")
        return emu

    _POSITIVE_INT = Interval("int", 1, None)
    #: Allowed hyperparameter values (checked by ``fit``).
    _parameter_constraints = {
        "emulator": ["no_validation"],  # a fitted PayneEmulator: checked by fit
        "bounds": [None, Mapping, "no_validation"],  # checked against the emulator by fit
        "optimizer": [Options(METHODS)],
        "max_iter": [_POSITIVE_INT],
        "tol": [Interval("real", 0, None)],
        "init": [Options(_INITS)],
        "n_grid": [_POSITIVE_INT],
        "n_starts": [_POSITIVE_INT],
        "batch_size": [Options(("auto",)), _POSITIVE_INT],
        "eval_batch_size": [Options(("auto",)), _POSITIVE_INT],
        "fit_rv": ["boolean"],
        "rv_bounds": [RANGE],
        "adapter": ["no_validation"],  # duck-typed: fit raises TypeError without its methods
        "synthetic_err": [Interval("real", 0, None, closed="neither")],
        "synthetic_tol": [Interval("real", 0, None, closed="neither")],
        "final_domain": [Options(("observed", "synthetic"))],
        "error_floor": [Interval("real", 0, None)],
        "dtype": [Options(tuple(_DTYPES))],
        "n_threads": [None, _POSITIVE_INT],
        "n_jobs": [None, Options((-1,)), _POSITIVE_INT],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": [Interval("int", 0, None), "boolean"],
    }
    _parameter_rules = (
        Rule(("init", "n_starts", "n_grid"),
             lambda init, n_starts, n_grid: init != "grid" or n_starts <= n_grid,
             "init='grid' needs n_starts <= n_grid"),
        Rule(("fit_rv", "adapter"),
             lambda fit_rv, adapter: not (fit_rv and adapter is not None),
             "fit_rv=True is not available with a domain adapter: Cycle-StarNet works on "
             "rest-frame spectra, shift them first (skstellar.preprocessing.RestFrameShifter)"),
    )

    def _check_adapter_methods(self):
        """Raise ``TypeError`` (wrong type, as scikit-learn does) for an adapter without methods."""
        if self.adapter is None:
            return
        for meth in ("to_synthetic_torch", "to_observed_torch"):
            if not callable(getattr(self.adapter, meth, None)):
                raise TypeError(
                    f"adapter {type(self.adapter).__name__} has no callable {meth}(); a "
                    "domain adapter needs to_synthetic_torch(flux_obs) and "
                    "to_observed_torch(flux_synth, flux_obs)."
                )

    def _resolve_bounds(self, emu, names):
        e_lo, e_hi = (np.asarray(v, dtype=np.float64) for v in (emu.x_min_, emu.x_max_))
        lo, hi = e_lo.copy(), e_hi.copy()
        if isinstance(self.bounds, dict):
            for key, pair in self.bounds.items():
                if key not in names:
                    raise ValueError(
                        f"bounds names label {key!r}, which the emulator lacks ({names})."
                    )
                j = names.index(key)
                lo[j], hi[j] = (float(v) for v in pair)
        elif self.bounds is not None:
            b = np.asarray(self.bounds, dtype=np.float64)
            if b.shape != (2, len(names)):
                raise ValueError(
                    f"bounds must have shape (2, {len(names)}) (lower row, upper row) or be a "
                    f"dict; got shape {b.shape}."
                )
            lo, hi = b[0].copy(), b[1].copy()
        tol = 1e-9 * (e_hi - e_lo)
        for j, name in enumerate(names):
            if not (np.isfinite(lo[j]) and np.isfinite(hi[j]) and lo[j] < hi[j]):
                raise ValueError(
                    f"Bounds of {name!r} must be finite with lower < upper, "
                    f"got ({lo[j]}, {hi[j]})."
                )
            if lo[j] < e_lo[j] - tol[j] or hi[j] > e_hi[j] + tol[j]:
                raise ValueError(
                    f"Bounds of {name!r} ({lo[j]:g}, {hi[j]:g}) leave the emulator's range "
                    f"[{e_lo[j]:g}, {e_hi[j]:g}], where it was never trained; narrow them."
                )
        return np.maximum(lo, e_lo), np.minimum(hi, e_hi)

    def _make_grid(self, lo, hi, rng):
        from scipy.stats import qmc

        n = int(self.n_grid)
        m = int(np.ceil(np.log2(max(n, 2))))
        u = qmc.Sobol(d=len(lo), scramble=True, seed=draw_seed(rng)).random_base2(m)[:n]
        return lo + (hi - lo) * u

    # ------------------------------------------------------------- inputs
    def _prepare(self, flux, flux_err, mask, ivar):
        """Arrays (n, P) of flux, weights and good-pixel mask; validates shapes."""
        from ..spectrum import SpectrumBatch

        if isinstance(flux, SpectrumBatch):
            if flux_err is not None or ivar is not None:
                raise ValueError("A SpectrumBatch carries its own ivar: do not pass flux_err/ivar.")
            if flux.ivar is None:
                raise ValueError("The SpectrumBatch has no ivar: label fitting needs flux errors.")
            extra = flux.bad_pixels()
            mask = extra if mask is None else (np.asarray(mask, dtype=bool) | extra)
            flux, ivar = flux.flux, flux.ivar
        check_numeric_input(flux, what="flux", allow_nan=True, allow_inf=True)
        flux = np.asarray(flux, dtype=np.float64)
        flux = flux[None, :] if flux.ndim == 1 else flux
        if flux.ndim != 2:
            raise ValueError(f"flux must have shape (n_spectra, n_pixels), got {flux.shape}.")
        n, p = flux.shape
        expected = int(getattr(self.adapter, "n_pixels_observed", self.n_pixels_))
        if p != expected:
            raise ValueError(
                f"The spectra have {p} pixels but the "
                f"{'adapter expects' if self.adapter is not None else 'emulator predicts'} "
                f"{expected}; resample them onto the emulator's wavelength grid first "
                "(skstellar.preprocessing.SpectrumResampler)."
            )
        if (flux_err is None) == (ivar is None):
            raise ValueError(
                "Give exactly one of flux_err (1-sigma errors) or ivar (inverse variances)."
            )
        name, given = ("flux_err", flux_err) if flux_err is not None else ("ivar", ivar)
        e = np.asarray(given, dtype=np.float64)  # 1-sigma errors or inverse variances
        e = e[None, :] if e.ndim == 1 else e
        if e.shape != (n, p):
            raise ValueError(f"{name} has shape {np.shape(given)}, flux has {(n, p)}.")
        with np.errstate(invalid="ignore"):
            good_err = np.isfinite(e) & (e > 0)
        e = np.where(good_err, e, 1.0)
        var = e**2 if flux_err is not None else 1.0 / e
        good = good_err & np.isfinite(flux)
        if mask is not None:
            m = np.asarray(mask, dtype=bool)
            if m.shape not in ((p,), (n, p)):
                raise ValueError(
                    f"mask must have shape ({p},) (shared) or {(n, p)}, got {m.shape}; True marks "
                    "a bad pixel."
                )
            good &= ~m
        var = var + float(self.error_floor) ** 2
        w = np.where(good, 1.0 / var, 0.0)
        f = np.where(good, flux, 1.0)  # masked pixels: continuum, zero weight
        return f, w, good

    def _check_x0(self, x0, n):
        x0 = np.asarray(x0, dtype=np.float64)
        x0 = x0[None, :] if x0.ndim == 1 else x0
        if x0.shape != (n, self.n_labels_):
            raise ValueError(f"x0 must have shape ({n}, {self.n_labels_}), got {x0.shape}.")
        lo, hi = self.bounds_[0, : self.n_labels_], self.bounds_[1, : self.n_labels_]
        bad = ~np.isfinite(x0) | (x0 < lo) | (x0 > hi)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(
                f"x0 row {i}: {self.label_names_[j]} = {x0[i, j]:g} is outside the fit bounds "
                f"[{lo[j]:g}, {hi[j]:g}] (or not finite)."
            )
        return x0

    # -------------------------------------------------------------- model
    def _torch_setup(self):
        dt = _DTYPES[self.dtype]
        module = self.emulator_.export_torch(dtype=dt, device=self.device)
        wave = (torch.as_tensor(self.emulator_.wavelength_, dtype=torch.float64, device=self.device)
                if self.fit_rv else None)
        return module, wave, dt

    def _synthetic_model(self, module, wave):
        L = self.n_labels_

        def model_fn(x, rows):
            flux = module(x[:, :L])
            if wave is not None:
                flux = doppler_shift_torch(flux, wave, x[:, L])
            return flux

        return model_fn

    def _grid_flux(self, module, dt):
        """Emulated spectra of the starting grid, (n_grid, n_pixels) float64."""
        with torch.no_grad():
            grid = torch.as_tensor(self.grid_labels_, dtype=dt, device=self.device)
            return module(grid).to(torch.float64)

    def _grid_starts(self, F, y, w, n_starts):
        """The n_starts best grid labels per spectrum, by chi^2 in three matmuls."""
        y64, w64 = y.to(torch.float64), w.to(torch.float64)
        wy = w64 * y64
        chi2 = (wy * y64).sum(1, keepdim=True) - 2.0 * wy @ F.T + w64 @ (F * F).T
        best = torch.topk(chi2, n_starts, dim=1, largest=False).indices  # (b, S)
        return self.grid_labels_[best.cpu().numpy().T]  # (S, b, L)

    def _other_starts(self, b, n_starts, rng):
        lo, hi = self.bounds_[0, : self.n_labels_], self.bounds_[1, : self.n_labels_]
        u = rng.uniform(size=(n_starts, b, self.n_labels_))
        if self.init == "center":
            u[0] = 0.5
        return lo + (hi - lo) * u

    def _eval_rows(self):
        """Rows per model evaluation: ``eval_batch_size`` or, for "auto", a cache-sized count.

        Measured on a 2-core CPU, one thread: the legacy 7214 x 5 per-pixel
        network costs 455 us per row and evaluation at 32 rows against 1680 us
        at 256 rows; a 2 x 300 network with 2900 pixels is flat at ~100 us from
        128 rows on. The reduced Cycle-StarNet adapter (2,901 pixels) costs
        about 1 ms per row for a forward and backward pass from 64 rows on
        (2.1 ms at 16 rows).
        """
        if self.eval_batch_size != "auto":
            return int(self.eval_batch_size)
        if self.adapter is not None:
            return _AUTO_ADAPTER_ROWS
        from .payne import PerPixelNetwork

        body = getattr(self.emulator_.module_, "body", None)
        if isinstance(body, PerPixelNetwork):
            width = body.n_pixels * body.n_hidden
        else:
            width = self.n_pixels_
            if body is not None:
                outs = [m.out_features for m in body.modules() if isinstance(m, torch.nn.Linear)]
                width = max([width] + outs)
        return int(np.clip(2**20 // max(1, width), 16, 256))

    # ---------------------------------------------------------------- fit
    def fit_labels(self, flux, flux_err=None, mask=None, *, ivar=None, x0=None):
        """Fit labels (and rv) to each spectrum.

        Parameters
        ----------
        flux : array-like of shape (n_spectra, n_pixels) or (n_pixels,), or SpectrumBatch
            Continuum-normalised fluxes on the emulator's pixel grid. A
            :class:`~skstellar.spectrum.SpectrumBatch` brings its own ``ivar``
            and bad-pixel mask.
        flux_err : array-like, same shape as ``flux``, optional
            1-sigma flux errors (give this or ``ivar``).
        mask : array-like of bool, shape (n_pixels,) or (n_spectra, n_pixels), optional
            True for pixels to leave out (e.g. The Payne's ``apogee_mask``).
        ivar : array-like, same shape as ``flux``, optional
            Inverse variances instead of ``flux_err`` (0 = no information).
        x0 : array-like of shape (n_spectra, n_labels), optional
            Starting labels (inside the bounds); overrides ``init``.

        Returns
        -------
        LabelFitResult

        Raises
        ------
        ValueError
            On a pixel-count mismatch, inconsistent shapes, missing errors or
            ``x0`` outside the bounds.

        Warns
        -----
        UserWarning
            When some spectra have too few good pixels to be fitted.
        """
        check_is_fitted(self, "bounds_")
        f, w, good = self._prepare(flux, flux_err, mask, ivar)
        n = f.shape[0]
        if x0 is not None:
            x0 = self._check_x0(x0, n)
        n_good = good.sum(1)
        D, L = self.n_params_, self.n_labels_
        fit_ok = n_good > D
        if not fit_ok.all():
            bad = np.nonzero(~fit_ok)[0]
            warnings.warn(
                f"{len(bad)} of {n} spectra (first: row {bad[0]}) have fewer than {D + 1} good "
                "pixels (all masked, NaN or zero-error): their labels are NaN and fit_ok=False.",
                UserWarning, stacklevel=2,
            )
        # the fit results, by their name in fit_batched's result
        outputs = {"x": np.full((n, D), np.nan), "covariance": np.full((n, D, D), np.nan),
                   "chi2": np.full(n, np.nan), "converged": np.zeros(n, dtype=bool),
                   "n_iter": np.zeros(n, dtype=int)}
        out_x, out_cov = outputs["x"], outputs["covariance"]
        out_syn = np.full((n, L), np.nan) if self.adapter is not None else None
        rows_ok = np.nonzero(fit_ok)[0]
        x0_rows = None if x0 is None else x0[rows_ok]
        other = None
        if x0 is None and self.init != "grid":
            # drawn here, for every spectrum at once: the starts of a spectrum
            # do not depend on how the spectra are split into batches or jobs
            rng = np.random.RandomState(self.start_seed_)
            other = self._other_starts(len(rows_ok), int(self.n_starts), rng)  # (S, n_ok, L)
        blocks = self._blocks(len(rows_ok))
        n_jobs = self._n_jobs(len(blocks))
        progress = Progress(len(blocks), self.verbose and len(blocks) > 1, "label fits",
                            unit="batch")

        def payload(sl):
            return (f[rows_ok[sl]], w[rows_ok[sl]], good[rows_ok[sl]],
                    None if x0_rows is None else x0_rows[sl],
                    None if other is None else other[:, sl])

        if n_jobs == 1:
            results = _fit_blocks(self, map(payload, blocks))
        else:
            import joblib

            results = joblib.Parallel(n_jobs=n_jobs, return_as="generator")(
                joblib.delayed(_fit_block_in_worker)(self, *payload(sl)) for sl in blocks
            )
        try:
            for sl, (res, syn) in zip(blocks, results):
                for key, values in outputs.items():
                    values[rows_ok[sl]] = getattr(res, key)
                if syn is not None:
                    out_syn[rows_ok[sl]] = syn
                progress()
        finally:
            progress.close()
        err = np.sqrt(np.clip(np.diagonal(out_cov, axis1=1, axis2=2), 0, None))
        u = BoxTransform(self.bounds_[0], self.bounds_[1]).to_unit(torch.as_tensor(out_x)).numpy()
        at_bound = (u < _AT_BOUND_FRACTION) | (u > 1 - _AT_BOUND_FRACTION)
        with np.errstate(invalid="ignore", divide="ignore"):
            chi2_red = np.where(fit_ok, outputs["chi2"] / np.maximum(n_good - D, 1), np.nan)
        return LabelFitResult(
            label_names=list(self.label_names_),
            labels=out_x[:, :L],
            labels_err=err[:, :L],
            covariance=out_cov,
            chi2=outputs["chi2"],
            chi2_reduced=chi2_red,
            n_good_pixels=n_good,
            at_bound=at_bound & fit_ok[:, None],
            converged=outputs["converged"],
            fit_ok=fit_ok,
            n_iter=outputs["n_iter"],
            rv=out_x[:, L] if self.fit_rv else None,
            rv_err=err[:, L] if self.fit_rv else None,
            labels_synthetic=out_syn,
            param_names=list(self.param_names_),
        )

    def _blocks(self, n_rows):
        """Slices of the fitted rows, one per batch (equal sizes, a multiple of n_jobs)."""
        if n_rows == 0:
            return []
        batch = _AUTO_BATCH if self.batch_size == "auto" else int(self.batch_size)
        n_blocks = -(-n_rows // batch)
        jobs = self._n_jobs(n_rows)
        if jobs > 1:
            n_blocks = min(n_rows, -(-n_blocks // jobs) * jobs)
        edges = np.linspace(0, n_rows, n_blocks + 1).round().astype(int)
        return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]

    def _n_jobs(self, n_tasks):
        """Worker processes to use (``n_jobs``, -1 = all cores), at most ``n_tasks``."""
        if self.n_jobs is None:
            return 1
        import joblib

        jobs = int(self.n_jobs)
        if jobs < 0:
            jobs = max(1, joblib.cpu_count() + 1 + jobs)
        return max(1, min(jobs, int(n_tasks)))

    def _fit_chunk(self, module, wave, dt, grid_flux, f, w, good, x0, other):
        dev = self.device
        y, wt = (torch.as_tensor(a, dtype=dt, device=dev) for a in (f, w))
        b = f.shape[0]
        lo, hi = self.bounds_
        ev = self._eval_rows()
        common = dict(method=self.optimizer, max_iter=int(self.max_iter), tol=float(self.tol),
                      model_dtype=dt, max_rows=ev)
        synth_model = self._synthetic_model(module, wave)
        if self.adapter is None:
            target, tw = y, wt
        else:  # stage 1: the observed spectra mapped into the synthetic domain
            with torch.no_grad():
                target = torch.cat([self.adapter.to_synthetic_torch(y[i : i + ev]).to(dt)
                                    for i in range(0, b, ev)])
            if target.shape != (b, self.n_pixels_):
                raise ValueError(
                    f"adapter.to_synthetic_torch returned shape {tuple(target.shape)}, expected "
                    f"({b}, {self.n_pixels_}) (the emulator's pixels)."
                )
            syn_good = torch.as_tensor(good, device=dev) if target.shape == y.shape else \
                torch.ones_like(target, dtype=torch.bool)
            tw = syn_good.to(dt) / float(self.synthetic_err) ** 2
        if x0 is not None:
            starts = x0[None]
        elif self.init == "grid":
            starts = self._grid_starts(grid_flux, target, tw, int(self.n_starts))
        else:
            starts = other
        if self.fit_rv:  # every start at rv = 0, clipped into rv_bounds
            rv0 = np.clip(0.0, *self.bounds_[:, -1])
            starts = np.concatenate([starts, np.full(starts.shape[:2] + (1,), rv0)], axis=2)
        if self.adapter is None:
            return fit_batched(synth_model, target, tw, starts, lo, hi, **common), None
        res = fit_batched(synth_model, target, tw, starts, lo, hi, compute_covariance=False,
                          **{**common, "tol": float(self.synthetic_tol)})
        syn_labels = res.x[:, : self.n_labels_].copy()
        if self.final_domain == "synthetic":
            if target.shape != y.shape:
                raise ValueError(
                    "final_domain='synthetic' weights the synthetic-domain residuals with the "
                    f"observed errors, so the adapter's output ({target.shape[1]} pixels) must "
                    f"be on the observed pixels ({y.shape[1]})."
                )
            # stop after stage 1: chi^2 and curvature at its optimum, with the
            # observed spectra's own weights on the synthetic-domain residuals
            at = fit_batched(synth_model, target, wt * syn_good.to(dt), res.x[None], lo, hi,
                             **{**common, "max_iter": 0, "start_margin": 0.0})
            at.n_iter, at.converged = res.n_iter, res.converged
            return at, syn_labels
        # stage 2: forward-model into the observed domain, start from stage 1
        adapter = self.adapter
        split_all = self._frozen_splits(adapter, y, dev, ev)
        if split_all is None:
            def obs_model(x, rows):
                return adapter.to_observed_torch(module(x), y[rows])
        else:
            # the split latents are frozen (computed without gradient from the
            # observed spectra): encode and decode them once, not at every step
            def obs_model(x, rows):
                return adapter.to_observed_torch(module(x), split_features=split_all[rows])

        with torch.no_grad():
            probe = obs_model(torch.as_tensor(res.x[:1], dtype=dt, device=dev),
                              torch.zeros(1, dtype=torch.long, device=dev))
        if probe.shape[1] != y.shape[1]:
            raise ValueError(
                f"adapter.to_observed_torch returned {probe.shape[1]} pixels, the observed "
                f"spectra have {y.shape[1]}."
            )
        return fit_batched(obs_model, y, wt, res.x[None], lo, hi, **common), syn_labels

    @staticmethod
    def _frozen_splits(adapter, y, device, rows):
        """Decoded split latents of all observed spectra, once, ``rows`` at a time (or None).

        Uses the adapter's ``split_features_torch`` (Cycle-StarNet); an
        adapter without it gets ``flux_obs`` at every call instead.
        """
        fn = getattr(adapter, "split_features_torch", None)
        if not callable(fn):
            return None
        parts = [fn(y[i : i + rows]) for i in range(0, y.shape[0], rows)]
        if any(p is None for p in parts):
            return None
        return torch.cat(parts).to(device=device, dtype=torch.float32)

    def predict(self, X, flux_err=None, mask=None, *, ivar=None):
        """Best-fitting labels of each spectrum (see :meth:`fit_labels`).

        Returns
        -------
        ndarray of shape (n_spectra, n_labels)
        """
        return self.fit_labels(X, flux_err, mask, ivar=ivar).labels

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.non_deterministic = self.random_state is None
        return tags


def _fit_blocks(fitter, payloads):
    """Fit batches of :meth:`SpectralLabelFitter.fit_labels` one after another in this process.

    ``payloads`` yields ``(flux, weights, good, x0, other_starts)`` per batch;
    the torch model is set up once. Yields ``(result, synthetic labels)`` per batch.
    """
    with _threads(fitter.n_threads):
        module, wave, dt = fitter._torch_setup()
        grid_flux = None
        for f, w, good, x0, other in payloads:
            if grid_flux is None and x0 is None and fitter.init == "grid":
                grid_flux = fitter._grid_flux(module, dt)
            # joblib hands large arrays over as read-only memory maps: copy them
            yield fitter._fit_chunk(module, wave, dt, grid_flux, np.array(f), np.array(w),
                                    np.array(good), x0, other)


def _fit_block_in_worker(fitter, *payload):
    """One batch of :meth:`SpectralLabelFitter.fit_labels` in a joblib worker process."""
    (result,) = _fit_blocks(fitter, [payload])
    return result
