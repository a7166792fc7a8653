"""The M-dwarf photometric-metallicity network (Duque-Arribas et al. 2025).

:class:`MDwarfMetallicityRegressor` predicts [Fe/H] (dex) of early- and
mid-M dwarfs from eight absolute magnitudes (Gaia DR3 BP, G, RP; 2MASS J, H,
Ks; CatWISE2020 W1, W2), with a calibrated total uncertainty (MC dropout,
propagated photometric and parallax errors, and an intrinsic floor fitted on
held-out stars; see :mod:`skstellar.calibration`), and flags stars outside
the method's validity domain.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from .._validation import check_non_negative
from ..calibration import HeldOutCalibrationMixin
from ..columns import MDWARF_FEATURES
from ..nn import BaseNeuralRegressor, LinearWeightedMSELoss, build_mlp
from ..nn.builders import ACTIVATION
from ..nn.uncertainty import propagate_input_errors
from ..parameters import COLUMN_NAMES, LAYER_SIZES, RANGE, Interval, Options
from ..preprocessing.photometry import DISTANCE_MODULUS_ERROR

_ERROR_SUFFIX = "_error"

__all__ = ["MDwarfMetallicityRegressor", "ARCHITECTURES", "paper_search_space"]

#: Hidden-layer settings of the two published variants of the network.
#: "paper": the text of Sect. 2.2 (linear activations, biases, BatchNorm then
#: dropout after each hidden layer). "released": the authors' released Keras
#: model (LeakyReLU(0.1), no bias in the hidden layers, BatchNorm after the
#: activation).
ARCHITECTURES = {
    "paper": {"activation": "linear", "hidden_bias": True},
    "released": {"activation": "leaky_relu:0.1", "hidden_bias": False},
}


def paper_search_space():
    """The hyperparameter space of the paper's Table 2, for ``RandomizedSearchCV``.

    Returns
    -------
    dict
        ``hidden_layer_sizes``: every depth 1-5 with widths 8, 16, 32, 64, 128, 256
        (same width in all layers); ``lr``: log-uniform on [1e-4, 1e-2];
        ``dropout``: 0.1-0.5. The paper searched with 4-fold CV.
    """
    from scipy.stats import loguniform

    return {
        "hidden_layer_sizes": [
            (w,) * depth for depth in range(1, 6) for w in (8, 16, 32, 64, 128, 256)
        ],
        "lr": loguniform(1e-4, 1e-2),
        "dropout": [0.1, 0.2, 0.3, 0.4, 0.5],
    }


class MDwarfMetallicityRegressor(HeldOutCalibrationMixin, BaseNeuralRegressor):
    """Photometric [Fe/H] of M dwarfs from 8 absolute magnitudes, with calibrated errors.

    The default configuration is the network and recipe of Duque-Arribas et
    al. (2025, A&A, "Photometric metallicities of M dwarfs with artificial
    neural networks"), Sect. 2.2-2.3:

    ``8 -> BatchNorm -> [Dense 64 -> BatchNorm -> Dropout 0.2] x 2 -> Dense 1 -> tanh``

    with linear hidden activations (``architecture="paper"``), the weighted
    MSE ``W = 4 |[Fe/H]| + 0.5``, Adam with learning rate 2e-4, and Monte
    Carlo dropout with 100 passes at prediction time (mean and std).
    ``architecture="released"`` gives the authors' released model instead
    (LeakyReLU(0.1), no bias in the hidden layers, BatchNorm after the
    activation). The tanh output bounds predictions to (-1, 1) dex.

    The paper does not give batch size or number of epochs: we use Keras'
    default batch size (32) and train up to ``max_epochs=1000`` with early
    stopping (patience 50, best weights restored) on a seeded validation
    split. ``validation_fraction=0.25`` of the rows passed to ``fit`` is the
    paper's 60/20 train/validation split when ``fit`` gets 80 % of a sample.

    **Uncertainties.** The paper's error is the MC-dropout standard deviation
    alone, which measures the spread of the thinned networks, not the
    scatter of real stars around the prediction (on the Birky et al. 2020
    sample it is ~2.5 times too small). By default (``uncertainty=
    "calibrated"``) ``predict(X, return_std=True)`` returns the total

    ``sigma^2 = a sigma_MC^2 + sigma_input^2 + b^2``

    with ``a`` and the intrinsic floor ``b`` (dex) fitted by maximum
    likelihood on the validation rows at the end of ``fit``
    (:class:`skstellar.calibration.VarianceCalibrator`), and
    ``sigma_input`` the photometric and parallax errors propagated through
    the network (first-order Jacobian of the network with dropout off).
    ``uncertainty="mc"`` gives the paper's ``sqrt(sigma_MC^2 +
    sigma_input^2)`` (just ``sigma_MC`` without error columns).
    :meth:`predict_uncertainty` returns the parts, :meth:`predict_interval`
    intervals of any coverage.

    **Measurement errors.** When ``X`` is a DataFrame, a column named
    ``<feature>_error`` (e.g. ``M_G_error``, as written by
    ``AbsoluteMagnitudes(return_errors=True)``) is the 1-sigma error [mag]
    of feature ``<feature>``, and a column ``distance_modulus_error``
    (``AbsoluteMagnitudes(return_errors=True, distance_error=True)``) is the
    part of every band's error shared through the parallax; the covariance
    ``diag(sigma_M^2 - sigma_dm^2) + sigma_dm^2`` is then propagated, so a
    parallax error, which shifts all bands together, costs only what the
    network's dependence on absolute brightness makes it cost. Columns
    ending in ``_error`` are never network inputs; a feature without an
    error column counts as exact. Without any error column (or with
    ``input_errors="ignore"``) ``sigma_input`` is zero and everything else
    works the same. Error columns must be present at ``predict`` if they
    were at ``fit`` (the column layout is fixed at fit).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(64, 64)
        Width of each hidden layer.
    architecture : {"paper", "released"}, default="paper"
        Which published variant sets the hidden activation and biases.
    activation : str or None, default=None
        Overrides the architecture's hidden activation (see
        :func:`skstellar.nn.make_activation`).
    hidden_bias : bool or None, default=None
        Overrides the architecture's hidden-layer bias.
    dropout : float, default=0.2
        Dropout rate after each hidden layer (also the MC-dropout rate).
    output_activation : str or None, default="tanh"
        Output activation; ``"tanh"`` is the paper's bounded output.
    weight_slope, weight_intercept : float, default=4.0, 0.5
        Loss weight ``W = weight_slope * |[Fe/H]| + weight_intercept``;
        ``weight_slope=0`` gives an unweighted MSE.
    lr : float, default=2e-4
        Adam learning rate.
    batch_size : int, default=32
    max_epochs : int, default=1000
    weight_decay : float, default=0.0
    validation_fraction : float, default=0.25
    early_stopping : bool, default=True
    patience : int, default=50
    lr_schedule : {None, "plateau"}, default=None
    lr_factor : float, default=0.5
    lr_patience : int, default=20
    n_mc_passes : int, default=100
        MC-dropout passes in ``predict`` (the paper's 100).
    mc_mode : {"network", "per_sample"}, default="network"
        See :mod:`skstellar.nn.mc_dropout`.
    feature_names : sequence of str, default=MDWARF_FEATURES
        Names of the input columns when ``X`` has none (a numpy array), in
        order; used to compute the colours of :meth:`domain_flags`.
    feh_range : (float, float), default=(-0.45, 0.45)
        Validity range of [Fe/H] (dex), the paper's training range.
    g_minus_j_range : (float, float), default=(1.85, 3.10)
        Validity range of G - J (mag), M0V-M5V.
    w1_minus_w2_range : (float, float), default=(-0.10, 0.24)
        Validity range of W1 - W2 (mag).
    saturation : float, default=0.9
        ``|prediction|`` (dex) above which the tanh output counts as
        saturated (the paper: such outputs only signal an out-of-range star).
    uncertainty : {"calibrated", "mc"}, default="calibrated"
        What ``predict(X, return_std=True)`` returns: the calibrated total
        (see above; needs ``validation_fraction > 0``) or the paper's raw
        MC-dropout spread (plus propagated input errors when given).
    input_errors : {"auto", "ignore"}, default="auto"
        ``"auto"``: use ``<feature>_error`` and ``distance_modulus_error``
        columns when ``X`` has them; ``"ignore"``: never (they are still
        left out of the network inputs).
    random_state : int, RandomState or None, default=None
    device : str, default="cpu"
    verbose : int, default=0
        1 prints skorch's per-epoch table.
    callbacks : list of skorch callbacks or (name, callback) pairs, default=None
        Run after the ones ``early_stopping`` and ``lr_schedule`` build, e.g.
        ``[skorch.callbacks.LRScheduler(policy="StepLR", step_size=100)]``
        (see :func:`skstellar.nn.training.merge_callbacks`).

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained net; ``module_`` and ``history_`` are shortcuts.
    n_features_in_, feature_names_in_, n_outputs_, n_epochs_
    mc_seed_ : int
        Seed of the MC-dropout masks (fixed at fit time so a saved model
        predicts identically after loading).
    calibrator_ : VarianceCalibrator or None
        ``a`` (``scale_``) and ``b`` (``floor_``, dex) fitted on the
        validation rows (None with ``uncertainty="mc"``).
    network_features_ : tuple of str
        Names of the columns fed to the network (all columns for unnamed input).
    error_features_ : tuple of str
        Error column of each network feature ("" where none is used).

    Examples
    --------
    >>> from skstellar.datasets import make_mdwarf_photometry
    >>> X, y = make_mdwarf_photometry(500, as_frame=False, random_state=0)
    >>> reg = MDwarfMetallicityRegressor(max_epochs=5, random_state=0).fit(X, y)
    >>> feh, feh_err = reg.predict(X[:3], return_std=True)
    >>> parts = reg.predict_uncertainty(X[:3])  # model, input, intrinsic, total
    """

    def __init__(
        self,
        *,
        hidden_layer_sizes=(64, 64),
        architecture="paper",
        activation=None,
        hidden_bias=None,
        dropout=0.2,
        output_activation="tanh",
        weight_slope=4.0,
        weight_intercept=0.5,
        lr=2e-4,
        batch_size=32,
        max_epochs=1000,
        weight_decay=0.0,
        validation_fraction=0.25,
        early_stopping=True,
        patience=50,
        lr_schedule=None,
        lr_factor=0.5,
        lr_patience=20,
        n_mc_passes=100,
        mc_mode="network",
        feature_names=MDWARF_FEATURES,
        feh_range=(-0.45, 0.45),
        g_minus_j_range=(1.85, 3.10),
        w1_minus_w2_range=(-0.10, 0.24),
        saturation=0.9,
        uncertainty="calibrated",
        input_errors="auto",
        random_state=None,
        device="cpu",
        verbose=0,
        callbacks=None,
    ):
        self._store_init_arguments(locals())

    # ------------------------------------------------------------- network
    def _build_module(self, n_features, n_outputs):
        arch = dict(ARCHITECTURES[self.architecture])  # (checked by _parameter_constraints)
        if self.activation is not None:
            arch["activation"] = self.activation
        if self.hidden_bias is not None:
            arch["hidden_bias"] = bool(self.hidden_bias)
        return build_mlp(
            n_features, self.hidden_layer_sizes, n_outputs, activation=arch["activation"],
            output_activation=self.output_activation, batch_norm=True,
            # BatchNorm after the activation as in the released model; with the
            # paper's linear activation the position makes no difference.
            batch_norm_position="after_activation", input_batch_norm=True,
            dropout=self.dropout, bias=arch["hidden_bias"],
        )

    def _build_criterion(self):
        return LinearWeightedMSELoss(self.weight_slope, self.weight_intercept)

    #: Allowed hyperparameter values (the neural base and the calibration
    #: mixin declare the common ones and ``uncertainty``).
    _parameter_constraints = {
        "hidden_layer_sizes": [LAYER_SIZES],
        "architecture": [Options(sorted(ARCHITECTURES))],
        "activation": [None, ACTIVATION],
        "hidden_bias": [None, "boolean"],
        "dropout": [Interval("real", 0, 1, closed="left")],
        "output_activation": [None, ACTIVATION],
        "weight_slope": [Interval("real", 0, None)],
        "weight_intercept": [Interval("real", 0, None, closed="neither")],
        "feature_names": [COLUMN_NAMES],
        "feh_range": [RANGE],
        "g_minus_j_range": [RANGE],
        "w1_minus_w2_range": [RANGE],
        "saturation": [Interval("real", 0, None, closed="neither")],
        "input_errors": [Options(("auto", "ignore"))],
    }

    # ---------------------------------------------------- input layout
    def _resolve_layout(self):
        """Split the fitted columns into network features and their errors."""
        names = getattr(self, "feature_names_in_", None)
        if names is None:  # unnamed input: features x0, x1, ... without error columns
            names = [f"x{i}" for i in range(self.n_features_in_)]
        names = [str(c) for c in names]
        pos = {c: i for i, c in enumerate(names)}
        feats = [c for c in names if not c.endswith(_ERROR_SUFFIX)]
        if not feats:
            raise ValueError(f"Every column of X ends in '{_ERROR_SUFFIX}' ({names}); the "
                             "network needs feature columns.")
        use = self.input_errors == "auto"
        errs = [pos.get(c + _ERROR_SUFFIX, -1) if use else -1 for c in feats]
        self._feature_index = np.asarray([pos[c] for c in feats])
        self._error_index = np.asarray(errs)
        self._dm_index = pos.get(DISTANCE_MODULUS_ERROR, -1) if use else -1
        self.network_features_ = tuple(feats)
        self.error_features_ = tuple(names[i] if i >= 0 else "" for i in errs)

    def _train(self, X, y2, n_module_outputs):
        self._resolve_layout()
        return super()._train(np.ascontiguousarray(X[:, self._feature_index]), y2,
                              n_module_outputs)

    def _model_inputs(self, Xv):
        inputs = np.ascontiguousarray(Xv[:, self._feature_index])
        has = self._error_index >= 0
        if not has.any() and self._dm_index < 0:
            return inputs, None
        err = np.zeros(inputs.shape, dtype=np.float64)
        err[:, has] = Xv[:, self._error_index[has]]
        names = np.asarray(self.feature_names_in_, dtype=object)
        cols = list(self._error_index[has]) + ([self._dm_index] if self._dm_index >= 0 else [])
        check_non_negative(Xv[:, cols], names[cols])
        dm = None if self._dm_index < 0 else np.asarray(Xv[:, self._dm_index], np.float64)
        if dm is not None and has.any():
            excess = dm[:, None] > err[:, has] * (1 + 1e-4) + 1e-6
            if excess.any():
                r, c = np.argwhere(excess)[0]
                raise ValueError(
                    f"Column '{DISTANCE_MODULUS_ERROR}' exceeds the total error "
                    f"'{names[self._error_index[has][c]]}' at row {int(r)}: each band's error "
                    "must include the shared distance-modulus part.")
        return inputs, (err, dm)

    def _input_std(self, inputs, info):  # info: (errors, distance-modulus errors)
        return propagate_input_errors(self.module_, inputs, *info, n_outputs=self.n_outputs_,
                                      device=self.device)

    # ------------------------------------------------------- validity domain
    def _column_index(self, name):
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = list(self.feature_names) if self.feature_names is not None else []
            if len(names) != self.n_features_in_:
                raise ValueError(
                    f"Cannot locate column {name!r}: X has {self.n_features_in_} unnamed "
                    f"columns but feature_names has {len(names)} entries. Fit on a DataFrame "
                    "or set feature_names."
                )
        names = list(names)
        if name not in names:
            raise ValueError(
                f"Column {name!r} is needed for the validity-domain colours; features are {names}."
            )
        return names.index(name)

    def domain_flags(self, X, y_pred=None):
        """Flag stars outside the method's validity domain.

        The paper's model is valid for -0.45 <= [Fe/H] <= 0.45 dex,
        1.85 <= G - J <= 3.10 mag and -0.10 <= W1 - W2 <= 0.24 mag (M0V-M5V);
        its tanh output saturates towards +-1 for stars beyond, which only
        signals an out-of-range input (Sect. 2.2).

        Parameters
        ----------
        X : array-like of shape (n_samples, 8)
            The inputs given to :meth:`predict` (absolute magnitudes; the
            colours are the same for apparent magnitudes).
        y_pred : array-like of shape (n_samples,), optional
            Predictions, if already computed (avoids a second MC run).

        Returns
        -------
        pandas.DataFrame
            Boolean columns ``outside_colour_box`` (G - J or W1 - W2 outside
            the box), ``outside_feh_range`` (prediction outside ``feh_range``),
            ``saturated`` (``|prediction| > saturation``), and ``in_domain``
            (none of those), plus the colours ``g_minus_j`` and ``w1_minus_w2``.
        """
        check_is_fitted(self, "net_")
        index = X.index if isinstance(X, pd.DataFrame) else None
        Xv = self._validate_X(X, reset=False, dtype=np.float64)
        g_j, w12 = (Xv[:, self._column_index(a)] - Xv[:, self._column_index(b)]
                    for a, b in (("M_G", "M_J"), ("M_W1", "M_W2")))
        if y_pred is None:
            y_pred = self.predict(X)
        y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(Xv), -1)[:, 0]

        def outside(values, bounds):
            return (values < bounds[0]) | (values > bounds[1])

        box = outside(g_j, self.g_minus_j_range) | outside(w12, self.w1_minus_w2_range)
        out_feh = outside(y_pred, self.feh_range)
        sat = np.abs(y_pred) > self.saturation
        return pd.DataFrame(
            {
                "g_minus_j": g_j,
                "w1_minus_w2": w12,
                "outside_colour_box": box,
                "outside_feh_range": out_feh,
                "saturated": sat,
                "in_domain": ~(box | out_feh | sat),
            },
            index=index,
        )

    def predict_catalog(self, X):
        """Predictions, their uncertainty and validity flags as one DataFrame.

        Returns
        -------
        pandas.DataFrame
            ``fe_h_pred``; ``fe_h_pred_error`` (dex, what
            ``predict(X, return_std=True)`` returns); its parts
            ``fe_h_error_model``, ``fe_h_error_input``,
            ``fe_h_error_intrinsic`` (dex, see :meth:`predict_uncertainty`);
            and the columns of :meth:`domain_flags`.
        """
        parts = self.predict_uncertainty(X)
        mean = parts.prediction
        flags = self.domain_flags(X, y_pred=mean)
        out = pd.DataFrame({
            "fe_h_pred": mean, "fe_h_pred_error": parts.total_std,
            "fe_h_error_model": parts.model_std, "fe_h_error_input": parts.input_std,
            "fe_h_error_intrinsic": parts.intrinsic_std,
        }, index=flags.index)
        return pd.concat([out, flags], axis=1)
