"""Readers and writers of real survey files; no simulation here.

* :mod:`skstellar.io.catalog`: catalogues as DataFrames (CSV, ECSV, FITS,
  Parquet, VOTable): :func:`read_catalog`, :func:`write_catalog`;
* :mod:`skstellar.io.spectra`: LAMOST low-resolution FITS spectra and generic
  spectrum tables into :class:`~skstellar.spectrum.SpectrumBatch`:
  :func:`read_lamost_spectra`, :func:`read_spectra_table`,
  :func:`write_spectra_table`;
* :mod:`skstellar.io.gaia_xp`: Gaia DR3 XP continuous tables and their
  coefficient covariances: :func:`read_xp_continuous`, :func:`read_xp_avro`,
  :func:`xp_band_arrays`, :func:`xp_covariance`, ...;
* :mod:`skstellar.io.mdwarf`: the Birky et al. (2020) M-dwarf sample,
  :func:`load_mdwarf_catalog`;
* :mod:`skstellar.io.photod`: the photo-D colour locus, TRILEGAL prior maps
  and Stripe 82 sample: :func:`load_locus`, :func:`load_prior_maps`,
  :func:`load_stripe82_priors`, :func:`load_stripe82_sample`;
* :mod:`skstellar.io.paths`: where the real files are,
  :func:`find_shared_data` (``$SKSTELLAR_DATA``, then ``../shared/data``).

The offline simulators (``make_*``) live in :mod:`skstellar.datasets`.
"""

from .catalog import read_catalog, write_catalog
from .gaia_xp import (
    XPBand,
    correlation_to_covariance,
    is_positive_definite,
    read_xp_avro,
    read_xp_continuous,
    xp_band_arrays,
    xp_covariance,
)
from .mdwarf import MDWARF_CATALOG_FILENAME, load_mdwarf_catalog
from .paths import DATA_ENV_VAR, find_shared_data, shared_data_candidates
from .photod import (
    AR_PRIOR_OFFSET,
    AR_PRIOR_SLOPE,
    EXTINCTION_COEFFICIENTS,
    PHOTOD_BANDS,
    PHOTOD_COLOURS,
    ColourLocus,
    PriorMaps,
    ar_prior_max,
    load_locus,
    load_prior_maps,
    load_stripe82_priors,
    load_stripe82_sample,
    reddening_vector,
)
from .spectra import read_lamost_spectra, read_spectra_table, write_spectra_table

__all__ = [
    "AR_PRIOR_OFFSET",
    "AR_PRIOR_SLOPE",
    "DATA_ENV_VAR",
    "EXTINCTION_COEFFICIENTS",
    "MDWARF_CATALOG_FILENAME",
    "PHOTOD_BANDS",
    "PHOTOD_COLOURS",
    "ColourLocus",
    "PriorMaps",
    "XPBand",
    "ar_prior_max",
    "correlation_to_covariance",
    "find_shared_data",
    "is_positive_definite",
    "load_locus",
    "load_mdwarf_catalog",
    "load_prior_maps",
    "load_stripe82_priors",
    "load_stripe82_sample",
    "read_catalog",
    "read_lamost_spectra",
    "read_spectra_table",
    "read_xp_avro",
    "read_xp_continuous",
    "reddening_vector",
    "shared_data_candidates",
    "write_catalog",
    "write_spectra_table",
    "xp_band_arrays",
    "xp_covariance",
]
