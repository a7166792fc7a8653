"""The one training core of skstellar's neural estimators.

Every torch estimator trains through the pieces here, so each is written
once: seeds (:func:`seed_from`, :func:`draw_seed`), the train/validation
split (:func:`seeded_split`, and :func:`plan_training` for all of a fit's
seeds and split), the shortcut and user callbacks (:func:`flag_callbacks`,
:func:`merge_callbacks`), the seeded skorch net (:func:`train_net`) and
progress output (:class:`Progress`, :func:`silent`).
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import torch
from sklearn.utils import check_random_state
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from .loaders import ArrayBatchLoader
from .threads import training_threads

__all__ = [
    "SEED_MODULUS",
    "Progress",
    "draw_seed",
    "TrainingPlan",
    "flag_callbacks",
    "merge_callbacks",
    "plan_training",
    "seed_from",
    "seeded_split",
    "silent",
    "train_net",
]

#: Seeds are integers in ``[0, SEED_MODULUS)`` (valid for numpy and torch).
SEED_MODULUS = 2**31 - 1


def seed_from(random_state) -> int:
    """An integer seed from an int, a ``RandomState`` or None.

    Parameters
    ----------
    random_state : int, numpy.random.RandomState or None
        An int is reduced modulo :data:`SEED_MODULUS`; a ``RandomState``
        gives its next draw; None draws fresh entropy.

    Returns
    -------
    int
        Seed in ``[0, SEED_MODULUS)``.

    Examples
    --------
    >>> seed_from(7), seed_from(2**31 - 1 + 7)
    (7, 7)
    """
    if isinstance(random_state, (int, np.integer)):
        return int(random_state) % SEED_MODULUS
    return draw_seed(check_random_state(random_state))


def draw_seed(rng) -> int:
    """The next integer seed in ``[0, SEED_MODULUS)`` from a ``RandomState``."""
    return int(rng.randint(0, SEED_MODULUS))


def seeded_split(n, validation_fraction, rng):
    """Seeded hold-out of ``round(validation_fraction * n)`` rows (at least one if > 0).

    Parameters
    ----------
    n : int
        Number of rows.
    validation_fraction : float
        Fraction held out, in ``[0, 1)``; 0 holds out nothing.
    rng : numpy.random.RandomState
        Draws the permutation (one ``rng.permutation(n)`` call).

    Returns
    -------
    train_idx, valid_idx : ndarray of int
        In the permutation's order (sort them for row order).

    Raises
    ------
    ValueError
        When fewer than two training rows remain.
    """
    fraction = float(validation_fraction)
    n_valid = int(round(fraction * n))
    if fraction > 0:
        n_valid = max(n_valid, 1)
    if n - n_valid < 2:
        raise ValueError(
            f"Need at least 2 training samples after holding out validation_fraction="
            f"{validation_fraction}; got n_samples={n}."
        )
    perm = rng.permutation(n)
    return perm[n_valid:], perm[:n_valid]


class TrainingPlan(NamedTuple):
    """The seeds and the split of one fit (see :func:`plan_training`)."""

    mc_seed: int
    train_perm: np.ndarray
    valid_perm: np.ndarray
    loader_seed: int
    init_seed: int


def plan_training(random_state, n, validation_fraction):
    """Seeds and split of a fit, drawn once in a fixed order from ``random_state``.

    In order: the MC-dropout seed, the split (:func:`seeded_split`), the
    batch-shuffling seed, the initialisation seed.

    Parameters
    ----------
    random_state : int, RandomState or None
    n : int
        Rows given to ``fit``.
    validation_fraction : float
        Fraction held out.

    Returns
    -------
    TrainingPlan
        ``train_perm`` and ``valid_perm`` in the permutation's order.
    """
    rng = np.random.RandomState(seed_from(random_state))
    mc_seed = draw_seed(rng)
    train_perm, valid_perm = seeded_split(n, validation_fraction, rng)
    return TrainingPlan(mc_seed, train_perm, valid_perm, draw_seed(rng), draw_seed(rng))


def silent(*args, **kwargs):
    """A sink that prints nothing (picklable, unlike a lambda)."""


class Progress:
    """A tqdm progress bar when ``verbose``, else a no-op.

    Parameters
    ----------
    total : int
        Number of units to process.
    verbose : bool
        Show the bar.
    desc : str
        Label of the bar.
    unit : str, default="star"
        Name of one unit.
    initial : int, default=0
        Units already done (resumed runs).
    """

    def __init__(self, total, verbose, desc, unit="star", initial=0):
        self.bar = None
        if verbose:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit)

    def __call__(self, n=1, **postfix):
        """Advance by ``n`` units; keyword arguments are shown after the bar."""
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(**postfix, refresh=False)
            self.bar.update(n)

    def close(self):
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()


def flag_callbacks(*, early_stopping, patience, lr_schedule, lr_factor, lr_patience,
                   verbose, threshold=None):
    """The skorch callbacks the ``early_stopping`` and ``lr_schedule`` shortcuts build.

    Parameters
    ----------
    early_stopping : bool
        Add ``("early_stopping", EarlyStopping(monitor="valid_loss", load_best=True))``.
    patience : int
        Its patience in epochs.
    lr_schedule : {None, "plateau"}
        ``"plateau"`` adds ``("lr_schedule", LRScheduler(ReduceLROnPlateau))``
        on the validation loss.
    lr_factor, lr_patience : float, int
        The plateau schedule's factor and patience (epochs).
    verbose : int
        Early stopping reports when it stops only when verbose.
    threshold : float or None, default=None
        None keeps skorch's relative improvement threshold (1e-4); a number
        is an absolute threshold (0: any decrease is an improvement).

    Returns
    -------
    list of (str, skorch.callbacks.Callback)
    """
    callbacks = []
    if early_stopping:
        kw = {} if threshold is None else {"threshold": float(threshold),
                                           "threshold_mode": "abs"}
        callbacks.append(("early_stopping", EarlyStopping(
            monitor="valid_loss", patience=int(patience), load_best=True,
            sink=print if verbose else silent, **kw)))
    if lr_schedule == "plateau":
        callbacks.append(("lr_schedule", LRScheduler(
            policy=torch.optim.lr_scheduler.ReduceLROnPlateau, monitor="valid_loss",
            factor=float(lr_factor), patience=int(lr_patience))))
    return callbacks


def merge_callbacks(built, callbacks):
    """``built`` followed by copies of the user's ``callbacks``.

    Parameters
    ----------
    built : list of (str, Callback)
        Callbacks built from the estimator's flags.
    callbacks : None or list of Callback or (str, Callback)
        The estimator's ``callbacks`` parameter. They are deep-copied, so
        fitting never changes the parameter. A user callback named like a
        built one replaces it.

    Returns
    -------
    list of (str, Callback)

    Raises
    ------
    TypeError
        When an entry is not a skorch callback.
    """
    if callbacks is None:
        return list(built)
    if isinstance(callbacks, Callback) or isinstance(callbacks, (str, bytes)):
        callbacks = [callbacks]
    merged = dict(built)
    for i, item in enumerate(callbacks):
        name, cb = item if isinstance(item, tuple) and len(item) == 2 else (None, item)
        if not isinstance(cb, Callback):
            raise TypeError(
                f"callbacks[{i}] must be a skorch callback (e.g. skorch.callbacks.LRScheduler) "
                f"or a (name, callback) pair, got {item!r}."
            )
        name = str(name) if name is not None else f"{type(cb).__name__}_{i}"
        merged.pop(name, None)  # a user callback replaces the built one of its name
        merged[name] = copy.deepcopy(cb)
    return list(merged.items())


def train_net(net_class, build_module, criterion, X_train, y_train, valid=None, *,
              init_seed, loader_seed, callbacks=(), lr, batch_size, max_epochs,
              weight_decay=0.0, device="cpu", verbose=0, drop_last=False,
              valid_batch_size=4096, single_thread_below=256, **net_params):
    """Build a module under a seed, assemble a skorch net and fit it.

    The caller's global torch RNG is left untouched (initialisation and
    training dropout use a forked RNG); the training batches are sliced by
    :class:`ArrayBatchLoader` and small ones train on one thread.

    Parameters
    ----------
    net_class : type
        ``skorch.NeuralNet`` or a subclass (:class:`LeanNeuralNet`, or one
        that overrides ``get_loss``/``train_step``/``infer``).
    build_module : callable
        ``build_module() -> torch.nn.Module``, called after seeding.
    criterion : torch.nn.Module or type
        skorch's ``criterion``.
    X_train, y_train : array or dict of arrays
        Training data.
    valid : tuple (X_valid, y_valid) or None, default=None
        Validation data, scored every epoch (``valid_loss``); None: none.
    init_seed, loader_seed : int
        Seeds of the forked torch RNG and of the batch shuffling.
    callbacks : sequence of (str, Callback), default=()
        Passed to the net (see :func:`merge_callbacks`).
    lr, batch_size, max_epochs, weight_decay : float, int, int, float
        Adam's learning rate and weight decay, the batch size, the epochs.
    device : str, default="cpu"
    verbose : int, default=0
        skorch's epoch table when > 0.
    drop_last : bool, default=False
        Drop a final incomplete training batch.
    valid_batch_size : int, default=4096
        Validation batches hold ``max(batch_size, valid_batch_size)`` rows.
    single_thread_below : int, default=256
        Batches of at most this many rows train on one thread; 0 keeps
        torch's thread setting.
    **net_params
        Further parameters of ``net_class`` (``optimizer__fused``,
        ``iterator_train__shuffle``, ...).

    Returns
    -------
    skorch.NeuralNet
        The fitted net.
    """
    batch_size = int(batch_size)
    train_split = None if valid is None else predefined_split(Dataset(*valid))
    params = {
        "optimizer": torch.optim.Adam,
        "optimizer__weight_decay": float(weight_decay),
        "iterator_train": ArrayBatchLoader,
        "iterator_valid": ArrayBatchLoader,
        "iterator_train__shuffle": True,
        "iterator_train__generator": torch.Generator().manual_seed(int(loader_seed)),
        "iterator_train__drop_last": bool(drop_last),
        "iterator_valid__batch_size": max(batch_size, int(valid_batch_size)),
        **net_params,
    }
    with torch.random.fork_rng(devices=[]), training_threads(
            batch_size, small=single_thread_below, enabled=single_thread_below > 0):
        torch.manual_seed(int(init_seed))
        net = net_class(
            module=build_module(), criterion=criterion, lr=float(lr), batch_size=batch_size,
            max_epochs=int(max_epochs), train_split=train_split, callbacks=list(callbacks),
            device=device, verbose=int(verbose), **params,
        )
        net.fit(X_train, y_train)
    return net
