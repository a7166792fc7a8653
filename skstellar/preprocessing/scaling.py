"""Feature scaling that keeps per-sample covariances consistent.

:class:`CovariantStandardScaler` z-scores features like scikit-learn's
``StandardScaler`` and transforms each sample's covariance with them:
``Sigma_z = S^-1 Sigma S^-1`` for ``z = (x - mu) / s``, ``S = diag(s)``. It
accepts :class:`~skstellar.covariance.CovariantFeatures` (covariance kept) and
plain arrays (no covariance), so it can sit between
:class:`~skstellar.preprocessing.XPNormalizer` and any estimator.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._validation import check_numeric_input
from ..covariance import CovariantFeatures
from ..parameters import validate_parameters

__all__ = ["CovariantStandardScaler"]


class CovariantStandardScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator,
                              auto_wrap_output_keys=None):
    """Standardise features and their per-sample covariance together.

    Parameters
    ----------
    with_mean : bool, default=True
        Subtract the mean of each feature.
    with_std : bool, default=True
        Divide by the standard deviation of each feature (constant features
        keep scale 1, as in ``StandardScaler``).

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
    scale_ : ndarray of shape (n_features,)
    n_features_in_ : int

    Notes
    -----
    NaN/inf feature values raise (sklearn's message). Output is a
    ``CovariantFeatures`` when the input is one, else an ndarray.
    """

    #: Allowed hyperparameter values (checked by ``fit``).
    _parameter_constraints = {"with_mean": ["boolean"], "with_std": ["boolean"]}

    def __init__(self, *, with_mean=True, with_std=True):
        self.with_mean = with_mean
        self.with_std = with_std

    def _values(self, X, reset):
        values = X.values if isinstance(X, CovariantFeatures) else X
        check_numeric_input(values)
        return validate_data(self, values, reset=reset, dtype=np.float64)

    def fit(self, X, y=None):
        """Learn feature means and standard deviations.

        Parameters
        ----------
        X : CovariantFeatures or array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        validate_parameters(self)
        values = self._values(X, reset=True)
        d = values.shape[1]
        self.mean_ = values.mean(axis=0) if self.with_mean else np.zeros(d)
        if self.with_std:
            std = values.std(axis=0)
            # Near-constant features (relative to their size) keep scale 1.
            size = np.maximum(np.abs(values).max(axis=0), 1.0)
            tiny = std <= 10 * np.finfo(np.float64).eps * size
            self.scale_ = np.where(tiny, 1.0, std)
        else:
            self.scale_ = np.ones(d)
        return self

    def transform(self, X):
        """Scale features (and covariance, for CovariantFeatures input)."""
        check_is_fitted(self, "mean_")
        values = self._values(X, reset=False)
        if isinstance(X, CovariantFeatures):
            return X.affine(self.mean_, self.scale_)
        return (values - self.mean_) / self.scale_

    def inverse_transform(self, X):
        """Undo the scaling (covariance too)."""
        check_is_fitted(self, "mean_")
        if isinstance(X, CovariantFeatures):
            return X.affine(-self.mean_ / self.scale_, 1.0 / self.scale_)
        return validate_data(self, X, reset=False, dtype=np.float64) * self.scale_ + self.mean_
