"""The Gaia XP "uncertain neural network" regressor (method 4, Sect. 3).

:class:`UncertainNNRegressor` predicts several stellar labels from features
that carry per-sample covariances (Gaia XP coefficients normalised by
:class:`skstellar.preprocessing.XPNormalizer`) and returns, for every label,
the three parts of its uncertainty the paper defines:

* model uncertainty: the scatter of Monte Carlo dropout passes (Sect. 3.1.1);
* input uncertainty: ``diag(J Sigma_x J^T)`` with ``J = dy/dx`` from autograd
  (Eq. 7), the first-order propagation of the input covariance;
* excess uncertainty: a second set of network outputs trained through the
  likelihood (Sect. 3.1.2).

Training minimises the Gaussian likelihood of Eq. 9-10 with
``s = ln(sigma_y^2 + sigma_model^2 + sigma_input^2 + sigma_excess^2)``, label errors
``sigma_y`` given per sample and missing labels (NaN) masked; the input term
is left out for the first ``warmup_iter`` iterations (Sect. 3.1). The total is
then calibrated on held-out rows by default (see ``uncertainty``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.base import RegressorMixin
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted, validate_data

from .._validation import check_finite_columns, check_non_negative, check_numeric_input
from ..calibration import (
    ALPHA_1SIGMA,
    UNCERTAINTY_MODES,
    VarianceCalibrator,
    gaussian_interval,
    uncertainty_parts,
)
from ..covariance import CovariantFeatures
from ..nn.base import NeuralEstimatorBase
from ..nn.builders import ACTIVATION, build_mlp
from ..nn.input_variance import (
    POSITIVE_MAPS,
    InputVarianceLikelihood,
    InputVarianceNet,
    WarmupEarlyStopping,
)
from ..nn.mc_dropout import DropoutHooks, seeded_generator
from ..nn.training import Progress, merge_callbacks, plan_training, silent, train_net
from ..nn.uncertainty import (
    TorchCovariance,
    batched_jacobian,
    is_supported_mlp,
    mlp_forward_with_jacobian,
)
from ..parameters import LAYER_SIZES, Interval, Options, Rule, validate_parameters

__all__ = ["UncertainNNRegressor"]

#: Rows per forward call are padded to a multiple of this (see _forward_padded_rows).
ROW_PADDING = 64


def _forward_padded_rows(module, xb, n_passes):
    """Pass-major forward of ``n_passes`` copies of ``xb`` with the rows padded.

    CPU GEMM kernels take other code paths for other row counts, so a star's
    float32 output changed in its last bits with the number of stars in the
    call (scikit-learn's subset-invariance check, atol 1e-7, failed on some
    CPUs). Padding the rows to a multiple of :data:`ROW_PADDING` (repeating
    the last row) keeps the kernel's row blocking the same for every call;
    the padded rows are dropped. Dropout masks are per pass (shared by rows),
    so the padding does not change them.
    """
    m = xb.shape[0]
    m_pad = -(-m // ROW_PADDING) * ROW_PADDING
    if m_pad > m:
        xb = torch.cat([xb, xb[-1:].expand(m_pad - m, -1)])
    xr = xb.unsqueeze(0).expand(n_passes, m_pad, -1).reshape(n_passes * m_pad, -1)
    out = module(xr)
    return out.view(n_passes, m_pad, -1)[:, :m].reshape(n_passes * m, -1)


class UncertainNNRegressor(RegressorMixin, NeuralEstimatorBase):
    """Multi-label regressor with model, input and excess uncertainties.

    The default configuration is the Gaia XP paper's (Sect. 3.1): an MLP
    ``n_features -> 128 -> 128 -> 2 L`` with dropout 0.2 after each hidden
    layer, whose first ``L`` outputs are the labels and the last ``L`` the
    excess variances (through a positive activation); Adam with learning
    rate 5e-4 and weight decay 1e-5; batches of 10,000 in a fixed order;
    20,000 iterations, the first 2,500 without the input-uncertainty term; no
    early stopping; inputs and labels z-scored (the input covariance scaled
    consistently); 50 MC-dropout passes at prediction with the median as the
    point estimate.

    Where the paper is silent (documented choices): the hidden activation is
    ReLU (``activation``); the excess variance is ``softplus`` of its output
    (``excess_activation``); ``sigma_model`` in the training loss is the
    per-star variance of ``model_variance_passes`` stochastic passes of the
    batch (the paper does not say how it estimates it during training); at
    prediction the excess term is averaged over the MC passes and the input
    term uses the deterministic network's Jacobian (``input_variance_passes``).

    Parameters
    ----------
    hidden : sequence of int, default=(128, 128)
        Hidden layer widths.
    dropout : float, default=0.2
        Dropout after each hidden layer (also drives the model uncertainty).
    activation : str, default="relu"
        Hidden activation (see :func:`skstellar.nn.make_activation`).
    excess_activation : {"softplus", "exp"}, default="softplus"
        Positive map of the excess-variance outputs.
    lr : float, default=5e-4
    weight_decay : float, default=1e-5
    batch_size : int, default=10000
    max_iter : int, default=20000
        Optimiser steps in total.
    warmup_iter : int, default=2500
        Initial steps without the input-uncertainty term.
    shuffle : bool, default=False
        Reshuffle the batches every epoch; the paper keeps a fixed order.
    input_uncertainty : bool, default=True
        Use the input covariance in the loss and at prediction. Without a
        covariance (plain array input) the input term is zero.
    standardize : bool, default=True
        z-score inputs (covariance scaled as ``S^-1 Sigma S^-1``) and labels
        (label errors scaled) inside the estimator.
    validation_fraction : float, default=0.0
        Seeded hold-out monitored every epoch (0: none, as in the paper).
    early_stopping : bool, default=False
        Stop when the validation loss has not improved for ``patience``
        epochs and restore the best weights (needs a validation fraction).
    patience : int, default=20
    model_variance_passes : int, default=2
        Stochastic dropout passes of each batch per training step; with 2 or
        more, their per-star variance (detached) is the ``sigma_model^2`` term of
        ``s`` (Eq. 10) and every pass contributes to the loss. Without it the
        excess output learns the dropout scatter too and ``sigma_total``
        (Eq. 11) counts the model uncertainty twice (measured: z-score std
        ~0.5). 0 or 1: one pass, no model term (half the cost). The input
        term of all passes uses the first pass's Jacobian.
    n_mc_passes : int, default=50
        MC-dropout passes at prediction.
    mc_mode : {"network", "per_sample"}, default="network"
        See :mod:`skstellar.nn.mc_dropout`.
    point_estimate : {"median", "mean"}, default="median"
        Statistic of the MC passes returned by ``predict`` (paper: median).
    input_variance_passes : int or None, default=0
        Networks whose Jacobians give ``sigma_input^2`` at prediction: 0
        (default) the deterministic network (dropout off), i.e. the gradient
        of the mean prediction -- the paper does not say which it uses;
        ``k`` the mean over the first ``k`` MC passes' thinned networks; None
        every pass (``n_mc_passes`` times the cost: the Jacobian costs ~6
        forward passes per star and pass; measured 164 s against 18 s per
        100,000 stars with 50 passes on one loaded core).
    uncertainty : {"calibrated", "mc"}, default="calibrated"
        What ``predict(X, return_std=True)`` returns. ``"mc"``: the paper's
        ``sigma_total = sqrt(model + input + excess)`` (Eq. 11), which on
        simulated data with known truth is ~2x too large (z-score std
        0.45-0.6). ``"calibrated"``: ``sqrt(a (model + excess) + input +
        b^2)``, with ``a`` and ``b`` fitted by maximum likelihood on held-out
        rows (:class:`skstellar.calibration.VarianceCalibrator`, label errors
        ``y_err`` accounted for: the residuals of observed labels have
        variance ``sigma^2 + y_err^2``); the input term is the propagated
        covariance and is not rescaled.
    calibration_fraction : float, default=0.1
        With ``uncertainty="calibrated"`` and ``validation_fraction=0``, the
        seeded fraction of rows held out of training to fit the calibration
        (with a validation split, its rows are used instead and nothing more
        is held out). ``uncertainty="mc"`` holds out nothing: the paper.
    jacobian_gradient : bool, default=True
        Differentiate the loss through ``sigma_input`` (the Jacobian's own
        dependence on the weights, a second-order term), which teaches the
        network to be insensitive to noisy inputs -- the likelihood's exact
        gradient. False treats ``sigma_input`` as a constant per step
        (cheaper; see benchmarks/xp_uncertain_nn.py for the cost of each).
    random_state : int, RandomState or None
    device : str, default="cpu"
    verbose : int, default=0
        1 prints skorch's per-epoch table (train/valid loss, iteration,
        whether the input term is on) and a progress bar for long
        predictions.
    callbacks : list of skorch callbacks or (name, callback) pairs, default=None
        Run during training after the early stopping ``early_stopping``
        builds (:class:`skstellar.nn.input_variance.WarmupEarlyStopping`),
        e.g. an ``LRScheduler``; see
        :func:`skstellar.nn.training.merge_callbacks`. The net trains on
        row indices (the labels live in its likelihood), so scoring
        callbacks need a callable, not a named scikit-learn scorer.

    Attributes
    ----------
    n_outputs_ : int
        Number of labels.
    n_iter_ : int
        Optimiser steps done.
    history_ : skorch.callbacks.History (a list of dict)
        Per-epoch ``train_loss`` (and ``valid_loss``), ``iteration``,
        ``input_term``, ``dur`` (seconds).
    net_ : skstellar.nn.input_variance.InputVarianceNet
        The trained skorch net.
    x_mean_, x_scale_, y_mean_, y_scale_ : ndarray
        Standardisation constants.
    calibrator_ : VarianceCalibrator or None
        ``a`` (``scale_``) and ``b`` (``floor_``, label units) per label.
    calibration_indices_ : ndarray of int
        Rows of ``fit``'s input used for the calibration.

    Notes
    -----
    ``fit(X, y, y_err=None)``: ``X`` is a
    :class:`~skstellar.covariance.CovariantFeatures` (covariance used) or any
    2-D array (no input covariance); ``y`` may contain NaN for missing
    labels; ``y_err`` (same shape as ``y``) are the label uncertainties. In a
    Pipeline pass it as ``pipe.fit(X, y, uncertainnnregressor__y_err=err)``;
    ``GridSearchCV`` and ``cross_val_score`` (``params={...}``) split it with
    the rows.
    """

    def __init__(self, *, hidden=(128, 128), dropout=0.2, activation="relu",
                 excess_activation="softplus", lr=5e-4, weight_decay=1e-5,
                 batch_size=10000, max_iter=20000, warmup_iter=2500, shuffle=False,
                 input_uncertainty=True, standardize=True, validation_fraction=0.0,
                 early_stopping=False, patience=20, model_variance_passes=2, n_mc_passes=50,
                 mc_mode="network", point_estimate="median", input_variance_passes=0,
                 jacobian_gradient=True, uncertainty="calibrated", calibration_fraction=0.1,
                 random_state=None, device="cpu", verbose=0, callbacks=None):
        self._store_init_arguments(locals())

    # ------------------------------------------------------------ checks
    #: Allowed hyperparameter values (the neural base declares the common ones).
    _parameter_constraints = {
        "hidden": [LAYER_SIZES],
        "dropout": [Interval("real", 0, 1, closed="left")],
        "activation": [ACTIVATION],
        "excess_activation": [Options(sorted(POSITIVE_MAPS))],
        "max_iter": [Interval("int", 1, None)],
        "warmup_iter": [Interval("int", 0, None)],
        "shuffle": ["boolean"],
        "input_uncertainty": ["boolean"],
        "standardize": ["boolean"],
        "model_variance_passes": [Interval("int", 0, None)],
        "point_estimate": [Options(("median", "mean"))],
        "input_variance_passes": [None, Interval("int", 0, None)],
        "jacobian_gradient": ["boolean"],
        "uncertainty": [Options(UNCERTAINTY_MODES)],
        "calibration_fraction": [Interval("real", 0, 1, closed="neither")],
    }
    _parameter_rules = (
        Rule(("early_stopping", "validation_fraction"),
             lambda early_stopping, validation_fraction: not early_stopping
             or validation_fraction > 0,
             "early_stopping=True needs validation_fraction > 0"),
    )

    def _validate_features(self, X, reset):
        """(values float64 (n, d), CovariantFeatures or None)."""
        cov = X if isinstance(X, CovariantFeatures) else None
        values = X.values if cov is not None else X
        if cov is not None and cov.feature_names is not None:
            check_finite_columns(cov.values, [str(c) for c in cov.feature_names], what="feature",
                                 hint="Filter these sources before the pipeline.")
        check_numeric_input(values, hint="Filter these sources before the pipeline.")
        values = validate_data(self, values, reset=reset, dtype=np.float64,
                               ensure_min_samples=2 if reset else 1)
        if cov is not None:
            var = cov.variance()
            bad = ~np.isfinite(var) | (var < 0)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise ValueError(
                    f"The input covariance has {int(bad.sum())} NaN/inf or negative "
                    f"variance(s), first at row {r}, feature {c}."
                )
        if reset and cov is not None and cov.feature_names is not None:
            self.feature_names_ = np.asarray(cov.feature_names, dtype=object)
        elif reset:
            self.feature_names_ = np.array([f"x{i}" for i in range(values.shape[1])], dtype=object)
        return values, cov

    def _validate_y(self, y, y_err, n):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        y = check_array(y, ensure_2d=False, dtype=np.float64, ensure_all_finite="allow-nan",
                        input_name="y")
        if y.ndim > 2 or len(y) != n:
            raise ValueError(f"y must have shape (n_samples,) or (n_samples, n_targets) with "
                             f"n_samples={n}; got {y.shape}.")
        if np.isinf(y).any():
            raise ValueError("y contains infinite values; use NaN for missing labels.")
        y2 = y.reshape(n, -1)
        if np.isnan(y2).all(axis=0).any():
            j = int(np.flatnonzero(np.isnan(y2).all(axis=0))[0])
            raise ValueError(f"Label column {j} has no valid (non-NaN) value.")
        if y_err is None:
            err = np.zeros_like(y2)
        else:
            err = check_array(y_err, ensure_2d=False, dtype=np.float64,
                              ensure_all_finite="allow-nan", input_name="y_err")
            err = err.reshape(n, -1) if err.ndim == 1 or err.shape == y2.shape else err
            if err.shape != y2.shape:
                raise ValueError(f"y_err has shape {np.shape(y_err)} but y has {y.shape}.")
            check_non_negative(err, [f"y_err[{j}]" for j in range(err.shape[1])],
                               "label uncertainty", hint="y_err must be >= 0.")
            lost = ~np.isfinite(err) & np.isfinite(y2)
            if lost.any():
                r, j = (int(i) for i in np.argwhere(lost)[0])
                raise ValueError(
                    f"y_err[{j}] has {int(lost.sum())} NaN/inf value(s) where y has a label "
                    f"(first at row {r}); give its uncertainty, or set the label to NaN to "
                    "mask it."
                )
            err = np.where(np.isfinite(err), err, np.nan)
        return y, y2, err

    # --------------------------------------------------------------- fit
    def _build_module(self, n_features, n_labels):
        return build_mlp(n_features, self.hidden, 2 * n_labels, activation=self.activation,
                         dropout=float(self.dropout))

    def fit(self, X, y, y_err=None):
        """Train on features (with covariance) and labels (with errors).

        Parameters
        ----------
        X : CovariantFeatures or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Labels; NaN marks a missing label (masked in the loss).
        y_err : array-like, same shape as ``y``, optional
            1-sigma label uncertainties (NaN where the label is missing).

        Returns
        -------
        self
        """
        validate_parameters(self)
        values, cov = self._validate_features(X, reset=True)
        y, y2, err = self._validate_y(y, y_err, len(values))
        self._y_ndim = y.ndim
        n, d = values.shape
        self.n_outputs_ = L = y2.shape[1]

        if self.standardize:
            self.x_mean_ = values.mean(axis=0)
            sd = values.std(axis=0)
            self.x_scale_ = np.where(sd > 0, sd, 1.0)
            self.y_mean_ = np.nanmean(y2, axis=0)
            sdy = np.nanstd(y2, axis=0)
            self.y_scale_ = np.where(sdy > 0, sdy, 1.0)
        else:
            self.x_mean_, self.x_scale_ = np.zeros(d), np.ones(d)
            self.y_mean_, self.y_scale_ = np.zeros(L), np.ones(L)

        xs = (values - self.x_mean_) / self.x_scale_
        ys = (y2 - self.y_mean_) / self.y_scale_
        vy = (np.nan_to_num(err, nan=0.0) / self.y_scale_) ** 2
        mask = np.isfinite(ys)
        ys = np.where(mask, ys, 0.0)
        use_cov = bool(self.input_uncertainty) and cov is not None and len(cov.blocks) > 0

        plan = plan_training(self.random_state, n, self.validation_fraction)
        self.mc_seed_ = plan.mc_seed
        train_perm, valid_perm = plan.train_perm, plan.valid_perm
        train_idx, valid_idx = np.sort(train_perm), np.sort(valid_perm)
        n_valid = len(valid_idx)
        calibrate = self.uncertainty == "calibrated"
        cal_idx = valid_idx
        if calibrate and n_valid == 0:
            # hold out calibration rows; the paper's split (uncertainty="mc")
            # is left untouched
            n_cal = max(int(round(float(self.calibration_fraction) * n)), 1)
            if n - n_cal < 2:
                raise ValueError(f"Need at least 2 training samples after holding out "
                                 f"calibration_fraction={self.calibration_fraction}; got "
                                 f"n_samples={n}.")
            cal_idx, train_idx = np.sort(train_perm[:n_cal]), np.sort(train_perm[n_cal:])

        dev = self.device
        T = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32), device=dev)  # noqa: E731
        likelihood = InputVarianceLikelihood(
            {"x": T(xs), "y": T(ys), "vy": T(vy), "m": torch.as_tensor(mask, device=dev)},
            TorchCovariance(cov.affine(self.x_mean_, self.x_scale_), device=dev)
            if use_cov else None,
            n_labels=L, excess_activation=self.excess_activation,
            model_variance_passes=int(self.model_variance_passes),
            jacobian_gradient=bool(self.jacobian_gradient))
        bs, max_iter = int(self.batch_size), int(self.max_iter)
        n_batches = -(-len(train_idx) // bs)
        warm = int(self.warmup_iter) if use_cov else 0
        callbacks = []
        if n_valid > 0 and self.early_stopping:
            callbacks.append(("early_stopping", WarmupEarlyStopping(
                patience=int(self.patience), warmup_iter=warm, batches_per_epoch=n_batches,
                sink=print if self.verbose else silent)))
        # One thread at every batch size: these small MLPs gain little from a
        # second thread on 2 cores, and lose 10-30x when other processes
        # compete for the cores (measured: 20 ms vs 580 ms per step at batch
        # 500 under load).
        self.net_ = train_net(
            InputVarianceNet, lambda: self._build_module(d, L), likelihood,
            torch.as_tensor(train_idx), None,
            (torch.as_tensor(valid_idx), None) if n_valid else None,
            init_seed=plan.init_seed, loader_seed=plan.loader_seed,
            callbacks=merge_callbacks(callbacks, self.callbacks), lr=self.lr, batch_size=bs,
            max_epochs=-(-max_iter // n_batches), weight_decay=self.weight_decay, device=dev,
            verbose=self.verbose, drop_last=n_batches > 1 and len(train_idx) % bs == 1,
            valid_batch_size=max(n_valid, 1), single_thread_below=2**62,
            iterator_train__shuffle=bool(self.shuffle), max_iter=max_iter, warmup_iter=warm,
        )
        likelihood.release()  # a saved model does not carry its training set
        self.net_.module_.eval()
        self.n_iter_ = self.net_.n_iter_
        self.n_epochs_ = len(self.net_.history)
        self.n_valid_ = n_valid
        self.calibration_indices_ = cal_idx if calibrate else np.empty(0, dtype=int)
        self.calibrator_ = None
        if calibrate:
            Xc = X[cal_idx] if isinstance(X, CovariantFeatures) else values[cal_idx]
            mean, vm, vi, ve = self._to_label_units(*self._components(Xc)[:4])
            yc = np.where(mask[cal_idx], y2[cal_idx], np.nan)
            self.calibrator_ = VarianceCalibrator().fit(
                yc, mean, np.sqrt(vm + ve), np.sqrt(vi),
                label_std=np.nan_to_num(err[cal_idx], nan=0.0))
        return self

    # ---------------------------------------------------------- internals
    def _prepare(self, X):
        check_is_fitted(self, "net_")
        values, cov = self._validate_features(X, reset=False)
        xs = (values - self.x_mean_) / self.x_scale_
        tcov = None
        if self.input_uncertainty and cov is not None and len(cov.blocks) > 0:
            tcov = TorchCovariance(cov.affine(self.x_mean_, self.x_scale_), device=self.device)
        return xs.astype(np.float32), tcov

    def _components(self, X, n_passes=None, return_samples=False):
        """Standardised point estimate and variance parts (model, input, excess)."""
        xs, tcov = self._prepare(X)
        n, L = len(xs), self.n_outputs_
        P = int(self.n_mc_passes if n_passes is None else n_passes)
        module = self.module_
        dev = self.device
        use_mc = P >= 2 and float(self.dropout) > 0
        P_eff = P if use_mc else 1
        point, v_exc = np.empty((2, n, L), np.float64)
        v_model, v_input = np.zeros((2, n, L), np.float64)
        samples = np.empty((P_eff, n, L), np.float32) if return_samples else None
        # ~2**16 rows (star x pass) per forward/backward call bounds memory
        # (the Jacobian holds L x rows x d floats).
        chunk = max(1, 2**16 // P_eff)
        gen = seeded_generator(self.mc_seed_, dev)
        positive = POSITIVE_MAPS[self.excess_activation]
        progress = Progress(n, self.verbose and n >= 100_000, "MC dropout")
        was = module.training
        module.eval()
        hooks = DropoutHooks(module, P_eff, self.mc_mode, gen) if use_mc else None
        analytic = is_supported_mlp(module)
        # passes whose Jacobians give the input term (0: dropout off)
        n_in = self.input_variance_passes
        n_in = P_eff if n_in is None else (min(int(n_in), P_eff) if use_mc else 0)
        try:
            if hooks is not None:
                hooks.__enter__()
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                m = stop - start
                xb = torch.as_tensor(xs[start:stop], device=dev)
                xr = xb.unsqueeze(0).expand(P_eff, m, -1).reshape(P_eff * m, -1)
                rows_t = torch.arange(start, stop, device=dev)
                if tcov is not None and n_in == P_eff:
                    # all passes: outputs and Jacobians in one go
                    if analytic:
                        # same masks as the hooks (shared per pass), Jacobian
                        # as dense GEMMs without autograd
                        with torch.no_grad():
                            out, J = mlp_forward_with_jacobian(
                                module, xr, L, create_graph=False,
                                dropout_fn=hooks.multiplier if hooks is not None else None)
                    else:
                        xr = xr.detach().requires_grad_(True)
                        with torch.enable_grad():
                            out = module(xr)
                            J = batched_jacobian(out[:, :L], xr).detach()
                    vin = tcov.propagate(J.view(P_eff, m, L, -1), rows_t)
                    v_input[start:stop] = vin.mean(0).double().cpu().numpy()
                else:
                    with torch.inference_mode():
                        if tcov is None:
                            out = _forward_padded_rows(module, xb, P_eff)
                        else:
                            out = module(xr)
                    if tcov is not None:
                        # input term from the first n_in passes (0: the
                        # deterministic network, dropout off)
                        v_input[start:stop] = self._input_variance(
                            xb, tcov, rows_t, n_in, hooks, analytic).double().cpu().numpy()
                out = out.detach().view(P_eff, m, 2 * L)
                mu, exc = out[..., :L], positive(out[..., L:])
                if samples is not None:
                    samples[:, start:stop] = mu.cpu().numpy()
                if self.point_estimate == "median" and P_eff > 1:
                    # the mean of the two middle values for an even count (numpy's median)
                    srt = torch.sort(mu, dim=0).values
                    lo, hi = (P_eff - 1) // 2, P_eff // 2
                    point[start:stop] = (0.5 * (srt[lo] + srt[hi])).double().cpu().numpy()
                else:
                    point[start:stop] = mu.mean(0).double().cpu().numpy()
                if P_eff > 1:
                    v_model[start:stop] = mu.double().var(0, unbiased=True).cpu().numpy()
                v_exc[start:stop] = exc.double().mean(0).cpu().numpy()
                progress(m)
        finally:
            if hooks is not None:
                hooks.__exit__(None, None, None)
            module.train(was)
            progress.close()
        return point, v_model, v_input, v_exc, samples

    def _input_variance(self, xb, tcov, rows_t, n_in, hooks, analytic):
        """Mean of diag(J Sigma J^T) over the first ``n_in`` MC passes (0: dropout off)."""
        module, L = self.module_, self.n_outputs_
        m = len(xb)
        if n_in == 0 or hooks is None:
            fn, reps = None, 1
        else:
            reps = n_in

            def fn(layer, h):
                if hooks.mode == "per_sample":
                    return hooks.multiplier(layer, h)
                if id(layer) not in hooks.masks:  # draw the pass masks if needed
                    hooks.multiplier(layer, h.new_empty((hooks.n_passes,) + tuple(h.shape[1:])))
                mask = hooks.masks[id(layer)][:reps]
                return mask.expand((reps, m) + tuple(h.shape[1:])).reshape(h.shape)
        xr = xb.unsqueeze(0).expand(reps, m, -1).reshape(reps * m, -1)
        if analytic:
            with torch.no_grad():
                _, J = mlp_forward_with_jacobian(module, xr, L, create_graph=False, dropout_fn=fn)
        else:
            if fn is not None:
                raise ValueError(
                    "input_variance_passes >= 1 needs a Sequential MLP; use None or 0.")
            xr = xr.detach().requires_grad_(True)
            with torch.enable_grad():
                J = batched_jacobian(module(xr)[:, :L], xr).detach()
        return tcov.propagate(J.view(reps, m, L, -1), rows_t).mean(0)

    def _to_label_units(self, point, *variances):
        mean = point * self.y_scale_ + self.y_mean_
        return (mean,) + tuple(v * self.y_scale_**2 for v in variances)

    def _shape(self, a):
        return a.ravel() if self._y_ndim == 1 else a

    # --------------------------------------------------------------- API
    def predict(self, X, return_std=False):
        """Point estimate (MC median by default) and optionally the total std.

        Parameters
        ----------
        X : CovariantFeatures or array-like of shape (n_samples, n_features)
        return_std : bool, default=False
            Also return the 1-sigma uncertainty: with
            ``uncertainty="calibrated"`` (default) ``sqrt(a (model + excess)
            + input + b^2)``, with ``"mc"`` the paper's ``sigma_total =
            sqrt(model + input + excess)`` (Eq. 11). Label units.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_labels)
        y_std : ndarray, same shape, only if ``return_std``
        """
        if not return_std:
            point, *_ = self._components(X)
            return self._shape(point * self.y_scale_ + self.y_mean_)
        u = self.predict_uncertainty(X)
        return u["prediction"], u["total_std"]

    def predict_interval(self, X, alpha=ALPHA_1SIGMA):
        """Central Gaussian interval of nominal coverage ``1 - alpha`` (label units).

        Returns
        -------
        lower, upper : ndarray, shaped like ``predict(X)``
        """
        return gaussian_interval(*self.predict(X, return_std=True), alpha)

    def predict_uncertainty(self, X):
        """Point estimate and the parts of its uncertainty, in label units.

        Returns
        -------
        dict
            The paper's parts ``"model_var"``, ``"input_var"``,
            ``"excess_var"`` (variances, uncalibrated); ``"prediction"``;
            the parts of the returned std ``"model_std"`` (``sqrt(a (model +
            excess))``), ``"input_std"``, ``"intrinsic_std"`` (``b``);
            ``"total_std"`` (what ``predict(X, return_std=True)`` returns)
            and ``"raw_std"`` (the paper's Eq. 11 total). Each of shape
            (n_samples, n_labels) (1-D for a 1-D ``y`` at fit).
        """
        mean, vm, vi, ve = self._to_label_units(*self._components(X)[:4])
        calibrated = self.uncertainty == "calibrated"
        calibrator = getattr(self, "calibrator_", None) if calibrated else None
        if calibrated and calibrator is None:
            raise ValueError("uncertainty='calibrated' but this model was fitted with "
                             "uncertainty='mc' (no calibrator): refit it.")
        parts = uncertainty_parts(mean, np.sqrt(vm + ve), np.sqrt(vi), calibrator)
        out = {"model_var": vm, "input_var": vi, "excess_var": ve, **parts}
        return {k: self._shape(np.asarray(v)) for k, v in out.items()}

    def predict_samples(self, X, n_passes=None):
        """All MC-dropout passes of the label outputs.

        Returns
        -------
        ndarray of shape (n_passes, n_samples[, n_labels])
        """
        *_, samples = self._components(X, n_passes=n_passes, return_samples=True)
        s = samples.astype(np.float64) * self.y_scale_ + self.y_mean_
        return s[..., 0] if self._y_ndim == 1 else s

    def input_jacobian(self, X):
        """``d y / d x`` of the deterministic network (dropout off), in original units.

        Returns
        -------
        ndarray of shape (n_samples, n_labels, n_features)
        """
        xs, _ = self._prepare(X)
        module = self.module_
        out = []
        step = 8192
        for start in range(0, len(xs), step):
            xb = torch.as_tensor(xs[start : start + step], device=self.device).requires_grad_(True)
            with torch.enable_grad():
                mu = module(xb)[:, : self.n_outputs_]
                out.append(batched_jacobian(mu, xb).detach().double().cpu().numpy())
        return np.concatenate(out) * self.y_scale_[None, :, None] / self.x_scale_[None, None, :]

    def feature_attention(self, X):
        """Per-feature attention ``std_over_stars(dy_j/dx_i * x_i)`` (Eq. 13).

        Returns
        -------
        pandas.DataFrame
            Index: feature names; columns: labels (``y0, y1, ...``); values in
            label units.
        """
        values = X.values if isinstance(X, CovariantFeatures) else np.asarray(X, dtype=np.float64)
        att = (self.input_jacobian(X) * values[:, None, :]).std(axis=0).T  # (d, L)
        return pd.DataFrame(att, index=list(self.feature_names_),
                            columns=[f"y{j}" for j in range(self.n_outputs_)])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()  # multi_output, non_deterministic: the base's
        tags.target_tags.single_output = True
        tags.input_tags.allow_nan = False
        return tags
