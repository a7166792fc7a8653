"""Rest-frame wavelengths: divide by ``1 + z`` or ``1 + rv / c``.

* :func:`to_rest_frame` -- rest-frame wavelengths of arrays or Quantities;
* :class:`RestFrameShifter` -- the same as a transformer of a
  :class:`~skstellar.spectrum.SpectrumBatch`, redshifts or radial velocities
  read from its ``meta`` table, optionally conserving flux density.

Wavelengths are in Angstrom, radial velocities in km/s.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from .._validation import check_finite_columns, check_numeric_input, missing_column_error
from ..parameters import Rule, validate_parameters
from ..spectrum import SPEED_OF_LIGHT_KMS, SpectrumBatch
from .spectra_input import batch_like

__all__ = ["C_KMS", "RestFrameShifter", "to_rest_frame"]

#: Speed of light [km/s] (an alias of :data:`skstellar.spectrum.SPEED_OF_LIGHT_KMS`).
C_KMS = SPEED_OF_LIGHT_KMS


def to_rest_frame(wavelength, z=None, rv=None):
    """Shift observed wavelengths to the rest frame.

    ``lambda_rest = lambda_obs / (1 + z)``, or with a radial velocity
    ``lambda_rest = lambda_obs / (1 + rv / c)`` (first-order Doppler shift,
    accurate to ``(rv / c)**2`` ~ 1e-6 for stellar velocities).

    Parameters
    ----------
    wavelength : array-like or Quantity of shape (n_pixels,) or (n_spectra, n_pixels)
        Observed wavelengths [Angstrom, or any unit: the result keeps it].
    z : float or array-like of shape (n_spectra,), optional
        Redshift (dimensionless), one per spectrum (row) or one for all.
    rv : float, array-like of shape (n_spectra,) or Quantity, optional
        Radial velocity [km/s] (a Quantity is converted), one per spectrum or
        one for all. Give exactly one of ``z`` and ``rv``.

    Returns
    -------
    ndarray or Quantity
        Rest-frame wavelengths in the unit of ``wavelength``. A 1-D grid with
        an array of ``n_spectra`` redshifts gives ``(n_spectra, n_pixels)``.

    Examples
    --------
    >>> to_rest_frame([6563.0 * 1.1], z=0.1)
    array([6563.])
    """
    if (z is None) == (rv is None):
        raise ValueError("Give exactly one of z (redshift) or rv (radial velocity, km/s).")
    if z is not None:
        factor = 1.0 + np.asarray(z, dtype=np.float64)
        what = "z"
    else:
        if hasattr(rv, "unit"):  # astropy Quantity
            import astropy.units as u

            rv = u.Quantity(rv).to_value(u.km / u.s)
        factor = 1.0 + np.asarray(rv, dtype=np.float64) / C_KMS
        what = "rv"
    if not np.all(np.isfinite(factor)):
        raise ValueError(f"{what} must be finite; got non-finite value(s).")
    if np.any(factor <= 0):
        raise ValueError(
            f"{what} must give a positive Doppler factor (z > -1, rv > -c); got {what} "
            f"down to {np.min(np.asarray(z if z is not None else rv)):g}."
        )
    if factor.ndim > 1:
        raise ValueError(
            f"z / rv must be a scalar or 1-D (one per spectrum); got shape {factor.shape}."
        )
    if not hasattr(wavelength, "unit"):
        wavelength = np.asarray(wavelength, dtype=np.float64)
    if factor.ndim == 1:
        if np.ndim(wavelength) == 2 and np.shape(wavelength)[0] != factor.shape[0]:
            raise ValueError(
                f"Got {factor.shape[0]} redshift/velocity value(s) for "
                f"{np.shape(wavelength)[0]} spectra."
            )
        factor = factor[:, None]
    return wavelength / factor


class RestFrameShifter(TransformerMixin, BaseEstimator):
    """Shift every spectrum of a :class:`SpectrumBatch` to its rest frame.

    Wavelengths are divided by ``1 + z`` (``z`` from the batch's ``meta``
    column ``z_column``) or by ``1 + rv / c`` (``rv`` in km/s from
    ``rv_column``; first-order Doppler). Nothing is learnt; ``fit`` only
    checks the parameters. Place it before :class:`SpectrumResampler`, which
    resamples whatever wavelengths it receives.

    Parameters
    ----------
    z_column : str, default="z"
        ``meta`` column holding the redshift (dimensionless). Used when
        ``rv_column`` is None.
    rv_column : str or None, default=None
        ``meta`` column holding the radial velocity [km/s]; when given it is
        used instead of ``z_column`` (e.g. ``"rv"`` for stars).
    conserve_flux : bool, default=False
        Also multiply the flux density by the Doppler factor ``1 + z`` (and
        divide ``ivar`` by its square), so that the integral of
        ``f_lambda d lambda`` is unchanged by the wavelength compression. Off
        by default: min-max scaled or continuum-normalised spectra do not
        care, and the fluxes keep their observed values.

    Notes
    -----
    Only a :class:`SpectrumBatch` carries per-spectrum redshifts, so plain
    arrays are refused with a ``TypeError``; the estimator declares
    ``two_d_array=False`` and scikit-learn's array-based estimator checks do
    not apply to it. Redshifts must be finite and > -1 (a ``ValueError``
    names the first bad row).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from skstellar.spectrum import SpectrumBatch
    >>> b = SpectrumBatch(np.array([5500.0, 6600.0]), np.ones((1, 2)),
    ...                   meta=pd.DataFrame({"z": [0.1]}))
    >>> RestFrameShifter().fit_transform(b).wavelength
    array([[5000., 6000.]])
    """

    def __init__(self, *, z_column="z", rv_column=None, conserve_flux=False):
        self.z_column = z_column
        self.rv_column = rv_column
        self.conserve_flux = conserve_flux

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False  # needs a SpectrumBatch with meta
        tags.input_tags.allow_nan = True
        return tags

    #: Allowed hyperparameter values (checked by ``fit`` and ``transform``).
    _parameter_constraints = {
        "z_column": [None, str],
        "rv_column": [None, str],
        "conserve_flux": ["boolean"],
    }
    _parameter_rules = (
        Rule(("z_column", "rv_column"),
             lambda z_column, rv_column: rv_column is not None or z_column is not None,
             "z_column / rv_column must name a meta column (str): set one of them"),
    )

    def fit(self, X, y=None):
        """Check the parameters (nothing is learnt).

        Parameters
        ----------
        X : SpectrumBatch
            Ignored apart from its type.
        y : None
            Ignored.

        Returns
        -------
        self : RestFrameShifter
        """
        validate_parameters(self)
        return self

    def _factors(self, X):
        if not isinstance(X, SpectrumBatch):
            raise TypeError(
                "RestFrameShifter needs a SpectrumBatch whose meta holds the redshifts; got "
                f"{type(X).__name__}."
            )
        use_rv = self.rv_column is not None
        col = self.rv_column if use_rv else self.z_column
        names = [] if X.meta is None else [str(c) for c in X.meta.columns]
        if X.meta is None or col not in X.meta.columns:
            raise missing_column_error(
                col, "the radial velocity [km/s]" if use_rv else "the redshift", names
            )
        check_numeric_input(X.meta[[col]], what="meta", allow_nan=True, allow_inf=True)
        values = X.meta[col].to_numpy(dtype=np.float64, na_value=np.nan)
        kind = "radial velocity" if use_rv else "redshift"
        check_finite_columns(values, col, kind, index=X.meta.index)
        factor = 1.0 + (values / C_KMS if use_rv else values)
        bad = factor <= 0
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(
                f"Column '{col}' has {int(bad.sum())} {kind}(s) giving a non-positive Doppler "
                f"factor (first at row {row}: {values[row]:g}); need z > -1 or rv > -c."
            )
        return factor

    def transform(self, X):
        """Rest-frame copy of the batch.

        Parameters
        ----------
        X : SpectrumBatch
            Spectra with observed-frame wavelengths [Angstrom] and the
            redshift (or velocity) column in ``meta``.

        Returns
        -------
        SpectrumBatch
            Same flux, mask, meta and npix, with per-spectrum (2-D) rest-frame
            wavelengths [Angstrom]; flux x (1 + z) and ivar / (1 + z)**2 when
            ``conserve_flux``.
        """
        validate_parameters(self)
        factor = self._factors(X)
        wave = X.wavelength_2d() / factor[:, None]
        flux, ivar = X.flux, X.ivar
        if self.conserve_flux:
            f = factor[:, None]
            flux = (flux * f).astype(np.result_type(flux.dtype, np.float32), copy=False)
            if ivar is not None:
                ivar = (ivar / f**2).astype(np.result_type(ivar.dtype, np.float32), copy=False)
        else:
            flux = flux.copy()
            ivar = None if ivar is None else ivar.copy()
        return batch_like(X, flux, ivar, None if X.mask is None else X.mask.copy(), wave)
