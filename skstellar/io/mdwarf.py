"""Reader of the real Birky et al. (2020) M-dwarf photometry with [Fe/H] labels.

:func:`load_mdwarf_catalog` reads the APOGEE/Cannon sample of Birky et al.
(2020) kept in ``../shared/data/mdwarf_photometry`` and renames its columns to
skstellar's survey names (:mod:`skstellar.columns`). The offline simulator of
such catalogues is :func:`skstellar.datasets.make_mdwarf_photometry`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .._validation import check_text_table_complete, reading_file
from ..columns import BAND_COLUMNS, BAND_ERROR_COLUMNS, FEH, GAIA_DR3, MDWARF_BANDS, absolute_name
from .paths import find_shared_data, shared_data_candidates

__all__ = ["load_mdwarf_catalog", "MDWARF_CATALOG_FILENAME"]

#: File name of the derived Birky et al. (2020) 8-band table.
MDWARF_CATALOG_FILENAME = "birky2020_safe_8band.csv"
_MDWARF_SUBDIR = "mdwarf_photometry"

#: File band names (``<band>_MAG``, ``<band>_ERR``, ``M_<band>``) -> skstellar's bands.
_BIRKY_BANDS = dict(zip(("BP", "G", "RP", "J", "H", "K", "W1", "W2"), MDWARF_BANDS))

#: Columns renamed to skstellar's survey names; the others are lower-cased
#: (``TEFF`` -> ``teff``, ``APOGEE_ID`` -> ``apogee_id``, ...).
_BIRKY_RENAME = {
    **{f"{b}_MAG": BAND_COLUMNS[band] for b, band in _BIRKY_BANDS.items()},
    **{f"{b}_ERR": BAND_ERROR_COLUMNS[_BIRKY_BANDS[b]] for b in ("J", "H", "K")},
    **{f"M_{b}": absolute_name(band) for b, band in _BIRKY_BANDS.items()},
    "PLX": GAIA_DR3["parallax"],
    "PLX_ERR": GAIA_DR3["parallax_error"],
    "FE_H": FEH,
}

_BIRKY_PROVENANCE = (
    "Birky et al. (2020, ApJ 892, 31) APOGEE/Cannon safe sample: Gaia DR2 photometry and "
    "parallaxes, 2MASS J/H/Ks, AllWISE W1/W2 (not Gaia DR3 / CatWISE2020 as used by "
    "Duque-Arribas et al.); no extinction correction; fe_h is the Cannon label."
)


def _locate_mdwarf_file(path):
    if path is not None:
        path = Path(path)
        if path.is_dir():
            path = path / MDWARF_CATALOG_FILENAME
        if not path.is_file():
            raise FileNotFoundError(f"M-dwarf catalogue not found: {str(path)!r}")
        return path
    folder = find_shared_data(_MDWARF_SUBDIR)
    if folder is not None and (folder / MDWARF_CATALOG_FILENAME).is_file():
        return folder / MDWARF_CATALOG_FILENAME
    looked = [str(base / _MDWARF_SUBDIR / MDWARF_CATALOG_FILENAME)
              for base in shared_data_candidates()]
    raise FileNotFoundError(
        f"{MDWARF_CATALOG_FILENAME} not found. Looked in: {'; '.join(looked)}. "
        "Set the SKSTELLAR_DATA environment variable to the folder containing "
        f"'{_MDWARF_SUBDIR}/', or pass path=."
    )


def load_mdwarf_catalog(path=None, *, eight_band_only=True) -> pd.DataFrame:
    """Read the Birky et al. (2020) M-dwarf sample with skstellar column names.

    Parameters
    ----------
    path : str or path-like, optional
        The ``birky2020_safe_8band.csv`` file, or a folder containing it. By
        default it is looked for as ``mdwarf_photometry/birky2020_safe_8band.csv``
        under ``$SKSTELLAR_DATA``, then ``../shared/data`` relative to the
        current directory, then ``../shared/data`` relative to the repository
        root.
    eight_band_only : bool, default=True
        Keep only stars with all eight absolute magnitudes finite
        (``HAS_8BAND``; 2459 of 5875 stars). That subset is biased (warmer,
        more metal-poor) because AllWISE W1/W2 were matched for only part of
        the sample.

    Returns
    -------
    pandas.DataFrame
        One row per star with a fresh index. Renamed columns: apparent
        magnitudes [mag] ``phot_bp_mean_mag``, ``phot_g_mean_mag``,
        ``phot_rp_mean_mag``, ``j_m``, ``h_m``, ``ks_m``, ``w1mpro``,
        ``w2mpro``; 2MASS errors ``j_msigcom``, ``h_msigcom``,
        ``ks_msigcom`` [mag]; ``parallax``, ``parallax_error`` [mas];
        ``fe_h`` [dex] (Cannon), ``teff`` [K], ``spt`` (M subtype), ``ra``,
        ``dec`` [deg], ``apogee_id``; absolute magnitudes ``M_BP``, ``M_G``,
        ``M_RP``, ``M_J``, ``M_H``, ``M_Ks``, ``M_W1``, ``M_W2`` [mag]
        (m + 5 log10(parallax / 100)). Other columns keep their names in lower
        case (``m_h_apogee``, ``teff_apogee``, ``snr``, ``pmra``, ...,
        ``has_8band``). ``df.attrs`` holds ``"source"``, ``"path"`` and
        ``"photometry"`` notes: the photometry is Gaia DR2 + 2MASS + AllWISE,
        not Gaia DR3 / CatWISE2020; there are no Gaia magnitude errors, no
        WISE errors, no RUWE, and no per-star [Fe/H] errors.

    Raises
    ------
    FileNotFoundError
        When the file cannot be found; the message lists where it looked.
    """
    file = _locate_mdwarf_file(path)
    with reading_file(file, "M-dwarf CSV catalogue"):
        df = pd.read_csv(file)
        check_text_table_complete(file, what="M-dwarf CSV catalogue")
    df = df.rename(columns={c: _BIRKY_RENAME.get(c, c.lower()) for c in df.columns})
    if eight_band_only:
        flag = df["has_8band"]
        if flag.dtype != bool:
            flag = flag.astype(str).str.strip().str.lower().isin(["true", "1"])
        df = df.loc[flag.to_numpy()].reset_index(drop=True)
    df.attrs["source"] = _BIRKY_PROVENANCE
    df.attrs["photometry"] = "Gaia DR2 + 2MASS + AllWISE (not Gaia DR3 / CatWISE2020)"
    df.attrs["path"] = os.fspath(file)
    return df
