"""Input-checking helpers shared by skstellar transformers and selection functions.

They turn the containers astronomers use (pandas DataFrames, astropy
Tables/QTables, dicts of arrays or Quantities, numpy arrays) into plain
columns, and raise ``ValueError`` messages that name the offending column
and row, as the project's conventions require.
"""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Mapping

import numpy as np

__all__ = [
    "as_float_column",
    "check_integer",
    "check_range_pair",
    "as_str_column",
    "check_finite_columns",
    "check_non_negative",
    "check_numeric_input",
    "check_text_table_complete",
    "reading_file",
    "check_not_empty",
    "column_names",
    "is_named_input",
    "missing_column_error",
    "row_location",
    "to_frame_like",
]

#: How many column names a "Missing column" message lists before eliding.
_MAX_LISTED = 40


def is_pandas_df(X) -> bool:
    """Whether ``X`` is a pandas DataFrame."""
    import pandas as pd

    return isinstance(X, pd.DataFrame)


def is_astropy_table(X) -> bool:
    """Whether ``X`` is an astropy Table."""
    from astropy.table import Table

    return isinstance(X, Table)


def is_named_input(X) -> bool:
    """Whether ``X`` carries column names skstellar can select by.

    Parameters
    ----------
    X : object
        Candidate input.

    Returns
    -------
    bool
        True for an astropy ``Table``/``QTable``, a mapping with string keys,
        a numpy structured array, and a pandas ``DataFrame`` whose column
        labels are all strings (scikit-learn's rule for feature names).
    """
    if is_astropy_table(X):
        return True
    if is_pandas_df(X):
        return len(X.columns) > 0 and all(isinstance(c, str) for c in X.columns)
    if isinstance(X, Mapping):
        return all(isinstance(k, str) for k in X.keys())
    return isinstance(X, np.ndarray) and X.dtype.names is not None


def column_names(X) -> list[str]:
    """Column names of a named input (see :func:`is_named_input`).

    Parameters
    ----------
    X : DataFrame, Table, Mapping or structured ndarray
        Named input.

    Returns
    -------
    list of str
        The names, in the container's order.
    """
    if is_astropy_table(X):
        return list(X.colnames)
    if is_pandas_df(X):
        return [str(c) for c in X.columns]
    if isinstance(X, Mapping):
        return list(X.keys())
    if isinstance(X, np.ndarray) and X.dtype.names is not None:
        return list(X.dtype.names)
    raise TypeError(f"{type(X).__name__} input has no column names.")


def missing_column_error(column, purpose, available) -> ValueError:
    """Build the ``ValueError`` for a required column that is absent.

    Parameters
    ----------
    column : str
        The column that was looked for.
    purpose : str
        What it was needed for, e.g. ``"band W1"``.
    available : sequence of str
        The columns the input does have.

    Returns
    -------
    ValueError
        ``"Missing column 'w1mpro' for band W1; available columns: ..."``.
    """
    names = list(available)
    listed = ", ".join(names[:_MAX_LISTED]) or "(none)"
    if len(names) > _MAX_LISTED:
        listed += f", ... ({len(names) - _MAX_LISTED} more)"
    return ValueError(f"Missing column '{column}' for {purpose}; available columns: {listed}")


def _num_rows(value) -> int:
    shape = getattr(value, "shape", None)
    if shape is not None:
        if len(shape) == 0:
            raise ValueError("Column values must be 1-D sequences, got a scalar.")
        return int(shape[0])
    return len(value)


def check_not_empty(X_or_n, *, what: str = "X", minimum: int = 1) -> int:
    """Raise if the input has fewer than ``minimum`` rows.

    Parameters
    ----------
    X_or_n : int or array-like
        Number of rows, or anything with ``shape``/``len``.
    what : str, default="X"
        Name used in the message.
    minimum : int, default=1
        Smallest acceptable number of rows.

    Returns
    -------
    int
        The number of rows.

    Raises
    ------
    ValueError
        ``"Found X with 0 sample(s) while a minimum of 1 is required."``
        (worded like scikit-learn's own check).
    """
    n = int(X_or_n) if isinstance(X_or_n, (int, np.integer)) else _num_rows(X_or_n)
    if n < minimum:
        raise ValueError(
            f"Found {what} with {n} sample(s) while a minimum of {minimum} is required."
        )
    return n


def check_finite_columns(values, names, what: str = "value", *, index=None, hint=None):
    """Raise a ``ValueError`` naming the first column holding NaN or inf.

    Parameters
    ----------
    values : ndarray of shape (n_rows,) or (n_rows, n_columns)
        Numeric values (units irrelevant).
    names : str or sequence of str
        Column name(s), one per column of ``values``.
    what : str, default="value"
        What a value is, for the message (``"magnitude"``, ...).
    index : sequence, optional
        Row labels (e.g. a DataFrame index); when given the label of the
        first bad row is quoted next to its position.
    hint : str, optional
        Advice appended to the message.

    Raises
    ------
    ValueError
        E.g. ``"Column 'j_m' has 3 NaN value(s) (first at row 17)"``; NaN
        is reported before +/-inf. Rows are 0-based positions.
    """
    arr, names = _named_columns(values, names)
    if len(names) != arr.shape[1]:
        raise ValueError(f"Got {len(names)} name(s) for {arr.shape[1]} column(s).")
    if np.isfinite(arr).all():  # one pass on the common, clean input
        return
    for label, bad in (("NaN", np.isnan(arr)), ("inf", np.isinf(arr))):
        if bad.any():
            c, r = _first_bad_cell(bad)
            raise ValueError(
                f"Column '{names[c]}' has {int(bad[:, c].sum())} {label} {what}(s) "
                f"(first at {row_location(r, index)})" + (f". {hint}" if hint else "")
            )


def _named_columns(values, names):
    """``values`` as a float64 (n_rows, n_columns) array and ``names`` as a list."""
    arr = np.asarray(values, dtype=np.float64)
    names = [names] if isinstance(names, str) else list(names)
    return (arr[:, None] if arr.ndim == 1 else arr), names


def _first_bad_cell(bad):
    """(column, row) of the first True of a 2-D mask: first column holding one, its first row."""
    c = int(np.flatnonzero(bad.any(axis=0))[0])
    return c, int(np.argmax(bad[:, c]))


def _fill_masked(col):
    """Return plain data with masked entries as NaN (numeric) or None (other)."""
    if np.ma.isMaskedArray(col):
        mask, col = np.ma.getmaskarray(col), np.ma.getdata(col)
    elif hasattr(col, "unmasked") and hasattr(col, "mask"):
        # astropy.utils.masked.Masked (e.g. a masked Quantity column of a QTable)
        mask, col = np.asarray(col.mask), col.unmasked
    else:
        return col
    if not mask.any():
        return col
    if np.asarray(col).dtype.kind in "biuf":
        col = col.astype(np.float64, copy=True)
        col[mask] = np.nan
        return col
    out = np.asarray(col).astype(object)
    out[mask] = None
    return out


def _to_numpy_column(col):
    """Convert one column to float64 ndarray, bool ndarray, Quantity or object ndarray."""
    import astropy.units as u
    import pandas as pd

    if isinstance(col, (pd.Series, pd.Index)):
        if pd.api.types.is_bool_dtype(col.dtype) and not col.hasnans:
            return col.to_numpy(dtype=bool)
        if pd.api.types.is_numeric_dtype(col.dtype):
            return col.to_numpy(dtype=np.float64, na_value=np.nan)
        col = col.to_numpy(dtype=object)

    # the unit of an astropy Column of a plain Table (read before _fill_masked drops it)
    unit = getattr(col, "unit", None) if hasattr(col, "info") else None

    col = _fill_masked(col)
    if isinstance(col, u.Quantity):
        if isinstance(col, u.Magnitude):
            return col.astype(np.float64, copy=False)
        return u.Quantity(col, dtype=np.float64, copy=False)
    arr = np.asarray(col)
    if arr.ndim != 1:
        raise ValueError(f"Each column must be 1-D, got shape {arr.shape}.")
    if arr.dtype.kind not in "iufO":
        return arr  # boolean, strings, ...
    try:
        arr = arr.astype(np.float64, copy=False)
    except (TypeError, ValueError):
        return arr  # objects that are not numbers
    return u.Quantity(arr, unit, copy=False) if unit is not None else arr


def to_frame_like(X, columns=None):
    """Normalise tabular input into a dict of 1-D columns.

    Parameters
    ----------
    X : DataFrame, astropy Table/QTable, Mapping, structured or 2-D ndarray
        Input table. Array-likes without names get names ``x0, x1, ...``.
    columns : sequence of str, optional
        Convert only these columns (those absent are simply left out);
        default all.

    Returns
    -------
    data : dict
        Column name -> 1-D value. Numeric columns become float64 ndarrays,
        or ``astropy.units.Quantity`` (float64) when the column carries a
        unit (QTable Quantity columns and Table columns with ``unit`` set);
        boolean columns stay boolean; anything else is an object/str ndarray.
        Masked or missing numeric entries become NaN, missing strings None.
    n_rows : int
        Number of rows.
    was_named : bool
        Whether ``X`` carried column names (see :func:`is_named_input`).

    Raises
    ------
    ValueError
        For a 1-D or >2-D array, or mapping values of unequal length.
    """
    named = is_named_input(X)
    if named:
        names = column_names(X)
        if isinstance(X, np.ndarray) or is_pandas_df(X) or is_astropy_table(X):
            n_rows, column = len(X), X.__getitem__  # (structured array or table)
        else:  # Mapping
            lengths = {k: _num_rows(v) for k, v in X.items()}
            if len(set(lengths.values())) > 1:
                raise ValueError(f"All columns must have the same length; got {lengths}.")
            n_rows = next(iter(lengths.values()), 0)

            def column(c):
                v = X[c]
                return v if hasattr(v, "shape") or hasattr(v, "dtype") else np.asarray(v)
    else:  # unnamed columns x0, x1, ... by position
        arr = X if is_pandas_df(X) else np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(
                f"Expected 2D array, got {arr.ndim}D array instead. Reshape your data "
                "either using array.reshape(-1, 1) if your data has a single feature "
                "or array.reshape(1, -1) if it contains a single sample."
            )
        n_rows, n_columns = arr.shape
        names = [f"x{i}" for i in range(n_columns)]
        by_position = arr.iloc if is_pandas_df(X) else arr

        def column(c):
            return by_position[:, int(c[1:])]
    present = set(names)
    wanted = names if columns is None else [c for c in columns if c in present]
    return {c: _to_numpy_column(column(c)) for c in wanted}, int(n_rows), named


def as_float_column(values, name, *, unit=None, kind="value"):
    """Return a column as float64 ndarray, converting Quantities to ``unit``.

    Parameters
    ----------
    values : array-like or astropy Quantity
        Column values, e.g. from :func:`to_frame_like`.
    name : str
        Column name, for messages.
    unit : astropy unit, optional
        Unit a Quantity column must be convertible to; plain arrays are
        assumed to be in it already. ``astropy.units.mag`` also accepts
        logarithmic magnitude Quantities (``u.ABmag`` ...), taking their value.
        When None, a Quantity must be dimensionless.
    kind : str, default="value"
        What the column holds, for messages (``"magnitude"``, ``"parallax"``).

    Returns
    -------
    ndarray of float64

    Raises
    ------
    ValueError
        Non-numeric column, or a unit that cannot be converted ("wrong units").
    """
    import astropy.units as u

    if isinstance(values, u.Quantity):
        target = u.dimensionless_unscaled if unit is None else u.Unit(unit)
        if isinstance(values, u.Magnitude) and target == u.mag:
            return np.asarray(values.value, dtype=np.float64)
        try:
            return np.asarray(values.to_value(target), dtype=np.float64)
        except (u.UnitsError, TypeError, ValueError):
            expected = "dimensionless" if unit is None else str(target)
            raise ValueError(
                f"Column '{name}' has wrong units for a {kind}: {values.unit!s} "
                f"cannot be converted to {expected}."
            ) from None
    arr = np.asarray(values)
    if arr.dtype.kind == "b":
        raise ValueError(f"Column '{name}' is boolean, expected a numeric {kind}.")
    try:
        return arr.astype(np.float64, copy=False)
    except (TypeError, ValueError):
        raise ValueError(
            f"Column '{name}' is not numeric (dtype {arr.dtype}); expected a {kind}."
        ) from None


def as_str_column(values, name="column"):
    """Return a column as a str ndarray, missing entries as ``""``.

    Parameters
    ----------
    values : array-like
        Strings, bytes (FITS tables) or objects; None/NaN count as missing.
    name : str
        Column name, for messages.

    Returns
    -------
    ndarray of str
    """
    import pandas as pd

    arr = np.asarray(values)
    if arr.dtype.kind == "U":
        return arr
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "ascii", errors="replace")
    if arr.dtype.kind in "biuf":
        raise ValueError(f"Column '{name}' is numeric (dtype {arr.dtype}); expected strings.")
    s = pd.Series(arr, dtype=object)
    decoded = s.str.decode("ascii", errors="replace")
    is_str = s.map(type).eq(str)
    out = s.where(is_str, decoded).where(lambda v: v.map(type).eq(str), "")
    return out.to_numpy(dtype=str)


def _array_columns(X):
    """(2-D ndarray, column labels for messages, row labels) of a table-like X, or Nones."""
    if is_pandas_df(X):
        named = is_named_input(X)
        labels = [f"'{c}'" if named else str(j) for j, c in enumerate(X.columns)]
        return X.to_numpy(), labels, X.index
    if getattr(getattr(X, "dtype", None), "names", None) is not None:
        return None, None, None  # structured arrays: left to the caller's own checks
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError):
        return None, None, None
    if arr.ndim == 1:
        return arr[:, None], None, None
    if arr.ndim != 2:
        return None, None, None
    return arr, [str(j) for j in range(arr.shape[1])], None


def row_location(r, index=None):
    """``"row r"`` plus the row's index label as a plain Python value, for messages.

    Parameters
    ----------
    r : int
        Row position.
    index : sequence or None
        Row labels (a pandas Index, an array); None gives the position alone.
    """
    if index is None:
        return f"row {r}"
    label = list(index[r:r + 1])[0]  # a plain Python value: no np.int64(...) repr
    return f"row {r}, index {(label.item() if isinstance(label, np.generic) else label)!r}"


def check_numeric_input(X, *, what="X", allow_nan=False, allow_inf=False, hint=None):
    """Raise a ``ValueError`` naming the column and row of a non-numeric or non-finite entry.

    scikit-learn's own validation says only "could not convert string to
    float" or "Input X contains NaN"; call this first to name the place.
    Inputs it cannot read as a 1-D or 2-D table (ragged lists, other ranks,
    structured arrays) are left to the caller's validation.

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_rows,) or (n_rows, n_columns)
        Input (units irrelevant). DataFrame columns are quoted by name,
        array columns by 0-based position, rows by 0-based position (and
        index label for a DataFrame).
    what : str, default="X"
        Name of the input, for messages (``"X"``, ``"y"``, ``"flux"``).
    allow_nan : bool, default=False
        Accept NaN (for inputs where NaN marks a masked value).
    allow_inf : bool, default=False
        Accept +/-inf.
    hint : str, optional
        Advice appended to the message.

    Raises
    ------
    ValueError
        E.g. ``"X column 2 is not numeric: row 3 holds 'bad' (1 value(s) in
        all)"`` or ``"X has 1 NaN value(s) in column 'M_G' (first at row 3,
        index 7)"``; NaN is reported before inf.
    """
    arr, labels, index = _array_columns(X)
    if arr is None or arr.size == 0 or arr.dtype.kind == "c":
        return  # complex data: left to scikit-learn's own message
    col = (lambda c: "") if labels is None else (lambda c: f" in column {labels[c]}")
    if arr.dtype.kind not in "biufc":
        import pandas as pd

        original = pd.Series(arr.ravel(), dtype=object)
        is_text = original.map(lambda v: isinstance(v, (str, bytes))).to_numpy()
        bad = np.zeros(arr.size, dtype=bool)
        bad[is_text] = pd.to_numeric(original[is_text].map(
            lambda v: v.decode() if isinstance(v, bytes) else v), errors="coerce").isna()
        bad = bad.reshape(arr.shape)
        if bad.any():
            r, c = (int(i) for i in np.argwhere(bad)[0])
            colname = "" if labels is None else f" column {labels[c]}"
            raise ValueError(
                f"{what}{colname} is not numeric: {row_location(r, index)} holds {arr[r, c]!r} "
                f"({int(bad.sum())} non-numeric value(s) in all)."
                + (f" {hint}" if hint else "")
            )
    try:
        arr = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        return  # other objects: left to the caller's validation
    if np.isfinite(arr).all():  # one pass on the common, clean input
        return
    for label, bad, allowed in (("NaN", np.isnan(arr), allow_nan),
                                ("inf", np.isinf(arr), allow_inf)):
        if allowed or not bad.any():
            continue
        c, r = _first_bad_cell(bad)
        raise ValueError(
            f"{what} has {int(bad.sum())} {label} value(s){col(c)} "
            f"(first at {row_location(r, index)})." + (f" {hint}" if hint else "")
        )


@contextlib.contextmanager
def reading_file(path, what="file"):
    """Turn a parser's failure on ``path`` into a ``ValueError`` naming the file.

    Readers wrap their parsing in it so that a truncated or wrong-format
    file gives ``"Cannot read <what> 'path': <cause>. Is the file truncated
    or not a <what>?"`` instead of a parser-internal error. An absent file
    stays a ``FileNotFoundError``; ``ValueError`` messages that already
    name the file pass through unchanged.

    Parameters
    ----------
    path : str or path-like
        The file being read.
    what : str, default="file"
        What the file should be, e.g. ``"FITS catalogue"``.

    Raises
    ------
    ValueError
        From any ``OSError`` (but ``FileNotFoundError``/``PermissionError``),
        ``EOFError``, ``ValueError``, ``KeyError``, ``IndexError``,
        ``UnicodeDecodeError``, ``zlib``/``zipfile``/pandas parser errors
        raised inside the block.
    """
    import zipfile
    import zlib

    name = os.fspath(path)
    try:
        yield
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (ValueError, OSError, EOFError, KeyError, IndexError, zlib.error,
            zipfile.BadZipFile) as exc:  # (UnicodeDecodeError is a ValueError)
        if isinstance(exc, ValueError) and name in str(exc):
            raise
        cause = " ".join(str(exc).split()) or type(exc).__name__
        if len(cause) > 200:
            cause = cause[:197] + "..."
        raise ValueError(f"Cannot read {what} '{name}': {cause} ({type(exc).__name__}). "
                         f"Is the file truncated or not a {what}?") from exc


def check_text_table_complete(path, sep=",", what="table"):
    """Raise if a plain-text table's last line has fewer fields than its header.

    pandas fills the missing fields of a cut-off last line with NaN without
    a word; a file truncated mid-line (an interrupted download) is caught
    here. A cut that falls inside the last field of a line cannot be told
    from a complete line and passes; compressed files are not inspected.

    Parameters
    ----------
    path : str or path-like
        A plain-text (not gzip) table whose first non-comment line is the
        header.
    sep : str or None, default=","
        Field separator; None splits on runs of whitespace.
    what : str, default="table"
        What the file is, for the message.

    Raises
    ------
    ValueError
        ``"'cat.csv' looks truncated: its last line has 3 field(s) but the
        header has 12."``
    """
    import csv

    name = os.fspath(path)
    if name.endswith((".gz", ".bz2", ".xz", ".zip")):
        return
    with open(name, "rb") as fh:
        header = next((line for line in fh if line.strip() and not line.lstrip().startswith(b"#")),
                      b"")
        end = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, end - 65536))
        tail = fh.read().rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
    if not header or not tail or tail == header.rstrip(b"\r\n"):
        return

    def fields(raw):
        text = raw.decode("utf-8", errors="replace").strip("\r\n")
        if sep is None:
            return len(text.split())
        return len(next(csv.reader([text], delimiter=sep)))

    n_header, n_last = fields(header), fields(tail)
    if n_last < n_header:
        raise ValueError(
            f"{what[:1].upper()}{what[1:]} '{name}' looks truncated: its last line has {n_last} "
            f"field(s) but the header has {n_header}."
        )


def check_non_negative(values, names, what="error", *, index=None, hint=None, strict=False):
    """Raise a ``ValueError`` naming the first column and row holding a negative value.

    NaN is not checked here (see :func:`check_finite_columns`).

    Parameters
    ----------
    values : ndarray of shape (n_rows,) or (n_rows, n_columns)
        Uncertainties, variances or other quantities that must be >= 0.
    names : str or sequence of str
        Column name(s), one per column of ``values``.
    what : str, default="error"
        What a value is, for the message.
    index : sequence, optional
        Row labels; the label of the first bad row is quoted too.
    hint : str, optional
        Advice appended to the message.
    strict : bool, default=False
        Refuse zeros too (values must be > 0; the message says "non-positive").

    Raises
    ------
    ValueError
        E.g. ``"Column 'j_msigcom' has 1 negative error(s) (first at row 2)."``
    """
    arr, names = _named_columns(values, names)
    with np.errstate(invalid="ignore"):
        bad = arr <= 0 if strict else arr < 0
    if not bad.any():
        return
    c, r = _first_bad_cell(bad)
    sign = "non-positive" if strict else "negative"
    raise ValueError(
        f"Column '{names[c]}' has {int(bad[:, c].sum())} {sign} {what}(s) "
        f"(first at {row_location(r, index)})." + (f" {hint}" if hint else "")
    )


def check_integer(name, value, minimum=1, *, kind=None):
    """Return ``value`` as an int, or raise a ``ValueError`` if it is no integer >= ``minimum``.

    Parameters
    ----------
    name : str
        Parameter name, for the message.
    value : object
        Candidate count; booleans are refused.
    minimum : int, default=1
        Smallest accepted value.
    kind : str, optional
        What ``value`` must be, for the message (default ``"an integer >=
        <minimum>"``; e.g. ``"a positive integer"``).

    Returns
    -------
    int

    Raises
    ------
    ValueError
        E.g. ``"n_train must be an integer >= 1, got 0."``
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < minimum:
        kind = f"an integer >= {minimum}" if kind is None else kind
        raise ValueError(f"{name} must be {kind}, got {value!r}.")
    return int(value)


def check_range_pair(name, value, lower=-np.inf, upper=np.inf, *, allow_equal=False,
                     domain="allowed"):
    """Return a finite ``(low, high)`` pair of floats inside ``[lower, upper]``.

    Parameters
    ----------
    name : str
        Parameter name, for the messages.
    value : sequence of two numbers
        The candidate range (same unit as ``lower`` and ``upper``).
    lower, upper : float, default=-inf, inf
        Bounds the range must lie within.
    allow_equal : bool, default=False
        Accept ``low == high``.
    domain : str, default="allowed"
        What the bounds are, for the message (``"calibrated"``).

    Returns
    -------
    (float, float)

    Raises
    ------
    ValueError
        When ``value`` is not two numbers, not finite and increasing, or
        outside ``[lower, upper]``.
    """
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {value!r}.") from exc
    ok = low <= high if allow_equal else low < high
    if not (np.isfinite(low) and np.isfinite(high) and ok):
        raise ValueError(f"{name} must satisfy low < high (finite), got {value!r}.")
    if low < lower or high > upper:
        raise ValueError(f"{name}={value!r} lies outside the {domain} domain [{lower}, {upper}].")
    return low, high
