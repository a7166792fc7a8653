"""Per-spectrum min-max scaling (:class:`SpectrumMinMaxScaler`), as in the LAMOST galaxy CNN."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin

from .._validation import check_numeric_input
from ..parameters import NAN, Interval, Options, SequenceOf, validate_parameters
from ..spectrum import SpectrumBatch
from .spectra_input import _float_flux, batch_like, forget_input_features, validate_flux_array

__all__ = ["SpectrumMinMaxScaler"]


class SpectrumMinMaxScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Scale every spectrum (row) into ``feature_range`` with its own min and max.

    ``x' = lo + (x - min) / (max - min) * (hi - lo)`` with ``min``/``max`` over
    the spectrum's finite (unmasked) pixels, as the LAMOST galaxy-metallicity
    CNN does with ``feature_range=(0, 1)``. Unlike scikit-learn's
    ``MinMaxScaler`` (per feature, learnt on the training set) nothing is
    learnt: each spectrum is scaled on its own, so a spectrum's output does not
    depend on the others.

    Parameters
    ----------
    feature_range : tuple (lo, hi), default=(0.0, 1.0)
        Output range, ``lo < hi``.
    fill_value : float or None, default=0.0
        Value written at masked pixels (NaN in an array; bad pixels of a
        :class:`SpectrumBatch`) after scaling. The default 0.0 gives the
        NaN-free input a CNN needs (0 = the spectrum's minimum with the default
        range); None keeps NaN.
    on_constant : {"raise", "zero"}, default="raise"
        A spectrum whose finite pixels all have the same value (max == min,
        e.g. a dead fibre of zeros, or a single valid pixel) or that has no
        finite pixel: "raise" a ``ValueError`` naming its index, or "zero"
        to set its finite pixels to ``lo`` (0 with the default range; a
        spectrum without finite pixels becomes all ``fill_value``).

    Attributes
    ----------
    n_features_in_ : int
        Pixels per spectrum seen in ``fit`` (array input only).
    feature_names_in_ : ndarray of str
        Column names, when fitted on a DataFrame with string column names.

    Notes
    -----
    Input: a 2-D array (n_spectra, n_pixels), at least 2 pixels, NaN marking
    masked pixels (inf is refused), or a :class:`SpectrumBatch`, for which
    :meth:`SpectrumBatch.bad_pixels` are ignored in the min/max and filled;
    a batch comes back as a batch with ``ivar`` rescaled by
    ``((max - min) / (hi - lo))**2`` and the bad pixels in ``mask``.
    ``transform`` works without ``fit`` (stateless); after ``fit`` on an
    array it checks the number of pixels.

    Examples
    --------
    >>> import numpy as np
    >>> SpectrumMinMaxScaler().fit_transform(np.array([[2.0, 4.0, np.nan, 3.0]]))
    array([[0. , 1. , 0. , 0.5]])
    """

    def __init__(self, *, feature_range=(0.0, 1.0), fill_value=0.0, on_constant="raise"):
        self.feature_range = feature_range
        self.fill_value = fill_value
        self.on_constant = on_constant

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.allow_nan = True  # NaN = masked pixel
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    #: Allowed hyperparameter values (checked by ``fit`` and ``transform``).
    _parameter_constraints = {
        "feature_range": [SequenceOf(Interval("real"), length=2, increasing=True, arrays=False)],
        "fill_value": [None, Interval("real"), NAN],
        "on_constant": [Options(("raise", "zero"))],
    }

    def _validate(self, X, reset):
        check_numeric_input(X, allow_nan=True, hint="NaN marks a masked pixel; inf is refused.")
        # after fit on an array the n_features_in_ check gives the clearer message
        fitted = not reset and hasattr(self, "n_features_in_")
        return validate_flux_array(self, X, reset, ensure_min_features=1 if fitted else 2)

    def fit(self, X, y=None):
        """Check the input (nothing is learnt).

        Parameters
        ----------
        X : array of shape (n_spectra, n_pixels) or SpectrumBatch
            Fluxes (any unit), NaN at masked pixels.
        y : None
            Ignored.

        Returns
        -------
        self : SpectrumMinMaxScaler
        """
        validate_parameters(self)
        forget_input_features(self)
        if not isinstance(X, SpectrumBatch):
            self._validate(X, reset=True)
        return self

    def _scale(self, F):
        """Scaled copy of F (NaN = masked) and the per-row scale (max - min) / (hi - lo)."""
        lo, hi = (float(v) for v in self.feature_range)
        mn = np.fmin.reduce(F, axis=1)
        rng = np.fmax.reduce(F, axis=1) - mn
        empty = np.isnan(mn)
        const = ~empty & ~(rng > 0)
        if self.on_constant == "raise" and (empty.any() or const.any()):
            i = int(np.argmax(empty | const))  # the first offending spectrum
            if empty[i]:
                raise ValueError(
                    f"Spectrum {i} has no finite pixel to scale (all masked). Remove it, or use "
                    "on_constant='zero'."
                )
            raise ValueError(
                f"Spectrum {i} is constant (min == max == {mn[i]:g} over its finite pixels): "
                "min-max scaling is undefined. Remove it, or use on_constant='zero'."
            )
        ok = rng > 0
        factor = np.where(ok, (hi - lo) / np.where(ok, rng, 1.0), 0.0).astype(F.dtype)
        out = F - mn[:, None].astype(F.dtype)
        out *= factor[:, None]
        out += F.dtype.type(lo)
        if self.fill_value is not None:
            np.copyto(out, F.dtype.type(self.fill_value), where=np.isnan(out))
        return out, np.where(ok, rng / (hi - lo), np.nan)

    def transform(self, X):
        """Scale each spectrum into ``feature_range``.

        Parameters
        ----------
        X : array of shape (n_spectra, n_pixels) or SpectrumBatch
            Fluxes (any unit), NaN at masked pixels.

        Returns
        -------
        ndarray of shape (n_spectra, n_pixels) or SpectrumBatch
            Dimensionless scaled fluxes (dtype float32 for float32 input,
            else float64), ``fill_value`` at masked pixels; a batch for a
            batch (see the class Notes).
        """
        validate_parameters(self)
        if isinstance(X, SpectrumBatch):
            return self._transform_batch(X)
        return self._scale(np.asarray(self._validate(X, reset=False)))[0]

    def _transform_batch(self, X):
        flux = _float_flux(X.flux)
        bad = X.bad_pixels()
        out, scale = self._scale(np.where(bad, np.nan, flux).astype(flux.dtype, copy=False))
        ivar = None
        if X.ivar is not None:
            with np.errstate(invalid="ignore"):
                ivar = np.where(bad, 0.0, X.ivar * np.nan_to_num(scale, nan=0.0)[:, None] ** 2)
            ivar = ivar.astype(np.result_type(X.ivar.dtype, np.float32), copy=False)
        return batch_like(X, out, ivar, bad)
