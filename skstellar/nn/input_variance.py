"""Training with the Jacobian input-variance term, as skorch hooks.

The Gaia XP uncertain neural network (:class:`skstellar.xp.UncertainNNRegressor`)
minimises a Gaussian likelihood whose variance includes the input
covariance propagated through the network's Jacobian, ``diag(J Sigma_x
J^T)``, switched on after a warm-up. Here that is three skorch pieces on the
shared training core (:func:`skstellar.nn.training.train_net`): the criterion
(:class:`InputVarianceLikelihood`), the net that counts optimiser steps and
switches the input term on (:class:`InputVarianceNet`) and early stopping
aware of the switch (:class:`WarmupEarlyStopping`). The training data given
to the net are row indices into the tensors the likelihood holds (the
covariance is looked up per row).
"""

from __future__ import annotations

import itertools

import torch
from skorch.callbacks import EarlyStopping
from skorch.dataset import unpack_data

from .lean import LeanNeuralNet
from .uncertainty import batched_jacobian, gaussian_nll, is_supported_mlp, mlp_forward_with_jacobian

__all__ = ["POSITIVE_MAPS", "InputVarianceLikelihood", "InputVarianceNet", "WarmupEarlyStopping"]

#: Positive maps of the excess-variance outputs.
POSITIVE_MAPS = {
    "softplus": torch.nn.functional.softplus,
    "exp": torch.exp,
}


class InputVarianceLikelihood(torch.nn.Module):
    """Gaussian likelihood with label, model, excess and input variances (XP paper, Eq. 9-10).

    ``s = ln(sigma_y^2 + sigma_model^2 + sigma_input^2 + sigma_excess^2)``
    per label, with missing labels masked (:func:`gaussian_nll`).

    Parameters
    ----------
    data : dict of tensors
        ``"x"`` standardised inputs (n, d), ``"y"`` labels (n, L) (0 where
        missing), ``"vy"`` label variances (n, L), ``"m"`` bool mask of
        observed labels (n, L); rows are looked up by index.
    covariance : TorchCovariance or None
        Input covariance of the rows; None: no input term.
    n_labels : int
        ``L``; the network has ``2 L`` outputs (labels, raw excess terms).
    excess_activation : {"softplus", "exp"}, default="softplus"
        Positive map of the excess outputs.
    model_variance_passes : int, default=2
        ``K`` stochastic passes per training batch; with ``K >= 2`` their
        per-star variance (detached) is ``sigma_model^2``.
    jacobian_gradient : bool, default=True
        Differentiate through ``sigma_input`` (second order).
    """

    def __init__(self, data, covariance, n_labels, excess_activation="softplus",
                 model_variance_passes=2, jacobian_gradient=True):
        super().__init__()
        self.data = data
        self.covariance = covariance
        self.n_labels = int(n_labels)
        self.positive = POSITIVE_MAPS[excess_activation]
        self.model_variance_passes = int(model_variance_passes)
        self.jacobian_gradient = bool(jacobian_gradient)

    def release(self):
        """Drop the training data and covariance (after training; keeps pickles small)."""
        self.data, self.covariance = None, None

    def passes(self, training):
        """Stochastic passes per batch (``K``; 1 when evaluating)."""
        K = self.model_variance_passes
        return K if training and K >= 2 else 1

    def forward_passes(self, module, rows, with_input, training):
        """Outputs of ``K`` passes of the rows and, with the input term, the Jacobian.

        Returns
        -------
        out : tensor of shape (K n_rows, 2 L)
        J : tensor or None
            ``d mu / d x`` of the first pass (analytic for a plain MLP), or
            None when it is taken later from ``x_in`` by autograd.
        x_in : tensor
            The inputs of all passes.
        """
        K, L = self.passes(training), self.n_labels
        xb = self.data["x"][rows]
        xk = xb.repeat(K, 1) if K > 1 else xb
        create_graph = training and self.jacobian_gradient
        if with_input and is_supported_mlp(module):
            # the input term uses the Jacobian of the first pass only (one more
            # sample of the same network family; halves the Jacobian cost for K = 2)
            out1, J = mlp_forward_with_jacobian(module, xb, L, create_graph=create_graph)
            out = out1 if K == 1 else torch.cat([out1, module(xb.repeat(K - 1, 1))])
            return out, J, xk
        if with_input:
            xk = xk.detach().requires_grad_(True)
        return module(xk), None, xk

    def forward(self, y_pred, rows, with_input, training):
        """Mean negative log-likelihood of a batch of rows (a scalar)."""
        out, J, xk = y_pred
        K, L, B = self.passes(training), self.n_labels, len(rows)
        data = self.data
        mu, exc = out[:, :L], self.positive(out[:, L:])
        var = data["vy"][rows].repeat(K, 1) + exc
        if K > 1:
            var = var + mu.detach().view(K, B, L).var(0, unbiased=True).repeat(K, 1)
        if with_input:
            if J is None:
                J = batched_jacobian(mu, xk, create_graph=training and self.jacobian_gradient)
                vin = self.covariance.propagate(J.view(K, B, L, -1), rows).reshape(K * B, L)
            else:
                vin = self.covariance.propagate(J, rows).repeat(K, 1)
            var = var + vin
        var = var.clamp_min(1e-12)
        return gaussian_nll(mu, data["y"][rows].repeat(K, 1), var, data["m"][rows].repeat(K, 1))


class InputVarianceNet(LeanNeuralNet):
    """A skorch net trained on row indices with :class:`InputVarianceLikelihood`.

    Parameters
    ----------
    *args, **kwargs
        Those of :class:`skorch.NeuralNet`; ``criterion`` is an
        :class:`InputVarianceLikelihood`.
    max_iter : int or None, default=None
        Stop after this many optimiser steps (also inside an epoch).
    warmup_iter : int, default=0
        Steps before the input term enters the training loss (the
        validation loss includes it once more than ``warmup_iter`` steps
        are done).

    Attributes
    ----------
    n_iter_ : int
        Optimiser steps done.

    Notes
    -----
    The epoch's ``train_loss`` is the mean of its batch losses (unweighted,
    as the paper's loop); ``iteration`` and ``input_term`` are recorded per
    epoch.
    """

    def __init__(self, *args, max_iter=None, warmup_iter=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_iter = max_iter
        self.warmup_iter = warmup_iter

    def on_train_begin(self, net, X=None, y=None, **kwargs):  # noqa: D102
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.n_iter_ = 0

    def input_term(self, training):
        """Whether the loss includes the input term now."""
        if getattr(self.criterion_, "covariance", None) is None:
            return False
        warm = int(self.warmup_iter)
        return self.n_iter_ >= warm if training else self.n_iter_ > warm

    def infer(self, x, training=False):
        """Forward passes of the rows ``x`` (see :meth:`InputVarianceLikelihood.forward_passes`)."""
        return self.criterion_.forward_passes(self.module_, x, self.input_term(training),
                                              training)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """The likelihood of the rows ``X`` (``y_true`` is unused: the labels are by row)."""
        return self.criterion_(y_pred, X, self.input_term(training), training)

    def _step(self, batch, training):
        """Loss and outputs of a batch of row indices (moved to the likelihood's device).

        The module's train/eval mode is set once per pass by :meth:`run_single_epoch`,
        not here: ``torch.nn.Module.train`` costs ~3 % of a step of a small network.
        """
        rows, y = unpack_data(batch)
        rows = rows.to(self.criterion_.data["x"].device)
        y_pred = self.infer(rows, training=training)
        return {"loss": self.get_loss(y_pred, y, X=rows, training=training), "y_pred": y_pred}

    def train_step_single(self, batch, **fit_params):  # noqa: D102
        step = self._step(batch, training=True)
        step["loss"].backward()
        return step

    def validation_step(self, batch, **fit_params):  # noqa: D102
        # gradients stay on: the autograd Jacobian needs them
        return self._step(batch, training=False)

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """One pass over ``iterator`` (training stops at ``max_iter`` steps)."""
        if iterator is None:
            return
        self._set_training(training)
        if training and self.max_iter is not None:
            iterator = itertools.islice(iterator, max(int(self.max_iter) - self.n_iter_, 0))
        losses = []
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            losses.append(float(step["loss"].detach()))
            if training:
                self.n_iter_ += 1
            self.notify("on_batch_end", batch=batch, training=training, **step)
        self._record(prefix, sum(losses), len(losses))
        if training:
            self.history.record("iteration", self.n_iter_)
            self.history.record("input_term", self.input_term(training=False))


class WarmupEarlyStopping(EarlyStopping):
    """Early stopping on ``valid_loss`` aware of a warm-up without the input term.

    Losses with and without the input term are not comparable: the best-loss
    bookkeeping restarts in the epoch where the term switches on, and
    training never stops before. The best weights are restored at the end.

    Parameters
    ----------
    patience : int
        Epochs without improvement before stopping.
    warmup_iter : int, default=0
        Steps without the input term (0: none).
    batches_per_epoch : int, default=1
        Batches per epoch, to find the epoch where the warm-up ends.
    sink : callable, default=print
        Where the stop message goes (when the net is verbose).
    """

    def __init__(self, patience, warmup_iter=0, batches_per_epoch=1, sink=print):
        super().__init__(monitor="valid_loss", patience=patience, threshold=0.0,
                         threshold_mode="abs", sink=sink, load_best=True)
        self.warmup_iter = warmup_iter
        self.batches_per_epoch = batches_per_epoch

    def on_epoch_end(self, net, **kwargs):  # noqa: D102
        it, warm = net.n_iter_, int(self.warmup_iter)
        if warm > 0 and it - int(self.batches_per_epoch) < warm <= it:
            self.dynamic_threshold_, self.misses_ = float("inf"), 0
        score = net.history[-1, "valid_loss"]
        if score < self.dynamic_threshold_:
            self.dynamic_threshold_, self.misses_ = score, 0
            self.best_epoch_ = net.history[-1, "epoch"]
            self.best_model_weights_ = {k: v.detach().clone()
                                        for k, v in net.module_.state_dict().items()}
        else:
            self.misses_ += 1
        if self.misses_ >= self.patience and it >= warm:
            if net.verbose:
                self._sink(f"Stopping since valid_loss has not improved in the last "
                           f"{self.patience} epochs.", verbose=net.verbose)
            raise KeyboardInterrupt
