"""Gaia XP normalisation with exact covariance propagation (method 4, Sect. 2.2).

:class:`XPNormalizer` turns a Gaia DR3 ``xp_continuous_mean_spectrum`` table
(joined with Gaia, 2MASS and WISE photometry) into the features of the
uncertain neural network of the Gaia XP paper (Sect. 2.2 and 3; listed in its
docstring). Its output is a :class:`skstellar.covariance.CovariantFeatures`:
the feature values *and* each source's feature covariance, row-aligned, so
the next step (a covariance-aware scaler or
:class:`skstellar.xp.UncertainNNRegressor`) and cross-validation keep them
together.

Covariance of the normalised coefficients
-----------------------------------------
With ``y = c / c0`` (``c0`` the 0th RP coefficient) and the per-band archive
covariance ``C = diag(e) R diag(e)`` (BP and RP independent), first-order
propagation gives

* RP block: ``(C_ij - y_i C_0j - y_j C_0i + y_i y_j C_00) / c0^2``
  (the paper's Eq. 2);
* BP block: ``C_ij / c0^2`` in the paper (``covariance="paper"``, default).
  ``covariance="exact"`` also keeps the terms the paper neglects, which come
  from the uncertainty of c0 shared by every feature:
  ``(C_ij + y_i y_j C_00) / c0^2`` for BP-BP and
  ``y_i (y_j C_00 - C_0j) / c0^2`` for BP-RP (one 109 x 109 block). Since
  the RP0 coefficient is measured to ~0.1 per cent these terms are small;
  tests check both against Monte Carlo draws.

When ``c0 == 0`` (rare) the paper normalises by the uncertainty of c0
instead; the normaliser is then a constant and the covariance is ``C / e0^2``.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._validation import as_float_column, check_non_negative, missing_column_error, to_frame_like
from ..columns import GAIA_DR3, TWOMASS, WISE
from ..covariance import CovariantFeatures, pack_lower, packed_size
from ..parameters import Interval, Options, validate_parameters
from .photometry import magnitude_error_from_flux_over_error

__all__ = ["XPNormalizer", "XP_PHOTOMETRY_COLUMNS", "normalise_xp_coefficients"]

#: Default photometry columns of XPNormalizer (archive names) and their errors.
XP_PHOTOMETRY_COLUMNS = {
    "BP": GAIA_DR3["BP"],
    "RP": GAIA_DR3["RP"],
    "BP_flux_over_error": GAIA_DR3["BP_flux_over_error"],
    "RP_flux_over_error": GAIA_DR3["RP_flux_over_error"],
    "J": TWOMASS["J"],
    "H": TWOMASS["H"],
    "J_error": TWOMASS["J_error"],
    "H_error": TWOMASS["H_error"],
    "W1": WISE["W1"],
    "W2": WISE["W2"],
    "W1_error": WISE["W1_error"],
    "W2_error": WISE["W2_error"],
    "parallax": GAIA_DR3["parallax"],
    "parallax_error": GAIA_DR3["parallax_error"],
}

#: Names of the photometric features, in output order.
PHOTOMETRY_FEATURES = ("bp_rp", "w1_w2", "j_h", "h_w2", "pseudo_abs_mag")


def normalise_xp_coefficients(bp, bp_cov, rp, rp_cov, covariance="paper", rp0_error=None):
    """Divide XP coefficients by the 0th RP coefficient and propagate covariances.

    Vectorised over sources (no loop per source).

    Parameters
    ----------
    bp, rp : ndarray of shape (n, k)
        BP and RP basis coefficients [e-/s].
    bp_cov, rp_cov : ndarray of shape (n, k, k)
        Their covariances (BP and RP independent).
    covariance : {"paper", "exact"}
        ``"paper"``: RP block by Eq. 2, BP block ``C / c0^2`` (no cross
        terms). ``"exact"``: full first-order propagation with BP-RP terms.
    rp0_error : ndarray of shape (n,), optional
        Uncertainty of c0 used as normaliser where ``c0 == 0``; default
        ``sqrt(rp_cov[:, 0, 0])``.

    Returns
    -------
    y_bp : ndarray (n, k)
    y_rp : ndarray (n, k - 1)
        Normalised coefficients without the constant RP0.
    blocks : list of (local_columns, dense (n, m, m)) over the ``2k - 1``
        columns ordered ``[rp_1..rp_{k-1}, bp_0..bp_{k-1}]``.
    """
    if covariance not in ("paper", "exact"):
        raise ValueError(f"covariance must be 'paper' or 'exact', got {covariance!r}.")
    k = bp.shape[1]
    if rp0_error is None:
        rp0_error = np.sqrt(np.maximum(rp_cov[:, 0, 0], 0.0))
    zero, norm = _rp0_normaliser(rp[:, 0], rp0_error)
    inv2 = 1.0 / norm**2
    y_bp = bp / norm[:, None]
    y_rp_full = rp / norm[:, None]
    # For c0 == 0 the normaliser is a constant: no derivative term.
    d = np.where(zero, 0.0, 1.0)[:, None]
    yr = y_rp_full * d
    C0 = rp_cov[:, 0, :]  # (n, k): Cov(c0, c_j)
    S_rp = (rp_cov - yr[:, :, None] * C0[:, None, :] - yr[:, None, :] * C0[:, :, None]
            + yr[:, :, None] * yr[:, None, :] * rp_cov[:, 0, 0][:, None, None]
            ) * inv2[:, None, None]
    S_rp = S_rp[:, 1:, 1:]
    if covariance == "paper":
        S_bp = bp_cov * inv2[:, None, None]
        blocks = [(np.arange(k - 1), S_rp), (np.arange(k - 1, 2 * k - 1), S_bp)]
    else:
        yb = y_bp * d
        C00 = rp_cov[:, 0, 0][:, None, None]
        S_bp = (bp_cov + yb[:, :, None] * yb[:, None, :] * C00) * inv2[:, None, None]
        cross = yb[:, :, None] * (yr[:, None, 1:] * C00 - C0[:, None, 1:]) * inv2[:, None, None]
        full = np.block([[S_rp, np.swapaxes(cross, 1, 2)], [cross, S_bp]])
        blocks = [(np.arange(2 * k - 1), full)]
    return y_bp, y_rp_full[:, 1:], blocks


def _rp0_normaliser(c0, c0_error):
    """``(c0 == 0, normaliser)``: c0, or its uncertainty where c0 == 0 (raises where both are)."""
    zero = c0 == 0
    norm = np.where(zero, c0_error, c0)
    if np.any(norm == 0):
        raise ValueError(
            "The 0th RP coefficient and its uncertainty are both zero for "
            f"{int(np.sum(norm == 0))} source(s): they cannot be normalised."
        )
    return zero, norm


def _band_arrays(table, band):
    """(coefficients, errors, correlations, present) of one XP band.

    The correlations are a float32 ``(n, k (k - 1) / 2)`` array, or (fast
    path of :func:`_cell_band`) the table's object array of per-source
    cells, stacked chunk by chunk by :func:`correlation_rows`.
    """
    from ..io.gaia_xp import xp_band_arrays

    if isinstance(table, Mapping):
        c = table.get(f"{band}_coefficients")
        if isinstance(c, np.ndarray) and c.ndim == 2 and c.dtype.kind == "f":
            e = np.asarray(table[f"{band}_coefficient_errors"], dtype=np.float64)
            r = np.asarray(table[f"{band}_coefficient_correlations"], dtype=np.float32)
            present = ~np.all(np.isnan(c), axis=1)  # an all-NaN row is a missing band
            return np.asarray(c, np.float64), e, r, present
    fast = _cell_band(table, band)
    if fast is not None:
        return fast
    b = xp_band_arrays(table, band)
    return b.coefficients, b.errors, b.correlations, b.present


def _float_cells(table, name):
    """(object array of 1-D float ndarray cells, their common length) or None."""
    try:
        col = table[name]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    cells = col.to_numpy() if isinstance(col, pd.Series) else col
    if type(cells) is not np.ndarray or cells.ndim != 1 or cells.dtype != object or not len(cells):
        return None
    # C-level loops over the cells (no Python per cell)
    if set(map(type, cells)) != {np.ndarray} or set(map(operator.attrgetter("ndim"), cells)) != {1}:
        return None
    if any(dt.kind != "f" for dt in set(map(operator.attrgetter("dtype"), cells))):
        return None
    lengths = set(map(len, cells))
    return (cells, lengths.pop()) if len(lengths) == 1 else None


def _cell_band(table, band):
    """Fast path of :func:`skstellar.io.xp_band_arrays` for the canonical layout.

    Applies when every cell of the band is a 1-D float ndarray, of one length
    per column, and no source lacks the band: coefficients and errors are
    stacked without a per-cell parse, correlation cells are kept to be stacked
    chunk by chunk. Otherwise None: the reader then names the offending rows.
    """
    parts = [_float_cells(table, f"{band}_{field}")
             for field in ("coefficients", "coefficient_errors", "coefficient_correlations")]
    if any(p is None for p in parts):
        return None
    (c, k), (e, ke), (r, kr) = parts
    if ke != k or kr != k * (k - 1) // 2:
        return None
    coefficients = np.stack(c).astype(np.float64, copy=False)
    errors = np.stack(e).astype(np.float64, copy=False)
    if np.any(np.all(np.isnan(coefficients), 1)) or np.any(np.all(np.isnan(errors), 1)):
        return None  # missing bands: the reader's checks and messages
    return coefficients, errors, r, np.ones(len(c), bool)


def correlation_rows(correlations, rows, n_corr):
    """Float32 strict-triangle correlations of some rows, truncated to ``n_corr`` values.

    Parameters
    ----------
    correlations : ndarray of shape (n, m) or object ndarray of shape (n,)
        Correlations of a band as a 2-D array or as per-source 1-D cells.
    rows : slice or ndarray of int
        Rows to take.
    n_corr : int
        Values kept per row: ``k (k - 1) / 2`` for ``k`` coefficients.

    Returns
    -------
    ndarray of shape (n_rows, n_corr), float32
    """
    if correlations.dtype == object:
        cells = correlations[rows]
        if len(cells) and len(cells[0]) != n_corr:
            return np.stack([cell[:n_corr] for cell in cells], dtype=np.float32)
        return np.stack(cells, dtype=np.float32)
    return np.asarray(correlations[rows, :n_corr], dtype=np.float32)


class _PackedPlan:
    """Normalisation with covariance propagation done directly on packed triangles.

    Equivalent to :func:`normalise_xp_coefficients` but never builds dense
    covariance matrices (only the lower triangles of the correlations, one
    chunk at a time): every output covariance element ``S_fg`` is an
    elementwise function of raw covariance elements,
    ``(C_fg - d_f y_f K_g - d_g y_g K_f + d_f d_g y_f y_g C_00) / c0^2`` with
    ``K_f = Cov(f, c0)`` and ``d_f`` = 1 where the derivative of the
    normaliser enters (RP features; BP too in "exact" mode; no feature when
    c0 == 0). Features are ordered ``rp_1..rp_{k-1}, bp_0..bp_{k-1}``.
    """

    def __init__(self, k, covariance):
        self.k = k
        self.band = np.r_[np.ones(k - 1, int), np.zeros(k, int)]  # 1 = RP
        self.coef = np.r_[np.arange(1, k), np.arange(k)]
        m = 2 * k - 1
        self.blocks = ([np.arange(k - 1), np.arange(k - 1, m)] if covariance == "paper"
                       else [np.arange(m)])
        self.deriv_bp = covariance == "exact"

    def lower_correlation(self, strict, out):
        """Write archive correlations ``strict`` (n, k (k - 1) / 2) into ``out`` (n, k, k).

        Only the lower triangle (one slice copy per row, no gather) and the
        unit diagonal are written; the upper triangle is left as it is (the
        Cholesky check and the normalisation read only the lower one).
        Returns ``out``.
        """
        for a in range(1, self.k):
            out[:, a, :a] = strict[:, a * (a - 1) // 2 : a * (a - 1) // 2 + a]
        np.einsum("nii->ni", out)[...] = 1.0
        return out

    def normalise(self, bp, bp_e, R_bp, rp, rp_e, R_rp, out=None):
        """Values (n, 2k-1) and packed covariance blocks of the normalised features.

        ``R_bp`` and ``R_rp`` are dense ``(n, k, k)`` float32 correlation
        matrices of which only the lower triangle (with the diagonal) is
        read (see :meth:`lower_correlation`). Each output covariance row
        ``f`` of a block is computed from contiguous column slices:
        ``S_fg = e'_f e'_g R_fg - dy'_f U'_g - K'_f dy'_g`` over ``g <= f``
        with primes meaning "divided by ``|c0|``" and
        ``U'_g = K'_g - dy'_g C_00`` (the expression above, rearranged).
        Same-band ``R_fg`` of a packed row are one slice of a row of the
        lower triangle, so there are no gathers: one pass over the
        correlations and one over the output, vectorised over sources, in
        float32 like the output. ``out`` (optional) are the arrays the
        blocks are written into (shape ``(n, packed_size(len(cols)))`` each).
        """
        import torch

        zero, norm = _rp0_normaliser(rp[:, 0], rp_e[:, 0])
        n, k = len(norm), self.k
        y = np.hstack([rp[:, 1:], bp]) / norm[:, None]
        # float32 from here on: the output is stored in float32 and no term
        # cancels catastrophically (the c0 terms are <~ the C_ij terms).
        s = (1.0 / np.abs(norm))[:, None]
        e = (np.hstack([rp_e[:, 1:], bp_e]) * s).astype(np.float32)  # e'
        is_rp = self.band == 1
        dflag = np.where(is_rp, 1.0, 1.0 if self.deriv_bp else 0.0)[None, :] * (~zero)[:, None]
        dy = (dflag * y * s).astype(np.float32)  # dy'
        K = np.zeros((n, len(self.band)), np.float32)  # K' = Cov(f, c0) / |c0|
        K[:, is_rp] = e[:, is_rp] * (rp_e[:, :1] * R_rp[:, self.coef[is_rp], 0])
        C00 = (rp_e[:, :1] ** 2).astype(np.float32)
        U = K - dy * C00
        t = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in
             (("e", e), ("dy", dy), ("K", K), ("U", U))}
        R = {1: torch.from_numpy(np.ascontiguousarray(R_rp, dtype=np.float32)),
             0: torch.from_numpy(np.ascontiguousarray(R_bp, dtype=np.float32))}
        results = []
        for b, cols in enumerate(self.blocks):
            res = np.empty((n, packed_size(len(cols))), np.float32) if out is None else out[b]
            dst = torch.from_numpy(res)
            c0_ = int(cols[0])
            deriv = bool(np.any(dflag[:, cols]))
            for r in range(len(cols)):
                f = c0_ + r
                row = dst[:, r * (r + 1) // 2 : r * (r + 1) // 2 + r + 1]
                band, coef = self.band[f], self.coef[f]
                # same-band columns g of this row: from the band's first feature
                first = max(c0_, 0 if band == 1 else k - 1)
                lo = first - c0_
                if lo > 0:
                    row[:, :lo].zero_()  # raw BP-RP covariance is zero
                coef_lo = self.coef[first]
                src = R[band][:, coef, coef_lo : coef + 1]
                same = row[:, lo:]
                torch.mul(src, t["e"][:, first : f + 1], out=same)
                same.mul_(t["e"][:, f : f + 1])
                if deriv:
                    g = slice(c0_, f + 1)
                    row.addcmul_(t["dy"][:, f : f + 1], t["U"][:, g], value=-1.0)
                    row.addcmul_(t["K"][:, f : f + 1], t["dy"][:, g], value=-1.0)
            results.append(res)
        return y, results


class XPNormalizer(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Normalise Gaia XP coefficients by RP0 and propagate their covariance.

    Implements Sect. 2.2 of the Gaia XP uncertain-NN paper: features are the
    55 BP and 54 RP (RP0 dropped, it is identically 1) coefficients divided by
    the 0th RP coefficient, plus, with ``photometry=True``, the colours
    G_BP - G_RP, W1 - W2, J - H, H - W2 and the pseudo-absolute magnitude
    parallax x 10^(0.2 G_RP) [mas] (Eq. 3) -- 114 features in all for 55
    coefficients per band. (The paper counts 115 inputs because it keeps the
    constant normalised RP0.) No extinction correction, as in the paper.

    Parameters
    ----------
    photometry : bool, default=True
        Append the four colours and the pseudo-absolute magnitude.
    covariance : {"paper", "exact"}, default="paper"
        Covariance propagation of the normalisation (see the module notes).
    n_coefficients : int or None, default=None
        Keep only the first ``n`` coefficients of each band (the paper uses
        all 55); None keeps what the table has.
    missing_band : {"raise", "nan"}, default="raise"
        A source without BP or RP coefficients: ``"raise"`` names it;
        ``"nan"`` gives NaN features (filter them before training; the
        network rejects NaN inputs). Nothing is dropped.
    check_covariance : {"raise", "repair", "ignore"}, default="raise"
        Covariances of each band that are not positive semi-definite
        (numerically, eigenvalue < -1e-6 of the largest): ``"raise"`` names
        the sources; ``"repair"`` clips negative eigenvalues to zero;
        ``"ignore"`` passes them on.
    columns : dict, optional
        Photometry column names overriding :data:`XP_PHOTOMETRY_COLUMNS`.
    chunk_size : int, default=2048
        Sources processed at once by one thread (bounds memory: dense
        55 x 55 matrices exist only per chunk; the output keeps packed
        float32 triangles). Chunks run on ``torch.get_num_threads()``
        threads. For catalogues larger than memory, stream row chunks
        through :func:`skstellar.parallel.iter_chunks` or a Dask cluster
        (:func:`skstellar.parallel.transform_partitions`).

    Attributes
    ----------
    n_coefficients_ : int
        Coefficients per band used.
    feature_names_out_ : ndarray of str

    Notes
    -----
    Input is an archive table (pandas DataFrame, astropy Table or dict) as
    returned by :func:`skstellar.io.read_xp_continuous`, joined with
    the photometry columns. The output is a
    :class:`~skstellar.covariance.CovariantFeatures`; ``np.asarray`` of it
    gives the plain feature matrix for estimators that ignore uncertainties.
    Photometric errors are assumed independent between bands; the Gaia
    magnitude errors come from ``phot_*_mean_flux_over_error``.
    """

    def __init__(self, *, photometry=True, covariance="paper", n_coefficients=None,
                 missing_band="raise", check_covariance="raise", columns=None,
                 chunk_size=2048):
        self.photometry = photometry
        self.covariance = covariance
        self.n_coefficients = n_coefficients
        self.missing_band = missing_band
        self.check_covariance = check_covariance
        self.columns = columns
        self.chunk_size = chunk_size

    # ------------------------------------------------------------ helpers
    def _columns(self):
        cols = dict(XP_PHOTOMETRY_COLUMNS)
        if self.columns:
            unknown = set(self.columns) - set(cols)
            if unknown:
                raise ValueError(
                    f"Unknown photometry keys {sorted(unknown)}; valid keys: {sorted(cols)}."
                )
            cols.update(self.columns)
        return cols

    #: Allowed hyperparameter values (checked by ``fit`` and ``transform``).
    _parameter_constraints = {
        "photometry": ["boolean"],
        "covariance": [Options(("paper", "exact"))],
        "n_coefficients": [None, Interval("int", 1, None)],
        "missing_band": [Options(("raise", "nan"))],
        "check_covariance": [Options(("raise", "repair", "ignore"))],
        "columns": [None, Mapping],
        "chunk_size": [Interval("int", 1, None)],
    }

    def _read_bands(self, X):
        plain = isinstance(X, np.ndarray) and X.dtype.names is None
        if isinstance(X, CovariantFeatures) or plain:
            raise ValueError(
                "XPNormalizer expects a Gaia XP continuous table (DataFrame, astropy "
                "Table or dict) with bp_/rp_coefficients, _coefficient_errors and "
                "_coefficient_correlations columns; got a plain array."
            )
        avail = list(X.keys()) if isinstance(X, Mapping) else list(
            getattr(X, "colnames", getattr(X, "columns", [])))
        out = {}
        for band in ("bp", "rp"):
            for suffix in ("coefficients", "coefficient_errors", "coefficient_correlations"):
                if f"{band}_{suffix}" not in avail:
                    raise missing_column_error(f"{band}_{suffix}", "Gaia XP normalisation", avail)
            out[band] = _band_arrays(X, band)
        kb, kr = out["bp"][0].shape[1], out["rp"][0].shape[1]
        if kb != kr:
            raise ValueError(
                f"BP has {kb} coefficients but RP has {kr}: both bands must have the same "
                "number (set n_coefficients to truncate both)."
            )
        return out

    def _source_labels(self, X, idx):
        try:
            ids = np.asarray(X["source_id"])[idx]
            return ", ".join(f"source_id {i}" for i in ids[:5])
        except (KeyError, IndexError, TypeError, ValueError):
            return ", ".join(f"row {i}" for i in idx[:5])

    # ----------------------------------------------------------------- API
    def fit(self, X, y=None):
        """Check the table layout and record the coefficient count.

        Parameters
        ----------
        X : DataFrame, astropy Table or dict
            Gaia XP continuous table joined with photometry.
        y : ignored

        Returns
        -------
        self
        """
        validate_parameters(self)
        k = self._read_bands(X)["rp"][0].shape[1]
        n = self.n_coefficients
        if n is not None:
            if not 1 <= int(n) <= k:
                raise ValueError(f"n_coefficients must be in 1..{k}, got {n}.")
            k = int(n)
        if k < 2:
            raise ValueError("Need at least 2 coefficients per band.")
        self.n_coefficients_ = k
        names = [f"rp_{i}" for i in range(1, k)] + [f"bp_{i}" for i in range(k)]
        if self.photometry:
            names += list(PHOTOMETRY_FEATURES)
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.n_features_out_ = len(self.feature_names_out_)
        return self

    def get_feature_names_out(self, input_features=None):
        """Output feature names: ``rp_1..``, ``bp_0..`` and the photometric features."""
        check_is_fitted(self, "n_coefficients_")
        return np.asarray(self.feature_names_out_, dtype=object)

    def transform(self, X):
        """Normalised features and their covariance.

        Parameters
        ----------
        X : DataFrame, astropy Table or dict
            Gaia XP continuous table joined with photometry.

        Returns
        -------
        CovariantFeatures
            ``(n_sources, 2k - 1 [+ 5])`` values and block covariances: the
            RP and BP blocks (one joint block with ``covariance="exact"``)
            and a 5 x 5 photometry block.
        """
        check_is_fitted(self, "n_coefficients_")
        validate_parameters(self)
        bands = self._read_bands(X)
        k = self.n_coefficients_
        if bands["rp"][0].shape[1] < k:
            raise ValueError(
                f"The table has {bands['rp'][0].shape[1]} coefficients per band but the "
                f"normaliser was fitted with {k}."
            )
        (bp, bp_e, bp_r, bp_ok), (rp, rp_e, rp_r, rp_ok) = bands["bp"], bands["rp"]
        n = len(bp)
        if n == 0:
            raise ValueError(
                "Found array with 0 sample(s) (shape=(0, ...)) while a minimum of 1 is required."
            )
        present = bp_ok & rp_ok
        if not present.all() and self.missing_band == "raise":
            bad = np.flatnonzero(~present)
            raise ValueError(
                f"{len(bad)} source(s) lack BP or RP coefficients ({self._source_labels(X, bad)}"
                f"{', ...' if len(bad) > 5 else ''}). Remove them before the pipeline, or set "
                "missing_band='nan' to get NaN features for them."
            )
        finite = present & np.all(np.isfinite(bp), 1) & np.all(np.isfinite(rp), 1) \
            & np.all(np.isfinite(bp_e), 1) & np.all(np.isfinite(rp_e), 1)
        bad = np.flatnonzero(present & ~finite)
        if len(bad):
            raise ValueError(
                f"NaN or infinite XP coefficients or errors for {len(bad)} source(s) "
                f"({self._source_labels(X, bad)}) that have both bands."
            )
        if np.any((bp_e[present] < 0) | (rp_e[present] < 0)):
            raise ValueError("Negative XP coefficient errors found.")

        m = 2 * k - 1
        values = np.full((n, m), np.nan)
        plan = _PackedPlan(k, self.covariance)
        packs = [np.zeros((n, packed_size(len(cols))), np.float32) for cols in plan.blocks]
        rows_ok = np.flatnonzero(present)
        n_corr = k * (k - 1) // 2
        step = int(self.chunk_size)
        scratch = threading.local()  # per-thread dense correlation buffers, reused by chunks

        def one_chunk(start):
            idx = rows_ok[start : start + step]
            if idx[-1] - idx[0] == len(idx) - 1:
                idx = slice(int(idx[0]), int(idx[-1]) + 1)  # contiguous rows: views, no scatter
            if not hasattr(scratch, "dense"):
                # zeroed once: the upper triangles stay zero (only lower ones are written)
                scratch.dense = {band: np.zeros((min(step, len(rows_ok)), k, k), np.float32)
                                 for band in ("bp", "rp")}
            R = {}
            for band, corr in (("bp", bp_r), ("rp", rp_r)):
                c = correlation_rows(corr, idx, n_corr)
                if c.shape[1] != n_corr:
                    raise ValueError(
                        f"{band.upper()} correlations have {c.shape[1]} values per source; "
                        f"{n_corr} are needed for {k} coefficients."
                    )
                if corr.dtype == object and np.isnan(c[:, 0]).any():
                    from ..io.gaia_xp import xp_band_arrays

                    xp_band_arrays(X, band)  # an all-NaN cell: the reader's message
                dense = plan.lower_correlation(c, scratch.dense[band][: len(c)])
                R[band] = self._checked_correlation(dense, k, X, idx)
            views = [p[idx] for p in packs] if isinstance(idx, slice) else None
            y, S = plan.normalise(bp[idx, :k], bp_e[idx, :k], R["bp"], rp[idx, :k], rp_e[idx, :k],
                                  R["rp"], out=views)
            values[idx] = y
            if views is None:
                for b, Sb in enumerate(S):
                    packs[b][idx] = Sb

        # Chunks run in parallel Python threads, each with one torch thread:
        # the per-row slice kernels are too small to split across threads
        # (2 OpenMP threads were 2-8x slower than 1 on the shared 2-core
        # machine), but whole chunks are independent (disjoint output rows).
        import torch

        from ..nn.threads import torch_threads

        starts = range(0, len(rows_ok), step)
        n_workers = min(torch.get_num_threads(), len(starts))
        with torch_threads(1):
            if n_workers > 1:
                with ThreadPoolExecutor(n_workers) as pool:
                    list(pool.map(one_chunk, starts))
            else:
                for start in starts:
                    one_chunk(start)
        missing = np.flatnonzero(~present)
        for p in packs:
            p[missing] = np.nan
        blocks = list(zip(plan.blocks, packs))
        if self.photometry:
            phot, phot_cov = self._photometry(X, n)
            values = np.hstack([values, phot])
            blocks.append((np.arange(m, m + phot.shape[1]), pack_lower(phot_cov)))
        return CovariantFeatures(values, blocks, self.feature_names_out_)

    def _checked_correlation(self, dense, k, X, idx):
        """Check (and optionally repair, in place) dense correlation matrices of one band.

        ``C = diag(e) R diag(e)`` is positive semi-definite exactly when ``R``
        is (errors > 0), so the check runs on ``R``. ``dense`` is ``(n, k,
        k)`` float32 with the lower triangle and unit diagonal filled (the
        upper triangle is not read).
        """
        if self.check_covariance == "ignore":
            return dense
        import torch

        # Batched float32 Cholesky of the lower triangle (torch reports
        # failures per matrix) with a jitter at the level of the archive's
        # float32 rounding on the diagonal; only the matrices that fail get
        # an eigen-decomposition.
        Rt = torch.from_numpy(dense)
        diagonal = Rt.diagonal(dim1=1, dim2=2)
        diagonal.fill_(float(np.float32(1.0) + np.float32(1e-5)))
        try:
            _, info = torch.linalg.cholesky_ex(Rt)
        finally:
            diagonal.fill_(1.0)
        failed = np.flatnonzero(info.numpy() > 0)
        if len(failed) == 0:
            return dense
        w, V = np.linalg.eigh(dense[failed].astype(np.float64), UPLO="L")
        neg_f = np.any(w < -1e-6, axis=1)
        if not neg_f.any():
            return dense
        if self.check_covariance == "raise":
            bad = (np.arange(idx.start, idx.stop) if isinstance(idx, slice) else idx)[failed[neg_f]]
            raise ValueError(
                f"XP coefficient covariance is not positive semi-definite for {len(bad)} "
                f"source(s) ({self._source_labels(X, bad)}); check the correlation order "
                "(lower triangle, row by row) or set check_covariance='repair'."
            )
        fixed = np.einsum("nij,nj,nkj->nik", V[neg_f], np.clip(w[neg_f], 0.0, None), V[neg_f])
        dense[failed[neg_f]] = np.tril(fixed)
        return dense

    def _photometry(self, X, n):
        """The 5 photometric features and their 5 x 5 covariance (n, 5, 5)."""
        cols = self._columns()
        keys = ["BP", "RP", "J", "H", "W1", "W2", "parallax", "parallax_error",
                "BP_flux_over_error", "RP_flux_over_error", "J_error", "H_error",
                "W1_error", "W2_error"]
        data, _, _ = to_frame_like(X, columns=[cols[k] for k in keys])
        import astropy.units as u

        def col(key, unit, kind):
            name = cols[key]
            if name not in data:
                raise missing_column_error(name, f"the XP photometric feature ({key})", list(data))
            return as_float_column(data[name], name, unit=unit, kind=kind)

        mag = {b: col(b, u.mag, "magnitude") for b in ("BP", "RP", "J", "H", "W1", "W2")}
        vals = {**mag, "parallax": col("parallax", u.mas, "parallax")}
        sig = {b: magnitude_error_from_flux_over_error(
            col(f"{b}_flux_over_error", None, "flux over error")) for b in ("BP", "RP")}
        sig.update({b: col(f"{b}_error", u.mag, "magnitude error") for b in ("J", "H", "W1", "W2")})
        sig["parallax"] = col("parallax_error", u.mas, "parallax error")
        inputs = ("BP", "RP", "J", "H", "W1", "W2", "parallax")
        for key in ("J", "H", "W1", "W2", "parallax"):
            check_non_negative(sig[key], cols[f"{key}_error"], "uncertainty")
        for key in inputs:
            bad = ~np.isfinite(vals[key]) | ~np.isfinite(sig[key])
            if bad.any():
                raise ValueError(
                    f"Column '{cols[key]}' (or its error) has {int(bad.sum())} NaN/inf value(s), "
                    f"first at row {int(np.flatnonzero(bad)[0])}; the XP photometric features "
                    "need finite photometry (or set photometry=False)."
                )
        scale = 10.0 ** (0.2 * mag["RP"])
        pmag = vals["parallax"] * scale
        colours = (("BP", "RP"), ("W1", "W2"), ("J", "H"), ("H", "W2"))
        feats = np.stack([mag[a] - mag[b] for a, b in colours] + [pmag], axis=1)
        # Jacobian d(features)/d(inputs), inputs ordered as `inputs`.
        J = np.zeros((n, 5, 7))
        for f, (a, b) in enumerate(colours):
            J[:, f, inputs.index(a)], J[:, f, inputs.index(b)] = 1.0, -1.0
        J[:, 4, 1] = 0.2 * np.log(10.0) * pmag  # d(plx 10^(0.2 RP)) / dRP
        J[:, 4, 6] = scale
        var_in = np.stack([sig[key] ** 2 for key in inputs], axis=1)
        return feats, np.einsum("nfi,ni,ngi->nfg", J, var_in, J)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.dict = True
        return tags
