"""Spectra input of the spectrum transformers: batches and lists of tuples, one view.

:func:`as_spectra` turns a :class:`~skstellar.spectrum.SpectrumBatch` or a list
of ``(wavelength, flux[, ivar])`` tuples (each spectrum on its own grid) into
one internal view with trailing-NaN-padded wavelengths, checking shapes;
:func:`_validate_block` and :func:`_check_wavelengths` check that wavelengths
[Angstrom] are finite and strictly increasing and say where they are not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils.validation import check_array, validate_data

from ..spectrum import SpectrumBatch

__all__ = ["as_spectra", "batch_like", "forget_input_features", "validate_flux_array"]


def forget_input_features(estimator, *fitted):
    """Delete ``n_features_in_``, ``feature_names_in_`` and ``fitted`` left by an earlier ``fit``.

    For stateless transformers refitted on input of another layout, e.g.
    spectra of another length (or a :class:`~skstellar.spectrum.SpectrumBatch`,
    which sets neither).

    Parameters
    ----------
    estimator : estimator
        The transformer.
    *fitted : str
        Names of more fitted attributes to delete.
    """
    for attr in ("n_features_in_", "feature_names_in_", *fitted):
        if attr in estimator.__dict__:
            delattr(estimator, attr)


def validate_flux_array(estimator, X, reset, **check_params):
    """Check the 2-D flux array (float64/float32, NaN allowed) of a stateless spectrum transformer.

    Parameters
    ----------
    estimator : estimator
        The transformer: ``n_features_in_`` is set when ``reset`` and checked
        when an earlier ``fit`` saw an array (``check_array`` alone otherwise).
    X : array-like of shape (n_spectra, n_pixels)
        Fluxes (any unit), NaN at masked pixels.
    reset : bool
        True in ``fit``.
    **check_params
        More arguments of ``check_array`` (e.g. ``ensure_min_features``).

    Returns
    -------
    ndarray of shape (n_spectra, n_pixels)
    """
    kw = dict(dtype=(np.float64, np.float32), ensure_all_finite="allow-nan", **check_params)
    if reset or hasattr(estimator, "n_features_in_"):
        return validate_data(estimator, X, reset=reset, **kw)
    return check_array(X, **kw)


def batch_like(X, flux, ivar, mask, wavelength=None):
    """A new batch with the given arrays and copies of the other fields of ``X``.

    Parameters
    ----------
    X : SpectrumBatch
        The input batch; its ``meta`` and ``npix`` (and wavelengths, unless
        given) are copied into the result.
    flux, ivar, mask : ndarray or None
        The new flux (any unit), inverse variance [flux**-2] and bad-pixel mask.
    wavelength : ndarray, optional
        New wavelengths [Angstrom]; default a copy of ``X.wavelength``.

    Returns
    -------
    SpectrumBatch
    """
    return SpectrumBatch(
        wavelength=X.wavelength.copy() if wavelength is None else wavelength,
        flux=flux,
        ivar=ivar,
        mask=mask,
        meta=None if X.meta is None else X.meta.copy(),
        npix=X.npix.copy(),
    )


@dataclass
class _Spectra:
    """Internal view of a batch: trailing-NaN-padded wavelengths, raw arrays."""

    wave: np.ndarray  # (n_pixels,) shared or (n, n_pixels); NaN padding at the end
    flux: np.ndarray  # (n, n_pixels), floating
    ivar: np.ndarray | None
    mask: np.ndarray | None
    meta: object = None

    def __len__(self):
        return self.flux.shape[0]

    def rows(self, start, stop):
        w = self.wave if self.wave.ndim == 1 else self.wave[start:stop]
        sl = slice(start, stop)
        return (
            w,
            self.flux[sl],
            None if self.ivar is None else self.ivar[sl],
            None if self.mask is None else self.mask[sl],
        )


def _float_flux(a):
    a = np.asarray(a)
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    return a


def _from_list(X):
    n = len(X)
    waves, fluxes, ivars = [], [], []
    for i, item in enumerate(X):  # conversion of a Python list: one pass over its items
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise ValueError(
                f"Spectrum {i}: expected a (wavelength, flux) or (wavelength, flux, ivar) "
                f"tuple; got {type(item).__name__}"
                + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
                + "."
            )
        waves.append(np.asarray(item[0], dtype=np.float64))
        fluxes.append(np.asarray(item[1]))
        if len(item) == 3:
            ivars.append(np.asarray(item[2], dtype=np.float64))
    if len(ivars) not in (0, n):
        raise ValueError(
            f"{len(ivars)} of {n} spectra carry an ivar array: give it for all of them or for none."
        )
    for what, arrays in (("wavelength", waves), ("flux", fluxes), ("ivar", ivars)):
        bad = [i for i, a in enumerate(arrays) if a.ndim != 1]
        if bad:
            raise ValueError(
                f"Spectrum {bad[0]}: {what} must be 1-D; got shape {arrays[bad[0]].shape}."
            )
    npix = np.fromiter((a.shape[0] for a in fluxes), dtype=np.intp, count=n)
    for what, arrays in (("wavelength", waves), ("ivar", ivars)):  # (no ivars: nothing to check)
        mismatch = [i for i, a in enumerate(arrays) if a.shape[0] != npix[i]]
        if mismatch:
            i = mismatch[0]
            raise ValueError(
                f"Spectrum {i}: {what} has {arrays[i].shape[0]} pixels but flux has {npix[i]}."
            )
    p = int(npix.max())
    inside = np.arange(p) < npix[:, None]
    dtype = np.result_type(*[a.dtype for a in fluxes])
    if dtype.kind != "f":
        dtype = np.dtype(np.float64)
    wave = np.full((n, p), np.nan)
    wave[inside] = np.concatenate(waves)
    flux = np.full((n, p), np.nan, dtype=dtype)
    flux[inside] = np.concatenate(fluxes)
    ivar = None
    if ivars:
        ivar = np.zeros((n, p))
        ivar[inside] = np.concatenate(ivars)
    return _Spectra(wave, flux, ivar, None, None)


def _from_batch(X):
    flux = _float_flux(X.flux)
    if flux.ndim != 2:
        raise ValueError(f"SpectrumBatch flux must be 2-D; got shape {flux.shape}.")
    n, p = flux.shape
    wave = np.asarray(X.wavelength, dtype=np.float64)
    if wave.ndim == 1:
        if wave.shape[0] != p:
            raise ValueError(
                f"Shared wavelength grid has {wave.shape[0]} pixels but flux has {p}."
            )
    elif wave.shape != (n, p):
        raise ValueError(f"wavelength shape {wave.shape} does not match flux shape {(n, p)}.")
    ivar = None if X.ivar is None else np.asarray(X.ivar)
    mask = None if X.mask is None else np.asarray(X.mask, dtype=bool)
    for name, a in (("ivar", ivar), ("mask", mask)):
        if a is not None and a.shape != (n, p):
            raise ValueError(f"{name} shape {a.shape} does not match flux shape {(n, p)}.")
    npix = np.full(n, p, dtype=np.intp) if X.npix is None else np.asarray(X.npix)
    if npix.shape != (n,):
        raise ValueError(f"npix has shape {npix.shape}; expected ({n},).")
    out_of_range = (npix < 0) | (npix > p)
    if out_of_range.any():
        i = int(np.argmax(out_of_range))
        raise ValueError(f"Spectrum {i}: npix = {npix[i]} is outside [0, {p}].")
    if (npix < p).any():  # pixels past npix are padding whatever their wavelength
        wave = np.where(np.arange(p) < npix[:, None], wave, np.nan)
    return _Spectra(wave, flux, ivar, mask, X.meta)


def as_spectra(X):
    """SpectrumBatch or list of tuples -> _Spectra; anything else -> None.

    Parameters
    ----------
    X : SpectrumBatch, list of tuples, or anything else
        A batch, or a list of ``(wavelength, flux[, ivar])`` tuples of 1-D
        arrays (wavelengths in Angstrom).

    Returns
    -------
    _Spectra or None
        Trailing-NaN-padded wavelengths and the raw flux/ivar/mask arrays;
        None when ``X`` is neither (e.g. a plain 2-D array).

    Raises
    ------
    ValueError
        For inconsistent shapes or an empty batch.
    """
    if isinstance(X, SpectrumBatch):
        sp = _from_batch(X)
    elif (isinstance(X, (list, tuple)) and len(X) and isinstance(X[0], (tuple, list))
          and len(X[0]) in (2, 3) and np.ndim(X[0][0]) == 1):  # (wavelength, flux[, ivar])
        sp = _from_list(X)
    else:
        return None
    if len(sp) == 0:
        raise ValueError("Found 0 spectra while a minimum of 1 is required.")
    return sp


def _check_wavelengths(w, row0):
    """Locate and report what is wrong with a block of wavelengths."""
    w2 = np.atleast_2d(w)
    where = "The shared wavelength grid" if w.ndim == 1 else "Spectrum {i}"
    isinf = np.isinf(w2)
    if isinf.any():
        r, c = np.argwhere(isinf)[0]
        raise ValueError(where.format(i=row0 + r) + f" has an infinite wavelength at pixel {c}.")
    finite = np.isfinite(w2)
    inner_nan = ~finite[:, :-1] & finite[:, 1:]
    if inner_nan.any():
        r, c = np.argwhere(inner_nan)[0]
        raise ValueError(
            where.format(i=row0 + r)
            + f" has a NaN wavelength at pixel {c} followed by finite ones; NaN wavelengths "
            "are only allowed as trailing padding (mask bad pixels instead)."
        )
    with np.errstate(invalid="ignore"):
        back = np.diff(w2, axis=1) <= 0
    if back.any():
        r, c = np.argwhere(back)[0]
        raise ValueError(
            where.format(i=row0 + r)
            + f" is not strictly increasing: pixel {c} is at {float(w2[r, c])!r} A and pixel "
            f"{c + 1} at {float(w2[r, c + 1])!r} A."
        )


def _validate_block(w, dw):
    """Raise (via :func:`_check_wavelengths`) unless ``w`` is a valid block.

    ``dw = diff(w)``. One pass accepts the usual case (strictly increasing,
    finite, no padding: an infinite wavelength can then only sit at an end);
    padded blocks get four more. Returns True when ``w`` holds no NaN.
    """
    with np.errstate(invalid="ignore"):
        if (dw > 0).all() and np.isfinite(w[..., 0]).all() and np.isfinite(w[..., -1]).all():
            return True
        nan = np.isnan(w).view(np.int8)
        inner_nan = (nan[..., 1:] < nan[..., :-1]).any()  # finite after NaN
        if inner_nan or (dw <= 0).any() or np.isinf(w).any():
            _check_wavelengths(w, 0)  # raises; the caller renumbers the spectra
    return False
