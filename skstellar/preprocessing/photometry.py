r"""Absolute magnitudes from apparent magnitudes and trigonometric parallaxes.

The distance modulus with the parallax :math:`\varpi` in milliarcseconds is
``M = m + 5 log10(parallax / 100)``; :class:`AbsoluteMagnitudes` applies it to
several bands of a survey catalogue at once, as a scikit-learn transformer,
optionally propagating the magnitude and parallax errors to first order.
No extinction correction is applied.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import astropy.units as u
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from .. import columns as _cols
from .._validation import (
    as_float_column,
    check_finite_columns,
    check_non_negative,
    check_not_empty,
    column_names,
    is_named_input,
    is_pandas_df,
    missing_column_error,
    row_location,
    to_frame_like,
)
from ..parameters import Options, Rule, SequenceOf, validate_parameters
from .spectra_input import forget_input_features

__all__ = [
    "DISTANCE_MODULUS_ERROR",
    "AbsoluteMagnitudes",
    "absolute_magnitude",
    "absolute_magnitude_error",
    "magnitude_error_from_flux_over_error",
]

#: d(5 log10 x)/dx * x = 5 / ln 10 ~ 2.1715 mag: parallax relative error -> mag.
_PLX_TO_MAG = 5.0 / np.log(10.0)
#: 2.5 / ln 10 ~ 1.0857 mag: flux relative error -> magnitude error.
_FLUX_TO_MAG = 2.5 / np.log(10.0)

#: Fitted attributes besides n_features_in_ and feature_names_in_.
_FITTED_ATTRIBUTES = (
    "input_by_name_",
    "magnitude_columns_",
    "parallax_column_",
    "error_columns_",
    "parallax_error_column_",
    "band_labels_",
)
_MAGNITUDE = "magnitude"
#: Output name of the distance-modulus error ``5 / ln 10 * sigma_plx / plx``
#: [mag] (``distance_error=True``): the part of every ``M_<band>_error``
#: shared by all bands, which regressors use to build the full covariance
#: (it cancels in colours).
DISTANCE_MODULUS_ERROR = "distance_modulus_error"
_FLUX_OVER_ERROR = "flux_over_error"
#: Unit and kind (for messages) of each kind of error column.
_ERROR_UNITS = {_MAGNITUDE: (u.mag, "magnitude error"), _FLUX_OVER_ERROR: (None, "flux_over_error")}


# ------------------------------------------------------- Vectorised functions
def _values(x, unit, name, kind):
    if isinstance(x, u.Quantity):
        return as_float_column(np.atleast_1d(x), name, unit=unit, kind=kind).reshape(np.shape(x))
    return np.asarray(x, dtype=np.float64)


def _maybe_quantity(result, like):
    if any(isinstance(v, u.Quantity) for v in like):
        return result * u.mag
    return result if np.ndim(result) else float(result)


def absolute_magnitude(m, parallax):
    """Absolute magnitude from apparent magnitude and parallax.

    ``M = m + 5 log10(parallax / 100 mas)``, i.e. the distance modulus with
    the distance taken as ``1 / parallax`` (no Lutz-Kelker or extinction
    correction).

    Parameters
    ----------
    m : float, array-like or Quantity
        Apparent magnitude [mag]. A Quantity must be convertible to
        ``u.mag`` (logarithmic magnitudes such as ``u.ABmag`` are accepted).
    parallax : float, array-like or Quantity
        Parallax [mas]. A Quantity may be in any angle unit and is
        converted to mas. Broadcasts against ``m``.

    Returns
    -------
    float, ndarray or Quantity
        Absolute magnitude [mag]; a Quantity in ``u.mag`` when either input
        is a Quantity. Entries whose parallax is <= 0, NaN or inf are NaN
        (the transformer :class:`AbsoluteMagnitudes` raises instead).

    Examples
    --------
    >>> absolute_magnitude(10.0, 100.0)   # a star at 10 pc
    10.0
    """
    mv = _values(m, u.mag, "m", "magnitude")
    p = _values(parallax, u.mas, "parallax", "parallax")
    ok = np.isfinite(p) & (p > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = mv + 5.0 * np.log10(np.where(ok, p, np.nan) / 100.0)
    return _maybe_quantity(out, (m, parallax))


def absolute_magnitude_error(m_err, parallax, parallax_error):
    """First-order error of :func:`absolute_magnitude`.

    ``sigma_M = sqrt(sigma_m**2 + (5 / ln 10 * sigma_plx / plx)**2)``: the
    linear propagation of independent Gaussian errors. It is accurate when
    ``sigma_plx / plx`` is small (better than ~1 % of sigma_M for
    parallax_over_error > 10); at lower precision the true distribution of M is
    skewed and wider than this.

    Parameters
    ----------
    m_err : float, array-like or Quantity
        Apparent-magnitude error [mag].
    parallax : float, array-like or Quantity
        Parallax [mas] (or any angle Quantity).
    parallax_error : float, array-like or Quantity
        Parallax error [mas] (or any angle Quantity).

    Returns
    -------
    float, ndarray or Quantity
        Absolute-magnitude error [mag]; NaN where the parallax is <= 0,
        NaN or inf. A Quantity when any input is a Quantity.
    """
    e = _values(m_err, u.mag, "m_err", "magnitude error")
    p = _values(parallax, u.mas, "parallax", "parallax")
    pe = _values(parallax_error, u.mas, "parallax_error", "parallax error")
    ok = np.isfinite(p) & (p > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.sqrt(e**2 + (_PLX_TO_MAG * (pe / np.where(ok, p, np.nan))) ** 2)
    return _maybe_quantity(out, (m_err, parallax, parallax_error))


def magnitude_error_from_flux_over_error(flux_over_error):
    """Magnitude error from a flux signal-to-noise ratio.

    ``sigma_m = 2.5 / ln 10 / (flux / flux_error)`` (~1.0857 / S/N), as the
    Gaia archive recommends for ``phot_*_mean_flux_over_error``. The Gaia
    photometric zero-point uncertainty (~0.003 mag, common to all sources) is
    not included.

    Parameters
    ----------
    flux_over_error : float or array-like
        Flux divided by its error (dimensionless).

    Returns
    -------
    float or ndarray
        Magnitude error [mag]; NaN where ``flux_over_error`` <= 0 or NaN.
    """
    f = np.asarray(flux_over_error, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(f > 0, _FLUX_TO_MAG / f, np.nan)
    return out if out.ndim else float(out)


# ---------------------------------------------------------------- Transformer
def _one_column_per_band(bands, **columns):
    """Whether the one ``*_columns`` parameter in ``columns`` fits ``bands`` (raises why not)."""
    (name, value), = columns.items()
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(bands), key=str)
        if unknown:
            raise ValueError(f"{name} has key(s) {unknown} that are not in bands")
    elif value is not None and len(value) != len(bands):
        raise ValueError(f"{name} has {len(value)} entries but bands has {len(bands)}")
    return True


class AbsoluteMagnitudes(TransformerMixin, BaseEstimator):
    """Turn apparent magnitudes and a parallax into absolute magnitudes.

    For every band, ``M = m + 5 log10(parallax / 100)`` with the parallax in
    mas. With ``return_errors=True`` the first-order errors
    ``sigma_M = sqrt(sigma_m**2 + (5 / ln 10 * sigma_plx / plx)**2)`` are
    appended (see :func:`absolute_magnitude_error` for its validity).
    Nothing is learnt: ``fit`` checks the input and records the columns.

    Parameters
    ----------
    bands : sequence of str, default=("BP", "G", "RP", "J", "H", "Ks", "W1", "W2")
        Bands to convert, in output order. The default is the eight bands of
        the M-dwarf metallicity network (``skstellar.columns.MDWARF_BANDS``).
        Bands that are not keys of ``skstellar.columns.BAND_COLUMNS`` need
        their column in ``magnitude_columns``.
    magnitude_columns : None, sequence of str or dict, default=None
        Apparent-magnitude column [mag] of each band: None uses
        ``skstellar.columns.BAND_COLUMNS`` (Gaia archive, 2MASS and WISE
        names); a sequence gives one column per band; a dict maps band ->
        column, other bands keeping the default.
    parallax_column : str, default="parallax"
        Parallax column [mas].
    parallax_error_column : str, default="parallax_error"
        Parallax error column [mas]; read only when ``return_errors``.
    error_columns : None, sequence of str or dict, default=None
        Apparent-magnitude error column [mag] of each band (read only when
        ``return_errors``). None looks, per band, for the survey error column
        (``skstellar.columns.BAND_ERROR_COLUMNS``, e.g. ``j_msigcom``), then
        for the Gaia ``phot_*_mean_flux_over_error`` column, converted with
        ``sigma_m = 2.5 / ln 10 / flux_over_error``, then for
        ``<magnitude column>_error``. A dict may give only some bands.
    return_errors : bool, default=False
        Also output ``<prefix><band>_error`` [mag]. A required error column
        that is absent raises a ``ValueError`` naming it.
    distance_error : bool, default=False
        With ``return_errors``, also output ``distance_modulus_error`` [mag],
        ``5 / ln 10 * sigma_plx / plx``: the part of every band's error that
        comes from the parallax and is therefore shared by all bands (the
        absolute magnitudes' covariance is ``diag(sigma_m^2) +
        distance_modulus_error^2``). :class:`skstellar.MDwarfMetallicityRegressor`
        uses it to propagate the errors with their correlation.
    invalid_parallax : {"raise", "nan"}, default="raise"
        What to do with rows whose parallax is <= 0, NaN (missing) or inf,
        for which no absolute magnitude exists. "raise": ``ValueError``
        giving their count and first row (cut them first, e.g. with
        ``skstellar.mdwarf.quality_mask``). "nan": their outputs (magnitudes
        and errors) are NaN; rows are never dropped, and downstream
        estimators that reject NaN will then complain about them.
    output_prefix : str, default="M_"
        Prefix of the output names (``M_G``, ``M_G_error``).

    Attributes
    ----------
    n_features_in_ : int
        Number of columns of the input seen in ``fit``.
    feature_names_in_ : ndarray of str
        Their names, when the input had names.
    input_by_name_ : bool
        Whether columns are selected by name (True) or by position.
    magnitude_columns_ : tuple of str
        Column of each band (positional input: the input name at that position,
        ``x0``, ``x1``... for arrays).
    parallax_column_ : str
        Parallax column.
    error_columns_ : tuple of (str, str) or None
        Per band, the error column and its kind (``"magnitude"`` error in mag or
        Gaia ``"flux_over_error"``); None unless ``return_errors``.
    parallax_error_column_ : str or None
        Parallax error column; None unless ``return_errors``.
    band_labels_ : tuple of str
        Band part of the output names.

    Notes
    -----
    **Named input** (pandas DataFrame with string column labels, astropy
    Table/QTable, dict of arrays or Quantities) is read by column name; extra
    columns are ignored and their order does not matter. Quantity columns
    are converted: magnitudes to ``u.mag``, parallaxes and their errors to
    ``u.mas`` (e.g. arcsec); any other unit raises a "wrong units"
    ``ValueError``. Plain columns are taken to be in mag and mas.

    **Positional input** (numpy 2-D array, or a DataFrame without string
    labels) is read as ``[m_1, ..., m_k, parallax]``, and with
    ``return_errors=True`` as ``[m_1, ..., m_k, parallax, sigma_m_1, ...,
    sigma_m_k, parallax_error]``. The number of bands ``k`` is taken from the
    width seen in ``fit`` (``n_features_in_ - 1``, or ``(n_features_in_ - 2)
    / 2``). When ``k == len(bands)`` the outputs are named after ``bands``,
    otherwise after the input columns (``M_x0``, ``M_x1``, ...).
    As with scikit-learn estimators, a DataFrame with string labels but
    *none* of the configured columns is also read positionally, with a
    ``UserWarning``; one that has some of them but not all raises the
    "Missing column" error.

    Magnitudes (and errors) must be finite: NaN or inf raises a
    ``ValueError`` naming the column and first row. Negative magnitudes are
    allowed (bright stars).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"phot_g_mean_mag": [12.0, 15.0], "parallax": [100.0, 10.0]})
    >>> AbsoluteMagnitudes(bands=["G"]).fit_transform(df)
    array([[12.],
           [10.]])
    """

    def __init__(
        self,
        *,
        bands=_cols.MDWARF_BANDS,
        magnitude_columns=None,
        parallax_column="parallax",
        parallax_error_column="parallax_error",
        error_columns=None,
        return_errors=False,
        invalid_parallax="raise",
        output_prefix="M_",
        distance_error=False,
    ):
        self.bands = bands
        self.magnitude_columns = magnitude_columns
        self.parallax_column = parallax_column
        self.parallax_error_column = parallax_error_column
        self.error_columns = error_columns
        self.return_errors = return_errors
        self.invalid_parallax = invalid_parallax
        self.output_prefix = output_prefix
        self.distance_error = distance_error

    # -- scikit-learn plumbing ---------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True  # the parallax must be > 0
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    # -- parameter handling ------------------------------------------------
    _COLUMNS_PER_BAND = [None, Mapping, SequenceOf(str, min_length=0, arrays=False)]
    #: Allowed hyperparameter values (checked by ``fit``).
    _parameter_constraints = {
        "bands": [SequenceOf(str, distinct=True, arrays=False)],
        "magnitude_columns": _COLUMNS_PER_BAND,
        "parallax_column": [str],
        "parallax_error_column": [str],
        "error_columns": _COLUMNS_PER_BAND,
        "return_errors": ["boolean"],
        "invalid_parallax": [Options(("raise", "nan"))],
        "output_prefix": [str],
        "distance_error": ["boolean"],
    }
    _parameter_rules = (
        Rule(("distance_error", "return_errors"),
             lambda distance_error, return_errors: return_errors or not distance_error,
             "distance_error=True needs return_errors=True"),
        Rule(("magnitude_columns", "bands"), _one_column_per_band,
             "magnitude_columns must name bands (dict) or give one column per band"),
        Rule(("error_columns", "bands"), _one_column_per_band,
             "error_columns must name bands (dict) or give one column per band"),
    )

    def _configured_magnitude_columns(self):
        """Column per band, None where unknown."""
        mc = self.magnitude_columns
        if mc is not None and not isinstance(mc, Mapping):
            return list(mc)  # one per band (checked by _parameter_rules)
        return [(mc or {}).get(band, _cols.BAND_COLUMNS.get(band)) for band in self.bands]

    def _error_candidates(self, band, i, mag_col):
        """Ordered (column, kind) candidates for the error of one band."""
        ec = self.error_columns
        given = ec.get(band) if isinstance(ec, Mapping) else None if ec is None else ec[i]
        if given is not None:
            return [(given, _MAGNITUDE)]
        cands = [(_cols.BAND_ERROR_COLUMNS.get(band), _MAGNITUDE),
                 (_cols.BAND_FLUX_OVER_ERROR_COLUMNS.get(band), _FLUX_OVER_ERROR),
                 (_cols.error_name(mag_col), _MAGNITUDE)]
        return [(col, kind) for col, kind in cands if col]

    # -- layout resolution (fit) -------------------------------------------
    def _resolve_named(self, names):
        present = set(names)
        mag_cols = []
        for band, col in zip(self.bands, self._configured_magnitude_columns()):
            if col is None:
                raise ValueError(
                    f"Unknown band '{band}': give its column in magnitude_columns "
                    f"(known bands: {', '.join(_cols.BAND_COLUMNS)})."
                )
            if col not in present:
                raise missing_column_error(col, f"band {band}", names)
            mag_cols.append(col)
        if self.parallax_column not in present:
            raise missing_column_error(self.parallax_column, "the parallax", names)
        err_cols = plx_err_col = None
        if self.return_errors:
            err_cols = []
            for i, (band, col) in enumerate(zip(self.bands, mag_cols)):
                cands = self._error_candidates(band, i, col)
                found = [c for c in cands if c[0] in present]
                if not found:
                    others = [c for c, _ in cands[1:]]
                    extra = f" (also looked for {', '.join(others)})" if others else ""
                    raise missing_column_error(
                        cands[0][0], f"the error of band {band} (return_errors=True){extra}", names
                    )
                err_cols.append(found[0])
            if self.parallax_error_column not in present:
                raise missing_column_error(
                    self.parallax_error_column, "the parallax error (return_errors=True)", names
                )
            plx_err_col = self.parallax_error_column
        self.input_by_name_ = True
        self.magnitude_columns_ = tuple(mag_cols)
        self.parallax_column_ = self.parallax_column
        self.error_columns_ = None if err_cols is None else tuple(err_cols)
        self.parallax_error_column_ = plx_err_col
        self.band_labels_ = tuple(self.bands)
        self.n_features_in_ = len(names)
        self.feature_names_in_ = np.asarray(names, dtype=object)

    def _resolve_positional(self, n_features, names):
        if self.return_errors and (n_features < 4 or n_features % 2):
            raise ValueError(
                "With return_errors=True, positional input must have 2k + 2 columns "
                "[m_1..m_k, parallax, sigma_m_1..sigma_m_k, parallax_error]; got "
                f"{n_features} feature(s)."
            )
        k = (n_features - 2) // 2 if self.return_errors else n_features - 1
        names = list(names)
        self.input_by_name_ = False
        self.magnitude_columns_ = tuple(names[:k])
        self.parallax_column_ = names[k]
        errors = self.return_errors
        error_names = names[k + 1 : 2 * k + 1]
        self.error_columns_ = tuple((c, _MAGNITUDE) for c in error_names) if errors else None
        self.parallax_error_column_ = names[2 * k + 1] if errors else None
        self.band_labels_ = tuple(self.bands) if k == len(self.bands) else tuple(names[:k])

    # -- reading -----------------------------------------------------------
    def _validate_array(self, X, reset):
        # at transform time the n_features_in_ check gives the clearer message
        return validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite=False,
                             ensure_min_features=(4 if self.return_errors else 2) if reset else 1)

    def _read(self, X, reset):
        """Return the arrays ``transform`` needs, resolving the layout when ``reset``."""
        named = is_named_input(X)
        if reset and named:
            names = column_names(X)
            known = {c for c in self._configured_magnitude_columns() if c is not None}
            known.add(self.parallax_column)
            if is_pandas_df(X) and not known.intersection(names):
                warnings.warn(
                    f"None of the configured columns ({', '.join(sorted(known))}) is in "
                    f"the DataFrame; its {len(names)} columns are read positionally as "
                    "[m_1..m_k, parallax(, errors)]. Pass magnitude_columns and "
                    "parallax_column to select columns by name.",
                    UserWarning,
                    stacklevel=3,
                )
                named = False
            else:
                self._resolve_named(names)
        if named and self.input_by_name_:
            return self._read_named(X)
        X = self._as_positional(X, named)
        Xa = self._validate_array(X, reset=reset)
        if reset:
            names = getattr(self, "feature_names_in_", None)
            if names is None:
                names = [f"x{i}" for i in range(Xa.shape[1])]
            self._resolve_positional(Xa.shape[1], names)
        return self._read_positional(Xa, X)

    def _as_positional(self, X, named):
        """Tables and dicts read positionally become DataFrames (units converted)."""
        if not named or is_pandas_df(X):
            return X
        import pandas as pd

        data, _, _ = to_frame_like(X)
        k = len(self.magnitude_columns_)
        out = {}
        for i, (name, v) in enumerate(data.items()):
            if isinstance(v, u.Quantity):
                angle = i == k or (self.return_errors and i == 2 * k + 1)
                v = as_float_column(v, name, unit=u.mas if angle else u.mag,
                                    kind="parallax" if angle else "magnitude")
            out[name] = np.asarray(getattr(v, "value", v))
        return pd.DataFrame(out)

    def _input_columns(self):
        """Columns read, in the order ``[m_1..m_k, parallax(, errors, parallax_error)]``."""
        cols = [*self.magnitude_columns_, self.parallax_column_]
        if self.return_errors:
            cols += [c for c, _ in self.error_columns_] + [self.parallax_error_column_]
        return cols

    def _split(self, values, index):
        """The arrays ``_compute`` needs from the columns of ``_input_columns`` (2-D)."""
        k = len(self.magnitude_columns_)
        out = {"mags": values[:, :k], "plx": values[:, k], "index": index}
        if self.return_errors:
            out["errs"] = values[:, k + 1 : 2 * k + 1]
            out["plx_err"] = values[:, 2 * k + 1]
        return out

    def _read_named(self, X):
        bands = self.band_labels_
        # (what each column of _input_columns is for, its unit, its kind), in the same order
        roles = [(f"band {b}", u.mag, "magnitude") for b in bands]
        roles.append(("the parallax", u.mas, "parallax"))
        if self.return_errors:
            roles += [(f"the error of band {b}", *_ERROR_UNITS[kind])
                      for b, (_, kind) in zip(bands, self.error_columns_)]
            roles.append(("the parallax error", u.mas, "parallax error"))
        cols = self._input_columns()
        names = column_names(X)
        present = set(names)
        for col, (purpose, _, _) in zip(cols, roles):
            if col not in present:
                raise missing_column_error(col, purpose, names)
        data, n, _ = to_frame_like(X, columns=cols)
        check_not_empty(n)
        values = np.column_stack([as_float_column(data[c], c, unit=unit, kind=kind)
                                  for c, (_, unit, kind) in zip(cols, roles)])
        return self._split(values, X.index if is_pandas_df(X) else None)

    def _read_positional(self, Xa, X_orig):
        if self.input_by_name_:
            # fitted on named input, now given an array with the same column order
            pos = {c: i for i, c in enumerate(self.feature_names_in_)}
            Xa = Xa[:, [pos[c] for c in self._input_columns()]]
        return self._split(Xa, X_orig.index if is_pandas_df(X_orig) else None)

    # -- computation -------------------------------------------------------
    def _compute(self, d):
        mags, plx, index = d["mags"], d["plx"], d["index"]
        check_finite_columns(mags, self.magnitude_columns_, "magnitude", index=index)
        valid = np.isfinite(plx) & (plx > 0)
        if not valid.all() and self.invalid_parallax == "raise":
            raise ValueError(self._parallax_message(plx, valid, index))
        safe_plx = np.where(valid, plx, 100.0)
        M = mags + 5.0 * np.log10(safe_plx / 100.0)[:, None]
        M[~valid] = np.nan
        if not self.return_errors:
            return M

        raw = d["errs"]
        check_finite_columns(raw, [c for c, _ in self.error_columns_], "error value", index=index)
        sig = np.empty_like(raw)
        for j, (col, kind) in enumerate(self.error_columns_):
            flux = kind == _FLUX_OVER_ERROR
            what = "flux_over_error value" if flux else "magnitude error"
            check_non_negative(raw[:, j], col, what, index=index, strict=flux)
            sig[:, j] = _FLUX_TO_MAG / raw[:, j] if flux else raw[:, j]
        pe = np.where(valid, d["plx_err"], 0.0)
        pname = self.parallax_error_column_
        check_finite_columns(pe, pname, "parallax error", index=index,
                             hint="Only rows with a valid parallax are checked")
        check_non_negative(pe, pname, "parallax error", index=index)
        dm_err = _PLX_TO_MAG * (pe / safe_plx)
        E = np.sqrt(sig**2 + dm_err[:, None] ** 2)
        E[~valid] = np.nan
        if self.distance_error:
            dm_err = np.where(valid, dm_err, np.nan)
            return np.hstack([M, E, dm_err[:, None]])
        return np.hstack([M, E])

    def _parallax_message(self, plx, valid, index):
        bad = ~valid
        where = row_location(int(np.argmax(bad)), index)
        with np.errstate(invalid="ignore"):
            n_neg = int(np.sum(plx < 0))
            n_zero = int(np.sum(plx == 0))
        return (
            f"Column '{self.parallax_column_}' has no usable parallax in {int(bad.sum())} of "
            f"{plx.shape[0]} sample(s) (first at {where}). Negative values in data: {n_neg}; zero: "
            f"{n_zero}; NaN: {int(np.isnan(plx).sum())}; inf: {int(np.isinf(plx).sum())}. "
            "Absolute magnitudes need parallax > 0: cut these rows first (e.g. "
            "parallax_over_error > 10, see skstellar.mdwarf.quality_mask) or use "
            "invalid_parallax='nan' to get NaN outputs for them."
        )

    # -- public API --------------------------------------------------------
    def fit(self, X, y=None):
        """Check ``X`` and record which columns hold what.

        Parameters
        ----------
        X : DataFrame, astropy Table/QTable, dict or array of shape (n_samples, n_features)
            Catalogue (see the class Notes for named vs positional input).
        y : None
            Ignored.

        Returns
        -------
        self : AbsoluteMagnitudes
        """
        self._fit_compute(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit and return the absolute magnitudes (computed once).

        Parameters
        ----------
        X : DataFrame, astropy Table/QTable, dict or array of shape (n_samples, n_features)
            Catalogue.
        y : None
            Ignored.

        Returns
        -------
        ndarray of shape (n_samples, n_bands) or (n_samples, 2 * n_bands)
            See :meth:`transform`.
        """
        return self._fit_compute(X)

    def _fit_compute(self, X):
        validate_parameters(self)
        forget_input_features(self, *_FITTED_ATTRIBUTES)  # forget a previous fit
        return self._compute(self._read(X, reset=True))

    def transform(self, X):
        """Absolute magnitudes [mag] (and errors [mag]) of every row.

        Parameters
        ----------
        X : DataFrame, astropy Table/QTable, dict or array of shape (n_samples, n_features)
            Catalogue holding the same columns as in ``fit``.

        Returns
        -------
        ndarray of float64, shape (n_samples, n_bands) or (n_samples, 2 * n_bands)
            Absolute magnitudes in band order, followed by their errors when
            ``return_errors`` (and by the distance-modulus error when
            ``distance_error``, one more column). Rows with an invalid parallax are NaN under
            ``invalid_parallax="nan"``.
        """
        check_is_fitted(self)
        return self._compute(self._read(X, reset=False))

    def get_feature_names_out(self, input_features=None):
        """Output names: ``<prefix><band>`` then ``<prefix><band>_error``.

        Parameters
        ----------
        input_features : array-like of str, optional
            Input names; must match ``feature_names_in_`` when that exists.

        Returns
        -------
        ndarray of str (object dtype)
        """
        check_is_fitted(self)
        input_features = _check_feature_names_in(self, input_features)
        k = len(self.magnitude_columns_)
        labels = (self.band_labels_ if self.input_by_name_ or k == len(self.bands)
                  else [str(c) for c in input_features[:k]])
        names = [f"{self.output_prefix}{b}" for b in labels]
        if self.return_errors:
            names += [_cols.error_name(c) for c in names]
            if self.distance_error:
                names.append(DISTANCE_MODULUS_ERROR)
        return np.asarray(names, dtype=object)

