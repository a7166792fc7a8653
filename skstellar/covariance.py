"""Features that carry their per-sample covariance through a Pipeline.

:class:`CovariantFeatures` holds a feature matrix ``values`` of shape
``(n_samples, n_features)`` together with each sample's feature covariance,
stored compactly as a block-diagonal matrix: every block covers a set of
feature columns and keeps, per sample, only the packed lower triangle
(diagonal included) in float32. For Gaia XP inputs (a 55 x 55 BP block, a
54 x 54 normalised-RP block and a 5 x 5 photometry block) that is 3,040
floats, 12 kB per source, instead of 53 kB for a dense 115 x 115 float32
matrix, so 10^5 sources fit in 1.2 GB.

Why a container and not skorch's ``SliceDict``
---------------------------------------------
The features and their covariance must stay row-aligned through every step:
a transformer that rescales features must rescale the covariance
(S^-1 Sigma S^-1), and cross-validation must split both the same way.
``CovariantFeatures`` behaves like a 2-D array for everything scikit-learn
does to ``X`` outside an estimator: it has ``shape`` and ``len``, slices by
rows (``X[idx]``, which is what ``_safe_indexing`` in ``GridSearchCV``,
``cross_val_score`` and ``train_test_split`` calls), and converts to the
feature values with ``np.asarray(X)``. So a covariance-aware estimator
(:class:`skstellar.xp.UncertainNNRegressor`) reads the covariance, while any
plain scikit-learn estimator placed after an XP transformer simply sees the
feature values. ``SliceDict`` would split correctly too, but it is a dict:
plain estimators cannot use it, and it has no notion of covariance blocks.

Columns that belong to no block have zero covariance (exact inputs).
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["CovariantFeatures", "pack_lower", "unpack_lower", "packed_size"]


def packed_size(k: int) -> int:
    """Length of the packed lower triangle (diagonal included) of a k x k matrix."""
    return k * (k + 1) // 2


def pack_lower(matrices, dtype=np.float32):
    """Pack the lower triangles (with diagonal) of a stack of symmetric matrices.

    Parameters
    ----------
    matrices : ndarray of shape (n, k, k)
    dtype : numpy dtype, default float32

    Returns
    -------
    ndarray of shape (n, k(k+1)/2)
        Row-by-row lower triangle, ``np.tril_indices(k)`` order.
    """
    m = np.asarray(matrices)
    if m.ndim != 3 or m.shape[1] != m.shape[2]:
        raise ValueError(f"Expected a stack of square matrices (n, k, k); got shape {m.shape}.")
    i, j = np.tril_indices(m.shape[1])
    return np.ascontiguousarray(m[:, i, j], dtype=dtype)


def unpack_lower(packed, k=None, dtype=np.float64):
    """Rebuild full symmetric matrices from packed lower triangles.

    Parameters
    ----------
    packed : ndarray of shape (n, k(k+1)/2)
    k : int, optional
        Matrix size (deduced from the packed length when omitted).
    dtype : numpy dtype, default float64

    Returns
    -------
    ndarray of shape (n, k, k)
    """
    packed = np.asarray(packed)
    if k is None:
        k = int(round((np.sqrt(8 * packed.shape[1] + 1) - 1) / 2))
    if packed.shape[1] != packed_size(k):
        raise ValueError(
            f"Packed length {packed.shape[1]} does not match a {k} x {k} matrix "
            f"({packed_size(k)} values)."
        )
    out = np.zeros((packed.shape[0], k, k), dtype=dtype)
    i, j = np.tril_indices(k)
    out[:, i, j] = packed
    out[:, j, i] = packed
    return out


def _rows_key(key, n):
    """Normalise a row index; reject column indexing."""
    if isinstance(key, tuple):
        # sklearn's _array_indexing calls X[key, ...]
        rest = [k for k in key[1:]
                if k is not Ellipsis and not (isinstance(k, slice) and k == slice(None))]
        if rest:
            raise IndexError(
                "CovariantFeatures can only be indexed by rows; select feature "
                "columns with CovariantFeatures.select_features(columns)."
            )
        key = key[0]
    if isinstance(key, numbers.Integral):
        return np.array([int(key)])
    if isinstance(key, slice):
        return key
    key = np.asarray(key)
    if key.dtype == bool:
        if key.shape != (n,):
            raise IndexError(f"Boolean row mask of shape {key.shape} for {n} rows.")
        return np.flatnonzero(key)
    return key.astype(np.intp, copy=False)


class CovariantFeatures:
    """A feature matrix with a per-sample block-diagonal covariance.

    Parameters
    ----------
    values : array-like of shape (n_samples, n_features)
        Feature values (stored as float64).
    blocks : sequence of (columns, packed) pairs, default=()
        ``columns`` is an int array of the ``k`` feature columns a block
        covers; ``packed`` the per-sample packed lower triangle of that
        block, shape ``(n_samples, k(k+1)/2)`` (stored as float32).
        Blocks must not overlap; columns in no block are exact.
    feature_names : sequence of str, optional

    Attributes
    ----------
    shape : tuple
        ``(n_samples, n_features)``, as for an array.

    Notes
    -----
    ``np.asarray(X)`` gives the values only, so scikit-learn estimators that
    know nothing about uncertainties can follow an XP transformer.
    """

    ndim = 2

    def __init__(self, values, blocks=(), feature_names=None):
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(
                f"values must be 2-D (n_samples, n_features); got shape {values.shape}.")
        n, d = values.shape
        seen = np.zeros(d, dtype=bool)
        clean = []
        for cols, packed in blocks:
            cols = np.asarray(cols, dtype=np.intp).ravel()
            packed = np.asarray(packed, dtype=np.float32)
            k = len(cols)
            if packed.shape != (n, packed_size(k)):
                raise ValueError(
                    f"A covariance block over {k} columns needs packed shape "
                    f"({n}, {packed_size(k)}); got {packed.shape}."
                )
            if k and (cols.min() < 0 or cols.max() >= d):
                raise ValueError(f"Block columns {cols} outside 0..{d - 1}.")
            if seen[cols].any():
                raise ValueError("Covariance blocks must not overlap.")
            seen[cols] = True
            clean.append((cols, packed))
        self.values = values
        self.blocks = tuple(clean)
        self.feature_names = (None if feature_names is None
                              else np.asarray(feature_names, dtype=object))
        if self.feature_names is not None and len(self.feature_names) != d:
            raise ValueError(f"{len(self.feature_names)} feature names for {d} features.")

    # -------------------------------------------------------- array protocol
    @property
    def shape(self):
        """Shape ``(n_samples, n_features)`` of the values."""
        return self.values.shape

    @property
    def dtype(self):
        """Dtype of the values (float64)."""
        return self.values.dtype

    def __len__(self):
        return self.values.shape[0]

    def __array__(self, dtype=None, copy=None):
        if dtype is None:
            return self.values if not copy else self.values.copy()
        return self.values.astype(dtype, copy=bool(copy) if copy is not None else True)

    def __getitem__(self, key):
        rows = _rows_key(key, len(self))
        return CovariantFeatures(
            self.values[rows],
            [(cols, packed[rows]) for cols, packed in self.blocks],
            self.feature_names,
        )

    def __repr__(self):
        sizes = ", ".join(str(len(c)) for c, _ in self.blocks) or "none"
        return (
            f"CovariantFeatures(n_samples={self.shape[0]}, n_features={self.shape[1]}, "
            f"covariance blocks: {sizes})"
        )

    @property
    def nbytes(self):
        """Memory held by values and covariance blocks, in bytes."""
        return self.values.nbytes + sum(p.nbytes for _, p in self.blocks)

    # ------------------------------------------------------------ builders
    @classmethod
    def from_dense(cls, values, covariance, feature_names=None):
        """One block over all features from dense ``(n, d, d)`` covariances."""
        values = np.asarray(values, dtype=np.float64)
        return cls(values, [(np.arange(values.shape[1]), pack_lower(covariance))], feature_names)

    @classmethod
    def from_variance(cls, values, variance, feature_names=None):
        """Independent features with per-sample variances ``(n, d)`` (1 x 1 blocks)."""
        values = np.asarray(values, dtype=np.float64)
        variance = np.asarray(variance, dtype=np.float32)
        if variance.shape != values.shape:
            raise ValueError(f"variance shape {variance.shape} != values shape {values.shape}.")
        return cls(values,
                   [(np.array([j]), variance[:, j : j + 1]) for j in range(values.shape[1])],
                   feature_names)

    @classmethod
    def hstack(cls, parts):
        """Concatenate feature columns of several CovariantFeatures (blocks kept)."""
        parts = list(parts)
        n = len(parts[0])
        values, blocks, names, offset = [], [], [], 0
        for p in parts:
            if len(p) != n:
                raise ValueError("All parts must have the same number of rows.")
            values.append(p.values)
            blocks.extend((cols + offset, packed) for cols, packed in p.blocks)
            names.append(p.feature_names if p.feature_names is not None
                         else np.array([f"x{offset + j}" for j in range(p.shape[1])], dtype=object))
            offset += p.shape[1]
        return cls(np.hstack(values), blocks, np.concatenate(names))

    # ------------------------------------------------------------- queries
    def block_matrices(self, b, rows=slice(None), dtype=np.float64):
        """Dense ``(m, k, k)`` matrices of block ``b`` for the selected rows."""
        cols, packed = self.blocks[b]
        return unpack_lower(packed[rows], len(cols), dtype=dtype)

    def variance(self):
        """Per-sample feature variances, shape ``(n_samples, n_features)``."""
        var = np.zeros(self.shape, dtype=np.float64)
        for cols, packed in self.blocks:
            diag = packed_size(np.arange(1, len(cols) + 1)) - 1  # packed positions of (i, i)
            var[:, cols] = packed[:, diag]
        return var

    def covariance(self, rows=slice(None)):
        """Dense ``(m, d, d)`` covariance of the selected rows (small selections only)."""
        idx = np.arange(len(self))[rows]
        d = self.shape[1]
        out = np.zeros((len(idx), d, d), dtype=np.float64)
        for b, (cols, _) in enumerate(self.blocks):
            out[:, cols[:, None], cols[None, :]] = self.block_matrices(b, idx)
        return out

    # ---------------------------------------------------------- transforms
    def affine(self, offset, scale):
        """Features ``(values - offset) / scale`` with covariance ``S^-1 Sigma S^-1``.

        Parameters
        ----------
        offset, scale : array-like of shape (n_features,)

        Returns
        -------
        CovariantFeatures
        """
        offset = np.asarray(offset, dtype=np.float64)
        scale = np.asarray(scale, dtype=np.float64)
        if offset.shape != (self.shape[1],) or scale.shape != (self.shape[1],):
            raise ValueError("offset and scale must have one value per feature.")
        if np.any(scale == 0) or not np.all(np.isfinite(scale)):
            raise ValueError("scale must be finite and non-zero.")
        blocks = []
        for cols, packed in self.blocks:
            i, j = np.tril_indices(len(cols))
            inv = 1.0 / scale[cols]
            blocks.append((cols, (packed * (inv[i] * inv[j])[None, :]).astype(np.float32)))
        return CovariantFeatures((self.values - offset) / scale, blocks, self.feature_names)

    def select_features(self, columns):
        """Keep some feature columns (blocks restricted accordingly)."""
        columns = np.asarray(columns, dtype=np.intp).ravel()
        new_pos = -np.ones(self.shape[1], dtype=np.intp)
        new_pos[columns] = np.arange(len(columns))
        blocks = []
        for cols, packed in self.blocks:
            keep = new_pos[cols] >= 0
            if not keep.any():
                continue
            if keep.all():
                blocks.append((new_pos[cols], packed))
                continue
            local = np.flatnonzero(keep)  # increasing, so row ti >= column tj stays lower
            ti, tj = np.tril_indices(len(local))
            blocks.append((new_pos[cols[local]], packed[:, packed_size(local[ti]) + local[tj]]))
        names = None if self.feature_names is None else self.feature_names[columns]
        return CovariantFeatures(self.values[:, columns], blocks, names)
