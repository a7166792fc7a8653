"""Sample selection of the M-dwarf metallicity network (Duque-Arribas et al.).

:func:`quality_mask` applies the astrometric and photometric quality cuts of the
paper's Table 1, :func:`validity_mask` its validity domain (early/intermediate
M dwarfs, M0V-M5V), and :func:`select_mdwarfs` both, with a per-cut report.
These functions drop rows, so they belong before a scikit-learn ``Pipeline``
(a transformer must keep the number of rows), not inside it.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import astropy.units as u
import numpy as np
import pandas as pd

from .. import columns as _cols
from .._validation import (
    as_float_column,
    as_str_column,
    check_not_empty,
    column_names,
    is_named_input,
    to_frame_like,
)

__all__ = ["quality_mask", "select_mdwarfs", "validity_mask", "SELECTION_COLUMNS"]

#: Default column of every quantity the selection reads; override any of them
#: with the ``columns`` argument of the functions below.
SELECTION_COLUMNS = {
    **{key: _cols.GAIA_DR3[key] for key in (
        "parallax", "parallax_error", "parallax_over_error", "ruwe",
        "G_flux_over_error", "BP_flux_over_error", "RP_flux_over_error",
    )},
    "twomass_quality": _cols.TWOMASS["quality"],
    "wise_quality": _cols.WISE["quality"],
    **{band: _cols.BAND_COLUMNS[band] for band in ("G", "J", "W1", "W2")},
}


@dataclass
class _Cut:
    """One selection criterion: its name, condition text, column(s) and row mask."""

    name: str
    condition: str
    column: str
    mask: np.ndarray | None  # None: skipped because its column is absent


def _resolve_columns(columns):
    if columns is None:
        return dict(SELECTION_COLUMNS)
    if not isinstance(columns, Mapping):
        raise ValueError(f"columns must be a dict; got {type(columns).__name__}.")
    unknown = sorted(set(columns) - set(SELECTION_COLUMNS))
    if unknown:
        raise ValueError(
            f"Unknown key(s) in columns: {', '.join(unknown)}; "
            f"valid keys: {', '.join(SELECTION_COLUMNS)}."
        )
    return {**SELECTION_COLUMNS, **columns}


def _require_named(catalog, func):
    if not is_named_input(catalog):
        raise ValueError(
            f"{func} needs a catalogue with column names (pandas DataFrame, astropy "
            f"Table or dict of arrays); got {type(catalog).__name__}."
        )


def _quality_cuts(
    catalog,
    *,
    parallax_over_error_min,
    ruwe_max,
    g_flux_over_error_min,
    bp_flux_over_error_min,
    rp_flux_over_error_min,
    twomass_quality,
    wise_quality,
    columns,
    missing,
):
    """List the quality cuts (Table 1) with their row masks."""
    _require_named(catalog, "quality_mask")
    if missing not in ("raise", "skip"):
        raise ValueError(f"missing must be 'raise' or 'skip'; got {missing!r}.")
    cols = _resolve_columns(columns)
    names = column_names(catalog)
    present = set(names)
    data, n, _ = to_frame_like(catalog, columns=[c for c in cols.values() if c in present])
    check_not_empty(n, what="catalog")
    cuts: list[_Cut] = []
    skipped: list[str] = []

    def absent(what, column_desc, disable):
        if missing == "raise":
            shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
            raise ValueError(
                f"Missing column {column_desc} for the {what} cut; available columns: {shown}. "
                f"Disable the cut with {disable}=None, rename the column with columns=..., "
                "or pass missing='skip'."
            )
        skipped.append(f"{what} (column {column_desc})")
        cuts.append(_Cut(what, "skipped: column absent", column_desc.replace("'", ""), None))

    def numeric(key, kind, unit=None):
        return as_float_column(data[cols[key]], cols[key], unit=unit, kind=kind)

    # Gaia astrometry
    if parallax_over_error_min is not None:
        what = "parallax_over_error"
        cond = f"parallax_over_error > {parallax_over_error_min:g}"
        if cols["parallax_over_error"] in present:
            poe = numeric("parallax_over_error", "parallax_over_error")
            col = cols["parallax_over_error"]
            cuts.append(_Cut(what, cond, col, poe > parallax_over_error_min))
        elif cols["parallax"] in present and cols["parallax_error"] in present:
            plx = numeric("parallax", "parallax", u.mas)
            err = numeric("parallax_error", "parallax error", u.mas)
            with np.errstate(divide="ignore", invalid="ignore"):
                poe = plx / err
            col = f"{cols['parallax']}/{cols['parallax_error']}"
            cuts.append(_Cut(what, cond, col, poe > parallax_over_error_min))
        else:
            absent(
                what,
                f"'{cols['parallax_over_error']}' (or '{cols['parallax']}' and "
                f"'{cols['parallax_error']}')",
                "parallax_over_error_min",
            )
    if ruwe_max is not None:
        if cols["ruwe"] in present:
            ruwe = numeric("ruwe", "RUWE")
            cuts.append(_Cut("ruwe", f"ruwe < {ruwe_max:g}", cols["ruwe"], ruwe < ruwe_max))
        else:
            absent("ruwe", f"'{cols['ruwe']}'", "ruwe_max")

    # Gaia photometry
    for band, threshold, param in (
        ("G", g_flux_over_error_min, "g_flux_over_error_min"),
        ("BP", bp_flux_over_error_min, "bp_flux_over_error_min"),
        ("RP", rp_flux_over_error_min, "rp_flux_over_error_min"),
    ):
        if threshold is None:
            continue
        key = f"{band}_flux_over_error"
        what = f"phot_{band.lower()}_mean_flux_over_error"
        if cols[key] in present:
            foe = numeric(key, "flux_over_error")
            cuts.append(_Cut(what, f"{what} > {threshold:g}", cols[key], foe > threshold))
        else:
            absent(what, f"'{cols[key]}'", param)

    # 2MASS and WISE quality flags
    for what, required, key, param in (
        ("2MASS ph_qual", twomass_quality, "twomass_quality", "twomass_quality"),
        ("WISE ph_qual", wise_quality, "wise_quality", "wise_quality"),
    ):
        if required is None:
            continue
        if not isinstance(required, str) or not required:
            raise ValueError(f"{param} must be a non-empty string or None; got {required!r}.")
        if cols[key] in present:
            flags = as_str_column(data[cols[key]], cols[key])
            ok = np.char.startswith(np.char.strip(flags), required)
            cond = f"{cols[key]}[:{len(required)}] == '{required}'"
            cuts.append(_Cut(what, cond, cols[key], np.asarray(ok, dtype=bool)))
        else:
            absent(what, f"'{cols[key]}'", param)

    if skipped:
        warnings.warn(
            "quality_mask skipped the cut(s) whose column is absent: " + "; ".join(skipped),
            UserWarning,
            stacklevel=3,
        )
    return cuts, n


def quality_mask(
    catalog,
    *,
    parallax_over_error_min=10.0,
    ruwe_max=1.4,
    g_flux_over_error_min=50.0,
    bp_flux_over_error_min=20.0,
    rp_flux_over_error_min=20.0,
    twomass_quality="AAA",
    wise_quality="AA",
    columns=None,
    missing="raise",
):
    """Rows passing the astrometric/photometric quality cuts of Table 1.

    The defaults are those of Duque-Arribas et al. (Table 1): Gaia
    ``parallax_over_error > 10``, ``ruwe < 1.4``,
    ``phot_g_mean_flux_over_error > 50``, ``phot_bp_mean_flux_over_error > 20``,
    ``phot_rp_mean_flux_over_error > 20``, 2MASS ``ph_qual == "AAA"`` (J, H, Ks)
    and WISE quality ``"AA"`` in W1 and W2. Inequalities are strict, as in the
    paper; a NaN (missing) value fails its cut.

    Parameters
    ----------
    catalog : pandas DataFrame, astropy Table/QTable or dict of arrays
        Catalogue with survey column names (see ``SELECTION_COLUMNS``).
    parallax_over_error_min : float or None, default=10
        Keep ``parallax_over_error > value``. Computed as
        ``parallax / parallax_error`` when the ``parallax_over_error`` column
        is absent (Quantities converted to mas).
    ruwe_max : float or None, default=1.4
        Keep ``ruwe < value``.
    g_flux_over_error_min, bp_flux_over_error_min, rp_flux_over_error_min : float or None
        Keep ``phot_{g,bp,rp}_mean_flux_over_error > value`` (defaults 50, 20, 20).
    twomass_quality : str or None, default="AAA"
        Required leading letters of the 2MASS ``ph_qual`` flag (J, H, Ks).
    wise_quality : str or None, default="AA"
        Required leading letters of the WISE quality flag (W1, W2, ...), column
        ``skstellar.columns.WISE["quality"]`` (``ph_qual_wise``).
    columns : dict, optional
        Overrides of ``SELECTION_COLUMNS`` (e.g. ``{"ruwe": "RUWE"}``).
    missing : {"raise", "skip"}, default="raise"
        A cut whose column is absent raises a ``ValueError`` naming the column
        ("raise"), or is skipped with a ``UserWarning`` ("skip"). Passing None
        for a threshold disables its cut in either case.

    Returns
    -------
    ndarray of bool, shape (n_rows,)
        True for the rows that pass every enabled cut.

    See Also
    --------
    select_mdwarfs : apply the cuts and report how many rows each removes.
    """
    return _combine(*_quality_cuts(**locals()))  # every argument, by name


def _combine(cuts, n):
    return np.all([np.ones(n, dtype=bool)] + [c.mask for c in cuts if c.mask is not None], axis=0)


def _check_range(rng, name):
    if rng is None:
        return None
    try:
        lo, hi = (float(v) for v in rng)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair or None; got {rng!r}.") from None
    if not lo <= hi:
        raise ValueError(f"{name} must have low <= high; got {rng!r}.")
    return lo, hi


#: Slack on the inclusive bounds so that a colour computed exactly at a bound
#: (e.g. 11.95 - 10.10 = 1.8499999999999996) is kept [mag or dex].
_EPS = 1e-9

#: Position of G, J, W1, W2 in a positional array of the eight M-dwarf bands.
_BAND_POSITION = {b: _cols.MDWARF_BANDS.index(b) for b in ("G", "J", "W1", "W2")}


def _colour(data, names, bands, cols, user_cols, n_bands_array):
    """Return (values, description) of the colour ``bands[0] - bands[1]``."""
    b1, b2 = bands
    if n_bands_array is not None:  # positional array in MDWARF_BANDS order
        pairs = [(f"x{_BAND_POSITION[b1]}", f"x{_BAND_POSITION[b2]}")]
    elif b1 in user_cols or b2 in user_cols:
        pairs = [(cols[b1], cols[b2])]
    else:
        pairs = [
            (_cols.absolute_name(b1), _cols.absolute_name(b2)),
            (cols[b1], cols[b2]),
        ]
    present = set(names)
    for c1, c2 in pairs:
        if c1 in present and c2 in present:
            m1 = as_float_column(data[c1], c1, unit=u.mag, kind="magnitude")
            m2 = as_float_column(data[c2], c2, unit=u.mag, kind="magnitude")
            return m1 - m2, f"{c1} - {c2}"
    tried = " or ".join(f"('{a}', '{b}')" for a, b in pairs)
    shown = ", ".join(list(names)[:40]) + (" ..." if len(names) > 40 else "")
    param = f"{b1.lower()}_minus_{b2.lower()}_range"
    raise ValueError(
        f"Missing column(s) for the {b1}-{b2} cut: need {tried}; available columns: "
        f"{shown}. Pass columns={{'{b1}': ..., '{b2}': ...}} or {param}=None."
    )


def _feh_values(feh, data, names, n):
    if isinstance(feh, str):
        if feh not in set(names):
            shown = ", ".join(list(names)[:40])
            raise ValueError(
                f"Missing column '{feh}' for the [Fe/H] cut; available columns: {shown}."
            )
        values, name = data[feh], feh
    else:
        values, name = feh, "feh"
    if isinstance(values, u.Quantity):
        if values.unit in (u.dex, u.dimensionless_unscaled) or isinstance(values, u.Dex):
            values = np.asarray(values.value, dtype=np.float64)
        else:
            raise ValueError(
                f"'{name}' has wrong units for [Fe/H]: {values.unit!s} (expected dex)."
            )
    values = as_float_column(np.asarray(values), name, kind="[Fe/H]")
    if values.shape != (n,):
        raise ValueError(f"feh has shape {values.shape}; expected ({n},) to match the catalogue.")
    return values, name


def _range_cut(what, column, values, bounds):
    """The cut ``lo <= what <= hi`` (inclusive, with the rounding slack ``_EPS``)."""
    lo, hi = bounds
    inside = (values >= lo - _EPS) & (values <= hi + _EPS)
    return _Cut(what, f"{lo:g} <= {what} <= {hi:g}", column, inside)


def _validity_cuts(
    catalog, *, feh, feh_range, g_minus_j_range, w1_minus_w2_range, columns
):
    """List the validity-domain cuts with their row masks."""
    feh_range = _check_range(feh_range, "feh_range")
    g_minus_j_range = _check_range(g_minus_j_range, "g_minus_j_range")
    w1_minus_w2_range = _check_range(w1_minus_w2_range, "w1_minus_w2_range")
    cols = _resolve_columns(columns)
    user_cols = set(columns or ())

    named = is_named_input(catalog)
    n_bands_array = None
    if named:
        names = column_names(catalog)
        wanted = {c for b in ("G", "J", "W1", "W2") for c in (cols[b], _cols.absolute_name(b))}
        if isinstance(feh, str):
            wanted.add(feh)
        data, n, _ = to_frame_like(catalog, columns=[c for c in names if c in wanted])
    else:
        data, n, _ = to_frame_like(catalog)
        names = list(data)
        if len(names) not in (len(_cols.MDWARF_BANDS), 2 * len(_cols.MDWARF_BANDS)):
            raise ValueError(
                "An array passed to validity_mask must hold the eight M-dwarf bands in the "
                f"order {_cols.MDWARF_BANDS} (optionally followed by their errors), as "
                f"AbsoluteMagnitudes() outputs; got {len(names)} column(s)."
            )
        n_bands_array = len(_cols.MDWARF_BANDS)
        if isinstance(feh, str):
            raise ValueError("feh must be an array (not a column name) when catalog is an array.")
    check_not_empty(n, what="catalog")

    cuts: list[_Cut] = []
    if feh is not None and feh_range is not None:
        values, name = _feh_values(feh, data, names, n)
        cuts.append(_range_cut("[Fe/H]", name, values, feh_range))
    for bands, rng in ((("G", "J"), g_minus_j_range), (("W1", "W2"), w1_minus_w2_range)):
        if rng is None:
            continue
        colour, desc = _colour(data, names, bands, cols, user_cols, n_bands_array)
        cuts.append(_range_cut(f"{bands[0]}-{bands[1]}", desc, colour, rng))
    return cuts, n


def validity_mask(
    catalog,
    *,
    feh=None,
    feh_range=(-0.45, 0.45),
    g_minus_j_range=(1.85, 3.10),
    w1_minus_w2_range=(-0.10, 0.24),
    columns=None,
):
    """Rows inside the validity domain of the M-dwarf metallicity network.

    The network was trained on early and intermediate M dwarfs (about M0V to
    M5V) with ``-0.45 <= [Fe/H] <= 0.45`` dex, ``1.85 <= G - J <= 3.10`` mag and
    ``-0.10 <= W1 - W2 <= 0.24`` mag (bounds inclusive, as in the paper, with a
    1e-9 slack for floating-point rounding). A NaN value fails its cut.

    Parameters
    ----------
    catalog : DataFrame, astropy Table/QTable, dict of arrays, or 2-D array
        Named input supplies G, J, W1 and W2 either as absolute magnitudes
        ``M_G, M_J, M_W1, M_W2`` (preferred when present) or as the survey's
        apparent magnitudes (``phot_g_mean_mag``, ``j_m``, ``w1mpro``,
        ``w2mpro``); colours are the same in both (the distance modulus
        cancels). A 2-D array must have the eight columns of
        ``skstellar.columns.MDWARF_BANDS`` in order (optionally followed by
        eight error columns), as output by ``AbsoluteMagnitudes()``.
        Quantity magnitudes are converted to mag.
    feh : None, str or array-like, default=None
        [Fe/H] in dex: a column name of ``catalog`` or an array of length
        n_rows. None (e.g. stars whose metallicity you want to predict)
        disables the metallicity cut.
    feh_range, g_minus_j_range, w1_minus_w2_range : (float, float) or None
        Inclusive bounds; None disables that cut.
    columns : dict, optional
        Overrides of ``SELECTION_COLUMNS``; giving ``"G"``/``"J"`` (or
        ``"W1"``/``"W2"``) forces those columns for that colour.

    Returns
    -------
    ndarray of bool, shape (n_rows,)
        True inside the domain.
    """
    return _combine(*_validity_cuts(**locals()))  # every argument, by name


def _keyword_defaults(func):
    """Keyword-only parameters of ``func`` and their defaults, as a new dict."""
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if p.kind is p.KEYWORD_ONLY}


def _subset(catalog, mask):
    if isinstance(catalog, Mapping):
        return {
            k: (v[mask] if hasattr(v, "shape") else np.asarray(v)[mask]) for k, v in catalog.items()
        }
    return catalog[mask]  # a DataFrame, astropy Table or structured array (named input)


def select_mdwarfs(catalog, *, quality=True, validity=True, **kwargs):
    """Apply the quality cuts and the validity domain, and report each cut.

    Selection removes rows, which a scikit-learn transformer may not do, so
    run it on the catalogue *before* a ``Pipeline`` (for training or
    prediction), not as a step of it.

    Parameters
    ----------
    catalog : pandas DataFrame, astropy Table/QTable or dict of arrays
        Catalogue with survey column names.
    quality : bool, default=True
        Apply :func:`quality_mask`.
    validity : bool, default=True
        Apply :func:`validity_mask`.
    **kwargs
        Keyword arguments of :func:`quality_mask` and :func:`validity_mask`
        (``columns`` goes to both), e.g. ``ruwe_max=1.2``, ``feh="fe_h"``.

    Returns
    -------
    selected : same type as ``catalog``
        The rows that pass every cut (a DataFrame keeps its index).
    report : pandas.DataFrame
        One row per cut, in the order applied, with columns ``cut``,
        ``condition``, ``column``, ``n_failed`` (rows failing that cut on its
        own), ``n_removed`` (rows it removed after the previous cuts) and
        ``n_remaining``. Skipped cuts (``missing="skip"``) appear with
        ``applied=False``.

    Examples
    --------
    >>> selected, report = select_mdwarfs(catalog, feh="fe_h")  # doctest: +SKIP
    >>> report[["cut", "n_removed", "n_remaining"]]             # doctest: +SKIP
    """
    q_params, v_params = _keyword_defaults(quality_mask), _keyword_defaults(validity_mask)
    unknown = sorted(set(kwargs) - set(q_params) - set(v_params))
    if unknown:
        raise TypeError(f"select_mdwarfs got unexpected keyword argument(s): {', '.join(unknown)}.")
    _require_named(catalog, "select_mdwarfs")

    cuts: list[_Cut] = []
    n = None
    for apply, params, list_cuts in ((quality, q_params, _quality_cuts),
                                     (validity, v_params, _validity_cuts)):
        if apply:
            params.update((k, v) for k, v in kwargs.items() if k in params)
            new_cuts, n = list_cuts(catalog, **params)
            cuts += new_cuts
    if n is None:
        _, n, _ = to_frame_like(catalog, columns=[])

    keep = np.ones(n, dtype=bool)
    rows = []
    for cut in cuts:
        applied = cut.mask is not None
        failed = ~cut.mask if applied else np.zeros(n, dtype=bool)
        removed = int(np.count_nonzero(keep & failed))
        keep &= ~failed
        rows.append((cut.name, cut.condition, cut.column, applied,
                     int(np.count_nonzero(failed)), removed, int(np.count_nonzero(keep))))
    report = pd.DataFrame(
        rows,
        columns=["cut", "condition", "column", "applied", "n_failed", "n_removed", "n_remaining"],
    )
    return _subset(catalog, keep), report
