"""``callbacks=`` on every neural estimator and the shared training core (issue 17).

Every neural estimator takes skorch callbacks, which run after the ones its
``early_stopping``/``lr_schedule`` shortcuts build; a callback survives
``clone``, ``GridSearchCV`` and ``joblib``, fitting does not change it, and
the estimators with a callback pass scikit-learn's checks. The shortcuts
build exactly the callbacks one could pass by hand (same predictions).
"""

import io

import joblib
import numpy as np
import pandas as pd
import pytest
import skorch
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

from skstellar import (
    MDwarfMetallicityRegressor,
    PayneEmulator,
    PhotoDNetwork,
    SpectralCNNClassifier,
    SpectralCNNRegressor,
    UncertainNNRegressor,
)
from skstellar.covariance import CovariantFeatures
from skstellar.nn.training import (
    SEED_MODULUS,
    flag_callbacks,
    merge_callbacks,
    plan_training,
    seed_from,
    seeded_split,
)
from skstellar.photod.network import PHOTOD_INPUT_COLUMNS


def _step_lr():
    """Halve the learning rate every epoch."""
    return skorch.callbacks.LRScheduler(policy="StepLR", step_size=1, gamma=0.5)


def _data(n=120, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 6))
    y = np.tanh(0.5 * X[:, 0] - 0.3 * X[:, 1])
    return X, y


def _photod_data(n=120):
    rng = np.random.RandomState(1)
    cat = pd.DataFrame(np.hstack([rng.uniform(-1, 1, (n, 5)), rng.uniform(0.01, 0.3, (n, 5))]),
                       columns=list(PHOTOD_INPUT_COLUMNS))
    y = np.column_stack([4 + cat.iloc[:, 1], -1 + 0.5 * cat.iloc[:, 0], 0.1 + 0.1 * cat.iloc[:, 2]])
    return cat, y


CNN = dict(channels=(4,), convs_per_block=1, padding=1, pool_size=1, pool_stride=1,
           batch_size=16, n_mc_passes=3, random_state=0)

#: (factory of an estimator with the given callbacks, X, y, epochs it trains)
CASES = {
    "MDwarfMetallicityRegressor": (
        lambda cb: MDwarfMetallicityRegressor(max_epochs=3, batch_size=16, n_mc_passes=3,
                                              random_state=0, callbacks=cb), *_data(), 3),
    "SpectralCNNRegressor": (
        lambda cb: SpectralCNNRegressor(max_epochs=3, callbacks=cb, **CNN), *_data(), 3),
    "SpectralCNNClassifier": (
        lambda cb: SpectralCNNClassifier(max_epochs=3, callbacks=cb, **CNN), _data()[0],
        (_data()[1] > 0).astype(int), 3),
    "UncertainNNRegressor": (
        lambda cb: UncertainNNRegressor(hidden=(8,), batch_size=40, max_iter=12, warmup_iter=0,
                                        n_mc_passes=3, uncertainty="mc", validation_fraction=0.25,
                                        random_state=0,
                                        callbacks=cb), *_data(), 4),
    "PhotoDNetwork": (
        lambda cb: PhotoDNetwork(hidden_layer_sizes=(8,), activation="gelu", n_runs=1,
                                 max_epochs=3, batch_size=32, random_state=0, callbacks=cb),
        *_photod_data(), 3),
    "PayneEmulator": (
        lambda cb: PayneEmulator(hidden=(8,), max_epochs=3, batch_size=16, random_state=0,
                                 callbacks=cb), _data()[0][:, :2], _data()[0][:, 2:], 3),
}


@pytest.mark.parametrize("name", list(CASES))
def test_callback_runs_and_fit_leaves_the_parameter_alone(name):
    make, X, y, n_epochs = CASES[name]
    cb = _step_lr()
    est = make([cb]).fit(X, y)
    names = [n for n, _ in est.net_.callbacks_]
    assert "LRScheduler_0" in names
    lr = est.net_.optimizer_.param_groups[0]["lr"]
    np.testing.assert_allclose(lr, est.lr * 0.5**n_epochs)
    # the net trained a copy: the parameter is the object given, unfitted
    assert est.callbacks[0] is cb and not hasattr(cb, "lr_scheduler_")
    # a plain fit differs (the schedule changed the training)
    plain = make(None).fit(X, y)
    assert plain.net_.optimizer_.param_groups[0]["lr"] == est.lr
    assert not np.array_equal(plain.predict(X), est.predict(X))


@pytest.mark.parametrize("name", list(CASES))
def test_checkpoint_progress_bar_and_epoch_scoring(name, tmp_path, capsys):
    make, X, y, _ = CASES[name]
    est = make([skorch.callbacks.Checkpoint(dirname=str(tmp_path), monitor="valid_loss_best"),
                skorch.callbacks.ProgressBar(),
                skorch.callbacks.EpochScoring(lambda net, X, y: float(len(X)), name="n_rows",
                                              on_train=True)]).fit(X, y)
    assert (tmp_path / "params.pt").exists()  # the best epoch's weights were saved
    assert "it/s" in capsys.readouterr().err  # tqdm's bar
    n_rows = [h["n_rows"] for h in est.history_]
    assert len(n_rows) == est.n_epochs_ and len(set(n_rows)) == 1 and n_rows[0] > 0


@pytest.mark.parametrize("name", ["MDwarfMetallicityRegressor", "UncertainNNRegressor",
                                  "PhotoDNetwork"])
def test_clone_joblib_and_grid_search_keep_callbacks(name):
    make, X, y, _ = CASES[name]
    est = make([("halve", _step_lr())])
    c = clone(est)
    assert c.callbacks[0][0] == "halve" and isinstance(c.callbacks[0][1],
                                                       skorch.callbacks.LRScheduler)
    a = clone(est).fit(X, y)
    b = clone(est).fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))  # same seed, same callback
    buf = io.BytesIO()
    joblib.dump(a, buf)
    buf.seek(0)
    loaded = joblib.load(buf)
    np.testing.assert_array_equal(loaded.predict(X), a.predict(X))
    assert "halve" in dict(loaded.net_.callbacks_)
    grid = GridSearchCV(est, {"lr": [1e-3, 1e-2]}, cv=2).fit(X, y)
    assert "halve" in dict(grid.best_estimator_.net_.callbacks_)


def test_shortcut_flags_build_the_callbacks_one_could_pass():
    X, y = _data(200)
    kw = dict(max_epochs=40, batch_size=16, n_mc_passes=3, patience=2, lr_patience=1,
              random_state=0)
    by_flag = MDwarfMetallicityRegressor(lr_schedule="plateau", **kw).fit(X, y)
    by_hand = MDwarfMetallicityRegressor(
        early_stopping=False, lr_schedule=None, **kw,
        callbacks=[
            ("early_stopping", skorch.callbacks.EarlyStopping(
                monitor="valid_loss", patience=2, load_best=True, sink=lambda *a, **k: None)),
            ("lr_schedule", skorch.callbacks.LRScheduler(
                policy=torch.optim.lr_scheduler.ReduceLROnPlateau, monitor="valid_loss",
                factor=0.5, patience=1)),
        ]).fit(X, y)
    assert by_flag.n_epochs_ < 40  # early stopping did stop
    assert by_hand.n_epochs_ == by_flag.n_epochs_
    np.testing.assert_array_equal(by_hand.predict(X), by_flag.predict(X))


def test_a_named_user_callback_replaces_the_shortcut():
    built = flag_callbacks(early_stopping=True, patience=5, lr_schedule="plateau", lr_factor=0.5,
                           lr_patience=2, verbose=0)
    mine = skorch.callbacks.EarlyStopping(patience=1)
    merged = merge_callbacks(built, [("early_stopping", mine), skorch.callbacks.EpochScoring("r2")])
    assert [n for n, _ in merged] == ["lr_schedule", "early_stopping", "EpochScoring_1"]
    assert dict(merged)["early_stopping"].patience == 1
    assert dict(merged)["early_stopping"] is not mine  # copied
    with pytest.raises(TypeError, match="skorch callback"):
        merge_callbacks([], ["not a callback"])
    with pytest.raises(TypeError, match="skorch callback"):
        MDwarfMetallicityRegressor(max_epochs=1, callbacks=[print]).fit(*_data())


def test_seed_from_and_seeded_split():
    assert seed_from(5) == 5 and seed_from(SEED_MODULUS + 5) == 5
    assert seed_from(np.random.RandomState(0)) == seed_from(np.random.RandomState(0))
    assert 0 <= seed_from(None) < SEED_MODULUS
    train, valid = seeded_split(10, 0.25, np.random.RandomState(0))
    assert len(valid) == 2 and len(train) == 8
    assert sorted(np.concatenate([train, valid]).tolist()) == list(range(10))
    t2, v2 = seeded_split(10, 0.25, np.random.RandomState(0))
    np.testing.assert_array_equal(v2, valid)
    assert len(seeded_split(10, 0.01, np.random.RandomState(0))[1]) == 1  # at least one row
    assert len(seeded_split(10, 0.0, np.random.RandomState(0))[1]) == 0
    with pytest.raises(ValueError, match="at least 2 training samples"):
        seeded_split(2, 0.5, np.random.RandomState(0))
    # a plan draws, in order: MC seed, split, loader seed, init seed
    plan = plan_training(3, 20, 0.25)
    rng = np.random.RandomState(3)
    assert plan.mc_seed == rng.randint(0, SEED_MODULUS)
    train, valid = seeded_split(20, 0.25, rng)
    np.testing.assert_array_equal(plan.valid_perm, valid)
    np.testing.assert_array_equal(plan.train_perm, train)
    assert (plan.loader_seed, plan.init_seed) == (rng.randint(0, SEED_MODULUS),
                                                  rng.randint(0, SEED_MODULUS))


class _RecordSteps(skorch.callbacks.Callback):
    """Record the optimiser steps done at each epoch's end."""

    def on_epoch_end(self, net, **kwargs):
        net.history.record("steps", net.n_iter_)


def test_uncertain_nn_callbacks_with_input_covariance_and_early_stopping():
    rng = np.random.RandomState(0)
    x = rng.normal(size=(200, 4))
    X = CovariantFeatures.from_variance(x, np.full_like(x, 0.01))
    y = x[:, :2] @ [1.0, -0.5]
    m = UncertainNNRegressor(hidden=(16,), batch_size=32, max_iter=1000, warmup_iter=20,
                             validation_fraction=0.2, early_stopping=True, patience=2,
                             n_mc_passes=3, random_state=0,
                             callbacks=[_RecordSteps()]).fit(X, y)
    assert m.n_iter_ < 1000  # stopped early
    assert m.n_iter_ >= 20  # never before the input term is on
    # the user's callback ran after the early stopping, which ends the last epoch
    done = m.history_[:-1]
    assert len(done) > 1 and [h["steps"] for h in done] == [h["iteration"] for h in done]
    assert [h["input_term"] for h in m.history_][-1]


# scikit-learn's checks on estimators that carry a callback
@parametrize_with_checks([
    MDwarfMetallicityRegressor(output_activation=None, lr=1e-2, max_epochs=20, batch_size=16,
                               architecture="released", random_state=0,
                               callbacks=[_step_lr()]),
    UncertainNNRegressor(hidden=(32,), batch_size=32, max_iter=300, warmup_iter=0, lr=1e-2,
                         n_mc_passes=5, random_state=0,
                         callbacks=[skorch.callbacks.LRScheduler(policy="StepLR", step_size=50,
                                                                 gamma=0.9)]),
    SpectralCNNRegressor(channels=(4,), convs_per_block=1, padding=1, pool_size=1,
                         pool_stride=1, max_epochs=30, batch_size=16, lr=1e-2, random_state=0,
                         callbacks=[skorch.callbacks.LRScheduler(policy="StepLR", step_size=10,
                                                                 gamma=0.5)]),
    PhotoDNetwork(input_columns=None, loss_scales=None, n_runs=1, hidden_layer_sizes=(16,),
                  activation="gelu", max_epochs=10, batch_size=50, lr=2e-2, patience=5,
                  random_state=0, callbacks=[skorch.callbacks.LRScheduler(
                      policy="StepLR", step_size=5, gamma=0.5)]),
])
def test_sklearn_compatible_with_callbacks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("name", ["MDwarfMetallicityRegressor", "UncertainNNRegressor",
                                  "PhotoDNetwork"])
def test_verbose_prints_the_epoch_table(name, capsys):
    make, X, y, _ = CASES[name]
    make(None).set_params(verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "train_loss" in out and "valid_loss" in out and "dur" in out
    make(None).fit(X, y)
    assert "train_loss" not in capsys.readouterr().out  # silent by default
