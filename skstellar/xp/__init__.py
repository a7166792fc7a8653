"""Gaia XP "uncertain neural network" (method 4).

- :class:`UncertainNNRegressor` -- labels with model, input and excess
  uncertainties from features that carry covariances;
- the features come from :class:`skstellar.preprocessing.XPNormalizer`.
"""

from .regressor import UncertainNNRegressor

__all__ = ["UncertainNNRegressor"]
