"""Transformers that turn survey catalogues and spectra into model features.

- photometry: :class:`AbsoluteMagnitudes` (apparent magnitudes + parallax);
- spectra: :class:`SpectrumResampler` (common wavelength grid);
- rest_frame: :class:`RestFrameShifter`, :func:`to_rest_frame`;
- spectrum_minmax: :class:`SpectrumMinMaxScaler` (per spectrum);
- continuum: :class:`ContinuumNormalizer` (Gaussian-weighted pseudo-continuum,
  Cycle-StarNet paper Eq. 2-3);
- velocity: :class:`RadialVelocityCorrector` (template fit, rest frame,
  6000-8900 A at 1 A), :func:`measure_radial_velocity`;
- xp: :class:`XPNormalizer` (Gaia XP coefficients / RP0 with covariance);
- scaling: :class:`CovariantStandardScaler` (z-scores features and their
  per-sample covariance together).
"""

from .continuum import PAPER_MASK_WINDOWS, ContinuumNormalizer, pseudo_continuum, window_mask
from .photometry import (
    AbsoluteMagnitudes,
    absolute_magnitude,
    absolute_magnitude_error,
    magnitude_error_from_flux_over_error,
)
from .scaling import CovariantStandardScaler
from .spectra import RestFrameShifter, SpectrumMinMaxScaler, SpectrumResampler, to_rest_frame
from .velocity import (
    DEFAULT_WINDOW,
    RadialVelocityCorrector,
    air_to_vacuum,
    measure_radial_velocity,
    vacuum_to_air,
)
from .xp import XPNormalizer, normalise_xp_coefficients

__all__ = [
    "DEFAULT_WINDOW",
    "PAPER_MASK_WINDOWS",
    "ContinuumNormalizer",
    "RadialVelocityCorrector",
    "air_to_vacuum",
    "measure_radial_velocity",
    "pseudo_continuum",
    "vacuum_to_air",
    "window_mask",
    "AbsoluteMagnitudes",
    "CovariantStandardScaler",
    "RestFrameShifter",
    "SpectrumMinMaxScaler",
    "SpectrumResampler",
    "XPNormalizer",
    "absolute_magnitude",
    "absolute_magnitude_error",
    "magnitude_error_from_flux_over_error",
    "normalise_xp_coefficients",
    "to_rest_frame",
]
