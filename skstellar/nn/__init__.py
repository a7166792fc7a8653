"""Torch pieces shared by every skstellar network.

- :func:`build_mlp`, :func:`build_cnn1d` — configurable networks;
- :func:`mc_dropout_predict` — vectorised Monte Carlo dropout inference
  (dropout on, BatchNorm in eval mode);
- :class:`BaseNeuralRegressor` — the skorch-backed scikit-learn base class
  that gives ``predict(X, return_std=True)``, seeding and early stopping;
- losses (:class:`LinearWeightedMSELoss`);
- :mod:`~skstellar.nn.uncertainty` (input-covariance propagation, Gaussian
  likelihood), :mod:`~skstellar.nn.optimize` (batched, bounded per-object
  optimisers), :mod:`~skstellar.nn.threads` (torch's thread count for a
  block), :mod:`~skstellar.nn.training` (the one training core of every
  neural estimator) and :mod:`~skstellar.nn.input_variance` (the Jacobian
  input-variance likelihood as skorch hooks).
"""

from .base import BaseNeuralClassifier, BaseNeuralRegressor
from .builders import (
    ACTIVATIONS,
    build_cnn1d,
    build_mlp,
    cnn1d_output_length,
    count_parameters,
    make_activation,
)
from .lean import LeanNeuralNet
from .losses import LinearWeightedMSELoss
from .mc_dropout import MC_MODES, dropout_layers, mc_dropout_predict
from .optimize import (
    BatchedFitResult,
    BoxTransform,
    batched_lbfgs,
    batched_levenberg_marquardt,
    coupled_lbfgs,
    fit_batched,
    forward_jacobian,
    gauss_newton_covariance,
)
from .threads import torch_threads
from .uncertainty import TorchCovariance, batched_jacobian, gaussian_nll

__all__ = [
    "BatchedFitResult",
    "BoxTransform",
    "TorchCovariance",
    "batched_jacobian",
    "batched_lbfgs",
    "batched_levenberg_marquardt",
    "coupled_lbfgs",
    "fit_batched",
    "forward_jacobian",
    "gauss_newton_covariance",
    "gaussian_nll",
    "ACTIVATIONS",
    "BaseNeuralClassifier",
    "BaseNeuralRegressor",
    "LeanNeuralNet",
    "LinearWeightedMSELoss",
    "MC_MODES",
    "build_cnn1d",
    "build_mlp",
    "cnn1d_output_length",
    "count_parameters",
    "dropout_layers",
    "make_activation",
    "mc_dropout_predict",
    "torch_threads",
]
