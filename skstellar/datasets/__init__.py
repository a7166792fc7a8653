"""Offline simulators and real-format readers for skstellar's methods.

Simulators (``make_*``) build realistic catalogues from published relations so
that tests and demos run without network access; readers load the small real
files kept in ``../shared/data`` and generic catalogue formats.
"""

from ._paths import DATA_ENV_VAR, find_shared_data, shared_data_candidates
from .catalog_io import read_catalog, write_catalog
from .galaxy import make_galaxy_spectra
from .gaia_xp import hermite_functions, make_xp_catalog, xp_design_matrix, xp_wavelength_grid
from .gaia_xp_io import (
    XPBand,
    correlation_to_covariance,
    is_positive_definite,
    read_xp_avro,
    read_xp_continuous,
    xp_band_arrays,
    xp_covariance,
)
from .spectra_io import read_lamost_spectra, read_spectra_table, write_spectra_table
from .mdwarf_spectra import (
    MDWARF_ATOMIC_LINES,
    MDWARF_BAND_SYSTEMS,
    MDWARF_GAP_FEATURES,
    draw_mdwarf_labels,
    make_mdwarf_spectra,
    mdwarf_model_spectrum,
    mdwarf_wavelength_grid,
)
from .photod import (
    AR_PRIOR_OFFSET,
    AR_PRIOR_SLOPE,
    EXTINCTION_COEFFICIENTS,
    LSST_GAMMA,
    LSST_M5_COADD,
    LSST_M5_SINGLE,
    ColourLocus,
    PriorMaps,
    ar_prior_max,
    load_locus,
    load_prior_maps,
    load_stripe82_priors,
    load_stripe82_sample,
    lsst_magnitude_error,
    make_lsst_catalog,
    reddening_vector,
)
from .mdwarf import (
    MDWARF_CATALOG_FILENAME,
    load_mdwarf_catalog,
    make_mdwarf_photometry,
    mdwarf_absolute_magnitudes,
)

__all__ = [
    "MDWARF_ATOMIC_LINES",
    "MDWARF_BAND_SYSTEMS",
    "MDWARF_GAP_FEATURES",
    "draw_mdwarf_labels",
    "make_mdwarf_spectra",
    "mdwarf_model_spectrum",
    "mdwarf_wavelength_grid",
    "AR_PRIOR_OFFSET",
    "AR_PRIOR_SLOPE",
    "EXTINCTION_COEFFICIENTS",
    "LSST_GAMMA",
    "LSST_M5_COADD",
    "LSST_M5_SINGLE",
    "ColourLocus",
    "PriorMaps",
    "ar_prior_max",
    "load_locus",
    "load_prior_maps",
    "load_stripe82_priors",
    "load_stripe82_sample",
    "lsst_magnitude_error",
    "make_lsst_catalog",
    "reddening_vector",
    "XPBand",
    "hermite_functions",
    "make_xp_catalog",
    "xp_design_matrix",
    "xp_wavelength_grid",
    "correlation_to_covariance",
    "is_positive_definite",
    "read_xp_avro",
    "read_xp_continuous",
    "xp_band_arrays",
    "xp_covariance",
    "DATA_ENV_VAR",
    "MDWARF_CATALOG_FILENAME",
    "find_shared_data",
    "load_mdwarf_catalog",
    "make_galaxy_spectra",
    "make_mdwarf_photometry",
    "mdwarf_absolute_magnitudes",
    "read_catalog",
    "read_lamost_spectra",
    "read_spectra_table",
    "shared_data_candidates",
    "write_catalog",
    "write_spectra_table",
]
