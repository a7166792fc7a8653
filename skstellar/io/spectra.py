"""Read batches of 1-D spectra into :class:`~skstellar.spectrum.SpectrumBatch`.

Two families of readers are provided:

* :func:`read_lamost_spectra` reads many LAMOST low-resolution (LRS) FITS
  files at once, in both the DR1-style layout (rows flux, ivar,
  subcontinuum, and-mask, or-mask; wavelengths from the header) and the
  DR6-style layout (row 2 holds the wavelengths in Angstrom);
* :func:`read_spectra_table` / :func:`write_spectra_table` read and write a
  generic table with one spectrum per row (FITS binary table with vector or
  variable-length columns, or Parquet list columns).

Spectra of different lengths are padded to the longest one: padded pixels
have NaN wavelength and flux, ``ivar = 0`` and ``mask = True``; the true
lengths are in ``SpectrumBatch.npix``.
"""

from __future__ import annotations

import glob
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import reading_file
from ..spectrum import SpectrumBatch
from .catalog import SUPPORTED_EXTENSIONS, _frame_to_table, format_from_extension, read_catalog

__all__ = [
    "read_lamost_spectra",
    "lamost_header_wavelength",
    "read_spectra_table",
    "write_spectra_table",
    "LAMOST_SENTINEL",
]

#: Value the LAMOST pipeline writes for failed measurements (e.g. ``Z``).
LAMOST_SENTINEL = -9999.0

#: File-name endings accepted when a folder of LAMOST spectra is scanned.
_FITS_ENDINGS = tuple(ext for ext, fmt in SUPPORTED_EXTENSIONS.items() if fmt == "fits")

#: Plausible range of optical wavelengths (Angstrom) used to recognise a
#: wavelength row in a LAMOST image.
_WAVELENGTH_RANGE = (3000.0, 10000.0)

_BANDS = ("u", "g", "r", "i", "z")

#: Header texts read as booleans (upper case); any other text is None.
_BOOL_TEXT = {**dict.fromkeys(("T", "TRUE", "1", "Y", "YES"), True),
              **dict.fromkeys(("F", "FALSE", "0", "N", "NO"), False)}


# --------------------------------------------------------------------------- helpers


def _pad_rows(rows, lengths, width, fill, dtype):
    """Stack 1-D arrays (``rows[i]`` of length ``lengths[i]``) into a ``(len(rows), width)`` array.

    Cells beyond a row's length hold ``fill``; ``width >= lengths.max()``.
    """
    lengths = np.asarray(lengths, dtype=int)
    out = np.full((len(rows), width), fill, dtype=dtype)
    if len(rows) and lengths.sum():
        inside = np.arange(width) < lengths[:, None]
        out[inside] = np.concatenate([np.asarray(r, dtype=dtype).ravel() for r in rows])
    return out


def _padding_mask(npix, width):
    """True for padded cells of a ``(len(npix), width)`` array."""
    return np.arange(width)[None, :] >= np.asarray(npix, dtype=int)[:, None]


# --------------------------------------------------------------------------- LAMOST


def _expand_one(item, recursive: bool) -> list[Path]:
    """Files named by one path, folder or glob pattern."""
    text = os.path.expanduser(os.fspath(item))
    path = Path(text)
    if path.is_dir():
        candidates = path.rglob("*") if recursive else path.iterdir()
        files = sorted(p for p in candidates
                       if p.is_file() and p.name.lower().endswith(_FITS_ENDINGS))
        if not files:
            raise FileNotFoundError(
                f"No FITS spectra (*.fits, *.fits.gz) found in folder {text!r}"
                + ("" if recursive else " (pass recursive=True to search sub-folders)")
                + "."
            )
        return files
    if path.is_file():
        return [path]
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if os.path.isfile(p))
        if not files:
            raise FileNotFoundError(f"No files match the pattern {text!r}.")
        return files
    raise FileNotFoundError(f"Spectrum file or folder not found: {text!r}.")


def _expand_paths(paths, recursive: bool = False) -> list[Path]:
    """Turn a path, folder, glob pattern or list of them into a list of files."""
    if isinstance(paths, (str, os.PathLike)):
        return _expand_one(paths, recursive)
    items = list(paths)
    if not items:
        raise FileNotFoundError("No spectrum files given (empty list).")
    return [file for item in items for file in _expand_one(item, recursive)]


def lamost_header_wavelength(header, n_pixels: int) -> np.ndarray:
    """Wavelength grid of a LAMOST spectrum from its FITS header.

    Uses the log-linear solution ``10**(COEFF0 + COEFF1 * i)`` for pixel
    ``i = 0 .. n_pixels-1``; when ``COEFF0``/``COEFF1`` are absent it falls
    back to the WCS keywords ``CRVAL1``, ``CD1_1`` (or ``CDELT1``) and
    ``CRPIX1``: ``x = CRVAL1 + CD1_1 * (i + 1 - CRPIX1)``, which is a log10
    wavelength when ``DC-FLAG = 1`` (or, without ``DC-FLAG``, when
    ``CRVAL1 < 5``) and a linear wavelength otherwise.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        Primary header of the spectrum.
    n_pixels : int
        Number of pixels of the spectrum.

    Returns
    -------
    ndarray of shape (n_pixels,)
        Wavelengths in Angstrom (float64), in the frame the file uses
        (vacuum and heliocentric for LAMOST LRS).

    Raises
    ------
    ValueError
        When the header holds no usable wavelength solution.
    """
    pix = np.arange(int(n_pixels), dtype=np.float64)
    if header.get("COEFF0") is not None and header.get("COEFF1") is not None:
        return 10.0 ** (float(header["COEFF0"]) + float(header["COEFF1"]) * pix)
    crval = header.get("CRVAL1")
    step = header.get("CD1_1", header.get("CDELT1"))
    if crval is None or step is None:
        raise ValueError(
            "The header has no wavelength solution (neither COEFF0/COEFF1 nor "
            "CRVAL1 with CD1_1 or CDELT1)."
        )
    crpix = float(header.get("CRPIX1", 1.0))
    x = float(crval) + float(step) * (pix + 1.0 - crpix)
    dc_flag = header.get("DC-FLAG")
    is_log = int(dc_flag) == 1 if dc_flag is not None else float(crval) < 5.0
    return 10.0 ** x if is_log else x


def _looks_like_wavelength(row: np.ndarray) -> bool:
    """True when ``row`` is finite, strictly increasing and within 3000-10000 A."""
    if row.size < 2 or not np.all(np.isfinite(row)):
        return False
    lo, hi = _WAVELENGTH_RANGE
    return bool(row[0] >= lo and row[-1] <= hi and np.all(np.diff(row) > 0))


def _detect_layout(header, row2: np.ndarray, name: str) -> str:
    """The "DR1" or "DR6" layout of one file: row 2's content, checked against ``EXTEN0``.

    On disagreement the data win and a warning is issued (see :func:`read_lamost_spectra`).
    """
    exten0 = str(header.get("EXTEN0", "")).upper()
    declared = next((lay for word, lay in (("WAVELENGTH", "DR6"), ("SUBCONT", "DR1"))
                     if word in exten0), None)
    observed = "DR6" if _looks_like_wavelength(row2) else "DR1"
    if declared is not None and declared != observed:
        warnings.warn(
            f"{name}: EXTEN0={header.get('EXTEN0')!r} announces the {declared} layout but "
            f"row 2 {'looks' if observed == 'DR6' else 'does not look'} like wavelengths; "
            f"reading it as {observed}.",
            UserWarning,
            stacklevel=3,
        )
    return observed


def _as_float(value) -> float:
    """Header value as float; NaN when missing, non-numeric or the -9999 sentinel."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return np.nan
    return np.nan if out == LAMOST_SENTINEL else out


def _as_str(value):
    return None if value is None else str(value).strip()


def _as_bool(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return None if value is None else _BOOL_TEXT.get(str(value).strip().upper())


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _first(header, *keys):
    """Value of the first of ``keys`` present in ``header`` (None if none)."""
    return next((header[key] for key in keys if key in header), None)


def _lamost_meta(header, path: Path, layout: str) -> dict:
    """One row of metadata from a LAMOST primary header."""
    return {
        "filename": path.name,
        "path": str(path),
        "layout": layout,
        "designation": _as_str(header.get("DESIG")),
        "obsid": _as_int(header.get("OBSID")),
        "ra": _as_float(header.get("RA")),
        "dec": _as_float(header.get("DEC")),
        "z": _as_float(header.get("Z")),
        "z_err": _as_float(header.get("Z_ERR")),
        "class": _as_str(header.get("CLASS")),
        "subclass": _as_str(header.get("SUBCLASS")),
        **{f"snr_{band}": _as_float(_first(header, f"SN_{band.upper()}", f"SNR{band.upper()}"))
           for band in _BANDS},
        "mjd": _as_int(_first(header, "LMJD", "MJD")),
        "helio_rv": _as_float(header.get("HELIO_RV")),
        "vacuum": _as_bool(header.get("VACUUM")),
        "planid": _as_str(header.get("PLANID")),
        "spid": _as_int(header.get("SPID")),
        "fiberid": _as_int(header.get("FIBERID")),
    }


def _read_lamost_file(path: Path, mask_bad: bool):
    """Read one LAMOST LRS file: ``(wavelength, flux, ivar, mask, normalized or None, meta row)``.

    The arrays are 1-D float64 (mask bool) of the file's length.
    """
    from astropy.io import fits

    name = str(path)
    try:
        with fits.open(path, memmap=False) as hdul:
            header = hdul[0].header.copy()
            data = hdul[0].data
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(f"{name!r} cannot be read as a FITS file: {exc}") from exc
    except (ValueError, EOFError) as exc:  # e.g. a truncated data unit
        with reading_file(path, "LAMOST FITS spectrum"):
            raise exc
    if data is None or data.ndim != 2 or data.shape[0] != 5:
        shape = None if data is None else data.shape
        raise ValueError(
            f"{name!r} is not a LAMOST LRS spectrum: its primary image has shape {shape}, "
            "expected (5, n_pixels) with rows flux, ivar, subcontinuum/wavelength, "
            "andmask, ormask."
        )
    data = np.asarray(data, dtype=np.float64)  # native byte order, float64
    flux, ivar, row2, andmask = data[0], data[1], data[2], data[3]
    npix = data.shape[1]

    layout = _detect_layout(header, row2, path.name)
    if layout == "DR6":
        wavelength = row2.copy()
        normalized = None
    else:
        try:
            wavelength = lamost_header_wavelength(header, npix)
        except ValueError as exc:
            raise ValueError(f"{name!r}: {exc}") from exc
        normalized = row2.copy()

    ivar = np.where(np.isfinite(ivar), ivar, 0.0)
    bad = (andmask != 0) | (ivar <= 0) | ~np.isfinite(flux)
    mask = bad if mask_bad else np.zeros(npix, dtype=bool)
    return wavelength, flux.copy(), ivar, mask, normalized, _lamost_meta(header, path, layout)


def _lamost_frame(rows: list[dict]) -> pd.DataFrame:
    """Metadata rows to a DataFrame with sensible (nullable where needed) dtypes."""
    meta = pd.DataFrame(rows)
    for col in ("obsid", "mjd", "spid", "fiberid"):
        meta[col] = pd.array(meta[col].tolist(), dtype="Int64")
    vacuum = meta["vacuum"].tolist()
    meta["vacuum"] = (np.array(vacuum, dtype=bool) if None not in vacuum
                      else pd.array(vacuum, dtype="boolean"))
    return meta


def read_lamost_spectra(
    paths,
    *,
    mask_bad: bool = True,
    return_normalized: bool = False,
    recursive: bool = False,
):
    """Read LAMOST low-resolution (LRS) FITS spectra into one padded batch.

    Parameters
    ----------
    paths : str, path-like or sequence of them
        A file (``.fits`` or ``.fits.gz``), a folder (all ``*.fits``,
        ``*.fits.gz``, ``*.fit``, ``*.fit.gz`` files in it, sorted by name), a
        glob pattern such as ``"data/*/spec-*.fits*"`` (``**`` allowed;
        matches sorted), or a list of any of these (kept in the given order).
    mask_bad : bool, default=True
        When True, ``mask`` flags pixels with a non-zero and-mask, ``ivar <= 0``
        or non-finite flux, plus the padding. When False only the padding is
        masked (:meth:`SpectrumBatch.bad_pixels` still combines ivar and flux
        checks).
    return_normalized : bool, default=False
        Also return the pipeline's normalised flux ("subcontinuum": flux
        divided by a pseudo-continuum, dimensionless) stored in row 2 of DR1
        files.
    recursive : bool, default=False
        When a folder is given, also search its sub-folders.

    Returns
    -------
    batch : SpectrumBatch
        ``wavelength`` (Angstrom, vacuum, heliocentric, *not* rest frame;
        2-D, one grid per spectrum), ``flux`` (relative flux-calibrated,
        arbitrary scale), ``ivar`` (inverse variance of the flux, 0 = no
        data; non-finite values set to 0), ``mask`` (bool) and ``npix``
        (true lengths). All arrays are float64 of shape
        ``(n_files, max_npix)``; padding has NaN wavelength/flux, ``ivar = 0``
        and ``mask = True``. ``meta`` has one row per file with columns
        ``filename``, ``path``, ``layout`` ("DR1"/"DR6"), ``designation``
        (DESIG), ``obsid`` (OBSID; <NA> when absent), ``ra``, ``dec`` (deg),
        ``z``, ``z_err`` (redshift Z, Z_ERR), ``class``, ``subclass``,
        ``snr_u`` .. ``snr_z`` (SN_U..SN_Z in DR1, SNRU..SNRZ in DR6),
        ``mjd`` (LMJD, else MJD; days), ``helio_rv`` (HELIO_RV, km/s; the
        heliocentric correction already applied; NaN when absent),
        ``vacuum`` (VACUUM), ``planid``, ``spid`` and ``fiberid``.
    normalized : ndarray of shape (n_files, max_npix) or None
        Only when ``return_normalized`` is True: the DR1 normalised flux, NaN
        in rows of DR6 files (which do not store it) and in the padding;
        None when no file has the DR1 layout.

    Raises
    ------
    FileNotFoundError
        When a path does not exist, a folder holds no FITS file, or a glob
        pattern matches nothing (the message names the pattern).
    ValueError
        When a file is not FITS, its primary image is not ``5 x N`` or (DR1)
        its header has no wavelength solution (the message names the file).

    Notes
    -----
    The layout is recognised from the content of row 2 (wavelengths:
    finite, strictly increasing, within 3000-10000 A) cross-checked with the
    ``EXTEN0`` keyword; on disagreement the data win and a warning is
    issued. DR1 wavelengths come from ``10**(COEFF0 + COEFF1*i)`` (see
    :func:`lamost_header_wavelength`); DR6 wavelengths are read from row 2
    (stored as float32, about 1e-3 A precision).

    The LAMOST pipeline writes ``-9999`` for failed measurements (e.g.
    ``Z = Z_ERR = -9999`` when the radial velocity fit failed); every
    numeric header value equal to -9999 is returned as NaN.

    Examples
    --------
    >>> from skstellar.io import find_shared_data, read_lamost_spectra
    >>> folder = find_shared_data("lamost_spectra")  # doctest: +SKIP
    >>> batch = read_lamost_spectra(folder, recursive=True)  # doctest: +SKIP
    >>> batch.meta[["designation", "subclass", "snr_r"]]  # doctest: +SKIP
    """
    files = _expand_paths(paths, recursive=recursive)
    wls, fluxes, ivars, masks, norms, rows = zip(*(_read_lamost_file(p, mask_bad) for p in files))
    npix = np.array([len(f) for f in fluxes], dtype=int)
    width = int(npix.max())
    batch = SpectrumBatch(
        wavelength=_pad_rows(wls, npix, width, np.nan, np.float64),
        flux=_pad_rows(fluxes, npix, width, np.nan, np.float64),
        ivar=_pad_rows(ivars, npix, width, 0.0, np.float64),
        mask=_pad_rows(masks, npix, width, True, bool),
        meta=_lamost_frame(list(rows)),
        npix=npix,
    )
    if not return_normalized:
        return batch
    if all(n is None for n in norms):
        return batch, None
    filled = [np.full(k, np.nan) if n is None else n for n, k in zip(norms, npix)]
    return batch, _pad_rows(filled, npix, width, np.nan, np.float64)


# --------------------------------------------------------------------------- tables

#: File-name endings of spectrum tables: those of FITS and Parquet catalogues.
_TABLE_ENDINGS = {ext: fmt for ext, fmt in SUPPORTED_EXTENSIONS.items()
                  if fmt in ("fits", "parquet")}


def _table_format(path: Path) -> str:
    fmt = format_from_extension(path, _TABLE_ENDINGS)
    if fmt is not None:
        return fmt
    raise ValueError(
        f"Cannot tell the table format of {str(path)!r}; spectrum tables must end with "
        f"{', '.join(_TABLE_ENDINGS)} (FITS binary table or Parquet)."
    )


def _is_array_value(value) -> bool:
    return isinstance(value, (np.ndarray, list, tuple))


def _is_array_column(series: pd.Series) -> bool:
    """True when a column holds one array per row (vector or list column)."""
    if series.dtype != object:
        return False
    present = series.dropna()
    return bool(len(present)) and _is_array_value(present.iloc[0])


def _column_rows(df: pd.DataFrame, name: str, dtype=np.float64):
    """The per-row arrays of an array-valued column and their lengths."""
    if name not in df.columns:
        raise KeyError(f"Column {name!r} not found; the table has columns {list(df.columns)}.")
    if not _is_array_column(df[name]):
        raise ValueError(
            f"Column {name!r} does not hold one array per row (dtype {df[name].dtype})."
        )
    rows = [
        np.zeros(0, dtype=dtype)
        if v is None or (not _is_array_value(v) and pd.isna(v))
        else np.asarray(v, dtype=dtype).ravel()
        for v in df[name].to_numpy(dtype=object)
    ]
    return rows, np.array([r.size for r in rows], dtype=int)


def read_spectra_table(
    path,
    *,
    wavelength: str | None = "wavelength",
    flux: str = "flux",
    ivar: str | None = "ivar",
    error: str | None = None,
    mask: str | None = None,
    shared_wavelength=None,
) -> SpectrumBatch:
    """Read a table holding one spectrum per row into a :class:`SpectrumBatch`.

    Parameters
    ----------
    path : str or path-like
        FITS binary table (``.fits``, ``.fits.gz``, ``.fit``; first table HDU;
        fixed-length vector or variable-length array columns) or Parquet
        file (``.parquet``, ``.pq``; list columns).
    wavelength : str or None, default="wavelength"
        Column of per-row wavelength arrays in Angstrom. None (or a missing
        default column) requires ``shared_wavelength``.
    flux : str, default="flux"
        Column of per-row flux arrays (any units).
    ivar : str or None, default="ivar"
        Column of per-row inverse-variance arrays (flux units**-2). Used when
        present in the table and ``error`` is None; non-finite values become 0.
    error : str or None, default=None
        Column of per-row flux standard deviations (flux units). When given it
        replaces ``ivar``: ``ivar = 1/error**2``, 0 where ``error <= 0`` or is
        not finite.
    mask : str or None, default=None
        Column of per-row bad-pixel flags (non-zero / True = bad).
    shared_wavelength : array-like of shape (n_pixels,), optional
        One wavelength grid (Angstrom) for all rows, for tables without a
        wavelength column; every flux row must then have ``n_pixels`` values.

    Returns
    -------
    SpectrumBatch
        Arrays padded to the longest spectrum (NaN wavelength/flux,
        ``ivar = 0``, ``mask = True`` in the padding); ``npix`` holds the true
        lengths. With ``shared_wavelength`` the batch has a 1-D wavelength
        grid. ``mask`` is always set (the mask column, if any, or'ed with the
        padding). ``meta`` holds the scalar columns of the table (array
        columns that were not used are dropped).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    KeyError
        When a named column (``flux``, ``error``, ``mask``, or ``wavelength``
        without ``shared_wavelength``) is missing.
    ValueError
        For an unsupported file ending, a column without per-row arrays,
        rows whose arrays differ in length between columns, no wavelength
        information, or a table that has a wavelength column while
        ``shared_wavelength`` is also given (pass ``wavelength=None``).

    Notes
    -----
    Rows stored at a fixed width with NaN-padded tails are recognised: with
    per-row wavelengths, ``npix`` is the position after the last finite
    wavelength, and everything beyond it is treated as padding.
    """
    path = Path(path)
    fmt = _table_format(path)
    if not path.exists():
        raise FileNotFoundError(f"Spectrum table not found: {str(path)!r}")
    df = read_catalog(path, format=fmt)

    flux_rows, lengths = _column_rows(df, flux)
    n = len(flux_rows)
    used = {flux}

    has_wl_column = wavelength is not None and wavelength in df.columns
    if shared_wavelength is not None and has_wl_column:
        raise ValueError(
            f"The table has a wavelength column {wavelength!r} and shared_wavelength was "
            "given; pass wavelength=None to use shared_wavelength."
        )
    if shared_wavelength is None and not has_wl_column:
        if wavelength is None:
            raise ValueError("No wavelength information: pass a wavelength column or "
                             "shared_wavelength.")
        raise KeyError(
            f"Wavelength column {wavelength!r} not found (columns: {list(df.columns)}); "
            "pass wavelength=<name> or shared_wavelength=<array>."
        )

    width = int(lengths.max()) if n else 0

    def padded(name, fill):
        """Array column ``name`` padded to ``width``; its row lengths must be the flux's."""
        rows, row_lengths = _column_rows(df, name)
        bad = np.flatnonzero(row_lengths != lengths)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"Column {name!r} has {row_lengths[i]} values in row {i} but {flux!r} has "
                f"{lengths[i]} ({bad.size} mismatching row(s))."
            )
        used.add(name)
        return _pad_rows(rows, lengths, width, fill, np.float64)

    if shared_wavelength is not None:
        grid = np.asarray(shared_wavelength, dtype=np.float64)
        if grid.ndim != 1:
            raise ValueError(f"shared_wavelength must be 1-D, got shape {grid.shape}.")
        bad = np.flatnonzero(lengths != grid.size)
        if bad.size:
            raise ValueError(
                f"shared_wavelength has {grid.size} pixels but row {int(bad[0])} of "
                f"{flux!r} has {lengths[bad[0]]}."
            )
        width = grid.size
        wl_out = grid
    else:
        wl_out = padded(wavelength, np.nan)

    flux_out = _pad_rows(flux_rows, lengths, width, np.nan, np.float64)

    ivar_out = None
    if error is not None:
        err = padded(error, np.nan)
        good = np.isfinite(err) & (err > 0)
        ivar_out = np.zeros_like(err)
        ivar_out[good] = 1.0 / err[good] ** 2
    elif ivar is not None and ivar in df.columns:
        ivar_out = padded(ivar, 0.0)
        ivar_out[~np.isfinite(ivar_out)] = 0.0

    # NaN in a mask column counts as bad
    mask_out = np.zeros((n, width), dtype=bool) if mask is None else padded(mask, 1.0) != 0

    npix = lengths.copy()
    if wl_out.ndim == 2 and n:
        # Trailing non-finite wavelengths are padding (fixed-width tables).
        finite = np.isfinite(wl_out)
        last = width - np.argmax(finite[:, ::-1], axis=1)
        npix = np.where(finite.any(axis=1), np.minimum(last, lengths), 0)
        pad = _padding_mask(npix, width)
        wl_out[pad] = np.nan
        flux_out[pad] = np.nan
        if ivar_out is not None:
            ivar_out[pad] = 0.0
    mask_out |= _padding_mask(npix, width)

    scalar_cols = [c for c in df.columns if c not in used and not _is_array_column(df[c])]
    meta = df[scalar_cols].reset_index(drop=True)
    meta.attrs = {}
    return SpectrumBatch(
        wavelength=wl_out, flux=flux_out, ivar=ivar_out, mask=mask_out, meta=meta, npix=npix
    )


def _split_rows(values: np.ndarray, npix: np.ndarray) -> list[np.ndarray]:
    """Per-row arrays ``values[i, :npix[i]]`` of a padded 2-D array."""
    valid = ~_padding_mask(npix, values.shape[1])
    return np.split(values[valid], np.cumsum(npix)[:-1])


def write_spectra_table(batch: SpectrumBatch, path, overwrite: bool = False) -> Path:
    """Write a :class:`SpectrumBatch` as a table with one spectrum per row.

    Parameters
    ----------
    batch : SpectrumBatch
        Spectra to write. Each row stores ``wavelength`` (Angstrom, the shared
        grid repeated when it is 1-D), ``flux``, ``ivar`` (if set) and
        ``mask`` (if set) truncated to its true length ``npix``; the scalar
        ``meta`` columns are written alongside.
    path : str or path-like
        Destination: ``.fits``/``.fits.gz``/``.fit`` (FITS binary table;
        fixed-length vector columns when all spectra have the same length,
        variable-length arrays otherwise) or ``.parquet``/``.pq`` (Parquet
        list columns).
    overwrite : bool, default=False
        Replace an existing file; when False an existing ``path`` raises.

    Returns
    -------
    pathlib.Path
        The path written. :func:`read_spectra_table` (with ``mask="mask"``
        when a mask was written) reads it back.

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is False.
    FileNotFoundError
        When the destination folder does not exist.
    ValueError
        For an unsupported file ending, or meta columns named like the array
        columns.
    """
    path = Path(path)
    fmt = _table_format(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists; pass overwrite=True to replace it.")
    if not path.parent.exists():
        raise FileNotFoundError(f"Directory {str(path.parent)!r} does not exist.")

    npix = np.asarray(batch.npix, dtype=int)
    arrays = {"wavelength": np.asarray(batch.wavelength_2d(), dtype=np.float64),
              "flux": np.asarray(batch.flux)}
    if batch.ivar is not None:
        arrays["ivar"] = np.asarray(batch.ivar)
    if batch.mask is not None:
        arrays["mask"] = np.asarray(batch.mask, dtype=bool)

    meta = batch.meta if batch.meta is not None else pd.DataFrame(index=range(len(batch)))
    meta = meta.reset_index(drop=True)
    clash = [c for c in meta.columns if str(c) in arrays]
    if clash:
        raise ValueError(f"meta columns {clash} clash with the spectrum array columns.")

    ragged = len(batch) > 0 and np.any(npix != npix[0])
    if fmt == "fits":
        from astropy.table import Column, Table

        table = _frame_to_table(meta) if len(meta.columns) else Table()
        width = int(npix[0]) if len(batch) else 0
        for name, values in arrays.items():
            table[name] = (Column(_split_rows(values, npix), dtype=object) if ragged
                           else Column(values[:, :width]))
        table.write(path, format="fits", overwrite=True)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {}
        for name, values in arrays.items():
            kind = pa.bool_() if values.dtype == bool else pa.from_numpy_dtype(values.dtype)
            columns[name] = pa.array(_split_rows(values, npix), type=pa.list_(kind))
        table = pa.table(columns)
        if len(meta.columns):
            scalars = pa.Table.from_pandas(meta, preserve_index=False)
            table = pa.table(
                scalars.columns + table.columns, names=scalars.column_names + table.column_names
            )
        pq.write_table(table, path)
    return path
