"""Accuracy and calibration metrics for predicted stellar parameters.

This module holds the numbers used to judge a regressor's output against a
reference catalogue:

* point-estimate accuracy -- :func:`residuals`, :func:`bias`, :func:`rmse`,
  :func:`mad`, :func:`robust_std`, :func:`pearson`, :func:`spearman` and the
  one-call :func:`residual_summary`;
* accuracy as a function of another quantity (S/N, colour, magnitude, ...)
  -- :func:`binned_statistics`;
* calibration of predicted uncertainties -- :func:`zscore` and
  :func:`calibration_summary`.

Conventions
-----------
Sign
    A *residual* is always ``prediction - truth`` (``y_pred - y_true``), so a
    positive :func:`bias` means the model over-predicts. The one exception is
    the z-score, defined as ``(y_true - y_pred) / y_std``; its sign is the
    opposite of the residual's, which matters only for ``zscore_mean``.
Units
    Residual statistics (``mean``, ``median``, ``std``, ``mad``,
    ``robust_std``, ``rmse``) carry the unit of the target (e.g. dex for
    [Fe/H], K for Teff). Z-scores, fractions, correlation coefficients and
    p-values are dimensionless.
Missing values
    Functions taking a ``nan_policy`` either raise a :class:`ValueError`
    that reports how many NaNs were found (``"raise"``, the default) or drop
    every row in which any input is NaN (``"omit"``). Infinite values are not
    treated as missing.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import pandas as pd
from scipy import special, stats

__all__ = [
    "ROBUST_STD_FACTOR",
    "bias",
    "binned_statistics",
    "calibration_summary",
    "mad",
    "pearson",
    "residual_summary",
    "residuals",
    "rmse",
    "robust_std",
    "spearman",
    "zscore",
]

#: Ratio of the standard deviation to the median absolute deviation of a
#: normal distribution, ``1 / Phi^-1(3/4)``.
ROBUST_STD_FACTOR = 1.4826

_NAN_POLICIES = ("raise", "omit")


# --------------------------------------------------------------- input handling
def to_float_array(x, name):
    """Convert an array-like (list, ndarray, Series, DataFrame) to floats."""
    if hasattr(x, "to_numpy"):
        try:
            return x.to_numpy(dtype=float, na_value=np.nan)
        except TypeError:  # objects whose to_numpy has no na_value keyword
            return np.asarray(x.to_numpy(), dtype=float)
    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc


def _check_nan_policy(nan_policy):
    if nan_policy not in _NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {_NAN_POLICIES}, got {nan_policy!r}")


def _prepare(arrays, names, nan_policy="raise", ndim=(1,)):
    """``arrays`` (named ``names`` in messages) as float arrays of one shape, NaN policy applied.

    ``ndim`` lists the accepted numbers of dimensions. ``"omit"`` drops every
    row (first axis) in which any input is NaN; ``"keep"`` (internal, for the
    per-target omission of 2-D input) leaves NaNs in place.
    """
    if nan_policy != "keep":
        _check_nan_policy(nan_policy)
    out = []
    for arr, name in zip(arrays, names):
        a = to_float_array(arr, name)
        if a.ndim not in ndim:
            allowed = " or ".join(f"{d}-D" for d in ndim)
            raise ValueError(f"{name} must be {allowed}, got shape {a.shape}")
        if a.shape[0] == 0:
            raise ValueError(f"{name} is empty")
        out.append(a)
    shape = out[0].shape
    for a, name in zip(out[1:], names[1:]):
        if a.shape[0] != shape[0]:
            raise ValueError(
                f"{names[0]} and {name} have different lengths ({shape[0]} and {a.shape[0]})"
            )
        if a.shape != shape:
            raise ValueError(f"{names[0]} and {name} have different shapes ({shape} and {a.shape})")

    nan_masks = [np.isnan(a) for a in out]
    n_nan = [int(m.sum()) for m in nan_masks]
    if sum(n_nan) == 0 or nan_policy == "keep":
        return out
    if nan_policy == "raise":
        detail = ", ".join(f"{k} in {name}" for k, name in zip(n_nan, names) if k)
        raise ValueError(
            f"inputs contain NaN values ({detail}); clean them or pass "
            "nan_policy='omit' to drop those rows"
        )
    keep = ~np.any([m if m.ndim == 1 else m.any(axis=1) for m in nan_masks], axis=0)
    if not keep.any():
        raise ValueError("no rows left after omitting NaN values")
    return [a[keep] for a in out]


def _prepare_per_target(arrays, names, nan_policy):
    """:func:`_prepare` for 1-D or 2-D input whose ``"omit"`` acts per target later."""
    _check_nan_policy(nan_policy)
    return _prepare(arrays, names, "keep" if nan_policy == "omit" else "raise", ndim=(1, 2))


def _prepare_std(y_std, shape):
    """Broadcast ``y_std`` (scalar or array) to ``shape`` as floats."""
    s = to_float_array(y_std, "y_std")
    if s.ndim == 0:
        return np.full(shape, float(s))
    return s


def _check_positive_std(s):
    for bad, rule, found in ((~np.isfinite(s), "finite", "non-finite value(s)"),
                             (s <= 0, "strictly positive", "value(s) <= 0")):
        if bad.any():
            raise ValueError(f"y_std must be {rule}; found {int(bad.sum())} {found}")


# ---------------------------------- kernels on clean 1-D arrays (no validation)
def _corr(func, a, b):
    """Correlation coefficient, NaN when undefined (n < 2 or constant input)."""
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(func(a, b).statistic)


#: Each statistic of a residual array (those :func:`binned_statistics` understands), NaN
#: where it is undefined (too few values).
_KERNELS = {
    "n": lambda r: int(r.size),
    "mean": lambda r: float(np.mean(r)) if r.size else np.nan,
    "median": lambda r: float(np.median(r)) if r.size else np.nan,
    "std": lambda r: float(np.std(r, ddof=1)) if r.size > 1 else np.nan,
    "robust_std": lambda r: ROBUST_STD_FACTOR * _KERNELS["mad"](r),
    "mad": lambda r: float(np.median(np.abs(r - np.median(r)))) if r.size else np.nan,
    "rmse": lambda r: float(np.sqrt(np.mean(r**2))) if r.size else np.nan,
}


# ------------------------------------------------------ point-estimate accuracy
def residuals(y_true, y_pred, nan_policy="raise"):
    """Residuals ``y_pred - y_true``.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Reference values, in the unit of the target (e.g. dex).
    y_pred : array-like of shape (n,)
        Predicted values, same unit as ``y_true``.
    nan_policy : {"raise", "omit"}, default="raise"
        ``"raise"`` rejects NaNs; ``"omit"`` drops the pairs containing one
        (the output is then shorter than the inputs).

    Returns
    -------
    ndarray of shape (n,)
        Prediction minus truth, in the unit of the target.

    Raises
    ------
    ValueError
        On empty input, length mismatch, non-1-D input or NaNs with
        ``nan_policy="raise"``.
    """
    t, p = _prepare([y_true, y_pred], ["y_true", "y_pred"], nan_policy)
    return p - t


def bias(y_true, y_pred, nan_policy="raise"):
    """Mean residual (``mean(y_pred - y_true)``).

    Positive values mean the predictions are systematically too high.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Reference and predicted values in the unit of the target.
    nan_policy : {"raise", "omit"}, default="raise"
        How NaNs are treated; see the module docstring.

    Returns
    -------
    float
        Bias in the unit of the target.
    """
    return _KERNELS["mean"](residuals(y_true, y_pred, nan_policy))


def rmse(y_true, y_pred, nan_policy="raise"):
    """Root-mean-square error ``sqrt(mean((y_pred - y_true)**2))``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Reference and predicted values in the unit of the target.
    nan_policy : {"raise", "omit"}, default="raise"
        How NaNs are treated; see the module docstring.

    Returns
    -------
    float
        RMSE in the unit of the target (includes the bias).
    """
    return _KERNELS["rmse"](residuals(y_true, y_pred, nan_policy))


def mad(x, nan_policy="raise"):
    """Median absolute deviation ``median(|x - median(x)|)`` (unscaled).

    Parameters
    ----------
    x : array-like of shape (n,)
        Values, any unit (typically residuals).
    nan_policy : {"raise", "omit"}, default="raise"
        How NaNs are treated; see the module docstring.

    Returns
    -------
    float
        MAD in the unit of ``x``. For a normal distribution it equals
        ``0.6745 * sigma``; see :func:`robust_std` for the scaled version.
    """
    return _KERNELS["mad"](*_prepare([x], ["x"], nan_policy))


def robust_std(x, nan_policy="raise"):
    """Outlier-resistant standard deviation, ``1.4826 * MAD``.

    Parameters
    ----------
    x : array-like of shape (n,)
        Values, any unit (typically residuals).
    nan_policy : {"raise", "omit"}, default="raise"
        How NaNs are treated; see the module docstring.

    Returns
    -------
    float
        Robust scatter in the unit of ``x``; equals the standard deviation
        for normally distributed data.
    """
    return ROBUST_STD_FACTOR * mad(x, nan_policy)


def pearson(y_true, y_pred, nan_policy="raise"):
    """Pearson linear correlation coefficient between truth and prediction.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Reference and predicted values.
    nan_policy : {"raise", "omit"}, default="raise"
        How NaNs are treated; see the module docstring.

    Returns
    -------
    float
        Coefficient in [-1, 1] (dimensionless); NaN when fewer than two
        pairs are given or either input is constant.
    """
    return _corr(stats.pearsonr, *_prepare([y_true, y_pred], ["y_true", "y_pred"], nan_policy))


def spearman(y_true, y_pred, nan_policy="raise"):
    """Spearman rank correlation coefficient between truth and prediction.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Reference and predicted values.
    nan_policy : {"raise", "omit"}, default="raise"
        How NaNs are treated; see the module docstring.

    Returns
    -------
    float
        Coefficient in [-1, 1] (dimensionless); NaN when fewer than two
        pairs are given or either input is constant.
    """
    return _corr(stats.spearmanr, *_prepare([y_true, y_pred], ["y_true", "y_pred"], nan_policy))


def _target_names(y, k, target_names):
    if target_names is None:
        return list(y.columns) if isinstance(y, pd.DataFrame) else list(range(k))
    names = list(target_names)
    if len(names) != k:
        raise ValueError(f"target_names has {len(names)} entries for {k} targets")
    return names


def _summary_per_target(arrays, y_true, target_names, summarise, what):
    """``summarise(*columns)`` of the rows without NaN in any input, per target.

    One dict for 1-D ``arrays``; for 2-D ones a DataFrame with one row per
    target (column), each target dropping its own NaN rows.
    """
    def summarise_rows(cols, message):
        keep = ~np.any([np.isnan(c) for c in cols], axis=0)
        if not keep.any():
            raise ValueError(message)
        return summarise(*(c[keep] for c in cols))

    if arrays[0].ndim == 1:
        return summarise_rows(arrays, "no rows left after omitting NaN values")
    names = _target_names(y_true, arrays[0].shape[1], target_names)
    rows = [summarise_rows([a[:, j] for a in arrays], f"target {name!r} has no non-NaN {what}")
            for j, name in enumerate(names)]
    return pd.DataFrame(rows, index=pd.Index(names, name="target"))


def _residual_summary_1d(t, p):
    r = p - t
    out = {name: kernel(r) for name, kernel in _KERNELS.items()}
    out["pearson"] = _corr(stats.pearsonr, t, p)
    out["spearman"] = _corr(stats.spearmanr, t, p)
    return out


def residual_summary(y_true, y_pred, nan_policy="raise", target_names=None):
    """Summary statistics of the residuals ``y_pred - y_true``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,) or (n, n_targets)
        Reference and predicted values in the unit of each target.
    nan_policy : {"raise", "omit"}, default="raise"
        How NaNs are treated. For 2-D input, ``"omit"`` works per target
        (a NaN in one target does not drop the other targets' values).
    target_names : sequence of str, optional
        Row labels for 2-D input; defaults to the columns of a DataFrame
        ``y_true`` or to ``0 .. n_targets - 1``.

    Returns
    -------
    dict or pandas.DataFrame
        For 1-D input a dict with keys

        ``n``
            number of pairs used (int);
        ``mean``, ``median``
            mean (= :func:`bias`) and median residual, unit of the target;
        ``std``
            sample standard deviation (``ddof=1``; NaN if n < 2);
        ``robust_std``
            ``1.4826 * mad``;
        ``mad``
            *unscaled* median absolute deviation of the residuals about
            their median;
        ``rmse``
            root-mean-square residual;
        ``pearson``, ``spearman``
            correlation coefficients between truth and prediction
            (dimensionless).

        For 2-D input a DataFrame with those columns and one row per target.
    """
    t, p = _prepare_per_target([y_true, y_pred], ["y_true", "y_pred"], nan_policy)
    return _summary_per_target([t, p], y_true, target_names, _residual_summary_1d, "pairs")


# -------------------------------------------------------------- binned accuracy
def _bin_edges(x, bins):
    if isinstance(bins, numbers.Integral) and not isinstance(bins, bool):
        if bins < 1:
            raise ValueError(f"bins must be a positive integer, got {bins}")
        lo, hi = float(np.min(x)), float(np.max(x))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError("x must be finite to build equal-width bins")
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        return np.linspace(lo, hi, int(bins) + 1)
    edges = to_float_array(bins, "bins")
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError("bin edges must be a 1-D sequence of at least two values")
    if not np.all(np.isfinite(edges)):
        raise ValueError("bin edges must be finite")
    if np.any(np.diff(edges) <= 0):
        raise ValueError("bin edges must be strictly increasing")
    return edges


def binned_statistics(
    x,
    y_true,
    y_pred,
    bins=10,
    statistics=("n", "mean", "median", "std", "robust_std"),
    y_std=None,
    nan_policy="raise",
):
    """Residual statistics in bins of an arbitrary quantity ``x``.

    Parameters
    ----------
    x : array-like of shape (n,)
        Quantity to bin on (S/N, colour in mag, magnitude, Teff in K, ...).
    y_true, y_pred : array-like of shape (n,)
        Reference and predicted values in the unit of the target.
    bins : int or array-like, default=10
        Number of equal-width bins spanning ``[min(x), max(x)]``, or the
        explicit, strictly increasing bin edges (unit of ``x``). Bins are
        half-open ``[lo, hi)`` except the last, which includes its upper
        edge; points outside the edges are ignored.
    statistics : sequence of str, default=("n", "mean", "median", "std", "robust_std")
        Residual statistics to compute, any of ``"n"``, ``"mean"``,
        ``"median"``, ``"std"`` (``ddof=1``), ``"robust_std"``, ``"mad"``
        (unscaled) and ``"rmse"``.
    y_std : array-like of shape (n,) or float, optional
        Predicted 1-sigma uncertainties (unit of the target, > 0). When
        given, the columns ``median_sigma`` (median ``y_std`` in the bin) and
        ``zscore_std`` (standard deviation of :func:`zscore` in the bin,
        dimensionless) are added.
    nan_policy : {"raise", "omit"}, default="raise"
        How NaNs in any input are treated; see the module docstring.

    Returns
    -------
    pandas.DataFrame
        One row per bin with columns ``bin_lo``, ``bin_hi``, ``bin_center``
        (unit of ``x``) followed by the requested statistics. Empty bins
        have ``n = 0`` and NaN elsewhere.
    """
    statistics = [statistics] if isinstance(statistics, str) else list(statistics)
    unknown = [s for s in statistics if s not in tuple(_KERNELS)]
    if unknown:
        raise ValueError(f"unknown statistic(s) {unknown}; choose from {tuple(_KERNELS)}")
    arrays = [x, y_true, y_pred]
    if y_std is not None:
        arrays.append(_prepare_std(y_std, np.shape(to_float_array(y_true, "y_true"))))
    xa, t, p, *rest = _prepare(arrays, ["x", "y_true", "y_pred", "y_std"], nan_policy)
    s = rest[0] if rest else None
    if s is not None:
        _check_positive_std(s)

    edges = _bin_edges(xa, bins)
    n_bins = edges.size - 1
    idx = np.searchsorted(edges, xa, side="right") - 1
    idx[xa == edges[-1]] = n_bins - 1  # close the last bin on the right
    inside = (idx >= 0) & (idx < n_bins)

    # Sort once by bin, then split: each bin's values are contiguous.
    order = np.argsort(idx[inside], kind="stable")
    split_at = np.cumsum(np.bincount(idx[inside], minlength=n_bins))[:-1]

    table = {
        "bin_lo": edges[:-1],
        "bin_hi": edges[1:],
        "bin_center": 0.5 * (edges[:-1] + edges[1:]),
    }
    # (column, statistic, values): the residuals' statistics, then those of y_std and z
    res = p - t
    columns = [(name, name, res) for name in statistics]
    if s is not None:
        columns += [("median_sigma", "median", s), ("zscore_std", "std", (t - p) / s)]
    for column, stat, values in columns:
        table[column] = [_KERNELS[stat](g) for g in np.split(values[inside][order], split_at)]
    return pd.DataFrame(table)


# ------------------------------------------------------ uncertainty calibration
def zscore(y_true, y_pred, y_std, nan_policy="raise"):
    """Standardised errors ``(y_true - y_pred) / y_std``.

    Note the sign: this is minus the residual divided by the uncertainty.
    For well-calibrated Gaussian uncertainties the z-scores follow N(0, 1).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Reference and predicted values in the unit of the target.
    y_std : array-like of shape (n,) or float
        Predicted 1-sigma uncertainties, same unit, strictly positive.
    nan_policy : {"raise", "omit"}, default="raise"
        How NaNs (in any of the three inputs) are treated.

    Returns
    -------
    ndarray of shape (n,)
        Dimensionless z-scores.

    Raises
    ------
    ValueError
        If any ``y_std`` is <= 0 or infinite, on empty/mismatched input or
        on NaNs with ``nan_policy="raise"``.
    """
    s = _prepare_std(y_std, np.shape(to_float_array(y_true, "y_true")))
    t, p, s = _prepare([y_true, y_pred, s], ["y_true", "y_pred", "y_std"], nan_policy)
    _check_positive_std(s)
    return (t - p) / s


#: Fraction of a standard normal within 1, 2 and 3 sigma of the mean.
_EXPECTED_WITHIN = {k: float(special.erf(k / np.sqrt(2.0))) for k in (1, 2, 3)}


def _calibration_1d(t, p, s):
    _check_positive_std(s)
    z = (t - p) / s
    out = {
        "n": int(z.size),
        "zscore_mean": _KERNELS["mean"](z),
        "zscore_std": _KERNELS["std"](z),
        "zscore_robust_std": _KERNELS["robust_std"](z),
    }
    absz = np.abs(z)
    for k, expected in _EXPECTED_WITHIN.items():
        out[f"frac_within_{k}sigma"] = float(np.mean(absz <= k))
        out[f"expected_within_{k}sigma"] = expected
    out["ks_pvalue"] = float(stats.kstest(z, "norm").pvalue)
    return out


def calibration_summary(y_true, y_pred, y_std, nan_policy="raise", target_names=None):
    """How well predicted uncertainties describe the actual errors.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,) or (n, n_targets)
        Reference and predicted values in the unit of each target.
    y_std : array-like of the same shape, or float
        Predicted 1-sigma uncertainties in the same unit, strictly positive.
    nan_policy : {"raise", "omit"}, default="raise"
        How NaNs are treated. For 2-D input, ``"omit"`` works per target.
    target_names : sequence of str, optional
        Row labels for 2-D input; defaults to the columns of a DataFrame
        ``y_true`` or to ``0 .. n_targets - 1``.

    Returns
    -------
    dict or pandas.DataFrame
        For 1-D input a dict of dimensionless numbers computed from the
        z-scores of :func:`zscore`:

        ``n``
            number of rows used (int);
        ``zscore_mean``, ``zscore_std``, ``zscore_robust_std``
            mean, sample standard deviation (``ddof=1``) and
            ``1.4826 * MAD`` of the z-scores; a std above 1 means the
            uncertainties are underestimated, below 1 overestimated;
        ``frac_within_{1,2,3}sigma``
            fraction of rows with ``|z| <= 1, 2, 3``;
        ``expected_within_{1,2,3}sigma``
            the same fractions for N(0, 1): 0.683, 0.954, 0.997;
        ``ks_pvalue``
            p-value of the Kolmogorov-Smirnov test of the z-scores
            against N(0, 1).

        For 2-D input a DataFrame with those columns, one row per target.
    """
    _check_nan_policy(nan_policy)  # checked before y_true is read
    t = to_float_array(y_true, "y_true")
    s = _prepare_std(y_std, t.shape)
    t, p, s = _prepare_per_target([t, y_pred, s], ["y_true", "y_pred", "y_std"], nan_policy)
    return _summary_per_target([t, p, s], y_true, target_names, _calibration_1d, "rows")


def coverage_curve(y_true, y_pred, y_std, nominal=None, nan_policy="raise"):
    """Observed coverage of central Gaussian intervals against their nominal coverage.

    For each nominal level ``c`` the interval is ``y_pred -+ k sigma`` with
    ``k = Phi^-1((1 + c) / 2)`` (``c = 0.683`` gives ``k = 1``); for
    calibrated Gaussian uncertainties the observed fraction of ``y_true``
    inside equals ``c`` (the diagonal of a reliability diagram).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Reference and predicted values (target unit).
    y_std : array-like of shape (n,) or float
        Predicted 1-sigma uncertainties, strictly positive (target unit).
    nominal : array-like of float in (0, 1), optional
        Nominal coverages; default 0.05, 0.10, ..., 0.95 and 0.99.
    nan_policy : {"raise", "omit"}, default="raise"

    Returns
    -------
    pandas.DataFrame
        Columns ``nominal``, ``observed`` (fractions) and ``k`` (interval
        half-width in sigma), one row per level.
    """
    z = zscore(y_true, y_pred, y_std, nan_policy=nan_policy)
    if z.ndim != 1:
        raise ValueError("coverage_curve takes 1-D inputs (one target at a time).")
    if nominal is None:
        nominal = np.append(np.arange(0.05, 0.951, 0.05), 0.99)
    nominal = np.asarray(nominal, dtype=np.float64)
    if nominal.ndim != 1 or np.any((nominal <= 0) | (nominal >= 1)):
        raise ValueError("nominal coverages must be a 1-D array of values in (0, 1).")
    k = stats.norm.ppf(0.5 * (1.0 + nominal))
    observed = np.mean(np.abs(z)[None, :] <= k[:, None], axis=1)
    return pd.DataFrame({"nominal": nominal, "observed": observed, "k": k})

