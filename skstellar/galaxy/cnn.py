"""1-D CNNs on redshift-free galaxy spectra (the LAMOST gas-metallicity CNN).

:class:`SpectralCNNRegressor` predicts 12 + log(O/H) (or any label) from
spectra resampled onto a common observed-frame grid and min-max scaled per
spectrum; :class:`SpectralCNNClassifier` is the companion star-forming vs
not classifier with the same convolutional body.
"""

from __future__ import annotations

import numpy as np

from ..calibration import HeldOutCalibrationMixin
from ..nn import BaseNeuralClassifier, BaseNeuralRegressor, build_cnn1d
from ..nn.builders import ACTIVATION
from ..parameters import Interval, SequenceOf

__all__ = ["SpectralCNNRegressor", "SpectralCNNClassifier"]

_PARAMS_DOC = """
    Parameters
    ----------
    channels : tuple of int, default=(16, 32, 64, 128)
        Convolution channels of each block (the paper's four blocks).
    convs_per_block : int, default=2
    kernel_size : int, default=3
    padding : int, default=0
        Zero padding of each convolution (the paper: none, Keras "valid").
    pool_size, pool_stride : int, default=3, 3
        Max pooling after each block.
    activation : str, default="relu"
    dropout : float, default=0.0
        Dropout before the dense layer. The paper has none; a value > 0
        turns on Monte Carlo dropout uncertainties (``n_mc_passes``).
    hidden_sizes : tuple of int, default=()
        Optional hidden dense layers (the paper: none).
    lr : float, default=1e-3
        Adam learning rate.
    batch_size : int, default=128
    max_epochs : int, default=100
    weight_decay : float, default=0.0
    validation_fraction : float, default=0.125
        Held-out fraction of the rows passed to ``fit``: 1/8 of the 80 %
        given to fit is the paper's 7:1:2 split.
    early_stopping : bool, default=True
        Keep the best validation weights (the paper keeps the best model);
        with ``patience=max_epochs`` training never stops early.
    patience : int, default=100
    lr_schedule : {"plateau", None}, default="plateau"
        ReduceLROnPlateau on the validation loss (the paper: patience 10,
        factor 0.1).
    lr_factor : float, default=0.1
    lr_patience : int, default=10
    n_mc_passes : int, default=50
        MC-dropout passes in ``predict``/``predict_proba`` (used only when
        ``dropout > 0``).
    mc_mode : {"network", "per_sample"}, default="network"
    random_state : int, RandomState or None, default=None
    device : str, default="cpu"
    verbose : int, default=0
        1 prints skorch's per-epoch table.
    callbacks : list of skorch callbacks or (name, callback) pairs, default=None
        Run after the ones ``early_stopping`` and ``lr_schedule`` build
        (see :func:`skstellar.nn.training.merge_callbacks`).
    standardize_target : bool, default=True
        (Regressor) train on z-scored targets and map predictions back; the
        paper is silent on target scaling.
"""


class _SpectralCNNMixin:
    # convolutions over thousands of pixels use all threads
    _single_thread_training = False

    def _build_module(self, n_features, n_outputs):
        return build_cnn1d(
            n_features, n_outputs, channels=self.channels,
            convs_per_block=self.convs_per_block, kernel_size=self.kernel_size,
            padding=self.padding, pool_size=self.pool_size, pool_stride=self.pool_stride,
            activation=self.activation, dropout=self.dropout, hidden_sizes=self.hidden_sizes,
        )


class SpectralCNNRegressor(HeldOutCalibrationMixin, _SpectralCNNMixin, BaseNeuralRegressor):  # noqa: D101 (__doc__ set below)
    def _transform_y_fit(self, y2):
        # Train on z-scored targets (12 + log(O/H) ~ 8.5 +- 0.2 would otherwise
        # spend the first epochs moving the output bias); predictions and
        # stds are mapped back. The paper does not say; this only
        # reparametrises the output layer.
        if not self.standardize_target:
            self._y_mean_, self._y_scale_ = None, None
            return y2
        self._y_mean_ = y2.mean(axis=0)
        scale = y2.std(axis=0)
        self._y_scale_ = np.where(scale > 0, scale, 1.0)
        return (y2 - self._y_mean_) / self._y_scale_

    def _inverse_transform_y(self, y2):
        if getattr(self, "_y_scale_", None) is None:
            return y2
        return y2 * self._y_scale_ + self._y_mean_

    __doc__ = """1-D CNN regressor for spectra (gas-phase metallicity from LAMOST spectra).

    Default configuration: the network and recipe of the LAMOST galaxy
    gas-metallicity CNN paper (Sects. 3.1-3.2): four blocks of two Conv1d
    (kernel 3, stride 1, ReLU) with 16, 32, 64 and 128 channels, each block
    followed by MaxPool1d(3, stride 3), flatten, one linear layer to the
    output; MSE loss, Adam (lr 1e-3), ReduceLROnPlateau (patience 10, factor
    0.1), batch 128, 100 epochs, best validation weights kept. The input is a
    2-D array of spectra on a common grid of any length (the paper: 4201
    pixels from :class:`skstellar.preprocessing.SpectrumResampler` followed
    by :class:`skstellar.preprocessing.SpectrumMinMaxScaler`).

    **Uncertainties.** The paper reports no per-galaxy uncertainty. With the
    default ``uncertainty="calibrated"``, ``predict(X, return_std=True)``
    returns ``sqrt(a sigma_MC^2 + b^2)`` with ``a`` and the floor ``b`` (dex)
    fitted by maximum likelihood on the validation rows
    (:class:`skstellar.calibration.VarianceCalibrator`). With the paper's
    network (``dropout=0``) there is no MC spread, so the uncertainty is the
    single held-out scatter ``b``, the same for every galaxy (honest on
    average, not per galaxy: low-S/N spectra have larger errors); set
    ``dropout > 0`` (e.g. 0.2, Monte Carlo dropout before the dense layer)
    for per-galaxy uncertainties, calibrated the same way.
    ``uncertainty="mc"`` returns the raw MC-dropout spread and needs
    ``dropout > 0``.
    """ + _PARAMS_DOC + """    uncertainty : {"calibrated", "mc"}, default="calibrated"
        (Regressor) What ``predict(X, return_std=True)`` returns (see above).
"""

    def __init__(self, *, channels=(16, 32, 64, 128), convs_per_block=2, kernel_size=3, padding=0,
                 pool_size=3, pool_stride=3, activation="relu", dropout=0.0, hidden_sizes=(),
                 lr=1e-3, batch_size=128, max_epochs=100, weight_decay=0.0,
                 validation_fraction=0.125, early_stopping=True, patience=100,
                 lr_schedule="plateau", lr_factor=0.1, lr_patience=10, n_mc_passes=50,
                 mc_mode="network", random_state=None, device="cpu", verbose=0,
                 standardize_target=True, uncertainty="calibrated", callbacks=None):
        self._store_init_arguments(locals())

    #: Allowed hyperparameter values (the neural base declares the common ones).
    _parameter_constraints = {
        "channels": [SequenceOf(Interval("int", 1, None))],
        "convs_per_block": [Interval("int", 1, None)],
        "kernel_size": [Interval("int", 1, None)],
        "padding": [Interval("int", 0, None)],
        "pool_size": [Interval("int", 1, None)],
        "pool_stride": [Interval("int", 1, None)],
        "activation": [ACTIVATION],
        "dropout": [Interval("real", 0, 1, closed="left")],
        "hidden_sizes": [SequenceOf(Interval("int", 1, None), min_length=0)],
        "standardize_target": ["boolean"],
    }


class SpectralCNNClassifier(_SpectralCNNMixin, BaseNeuralClassifier):  # noqa: D101 (__doc__ set below)
    _parameter_constraints = SpectralCNNRegressor._parameter_constraints
    __doc__ = """1-D CNN classifier for spectra (star-forming vs not).

    The regressor's convolutional body with one output per class, each with
    a sigmoid and binary cross-entropy on one-hot labels (the paper's
    two-node sigmoid output and BCELoss, Sect. 4); Adam 1e-3, batch 128,
    100 epochs. Labels may be strings; ``classes_`` holds them sorted and
    ``predict_proba`` returns the per-class sigmoids normalised to one.
    """ + _PARAMS_DOC

    def __init__(self, *, channels=(16, 32, 64, 128), convs_per_block=2, kernel_size=3, padding=0,
                 pool_size=3, pool_stride=3, activation="relu", dropout=0.0, hidden_sizes=(),
                 lr=1e-3, batch_size=128, max_epochs=100, weight_decay=0.0,
                 validation_fraction=0.125, early_stopping=True, patience=100,
                 lr_schedule="plateau", lr_factor=0.1, lr_patience=10, n_mc_passes=50,
                 mc_mode="network", random_state=None, device="cpu", verbose=0,
                 callbacks=None):
        self._store_init_arguments(locals())
