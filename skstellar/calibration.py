"""Calibrated predictive uncertainties, shared by every skstellar regressor.

The paper recipes report only part of the error budget (Monte Carlo dropout
measures the model's spread, not the scatter the model cannot explain), so
their ``sigma`` is rarely a 1-sigma error in the usual sense. This module
provides the one layer every regressor reuses to turn its raw parts into an
honest total:

``sigma_total^2 = a * sigma_model^2 + sigma_input^2 + b^2``

* ``sigma_model`` -- the model's own spread (MC dropout, learnt excess),
  rescaled by ``a``;
* ``sigma_input`` -- measurement errors propagated through the model
  (first-order Jacobian, see :mod:`skstellar.nn.uncertainty`), taken at face
  value;
* ``b`` -- an intrinsic floor: the scatter the model cannot explain (label
  noise, missing physics), in the target's unit.

``a`` and ``b`` are fitted by maximum likelihood on rows the model did not
train on (:class:`VarianceCalibrator`). :class:`ConformalCalibrator` gives
distribution-free (split conformal) intervals from normalised residuals, and
:class:`CalibratedRegressor` wraps any regressor with
``predict(X, return_std=True)`` the way scikit-learn's
``CalibratedClassifierCV`` wraps classifiers (cross-fitting on ``cv`` folds
or one held-out split; CV+ conformal intervals).

References: Kuleshov, Fenner & Ermon (2018, ICML) and Levi et al. (2022,
Sensors) for variance scaling; Lei et al. (2018, JASA) for split conformal
and Barber et al. (2021, Ann. Stat.) for CV+ (jackknife+).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from scipy import optimize, stats
from sklearn.base import BaseEstimator, MetaEstimatorMixin, RegressorMixin, clone
from sklearn.model_selection import check_cv
from sklearn.utils import Bunch, _safe_indexing, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .parameters import Interval, Options, Satisfies, validate_parameters

__all__ = [
    "UNCERTAINTY_MODES",
    "CalibrationWarning",
    "CalibratedRegressor",
    "ConformalCalibrator",
    "HeldOutCalibrationMixin",
    "VarianceCalibrator",
    "check_std",
    "gaussian_interval",
    "uncertainty_parts",
]

#: ``uncertainty`` settings of skstellar's regressors: ``"calibrated"`` (the
#: total of this module, the default) or ``"mc"`` (the paper's raw spread).
UNCERTAINTY_MODES = ("calibrated", "mc")

#: Below this many calibration rows a calibrator warns (its a, b are noisy).
MIN_CALIBRATION_ROWS = 50

#: Below this many rows a calibrator refuses to fit.
_HARD_MIN_ROWS = 3

#: Miscoverage of the 1-sigma interval of a Gaussian (1 - 0.6827).
ALPHA_1SIGMA = float(1.0 - stats.norm.cdf(1.0) + stats.norm.cdf(-1.0))


class CalibrationWarning(UserWarning):
    """A calibrator was fitted on too few rows to be trusted."""


# --------------------------------------------------------------------- checks
def check_std(std, shape, name="y_std", allow_zero=True):
    """Check a standard-deviation array: finite, non-negative, of the right shape.

    Parameters
    ----------
    std : array-like or float
        Standard deviations; a scalar is broadcast to ``shape``.
    shape : tuple of int
        Expected shape (that of the predictions).
    name : str, default="y_std"
        Name used in the error message.
    allow_zero : bool, default=True
        Whether exact zeros are accepted.

    Returns
    -------
    ndarray of float64 with shape ``shape``

    Raises
    ------
    ValueError
        On a wrong shape, NaN/inf, or negative (or zero) values, naming the
        first offending row.
    """
    s = np.asarray(std, dtype=np.float64)
    if s.ndim == 0:
        s = np.full(shape, float(s))
    elif s.shape != tuple(shape):
        if s.size == int(np.prod(shape)) and s.ndim <= 2 and len(shape) <= 2 and (
                s.ndim == 1 or len(shape) == 1):
            s = s.reshape(shape)
        else:
            raise ValueError(f"{name} has shape {np.shape(std)} but the predictions have "
                             f"shape {tuple(shape)}.")
    sign = ("negative", s < 0) if allow_zero else ("non-positive", s <= 0)
    for what, bad in (("NaN/inf", ~np.isfinite(s)), sign):  # (NaN compares False)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise ValueError(f"{name} has {int(bad.sum())} {what} value(s) (first at row {row}).")
    return s


def _as_2d(a):
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(len(a), -1) if a.ndim == 1 else a


def _check_alpha(alpha):
    if not isinstance(alpha, numbers.Real) or not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be a float in (0, 1), got {alpha!r}.")
    return float(alpha)


def gaussian_interval(mean, std, alpha=ALPHA_1SIGMA):
    """Central ``1 - alpha`` interval of a Gaussian ``N(mean, std^2)``.

    Parameters
    ----------
    mean, std : array-like of the same shape
        Predictions and 1-sigma uncertainties (target unit).
    alpha : float, default=0.3173
        Miscoverage; the default gives the 1-sigma (68.3 %) interval.

    Returns
    -------
    lower, upper : ndarray
    """
    k = stats.norm.ppf(1.0 - _check_alpha(alpha) / 2.0)
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    return mean - k * std, mean + k * std


# -------------------------------------------------------- variance scaling
def _scaling_nll(params, r2, vm, vi, fit_scale):
    # parameters (log a, b^2): b^2 >= 0 keeps a non-zero gradient at b = 0
    log_a, b2 = params if fit_scale else (0.0, params[0])  # without the scale, a = 1
    a = np.exp(log_a)
    v = np.maximum(a * vm + vi + b2, 1e-300)
    nll = 0.5 * np.mean(np.log(v) + r2 / v)
    w = 0.5 * (1.0 / v - r2 / v**2)  # d nll / d v, per row
    grad_b2 = np.mean(w)
    if fit_scale:
        return nll, np.array([np.mean(w * vm) * a, grad_b2])
    return nll, np.array([grad_b2])


class VarianceCalibrator:
    """Variance scaling with an intrinsic floor, fitted by maximum likelihood.

    ``sigma_cal^2 = a * sigma_model^2 + sigma_input^2 + b^2`` per target,
    with ``a > 0`` and ``b >= 0`` maximising the Gaussian likelihood of the
    residuals of held-out rows. ``a`` corrects a mis-scaled model spread (MC
    dropout depends on the dropout rate, not on the data), ``b`` adds the
    scatter the model cannot explain (label noise, missing physics). The
    input part is propagated from measured errors and is not rescaled.

    Parameters
    ----------
    fit_scale : bool, default=True
        Fit ``a``; False keeps ``a = 1`` (floor only). When every model std
        is zero (a network without dropout) ``a`` cannot be fitted and is 1.
    fit_floor : bool, default=True
        Fit ``b``; False keeps ``b = 0`` (pure scaling).
    warn_below : int, default=50
        Warn (:class:`CalibrationWarning`) when fitted on fewer rows. With
        fewer than 3 rows only the floor is fitted (``a = 1``); no row at
        all raises a ``ValueError``.

    Attributes
    ----------
    scale_ : ndarray of shape (n_targets,)
        ``a`` (dimensionless).
    floor_ : ndarray of shape (n_targets,)
        ``b`` (target unit).
    n_samples_ : ndarray of shape (n_targets,)
        Rows used per target (NaN labels are skipped).
    """

    def __init__(self, fit_scale=True, fit_floor=True, warn_below=MIN_CALIBRATION_ROWS):
        self.fit_scale = fit_scale
        self.fit_floor = fit_floor
        self.warn_below = warn_below

    def fit(self, y_true, y_pred, model_std, input_std=None, label_std=None):
        """Fit ``a`` and ``b`` on held-out rows.

        Parameters
        ----------
        y_true, y_pred : array-like of shape (n,) or (n, n_targets)
            Held-out labels (NaN = missing, skipped) and predictions.
        model_std : array-like, same shape
            Model spread (target unit, >= 0).
        input_std : array-like, same shape, optional
            Propagated measurement error (target unit, >= 0); zero if None.
        label_std : array-like, same shape, optional
            Known errors of the held-out labels (target unit, >= 0): the
            residuals then have variance ``sigma_cal^2 + label_std^2``, and
            ``sigma_cal`` describes the error against the true value.

        Returns
        -------
        self
        """
        t, p = _as_2d(y_true), _as_2d(y_pred)
        if t.shape != p.shape:
            raise ValueError(f"y_true has shape {np.shape(y_true)} but y_pred has "
                             f"{np.shape(y_pred)}.")
        if not np.isfinite(p).all():
            raise ValueError("y_pred has NaN/inf values.")
        sm = check_std(_as_2d(model_std), p.shape, "model_std")
        si, sy = (np.zeros_like(sm) if s is None else check_std(_as_2d(s), p.shape, name)
                  for s, name in ((input_std, "input_std"), (label_std, "label_std")))
        L = t.shape[1]
        self.scale_, self.floor_ = np.ones(L), np.zeros(L)
        self.n_samples_ = np.zeros(L, dtype=int)
        for j in range(L):
            keep = np.isfinite(t[:, j])
            n = int(keep.sum())
            if n < 1:
                raise ValueError(f"Calibration needs labelled rows for target {j}; got none.")
            if n < int(self.warn_below):
                warnings.warn(
                    f"Uncertainty calibration fitted on {n} rows (< {int(self.warn_below)}) "
                    f"for target {j}: a and b are poorly determined. Calibrate on more "
                    "held-out rows.", CalibrationWarning, stacklevel=2)
            self.n_samples_[j] = n
            self.scale_[j], self.floor_[j] = self._fit_one(
                (t[keep, j] - p[keep, j]) ** 2, sm[keep, j] ** 2,
                si[keep, j] ** 2 + sy[keep, j] ** 2, scale_ok=n >= _HARD_MIN_ROWS)
        return self

    def _fit_one(self, r2, vm, vi, scale_ok=True):
        # work in units of the residual rms so that both parameters are O(1)
        unit = float(np.sqrt(np.mean(r2))) or 1.0
        r2, vm, vi = r2 / unit**2, vm / unit**2, vi / unit**2
        # fewer than 3 rows cannot fix two parameters: floor only (a = 1)
        fit_scale = bool(self.fit_scale) and bool(np.any(vm > 0)) and scale_ok
        fit_floor = bool(self.fit_floor)
        if not fit_scale and not fit_floor:
            return 1.0, 0.0
        excess = float(np.mean(np.maximum(r2 - vi, 0.0)))
        if fit_scale:
            # a few starts (moment estimates of "all scale" and "all floor");
            # the likelihood is smooth in (log a, b^2), so the best is kept
            a_all = max(excess / float(np.mean(vm)), 1e-6)
            b2 = 0.5 * excess if fit_floor else 0.0
            starts = [[np.log(a_all), 0.0], [np.log(max(0.1 * a_all, 1e-6)), b2], [0.0, b2]]
            bounds = [(-30.0, 30.0), (0.0, None) if fit_floor else (0.0, 0.0)]
        else:
            starts, bounds = [[max(excess, 1e-6)]], [(0.0, None)]
        best = min((optimize.minimize(_scaling_nll, x0, args=(r2, vm, vi, fit_scale), jac=True,
                                      method="L-BFGS-B", bounds=bounds) for x0 in starts),
                   key=lambda res: res.fun)  # the first of equally good fits
        a, b2 = (float(np.exp(best.x[0])), float(best.x[1])) if fit_scale else (1.0, best.x[0])
        return a, float(np.sqrt(max(b2, 0.0))) * unit

    def parts(self, model_std, input_std=None):
        """The calibrated parts of the uncertainty.

        Parameters
        ----------
        model_std : array-like of shape (n,) or (n, n_targets)
        input_std : array-like, same shape, optional

        Returns
        -------
        dict of ndarray (same shape as ``model_std``)
            ``model_std`` (``sqrt(a) * sigma_model``), ``input_std``,
            ``intrinsic_std`` (``b``) and ``total_std`` (their quadrature sum),
            all in the target unit.
        """
        if not hasattr(self, "scale_"):
            raise ValueError("This VarianceCalibrator is not fitted yet; call fit first.")
        shape = np.shape(model_std)
        sm = _as_2d(model_std)
        if sm.shape[1] != len(self.scale_):
            raise ValueError(f"model_std has {sm.shape[1]} target column(s); the calibrator "
                             f"was fitted on {len(self.scale_)}.")
        sm = check_std(sm, sm.shape, "model_std")
        si = np.zeros_like(sm) if input_std is None else check_std(
            _as_2d(input_std), sm.shape, "input_std")
        m = np.sqrt(self.scale_) * sm
        b = np.broadcast_to(self.floor_, sm.shape).copy()
        total = np.sqrt(m**2 + si**2 + b**2)
        return {k: v.reshape(shape) for k, v in
                {"model_std": m, "input_std": si, "intrinsic_std": b, "total_std": total}.items()}

    def std(self, model_std, input_std=None):
        """Calibrated total standard deviation (target unit), shaped like ``model_std``."""
        return self.parts(model_std, input_std)["total_std"]

    def __repr__(self):
        if hasattr(self, "scale_"):
            return (f"VarianceCalibrator(a={np.round(self.scale_, 4).tolist()}, "
                    f"b={np.round(self.floor_, 4).tolist()})")
        return "VarianceCalibrator()"


def uncertainty_parts(prediction, model_std, input_std=None, calibrator=None):
    """Decomposition returned by the regressors' ``predict_uncertainty``.

    Parameters
    ----------
    prediction : ndarray
        Point estimates (target unit).
    model_std, input_std : ndarray, same shape
        Raw model spread and propagated measurement error (``input_std``
        None: zero).
    calibrator : VarianceCalibrator or None
        Fitted calibrator; None reports the raw parts (no floor, ``a = 1``).

    Returns
    -------
    sklearn.utils.Bunch
        ``prediction``, ``model_std``, ``input_std``, ``intrinsic_std``,
        ``total_std`` (quadrature sum of the three parts, the value of
        ``predict(X, return_std=True)``) and ``raw_std`` (the paper's
        uncalibrated ``sqrt(model^2 + input^2)``), all in the target unit.
    """
    sm = np.asarray(model_std, dtype=np.float64)
    si = np.zeros_like(sm) if input_std is None else np.asarray(input_std, dtype=np.float64)
    raw = np.sqrt(sm**2 + si**2)
    if calibrator is None:
        parts = {"model_std": sm, "input_std": si, "intrinsic_std": np.zeros_like(sm),
                 "total_std": raw}
    else:
        parts = calibrator.parts(sm, si)
    return Bunch(prediction=prediction, raw_std=raw, **parts)


# ------------------------------------------------------ networks' default
class HeldOutCalibrationMixin:
    """``uncertainty="calibrated"`` for skstellar networks with a validation split.

    Mixed into a :class:`skstellar.nn.BaseNeuralRegressor` subclass (before
    it in the bases), it fits a :class:`VarianceCalibrator` on the rows the
    network held out for early stopping (``validation_indices_``) at the end
    of ``fit``, and makes :meth:`predict` return the calibrated total (or,
    with ``uncertainty="mc"``, the paper's raw spread; formulas there). It
    adds :meth:`predict_interval` and :meth:`predict_uncertainty`.

    The host declares an ``uncertainty`` parameter and may override
    ``_model_inputs(Xv) -> (network_inputs, error_info)`` and
    ``_input_std(network_inputs, error_info) -> (n, n_targets)`` to
    propagate measurement errors.

    The validation rows also chose the early-stopping epoch, so the
    residuals they give are very slightly optimistic; the intrinsic floor
    ``b`` makes the calibration robust to that on new data (measured in the
    benchmarks on a test split used for nothing else).
    """

    #: The host's ``uncertainty`` parameter (checked with the host's own table).
    _parameter_constraints = {"uncertainty": [Options(UNCERTAINTY_MODES)]}

    # hooks (and NeuralEstimatorBase._model_inputs) ------------------
    def _input_std(self, inputs, error_info):  # pragma: no cover - hosts with errors override
        return None

    def _label_scale(self):
        scale = getattr(self, "_y_scale_", None)
        return 1.0 if scale is None else np.abs(np.asarray(scale, dtype=np.float64))

    def _raw_parts(self, Xv, with_std=True):
        """(mean, model_std, input_std or None), 2-D, in label units."""
        inputs, info = self._model_inputs(Xv)
        n_passes = int(self.n_mc_passes)
        if n_passes > 1 and self._has_dropout():
            mean, std = self._mc(inputs, n_passes)
            std = np.asarray(std, np.float64).reshape(len(inputs), -1) * self._label_scale()
        else:
            mean, std = self._deterministic(inputs), None
        mean = self._inverse_transform_y(np.asarray(mean, np.float64).reshape(len(inputs), -1))
        if std is None:
            std = np.zeros_like(mean)
        si = None
        if with_std and info is not None:
            si = self._input_std(inputs, info)
            if si is not None:
                si = np.asarray(si, np.float64).reshape(mean.shape) * self._label_scale()
        return mean, std, si

    def _shape_out(self, a):
        return a.ravel() if self._y_ndim == 1 else a

    # fit --------------------------------------------------------------
    def fit(self, X, y):
        """Train the network, then calibrate its uncertainty on the validation rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)

        Returns
        -------
        self
        """
        super().fit(X, y)  # validates the parameters, ``uncertainty`` included
        self.calibrator_ = None
        if self.uncertainty == "calibrated":
            idx = self.validation_indices_
            if len(idx) < 1:
                raise ValueError(
                    "uncertainty='calibrated' calibrates on the validation split, which has "
                    "no row: use validation_fraction > 0 (enough for >= 50 rows), or "
                    "uncertainty='mc' for the paper's raw MC-dropout spread.")
            Xv = self._validate_X(X, reset=False)[idx]
            yv = np.asarray(y, dtype=np.float64).reshape(-1, self.n_outputs_)[idx]
            mean, sm, si = self._raw_parts(Xv)
            self.calibrator_ = VarianceCalibrator().fit(yv, mean, sm, si)
        return self

    # predict ----------------------------------------------------------
    def _parts(self, X, with_std=True):
        check_is_fitted(self, "net_")
        return self._raw_parts(self._validate_X(X, reset=False), with_std=with_std)

    def _calibrated(self):
        if self.uncertainty == "calibrated" and getattr(self, "calibrator_", None) is None:
            raise ValueError("uncertainty='calibrated' but this model was fitted with "
                             "uncertainty='mc' (no calibrator): refit it.")
        return self.uncertainty == "calibrated"

    def predict(self, X, return_std=False):
        """Predict the targets, optionally with their 1-sigma uncertainty.

        The prediction is the mean of the Monte Carlo dropout passes (one
        deterministic pass without dropout). With ``uncertainty="calibrated"``
        (default) ``std`` is the calibrated total
        ``sqrt(a sigma_model^2 + sigma_input^2 + b^2)``; with
        ``uncertainty="mc"`` the paper's raw ``sqrt(sigma_model^2 +
        sigma_input^2)`` (MC-dropout spread and propagated input errors).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default=False

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_targets)
        y_std : ndarray, same shape (target unit), only if ``return_std``
        """
        mean, sm, si = self._parts(X, with_std=return_std)
        if not return_std:
            return self._shape_out(mean)
        if self._calibrated():
            return self._shape_out(mean), self._shape_out(self.calibrator_.std(sm, si))
        if si is None and not (int(self.n_mc_passes) > 1 and self._has_dropout()):
            raise ValueError(
                "return_std=True with uncertainty='mc' needs Monte Carlo dropout: set "
                "n_mc_passes >= 2 and a network with dropout > 0 (or uncertainty='calibrated').")
        total = np.sqrt(sm**2 + (0.0 if si is None else si**2))
        return self._shape_out(mean), self._shape_out(total)

    def predict_interval(self, X, alpha=ALPHA_1SIGMA):
        """Central Gaussian interval of nominal coverage ``1 - alpha``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        alpha : float, default=0.3173
            Miscoverage (0.3173: 1 sigma; 0.05: 95 %).

        Returns
        -------
        lower, upper : ndarray, shaped like ``predict(X)`` (target unit)
        """
        alpha = _check_alpha(alpha)
        return gaussian_interval(*self.predict(X, return_std=True), alpha)

    def predict_uncertainty(self, X):
        """Prediction and the parts of its uncertainty.

        Returns
        -------
        sklearn.utils.Bunch
            ``prediction``; ``model_std`` (MC-dropout spread, times
            ``sqrt(a)`` when calibrated); ``input_std`` (propagated
            measurement errors, zero without error columns);
            ``intrinsic_std`` (the fitted floor ``b``, zero for ``"mc"``);
            ``total_std`` (what ``predict(X, return_std=True)`` returns) and
            ``raw_std`` (the uncalibrated ``sqrt(model^2 + input^2)``). All
            in the target unit and shaped like ``predict(X)``.
        """
        mean, sm, si = self._parts(X)
        out = uncertainty_parts(mean, sm, si, self.calibrator_ if self._calibrated() else None)
        return Bunch(**{k: self._shape_out(np.asarray(v)) for k, v in out.items()})


# ------------------------------------------------------------------ conformal
def _conformal_rank(n, alpha):
    """1-based rank of the finite-sample conformal quantile, ceil((n + 1)(1 - alpha))."""
    return int(np.ceil((n + 1) * (1.0 - alpha)))


class ConformalCalibrator:
    """Split-conformal intervals from normalised residuals ``|y - mu| / sigma``.

    With scores from ``n`` exchangeable held-out rows, ``mu +- q sigma`` with
    ``q`` the ``ceil((n + 1)(1 - alpha))``-th smallest score covers a new
    row with probability >= ``1 - alpha`` whatever the error distribution
    (Lei et al. 2018); normalising by ``sigma`` keeps the intervals adaptive
    (wider for uncertain rows). When the rank exceeds ``n`` the interval is
    infinite, as the theory requires.

    Parameters
    ----------
    warn_below : int, default=50

    Attributes
    ----------
    scores_ : list of ndarray
        Sorted normalised scores of each target.
    """

    def __init__(self, warn_below=MIN_CALIBRATION_ROWS):
        self.warn_below = warn_below

    def fit(self, y_true, y_pred, y_std):
        """Store the normalised scores of held-out rows (NaN labels skipped).

        Returns
        -------
        self
        """
        t, p = _as_2d(y_true), _as_2d(y_pred)
        s = check_std(_as_2d(y_std), p.shape, "y_std", allow_zero=False)
        self.scores_ = []
        for j in range(t.shape[1]):
            keep = np.isfinite(t[:, j])
            n = int(keep.sum())
            if n < _HARD_MIN_ROWS:
                raise ValueError(f"Conformal calibration needs at least {_HARD_MIN_ROWS} "
                                 f"labelled rows for target {j}; got {n}.")
            if n < int(self.warn_below):
                warnings.warn(f"Conformal calibration on {n} rows (< {int(self.warn_below)}): "
                              "the interval widths are coarse.", CalibrationWarning,
                              stacklevel=2)
            self.scores_.append(np.sort(np.abs(t[keep, j] - p[keep, j]) / s[keep, j]))
        return self

    def quantile(self, alpha):
        """The score quantile ``q`` of each target for miscoverage ``alpha``.

        Returns
        -------
        ndarray of shape (n_targets,)
            ``inf`` where too few rows support the requested coverage.
        """
        if not hasattr(self, "scores_"):
            raise ValueError("This ConformalCalibrator is not fitted yet; call fit first.")
        alpha = _check_alpha(alpha)
        ranks = [_conformal_rank(len(sc), alpha) for sc in self.scores_]
        return np.asarray([np.inf if k > len(sc) else float(sc[k - 1])
                           for k, sc in zip(ranks, self.scores_)])

    def interval(self, y_pred, y_std, alpha=ALPHA_1SIGMA):
        """``y_pred -+ q * y_std`` (shapes of ``y_pred``)."""
        shape = np.shape(y_pred)
        p = _as_2d(y_pred)
        s = check_std(_as_2d(y_std), p.shape, "y_std")
        q = self.quantile(alpha)
        return (p - q * s).reshape(shape), (p + q * s).reshape(shape)

    def std(self, y_std):
        """A Gaussian-equivalent std: the 68.3 % conformal half-width ``q_1sigma * y_std``."""
        return (self.quantile(ALPHA_1SIGMA) * _as_2d(y_std)).reshape(np.shape(y_std))


# --------------------------------------------------------------- meta-estimator
def _predict_with_std(estimator, X):
    try:
        out = estimator.predict(X, return_std=True)
    except TypeError as exc:
        if "return_std" not in str(exc):
            raise
        raise TypeError(
            f"{type(estimator).__name__}.predict does not accept return_std=True; "
            "CalibratedRegressor needs a regressor that predicts an uncertainty "
            "(e.g. BayesianRidge, GaussianProcessRegressor or a skstellar network)."
        ) from exc
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(f"{type(estimator).__name__}.predict(X, return_std=True) must return "
                        "(mean, std).")
    mean = np.asarray(out[0], dtype=np.float64)
    if not np.isfinite(mean).all():
        raise ValueError(f"{type(estimator).__name__} predicted NaN/inf values.")
    return mean, check_std(out[1], mean.shape, f"the std returned by {type(estimator).__name__}")


def _default_estimator():
    from sklearn.linear_model import BayesianRidge

    return BayesianRidge()


class CalibratedRegressor(MetaEstimatorMixin, RegressorMixin, BaseEstimator):
    """Calibrate the uncertainties of any regressor with ``predict(X, return_std=True)``.

    The regression analogue of scikit-learn's ``CalibratedClassifierCV``:
    the wrapped estimator is fitted on cross-validation folds (or on one
    split), its predictions on the rows it did not see calibrate its
    ``std``, and ``estimator_`` is the estimator fitted on the training rows
    (all rows with ``cv`` folds, the training part with one split).

    Parameters
    ----------
    estimator : estimator, default=None
        Regressor whose ``predict(X, return_std=True)`` returns
        ``(mean, std)``; None uses ``BayesianRidge()``. A skstellar network
        should be wrapped with its ``uncertainty="mc"`` (its raw spread), as
        its own calibration would otherwise be calibrated twice. A prefit
        estimator can be wrapped in ``sklearn.frozen.FrozenEstimator``.
    method : {"scaling", "conformal"}, default="scaling"
        ``"scaling"``: ``sigma_cal^2 = a sigma^2 + b^2`` by maximum
        likelihood on the held-out predictions (:class:`VarianceCalibrator`);
        Gaussian intervals. ``"conformal"``: normalised conformal intervals
        (split conformal with one split, CV+ with folds), distribution free;
        ``predict(X, return_std=True)`` then returns the 68.3 % interval's
        half-width.
    cv : int, cross-validation generator, iterable or float, default=5
        Folds (as in ``cross_val_score``) for cross-fitting, or a float in
        (0, 1): the fraction of rows held out in one shuffled split (split
        conformal / scaling on a hold-out).
    warn_below : int, default=50
        Fewer held-out rows than this warn (:class:`CalibrationWarning`).
    random_state : int, RandomState or None, default=None
        Shuffling of the single split (``cv`` float).

    Attributes
    ----------
    estimator_ : estimator
        The estimator used by ``predict``.
    calibrator_ : VarianceCalibrator or ConformalCalibrator
    fold_estimators_ : list of estimator
        The per-fold estimators (CV+ intervals use them; empty with one split).
    oof_prediction_, oof_std_, oof_y_ : ndarray
        Held-out predictions, raw stds and labels the calibrator was fitted on.
    n_features_in_, feature_names_in_

    Notes
    -----
    ``fit(X, y, **fit_params)`` routes the fit parameters (sliced by rows
    when they are per-sample arrays) to the wrapped estimator's ``fit``.
    The decomposition is available through :meth:`predict_uncertainty`.

    Examples
    --------
    >>> import numpy as np
    >>> from skstellar import CalibratedRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 3)); y = X @ [1.0, -2.0, 0.5] + rng.normal(0, 0.3, 300)
    >>> reg = CalibratedRegressor(cv=5).fit(X, y)
    >>> mean, std = reg.predict(X[:2], return_std=True)
    >>> lower, upper = reg.predict_interval(X[:2], alpha=0.05)
    """

    def __init__(self, *, estimator=None, method="scaling", cv=5,
                 warn_below=MIN_CALIBRATION_ROWS, random_state=None):
        self.estimator = estimator
        self.method = method
        self.cv = cv
        self.warn_below = warn_below
        self.random_state = random_state

    _parameter_constraints = {
        "estimator": [None, Satisfies(lambda est: hasattr(est, "fit") and hasattr(est, "predict"),
                                      "a regressor with fit and predict")],
        "method": [Options(("scaling", "conformal"))],
        "cv": [Interval("int", 2, None), Interval("real", 0, 1, closed="neither"),
               Satisfies(lambda cv: hasattr(cv, "split") or (hasattr(cv, "__iter__")
                                                             and not isinstance(cv, str)),
                         "a cross-validation generator or an iterable of splits")],
        "warn_below": [Interval("int", 0, None)],
        "random_state": ["random_state"],
    }

    def _splits(self, X, y):
        n = len(y)
        if isinstance(self.cv, numbers.Real) and not isinstance(self.cv, numbers.Integral):
            # a float cv is the held-out fraction, in (0, 1) by _parameter_constraints
            n_cal = int(round(float(self.cv) * n))
            if n_cal < 1 or n - n_cal < 2:
                raise ValueError(f"cv={self.cv} leaves no usable split of {n} rows.")
            perm = check_random_state(self.random_state).permutation(n)
            return [(np.sort(perm[n_cal:]), np.sort(perm[:n_cal]))], True
        cv = check_cv(self.cv)
        n_splits = cv.get_n_splits(X, y)
        if n_splits > n:
            raise ValueError(f"cv has {n_splits} folds but there are only {n} samples.")
        return list(cv.split(X, y)), False

    def fit(self, X, y, **fit_params):
        """Fit on folds, calibrate on the held-out predictions, refit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        **fit_params : dict
            Passed to the wrapped estimator's ``fit`` (per-sample arrays are
            sliced with the rows).

        Returns
        -------
        self
        """
        from sklearn.utils.validation import _check_method_params

        validate_parameters(self)
        y_check = np.asarray(y, dtype=np.float64) if np.asarray(y).dtype.kind in "biuf" else None
        if y_check is not None and not np.all(np.isfinite(y_check)):
            row = int(np.flatnonzero(~np.isfinite(y_check.reshape(len(y_check), -1)).any(1))[0])
            raise ValueError(f"y contains NaN or inf (first at row {row}); remove or fill "
                             "those rows first.")
        Xv, _ = validate_data(self, X, y, multi_output=True, y_numeric=True,
                              ensure_min_samples=2, ensure_all_finite=False)
        X = self._keep_frame(X, Xv)
        y_arr = np.asarray(y, dtype=np.float64)
        base = _default_estimator() if self.estimator is None else self.estimator
        splits, single = self._splits(X, y_arr)
        n = len(y_arr)
        oof_mean = np.full(y_arr.shape, np.nan)
        oof_std = np.full(y_arr.shape, np.nan)
        folds, fold_of = [], np.full(n, -1)
        for k, (tr, te) in enumerate(splits):
            est = clone(base)
            est.fit(_safe_indexing(X, tr), y_arr[tr], **_check_method_params(X, fit_params, tr))
            m, s = _predict_with_std(est, _safe_indexing(X, te))
            oof_mean[te], oof_std[te] = m.reshape(oof_mean[te].shape), s.reshape(oof_std[te].shape)
            fold_of[te] = k
            folds.append(est)
        held = fold_of >= 0
        if not held.any():
            raise ValueError("cv produced no held-out rows.")
        self.oof_prediction_, self.oof_std_ = oof_mean[held], oof_std[held]
        self.oof_y_ = y_arr[held]
        self._fold_of = fold_of[held]
        if self.method == "scaling":
            self.calibrator_ = VarianceCalibrator(warn_below=self.warn_below).fit(
                self.oof_y_, self.oof_prediction_, self.oof_std_)
        else:
            self.calibrator_ = ConformalCalibrator(warn_below=self.warn_below).fit(
                self.oof_y_, self.oof_prediction_, np.maximum(self.oof_std_, 1e-300))
        if single:
            self.estimator_ = folds[0]
            self.fold_estimators_ = []
        else:
            self.estimator_ = clone(base).fit(X, y_arr, **_check_method_params(
                X, fit_params, np.arange(n)))
            self.fold_estimators_ = folds
        return self

    @staticmethod
    def _keep_frame(X, Xv):
        """DataFrames go to the wrapped estimator as they are (names); anything else numeric."""
        return X if hasattr(X, "columns") and hasattr(X, "iloc") else Xv

    def _checked(self, X):
        check_is_fitted(self, "calibrator_")
        return self._keep_frame(X, validate_data(self, X, reset=False, ensure_all_finite=False))

    def _raw(self, X):
        X = self._checked(X)
        return (X,) + _predict_with_std(self.estimator_, X)

    def _cv_plus(self, X, alpha):
        """CV+ interval (Barber et al. 2021) with normalised scores."""
        preds = [_predict_with_std(est, X) for est in self.fold_estimators_]
        y = _as_2d(self.oof_y_)
        mu_cal, s_cal = _as_2d(self.oof_prediction_), _as_2d(self.oof_std_)
        n_test = len(preds[0][0])
        lower = np.empty((n_test, y.shape[1]))
        upper = np.empty_like(lower)
        for j in range(y.shape[1]):
            keep = np.isfinite(y[:, j])
            R = np.abs(y[keep, j] - mu_cal[keep, j]) / np.maximum(s_cal[keep, j], 1e-300)
            k_of = self._fold_of[keep]
            mu = np.stack([_as_2d(m)[:, j] for m, _ in preds])  # (K, n_test)
            sd = np.stack([_as_2d(s)[:, j] for _, s in preds])
            n = len(R)
            rank = _conformal_rank(n, alpha)
            if rank > n:
                lower[:, j], upper[:, j] = -np.inf, np.inf
                continue
            step = max(1, 2**22 // max(n, 1))
            for a in range(0, n_test, step):
                b = slice(a, a + step)
                lo = mu[k_of, b].T - R[None, :] * sd[k_of, b].T  # (m, n)
                hi = mu[k_of, b].T + R[None, :] * sd[k_of, b].T
                upper[b, j] = np.partition(hi, rank - 1, axis=1)[:, rank - 1]
                lower[b, j] = -np.partition(-lo, rank - 1, axis=1)[:, rank - 1]
        return lower, upper

    def predict(self, X, return_std=False):
        """Predictions of ``estimator_`` and, optionally, the calibrated std.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default=False

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
        y_std : ndarray, same shape (target unit), only if ``return_std``
        """
        if not return_std:
            X = self._checked(X)
            return np.asarray(self.estimator_.predict(X), dtype=np.float64)
        X, mean, std = self._raw(X)
        if self.method == "conformal" and self.fold_estimators_:
            lo, hi = self._cv_plus(X, ALPHA_1SIGMA)
            return mean, (0.5 * (hi - lo)).reshape(mean.shape)
        return mean, self.calibrator_.std(std)

    def predict_interval(self, X, alpha=ALPHA_1SIGMA):
        """Central prediction interval of nominal coverage ``1 - alpha``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        alpha : float, default=0.3173
            Miscoverage (0.32 ~ 1 sigma, 0.05 ~ 2 sigma).

        Returns
        -------
        lower, upper : ndarray, shaped like the predictions (target unit)
        """
        alpha = _check_alpha(alpha)
        X, mean, std = self._raw(X)
        if self.method == "scaling":
            return gaussian_interval(mean, self.calibrator_.std(std), alpha)
        if self.fold_estimators_:
            return tuple(bound.reshape(mean.shape) for bound in self._cv_plus(X, alpha))
        return self.calibrator_.interval(mean, std, alpha)

    def predict_uncertainty(self, X):
        """Prediction and uncertainty parts (``method="scaling"``).

        Returns
        -------
        sklearn.utils.Bunch
            See :func:`uncertainty_parts`; ``model_std`` is the wrapped
            estimator's std times ``sqrt(a)``, ``intrinsic_std`` is ``b``.
        """
        if self.method != "scaling":
            raise ValueError("predict_uncertainty needs method='scaling'; conformal intervals "
                             "have no variance decomposition (use predict_interval).")
        _, mean, std = self._raw(X)
        return uncertainty_parts(mean, std, None, self.calibrator_)

    def __sklearn_tags__(self):
        from sklearn.utils import get_tags

        tags = super().__sklearn_tags__()
        inner = get_tags(_default_estimator() if self.estimator is None else self.estimator)
        tags.target_tags.multi_output = inner.target_tags.multi_output
        tags.input_tags.allow_nan = False
        tags.non_deterministic = inner.non_deterministic
        return tags
