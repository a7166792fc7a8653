"""The photo-D moments network (the "student" of the Bayesian teacher) and its sigma_B network.

Mrakovčić, Ivezić & Palaversa (2025) replace the Bayesian photometric-distance
computation by a neural network trained on a few thousand Bayes-labelled
stars (their Sects. 2.3-2.6 and 3.2). This module holds
:class:`PhotoDNetwork`, the moments network (Jeffrey & Wandelt 2020) with its
optional secondary network for the teacher's posterior standard deviation
sigma_B (total uncertainty ``sqrt(sigma_NN^2 + sigma_B^2)``, Eq. 3), its
losses :class:`MomentLoss` (Eqs. 1-2) and :class:`WeightedMSELoss` (Sect.
2.6), and the paper's constants (:data:`PAPER_HIDDEN_LAYER_SIZES`,
:data:`PAPER_ACTIVATIONS`, :data:`PAPER_LOSS_SCALES`,
:data:`PHOTOD_INPUT_COLUMNS`, :data:`TARGET_NAMES`).

Targets are ordered ``("Mr", "FeH", "Ar")`` everywhere, the order of
:meth:`skstellar.photod.teacher.BayesianPhotoD.predict`, so that
``PhotoDNetwork().fit(catalog, *teacher.predict(catalog, return_std=True))``
trains both networks on the teacher's means and standard deviations.
"""

from __future__ import annotations

import copy

import astropy.units as u
import numpy as np
import pandas as pd
import torch
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch.callbacks import Callback
from torch import nn

from .._validation import (
    as_float_column,
    check_finite_columns,
    column_names,
    is_named_input,
    missing_column_error,
    to_frame_like,
)
from ..columns import PHOTOD_INPUT_COLUMNS, PHOTOD_TARGETS
from ..nn.base import BaseNeuralRegressor
from ..nn.builders import ACTIVATION, build_mlp
from ..nn.lean import LeanNeuralNet
from ..nn.threads import training_threads
from ..nn.training import (
    SEED_MODULUS,
    merge_callbacks,
    seed_from,
    seeded_split,
    train_net,
)
from ..parameters import (
    COLUMN_NAMES,
    LAYER_SIZES,
    Interval,
    Options,
    Rule,
    SequenceOf,
    validate_parameters,
)

__all__ = [
    "PhotoDNetwork",
    "StudentWeights",
    "MomentLoss",
    "WeightedMSELoss",
    "PAPER_ACTIVATIONS",
    "PAPER_HIDDEN_LAYER_SIZES",
    "PAPER_LOSS_SCALES",
    "PHOTOD_INPUT_COLUMNS",
    "FAST_SCHEDULE",
    "ROBUST_FAST_SCHEDULE",
    "ROBUST_EMA_SCHEDULE",
    "QUICK_SCHEDULE",
    "TARGET_NAMES",
]

#: Targets, in the order of :meth:`BayesianPhotoD.predict`: M_r [mag], [Fe/H] [dex], A_r [mag].
TARGET_NAMES = PHOTOD_TARGETS
#: Hidden-layer widths of the tuned architecture (Sect. 3.2).
PAPER_HIDDEN_LAYER_SIZES = (45, 45, 42, 33, 36)
#: Their activations (Sect. 3.2).
PAPER_ACTIVATIONS = ("gelu", "softsign", "softsign", "sigmoid", "gelu")
#: Loss scales s_j of Eq. 2 (weights 1 / s_j^2) in :data:`TARGET_NAMES` order:
#: 0.1 mag for M_r, 0.1 dex for [Fe/H], 0.02 mag for A_r.
PAPER_LOSS_SCALES = (0.1, 0.1, 0.02)

#: A shorter training recipe (an option; the paper's schedule stays the default): one
#: run, batch 256, <= 300 epochs (64 for the sigma_B network), early-stopping patience 40.
#: At 400,000 simulated stars / 10,000 labelled it gave NN-vs-Bayes robust std 0.081 /
#: 0.059 / 0.026 (M_r / [Fe/H] / A_r; Table 1: 0.123 / 0.110 / 0.048) after 364 epochs
#: in all instead of the paper's ~1,800 (docs/photod.md, "Speed"). Use as
#: ``PhotoDNetwork(**QUICK_SCHEDULE)``.
QUICK_SCHEDULE = {"n_runs": 1, "batch_size": 256, "max_epochs": 300,
                  "secondary_max_epochs": 64, "patience": 40}
#: :data:`QUICK_SCHEDULE` with batches of 512, Adam's learning rate doubled to 2e-3 and
#: early-stopping patience as long as the training (an option): the same epochs cost ~1.5x
#: less CPU (an epoch is dominated by a fixed cost per optimiser step: 30 steps of 256 rows
#: ~33 ms, 15 of 512 ~22 ms on one core), at the same NN-vs-Bayes accuracy on a selection
#: catalogue (another seed than the benchmark's; docs/photod.md, "Speed"). The moments loss
#: is quartic in the residual, so its validation value is noisy; a patience of 40 stopped
#: some runs early (undertrained); the full 300 epochs run and the best epoch is kept.
#: Use as ``PhotoDNetwork(**FAST_SCHEDULE)``.
FAST_SCHEDULE = {**QUICK_SCHEDULE, "batch_size": 512, "lr": 2e-3, "patience": 300}
#: :data:`FAST_SCHEDULE` with two runs pruned after 60 epochs (an option): the run with the
#: lower validation loss at epoch 60 is continued to 300, the other dropped, for ~1.2x the
#: moments-network epochs of one run (360 instead of 300) instead of the 2x of best-of-2
#: (``prune_after`` chosen on the selection catalogue; docs/photod.md, "Speed").
#: Use as ``PhotoDNetwork(**ROBUST_FAST_SCHEDULE)``.
ROBUST_FAST_SCHEDULE = {**FAST_SCHEDULE, "n_runs": 2, "prune_after": 60}
#: :data:`ROBUST_FAST_SCHEDULE` whose kept run ends with the moving average of its weights
#: over epochs (``ema_decay=0.8``, ~5 epochs wide) instead of its best-validation epoch (an
#: option; same epochs and cost). Chosen on selection catalogues (docs/photod.md, "Speed"):
#: the validation loss is a noisy proxy for M_r accuracy and single epochs scatter, the
#: average damps that. All six benchmark rows at Table 1, but on selection catalogues a
#: single run still ends slightly above Table 1 for M_r in 4 of 24 runs.
#: Use as ``PhotoDNetwork(**ROBUST_EMA_SCHEDULE)``.
ROBUST_EMA_SCHEDULE = {**ROBUST_FAST_SCHEDULE, "ema_decay": 0.8}
#: Weight initialisations: Keras' default (the paper's framework) or torch's.
_INITS = ("glorot_uniform", "torch")
#: Rows of the validation split evaluated in one forward pass during training.
_VALID_BATCH = 16384
#: Inner training loops: skstellar's lean skorch loop with fused Adam, or skorch's own.
_TRAINING_LOOPS = ("lean", "skorch")


class _TrainingPaused(Exception):
    """Raised by :class:`_PauseAfter` to leave ``fit`` with every callback's state intact."""

    def __init__(self, net):
        super().__init__("training paused")
        self.net = net


class _PauseAfter(Callback):
    """Interrupt training after ``epochs`` epochs (the last callback of a pruned run).

    Leaving by an exception skips ``on_train_end``, so early stopping (its
    misses and best weights), the learning-rate schedule, the optimiser and
    the batch-shuffling generator keep their state and ``net.fit_loop``
    continues the run exactly as if it had not been interrupted.
    """

    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epochs:
            raise _TrainingPaused(net)


class _CosineTail(Callback):
    """Anneal the learning rate to 0 on a half cosine over the last ``epochs`` of a run.

    ``lr0`` is the learning rate when the tail starts (after any plateau
    reductions); the rate is set at the start of every tail epoch, so a
    plateau schedule has no effect there. The state lives in the callback, so
    a paused and resumed run anneals identically.
    """

    def __init__(self, epochs, max_epochs):
        self.epochs = int(epochs)
        self.max_epochs = int(max_epochs)

    def on_train_begin(self, net, **kwargs):
        self.lr0_ = None  # (a resumed run continues its fit loop without a new train begin)

    def on_epoch_begin(self, net, **kwargs):
        k = len(net.history) - 1 - (self.max_epochs - self.epochs)  # 0 at the tail's first
        if k < 0:
            return
        groups = net.optimizer_.param_groups
        if self.lr0_ is None:
            self.lr0_ = float(groups[0]["lr"])
        lr = self.lr0_ * 0.5 * (1.0 + np.cos(np.pi * (k + 0.5) / self.epochs))
        for group in groups:
            group["lr"] = lr


class _WeightEMA(Callback):
    """Exponential moving average over epochs of a net's trainable parameters.

    Starts at the first epoch's weights; :meth:`apply` loads it into the module.
    The state lives in the callback, so a paused and resumed run averages identically.
    """

    def __init__(self, decay):
        self.decay = float(decay)

    def on_train_begin(self, net, **kwargs):
        self.average_ = None  # (a resumed run continues its fit loop without a new train begin)

    def on_epoch_end(self, net, **kwargs):
        with torch.no_grad():
            params = [p.detach() for p in net.module_.parameters()]
            if self.average_ is None:
                self.average_ = [p.clone() for p in params]
            else:
                for a, p in zip(self.average_, params):
                    a.mul_(self.decay).add_(p, alpha=1.0 - self.decay)

    def apply(self, net):
        """Load the averaged parameters into ``net.module_``."""
        with torch.no_grad():
            for p, a in zip(net.module_.parameters(), self.average_):
                p.copy_(a)


# --------------------------------------------------------------------- Losses
class _TargetWeightedLoss(nn.Module):
    """Base of the photo-D losses: a sum over targets with weights w_j > 0 (None: all 1)."""

    def __init__(self, weights=None):
        super().__init__()
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64).reshape(-1)
            if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w <= 0):
                raise ValueError(f"Loss weights must be finite and > 0, got {weights!r}.")
            self.register_buffer("weights", torch.as_tensor(w, dtype=torch.float32))
        else:
            self.weights = None

    def _weighted_sum(self, per_target: torch.Tensor) -> torch.Tensor:
        """``sum_j w_j per_target_j``; raises if the weights do not match the targets."""
        w = self.weights if self.weights is not None else torch.ones_like(per_target)
        if w.numel() != per_target.numel():
            raise ValueError(f"{type(self).__name__} has {w.numel()} weight(s) but there are "
                             f"{per_target.numel()} target(s).")
        return torch.sum(w.to(per_target) * per_target)

    def extra_repr(self) -> str:
        return "weights=None" if self.weights is None else f"weights={self.weights.tolist()}"


class MomentLoss(_TargetWeightedLoss):
    """Weighted moment loss of the photo-D moments network (Eqs. 1-2).

    For every target j (mean mu_j and standard deviation sigma_j predicted,
    value t_j given), with r = t_j - mu_j,

    ``L_j = mean_i( r^2 + (r^2 - sigma_j^2)^2 )``,   ``L = sum_j w_j L_j``

    (Mrakovčić et al. 2025, Sect. 2.4; Jeffrey & Wandelt 2020). The first
    term makes mu the conditional mean; the second makes sigma^2 the
    conditional mean of r^2, so sigma is the expected scatter of t around
    mu. Only sigma^2 enters, so the network's sigma outputs are sign-free:
    read ``|sigma|``. The paper's weights are ``w = 1 / (0.1^2, 0.1^2,
    0.02^2)`` for (M_r, [Fe/H], A_r) (see :data:`PAPER_LOSS_SCALES`).

    Parameters
    ----------
    weights : sequence of float or None, default=None
        w_j, one per target (> 0, units of 1 / target^2); None gives 1 for
        every target.

    Notes
    -----
    Called as ``loss(y_pred, y_true)`` with ``y_pred`` of shape
    (n, 2 n_targets) -- the means then the sigmas -- and ``y_true`` of shape
    (n, n_targets) (or (n,) for one target). Returns a scalar.
    """

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """The moment loss of ``y_pred`` given ``y_true`` (a scalar tensor)."""
        if y_true.ndim == 1:
            y_true = y_true[:, None]
        n_targets = y_true.shape[1]
        if y_pred.ndim != 2 or y_pred.shape != (y_true.shape[0], 2 * n_targets):
            raise ValueError(
                f"MomentLoss needs predictions of shape (n, 2 n_targets) = "
                f"({y_true.shape[0]}, {2 * n_targets}) (means then sigmas), got "
                f"{tuple(y_pred.shape)}."
            )
        mu, sigma = y_pred[:, :n_targets], y_pred[:, n_targets:]
        r2 = (y_true.to(mu.dtype) - mu) ** 2
        per_target = torch.mean(r2 + (r2 - sigma * sigma) ** 2, dim=0)
        return self._weighted_sum(per_target)


class WeightedMSELoss(_TargetWeightedLoss):
    """Weighted sum over targets of the mean squared error.

    ``L = sum_j w_j mean_i (y_pred_ij - y_true_ij)^2`` -- the loss of the
    secondary (sigma_B) network of Mrakovčić et al. (2025, Sect. 2.6), with
    the same weights as :class:`MomentLoss`.

    Parameters
    ----------
    weights : sequence of float or None, default=None
        w_j, one per target (> 0); None gives 1 for every target.
    """

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Weighted mean squared error (a scalar tensor); see the class docstring."""
        if y_true.ndim == 1:
            y_true = y_true[:, None]
        if y_pred.shape != y_true.shape:
            raise ValueError(
                f"Prediction shape {tuple(y_pred.shape)} != target shape {tuple(y_true.shape)}."
            )
        per_target = torch.mean((y_pred - y_true.to(y_pred.dtype)) ** 2, dim=0)
        return self._weighted_sum(per_target)


# --- Fixed affine maps (input standardisation, output scaling) kept in the module
class _Affine(nn.Module):
    """``x * scale + shift`` with fixed (non-trained) per-column buffers."""

    def __init__(self, scale, shift):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale), dtype=torch.float32))
        self.register_buffer("shift", torch.as_tensor(np.asarray(shift), dtype=torch.float32))

    def forward(self, x):
        return x * self.scale + self.shift

    def extra_repr(self):
        return f"n={self.scale.numel()}, fixed"


#: softplus(_SOFTPLUS_ONE) = 1: the positive sigma head starts at one target scale.
_SOFTPLUS_ONE = float(np.log(np.e - 1.0))
#: Output maps of the sigma outputs.
_SIGMA_ACTIVATIONS = ("linear", "softplus")


class _MomentHead(_Affine):
    """Map the last layer's 2 L numbers to (mu, sigma) in target units (fixed buffers).

    ``mu = shift + scale * z_mu``; ``sigma = scale * (1 + z_sigma)`` (linear,
    the paper's output, sign-free) or ``scale * softplus(z_sigma + c)`` with
    softplus(c) = 1 (positive). Both start sigma near ``scale`` for small z.
    """

    def __init__(self, scale, shift, sigma_activation="linear"):
        super().__init__(scale, shift)
        self.sigma_activation = sigma_activation

    def forward(self, z):
        n = self.scale.numel()
        mu = z[:, :n] * self.scale + self.shift
        zs = z[:, n:]
        if self.sigma_activation == "softplus":
            sigma = self.scale * nn.functional.softplus(zs + _SOFTPLUS_ONE)
        else:
            sigma = self.scale * (zs + 1.0)
        return torch.cat([mu, sigma], dim=1)

    def extra_repr(self):
        return f"n_targets={self.scale.numel()}, sigma={self.sigma_activation}"


def _mean_scale(a, standardize=True):
    """Column means and standard deviations (1 where constant); 0 and 1 without standardize."""
    if not standardize:
        return np.zeros(a.shape[1]), np.ones(a.shape[1])
    sd = a.std(axis=0)
    return a.mean(axis=0), np.where(sd > 0, sd, 1.0)


class StudentWeights:
    """Trained weights of a :class:`PhotoDNetwork`, to warm-start another one.

    A plain container (numpy arrays, no torch modules), so it pickles and
    deep-copies cheaply and survives ``sklearn.base.clone`` as a parameter
    value (``PhotoDNetwork(init_weights=...)``). Made by
    :meth:`PhotoDNetwork.export_weights`.

    Parameters
    ----------
    moments : dict of str to ndarray
        ``state_dict`` of the moments network's module (fixed scalings
        included).
    secondary : dict of str to ndarray or None
        The same for the sigma_B network (None when there is none).
    input_columns : sequence of str
        The inputs the weights were trained on, in order.
    target_names : sequence of str
        The targets, in order.
    """

    def __init__(self, moments, secondary, input_columns, target_names):
        self.moments = {k: np.array(v) for k, v in moments.items()}
        self.secondary = None if secondary is None else {k: np.array(v)
                                                         for k, v in secondary.items()}
        self.input_columns = tuple(input_columns)
        self.target_names = tuple(target_names)

    def __repr__(self):
        n = sum(int(v.size) for v in self.moments.values())
        return (f"StudentWeights({n} moments-network numbers, secondary="
                f"{self.secondary is not None}, targets={self.target_names})")


def _load_weights(module, state, what):
    """Load a StudentWeights state into ``module``; a mismatch is a ValueError."""
    try:
        module.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    except RuntimeError as exc:
        raise ValueError(
            f"init_weights do not fit the {what}: the architecture (hidden_layer_sizes, "
            f"standardize, sigma_activation) must be the one they were trained with. {exc}"
        ) from exc


# ------------------------------------------------------------------ Estimator
class PhotoDNetwork(BaseNeuralRegressor):
    """Photo-D moments network: M_r, [Fe/H], A_r and their uncertainties from LSST photometry.

    The student network of Mrakovčić, Ivezić & Palaversa (2025), trained on
    the posterior means (and standard deviations) of the Bayesian photo-D
    method (:class:`~skstellar.photod.teacher.BayesianPhotoD`):

    * inputs (Sect. 2.3): r, u-g, g-r, r-i, i-z and their five errors [mag];
    * architecture (Sect. 3.2): ``10 -> 45 GELU -> 45 Softsign -> 42
      Softsign -> 33 Sigmoid -> 36 GELU -> 6 linear``, the six outputs being
      a mean mu and a standard deviation sigma_NN for each target (a moments
      network, Sect. 2.3);
    * loss (Sect. 2.4, :class:`MomentLoss`):
      ``sum_j w_j mean[(t - mu)^2 + ((t - mu)^2 - sigma^2)^2]`` with
      ``w = 1/0.1^2, 1/0.1^2, 1/0.02^2`` for M_r, [Fe/H], A_r;
    * training (Sect. 3.2): Adam with learning rate 1e-3, batch 1024, up to
      1024 epochs, early stopping after 100 epochs without validation
      improvement, learning rate x 0.9 on plateaus (Sect. 2.5), two complete
      runs of which the one with the lower validation loss is kept; 75/25
      training/validation split of the labelled stars (Sect. 2.1);
    * secondary network (Sects. 2.6, 3.2), trained when ``fit`` gets
      ``sigma_b``: the same hidden layers with three linear outputs, the
      weighted MSE on the teacher's posterior standard deviations sigma_B
      (:class:`WeightedMSELoss`, same weights), up to 256 epochs, one run,
      the same early stopping; ``predict(X, return_std=True)`` then returns
      ``sqrt(sigma_NN^2 + sigma_B^2)`` (Eq. 3).

    sigma_NN is the scatter of the *teacher's* estimate around the network's
    (NN versus Bayes); sigma_B is the teacher's own posterior width. Their
    quadrature sum is the uncertainty relative to the truth, assuming the two
    are uncorrelated (the paper measures correlations of 0.05-0.2).

    Choices where the paper is silent (documented defaults):

    * the authors used Keras (their Software section), so Keras' defaults
      stand in where the text says nothing: Glorot-uniform weights and zero
      biases (``init``); ``lr_patience=10`` epochs for ReduceLROnPlateau;
      early stopping counts any decrease of the validation loss as an
      improvement (``min_delta=0``);
    * ``standardize=True``: fixed (non-trained) layers inside the module
      z-score the inputs with the training rows' means and standard
      deviations, and map the last layer's outputs to target units, each
      mean as ``m_j + s_j z`` and each sigma as ``s_j (1 + z')`` (m_j, s_j:
      the training targets' mean and standard deviation; sigma_B as
      ``m^B_j + s^B_j z''``). The output layer stays linear and the loss is
      Eq. 2 in physical units; only the starting point (means at m_j, sigmas
      at s_j, never at the sigma = 0 saddle of Eq. 1) and the step scales
      change. ``standardize=False`` trains on raw magnitudes;
    * ``sigma_activation="linear"`` (the paper's linear output) reads the
      sigma outputs as ``|sigma|``, since Eq. 1 only sees sigma^2. A linear
      sigma can change sign across the input space, and stars near such a
      crossing get |sigma_NN| close to 0; the total uncertainty, dominated
      by sigma_B, is unaffected, but NN-only z-scores get heavy tails.
      ``"softplus"`` keeps sigma > 0 by construction;
    * the secondary network uses the same learning-rate schedule, and its
      sigma_B predictions are clipped at 0 (its output is linear);
    * predictions run in float64 on the CPU (training in float32), so a
      star's output does not depend on the batch it is predicted in.

    Parameters
    ----------
    hidden_layer_sizes : sequence of int, default=(45, 45, 42, 33, 36)
        Widths of the hidden layers (the paper's, Sect. 3.2).
    activation : str or sequence of str, default=("gelu", "softsign", "softsign", "sigmoid", "gelu")
        Hidden activation(s), one for all layers or one per layer (see
        :func:`skstellar.nn.make_activation`).
    input_columns : sequence of str or None, default=PHOTOD_INPUT_COLUMNS
        Names of the ten inputs in the paper's order, ``("rmag", "ug", "gr",
        "ri", "iz", "rErr", "ugErr", "grErr", "riErr", "izErr")`` [mag]. Named
        input (DataFrame, astropy Table, dict) is read by these names (other
        columns are ignored; astropy Quantities are converted to mag); a
        plain 2-D array must hold exactly these columns in this order. None
        uses every column of ``X`` as given (generic features, any number).
    loss_scales : sequence of float or None, default=(0.1, 0.1, 0.02)
        Scales s_j of Eq. 2 in the target units, one per target in
        :data:`TARGET_NAMES` order (weights 1 / s_j^2): 0.1 mag for M_r, 0.1
        dex for [Fe/H], 0.02 mag for A_r. None weights every target by 1
        (any number of targets).
    standardize : bool, default=True
        Standardise inputs and scale outputs inside the module (see above).
    sigma_activation : {"linear", "softplus"}, default="linear"
        Map of the sigma_NN outputs: linear, read as ``|sigma|`` (paper), or
        ``s_j softplus(z' + c)`` with softplus(c) = 1 (always positive).
    init : {"glorot_uniform", "torch"}, default="glorot_uniform"
        Weight initialisation of the Linear layers: Keras' default (the
        paper's framework; zero biases) or torch's own.
    n_runs : int, default=2
        Complete training runs of the moments network (different seeded
        initialisations and shuffles, the same validation split); the run
        with the lowest validation loss is kept (the paper's 2).
    prune_after : int or None, default=None
        Successive halving of the runs (an option; None: every run trains
        to the end, the paper's recipe): each of the ``n_runs`` runs first
        trains ``prune_after`` epochs; only the run with the lowest
        validation loss so far is continued (exactly as if uninterrupted:
        optimiser, schedule, early stopping and shuffling keep their state)
        and kept. Costs one run plus ``(n_runs - 1) * prune_after`` epochs.
        Needs a validation split. The runs' seeds are those of the unpruned
        runs.
    anneal_epochs : int or None, default=None
        Learning-rate annealing at the end of each moments-network run (an
        option; None: the paper's plateau schedule throughout): over the
        last ``anneal_epochs`` of ``max_epochs`` the learning rate follows a
        half cosine from its value when the tail starts (after any plateau
        reductions) to 0, one value per epoch (the plateau schedule has no
        effect there). For fixed-length runs: a run that early stopping
        ends before the tail is not annealed; more than ``max_epochs``
        anneals the whole run. The sigma_B network is not annealed.
    ema_decay : float in (0, 1) or None, default=None
        Weight averaging (an option; None: the paper's, each run keeps its
        best-validation epoch, or its last without early stopping): each
        moments-network run keeps the exponential moving average over epochs
        of its weights, ``w_avg <- ema_decay * w_avg + (1 - ema_decay) *
        w_epoch`` (from the first epoch; ~``1 / (1 - ema_decay)`` epochs
        wide), instead of its best epoch; its entry in ``run_valid_losses_``
        is the averaged weights' validation loss. Damps the epoch-to-epoch
        noise of the final weights. The sigma_B network is not averaged.
    secondary_max_epochs : int, default=256
        Maximum epochs of the sigma_B network (the paper's 256).
    lr : float, default=1e-3
        Adam learning rate (paper).
    batch_size : int, default=1024
        Mini-batch size (paper).
    max_epochs : int, default=1024
        Maximum epochs of each moments-network run (paper).
    weight_decay : float, default=0.0
        Adam weight decay (none in the paper).
    validation_fraction : float, default=0.25
        Fraction of the rows given to ``fit`` held out (seeded) for early
        stopping, the schedule and the choice of run (paper: 75/25, Sect.
        2.1). Must be > 0 when ``n_runs > 1``.
    early_stopping : bool, default=True
        Stop a run after ``patience`` epochs without validation improvement
        and restore its best weights.
    patience : int, default=100
        Early-stopping patience [epochs] of both networks (paper).
    lr_schedule : {"plateau", None}, default="plateau"
        ReduceLROnPlateau on the validation loss (paper, Sect. 2.5) or none.
    lr_factor : float, default=0.9
        Learning-rate factor of the plateau schedule (paper).
    lr_patience : int, default=10
        Epochs without improvement before the learning rate is reduced
        (paper silent; Keras default).
    random_state : int, RandomState or None, default=None
        Seeds the validation split, each run's initialisation and batch
        shuffling, and the secondary network.
    device : str, default="cpu"
        torch device.
    verbose : int, default=0
        1 prints skorch's per-epoch table of every run.
    training_loop : {"lean", "skorch"}, default="lean"
        Inner loop of an epoch: :class:`skstellar.nn.LeanNeuralNet` (plain
        forward/backward/step per batch, fused Adam, epoch losses without
        per-batch bookkeeping) or skorch's general ``NeuralNet`` loop (the
        previous implementation). Same batches, schedule and loss.
    init_weights : StudentWeights or None, default=None
        Warm start: both networks start from these weights (a neighbouring
        patch's or a sky-wide prior student, :meth:`export_weights`),
        including that student's fixed input/output scalings, instead of a
        fresh initialisation. Combine with a shorter schedule
        (``max_epochs``, ``secondary_max_epochs``, ``patience``, ``n_runs=1``)
        to fine-tune. The architecture, inputs and number of targets must
        match. A network the weights lack (no secondary network) starts
        fresh.
    callbacks : list of skorch callbacks or (name, callback) pairs, default=None
        Run in every net (each run and the sigma_B network get their own
        copies) after the ones ``early_stopping`` and ``lr_schedule`` build
        (see :func:`skstellar.nn.training.merge_callbacks`). The moments net
        outputs the means then the sigmas (``2 L`` columns), which a
        scoring callback sees.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The kept moments-network run (``module_`` and ``history_`` are
        shortcuts). Its module maps raw inputs to ``[mu_1..mu_L,
        sigma_1..sigma_L]`` in target units.
    secondary_net_ : skorch.NeuralNet or None
        The sigma_B network (None when ``fit`` got no ``sigma_b``).
    run_valid_losses_ : ndarray of shape (n_runs,)
        Validation loss (Eq. 2) of the weights kept from each run (its best
        epoch with early stopping, else its last; the training loss when
        ``validation_fraction=0``). With ``prune_after``, a pruned run's
        entry is its lowest validation loss when it was pruned.
    run_n_epochs_ : ndarray of shape (n_runs,)
        Epochs each run trained.
    best_run_ : int
        Index of the kept run (``argmin(run_valid_losses_)``; with
        ``prune_after``, the continued run).
    secondary_valid_loss_ : float or None
        Validation weighted MSE of the sigma_B network.
    valid_indices_ : ndarray of int
        Row positions (in the ``X`` given to ``fit``) of the validation split.
    input_columns_ : list of str
        Column names read (``input_columns``, or ``x0..`` / the DataFrame's
        names with ``input_columns=None``).
    target_names_ : tuple of str
        Names of the outputs' columns: :data:`TARGET_NAMES` for three
        targets, else ``y0, y1, ...``.
    n_outputs_ : int
        Number of targets L.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only with ``input_columns=None`` and a DataFrame.
    n_epochs_ : int
        Epochs of the kept run.

    Notes
    -----
    The paper trains on 10,000 Bayes-labelled stars per ~10 deg^2 patch and
    applies the network to the rest (Sects. 2.1, 3.1). Its Table 1 reports
    robust standard deviations of NN minus Bayes of 0.123 mag (M_r), 0.048
    mag (A_r) and 0.110 dex ([Fe/H]).

    In a Pipeline pass the teacher's standard deviations as a fit parameter,
    ``pipe.fit(X, y, photodnetwork__sigma_b=sigma_b)``; ``GridSearchCV``
    splits it with the rows.

    References
    ----------
    Mrakovčić K., Ivezić Ž., Palaversa L. 2025, "Accelerating Stellar
    Photometric Distance Estimates with Neural Networks".
    Jeffrey N., Wandelt B. D. 2020, "Solving high-dimensional parameter
    inference: marginal posterior densities & Moment Networks".

    Examples
    --------
    >>> from skstellar.datasets.photod import make_lsst_catalog
    >>> from skstellar.photod.teacher import BayesianPhotoD
    >>> cat = make_lsst_catalog(5000, random_state=0)  # doctest: +SKIP
    >>> mean_b, sigma_b = BayesianPhotoD().fit(cat).predict(cat, return_std=True)  # doctest: +SKIP
    >>> net = PhotoDNetwork(random_state=0).fit(cat, mean_b, sigma_b=sigma_b)  # doctest: +SKIP
    >>> mean, std = net.predict(cat, return_std=True)  # columns Mr, FeH, Ar  # doctest: +SKIP
    """

    # any decrease of the validation loss counts, as in the paper's Keras training
    _early_stopping_threshold = 0.0

    def __init__(
        self,
        *,
        hidden_layer_sizes=PAPER_HIDDEN_LAYER_SIZES,
        activation=PAPER_ACTIVATIONS,
        input_columns=PHOTOD_INPUT_COLUMNS,
        loss_scales=PAPER_LOSS_SCALES,
        standardize=True,
        sigma_activation="linear",
        init="glorot_uniform",
        n_runs=2,
        prune_after=None,
        anneal_epochs=None,
        ema_decay=None,
        secondary_max_epochs=256,
        lr=1e-3,
        batch_size=1024,
        max_epochs=1024,
        weight_decay=0.0,
        validation_fraction=0.25,
        early_stopping=True,
        patience=100,
        lr_schedule="plateau",
        lr_factor=0.9,
        lr_patience=10,
        random_state=None,
        device="cpu",
        verbose=0,
        training_loop="lean",
        init_weights=None,
        callbacks=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.input_columns = input_columns
        self.loss_scales = loss_scales
        self.standardize = standardize
        self.sigma_activation = sigma_activation
        self.init = init
        self.n_runs = n_runs
        self.prune_after = prune_after
        self.anneal_epochs = anneal_epochs
        self.ema_decay = ema_decay
        self.secondary_max_epochs = secondary_max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.lr_schedule = lr_schedule
        self.lr_factor = lr_factor
        self.lr_patience = lr_patience
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.training_loop = training_loop
        self.init_weights = init_weights
        self.callbacks = callbacks

    # ------------------------------------------------------------------ params
    #: Allowed hyperparameter values (the neural base declares the common ones).
    _parameter_constraints = {
        "hidden_layer_sizes": [LAYER_SIZES],
        "activation": [ACTIVATION, SequenceOf(ACTIVATION)],
        "input_columns": [None, COLUMN_NAMES],
        "loss_scales": [None, Interval("real", 0, None, closed="neither"),
                        SequenceOf(Interval("real", 0, None, closed="neither"))],
        "standardize": ["boolean"],
        "sigma_activation": [Options(_SIGMA_ACTIVATIONS)],
        "init": [Options(_INITS)],
        "n_runs": [Interval("int", 1, None)],
        "prune_after": [None, Interval("int", 1, None)],
        "anneal_epochs": [None, Interval("int", 1, None)],
        "ema_decay": [None, Interval("real", 0, 1, closed="neither")],
        "secondary_max_epochs": [Interval("int", 1, None)],
        "training_loop": [Options(_TRAINING_LOOPS)],
        "init_weights": [None, StudentWeights],
    }
    _parameter_rules = (
        Rule(("n_runs", "validation_fraction"),
             lambda n_runs, validation_fraction: n_runs == 1 or validation_fraction > 0,
             "n_runs > 1 needs a validation split to pick the best run: set "
             "validation_fraction > 0 (the paper uses 0.25) or n_runs=1"),
        Rule(("prune_after", "validation_fraction"),
             lambda prune_after, validation_fraction: (prune_after is None
                                                       or validation_fraction > 0),
             "prune_after needs a validation split to pick the run to continue: set "
             "validation_fraction > 0 or prune_after=None"),
    )

    def _loss_weights(self, n_targets):
        if self.loss_scales is None:
            return None
        s = np.asarray(self.loss_scales, dtype=np.float64).reshape(-1)
        if s.size != n_targets:
            raise ValueError(
                f"loss_scales has {s.size} entries but y has {n_targets} target column(s); give "
                f"one scale per target (the paper's (0.1, 0.1, 0.02) for {TARGET_NAMES}) or "
                "loss_scales=None for unit weights."
            )
        return 1.0 / s**2

    # ------------------------------------------------------------------ network
    def _build_module(self, n_features, n_outputs):
        """The bare MLP (no standardisation layers), shared by both networks."""
        mlp = build_mlp(n_features, self.hidden_layer_sizes, n_outputs,
                        activation=self.activation, output_activation=None)
        if self.init == "glorot_uniform":
            for layer in mlp:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    if layer.bias is not None:
                        nn.init.zeros_(layer.bias)
        return mlp

    def _wrap(self, core, x_mean, x_scale, head):
        """``[input standardisation] -> core MLP -> head`` as one module."""
        layers = [_Affine(1.0 / x_scale, -x_mean / x_scale)] if self.standardize else []
        return nn.Sequential(*layers, core, head)

    # ------------------------------------------------------------------ input
    def _read_X(self, X, reset):
        """Float64 (n, n_features) array of the inputs, validated."""
        if self.input_columns is None:
            Xv = self._validate_X(X, reset=reset, dtype=np.float64)
            if reset:
                names = getattr(self, "feature_names_in_", None)
                self.input_columns_ = ([str(c) for c in names] if names is not None
                                       else [f"x{i}" for i in range(Xv.shape[1])])
            return Xv
        cols = list(self.input_columns)
        hint = "Remove or fill those rows first; nothing is dropped silently."
        if is_named_input(X):
            data, n, _ = to_frame_like(X, columns=cols)
            for c in cols:
                if c not in data:
                    raise missing_column_error(c, "the photo-D network input", column_names(X))
            arr = np.column_stack(
                [as_float_column(data[c], c, unit=u.mag, kind="magnitude") for c in cols]
            ) if n else np.empty((0, len(cols)))
            index = X.index if isinstance(X, pd.DataFrame) else None
        else:
            arr = check_array(X, dtype=np.float64, ensure_all_finite=False, ensure_min_samples=0)
            index = None
            if arr.shape[1] != len(cols):
                raise ValueError(
                    f"X has {arr.shape[1]} columns but the photo-D network reads {len(cols)} "
                    f"inputs, in this order: {', '.join(cols)}. Pass a DataFrame/Table with "
                    "these columns, or set input_columns."
                )
        if arr.shape[0]:
            check_finite_columns(arr, cols, index=index, hint=hint)
        arr = validate_data(self, arr, reset=reset, dtype=np.float64,
                            ensure_min_samples=2 if reset else 1)
        if reset:
            self.input_columns_ = cols
        return arr

    def _read_targets(self, y, n, name):
        """(n, L) float array of targets/sigmas with named NaN/inf/length errors."""
        a = check_array(y, ensure_2d=False, dtype=np.float64, ensure_all_finite=False,
                        input_name=name, ensure_min_samples=0)
        if a.ndim > 2 or len(a) != n:
            raise ValueError(
                f"{name} must have shape (n_samples,) or (n_samples, n_targets) with "
                f"n_samples={n} (the rows of X), got shape {a.shape}."
            )
        a2 = a.reshape(n, -1)
        names = self._target_names(a2.shape[1])
        index = y.index if isinstance(y, (pd.DataFrame, pd.Series)) else None
        check_finite_columns(a2, [f"{name}[{c}]" for c in names], index=index,
                             hint="Drop rows the teacher could not fit (NaN labels) before "
                                  "training the network.")
        return a, a2

    @staticmethod
    def _target_names(n):
        return TARGET_NAMES if n == len(TARGET_NAMES) else tuple(f"y{j}" for j in range(n))

    # ------------------------------------------------------------------ training
    def _fit_net(self, build_module, criterion, X, y, train_idx, valid_idx, max_epochs, seeds,
                 pause_after=None, anneal_epochs=None, ema_decay=None):
        """Train one net on the given split (:func:`skstellar.nn.training.train_net`).

        ``seeds`` are (module initialisation, batch shuffling). Returns the
        net and its kept loss (:meth:`_end_run`). With ``pause_after`` (<
        ``max_epochs``), training stops after that many epochs without ending
        (:meth:`_resume_net` finishes it) and the loss returned is the lowest
        validation loss so far; a run that early stopping ends before is
        complete. ``anneal_epochs``: :class:`_CosineTail`; ``ema_decay``:
        :class:`_WeightEMA`.
        """
        import skorch

        built = self._flag_callbacks() if len(valid_idx) else []
        lean = self.training_loop == "lean"
        fused = lean and torch.device(self.device).type in ("cpu", "cuda")  # fused Adam runs there
        opt_kw = {"optimizer__fused": True} if fused else {}
        if anneal_epochs is not None:
            built = built + [("lr_anneal", _CosineTail(min(int(anneal_epochs), int(max_epochs)),
                                                       max_epochs))]
        if ema_decay is not None:
            built = built + [("weight_ema", _WeightEMA(ema_decay))]
        callbacks = merge_callbacks(built, self.callbacks)
        if pause_after is not None:
            callbacks = callbacks + [("prune_pause", _PauseAfter(int(pause_after)))]
        try:
            net = train_net(
                LeanNeuralNet if lean else skorch.NeuralNet, build_module, criterion,
                X[train_idx], y[train_idx],
                (X[valid_idx], y[valid_idx]) if len(valid_idx) else None,
                init_seed=seeds[0], loader_seed=seeds[1],
                callbacks=callbacks, lr=self.lr,
                batch_size=self.batch_size, max_epochs=max_epochs,
                weight_decay=self.weight_decay, device=self.device, verbose=self.verbose,
                valid_batch_size=_VALID_BATCH, single_thread_below=4096, **opt_kw,
            )
        except _TrainingPaused as paused:
            net = paused.net
            net.paused_ = True
            return net, float(np.min(np.asarray(net.history[:, "valid_loss"], dtype=float)))
        return net, self._end_run(net, X, y, valid_idx)

    def _resume_net(self, net, X, y, train_idx, valid_idx, max_epochs):
        """Finish a run paused by ``_fit_net(..., pause_after=...)``; (net, kept loss)."""
        remaining = int(max_epochs) - len(net.history)
        with torch.random.fork_rng(devices=[]), training_threads(
                int(self.batch_size), small=4096):
            try:
                net.fit_loop(X[train_idx], y[train_idx], epochs=remaining)
            except KeyboardInterrupt:  # early stopping ends fit_loop this way, as in skorch
                pass
            net.notify("on_train_end", X=X[train_idx], y=y[train_idx])
        del net.paused_
        return net, self._end_run(net, X, y, valid_idx)

    @staticmethod
    def _end_run(net, X, y, valid_idx):
        """Validation loss of a finished run's kept epoch (training loss without a split).

        With a weight EMA, the averaged weights are loaded and their loss is returned.
        """
        from skorch.callbacks import EarlyStopping

        ema = dict(net.callbacks_).get("weight_ema")
        if ema is not None and ema.average_ is not None:
            ema.apply(net)
            rows = valid_idx if len(valid_idx) else slice(None)  # no split: all (training) rows
            module = net.module_
            was_training = module.training
            module.eval()
            with torch.no_grad():
                xb = torch.as_tensor(X[rows], device=net.device)
                yb = torch.as_tensor(y[rows], device=net.device)
                loss = float(net.criterion_(module(xb), yb))
            module.train(was_training)
            return loss
        hist = net.history
        if not len(valid_idx):
            return float(hist[-1, "train_loss"])
        losses = np.asarray(hist[:, "valid_loss"], dtype=np.float64)
        # the kept weights are the best epoch's when an EarlyStopping restores them
        es = next((cb for _, cb in net.callbacks_
                   if isinstance(cb, EarlyStopping) and cb.load_best), None)
        if es is not None and getattr(es, "best_epoch_", 0):
            epochs = np.asarray(hist[:, "epoch"])
            return float(losses[np.flatnonzero(epochs == es.best_epoch_)[0]])
        return float(losses[-1])

    def fit(self, X, y, sigma_b=None):
        """Train the moments network (and the sigma_B network when ``sigma_b`` is given).

        Parameters
        ----------
        X : DataFrame, astropy Table, mapping or array-like of shape (n_stars, 10)
            Photometry: the ``input_columns`` (r, u-g, g-r, r-i, i-z and
            their errors [mag]).
        y : array-like of shape (n_stars, 3) or (n_stars,)
            The teacher's posterior means, columns M_r [mag], [Fe/H] [dex],
            A_r [mag] (:data:`TARGET_NAMES`, the order of
            ``BayesianPhotoD.predict``). Other numbers of targets need
            matching ``loss_scales`` (or None).
        sigma_b : array-like, same shape as ``y``, optional
            The teacher's posterior standard deviations (same units, >= 0).
            When given, the secondary network is trained on them and
            ``predict(..., return_std=True)`` includes them (Eq. 3).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Missing input column, NaN/inf in X, y or sigma_b (named), wrong
            number of columns, negative sigma_b, too few rows, bad parameters.
        """
        validate_parameters(self)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        Xv = self._read_X(X, reset=True)
        n = len(Xv)
        y, y2 = self._read_targets(y, n, "y")
        self._y_ndim = y.ndim
        L = y2.shape[1]
        self.n_outputs_ = L
        self.target_names_ = self._target_names(L)
        weights = self._loss_weights(L)
        sb2 = None
        if sigma_b is not None:
            sb, sb2 = self._read_targets(sigma_b, n, "sigma_b")
            if sb2.shape != y2.shape:
                raise ValueError(f"sigma_b has shape {sb.shape} but y has {y.shape}; give one "
                                 "standard deviation per target value.")
            if np.any(sb2 < 0):
                r, c = np.argwhere(sb2 < 0)[0]
                raise ValueError(
                    f"sigma_b[{self.target_names_[c]}] has negative value(s) (first at row {r}); "
                    "posterior standard deviations must be >= 0."
                )

        rng = np.random.RandomState(seed_from(self.random_state))
        train_idx, valid_idx = (np.sort(i) for i in seeded_split(n, self.validation_fraction, rng))
        secondary_seeds = rng.randint(0, SEED_MODULUS, size=2)
        run_seeds = rng.randint(0, SEED_MODULUS, size=(int(self.n_runs), 2))

        x_mean, x_scale = _mean_scale(Xv[train_idx])
        y_mean, y_scale = _mean_scale(y2[train_idx], self.standardize)
        y32 = y2.astype(np.float32)
        n_feat = Xv.shape[1]
        Xv = Xv.astype(np.float32)  # training runs in float32

        warm = self.init_weights
        if warm is not None and (tuple(warm.input_columns) != tuple(self.input_columns_)
                                 or len(warm.target_names) != L):
            raise ValueError(
                f"init_weights were trained on inputs {list(warm.input_columns)} and "
                f"{len(warm.target_names)} target(s); this fit has inputs "
                f"{list(self.input_columns_)} and {L} target(s)."
            )

        def moments_module():
            head = _MomentHead(y_scale, y_mean, self.sigma_activation)
            module = self._wrap(self._build_module(n_feat, 2 * L), x_mean, x_scale, head)
            if warm is not None:
                _load_weights(module, warm.moments, "moments network")
            return module

        with training_threads(int(self.batch_size), small=4096):
            pause = self.prune_after
            if pause is not None and int(pause) >= int(self.max_epochs):
                pause = None  # nothing to prune: every run trains to the end
            runs = [self._fit_net(moments_module, MomentLoss(weights), Xv, y32, train_idx,
                                  valid_idx, self.max_epochs, seeds, pause_after=pause,
                                  anneal_epochs=self.anneal_epochs, ema_decay=self.ema_decay)
                    for seeds in run_seeds]  # (net, validation loss) per run
            nets, losses = [net for net, _ in runs], [loss for _, loss in runs]
            best = int(np.argmin(losses))
            if getattr(nets[best], "paused_", False):
                nets[best], losses[best] = self._resume_net(nets[best], Xv, y32, train_idx,
                                                            valid_idx, self.max_epochs)
            for net in nets:  # pruned runs stay paused: drop the flag
                net.__dict__.pop("paused_", None)
            self.run_valid_losses_ = np.asarray(losses)
            self.run_n_epochs_ = np.asarray([len(net.history) for net in nets], dtype=int)
            self.best_run_ = best
            self.net_ = nets[best]
            self.n_epochs_ = int(self.run_n_epochs_[best])

            self.secondary_net_, self.secondary_valid_loss_ = None, None
            if sb2 is not None:
                b_mean, b_scale = _mean_scale(sb2[train_idx], self.standardize)

                def secondary_module():
                    module = self._wrap(self._build_module(n_feat, L), x_mean, x_scale,
                                        _Affine(b_scale, b_mean))
                    if warm is not None and warm.secondary is not None:
                        _load_weights(module, warm.secondary, "sigma_B network")
                    return module

                self.secondary_net_, self.secondary_valid_loss_ = self._fit_net(
                    secondary_module, WeightedMSELoss(weights), Xv, sb2.astype(np.float32),
                    train_idx, valid_idx, self.secondary_max_epochs, secondary_seeds)
        self.valid_indices_ = valid_idx
        self.n_valid_ = len(valid_idx)
        return self

    def export_weights(self):
        """The trained weights of both networks, to warm-start another network.

        Returns
        -------
        StudentWeights
            Pass it as ``init_weights`` of a new :class:`PhotoDNetwork`
            (e.g. a neighbouring sky patch's student) to fine-tune from
            these weights.
        """
        check_is_fitted(self, "net_")

        def state(module):
            return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}

        secondary = None if self.secondary_net_ is None else state(self.secondary_net_.module_)
        return StudentWeights(state(self.module_), secondary, self.input_columns_,
                              self.target_names_)

    # ------------------------------------------------------------------ predict
    def _forward(self, module, X):
        """Deterministic forward pass in chunks; float64 numpy out.

        On the CPU the pass runs in float64 on a copy of the module, so that
        a star's prediction does not depend (at the 1e-7 level of float32
        rounding) on how many stars are predicted with it.
        """
        dtype = torch.float64 if torch.device(self.device).type == "cpu" else torch.float32
        module = copy.deepcopy(module).to(dtype).eval()
        out = []
        with torch.inference_mode():
            step = self._rows_per_chunk()
            for start in range(0, len(X), step):
                xb = torch.tensor(X[start:start + step], device=self.device, dtype=dtype)
                out.append(module(xb).double().cpu().numpy())
        return np.concatenate(out)

    def predict_components(self, X):
        """Mean, sigma_NN, sigma_B and total standard deviation of every star.

        Parameters
        ----------
        X : DataFrame, astropy Table, mapping or array-like
            As in :meth:`fit`.

        Returns
        -------
        dict
            ``mean`` -- the network's means (n_stars, n_targets) in target
            units (columns :attr:`target_names_`); ``sigma_nn`` -- its
            predicted scatter of the teacher's estimate around ``mean``
            (``|sigma|`` of the moment outputs); ``sigma_b`` -- the secondary
            network's prediction of the teacher's posterior standard
            deviation (clipped at 0), or None when fit got no ``sigma_b``;
            ``total_std`` -- ``sqrt(sigma_nn^2 + sigma_b^2)`` (Eq. 3), or
            ``sigma_nn`` without a secondary network. 1-D arrays when ``y``
            was 1-D.
        """
        check_is_fitted(self, "net_")
        Xv = self._read_X(X, reset=False)
        out = self._forward(self.module_, Xv)
        L = self.n_outputs_
        mean, sigma_nn = out[:, :L], np.abs(out[:, L:])
        sigma_b = None
        total = sigma_nn
        if self.secondary_net_ is not None:
            sigma_b = np.maximum(self._forward(self.secondary_net_.module_, Xv), 0.0)
            total = np.hypot(sigma_nn, sigma_b)
        return {
            "mean": self._format(mean),
            "sigma_nn": self._format(sigma_nn),
            "sigma_b": None if sigma_b is None else self._format(sigma_b),
            "total_std": self._format(total),
        }

    def predict(self, X, return_std=False):
        """Predict M_r, [Fe/H], A_r (the teacher's posterior means), optionally with their std.

        Parameters
        ----------
        X : DataFrame, astropy Table, mapping or array-like
            As in :meth:`fit`.
        return_std : bool, default=False
            Also return the total standard deviation
            ``sqrt(sigma_NN^2 + sigma_B^2)`` (Eq. 3; sigma_NN alone when fit
            got no ``sigma_b``).

        Returns
        -------
        mean : ndarray of shape (n_stars, n_targets) or (n_stars,)
            Columns :attr:`target_names_` (M_r [mag], [Fe/H] [dex], A_r [mag]).
        std : ndarray, same shape, only if ``return_std``
        """
        comp = self.predict_components(X)
        return (comp["mean"], comp["total_std"]) if return_std else comp["mean"]

    def predict_samples(self, X, n_passes=None):
        """Not available: the moments network predicts its spread directly (no MC dropout)."""
        raise NotImplementedError(
            "PhotoDNetwork has no dropout; use predict(X, return_std=True) or "
            "predict_components(X) for its uncertainties."
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.non_deterministic = self.random_state is None
        return tags
