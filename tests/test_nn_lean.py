"""Tests of skstellar.nn.lean.LeanNeuralNet (skorch NeuralNet with a lean epoch loop)."""

import numpy as np
import pytest
import skorch
import torch
from skorch.callbacks import EarlyStopping, LRScheduler
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from skstellar.nn import LeanNeuralNet
from skstellar.nn.loaders import ArrayBatchLoader


def data(n=300, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 4).astype(np.float32)
    y = (X @ np.array([[1.0], [-2.0], [0.5], [0.0]]) + 0.1 * rng.randn(n, 1)).astype(np.float32)
    return X, y


def make(cls, seed=0, **kw):
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    params = dict(module=module, criterion=torch.nn.MSELoss, optimizer=torch.optim.SGD, lr=0.05,
                  max_epochs=8, batch_size=32, verbose=0, iterator_train=ArrayBatchLoader,
                  iterator_valid=ArrayBatchLoader, iterator_train__shuffle=True,
                  iterator_train__generator=torch.Generator().manual_seed(seed),
                  train_split=predefined_split(Dataset(*data(80, seed=1))))
    params.update(kw)
    return cls(**params)


def test_same_losses_and_weights_as_skorch():
    X, y = data()
    lean = make(LeanNeuralNet).fit(X, y)
    ref = make(skorch.NeuralNet).fit(X, y)
    for key in ("train_loss", "valid_loss", "train_batch_count", "valid_batch_count"):
        np.testing.assert_allclose(lean.history[:, key], ref.history[:, key], rtol=1e-5)
    for a, b in zip(lean.module_.parameters(), ref.module_.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-7)
    # the loss went down and the best flags mark the running minimum
    tl = np.asarray(lean.history[:, "train_loss"])
    assert tl[-1] < 0.2 * tl[0]
    flags = np.asarray(lean.history[:, "valid_loss_best"])
    vl = np.asarray(lean.history[:, "valid_loss"])
    np.testing.assert_array_equal(flags, vl <= np.minimum.accumulate(vl))
    # no per-batch history records (skorch's own on_batch_begin opens empty ones)
    assert all(b == {} for b in lean.history[-1, "batches"])


def test_epoch_and_batch_callbacks_still_work():
    X, y = data()
    # early stopping with best weights, and a plateau schedule (epoch-level)
    net = make(LeanNeuralNet, max_epochs=200, lr=0.5, callbacks=[
        ("es", EarlyStopping(patience=3, load_best=True, sink=lambda *a: None)),
        ("lr", LRScheduler(policy=torch.optim.lr_scheduler.ReduceLROnPlateau,
                           monitor="valid_loss", patience=1, factor=0.5))]).fit(X, y)
    assert len(net.history) < 200
    assert net.optimizer_.param_groups[0]["lr"] < 0.5
    # a batch-level schedule steps once per training batch
    net = make(LeanNeuralNet, max_epochs=2, callbacks=[
        ("lr", LRScheduler(policy=torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.9,
                           step_every="batch"))]).fit(X, y)
    n_batches = sum(net.history[:, "train_batch_count"])
    assert net.optimizer_.param_groups[0]["lr"] == pytest.approx(0.05 * 0.9**n_batches)


def test_dict_input_and_no_validation():
    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 1)

        def forward(self, a, b):
            return self.lin(a + b)

    X, y = data()
    net = LeanNeuralNet(Two(), criterion=torch.nn.MSELoss, optimizer=torch.optim.Adam, lr=0.05,
                        max_epochs=5, batch_size=64, train_split=None, verbose=0,
                        iterator_train=ArrayBatchLoader).fit({"a": X, "b": 0 * X}, y)
    assert "valid_loss" not in net.history[-1]
    assert net.history[-1, "train_loss"] < net.history[0, "train_loss"]
    assert net.predict({"a": X, "b": 0 * X}).shape == (len(X), 1)
