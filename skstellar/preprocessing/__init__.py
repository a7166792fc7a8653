"""Transformers that turn survey catalogues and spectra into model features.

- photometry: :class:`AbsoluteMagnitudes` (apparent magnitudes + parallax);
- spectra: :class:`SpectrumResampler` (common wavelength grid),
  :class:`RestFrameShifter`, :class:`SpectrumMinMaxScaler` (per spectrum).
"""

from .photometry import (
    AbsoluteMagnitudes,
    absolute_magnitude,
    absolute_magnitude_error,
    magnitude_error_from_flux_over_error,
)
from .spectra import RestFrameShifter, SpectrumMinMaxScaler, SpectrumResampler, to_rest_frame

__all__ = [
    "AbsoluteMagnitudes",
    "RestFrameShifter",
    "SpectrumMinMaxScaler",
    "SpectrumResampler",
    "absolute_magnitude",
    "absolute_magnitude_error",
    "magnitude_error_from_flux_over_error",
    "to_rest_frame",
]
