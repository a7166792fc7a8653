"""Catalogue extras of the LAMOST M-dwarf Cycle-StarNet analysis (Zhang et al., Sect. 4).

* H-alpha activity (Sect. 4.3, Eq. 10): :func:`halpha_equivalent_width` in a
  +-7 A window and :func:`activity_flag` (active when EW > 0.75 A);
* spectral subtype (Sect. 4.4, Eqs. 11-12): :func:`tio5_index` and
  :func:`spectral_subtype_from_tio5`, ``SpT = -10.775 TiO5 + 8.2``;
* precision versus S/N (Sect. 4.1, Eq. 9): :func:`repeat_precision` turns
  repeat observations of the same stars into a per-S/N-bin precision, and
  :func:`fit_precision_snr` / :func:`precision_model` fit and evaluate
  ``err = a / SNR + b``.

The spectral indices take rest-frame spectra (e.g. the output of
:class:`~skstellar.preprocessing.velocity.RadialVelocityCorrector`) as a
:class:`~skstellar.spectrum.SpectrumBatch` or a 2-D flux array with its
wavelength grid. Band integrals use the linear interpolation between pixels,
so windows need not fall on pixel boundaries and any (also per-spectrum,
non-uniform) grid works. Wavelengths are in Angstrom; LAMOST's are vacuum,
and the defaults below are vacuum wavelengths.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from ..spectrum import SpectrumBatch

__all__ = [
    "ACTIVITY_THRESHOLD",
    "HALPHA_AIR",
    "HALPHA_CONTINUUM_WINDOWS",
    "HALPHA_VACUUM",
    "SPT_RANGE",
    "TIO5_CONTINUUM",
    "TIO5_NUMERATOR",
    "activity_flag",
    "fit_precision_snr",
    "halpha_equivalent_width",
    "precision_model",
    "repeat_precision",
    "spectral_subtype_from_tio5",
    "tio5_index",
]

#: H-alpha rest wavelength in vacuum [Angstrom] (LAMOST and SDSS spectra are vacuum).
HALPHA_VACUUM = 6564.61
#: H-alpha rest wavelength in standard air [Angstrom].
HALPHA_AIR = 6562.80
#: Default side bands [Angstrom, vacuum] for the H-alpha continuum level.
HALPHA_CONTINUUM_WINDOWS = ((6500.0, 6550.0), (6575.0, 6625.0))
#: EW above which a star is flagged chromospherically active [Angstrom] (Sect. 4.3).
ACTIVITY_THRESHOLD = 0.75
#: TiO5 band-head window [Angstrom] (Reid et al. 1995; Eq. 12).
TIO5_NUMERATOR = (7126.0, 7135.0)
#: TiO5 pseudo-continuum window [Angstrom] (Eq. 12).
TIO5_CONTINUUM = (7042.0, 7046.0)
#: Validity range of the SpT-TiO5 relation: -2 = K5, -1 = K7, 0..7 = M0..M7 (Sect. 4.4).
SPT_RANGE = (-2.0, 7.0)


# ------------------------------------------ Input handling and band integrals
def _wave_flux(X, wavelength):
    """-> (wave 1-D or 2-D, flux (n, p) float64, bad (n, p) bool, was_1d)."""
    if isinstance(X, SpectrumBatch):
        if wavelength is not None:
            raise ValueError("wavelength is taken from the SpectrumBatch; do not pass it too.")
        flux = np.asarray(X.flux, dtype=np.float64)
        padded = np.arange(flux.shape[1]) >= np.asarray(X.npix)[:, None]
        return np.asarray(X.wavelength, dtype=np.float64), flux, X.bad_pixels() | padded, False
    flux = np.asarray(X, dtype=np.float64)
    was_1d = flux.ndim == 1
    flux = np.atleast_2d(flux)
    if flux.ndim != 2:
        raise ValueError(f"flux must be 1-D or 2-D (n_spectra, n_pixels); got shape {flux.shape}.")
    if wavelength is None:
        raise ValueError(
            "A flux array needs its wavelength grid [A]: pass wavelength=..., or a SpectrumBatch."
        )
    wave = np.asarray(wavelength, dtype=np.float64)
    if wave.shape not in ((flux.shape[1],), flux.shape):
        raise ValueError(
            f"wavelength has shape {wave.shape}; expected ({flux.shape[1]},) or {flux.shape} "
            "for flux of that shape."
        )
    return wave, flux, ~np.isfinite(flux), was_1d


def _band_weights(wave, lo, hi):
    """Weights ``W`` such that ``(W * f).sum(-1)`` integrates the interpolated ``f`` over [lo, hi].

    ``wave`` (p,) or (n, p) is increasing [A], NaN-padded at the end; ``f`` is
    linearly interpolated between pixels. Returns ``W`` (1 or n, p) [A], non-zero
    only on the pixels the integral touches, and ``covered`` (1 or n,), whether
    [lo, hi] lies within the finite wavelength range.
    """
    w2 = np.atleast_2d(wave)
    a, b = w2[:, :-1], w2[:, 1:]
    with np.errstate(invalid="ignore"):
        left = np.clip(a, lo, hi)
        right = np.clip(b, lo, hi)
        length = right - left
        t = (0.5 * (left + right) - a) / (b - a)
    ok = np.isfinite(length) & (length > 0)
    length = np.where(ok, length, 0.0)
    t = np.where(ok, t, 0.0)
    W = np.zeros(w2.shape)
    W[:, :-1] += length * (1.0 - t)
    W[:, 1:] += length * t
    with np.errstate(invalid="ignore"):
        covered = (np.nanmin(w2, axis=1) <= lo) & (np.nanmax(w2, axis=1) >= hi)
    return W, covered


def _band_integral(wave, values, bad, lo, hi):
    """Integral over [lo, hi] of each row; NaN when uncovered or a used pixel is bad."""
    W, covered = _band_weights(wave, lo, hi)
    used = W > 0
    hit_bad = (used & bad).any(axis=1)
    integral = (W * np.where(used, values, 0.0)).sum(axis=1)
    return np.where(covered & ~hit_bad, integral, np.nan)


def _check_band(band, name):
    if not (isinstance(band, (tuple, list)) and len(band) == 2
            and all(isinstance(v, numbers.Real) and np.isfinite(v) for v in band)
            and band[0] < band[1]):
        raise ValueError(f"{name} must be a (lo, hi) pair of wavelengths [A] with lo < hi; got "
                         f"{band!r}.")
    return float(band[0]), float(band[1])


def _band_mean(wave, flux, bad, band):
    lo, hi = band
    return _band_integral(wave, flux, bad, lo, hi) / (hi - lo)


def _maybe_scalar(values, was_1d):
    return float(values[0]) if was_1d else values


# -------------------------------------------------------------------- H-alpha
def halpha_equivalent_width(X, *, wavelength=None, center=HALPHA_VACUUM, half_width=7.0,
                            continuum="windows", continuum_windows=HALPHA_CONTINUUM_WINDOWS):
    """Equivalent width of H-alpha, emission positive (Zhang et al. Eq. 10).

    ``EW = -integral_{center - hw}^{center + hw} (1 - F / F_C) d lambda``
    over a 14 A window (``half_width`` 7 A, after West et al. 2004, 2011).
    With the paper's leading minus sign an emission line gives a **positive**
    EW (and absorption a negative one), so that ``EW > 0.75 A`` flags activity
    (:func:`activity_flag`).

    Parameters
    ----------
    X : SpectrumBatch or array-like of shape (n_spectra, n_pixels) or (n_pixels,)
        Rest-frame spectra (any flux unit). Bad pixels (mask, ivar <= 0,
        non-finite flux; NaN in an array) inside the line window or the
        continuum bands make the EW NaN.
    wavelength : array-like of shape (n_pixels,) or (n_spectra, n_pixels), optional
        Wavelengths [Angstrom] of array input (required then).
    center : float, default=6564.61
        Line centre [Angstrom]. The default is the **vacuum** wavelength,
        right for LAMOST (vacuum) spectra; use :data:`HALPHA_AIR` (6562.80)
        for air wavelengths.
    half_width : float, default=7.0
        Half the integration window [Angstrom] (Sect. 4.3: +-7 A).
    continuum : {"windows", "normalized"} or array-like, default="windows"
        ``F_C``: "windows" = mean flux over ``continuum_windows`` (one level per
        spectrum); "normalized" = the flux is already continuum-normalised
        (``F_C = 1``, e.g. the output of
        :class:`~skstellar.preprocessing.continuum.ContinuumNormalizer` with
        ``mask="paper"``, whose continuum skips the H-alpha window); or an
        array of the flux's shape holding ``F_C`` per pixel.
    continuum_windows : sequence of (lo, hi), default=((6500, 6550), (6575, 6625))
        Side bands [Angstrom, vacuum] for ``continuum="windows"``. The paper
        does not list its continuum region; these bands avoid H-alpha and the
        TiO band head at 6651 A.

    Returns
    -------
    float or ndarray of shape (n_spectra,)
        EW [Angstrom]; NaN where the windows are not covered, contain bad
        pixels, or the continuum is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> wave = np.arange(6450.0, 6700.0, 0.5)
    >>> flux = 1 + 2.0 / np.sqrt(2 * np.pi) * np.exp(-0.5 * (wave - HALPHA_VACUUM) ** 2)
    >>> round(halpha_equivalent_width(flux, wavelength=wave), 3)
    2.0
    """
    wave, flux, bad, was_1d = _wave_flux(X, wavelength)
    if not (isinstance(half_width, numbers.Real) and half_width > 0):
        raise ValueError(f"half_width must be a positive number [A]; got {half_width!r}.")
    if not (isinstance(center, numbers.Real) and np.isfinite(center)):
        raise ValueError(f"center must be a finite wavelength [A]; got {center!r}.")
    lo, hi = float(center) - float(half_width), float(center) + float(half_width)
    # fc: the continuum F_C, one level per spectrum (n, 1) or one per pixel (n, p)
    if isinstance(continuum, str):
        if continuum == "normalized":
            fc = np.ones((1, 1))
        elif continuum == "windows":
            windows = [_check_band(tuple(w), "continuum_windows entry") for w in continuum_windows]
            if not windows:
                raise ValueError("continuum_windows is empty.")
            total = sum(_band_integral(wave, flux, bad, a, b) for a, b in windows)
            fc = (total / sum(b - a for a, b in windows))[:, None]
        else:
            raise ValueError(
                f"continuum must be 'windows', 'normalized' or an array; got {continuum!r}."
            )
    else:
        fc = np.asarray(continuum, dtype=np.float64)
        if fc.shape != np.shape(X if not isinstance(X, SpectrumBatch) else X.flux):
            raise ValueError(
                f"continuum array has shape {fc.shape}; it must match the flux "
                f"{np.shape(flux if not was_1d else flux[0])}."
            )
        fc = np.atleast_2d(fc)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = flux / np.where(fc > 0, fc, np.nan)
    ew = _band_integral(wave, ratio - 1.0, bad | ~np.isfinite(ratio), lo, hi)
    return _maybe_scalar(ew, was_1d)


def activity_flag(ew, threshold=ACTIVITY_THRESHOLD, undefined=0):
    """Chromospheric activity flag from the H-alpha EW (Sect. 4.3).

    Parameters
    ----------
    ew : float or array-like
        H-alpha equivalent widths [Angstrom], emission positive (as returned
        by :func:`halpha_equivalent_width`).
    threshold : float, default=0.75
        Active when ``EW > threshold`` [Angstrom].
    undefined : int, default=0
        Flag written where the EW is NaN. The paper's catalogue column
        "Activity" is 0 by default and 1 when emission is detected, so 0;
        use e.g. -1 to keep unmeasured spectra apart.

    Returns
    -------
    int or ndarray of int8
        1 active, 0 not active, ``undefined`` for NaN.
    """
    e = np.asarray(ew, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        flag = np.where(np.isnan(e), undefined, (e > threshold).astype(np.int8)).astype(np.int8)
    return int(flag) if flag.ndim == 0 else flag


# -------------------------------------------------- TiO5 and spectral subtype
def tio5_index(X, *, wavelength=None, numerator=TIO5_NUMERATOR, continuum=TIO5_CONTINUUM):
    """TiO5 band index: mean flux in 7126-7135 A over mean flux in 7042-7046 A (Eq. 12).

    Parameters
    ----------
    X : SpectrumBatch or array-like of shape (n_spectra, n_pixels) or (n_pixels,)
        Rest-frame spectra; the index is a flux ratio, so it does not matter
        whether they are continuum-normalised (as long as both windows are
        divided by the same smooth continuum, or none).
    wavelength : array-like, optional
        Wavelengths [Angstrom] of array input (required then).
    numerator, continuum : (lo, hi)
        Band-head and pseudo-continuum windows [Angstrom] (Reid et al. 1995
        as used by the paper). They are applied on the input's wavelength
        scale (vacuum for LAMOST, as the paper does); the 2 A air-vacuum
        difference is small against the 9 A and 4 A windows.

    Returns
    -------
    float or ndarray of shape (n_spectra,)
        TiO5 (dimensionless, ~1 for K dwarfs, falling to ~0.2 at M6); NaN
        when a window is not covered, holds a bad pixel, or the continuum
        mean is not positive. The paper writes -9999 in those cases.
    """
    wave, flux, bad, was_1d = _wave_flux(X, wavelength)
    num = _band_mean(wave, flux, bad, _check_band(numerator, "numerator"))
    den = _band_mean(wave, flux, bad, _check_band(continuum, "continuum"))
    with np.errstate(invalid="ignore", divide="ignore"):
        index = num / np.where(den > 0, den, np.nan)
    return _maybe_scalar(index, was_1d)


def spectral_subtype_from_tio5(tio5, out_of_range="keep"):
    """Spectral subtype from the TiO5 index: ``SpT = -10.775 TiO5 + 8.2`` (Eq. 11).

    Parameters
    ----------
    tio5 : float or array-like
        TiO5 index values (:func:`tio5_index`).
    out_of_range : {"keep", "nan"}, default="keep"
        The relation (Reid et al. 1995; Bochanski et al. 2007; scatter +-0.5
        subtype) holds for SpT -2 (K5) to 7 (M7): "keep" returns the formula's
        value anyway, "nan" replaces values outside [-2, 7] by NaN.

    Returns
    -------
    float or ndarray
        Subtype: -2 = K5, -1 = K7, 0..7 = M0..M7 (continuous). NaN for NaN
        TiO5.

    Examples
    --------
    >>> round(spectral_subtype_from_tio5(1.0), 3)
    -2.575
    """
    if out_of_range not in ("keep", "nan"):
        raise ValueError(f"out_of_range must be 'keep' or 'nan'; got {out_of_range!r}.")
    spt = -10.775 * np.asarray(tio5, dtype=np.float64) + 8.2
    if out_of_range == "nan":
        with np.errstate(invalid="ignore"):
            spt = np.where((spt >= SPT_RANGE[0]) & (spt <= SPT_RANGE[1]), spt, np.nan)
    return float(spt) if spt.ndim == 0 else spt


# ------------------------------------------------------- Precision versus S/N
def precision_model(snr, a, b):
    """The paper's precision model ``err = a / SNR + b`` (Eq. 9).

    Parameters
    ----------
    snr : float or array-like
        Signal-to-noise ratios (> 0).
    a : float
        Coefficient of 1/SNR [label unit].
    b : float
        Floor reached at high S/N [label unit].

    Returns
    -------
    float or ndarray
        Precision in the label's unit.
    """
    out = a / np.asarray(snr, dtype=np.float64) + b
    return float(out) if out.ndim == 0 else out


def fit_precision_snr(snr, err, sample_weight=None, return_cov=False):
    """Least-squares fit of ``err = a / SNR + b`` (Eq. 9).

    The model is linear in ``x = 1 / SNR``, so the fit is an exact weighted
    linear regression.

    Parameters
    ----------
    snr : array-like of shape (n,)
        S/N of each point (e.g. the ``snr`` column of :func:`repeat_precision`), > 0.
    err : array-like of shape (n,)
        Precision at that S/N [label unit].
    sample_weight : array-like of shape (n,), optional
        Non-negative weights (e.g. the number of pairs per bin); default equal.
    return_cov : bool, default=False
        Also return the 2x2 covariance of (a, b), scaled by the residual
        variance (needs more than 2 points).

    Returns
    -------
    a, b : float
        Coefficients [label unit].
    cov : ndarray of shape (2, 2)
        Only with ``return_cov``.

    Raises
    ------
    ValueError
        Non-finite values, S/N <= 0, fewer than 2 points or fewer than 2
        distinct S/N values.
    """
    s = np.asarray(snr, dtype=np.float64).ravel()
    e = np.asarray(err, dtype=np.float64).ravel()
    if s.shape != e.shape:
        raise ValueError(f"snr and err have different lengths ({s.size} and {e.size}).")
    for name, v in (("snr", s), ("err", e)):
        bad = ~np.isfinite(v)
        if bad.any():
            raise ValueError(
                f"{name} has {int(bad.sum())} non-finite value(s) (first at row "
                f"{int(np.argmax(bad))}); drop them before fitting."
            )
    if (s <= 0).any():
        raise ValueError(f"snr must be > 0; row {int(np.argmax(s <= 0))} has {s[s <= 0][0]!r}.")
    w = np.ones_like(s) if sample_weight is None else np.asarray(sample_weight, np.float64).ravel()
    if w.shape != s.shape or not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError("sample_weight must be finite, non-negative and one per point.")
    use = w > 0
    if use.sum() < 2 or np.unique(s[use]).size < 2:
        raise ValueError("Need at least 2 points with distinct S/N to fit err = a / SNR + b.")
    x = 1.0 / s
    A = np.column_stack([x, np.ones_like(x)])
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(A * sw[:, None], e * sw, rcond=None)
    a, b = float(coef[0]), float(coef[1])
    if not return_cov:
        return a, b
    n_used = int(use.sum())
    if n_used <= 2:
        raise ValueError("return_cov needs more than 2 points (residual variance).")
    resid = e - (a * x + b)
    s2 = float((w * resid**2).sum() / (n_used - 2))
    return a, b, s2 * np.linalg.inv((A * w[:, None]).T @ A)


def repeat_precision(values, object_id, snr, *, bins=10.0, min_observations=2, min_pairs=5,
                     statistic="std", names=None):
    """Per-measurement precision versus S/N from repeat observations (Sect. 4.1, Fig. 10).

    Observations of the same object (same ``object_id``) are paired
    consecutively in input order (n observations give n - 1 pairs). For a
    pair with per-measurement errors ``e(s_1)`` and ``e(s_2)`` the difference
    has variance ``e(s_1)**2 + e(s_2)**2``, so in each S/N bin
    ``scatter(differences) / sqrt(2)`` estimates the precision of a single
    measurement at the pair's effective S/N
    ``s_eff = sqrt(2 / (1 / s_1**2 + 1 / s_2**2))`` (exact when ``e`` is
    proportional to ``1 / S/N``). The paper instead takes the standard
    deviation of the repeats of stars observed more than three times
    (``min_observations=4`` selects those stars here) and bins in S/N with
    width 10; fit the result with :func:`fit_precision_snr`.

    Parameters
    ----------
    values : array-like of shape (n_obs,) or (n_obs, n_labels), or DataFrame
        Measured labels of every observation (e.g. RV [km/s], Teff [K]).
    object_id : array-like of shape (n_obs,)
        Star identifier (any hashable; missing ids (None/NaN) are ignored).
    snr : array-like of shape (n_obs,)
        S/N of every observation (> 0; non-finite ones are ignored).
    bins : float or array-like, default=10.0
        Bin width in S/N (bins start at 0), or explicit increasing edges.
    min_observations : int, default=2
        Only objects with at least this many (usable) observations are used.
    min_pairs : int, default=5
        Bins with fewer pairs are dropped.
    statistic : {"std", "robust"}, default="std"
        "std": root mean square of the differences over sqrt(2) (the
        differences have zero mean by symmetry); "robust": 1.4826 x median
        absolute difference over sqrt(2), insensitive to outliers.
    names : sequence of str, optional
        Label names for the output columns (default: DataFrame columns, or
        ``label0..``; a single 1-D label gives the column ``err``).

    Returns
    -------
    pandas.DataFrame
        One row per populated bin: ``snr_lo``, ``snr_hi`` (bin edges),
        ``snr`` (median effective S/N of its pairs), ``n_pairs`` and one
        ``err`` / ``err_<name>`` column per label (label unit). NaN label
        values drop only the pairs they occur in (per label).
    """
    frame = isinstance(values, pd.DataFrame)
    vals = values.to_numpy(dtype=np.float64) if frame else np.asarray(values, dtype=np.float64)
    single = vals.ndim == 1
    vals = vals.reshape(vals.shape[0], -1)
    n, k = vals.shape
    if names is not None:
        label_names = list(names)
    else:
        label_names = [str(c) for c in values.columns] if frame else [f"label{j}" for j in range(k)]
    if len(label_names) != k:
        raise ValueError(f"Got {len(label_names)} names for {k} label column(s).")
    s = np.asarray(snr, dtype=np.float64).ravel()
    ids = np.asarray(object_id, dtype=object).ravel()
    if s.shape[0] != n or ids.shape[0] != n:
        raise ValueError(
            f"values ({n} rows), object_id ({ids.shape[0]}) and snr ({s.shape[0]}) must have "
            "the same length."
        )
    if statistic not in ("std", "robust"):
        raise ValueError(f"statistic must be 'std' or 'robust'; got {statistic!r}.")
    if not (isinstance(min_observations, numbers.Integral) and min_observations >= 2):
        raise ValueError(f"min_observations must be an integer >= 2; got {min_observations!r}.")
    codes, _ = pd.factorize(pd.Series(ids), use_na_sentinel=True)
    with np.errstate(invalid="ignore"):
        usable = (codes >= 0) & np.isfinite(s) & (s > 0)
    counts = np.bincount(codes[usable], minlength=max(int(codes.max()) + 1, 1))
    keep = usable & (codes >= 0)
    keep[keep] &= counts[codes[keep]] >= min_observations
    idx = np.flatnonzero(keep)
    order = idx[np.argsort(codes[idx], kind="stable")]  # grouped by object, input order within
    same = codes[order[1:]] == codes[order[:-1]]
    i1, i2 = order[:-1][same], order[1:][same]
    s_eff = np.sqrt(2.0 / (1.0 / s[i1] ** 2 + 1.0 / s[i2] ** 2))
    diff = vals[i2] - vals[i1]

    if isinstance(bins, numbers.Real):
        if not bins > 0:
            raise ValueError(f"bins as a width must be > 0; got {bins!r}.")
        top = float(s_eff.max()) if s_eff.size else float(bins)
        edges = np.arange(0.0, top + bins, float(bins))
        if edges[-1] <= top:
            edges = np.append(edges, edges[-1] + bins)
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("bins must be a positive width or increasing edges (>= 2).")
    which = np.searchsorted(edges, s_eff, side="right") - 1
    inside = (which >= 0) & (which < edges.size - 1)
    nb = edges.size - 1
    n_pairs = np.bincount(which[inside], minlength=nb)
    med_snr = np.full(nb, np.nan)
    err = np.full((nb, k), np.nan)
    # per bin (tens of bins, not per star): medians and scatters of its pairs
    for j in np.flatnonzero(n_pairs >= min_pairs):
        sel = inside & (which == j)
        med_snr[j] = np.median(s_eff[sel])
        d = diff[sel]
        ok = np.isfinite(d)
        with np.errstate(invalid="ignore"):
            if statistic == "std":
                ms = np.where(ok, d, 0.0) ** 2
                err[j] = np.sqrt(ms.sum(axis=0) / np.maximum(ok.sum(axis=0), 1) / 2.0)
            else:
                err[j] = 1.4826 * np.nanmedian(np.where(ok, np.abs(d), np.nan), axis=0) / np.sqrt(2)
        few = ok.sum(axis=0) < min_pairs
        err[j, few] = np.nan
    rows = n_pairs >= min_pairs
    out = pd.DataFrame({
        "snr_lo": edges[:-1][rows],
        "snr_hi": edges[1:][rows],
        "snr": med_snr[rows],
        "n_pairs": n_pairs[rows],
    })
    if single and names is None and not frame:
        out["err"] = err[rows, 0]
    else:
        for j, name in enumerate(label_names):
            out[f"err_{name}"] = err[rows, j]
    return out
