"""Offline simulators of survey data for skstellar's methods (no real files here).

Simulators (``make_*``) build realistic catalogues and spectra from published
relations so that tests and demos run without network access. The readers of
real files (``read_*``, ``load_*``, ``find_shared_data``) moved to
:mod:`skstellar.io`; for one release their old names here still work and emit
a FutureWarning naming the new import.
"""

from ._moved import install_finder, moved_getattr
from .gaia_xp import hermite_functions, make_xp_catalog, xp_design_matrix, xp_wavelength_grid
from .galaxy import make_galaxy_spectra
from .mdwarf import (
    make_mdwarf_photometry,
    mdwarf_absolute_magnitudes,
)
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
    LSST_GAMMA,
    LSST_M5_COADD,
    LSST_M5_SINGLE,
    lsst_magnitude_error,
    make_lsst_catalog,
)

__all__ = [
    "MDWARF_ATOMIC_LINES",
    "MDWARF_BAND_SYSTEMS",
    "MDWARF_GAP_FEATURES",
    "draw_mdwarf_labels",
    "make_mdwarf_spectra",
    "mdwarf_model_spectrum",
    "mdwarf_wavelength_grid",
    "LSST_GAMMA",
    "LSST_M5_COADD",
    "LSST_M5_SINGLE",
    "lsst_magnitude_error",
    "make_lsst_catalog",
    "hermite_functions",
    "make_xp_catalog",
    "xp_design_matrix",
    "xp_wavelength_grid",
    "make_galaxy_spectra",
    "make_mdwarf_photometry",
    "mdwarf_absolute_magnitudes",
]

#: Public names that moved to skstellar.io (old name -> new module). Served by
#: ``__getattr__`` below with a FutureWarning for one release.
MOVED_TO_IO = {
    **{name: "skstellar.io" for name in (
        "AR_PRIOR_OFFSET", "AR_PRIOR_SLOPE", "ColourLocus", "DATA_ENV_VAR",
        "EXTINCTION_COEFFICIENTS", "MDWARF_CATALOG_FILENAME", "PriorMaps", "XPBand",
        "ar_prior_max", "correlation_to_covariance", "find_shared_data",
        "is_positive_definite", "load_locus", "load_mdwarf_catalog", "load_prior_maps",
        "load_stripe82_priors", "load_stripe82_sample", "read_catalog",
        "read_lamost_spectra", "read_spectra_table", "read_xp_avro", "read_xp_continuous",
        "reddening_vector", "shared_data_candidates", "write_catalog",
        "write_spectra_table", "xp_band_arrays", "xp_covariance",
    )},
    "catalog_io": "skstellar.io.catalog",
    "spectra_io": "skstellar.io.spectra",
    "gaia_xp_io": "skstellar.io.gaia_xp",
}

__getattr__ = moved_getattr(__name__, MOVED_TO_IO)
install_finder()
