"""Read and write catalogues as pandas DataFrames (CSV, ECSV, FITS, Parquet, VOTable).

One pair of functions covers the table formats astronomers exchange:
:func:`read_catalog` turns any of them into a :class:`pandas.DataFrame` with
plain numpy columns (masked values become NaN, byte strings become ``str``),
and :func:`write_catalog` writes a DataFrame back. The format comes from the
file name or an explicit ``format`` argument.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import check_text_table_complete, is_astropy_table, reading_file

__all__ = ["read_catalog", "write_catalog", "format_from_extension", "SUPPORTED_EXTENSIONS",
           "FORMATS", "FORMAT_ALIASES", "ASTROPY_FORMATS"]

#: Canonical format names.
FORMATS = ("csv", "ecsv", "fits", "parquet", "votable")

#: File-name endings recognised for each format (matched case-insensitively).
SUPPORTED_EXTENSIONS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".ecsv": "ecsv",
    ".ecsv.gz": "ecsv",
    ".fits": "fits",
    ".fits.gz": "fits",
    ".fit": "fits",
    ".fit.gz": "fits",
    ".fts": "fits",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xml": "votable",
    ".vot": "votable",
    ".votable": "votable",
}

#: Names accepted for ``format=`` (lower case), mapped to the canonical format.
FORMAT_ALIASES = {
    **{fmt: fmt for fmt in FORMATS},
    "ascii.ecsv": "ecsv",
    "fit": "fits",
    "pq": "parquet",
    "vot": "votable",
    "xml": "votable",
}

#: The :meth:`astropy.table.Table.read` / ``write`` format of each format read through astropy.
ASTROPY_FORMATS = {"ecsv": "ascii.ecsv", "fits": "fits", "votable": "votable"}


def format_from_extension(path, endings):
    """The format whose file-name ending ``path`` has, or None.

    Parameters
    ----------
    path : str or path-like
    endings : dict
        Lower-case endings (``".csv.gz"``) mapped to format names; matched
        case-insensitively, longest first, so ``".csv.gz"`` wins over ``".gz"``.

    Returns
    -------
    str or None
    """
    name = Path(path).name.lower()
    for ext in sorted(endings, key=len, reverse=True):
        if name.endswith(ext):
            return endings[ext]
    return None


def _resolve_format(path: Path, format: str | None) -> str:
    """Canonical format from ``format`` or, when None, from the file name."""
    if format is not None:
        key = str(format).strip().lower()
        if key not in FORMAT_ALIASES:
            raise ValueError(
                f"Unknown catalogue format {format!r}; supported formats are "
                f"{', '.join(FORMATS)}."
            )
        return FORMAT_ALIASES[key]
    fmt = format_from_extension(path, SUPPORTED_EXTENSIONS)
    if fmt is not None:
        return fmt
    raise ValueError(
        f"Cannot infer the catalogue format of {str(path)!r} from its extension. "
        f"Supported extensions: {', '.join(SUPPORTED_EXTENSIONS)}; "
        f"or pass format= one of {', '.join(FORMATS)}."
    )


# --------------------------------------------------------------------------- reading


def _decode_objects(values: np.ndarray) -> np.ndarray:
    """Decode ``bytes`` elements of an object array to ``str`` (others untouched)."""
    is_bytes = np.frompyfunc(lambda v: isinstance(v, bytes), 1, 1)(values).astype(bool)
    if is_bytes.any():
        values = values.copy()
        values[is_bytes] = np.frompyfunc(lambda v: v.decode("utf-8", "replace"), 1, 1)(
            values[is_bytes]
        )
    return values


def _column_values(col) -> np.ndarray | pd.Series:
    """Plain numpy values of one astropy column, with masks turned into NaN/None."""
    mask = np.ma.getmaskarray(col) if np.ma.isMaskedArray(col) else None
    values = np.asarray(np.ma.getdata(col))
    if values.dtype.byteorder not in ("=", "|") and values.dtype.kind != "O":
        values = values.astype(values.dtype.newbyteorder("="))  # FITS data are big-endian
    if values.dtype.kind == "S":
        values = np.char.decode(values, "utf-8", errors="replace")
    elif values.dtype.kind == "O":
        values = _decode_objects(values)

    if mask is not None and mask.any():
        if values.dtype.kind in "biufc":
            values = values.astype(np.complex128 if values.dtype.kind == "c" else np.float64)
            values[mask] = np.nan
        else:
            values = values.astype(object)
            values[mask] = None

    if values.ndim > 1:
        # One numpy array per row (e.g. Gaia XP coefficient vectors).
        return pd.Series(list(values), dtype=object)
    return values


def _table_to_frame(table) -> pd.DataFrame:
    """Convert an astropy Table to a DataFrame of plain numpy columns."""
    data = {name: _column_values(table[name]) for name in table.colnames}
    df = pd.DataFrame(data, index=pd.RangeIndex(len(table)))
    units = {
        name: table[name].unit.to_string()
        for name in table.colnames
        if getattr(table[name], "unit", None) is not None
    }
    if units:
        df.attrs["units"] = units
    if table.meta:
        df.attrs["meta"] = dict(table.meta)
    return df


def _read_fits(path: Path, **kwargs):
    from astropy.io import fits
    from astropy.table import Table

    if "hdu" in kwargs:
        return Table.read(path, format="fits", **kwargs)
    with fits.open(path, memmap=False) as hdul:
        for index, hdu in enumerate(hdul):
            if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
                return Table.read(hdul, hdu=index, format="fits", **kwargs)
    raise ValueError(f"{str(path)!r} contains no FITS table HDU.")


def read_catalog(path, format: str | None = None, **kwargs) -> pd.DataFrame:
    """Read a catalogue file into a :class:`pandas.DataFrame`.

    Parameters
    ----------
    path : str or path-like
        File to read. The format is inferred from the ending when ``format``
        is None: ``.csv``/``.csv.gz`` (CSV), ``.ecsv``/``.ecsv.gz`` (astropy
        ECSV), ``.fits``/``.fits.gz``/``.fit``/``.fit.gz``/``.fts`` (FITS),
        ``.parquet``/``.pq`` (Parquet) and ``.xml``/``.vot``/``.votable``
        (VOTable).
    format : {"csv", "ecsv", "fits", "parquet", "votable"}, optional
        Explicit format, overriding the file name.
    **kwargs
        Passed to the underlying reader (:func:`pandas.read_csv`,
        :func:`pandas.read_parquet` or :meth:`astropy.table.Table.read`,
        e.g. ``hdu=2`` for FITS or ``columns=[...]`` for Parquet).

    Returns
    -------
    pandas.DataFrame
        One row per source with a fresh ``RangeIndex``. Values keep the units
        of the file (no conversion is done).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the format is unknown or cannot be inferred from the extension
        (the message lists the supported ones), or a FITS file has no table.

    Notes
    -----
    For formats read through astropy (ECSV, FITS, VOTable):

    * masked numeric (and boolean) values become NaN, so a masked integer or
      boolean column becomes ``float64`` (integers above 2**53 lose
      precision); masked strings become None;
    * byte strings are decoded (UTF-8) to ``str``;
    * multidimensional columns become object columns holding one numpy array
      per row;
    * FITS data are converted to native byte order; the first table HDU is
      read unless ``hdu`` is given;
    * column units (as strings) are stored in ``df.attrs["units"]`` and
      table metadata in ``df.attrs["meta"]``.

    Examples
    --------
    >>> from skstellar.io import read_catalog
    >>> df = read_catalog("gaia_sample.fits")  # doctest: +SKIP
    """
    path = Path(path)
    fmt = _resolve_format(path, format)
    if not path.exists():
        raise FileNotFoundError(f"Catalogue file not found: {str(path)!r}")

    with reading_file(path, f"{fmt.upper()} catalogue"):
        if fmt == "csv":
            df = pd.read_csv(path, **kwargs)
            check_text_table_complete(path, sep=kwargs.get("sep", ","), what="CSV catalogue")
            return df
        if fmt == "parquet":
            df = pd.read_parquet(path, **kwargs)
            return df.reset_index(drop=True) if not isinstance(df.index, pd.RangeIndex) else df
        if fmt == "fits":
            return _table_to_frame(_read_fits(path, **kwargs))
        from astropy.table import Table

        return _table_to_frame(Table.read(path, format=ASTROPY_FORMATS[fmt], **kwargs))


# --------------------------------------------------------------------------- writing


def _series_to_column(name: str, series: pd.Series):
    """Convert one DataFrame column to an astropy (Masked)Column."""
    from astropy.table import Column, MaskedColumn

    missing = series.isna().to_numpy()
    dtype = series.dtype

    def column(values):
        """A MaskedColumn when some values are missing, else a plain Column."""
        return (MaskedColumn(values, name=name, mask=missing) if missing.any()
                else Column(values, name=name))

    if isinstance(dtype, pd.CategoricalDtype):
        series = series.astype(object)
        dtype = series.dtype
    is_bool = pd.api.types.is_bool_dtype(dtype)
    if is_bool or pd.api.types.is_integer_dtype(dtype):
        if missing.any():  # nullable extension dtype with <NA>
            return column(series.to_numpy(dtype=bool if is_bool else np.int64, na_value=0))
        return Column(series.to_numpy(dtype=bool if is_bool else None), name=name)
    if pd.api.types.is_float_dtype(dtype) or pd.api.types.is_complex_dtype(dtype):
        return Column(series.to_numpy(dtype=np.float64 if pd.api.types.is_float_dtype(dtype)
                                      else np.complex128, na_value=np.nan), name=name)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return column(series.astype(str).to_numpy(dtype=str))

    # Strings and generic objects (possibly per-row arrays).
    values = series.to_numpy(dtype=object)
    present = values[~missing]
    if present.size and isinstance(present[0], (np.ndarray, list, tuple)):
        try:
            return Column(np.stack([np.asarray(v) for v in values]), name=name)
        except ValueError as exc:
            raise ValueError(
                f"Column {name!r} holds arrays of different shapes; it cannot be written "
                "as a table column."
            ) from exc
    filled = values.copy()
    filled[missing] = ""
    if present.size and isinstance(present[0], bytes):
        return column(np.array(filled, dtype=bytes))
    return column(np.array(filled.astype(str), dtype=str))


def _frame_to_table(df: pd.DataFrame):
    """Convert a DataFrame to an astropy Table (index dropped, attrs units applied)."""
    from astropy.table import Table

    table = Table([_series_to_column(str(name), df[name]) for name in df.columns], copy=False)
    units = df.attrs.get("units", {}) if isinstance(df.attrs, dict) else {}
    for name, unit in units.items():
        if name in table.colnames and unit:
            table[name].unit = unit
    return table


def write_catalog(df, path, format: str | None = None, overwrite: bool = False) -> Path:
    """Write a DataFrame (or astropy Table) to a catalogue file.

    Parameters
    ----------
    df : pandas.DataFrame or astropy.table.Table
        Catalogue to write. The index is not written. Units stored in
        ``df.attrs["units"]`` (column -> unit string, as set by
        :func:`read_catalog`) are written to ECSV, FITS and VOTable files.
    path : str or path-like
        Destination. The format is inferred from the ending as in
        :func:`read_catalog` (``.csv.gz``, ``.ecsv.gz`` and ``.fits.gz`` are
        gzip-compressed).
    format : {"csv", "ecsv", "fits", "parquet", "votable"}, optional
        Explicit format, overriding the file name.
    overwrite : bool, default=False
        Replace an existing file. When False an existing ``path`` raises.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is False.
    ValueError
        When the format is unknown or cannot be inferred.

    Notes
    -----
    Missing values: NaN stays NaN; missing integers/booleans of pandas
    nullable dtypes and missing strings are written as masked values in
    ECSV/FITS/VOTable (FITS stores masked strings as empty strings). Object
    columns holding one equal-length array per row become multidimensional
    columns in ECSV/FITS/VOTable and list columns in Parquet; CSV cannot hold
    them faithfully.
    """
    path = Path(path)
    fmt = _resolve_format(path, format)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists; pass overwrite=True to replace it.")
    if not isinstance(df, pd.DataFrame):
        if not is_astropy_table(df):
            raise TypeError(
                f"write_catalog expects a pandas DataFrame or astropy Table, got "
                f"{type(df).__name__}."
            )
        df = _table_to_frame(df)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"Directory {str(path.parent)!r} does not exist.")

    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    else:
        table = _frame_to_table(df)
        if fmt == "ecsv" and path.name.lower().endswith(".gz"):
            buffer = io.StringIO()
            table.write(buffer, format="ascii.ecsv")
            with gzip.open(path, "wt", encoding="utf-8") as handle:
                handle.write(buffer.getvalue())
        else:
            table.write(path, format=ASTROPY_FORMATS[fmt], overwrite=True)
    return path
