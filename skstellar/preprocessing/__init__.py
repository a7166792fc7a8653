"""Transformers that turn survey catalogues into model features."""

from .photometry import (
    AbsoluteMagnitudes,
    absolute_magnitude,
    absolute_magnitude_error,
    magnitude_error_from_flux_over_error,
)

__all__ = [
    "AbsoluteMagnitudes",
    "absolute_magnitude",
    "absolute_magnitude_error",
    "magnitude_error_from_flux_over_error",
]
