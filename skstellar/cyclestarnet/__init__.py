"""Cycle-StarNet domain adaptation, The Payne emulator and spectral label fitting (method 5).

- indices: H-alpha equivalent width and activity flag, TiO5 and spectral
  subtype, precision-vs-S/N model (catalogue extras of the LAMOST M-dwarf paper).
"""

from .indices import (
    ACTIVITY_THRESHOLD,
    HALPHA_AIR,
    HALPHA_CONTINUUM_WINDOWS,
    HALPHA_VACUUM,
    SPT_RANGE,
    TIO5_CONTINUUM,
    TIO5_NUMERATOR,
    activity_flag,
    fit_precision_snr,
    halpha_equivalent_width,
    precision_model,
    repeat_precision,
    spectral_subtype_from_tio5,
    tio5_index,
)

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
