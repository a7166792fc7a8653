"""The skorch-backed base class of skstellar's neural regressors.

``BaseNeuralRegressor`` is a plain scikit-learn ``BaseEstimator`` with
explicit hyperparameters that builds a ``skorch.NeuralNet`` as ``net_``
inside ``fit`` (wrapping, not subclassing, skorch keeps scikit-learn's rules
in one clean class). It provides, for every method:

* ``predict(X)`` and ``predict(X, return_std=True)`` -> ``(mean, std)``, with
  the spread from vectorised Monte Carlo dropout when the network has dropout
  (:func:`skstellar.nn.mc_dropout.mc_dropout_predict`);
* ``random_state`` seeding of weight initialisation, training dropout, the
  validation split, the data-loader shuffling and the MC-dropout masks,
  without touching the caller's global torch RNG;
* a seeded validation split with early stopping (best weights kept in
  memory) and an optional ``ReduceLROnPlateau`` schedule, and any skorch
  callbacks given as ``callbacks=`` (the training core is
  :mod:`skstellar.nn.training`);
* float32 inside (float64 accepted), CPU by default (``device``), skorch's
  epoch table as progress when ``verbose``.

How to subclass: see :class:`BaseNeuralRegressor`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import skorch
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._validation import check_finite_columns, check_numeric_input
from ..parameters import SKORCH_CALLBACKS, Interval, Options, validate_parameters
from .mc_dropout import MC_MODES, dropout_layers, inference_forward, mc_dropout_predict
from .threads import torch_threads
from .training import Progress, flag_callbacks, merge_callbacks, plan_training, train_net

__all__ = ["BaseNeuralRegressor", "BaseNeuralClassifier", "NeuralEstimatorBase"]


def _check_input_values(X):
    """Name the column and first row of a non-numeric or NaN/inf entry (sklearn does not)."""
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        try:
            values = X.to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            pass  # non-numeric columns: check_numeric_input names them
        else:
            check_finite_columns(
                values, [str(c) for c in X.columns], index=X.index,
                hint="Remove or fill those rows first; nothing is dropped silently.",
            )
    check_numeric_input(X)


class NeuralEstimatorBase(BaseEstimator):
    """Shared machinery of skstellar's torch estimators (subclassed, not used directly).

    Common hyperparameters (each subclass exposes them in its ``__init__``):

    lr : float
        Adam learning rate.
    batch_size : int
        Mini-batch size.
    max_epochs : int
        Maximum number of training epochs.
    weight_decay : float
        Adam weight decay (L2).
    validation_fraction : float
        Fraction of the rows given to ``fit`` held out (seeded) to monitor the
        validation loss; 0 disables the split, early stopping and the schedule.
    early_stopping : bool
        Stop when the validation loss has not improved for ``patience``
        epochs and restore the best weights.
    patience : int
        Early-stopping patience in epochs.
    lr_schedule : {None, "plateau"}
        ``"plateau"`` multiplies the learning rate by ``lr_factor`` after
        ``lr_patience`` epochs without validation improvement.
    n_mc_passes : int
        Monte Carlo dropout passes used by ``predict``; 0 gives a single
        deterministic pass (dropout off) and no spread.
    mc_mode : {"network", "per_sample"}
        Mask sampling scheme of MC dropout (see :mod:`skstellar.nn.mc_dropout`).
    random_state : int, RandomState or None
        Seed for everything stochastic; a fixed int gives identical fits and
        predictions.
    device : str
        torch device, ``"cpu"`` by default.
    verbose : int
        0 silent; 1 prints skorch's per-epoch table and a progress bar for
        long MC predictions.
    callbacks : None or list of skorch callbacks or (name, callback) pairs
        Run during training after the ones the shortcuts above build
        (``EarlyStopping``, ``LRScheduler``, ``Checkpoint``, ``EpochScoring``,
        ``ProgressBar``, ...); one named ``"early_stopping"`` or
        ``"lr_schedule"`` replaces the shortcut's. Copied at ``fit``.
    """

    #: Improvement early stopping requires (``threshold`` of :func:`flag_callbacks`).
    _early_stopping_threshold = None

    #: Train small batches on one thread (right for small dense networks;
    #: convolutional networks on long spectra set it to False).
    _single_thread_training = True

    _common_params = (
        "lr", "batch_size", "max_epochs", "weight_decay", "validation_fraction",
        "early_stopping", "patience", "lr_schedule", "lr_factor", "lr_patience",
        "n_mc_passes", "mc_mode", "random_state", "device", "verbose", "callbacks",
    )

    def _store_init_arguments(self, init_locals):
        """Store every ``__init__`` argument unchanged as an attribute of the same name.

        Subclasses with many parameters call ``self._store_init_arguments(locals())``
        first thing in ``__init__``; scikit-learn's ``get_params`` reads the
        names from the ``__init__`` signature.
        """
        for name, value in init_locals.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    # ------------------------------------------------------------------ hooks
    def _build_module(self, n_features: int, n_outputs: int) -> torch.nn.Module:
        raise NotImplementedError

    def _build_criterion(self) -> torch.nn.Module:
        return torch.nn.MSELoss()

    #: Allowed values of the hyperparameters (checked at ``fit`` by
    #: :func:`skstellar.parameters.validate_parameters`; subclasses add theirs).
    _parameter_constraints = {
        "lr": [Interval("real", 0, None, closed="neither")],
        "batch_size": [Interval("int", 1, None)],
        "max_epochs": [Interval("int", 1, None)],
        "weight_decay": [Interval("real", 0, None)],
        "validation_fraction": [Interval("real", 0, 1, closed="left")],
        "early_stopping": ["boolean"],
        "patience": [Interval("int", 1, None)],
        "lr_schedule": [None, Options(("plateau",))],
        "lr_factor": [Interval("real", 0, 1, closed="neither")],
        "lr_patience": [Interval("int", 0, None)],
        "n_mc_passes": [Interval("int", 0, None)],
        "mc_mode": [Options(MC_MODES)],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "verbose": [Interval("int", 0, None), "boolean"],
        "callbacks": [None, SKORCH_CALLBACKS],
    }

    # ------------------------------------------------------------ validation
    def _validate_X(self, X, reset, dtype=np.float32):
        _check_input_values(X)
        X = validate_data(self, X, reset=reset, dtype=np.float64, ensure_min_samples=1)
        return X.astype(dtype, copy=False)

    def _validate_Xy(self, X, y):
        _check_input_values(X)
        if y is not None:
            check_numeric_input(y, what="y")
        X, y = validate_data(
            self, X, y, dtype=np.float64, multi_output=True, y_numeric=True,
            ensure_min_samples=2,
        )
        return X.astype(np.float32), np.asarray(y, dtype=np.float64)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Train the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input features (a DataFrame keeps its column names as
            ``feature_names_in_``).
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.

        Returns
        -------
        self
        """
        validate_parameters(self)
        X, y = self._validate_Xy(X, y)
        self._y_ndim = y.ndim
        y2 = y.reshape(len(y), -1).astype(np.float32)
        self.n_outputs_ = y2.shape[1]
        return self._train(X, self._transform_y_fit(y2), self.n_outputs_)

    def _train(self, X, y2, n_module_outputs):
        """Seeded split, skorch net, training (:mod:`skstellar.nn.training`); sets ``net_``."""
        plan = plan_training(self.random_state, len(X), self.validation_fraction)
        self.mc_seed_ = plan.mc_seed
        train_idx, valid_idx = plan.train_perm, plan.valid_perm
        # a subclass without a ``callbacks`` parameter trains with the shortcuts only
        callbacks = merge_callbacks(self._flag_callbacks() if len(valid_idx) else [],
                                    getattr(self, "callbacks", None))
        bs = int(self.batch_size)
        self.net_ = train_net(
            skorch.NeuralNet, lambda: self._build_module(X.shape[1], n_module_outputs),
            self._build_criterion(), X[train_idx], y2[train_idx],
            (X[valid_idx], y2[valid_idx]) if len(valid_idx) else None,
            init_seed=plan.init_seed, loader_seed=plan.loader_seed, callbacks=callbacks, lr=self.lr,
            batch_size=bs, max_epochs=self.max_epochs, weight_decay=self.weight_decay,
            device=self.device, verbose=self.verbose,
            # BatchNorm cannot train on a batch of one row: drop a last singleton batch.
            drop_last=len(train_idx) % bs == 1,
            single_thread_below=256 if self._single_thread_training else 0,
        )
        self.n_epochs_ = len(self.net_.history)
        self.n_valid_ = len(valid_idx)
        self.validation_indices_ = np.sort(valid_idx)  # rows calibration may use
        return self

    def _flag_callbacks(self):
        """Callbacks of the ``early_stopping``/``lr_schedule`` shortcuts (with a split)."""
        return flag_callbacks(
            early_stopping=self.early_stopping, patience=self.patience,
            lr_schedule=self.lr_schedule, lr_factor=self.lr_factor,
            lr_patience=self.lr_patience, verbose=self.verbose,
            threshold=self._early_stopping_threshold)

    def _model_inputs(self, Xv):
        """(network inputs, input-error information or None) of validated ``Xv`` (hook)."""
        return Xv, None

    # target scaling hooks (identity by default)
    def _transform_y_fit(self, y2):
        return y2

    def _inverse_transform_y(self, y2):
        return y2

    # --------------------------------------------------------------- predict
    @property
    def module_(self):
        """The trained torch module."""
        check_is_fitted(self, "net_")
        return self.net_.module_

    @property
    def history_(self):
        """The per-epoch training history of skorch (train/valid loss, ...)."""
        check_is_fitted(self, "net_")
        return self.net_.history

    def _has_dropout(self) -> bool:
        return len(dropout_layers(self.module_)) > 0

    def _format(self, a, std=False):
        """Outputs in target units and shape; a spread (``std``) only scales by ``|_y_scale_|``."""
        a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
        if not std:
            a = self._inverse_transform_y(a)
        elif getattr(self, "_y_scale_", None) is not None:
            a = a * np.abs(self._y_scale_)
        return a.ravel() if self._y_ndim == 1 else a

    def _deterministic(self, X):
        """One forward pass with dropout off, in row chunks.

        Wide inputs (spectra) run chunk-parallel: each of ``n`` Python
        threads (``n`` = torch's thread count) pushes whole chunks through
        the network with one intra-op thread, instead of every layer being
        split across threads. Small cache-sized chunks and in-place
        activations (:func:`inference_forward`) cut the memory traffic of the
        memory-bound early convolutions; on a shared 2-core machine the
        chunk-parallel scheme also avoids OpenMP barriers waiting on a
        descheduled thread. A row's output does not depend on the chunking
        (every layer acts per row in eval mode), so results equal one
        full-batch call to float32 rounding.
        """
        module = self.module_
        was = module.training
        module.eval()
        step = self._rows_per_chunk()
        starts = range(0, len(X), step)
        forward = inference_forward(module)

        def run(start):
            with torch.inference_mode():
                xb = torch.as_tensor(X[start : start + step], device=self.device)
                return forward(xb).float().cpu().numpy()

        n_workers = min(torch.get_num_threads(), len(starts))
        wide = int(getattr(self, "n_features_in_", 1)) > 256
        try:
            if wide and n_workers > 1 and str(self.device) == "cpu":
                with torch_threads(1), ThreadPoolExecutor(n_workers) as pool:
                    out = list(pool.map(run, starts))
            else:
                out = [run(start) for start in starts]
        finally:
            module.train(was)
        return np.concatenate(out) if out else np.empty((0, self.n_outputs_), np.float32)

    def _rows_per_chunk(self):
        """Rows per forward call at prediction time.

        Wide inputs (spectra) make wide activations: a CNN on 4201 pixels
        holds 16 x 4199 floats per row after its first convolution, so a
        chunk keeps a forward call near 2**17 input values (31 spectra of
        4201 pixels, ~8 MB for the widest activation, within the shared L3
        cache) - measured fastest per core on the 2-core CPU (16-32 rows:
        ~2x the throughput of 124-row chunks, see benchmarks/throughput.py)
        - and bounds memory. Narrow inputs use large chunks.
        """
        n_features = int(getattr(self, "n_features_in_", 1))
        return 65536 if n_features <= 256 else max(8, 2**17 // n_features)

    def _mc_batch_rows(self, n_passes):
        n_features = int(getattr(self, "n_features_in_", 1))
        if n_features <= 256:
            return None  # mc_dropout_predict's default
        # MC passes of wide inputs: ~2**19 input values per forward call
        # (unchanged; the passes already make each call large).
        return max(n_passes, 16, 2**19 // n_features)

    def _mc(self, X, n_passes, return_samples=False):
        progress = Progress(len(X), self.verbose and len(X) >= 100_000, "MC dropout")
        try:
            return mc_dropout_predict(
                self.module_, X, n_passes, mode=self.mc_mode, random_state=self.mc_seed_,
                device=self.device, return_samples=return_samples, progress=progress,
                batch_rows=self._mc_batch_rows(n_passes),
            )
        finally:
            progress.close()

    def predict(self, X, return_std=False):
        """Predict the targets, optionally with their MC-dropout standard deviation.

        With ``n_mc_passes > 0`` and dropout in the network, the prediction is
        the mean of ``n_mc_passes`` Monte Carlo dropout passes and ``std`` their
        standard deviation (the model uncertainty); otherwise a single pass
        with dropout off (``return_std=True`` then raises).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default=False
            Also return the standard deviation.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_targets)
        y_std : ndarray, same shape, only if ``return_std``
        """
        check_is_fitted(self, "net_")
        X = self._validate_X(X, reset=False)
        n_passes = int(self.n_mc_passes)
        if n_passes > 1 and self._has_dropout():
            mean, std = self._mc(X, n_passes)
            mean, std = self._format(mean), self._format(std, std=True)
            return (mean, std) if return_std else mean
        if return_std:
            raise ValueError(
                "return_std=True needs Monte Carlo dropout: set n_mc_passes >= 2 and a "
                "network with dropout > 0."
            )
        return self._format(self._deterministic(X))

    def predict_samples(self, X, n_passes=None):
        """All Monte Carlo dropout passes.

        Returns
        -------
        samples : ndarray of shape (n_passes, n_samples) or (n_passes, n_samples, n_targets)
        """
        check_is_fitted(self, "net_")
        inputs, _ = self._model_inputs(self._validate_X(X, reset=False))
        n_passes = int(self.n_mc_passes if n_passes is None else n_passes)
        if n_passes < 2 or not self._has_dropout():
            raise ValueError("predict_samples needs n_passes >= 2 and dropout in the network.")
        _, _, samples = self._mc(inputs, n_passes, return_samples=True)
        P, n = samples.shape[:2]
        s = self._inverse_transform_y(samples.reshape(P * n, -1).astype(np.float64))
        s = s.reshape(P, n, -1)
        return s[..., 0] if self._y_ndim == 1 else s

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.non_deterministic = self.random_state is None
        return tags


class BaseNeuralRegressor(RegressorMixin, NeuralEstimatorBase):
    """Base class for skstellar's torch regressors.

    A subclass declares its hyperparameters in ``__init__`` (including the
    common ones of :class:`NeuralEstimatorBase`, listed in ``_common_params``)
    and implements ``_build_module(n_features, n_outputs)`` and
    ``_build_criterion()``; ``fit``, ``predict(X, return_std=True)`` and
    ``predict_samples`` come from here.
    """


class BaseNeuralClassifier(ClassifierMixin, NeuralEstimatorBase):
    """Base class for skstellar's torch classifiers.

    Labels of any type are encoded with ``classes_`` (sorted, as scikit-learn
    does); the network has one output per class. The default criterion is
    binary cross-entropy on one-hot targets with a sigmoid per output (the
    galaxy CNN paper's choice); ``predict_proba`` normalises the per-class
    sigmoids to sum to one. With Monte Carlo dropout (``n_mc_passes >= 2`` and
    dropout in the network) the probabilities are averaged over the passes.
    """

    def _build_criterion(self):
        return torch.nn.BCEWithLogitsLoss()

    def _validate_Xy(self, X, y):
        _check_input_values(X)
        if y is not None and np.asarray(y).dtype.kind == "f":
            check_numeric_input(y, what="y")  # NaN labels
        X, y = validate_data(self, X, y, dtype=np.float64, ensure_min_samples=2)
        check_classification_targets(y)
        return X.astype(np.float32), y

    def fit(self, X, y):
        """Train the classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (strings, ints, bools).

        Returns
        -------
        self
        """
        validate_parameters(self)
        X, y = self._validate_Xy(X, y)
        enc = LabelEncoder().fit(y)
        self.classes_ = enc.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"Classifier can't train when only one class is present: {self.classes_}."
            )
        onehot = np.eye(len(self.classes_), dtype=np.float32)[enc.transform(y)]
        self._y_ndim = 1
        self.n_outputs_ = 1
        return self._train(X, onehot, len(self.classes_))

    @staticmethod
    def _proba_from_logits(logits):
        # float64 on purpose: torch's float32 sigmoid takes a vectorised path
        # for most elements and a scalar one for the tail of the buffer, which
        # differ by one float32 ulp (~6e-8), so a star's probability would
        # depend on its row position. In float64 the ulp is ~1e-16 and the
        # probabilities are invariant to row order and batching at any
        # tolerance scikit-learn checks.
        p = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
        return p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-12)

    def predict_proba(self, X):
        """Class probabilities, columns ordered as ``classes_``.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self, "net_")
        X = self._validate_X(X, reset=False)
        n_passes = int(self.n_mc_passes)
        if n_passes > 1 and self._has_dropout():
            mean, _ = mc_dropout_predict(
                self.module_, X, n_passes, mode=self.mc_mode, random_state=self.mc_seed_,
                device=self.device, output_transform=self._normalised_sigmoid,
                batch_rows=self._mc_batch_rows(n_passes),
            )
            return mean.astype(np.float64)
        return self._proba_from_logits(self._deterministic(X)).astype(np.float64)

    @staticmethod
    def _normalised_sigmoid(logits):
        # float64 for the same reason as _proba_from_logits.
        p = torch.sigmoid(logits.double())
        return p / p.sum(dim=-1, keepdim=True).clamp_min(1e-12)

    def predict(self, X):
        """Most probable class of each sample."""
        proba = self.predict_proba(X)  # checks fitted first
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_samples(self, X, n_passes=None):  # noqa: D102
        raise NotImplementedError("Use predict_proba for classifiers.")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = False
        return tags
