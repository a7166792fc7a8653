"""Transformers that turn survey catalogues and spectra into model features.

- photometry: :class:`AbsoluteMagnitudes` (apparent magnitudes + parallax);
- spectra: :class:`SpectrumResampler` (common wavelength grid),
  :class:`RestFrameShifter`, :class:`SpectrumMinMaxScaler` (per spectrum);
- xp: :class:`XPNormalizer` (Gaia XP coefficients / RP0 with covariance);
- scaling: :class:`CovariantStandardScaler` (z-scores features and their
  per-sample covariance together).
"""

from .photometry import (
    AbsoluteMagnitudes,
    absolute_magnitude,
    absolute_magnitude_error,
    magnitude_error_from_flux_over_error,
)
from .scaling import CovariantStandardScaler
from .spectra import RestFrameShifter, SpectrumMinMaxScaler, SpectrumResampler, to_rest_frame
from .xp import XPNormalizer, normalise_xp_coefficients

__all__ = [
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
