"""The in-memory container for a batch of 1-D spectra.

:class:`SpectrumBatch` is what the spectrum readers return and what the
spectral transformers (resampling, rest-frame shift, continuum normalisation,
per-spectrum scaling) accept next to plain arrays. Spectra with different
pixel counts are stored padded to the longest one: padded pixels have NaN
wavelength and ``mask=True``, and ``npix`` holds each spectrum's true length.

Conventions: wavelengths in Angstrom (vacuum unless a reader says otherwise),
flux in the file's units, ``ivar`` the inverse variance of the flux
(0 = no information), ``mask`` True where a pixel is bad.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["SpectrumBatch", "SPEED_OF_LIGHT_KMS"]

#: The speed of light in vacuum [km/s] (exact, SI definition); the one
#: definition every Doppler shift in skstellar uses.
SPEED_OF_LIGHT_KMS = 299792.458


@dataclass
class SpectrumBatch:
    """A batch of spectra on per-spectrum (or shared) wavelength grids.

    Parameters
    ----------
    wavelength : ndarray of shape (n_spectra, n_pixels) or (n_pixels,)
        Wavelengths in Angstrom; 1-D means one grid shared by all spectra.
        Must increase along each spectrum (padded tail: NaN).
    flux : ndarray of shape (n_spectra, n_pixels)
    ivar : ndarray of shape (n_spectra, n_pixels), optional
        Inverse variance of the flux; 0 where unknown.
    mask : ndarray of bool, shape (n_spectra, n_pixels), optional
        True for bad pixels. Pixels with ``ivar == 0`` or non-finite flux are
        *not* masked implicitly here; :meth:`bad_pixels` combines them.
    meta : pandas.DataFrame, optional
        One row per spectrum (file name, redshift, S/N per band, class, ...).
    npix : ndarray of int, optional
        True number of pixels of each spectrum (default: all ``n_pixels``).
    """

    wavelength: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray | None = None
    mask: np.ndarray | None = None
    meta: pd.DataFrame | None = None
    npix: np.ndarray | None = None

    def __post_init__(self):
        self.flux = np.atleast_2d(np.asarray(self.flux))
        self.wavelength = np.asarray(self.wavelength, dtype=np.float64)
        n, p = self.flux.shape
        if self.wavelength.ndim == 1:
            if self.wavelength.shape[0] != p:
                raise ValueError(
                    f"Shared wavelength grid has {self.wavelength.shape[0]} pixels "
                    f"but flux has {p}."
                )
        elif self.wavelength.shape != (n, p):
            raise ValueError(
                f"wavelength shape {self.wavelength.shape} does not match flux shape {(n, p)}."
            )
        for name in ("ivar", "mask"):
            a = getattr(self, name)
            if a is not None:
                a = np.asarray(a, dtype=bool if name == "mask" else None)
                if a.shape != (n, p):
                    raise ValueError(f"{name} shape {a.shape} does not match flux shape {(n, p)}.")
                setattr(self, name, a)
        self.npix = np.full(n, p, dtype=int) if self.npix is None else np.asarray(self.npix, int)
        if self.meta is not None and len(self.meta) != n:
            raise ValueError(f"meta has {len(self.meta)} rows for {n} spectra.")

    def __len__(self):
        return self.flux.shape[0]

    @property
    def n_pixels(self) -> int:
        """Number of pixels per spectrum."""
        return self.flux.shape[1]

    def wavelength_2d(self) -> np.ndarray:
        """Wavelengths broadcast to ``(n_spectra, n_pixels)``."""
        if self.wavelength.ndim == 1:
            return np.broadcast_to(self.wavelength, self.flux.shape)
        return self.wavelength

    def error(self) -> np.ndarray:
        """Flux standard deviation ``1/sqrt(ivar)`` (inf where ``ivar <= 0``)."""
        if self.ivar is None:
            raise ValueError("This SpectrumBatch has no inverse variance.")
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.ivar > 0, 1.0 / np.sqrt(self.ivar), np.inf)

    def bad_pixels(self) -> np.ndarray:
        """True where a pixel is masked, padded, has non-finite flux or ``ivar <= 0``."""
        bad = ~np.isfinite(self.flux) | ~np.isfinite(self.wavelength_2d())
        if self.mask is not None:
            bad |= self.mask
        if self.ivar is not None:
            bad |= ~(self.ivar > 0)
        return bad

    def __getitem__(self, idx):
        """Select spectra (int, slice, boolean or integer array)."""
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        return SpectrumBatch(
            wavelength=self.wavelength if self.wavelength.ndim == 1 else self.wavelength[idx],
            flux=self.flux[idx],
            ivar=None if self.ivar is None else self.ivar[idx],
            mask=None if self.mask is None else self.mask[idx],
            meta=None if self.meta is None else self.meta.iloc[idx].reset_index(drop=True),
            npix=self.npix[idx],
        )
