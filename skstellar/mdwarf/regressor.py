"""The M-dwarf photometric-metallicity network (Duque-Arribas et al. 2025).

:class:`MDwarfMetallicityRegressor` predicts [Fe/H] (dex) of early- and
mid-M dwarfs from eight absolute magnitudes (Gaia DR3 BP, G, RP; 2MASS J, H,
Ks; CatWISE2020 W1, W2), with Monte Carlo dropout uncertainties, and flags
stars outside the method's validity domain.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ..columns import MDWARF_FEATURES
from ..nn import BaseNeuralRegressor, LinearWeightedMSELoss, build_mlp

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


class MDwarfMetallicityRegressor(BaseNeuralRegressor):
    """Photometric [Fe/H] of M dwarfs from 8 absolute magnitudes, with MC-dropout errors.

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
    random_state : int, RandomState or None, default=None
    device : str, default="cpu"
    verbose : int, default=0

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained net; ``module_`` and ``history_`` are shortcuts.
    n_features_in_, feature_names_in_, n_outputs_, n_epochs_
    mc_seed_ : int
        Seed of the MC-dropout masks (fixed at fit time so a saved model
        predicts identically after loading).

    Examples
    --------
    >>> from skstellar.datasets import make_mdwarf_photometry
    >>> X, y = make_mdwarf_photometry(500, as_frame=False, random_state=0)
    >>> reg = MDwarfMetallicityRegressor(max_epochs=5, random_state=0).fit(X, y)
    >>> feh, feh_err = reg.predict(X[:3], return_std=True)
    """

    def __init__(
        self,
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
        random_state=None,
        device="cpu",
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.architecture = architecture
        self.activation = activation
        self.hidden_bias = hidden_bias
        self.dropout = dropout
        self.output_activation = output_activation
        self.weight_slope = weight_slope
        self.weight_intercept = weight_intercept
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
        self.n_mc_passes = n_mc_passes
        self.mc_mode = mc_mode
        self.feature_names = feature_names
        self.feh_range = feh_range
        self.g_minus_j_range = g_minus_j_range
        self.w1_minus_w2_range = w1_minus_w2_range
        self.saturation = saturation
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------- network
    def _resolved_architecture(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {sorted(ARCHITECTURES)}, got {self.architecture!r}."
            )
        arch = dict(ARCHITECTURES[self.architecture])
        if self.activation is not None:
            arch["activation"] = self.activation
        if self.hidden_bias is not None:
            arch["hidden_bias"] = bool(self.hidden_bias)
        return arch

    def _build_module(self, n_features, n_outputs):
        arch = self._resolved_architecture()
        return build_mlp(
            n_features,
            self.hidden_layer_sizes,
            n_outputs,
            activation=arch["activation"],
            output_activation=self.output_activation,
            batch_norm=True,
            # BatchNorm after the activation as in the released model; with the
            # paper's linear activation the position makes no difference.
            batch_norm_position="after_activation",
            input_batch_norm=True,
            dropout=self.dropout,
            bias=arch["hidden_bias"],
        )

    def _build_criterion(self):
        return LinearWeightedMSELoss(self.weight_slope, self.weight_intercept)

    def _check_params(self):
        super()._check_params()
        self._resolved_architecture()
        if len(self.hidden_layer_sizes) < 1:
            raise ValueError("hidden_layer_sizes needs at least one layer.")

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
        ig, ij = self._column_index("M_G"), self._column_index("M_J")
        iw1, iw2 = self._column_index("M_W1"), self._column_index("M_W2")
        g_j = Xv[:, ig] - Xv[:, ij]
        w12 = Xv[:, iw1] - Xv[:, iw2]
        if y_pred is None:
            y_pred = self.predict(X)
        y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(Xv), -1)[:, 0]
        box = (
            (g_j < self.g_minus_j_range[0]) | (g_j > self.g_minus_j_range[1])
            | (w12 < self.w1_minus_w2_range[0]) | (w12 > self.w1_minus_w2_range[1])
        )
        out_feh = (y_pred < self.feh_range[0]) | (y_pred > self.feh_range[1])
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
        """Predictions, MC-dropout errors and validity flags as one DataFrame.

        Returns
        -------
        pandas.DataFrame
            ``fe_h_pred``, ``fe_h_pred_error`` (dex) and the columns of
            :meth:`domain_flags`.
        """
        mean, std = self.predict(X, return_std=True)
        flags = self.domain_flags(X, y_pred=mean)
        out = pd.DataFrame({"fe_h_pred": mean, "fe_h_pred_error": std}, index=flags.index)
        return pd.concat([out, flags], axis=1)
