"""A skorch ``NeuralNet`` with a lean epoch loop, for small networks on in-memory data.

For the small dense networks of photometric methods (ten inputs, a few
thousand weights, mini-batches of ~1000 rows) skorch's general per-batch
machinery is a large part of an epoch: a closure per optimiser step, the
``infer``/``to_tensor`` round trip, two history records and a ``.item()``
synchronisation per batch, and epoch scores computed back from the batch
records. :class:`LeanNeuralNet` replaces only the inner loop of an epoch.
"""

from __future__ import annotations

import skorch
import torch
from skorch.callbacks import EpochTimer, PrintLog
from skorch.dataset import get_len
from skorch.utils import to_device

__all__ = ["LeanNeuralNet"]


class LeanNeuralNet(skorch.NeuralNet):
    """``skorch.NeuralNet`` whose epochs run a lean training and validation loop.

    Same parameters, attributes, usage and epoch-level callbacks
    (``EarlyStopping``, ``LRScheduler``, ``PrintLog``) as :class:`skorch.NeuralNet`;
    the batches, their order, the losses and the optimiser updates are
    skorch's too. Differences (all in :meth:`run_single_epoch`):

    * each training batch is one ``zero_grad(set_to_none=True)``, forward,
      ``criterion_(y_pred, y)``, backward and ``optimizer_.step()`` -- no
      closure, no ``infer``/``get_loss`` indirection; the module must take
      the batch's ``X`` as its only input (a tensor, or a dict passed as
      keyword arguments);
    * the epoch's mean loss (weighted by batch size, as skorch's
      ``PassthroughScoring``) is recorded directly as ``train_loss`` and
      ``valid_loss`` (plus ``*_best`` flags), so there are no per-batch
      history records; the default callbacks are only ``EpochTimer`` and ``PrintLog``;
    * callbacks still get ``on_batch_begin``/``on_batch_end`` (with
      ``batch``, ``training``, ``loss`` and ``y_pred``), so batch-level
      learning-rate schedules keep working; callbacks that read per-batch
      history entries do not apply; on the CPU the epoch loss is summed
      as a Python float (one ``.item()`` per batch, which costs nothing
      there), on other devices as a device tensor (no synchronisation per batch).

    Extra ``fit`` parameters (passed to the module's ``forward``) fall back
    to skorch's own loop.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skstellar.nn import LeanNeuralNet
    >>> from skstellar.nn.loaders import ArrayBatchLoader
    >>> X = np.random.RandomState(0).randn(256, 3).astype(np.float32)
    >>> y = X @ np.array([[1.0], [2.0], [-1.0]], dtype=np.float32)
    >>> net = LeanNeuralNet(torch.nn.Linear(3, 1), criterion=torch.nn.MSELoss,
    ...                     optimizer=torch.optim.Adam, lr=0.05, max_epochs=30,
    ...                     batch_size=64, train_split=None, verbose=0,
    ...                     iterator_train=ArrayBatchLoader).fit(X, y)
    >>> net.history[-1, "train_loss"] < net.history[0, "train_loss"]
    True
    """

    @property
    def _default_callbacks(self):
        return [("epoch_timer", EpochTimer()), ("print_log", PrintLog())]

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        """Reset the best-loss bookkeeping of the ``*_best`` flags."""
        self._lean_best_ = {}

    def _record(self, prefix, total, count):
        key = prefix + "_loss"
        value = float(total) / max(count, 1)
        self.history.record(key, value)
        best = getattr(self, "_lean_best_", None)
        if best is None:
            best = self._lean_best_ = {}
        is_best = value < best.get(key, float("inf"))
        if is_best:
            best[key] = value
        self.history.record(key + "_best", bool(is_best))

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """One pass over ``iterator``: train (``training=True``) or evaluate; records the loss."""
        if iterator is None:
            return
        if fit_params:
            return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        module, criterion, optimizer = self.module_, self.criterion_, self.optimizer_
        self._set_training(training)
        device = torch.device(self.device) if self.device is not None else None
        on_cpu = device is None or device.type == "cpu"
        total = 0.0 if on_cpu else torch.zeros((), dtype=torch.float64, device=device)
        count = n_batches = 0
        with torch.set_grad_enabled(training):
            for batch in iterator:
                xb, yb = batch
                if not on_cpu:
                    xb, yb = to_device(xb, device), to_device(yb, device)
                self.notify("on_batch_begin", batch=batch, training=training)
                if training:
                    optimizer.zero_grad(set_to_none=True)
                y_pred = module(**xb) if isinstance(xb, dict) else module(xb)
                loss = criterion(y_pred, yb)
                if training:
                    loss.backward()
                    optimizer.step()
                n = get_len(xb)
                total += (loss.item() if on_cpu else loss.detach().double()) * n
                count += n
                n_batches += 1
                self.notify("on_batch_end", batch=batch, training=training, loss=loss,
                            y_pred=y_pred)
        self._record(prefix, float(total), count)
        self.history.record(prefix + "_batch_count", n_batches)
