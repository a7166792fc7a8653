"""HEALPix sky patches of the hybrid photo-D: pixel of each star, NUNIQ patch ids.

Patches are nested-scheme HEALPix pixels (``astropy-healpix``, the HATS/LSDB
convention); a patch of any order is named by one integer, its NUNIQ id
``4 * 4^order + pixel``. Positions are ICRS (RA, Dec) in degrees.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np

from .._validation import as_float_column, check_finite_columns, row_location

__all__ = [
    "DEFAULT_PATCH_ORDER",
    "healpix_patches",
    "patch_from_uniq",
    "patch_key",
    "patch_uniq",
]

#: HEALPix order of the default patches: nside = 16, 3,072 pixels of 13.43 deg^2
#: (order 5 would give 3.36 deg^2); the closest order to the paper's ~10 deg^2.
DEFAULT_PATCH_ORDER = 4
#: Deepest HEALPix order astropy-healpix (and HATS' ``_healpix_29``) handle.
_MAX_ORDER = 29


def healpix_patches(ra, dec, order=DEFAULT_PATCH_ORDER):
    """Nested HEALPix pixel index of sky positions.

    Parameters
    ----------
    ra, dec : array-like of shape (n,) or astropy Quantity
        ICRS right ascension and declination [deg]; Quantities are converted.
        RA is taken modulo 360; Dec must lie in [-90, 90].
    order : int, default=4
        HEALPix order k (nside = 2^k, 12 4^k pixels of 41,253 / (12 4^k)
        deg^2: 13.4 deg^2 at k = 4), the HATS/LSDB convention.

    Returns
    -------
    ndarray of int64, shape (n,)
        Pixel indices in the NESTED scheme (so the parent at order k-1 is
        ``pixel // 4``).

    Raises
    ------
    ValueError
        For NaN/inf coordinates, |Dec| > 90 deg or an invalid order.
    """
    return _sky_pixels(ra, dec, _check_order(order))


def _check_order(order):
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, (int, np.integer)) \
            or not 0 <= order <= _MAX_ORDER:
        raise ValueError(f"patch_order must be an integer HEALPix order in [0, {_MAX_ORDER}], "
                         f"got {order!r}.")
    return int(order)


def _sky_pixels(ra, dec, order, ra_name="ra", dec_name="dec", index=None):
    """Nested pixel index (int64) of checked sky positions [deg], with named messages."""
    ra = as_float_column(ra, ra_name, unit=u.deg, kind="right ascension")
    dec = as_float_column(dec, dec_name, unit=u.deg, kind="declination")
    hint = "Every star needs a sky position to be assigned to a patch; fix or drop those rows."
    check_finite_columns(np.column_stack([ra, dec]), [ra_name, dec_name], what="coordinate",
                         index=index, hint=hint)
    bad = np.abs(dec) > 90.0
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"Column '{dec_name}' has {int(bad.sum())} value(s) outside [-90, 90] deg "
            f"(first at {row_location(row, index)}: {dec[row]!r}); declinations must be in degrees."
        )
    try:
        from astropy_healpix import lonlat_to_healpix
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ImportError(
            "HEALPix sky patches need the astropy-healpix package: pip install astropy-healpix "
            "(or skstellar[dask])."
        ) from exc
    pix = lonlat_to_healpix(np.mod(ra, 360.0) * u.deg, dec * u.deg, 2**order, order="nested")
    return np.asarray(pix, dtype=np.int64)


def patch_uniq(order, pixel):
    """HEALPix NUNIQ id 4 * 4^order + pixel: one integer for an (order, pixel) patch.

    Parameters
    ----------
    order, pixel : int or array-like of int
        HEALPix order and nested pixel index (broadcast together).

    Returns
    -------
    ndarray of int64
        The NUNIQ ids.
    """
    from astropy_healpix import level_ipix_to_uniq

    order, pixel = np.broadcast_arrays(np.asarray(order, dtype=np.int64),
                                       np.asarray(pixel, dtype=np.int64))
    return np.asarray(level_ipix_to_uniq(order, pixel), dtype=np.int64)


def patch_from_uniq(uniq):
    """(order, pixel) of NUNIQ ids.

    Parameters
    ----------
    uniq : int or array-like of int
        HEALPix NUNIQ ids (see :func:`patch_uniq`).

    Returns
    -------
    order, pixel : ndarray of int64
        HEALPix order and nested pixel index of each id.
    """
    from astropy_healpix import uniq_to_level_ipix

    order, pixel = uniq_to_level_ipix(np.asarray(uniq, dtype=np.int64))
    return np.asarray(order, dtype=np.int64), np.asarray(pixel, dtype=np.int64)


def patch_key(uniq):
    """(order, pixel) of one NUNIQ id, as Python ints.

    Parameters
    ----------
    uniq : int
        One HEALPix NUNIQ id.

    Returns
    -------
    tuple of (int, int)
        ``(order, pixel)``.
    """
    order, pixel = patch_from_uniq(np.int64(uniq))
    return int(order), int(pixel)
