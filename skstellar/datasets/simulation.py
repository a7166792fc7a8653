"""Random draws and noise models shared by the survey simulators of :mod:`skstellar.datasets`.

Every function takes the random generator it draws from, so each simulator
keeps its own stream and order of draws (the same seed gives the same
catalogue).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

__all__ = ["flag_bad_pixels", "scattered_magnitude_error", "truncated_normal"]

#: 2.5 / ln 10 [mag]: a magnitude error sigma means SNR = flux / flux_error = this / sigma.
_MAG_PER_LN_FLUX = 2.5 / np.log(10.0)
#: h c / k_B [Angstrom K] (Planck's law in wavelength).
_HC_K = 1.4387769e8


def truncated_normal(rng, mean, sigma, low, high, u_clip=None):
    """Normal(mean, sigma) draws truncated to [low, high] by inverse-CDF sampling.

    Parameters
    ----------
    rng : numpy.random.RandomState or numpy.random.Generator
        Source of the uniform deviates (one per element of ``mean``).
    mean : ndarray
        Means, any unit; its shape is the shape of the output.
    sigma : float or ndarray
        Standard deviations, same unit, broadcastable to ``mean``.
    low, high : float or ndarray
        Truncation bounds, same unit.
    u_clip : (float, float), optional
        Bounds the uniform deviate is clipped to before the inverse normal
        CDF (keeps it off 0 and 1); None applies none.

    Returns
    -------
    ndarray
        Draws of the shape of ``mean``, inside [low, high].
    """
    a, b = ndtr((low - mean) / sigma), ndtr((high - mean) / sigma)
    u = a + (b - a) * rng.uniform(size=np.shape(mean))
    if u_clip is not None:
        u = np.clip(u, *u_clip)
    return np.clip(mean + sigma * ndtri(u), low, high)


def scattered_magnitude_error(model, mag, rng):
    """Reported photometric errors ``floor + scale 10**(0.4 (m - m_ref))``, 10 % log-normal.

    Parameters
    ----------
    model : (float, float, float)
        ``(floor, scale, m_ref)``: floor and scale [mag] and reference
        magnitude [mag] of the error law.
    mag : ndarray
        True magnitudes [mag] (or, for a parallax law, the G magnitude).
    rng : numpy.random.RandomState
        Source of the per-star log-normal factor ``exp(0.1 N(0, 1))``.

    Returns
    -------
    ndarray
        Errors of the shape of ``mag``, in the unit of ``floor`` and ``scale``.
    """
    floor, scale, ref = model
    return (floor + scale * 10.0 ** (0.4 * (mag - ref))) * np.exp(
        0.1 * rng.standard_normal(np.shape(mag))
    )


def flag_bad_pixels(rng, fraction, flux, ivar, mask):
    """Mark a Poisson number of random bad pixels per spectrum, in place.

    Each row gets Poisson(``fraction`` * n_pixels) bad pixels at uniformly
    drawn columns (repeats allowed), where ``mask`` is set and ``flux`` and
    ``ivar`` are zeroed.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the counts and positions.
    fraction : float
        Expected fraction of bad pixels per spectrum.
    flux, ivar : ndarray of shape (n_spectra, n_pixels)
        Flux and inverse variance, modified in place.
    mask : ndarray of bool, shape (n_spectra, n_pixels)
        Bad-pixel mask, modified in place.
    """
    n_rows, n_pix = flux.shape
    rows = np.repeat(np.arange(n_rows), rng.poisson(fraction * n_pix, n_rows))
    cols = rng.integers(0, n_pix, rows.size)
    mask[rows, cols] = True
    flux[rows, cols] = 0.0
    ivar[rows, cols] = 0.0
