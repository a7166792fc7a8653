"""Read Gaia DR3 XP continuous mean spectra and rebuild their coefficient covariances.

Gaia DR3 publishes the BP/RP ("XP") spectra of each source in a *continuous*
representation: 55 Hermite-basis coefficients per band with their errors and
the 1485 = 55 x 54 / 2 off-diagonal correlation coefficients (archive table
``gaiadr3.xp_continuous_mean_spectrum``; De Angeli et al. 2023, Carrasco et
al. 2021). The Gaia XP uncertain-NN paper (Sect. 2.1-2.2) feeds these
coefficients and their covariance matrices to its network. This module holds
the reader of the archive's CSV, ECSV, FITS and VOTable files
(:func:`read_xp_continuous`: a DataFrame, one row per source, one numpy array
per cell, None for a missing band), the stacking of one band into dense
arrays with a ``present`` mask (:func:`xp_band_arrays`), the vectorised
covariance ``C = diag(e) R diag(e)`` with ``R`` filled in the archive order
(:func:`xp_covariance`, :func:`correlation_to_covariance`), the DPAC-internal
``MeanSpectrumSolutionWithCov`` AVRO records whose packed covariance is an
independent ground truth (:func:`read_xp_avro`) and a batched
positive-definiteness check (:func:`is_positive_definite`).

The archive errors include the factor ``b_standard_deviation`` (square root
of the reduced chi^2 of the least-squares fit), so :func:`xp_covariance` gives
the realistic covariance, or with ``scaled=False`` the formal one that DPAC
stores (the AVRO covariance). BP and RP are fitted separately: there is no
BP-RP cross-covariance.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .._validation import as_str_column, missing_column_error, reading_file
from .catalog import ASTROPY_FORMATS, FORMAT_ALIASES, SUPPORTED_EXTENSIONS

__all__ = [
    "BANDS",
    "DR3_N_COEFFICIENTS",
    "XPBand",
    "correlation_to_covariance",
    "is_positive_definite",
    "n_from_packed_size",
    "packed_lower_size",
    "read_xp_avro",
    "read_xp_continuous",
    "unpack_lower_triangle",
    "xp_band_arrays",
    "xp_covariance",
]

#: The two XP bands, in the archive's column prefixes.
BANDS = ("bp", "rp")

#: Number of basis coefficients per band in Gaia DR3.
DR3_N_COEFFICIENTS = 55

#: Array columns of a band (suffix after ``"<band>_"``) and their canonical dtype.
_ARRAY_FIELDS = {
    "coefficients": np.float64,
    "coefficient_errors": np.float64,
    "coefficient_correlations": np.float32,
}
#: Array fields stored as float32 by the archive: text values are rounded to
#: float32 so that every file format yields bit-identical arrays.
_FLOAT32_ARRAY_FIELDS = ("coefficient_errors", "coefficient_correlations")
#: Integer scalar fields of a band (nullable ``Int64`` in the canonical layout).
_INT_FIELDS = (
    "basis_function_id",
    "degrees_of_freedom",
    "n_parameters",
    "n_measurements",
    "n_rejected_measurements",
    "n_relevant_bases",
)
#: Float scalar fields of a band, stored as float32 by the archive.
_FLOAT32_FIELDS = ("standard_deviation", "chi_squared", "relative_shrinking")

#: Canonical names of every known column (matched case-insensitively on read).
_KNOWN_COLUMNS = (
    ["source_id", "solution_id"]
    + [f"{b}_{f}" for b in BANDS for f in (*_ARRAY_FIELDS, *_INT_FIELDS, *_FLOAT32_FIELDS)]
)

#: Formats and file suffixes of XP tables: those of catalogues, without Parquet.
_FORMAT_ALIASES = {key: fmt for key, fmt in FORMAT_ALIASES.items() if fmt != "parquet"}
_SUFFIX_FORMATS = {ext: fmt for ext, fmt in SUPPORTED_EXTENSIONS.items()
                   if fmt != "parquet" and not ext.endswith(".gz")}

#: Sources per block when rebuilding covariances (keeps temporaries in cache).
_COV_CHUNK = 256

#: Largest block of matrices whose positive definiteness is settled by
#: eigenvalues once a batched Cholesky factorisation of it has failed.
_PD_LEAF = 32


class XPBand(NamedTuple):
    """Dense arrays of one XP band for ``n`` sources (see :func:`xp_band_arrays`).

    Attributes
    ----------
    coefficients : ndarray of shape (n, k), float64
        Basis coefficients [e-/s, internal units]; NaN rows where the band is
        missing.
    errors : ndarray of shape (n, k), float64
        1-sigma coefficient errors [e-/s], including the factor
        ``standard_deviation`` as in the archive; NaN rows where missing.
    correlations : ndarray of shape (n, k (k - 1) / 2), float32
        Off-diagonal correlation coefficients, strict lower triangle row by
        row (``np.tril_indices(k, -1)`` order); NaN rows where missing.
    present : ndarray of shape (n,), bool
        Whether the source has this band.
    """

    coefficients: np.ndarray
    errors: np.ndarray
    correlations: np.ndarray
    present: np.ndarray


# --------------------------------------------------------------------------- packing


def packed_lower_size(k, diagonal=False):
    """Number of values in a packed lower triangle of a ``k x k`` matrix.

    Parameters
    ----------
    k : int
        Matrix order (number of basis coefficients).
    diagonal : bool, default=False
        Whether the diagonal is included: ``k (k + 1) / 2`` values (the AVRO
        covariance) instead of ``k (k - 1) / 2`` (the archive correlations).

    Returns
    -------
    int
        1485 for ``k = 55`` without diagonal, 1540 with it.
    """
    k = int(k)
    if k < 0:
        raise ValueError(f"Matrix order k must be >= 0, got {k}.")
    return k * (k + 1) // 2 if diagonal else k * (k - 1) // 2


def n_from_packed_size(m, diagonal=False):
    """Matrix order ``k`` whose packed lower triangle holds ``m`` values.

    Parameters
    ----------
    m : int
        Number of packed values.
    diagonal : bool, default=False
        Whether the packed triangle includes the diagonal.

    Returns
    -------
    int
        ``k`` such that :func:`packed_lower_size` ``(k, diagonal) == m``.

    Raises
    ------
    ValueError
        If ``m`` is not such a triangular number.
    """
    m = int(m)
    if m < 0:
        raise ValueError(f"A packed triangle cannot hold {m} values.")
    # k(k-1)/2 = m  <=>  k = (1 + sqrt(1 + 8m)) / 2 ; with diagonal shift by one.
    k = int(round((1.0 + np.sqrt(1.0 + 8.0 * m)) / 2.0)) - (1 if diagonal else 0)
    for cand in (k - 1, k, k + 1):
        if cand >= 0 and packed_lower_size(cand, diagonal) == m:
            return cand
    what = "k (k + 1) / 2" if diagonal else "k (k - 1) / 2"
    raise ValueError(f"{m} values cannot fill a packed lower triangle: {m} is not {what} "
                     "for any integer k.")


def unpack_lower_triangle(packed, *, diagonal=True, dtype=np.float64):
    """Rebuild symmetric matrices from packed lower triangles, row by row.

    Vectorised over the leading axis. The packed order is that of
    ``np.tril_indices(k)`` (``diagonal=True``: (0,0), (1,0), (1,1), (2,0), ...)
    or ``np.tril_indices(k, -1)`` (``diagonal=False``: (1,0), (2,0), (2,1), ...,
    with a unit diagonal, i.e. a correlation matrix).

    Parameters
    ----------
    packed : array-like of shape (n, m) or (m,)
        Packed lower triangles.
    diagonal : bool, default=True
        Whether the diagonal is part of the packed values.
    dtype : numpy dtype, default=float64
        Output dtype.

    Returns
    -------
    ndarray of shape (n, k, k) or (k, k)
        Symmetric matrices (a 1-D input gives one matrix).
    """
    arr = np.asarray(packed, dtype=dtype)
    single = arr.ndim == 1
    if single:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"Packed triangles must be 1-D or 2-D, got shape {arr.shape}.")
    k = n_from_packed_size(arr.shape[1], diagonal=diagonal)
    out = np.empty((arr.shape[0], k, k), dtype=dtype)
    rows, cols = np.tril_indices(k, 0 if diagonal else -1)
    out[:, rows, cols] = arr
    out[:, cols, rows] = arr
    if not diagonal:
        d = np.arange(k)
        out[:, d, d] = 1.0
    return out[0] if single else out


# --------------------------------------------------------------------------- cells


def _row_label(i, source_ids=None):
    """``"row 3 (source_id 5405570973190252288)"`` or ``"row 3"``."""
    if source_ids is not None:
        try:
            return f"row {i} (source_id {source_ids[i]})"
        except (IndexError, KeyError, TypeError):  # pragma: no cover - defensive
            pass
    return f"row {i}"


def _parse_array_string(text, name, where):
    """Parse one CSV array cell such as ``"(1.0, 2.0)"`` or ``"[1. 2.]"``.

    Returns None for an empty cell; raises a ValueError naming the column and
    row for anything malformed.
    """
    s = text.strip()
    if len(s) >= 2 and s[0] in "([{" and s[-1] in ")]}":
        s = s[1:-1].strip()
    if not s or (len(s) <= 4 and s.lower() in ("nan", "null", "none", "--")):
        return None
    if "..." in s:
        raise ValueError(
            f"Column '{name}', {where}: the array text is truncated ('...'), as numpy "
            "prints long arrays; write the table with the full arrays (e.g. "
            "np.set_printoptions(threshold=sys.maxsize) or a FITS/ECSV file)."
        )
    n_commas = s.count(",")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = np.fromstring(s, dtype=np.float64, sep="," if n_commas else " ")
    except (ValueError, DeprecationWarning):
        values = None
    if values is None or (n_commas and values.size != n_commas + 1):
        preview = text if len(text) <= 60 else text[:57] + "..."
        raise ValueError(
            f"Column '{name}', {where}: cannot parse the array text {preview!r}; expected "
            "numbers separated by commas or spaces, optionally in () or []."
        )
    return values


def _cell_to_array(value, dtype, name, row, source_ids=None):
    """One cell (array, list, masked array, CSV string, None/NaN) -> 1-D array or None.

    Zero-length, fully masked and all-NaN cells count as missing (None);
    masked elements inside a partly masked array become NaN. ``row`` and
    ``source_ids`` only serve error messages.
    """
    if type(value) is np.ndarray and value.ndim == 1 and value.dtype == dtype:
        # fast path: the canonical layout's cells
        return None if value.size == 0 or np.isnan(value).all() else value
    if value is None or value is np.ma.masked or value is pd.NA:
        return None
    where = _row_label(row, source_ids)
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, str):
        arr = _parse_array_string(value, name, where)
    elif np.isscalar(value):
        if isinstance(value, (float, np.floating)) and np.isnan(value):
            return None
        raise ValueError(
            f"Column '{name}', {where}: expected an array of values, got the scalar "
            f"{value!r}."
        )
    else:
        if np.ma.isMaskedArray(value):
            if np.ma.getmaskarray(value).all():
                return None
            arr = np.ma.filled(value.astype(dtype), np.nan)
        else:
            try:
                arr = np.asarray(value, dtype=dtype)  # no copy when already ``dtype``
            except (TypeError, ValueError):
                raise ValueError(
                    f"Column '{name}', {where}: the cell is not a numeric array "
                    f"({type(value).__name__})."
                ) from None
        if arr.ndim == 0 and np.isnan(arr):
            return None
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
        if arr.ndim != 1:
            raise ValueError(
                f"Column '{name}', {where}: expected a 1-D array, got shape {arr.shape}."
            )
    if arr is None or arr.size == 0 or np.isnan(arr).all():
        return None
    return arr if arr.dtype == dtype else arr.astype(dtype)


def _as_object_cells(col):
    """Any column container -> 1-D object ndarray of its cells (no copy of the cells)."""
    if isinstance(col, (pd.Series, pd.Index)):
        return col.to_numpy(dtype=object)
    if np.ma.isMaskedArray(col) and col.ndim == 1:
        # astropy MaskedColumn / numpy masked array of objects
        data = np.array(np.ma.getdata(col), dtype=object)
        data[np.ma.getmaskarray(col)] = None
        return data
    if isinstance(col, np.ndarray) and col.ndim == 1:
        return np.asarray(col).astype(object, copy=False)
    seq = list(col)
    out = np.empty(len(seq), dtype=object)
    for i, cell in enumerate(seq):  # one assignment per row: keeps ragged cells intact
        out[i] = cell
    return out


def _parse_cells(col, dtype, name, source_ids=None, float32_round=False):
    """Column of cells -> object ndarray holding 1-D arrays (``dtype``) or None."""
    cells = _as_object_cells(col)
    out = np.empty(len(cells), dtype=object)
    for i, cell in enumerate(cells):  # one parse per cell
        arr = _cell_to_array(cell, dtype, name, i, source_ids)
        if arr is not None and float32_round and dtype is np.float64:
            arr = arr.astype(np.float32).astype(np.float64)
        out[i] = arr
    return out


# --------------------------------------------------------------------------- reading


def _resolve_format(path, format):
    if format is not None:
        key = str(format).strip().lower()
        if key not in _FORMAT_ALIASES:
            raise ValueError(
                f"Unknown XP table format {format!r}; supported: csv, ecsv, fits, votable."
            )
        return _FORMAT_ALIASES[key]
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz"):
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffixes[-1]]
    raise ValueError(
        f"Cannot infer the XP table format of {str(path)!r} from its suffix; known "
        f"suffixes are {', '.join(_SUFFIX_FORMATS)} (optionally + .gz). Pass "
        "format='csv', 'ecsv', 'fits' or 'votable'."
    )


def _canonical_name(name):
    low = str(name).lower()
    return low if low in _KNOWN_COLUMNS else str(name)


def _split_field(name):
    """``"bp_coefficient_errors"`` -> ("bp", "coefficient_errors"), else (None, None)."""
    band, underscore, field = name.partition("_")
    return (band, field) if underscore and band in BANDS else (None, None)


def _to_nullable_int(values, name):
    """Numeric values with NaN/mask -> pandas ``Int64`` array."""
    if isinstance(values, pd.Series):
        mask = values.isna().to_numpy()
        if pd.api.types.is_integer_dtype(values.dtype):
            data = values.to_numpy(dtype=np.int64, na_value=0)
        elif pd.api.types.is_numeric_dtype(values.dtype):
            data = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            raise ValueError(f"Column '{name}' should hold integers, got dtype {values.dtype}.")
    else:  # a masked or a plain array (whose mask is all False)
        mask = np.ma.getmaskarray(values)
        data = np.asarray(np.ma.getdata(values))
    if data.dtype.kind == "f":
        mask = mask | np.isnan(data)
        filled = np.where(mask, 0.0, data)
        if not np.array_equal(filled, np.round(filled)):
            raise ValueError(f"Column '{name}' should hold integers, got non-integer values.")
        data = filled
    elif data.dtype.kind not in "iub":
        raise ValueError(f"Column '{name}' should hold integers, got dtype {data.dtype}.")
    return pd.arrays.IntegerArray(data.astype(np.int64), mask.astype(bool))


def _to_float(values, float32=False):
    """Numeric values (masked allowed) -> float64 ndarray with NaN for missing."""
    if isinstance(values, pd.Series):
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    elif np.ma.isMaskedArray(values) or hasattr(values, "mask"):
        arr = np.ma.filled(np.ma.asarray(values).astype(np.float64), np.nan)
    else:
        arr = np.asarray(values, dtype=np.float64)
    if float32:
        arr = arr.astype(np.float32).astype(np.float64)
    return arr


def _passthrough(col, name):
    """An extra astropy column -> something a DataFrame column can hold."""
    mask = np.ma.getmaskarray(col) if hasattr(col, "mask") else None
    data = np.asarray(np.ma.getdata(col) if mask is not None else col)
    if data.ndim > 1:
        out = np.empty(len(data), dtype=object)
        for i in range(len(data)):  # one view per row
            out[i] = None if (mask is not None and np.all(mask[i])) else data[i]
        return out
    kind = data.dtype.kind
    has_missing = mask is not None and bool(mask.any())
    if kind in "iu":
        return _to_nullable_int(col, name) if has_missing else data.astype(np.int64)
    if kind == "f":
        return _to_float(col)
    if kind == "b":
        return pd.arrays.BooleanArray(data.astype(bool), mask) if has_missing else data
    out = (as_str_column(data) if kind in "SU" else data).astype(object)
    if has_missing:
        out[mask] = None
    return out


def _source_ids(values, where):
    """The ``source_id`` column as int64, refusing missing values."""
    is_series = isinstance(values, pd.Series)
    mask = values.isna().to_numpy() if is_series else np.ma.getmaskarray(values)
    if mask.any():
        raise ValueError(
            f"{where}: column 'source_id' has {int(mask.sum())} missing value(s) "
            f"(first at row {int(np.flatnonzero(mask)[0])})."
        )
    if is_series:
        return values.to_numpy(dtype=np.int64)
    data = np.asarray(np.ma.getdata(values))
    if data.dtype.kind not in "iu":
        raise ValueError(f"{where}: column 'source_id' must hold integers, got {data.dtype}.")
    return data.astype(np.int64)


def _read_csv_columns(path):
    """CSV -> (ordered dict name -> pandas Series, n_rows); arrays kept as text."""
    dtypes = {}
    for name in pd.read_csv(path, nrows=0).columns:
        canon = _canonical_name(name)
        if _split_field(canon)[1] in _ARRAY_FIELDS:
            dtypes[name] = object
        elif canon in ("source_id", "solution_id"):
            dtypes[name] = "Int64"
    frame = pd.read_csv(path, dtype=dtypes)
    return {name: frame[name] for name in frame.columns}, len(frame)


def _canonical_frame(columns, n_rows, where, from_text):
    """Build the canonical DataFrame from raw columns (see read_xp_continuous)."""
    renamed = {}
    for name, col in columns.items():
        canon = _canonical_name(name)
        if canon in renamed:
            raise ValueError(f"{where}: column '{canon}' appears twice (names differ by case).")
        renamed[canon] = col
    required = ["source_id"] + [f"{b}_{f}" for b in BANDS for f in _ARRAY_FIELDS]
    missing = [c for c in required if c not in renamed]
    if missing:
        raise ValueError(
            f"{where} is not an XP continuous table: missing column(s) "
            f"{', '.join(repr(c) for c in missing)}; available columns: "
            f"{', '.join(renamed) or '(none)'}. Query gaiadr3.xp_continuous_mean_spectrum "
            "with source_id and, for both bands, *_coefficients, *_coefficient_errors "
            "and *_coefficient_correlations."
        )
    source_ids = _source_ids(renamed["source_id"], where)
    out = {"source_id": source_ids}
    for name, col in renamed.items():
        if name == "source_id":
            continue
        band, field = _split_field(name)
        if field in _ARRAY_FIELDS:
            out[name] = _parse_cells(col, _ARRAY_FIELDS[field], name, source_ids,
                                     float32_round=field in _FLOAT32_ARRAY_FIELDS)
        elif field in _INT_FIELDS or name == "solution_id":
            out[name] = _to_nullable_int(col, name)
        elif field in _FLOAT32_FIELDS:
            out[name] = _to_float(col, float32=True)
        elif from_text:
            out[name] = col.array
        else:
            out[name] = _passthrough(col, name)
    for band in BANDS:
        if f"{band}_n_parameters" not in out:
            sizes = _lengths_of(None, out[f"{band}_coefficients"])
            out[f"{band}_n_parameters"] = pd.arrays.IntegerArray(np.maximum(sizes, 0), sizes < 0)
        if f"{band}_standard_deviation" not in out:
            out[f"{band}_standard_deviation"] = np.full(n_rows, np.nan)
    return pd.DataFrame(out, index=pd.RangeIndex(n_rows))


def read_xp_continuous(path, format=None):
    """Read a Gaia DR3 XP continuous-spectrum table into the canonical layout.

    Reads tables of ``gaiadr3.xp_continuous_mean_spectrum`` as served by the
    Gaia archive (and GaiaXPy's test files) in CSV, ECSV, FITS or VOTable.
    In CSV the arrays are strings such as ``"(v1, v2, ...)"`` (or ``"[...]"``);
    the other formats hold variable-length array columns read with
    :meth:`astropy.table.Table.read`.

    Parameters
    ----------
    path : str or path-like
        The file. Its suffix (``.csv``, ``.ecsv``, ``.fits``/``.fit``,
        ``.xml``/``.vot``/``.votable``, optionally followed by ``.gz``) gives
        the format unless ``format`` is set.
    format : {"csv", "ecsv", "fits", "votable"}, optional
        Force the format.

    Returns
    -------
    pandas.DataFrame
        One row per source, in file order, with

        * ``source_id`` (int64);
        * for each band ``b`` in (``bp``, ``rp``): ``b_coefficients`` (object
          column of 1-D float64 arrays, e-/s), ``b_coefficient_errors`` (float64
          arrays, e-/s, already scaled by ``b_standard_deviation``),
          ``b_coefficient_correlations`` (float32 arrays, strict lower triangle
          row by row), ``b_n_parameters`` (nullable ``Int64``; from the array
          length when the file lacks it) and ``b_standard_deviation``
          (float64; NaN when the file lacks it, as in reduced tables such as
          GaiaXPy's 18 Sco file);
        * every other column of the file: the archive's integer columns
          (``solution_id``, ``b_basis_function_id``, ``b_degrees_of_freedom``,
          ...) as ``Int64``, ``b_chi_squared`` and ``b_relative_shrinking`` as
          float64, anything else as read.

        A missing band (empty CSV field, masked or zero-length array, all-NaN
        array) is ``None`` in the array columns and NaN/NA in the scalar
        columns. The archive stores errors, correlations and the float scalars
        as float32; values are rounded to float32 (then widened) so that all
        formats give identical numbers. Column names are matched to the
        archive names case-insensitively (``SOURCE_ID`` -> ``source_id``).

    Raises
    ------
    ValueError
        Unknown format, a missing required column (``source_id`` and the
        three array columns of both bands), a missing ``source_id`` value or
        an unparsable array cell (the message names the column and row).
    FileNotFoundError
        If ``path`` does not exist.

    See Also
    --------
    xp_band_arrays : dense ``(n, k)`` arrays of one band.
    xp_covariance : the ``(n, k, k)`` coefficient covariances.

    Notes
    -----
    Column definitions: Gaia DR3 documentation, ``xp_continuous_mean_spectrum``
    (De Angeli et al. 2023); basis: Carrasco et al. (2021). The Gaia XP
    uncertain-NN paper (Sect. 2.1) uses all 55 coefficients of each band.

    Examples
    --------
    >>> from skstellar.io import find_shared_data
    >>> from skstellar.io.gaia_xp import read_xp_continuous
    >>> folder = find_shared_data("gaia_xp")
    >>> df = read_xp_continuous(folder / "XP_CONTINUOUS_RAW.csv")  # doctest: +SKIP
    >>> df["rp_coefficients"].iloc[0].shape  # doctest: +SKIP
    (55,)
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}.")
    path = Path(path)
    fmt = _resolve_format(path, format)
    if not path.exists():
        raise FileNotFoundError(f"No such XP table: {str(path)!r}")
    with reading_file(path, f"Gaia XP {fmt.upper()} table"):
        if fmt == "csv":
            columns, n_rows = _read_csv_columns(path)
        else:
            from astropy.table import Table

            with warnings.catch_warnings():
                # VOTable/FITS readers warn about harmless archive metadata.
                warnings.simplefilter("ignore")
                table = Table.read(path, format=ASTROPY_FORMATS[fmt])
            columns, n_rows = {name: table[name] for name in table.colnames}, len(table)
    return _canonical_frame(columns, n_rows, f"XP table {path.name!r}", from_text=fmt == "csv")


# --------------------------------------------------------------------------- stacking


def _check_band(band):
    key = str(band).strip().lower()
    if key not in BANDS:
        raise ValueError(f"band must be 'bp' or 'rp', got {band!r}.")
    return key


def _table_columns(table):
    """(available column names, n_rows) of a DataFrame, astropy Table or mapping."""
    if isinstance(table, pd.DataFrame):
        return [str(c) for c in table.columns], len(table)
    astropy_table = sys.modules.get("astropy.table")  # no import cost when unused
    if astropy_table is not None and isinstance(table, astropy_table.Table):
        return list(table.colnames), len(table)
    if isinstance(table, Mapping):
        names = [str(k) for k in table.keys()]
        lengths = {k: len(v) for k, v in table.items() if hasattr(v, "__len__")
                   and not isinstance(v, (str, bytes))}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"All columns must have the same number of rows; got {lengths}.")
        return names, next(iter(lengths.values()), 0)
    raise TypeError(
        "table must be a pandas DataFrame, an astropy Table or a dict of columns, got "
        f"{type(table).__name__}."
    )


def _lookup(names, wanted):
    """Find ``wanted`` case-insensitively; return (actual name or None)."""
    if wanted in names:
        return wanted
    return {n.lower(): n for n in names}.get(wanted.lower())


def _get_source_ids(table, names):
    name = _lookup(names, "source_id")
    if name is None:
        return None
    col = table[name]
    if isinstance(col, pd.Series):
        return col.to_numpy()
    return np.asarray(np.ma.getdata(col) if hasattr(col, "mask") else col)


def _band_cells(table, names, band, field, source_ids):
    """(dense 2-D float array or None, object cells or None) for one array column."""
    wanted = f"{band}_{field}"
    name = _lookup(names, wanted)
    if name is None:
        raise missing_column_error(wanted, f"the {band.upper()} XP band", names)
    col = table[name]
    # a 2-D numeric column (fixed-length arrays) as float64 with NaN; pandas
    # columns and lists hold cells, not a dense array
    if (getattr(col, "ndim", None) == 2 and getattr(col, "dtype", None) is not None
            and col.dtype.kind in "iuf"):
        return _to_float(col), None
    return None, _parse_cells(col, _ARRAY_FIELDS[field], wanted, source_ids)


def _lengths_of(dense, cells):
    if dense is not None:  # -1: no value in the row (band missing)
        return np.where(np.isnan(dense).all(axis=1), -1, dense.shape[1]).astype(np.int64)
    return np.fromiter((-1 if c is None else c.size for c in cells), dtype=np.int64,
                       count=len(cells))


def xp_band_arrays(table, band, n_coefficients=None):
    """Stack one XP band of a table into dense arrays.

    Parameters
    ----------
    table : pandas.DataFrame, astropy.table.Table or dict of columns
        A table in the canonical layout of :func:`read_xp_continuous`, or any
        table with the archive column names ``<band>_coefficients``,
        ``<band>_coefficient_errors`` and ``<band>_coefficient_correlations``
        (matched case-insensitively). Cells may be numpy (masked) arrays, lists
        or CSV strings such as ``"(1.5, 2.0)"``; a column may also be a 2-D
        numeric array (fixed-length arrays). Empty, masked, zero-length or
        all-NaN cells mean the band is missing for that source.
    band : {"bp", "rp"}
        Which band.
    n_coefficients : int, optional
        Keep only the first ``n_coefficients`` basis coefficients, their errors
        and the correlations among them (thanks to the row-by-row lower-triangle
        order these are the first ``n (n - 1) / 2`` correlation values). Default:
        all, as many as the rows hold; 55 (:data:`DR3_N_COEFFICIENTS`) when no
        row has the band.

    Returns
    -------
    XPBand
        The arrays (shapes, dtypes and units in :class:`XPBand`); rows without
        the band are NaN and ``present`` is False.

    Raises
    ------
    ValueError
        A missing column; rows with different numbers of coefficients; errors
        whose count differs from the coefficients'; correlations whose count
        is not ``k (k - 1) / 2``; a row with only some of the three arrays;
        ``n_coefficients`` larger than the rows hold. Messages name the row
        (and its ``source_id`` when the table has one) and the counts.

    Notes
    -----
    One parse per text cell and one ``np.stack`` per column; no per-value
    Python work.
    """
    band = _check_band(band)
    names, n = _table_columns(table)
    source_ids = _get_source_ids(table, names)
    fields = tuple(_ARRAY_FIELDS)
    parts = {f: _band_cells(table, names, band, f, source_ids) for f in fields}
    lengths = {f: _lengths_of(*parts[f]) for f in fields}

    present = lengths["coefficients"] >= 0
    for f in fields[1:]:
        bad = np.flatnonzero((lengths[f] >= 0) != present)
        if bad.size:
            i = int(bad[0])
            has, lacks = (f"{band}_coefficients", f"{band}_{f}") if present[i] else \
                (f"{band}_{f}", f"{band}_coefficients")
            raise ValueError(
                f"{_row_label(i, source_ids)} has {has} but no {lacks}; a band must have "
                "all three of coefficients, errors and correlations, or none "
                f"({bad.size} such row(s))."
            )

    rows = np.flatnonzero(present)
    k_full = int(lengths["coefficients"][rows[0]]) if rows.size else None
    if rows.size:  # every present row must match the first one's counts
        m_full = packed_lower_size(k_full)
        expected = (
            ("coefficients", k_full,
             f" but {k_full} in {_row_label(int(rows[0]), source_ids)}; all sources of a band "
             "must have the same number of coefficients (pass n_coefficients to keep a "
             "common leading subset)."),
            ("coefficient_errors", k_full,
             f" but '{band}_coefficients' has {k_full}; they must match."),
            ("coefficient_correlations", m_full,
             f"; expected k (k - 1) / 2 = {m_full} for k = {k_full} coefficients (strict "
             "lower triangle, row by row)."),
        )
        for field, count, detail in expected:
            bad = np.flatnonzero(lengths[field][rows] != count)
            if bad.size:
                j = int(rows[bad[0]])
                raise ValueError(f"Column '{band}_{field}' has {int(lengths[field][j])} values "
                                 f"in {_row_label(j, source_ids)}{detail}")

    if n_coefficients is None:
        k = k_full if k_full is not None else DR3_N_COEFFICIENTS
    else:
        k = int(n_coefficients)
        if k < 1:
            raise ValueError(f"n_coefficients must be >= 1, got {n_coefficients!r}.")
        if k_full is not None and k > k_full:
            raise ValueError(
                f"n_coefficients={k} but the {band.upper()} rows hold only {k_full} "
                "coefficients."
            )
    m = packed_lower_size(k)

    def stack(field, width, dtype):
        dense, cells = parts[field]
        out = np.full((n, width), np.nan, dtype=dtype)
        if rows.size:
            out[rows] = (dense[rows, :width] if dense is not None
                         else np.stack([cells[i][:width] for i in rows]))
        return out

    return XPBand(stack("coefficients", k, np.float64), stack("coefficient_errors", k, np.float64),
                  stack("coefficient_correlations", m, np.float32), present)


# --------------------------------------------------------------------------- covariance


def correlation_to_covariance(errors, correlations, *, dtype=np.float64):
    """Rebuild coefficient covariance matrices ``C = diag(e) R diag(e)``.

    ``R`` has a unit diagonal and its strict lower triangle filled, row by
    row, from ``correlations`` (``np.tril_indices(k, -1)`` order: (1,0),
    (2,0), (2,1), (3,0), ...), mirrored to the upper triangle. This is the
    order of the Gaia DR3 ``*_coefficient_correlations`` columns; the other
    (upper-triangle row-by-row) order gives matrices that are not positive
    definite.

    Parameters
    ----------
    errors : array-like of shape (n, k) or (k,)
        1-sigma coefficient errors [e-/s]; NaN rows give NaN matrices.
    correlations : array-like of shape (n, k (k - 1) / 2) or (k (k - 1) / 2,)
        Packed correlation coefficients (dimensionless).
    dtype : numpy dtype, default=float64
        Dtype of the result (and of the arithmetic). float32 halves memory:
        20,000 sources x 55 x 55 take 242 MB instead of 484 MB.

    Returns
    -------
    ndarray of shape (n, k, k) or (k, k)
        Symmetric covariance matrices [(e-/s)^2]; 1-D inputs give one matrix.

    Raises
    ------
    ValueError
        Mismatched numbers of sources, or a correlation length that is not
        ``k (k - 1) / 2``.

    Notes
    -----
    Vectorised: one gather (``np.take``) and one in-place product with
    ``e_i e_j`` per block of 256 sources, so no temporary of the result's
    size is made and the result is exactly symmetric. Gaia XP uncertain-NN
    paper, Sect. 2.2: this is the covariance of the DR3 coefficients that
    Eq. (2) propagates through the normalisation.
    """
    e = np.asarray(errors, dtype=dtype)
    r = np.asarray(correlations)
    single = e.ndim == 1
    if single:
        e = e[None, :]
        r = r[None, :] if r.ndim == 1 else r
    if e.ndim != 2 or r.ndim != 2:
        raise ValueError(
            f"errors must be (n, k) and correlations (n, k (k - 1) / 2); got shapes "
            f"{np.shape(errors)} and {np.shape(correlations)}."
        )
    n, k = e.shape
    if r.shape[0] != n:
        raise ValueError(f"errors has {n} row(s) but correlations has {r.shape[0]}.")
    m = packed_lower_size(k)
    if r.shape[1] != m:
        raise ValueError(
            f"correlations has {r.shape[1]} values per source; expected k (k - 1) / 2 = {m} "
            f"for k = {k} errors (strict lower triangle, row by row)."
        )
    # flat (k * k,) index into [packed correlations..., 1.0] giving R
    gather = np.full((k, k), m, dtype=np.intp)  # diagonal -> the appended 1.0
    rows, cols = np.tril_indices(k, -1)
    gather[rows, cols] = np.arange(m)
    gather[cols, rows] = np.arange(m)
    gather = gather.ravel()
    cov = np.empty((n, k, k), dtype=dtype)
    for start in range(0, n, _COV_CHUNK):  # cache-sized blocks of sources
        sl = slice(start, min(start + _COV_CHUNK, n))
        # packed values followed by a 1 for the diagonal, gathered into (k, k)
        ext = np.empty((sl.stop - sl.start, m + 1), dtype=dtype)
        ext[:, :m] = r[sl]
        ext[:, m] = 1.0
        block = np.take(ext, gather, axis=1).reshape(-1, k, k)
        # e_i e_j as one product keeps the result exactly symmetric
        block *= e[sl, :, None] * e[sl, None, :]
        cov[sl] = block
    return cov[0] if single else cov


def xp_covariance(table, band, scaled=True, *, n_coefficients=None, dtype=np.float64):
    """Coefficient covariance matrices of one XP band of a table.

    Parameters
    ----------
    table : pandas.DataFrame, astropy.table.Table or dict of columns
        As for :func:`xp_band_arrays`.
    band : {"bp", "rp"}
        Which band.
    scaled : bool, default=True
        True: ``diag(e) R diag(e)`` with the archive errors ``e``, which include
        the factor ``<band>_standard_deviation`` (the realistic covariance, the
        one to use). False: the errors are first divided by the standard
        deviation, giving the formal least-squares covariance DPAC stores
        internally (equal to the ``covariance`` of the AVRO records, see
        :func:`read_xp_avro`); needs a ``<band>_standard_deviation`` column.
    n_coefficients : int, optional
        Keep the leading ``n_coefficients`` block (see :func:`xp_band_arrays`).
    dtype : numpy dtype, default=float64
        Output dtype.

    Returns
    -------
    ndarray of shape (n, k, k)
        Covariances [(e-/s)^2]; all-NaN matrices for sources without the band.

    Raises
    ------
    ValueError
        As :func:`xp_band_arrays`; with ``scaled=False`` also a missing
        standard-deviation column (reduced tables such as GaiaXPy's 18 Sco
        file lack it) or a non-finite / non-positive value for a source that
        has the band.
    """
    band = _check_band(band)
    arrays = xp_band_arrays(table, band, n_coefficients=n_coefficients)
    errors = arrays.errors
    if not scaled:
        names, _ = _table_columns(table)
        wanted = f"{band}_standard_deviation"
        name = _lookup(names, wanted)
        if name is None:
            raise missing_column_error(
                wanted, f"the formal (scaled=False) {band.upper()} covariance; reduced tables "
                "without it only support scaled=True", names)
        sd = _to_float(table[name])
        bad = np.flatnonzero(arrays.present & ~(np.isfinite(sd) & (sd > 0)))
        if bad.size:
            source_ids = _get_source_ids(table, names)
            i = int(bad[0])
            raise ValueError(
                f"Column '{name}' is {sd[i]!r} in {_row_label(i, source_ids)}, which has a "
                f"{band.upper()} spectrum; scaled=False needs a positive finite standard "
                f"deviation ({bad.size} such row(s)). Use scaled=True for such tables."
            )
        errors = errors / sd[:, None]
    return correlation_to_covariance(errors, arrays.correlations, dtype=dtype)


# --------------------------------------------------------------------------- AVRO


def _avro_get(node, *keys):
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def read_xp_avro(path):
    """Read DPAC-internal ``MeanSpectrumSolutionWithCov`` AVRO records.

    These records carry, per band, the least-squares ``parameters`` (the
    coefficients) and the packed *formal* covariance (``k (k + 1) / 2 = 1540``
    values for ``k = 55``: lower triangle including the diagonal, row by row),
    i.e. without the ``standard_deviation`` factor included in the archive
    errors. They are an independent check of :func:`xp_covariance`:
    ``xp_covariance(table, band, scaled=False)`` equals ``<band>_covariance``
    and ``scaled=True`` equals it times ``<band>_standard_deviation ** 2``.

    Parameters
    ----------
    path : str or path-like
        The ``.avro`` file.

    Returns
    -------
    pandas.DataFrame
        One row per record: ``source_id`` (int64), ``solution_id`` (Int64) and,
        for each band ``b``, ``b_coefficients`` (object column of float64
        arrays, e-/s), ``b_covariance`` (float64 ``(k, k)`` arrays,
        (e-/s)^2, formal), ``b_standard_deviation`` (float64) and the archive
        scalars ``b_n_parameters``, ``b_chi_squared``, ``b_degrees_of_freedom``,
        ``b_n_measurements``, ``b_n_rejected_measurements``,
        ``b_n_relevant_bases``, ``b_relative_shrinking``,
        ``b_basis_function_id``. A missing band, or a solution stored without
        a covariance (DPAC's compressed variants), gives ``None``/NaN.

    Raises
    ------
    ImportError
        If ``fastavro`` is not installed.
    ValueError
        A record without ``sourceId``, or a covariance whose length is not
        ``k (k + 1) / 2`` for ``k`` parameters (the message names the source).
    """
    try:
        import fastavro
    except ImportError as exc:
        raise ImportError(
            "read_xp_avro needs the optional package fastavro; install it with "
            "`pip install fastavro`."
        ) from exc

    path = Path(path)
    with open(path, "rb") as fh, reading_file(path, "Gaia XP Avro file"):
        records = list(fastavro.reader(fh))

    n = len(records)
    sids = [_avro_get(r, "sourceId") for r in records]
    if None in sids:
        raise ValueError(f"{path.name}: record {sids.index(None)} has no sourceId.")
    source_ids = np.array(sids, dtype=np.int64)
    out = {"source_id": source_ids,
           "solution_id": pd.array([_avro_get(r, "solutionId") for r in records], dtype="Int64")}

    solution_scalars = {
        "standard_deviation": ("standardDeviation", "float"),
        "n_parameters": ("numberOfParameters", "int"),
        "chi_squared": ("chiSquared", "float"),
        "degrees_of_freedom": ("degreesOfFreedom", "int"),
        "n_measurements": ("numberOfMeasurements", "int"),
        "n_rejected_measurements": ("numberOfRejectedMeasurements", "int"),
    }
    spec_scalars = {
        "n_relevant_bases": ("NRelevantBases", "int"),
        "relative_shrinking": ("relativeShrinking", "float"),
        "basis_function_id": ("basisFunctionSetDefId", "int"),
    }
    for band in BANDS:
        specs = [_avro_get(r, f"{band}Spec") for r in records]
        sols = [_avro_get(s, "solution") for s in specs]
        coeffs = np.empty(n, dtype=object)
        covs = np.empty(n, dtype=object)
        packed_by_len = {}
        for i, sol in enumerate(sols):  # records are Python dicts: one pass per record
            params = _avro_get(sol, "parameters")
            coeffs[i] = None if not params else np.array(params, dtype=np.float64)
            packed = _avro_get(sol, "covariance")
            if packed and coeffs[i] is not None:
                k = coeffs[i].size
                if len(packed) != packed_lower_size(k, diagonal=True):
                    raise ValueError(
                        f"{path.name}: {band.upper()} covariance of source_id {source_ids[i]} "
                        f"has {len(packed)} values; expected k (k + 1) / 2 = "
                        f"{packed_lower_size(k, diagonal=True)} for k = {k} parameters."
                    )
                packed_by_len.setdefault(len(packed), []).append(i)
        for idx in packed_by_len.values():  # one vectorised unpack per size
            mats = unpack_lower_triangle([_avro_get(sols[i], "covariance") for i in idx])
            for j, i in enumerate(idx):
                covs[i] = mats[j]
        out[f"{band}_coefficients"] = coeffs
        out[f"{band}_covariance"] = covs
        for field, (key, kind) in {**solution_scalars, **spec_scalars}.items():
            vals = [_avro_get(s, key) for s in (sols if field in solution_scalars else specs)]
            # None -> <NA> in the Int64 columns, NaN in the float64 ones
            out[f"{band}_{field}"] = (pd.array(vals, dtype="Int64") if kind == "int"
                                      else np.array(vals, dtype=np.float64))
    return pd.DataFrame(out, index=pd.RangeIndex(n))


# --------------------------------------------------------------------------- validation


def is_positive_definite(cov, *, rtol=None):
    """Whether each matrix of a stack is (numerically) positive definite.

    A batched Cholesky factorisation (``np.linalg.cholesky``) of the whole
    stack settles the common case at once. When it fails, the stack is
    bisected and each half factorised again, so that only small blocks
    (at most 32 matrices) containing a failing matrix reach the fallback,
    which decides by the smallest eigenvalue (``np.linalg.eigvalsh``):
    positive definite when ``lambda_min > rtol * max |lambda|``.

    Parameters
    ----------
    cov : array-like of shape (n, k, k) or (k, k)
        Symmetric matrices; as for ``np.linalg.cholesky`` only the lower
        triangle is read. Matrices with any NaN/inf (e.g. sources without
        the band) are reported as not positive definite.
    rtol : float, optional
        Relative eigenvalue threshold of the fallback; default
        ``k * eps`` of the matrices' float type.

    Returns
    -------
    ndarray of bool, shape (n,)
        One flag per matrix (a single numpy bool for a ``(k, k)`` input).

    Notes
    -----
    Near-singular matrices (``lambda_min`` within rounding of zero) may be
    decided either way depending on whether they met Cholesky or the
    eigenvalue test; anything clearly indefinite, such as a covariance built
    with the wrong triangle order, is always False.
    """
    a = np.asarray(cov)
    if a.dtype.kind not in "fc":
        a = a.astype(np.float64)
    single = a.ndim == 2
    if single:
        a = a[None]
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError(f"cov must have shape (n, k, k) or (k, k), got {np.shape(cov)}.")
    n, k = a.shape[0], a.shape[1]
    if rtol is None:
        rtol = max(k, 1) * np.finfo(a.dtype).eps
    result = np.zeros(n, dtype=bool)
    if n == 0 or k == 0:
        result[:] = k == 0
        return result[0] if single else result
    todo = [np.flatnonzero(np.isfinite(a).all(axis=(1, 2)))]
    while todo:
        idx = todo.pop()
        if idx.size == 0:
            continue
        block = a if idx.size == n else a[idx]
        try:
            np.linalg.cholesky(block)
            result[idx] = True
        except np.linalg.LinAlgError:
            if idx.size <= _PD_LEAF:
                w = np.linalg.eigvalsh(block)
                result[idx] = w[:, 0] > rtol * np.abs(w).max(axis=1)
            else:
                half = idx.size // 2
                todo.extend((idx[:half], idx[half:]))
    return result[0] if single else result
