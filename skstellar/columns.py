"""Survey column-name defaults shared by readers, simulators and transformers.

Catalogues arrive with the column names of the archives that serve them
(Gaia archive, IRSA for 2MASS and WISE). skstellar uses those names as the
defaults of every transformer parameter, and its simulators and readers
produce them, so a table fetched from an archive plugs straight in.

Magnitudes are in mag, parallaxes in mas. Derived absolute magnitudes are
named ``M_<band>`` and the error of any column ``X`` is ``X_error``.
"""

from __future__ import annotations

#: Gaia DR3 ``gaiadr3.gaia_source`` photometry and astrometry.
GAIA_DR3 = {
    "BP": "phot_bp_mean_mag",
    "G": "phot_g_mean_mag",
    "RP": "phot_rp_mean_mag",
    "parallax": "parallax",
    "parallax_error": "parallax_error",
    "parallax_over_error": "parallax_over_error",
    "ruwe": "ruwe",
    # Gaia publishes no magnitude errors; sigma_m = 2.5/ln(10) / flux_over_error.
    "BP_flux_over_error": "phot_bp_mean_flux_over_error",
    "G_flux_over_error": "phot_g_mean_flux_over_error",
    "RP_flux_over_error": "phot_rp_mean_flux_over_error",
}

#: 2MASS Point Source Catalogue (IRSA ``fp_psc``).
TWOMASS = {
    "J": "j_m",
    "H": "h_m",
    "Ks": "ks_m",
    "J_error": "j_msigcom",
    "H_error": "h_msigcom",
    "Ks_error": "ks_msigcom",
    "quality": "ph_qual",  # three letters, J H Ks
}

#: CatWISE2020 / AllWISE profile-fit photometry.
WISE = {
    "W1": "w1mpro",
    "W2": "w2mpro",
    "W1_error": "w1sigmpro",
    "W2_error": "w2sigmpro",
    "quality": "ph_qual_wise",  # W1 W2 (W3 W4) letters; renamed to avoid 2MASS clash
}

#: The eight bands of the M-dwarf metallicity network, in the paper's order (Sect. 2.2).
MDWARF_BANDS = ("BP", "G", "RP", "J", "H", "Ks", "W1", "W2")

#: Apparent-magnitude column for each band.
BAND_COLUMNS = {b: {**GAIA_DR3, **TWOMASS, **WISE}[b] for b in MDWARF_BANDS}

#: Apparent-magnitude error column for each band (Gaia bands have none: use flux_over_error).
BAND_ERROR_COLUMNS = {b: {**TWOMASS, **WISE}.get(f"{b}_error") for b in MDWARF_BANDS}

#: Flux-over-error column for the Gaia bands (used when no magnitude error column exists).
BAND_FLUX_OVER_ERROR_COLUMNS = {b: GAIA_DR3[f"{b}_flux_over_error"] for b in ("BP", "G", "RP")}

#: Metallicity label column used by readers and simulators.
FEH = "fe_h"
FEH_ERROR = "fe_h_error"


def absolute_name(band: str) -> str:
    """Name of the absolute magnitude of ``band`` (``"G"`` -> ``"M_G"``)."""
    return f"M_{band}"


def error_name(column: str) -> str:
    """Name of the error column of ``column`` (``"M_G"`` -> ``"M_G_error"``)."""
    return f"{column}_error"


#: Absolute-magnitude feature names of the M-dwarf network, in order.
MDWARF_FEATURES = tuple(absolute_name(b) for b in MDWARF_BANDS)

#: LSST photo-D targets (Mrakovčić et al. 2025), in the order of every photo-D
#: estimator's output columns: M_r [mag], [Fe/H] [dex], A_r [mag].
PHOTOD_TARGETS = ("Mr", "FeH", "Ar")
#: The photo-D network inputs in the paper's order (Sect. 2.3): r, u-g, g-r, r-i,
#: i-z, then their errors [mag].
PHOTOD_INPUT_COLUMNS = ("rmag", "ug", "gr", "ri", "iz", "rErr", "ugErr", "grErr", "riErr", "izErr")
