"""Tests of skstellar.photod.network: the photo-D moments network and its sigma_B network."""

import io
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from astropy.table import Table
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks
from skorch.callbacks import Callback
from torch import nn

from skstellar.io import find_shared_data
from skstellar.metrics import robust_std
from skstellar.photod.network import (
    PAPER_ACTIVATIONS,
    PAPER_HIDDEN_LAYER_SIZES,
    PHOTOD_INPUT_COLUMNS,
    TARGET_NAMES,
    MomentLoss,
    PhotoDNetwork,
    WeightedMSELoss,
)

# Short training for tests (the paper's: batch 1024, lr 1e-3, up to 1024 epochs).
FAST = dict(batch_size=256, lr=3e-3, max_epochs=30, patience=10, secondary_max_epochs=30,
            random_state=0)
TINY = dict(batch_size=64, lr=3e-3, max_epochs=4, secondary_max_epochs=3, patience=5,
            random_state=0)


def toy_catalogue(n, seed):
    """A photo-D-like catalogue with known teacher labels, label noise and sigma_B.

    Returns the catalogue (the ten input columns plus an unused one), the
    "teacher" means y = f(inputs) + s * N(0, 1) in (Mr, FeH, Ar) order, the
    noiseless f, the teacher's sigma_B and truth drawn from N(y, sigma_B).
    """
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, (n, 5))
    e = rng.uniform(0.01, 0.3, (n, 5))
    cat = pd.DataFrame(np.hstack([x, e]), columns=list(PHOTOD_INPUT_COLUMNS),
                       index=pd.RangeIndex(1000, 1000 + n, name="star"))
    cat["rmag"] = 20 + 3 * x[:, 0]
    cat["ra"] = rng.uniform(340, 350, n)  # extra column, ignored
    f = np.column_stack([4 + 2 * x[:, 1] + 0.5 * x[:, 2],
                         -1 + 0.6 * x[:, 0] - 0.2 * x[:, 1],
                         0.15 + 0.05 * x[:, 3]])
    s = np.column_stack([0.05 + 0.3 * e[:, 0], 0.03 + 0.2 * e[:, 1], 0.005 + 0.03 * e[:, 2]])
    y = f + s * rng.standard_normal((n, 3))
    sigma_b = np.column_stack([0.2 + 0.5 * e[:, 3], 0.1 + 0.8 * e[:, 0] ** 2 + 0.1 * x[:, 4] ** 2,
                               0.02 + 0.1 * e[:, 4]])
    truth = y + sigma_b * rng.standard_normal((n, 3))
    return cat, y, f, sigma_b, truth


@pytest.fixture(scope="module")
def train():
    return toy_catalogue(2000, 0)


@pytest.fixture(scope="module")
def test_set():
    return toy_catalogue(2000, 1)


@pytest.fixture(scope="module")
def fitted(train):
    cat, y, _, sigma_b, _ = train
    return PhotoDNetwork(**FAST).fit(cat, y, sigma_b=sigma_b)


# --------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------
def test_moment_loss_hand_computed():
    # two stars, two targets: columns mu1, mu2, sigma1, sigma2
    y_pred = torch.tensor([[1.0, 2.0, 0.5, 1.0], [0.0, 0.0, 2.0, 0.1]])
    y_true = torch.tensor([[2.0, 2.0], [1.0, 0.5]])
    # target 1: r = 1, 1 -> (1 + (1 - 0.25)^2 + 1 + (1 - 4)^2) / 2 = 5.78125
    # target 2: r = 0, 0.5 -> (0 + (0 - 1)^2 + 0.25 + (0.25 - 0.01)^2) / 2 = 0.6538
    assert float(MomentLoss()(y_pred, y_true)) == pytest.approx(5.78125 + 0.6538, rel=1e-6)
    assert float(MomentLoss([2.0, 3.0])(y_pred, y_true)) == pytest.approx(
        2 * 5.78125 + 3 * 0.6538, rel=1e-6)
    # only sigma^2 enters: the sigma outputs are sign-free
    flipped = y_pred.clone()
    flipped[:, 2:] *= -1
    assert float(MomentLoss([2.0, 3.0])(flipped, y_true)) == pytest.approx(
        2 * 5.78125 + 3 * 0.6538, rel=1e-6)
    with pytest.raises(ValueError, match="2 n_targets"):
        MomentLoss()(y_pred[:, :3], y_true)
    with pytest.raises(ValueError, match="weight"):
        MomentLoss([1.0, 2.0, 3.0])(y_pred, y_true)
    with pytest.raises(ValueError, match="> 0"):
        MomentLoss([1.0, -1.0])


def test_weighted_mse_hand_computed():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    true = torch.tensor([[0.0, 2.0], [3.0, 2.0]])
    # per target: mean(1, 0) = 0.5 and mean(0, 4) = 2
    assert float(WeightedMSELoss([2.0, 3.0])(pred, true)) == pytest.approx(2 * 0.5 + 3 * 2)
    assert float(WeightedMSELoss()(pred, true)) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="shape"):
        WeightedMSELoss()(pred, true[:, :1])


def test_moment_loss_minimum_is_mean_and_std():
    """Minimising Eq. 1 over a constant (mu, sigma) gives the sample mean and std."""
    gen = torch.Generator().manual_seed(0)
    t = 3.0 + 0.4 * torch.randn(4000, 1, generator=gen)
    params = torch.tensor([[2.0, 1.0]], requires_grad=True)
    opt = torch.optim.LBFGS([params], max_iter=200, line_search_fn="strong_wolfe")
    loss = MomentLoss()

    def closure():
        opt.zero_grad()
        value = loss(params.expand(len(t), 2), t)
        value.backward()
        return value

    opt.step(closure)
    mu, sigma = params.detach()[0]
    assert float(mu) == pytest.approx(float(t.mean()), abs=0.01)
    assert abs(float(sigma)) == pytest.approx(float(t.std()), rel=0.03)


# --------------------------------------------------------------------------
# The paper's network
# --------------------------------------------------------------------------
def test_paper_defaults_and_architecture(fitted):
    net = PhotoDNetwork()
    assert (net.lr, net.batch_size, net.max_epochs, net.patience) == (1e-3, 1024, 1024, 100)
    assert (net.lr_schedule, net.lr_factor, net.n_runs, net.secondary_max_epochs) == (
        "plateau", 0.9, 2, 256)
    assert net.validation_fraction == 0.25 and net.sigma_activation == "linear"
    core = net._build_module(10, 6)
    linear = [m for m in core if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linear] == list(PAPER_HIDDEN_LAYER_SIZES) + [6]
    assert linear[0].in_features == 10
    acts = [type(m) for m in core if not isinstance(m, nn.Linear)]
    assert acts == [nn.GELU, nn.Softsign, nn.Softsign, nn.Sigmoid, nn.GELU]
    assert PAPER_ACTIVATIONS == ("gelu", "softsign", "softsign", "sigmoid", "gelu")
    # Keras' Glorot-uniform initialisation with zero biases
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in linear)
    bound = np.sqrt(6 / (10 + 45))
    assert float(linear[0].weight.detach().abs().max()) <= bound
    # Eq. 2 weights in (Mr, FeH, Ar) order, and the output widths of both networks
    np.testing.assert_allclose(fitted.net_.criterion_.weights.numpy(), [100, 100, 2500],
                               rtol=1e-6)
    np.testing.assert_allclose(fitted.secondary_net_.criterion_.weights.numpy(),
                               [100, 100, 2500], rtol=1e-6)
    x = torch.zeros(4, 10)
    assert fitted.module_(x).shape == (4, 6)
    assert fitted.secondary_net_.module_(x).shape == (4, 3)
    assert fitted.target_names_ == TARGET_NAMES == ("Mr", "FeH", "Ar")
    assert fitted.input_columns_ == list(PHOTOD_INPUT_COLUMNS)


def test_learns_the_teacher_labels(fitted, test_set):
    cat, y, f, _, _ = test_set
    mean = fitted.predict(cat)
    assert mean.shape == (len(cat), 3)
    err = f - mean
    # well below the label scatter for M_r and [Fe/H]; A_r (weight 1/0.02^2) at least learns
    assert np.all(err.std(0)[:2] < 0.3 * f.std(0)[:2]), err.std(0) / f.std(0)
    assert err.std(0)[2] < 0.95 * f.std(0)[2]
    assert np.all(np.abs(np.median(err, axis=0)) < 0.15 * f.std(0))


def test_sigma_tracks_heteroscedastic_noise():
    rng = np.random.RandomState(3)

    def draw(n):
        X = rng.uniform(0, 1, (n, 10))
        s = 0.05 + 0.5 * X[:, 5]
        return X, 1 + X[:, 0] - 0.5 * X[:, 1] + s * rng.standard_normal(n), s

    X, y, _ = draw(3000)
    Xt, yt, st = draw(2000)
    net = PhotoDNetwork(input_columns=None, loss_scales=None, n_runs=1,
                        **{**FAST, "max_epochs": 40})
    net.fit(X, y)
    comp = net.predict_components(Xt)
    assert comp["mean"].shape == comp["sigma_nn"].shape == (2000,)  # 1-D y -> 1-D outputs
    assert comp["sigma_b"] is None
    np.testing.assert_array_equal(comp["total_std"], comp["sigma_nn"])
    assert np.corrcoef(comp["sigma_nn"], st)[0, 1] > 0.7
    z = (yt - comp["mean"]) / comp["sigma_nn"]
    low = st < np.median(st)
    # a constant sigma would give ~0.6 and ~1.25 here; the learned one is ~1 in both halves
    for part in (low, ~low):
        assert 0.75 < robust_std(z[part]) < 1.35
    assert 0.6 < np.std(z) < 1.6


def test_n_runs_keeps_the_best_run(fitted, train):
    cat, y, _, _, _ = train
    losses = fitted.run_valid_losses_
    assert losses.shape == (2,) and fitted.run_n_epochs_.shape == (2,)
    assert fitted.best_run_ == int(np.argmin(losses))
    assert len(fitted.history_) == fitted.run_n_epochs_[fitted.best_run_] == fitted.n_epochs_
    # the kept model's Eq. 2 loss on the validation rows is the best run's loss
    v = fitted.valid_indices_
    assert len(v) == 500 and len(np.unique(v)) == 500
    comp = fitted.predict_components(cat.iloc[v])
    pred = torch.as_tensor(np.hstack([comp["mean"], comp["sigma_nn"]]))
    recomputed = float(MomentLoss([100.0, 100.0, 2500.0])(pred, torch.as_tensor(y[v])))
    assert recomputed == pytest.approx(losses.min(), rel=1e-4)
    assert recomputed <= losses.max()


def test_secondary_network_improves_the_total_std(fitted, test_set):
    cat, _, _, sigma_b, truth = test_set
    comp = fitted.predict_components(cat)
    mean, std = fitted.predict(cat, return_std=True)
    np.testing.assert_array_equal(mean, comp["mean"])
    np.testing.assert_allclose(std, np.hypot(comp["sigma_nn"], comp["sigma_b"]))
    np.testing.assert_array_equal(std, comp["total_std"])
    assert np.all(comp["sigma_b"] >= 0)
    for j in range(3):
        assert np.corrcoef(comp["sigma_b"][:, j], sigma_b[:, j])[0, 1] > 0.9
    z_total = (truth - mean) / comp["total_std"]
    z_nn = (truth - mean) / comp["sigma_nn"]
    assert np.all((z_total.std(0) > 0.85) & (z_total.std(0) < 1.2)), z_total.std(0)
    assert np.all(np.abs(z_total.std(0) - 1) < np.abs(z_nn.std(0) - 1))
    assert np.all(robust_std(z_nn[:, 0]) > 1.3)


def test_seeded_fit_is_reproducible(train):
    cat, y, _, _, _ = train
    cat, y = cat.iloc[:400], y[:400]
    a = PhotoDNetwork(n_runs=2, **TINY).fit(cat, y)
    b = PhotoDNetwork(n_runs=2, **TINY).fit(cat, y)
    one = PhotoDNetwork(n_runs=1, **TINY).fit(cat, y)
    other = PhotoDNetwork(n_runs=2, **{**TINY, "random_state": 1}).fit(cat, y)
    pa, sa = a.predict(cat[:50], return_std=True)
    pb, sb = b.predict(cat[:50], return_std=True)
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(sa, sb)
    np.testing.assert_array_equal(a.run_valid_losses_, b.run_valid_losses_)
    # run 0 is the same run whatever n_runs; the runs differ from each other
    assert one.run_valid_losses_[0] == a.run_valid_losses_[0]
    assert a.run_valid_losses_[0] != a.run_valid_losses_[1]
    assert not np.allclose(other.predict(cat[:50]), pa)
    # without sigma_b: no secondary network, the std is sigma_NN alone
    assert a.secondary_net_ is None and a.secondary_valid_loss_ is None
    comp = a.predict_components(cat[:50])
    assert comp["sigma_b"] is None
    np.testing.assert_array_equal(comp["total_std"], sa)


def test_input_containers_agree(fitted, test_set):
    cat = test_set[0].iloc[:30]
    ref = fitted.predict(cat)
    arr = cat[list(PHOTOD_INPUT_COLUMNS)].to_numpy()
    np.testing.assert_allclose(fitted.predict(arr), ref, rtol=1e-6)
    shuffled = cat[["ra"] + list(PHOTOD_INPUT_COLUMNS)[::-1]]
    np.testing.assert_allclose(fitted.predict(shuffled), ref, rtol=1e-6)
    np.testing.assert_allclose(fitted.predict(Table.from_pandas(cat)), ref, rtol=1e-6)
    np.testing.assert_allclose(fitted.predict({c: cat[c].to_numpy() for c in cat}), ref,
                               rtol=1e-6)


def test_pipeline_passes_sigma_b_and_softplus_sigma(train):
    cat, y, _, sigma_b, _ = train
    pipe = make_pipeline(PhotoDNetwork(n_runs=1, sigma_activation="softplus", **TINY))
    pipe.fit(cat.iloc[:300], y[:300], photodnetwork__sigma_b=sigma_b[:300])
    net = pipe[-1]
    assert net.secondary_net_ is not None
    mean, std = pipe.predict(cat.iloc[:50], return_std=True)
    assert mean.shape == std.shape == (50, 3) and np.all(std > 0)
    # the positive head: the raw sigma outputs are > 0 even far outside the training inputs
    far = torch.as_tensor(100 * np.random.RandomState(0).standard_normal((200, 10)),
                          dtype=torch.float32)
    assert torch.all(net.module_(far)[:, 3:] > 0)


def test_joblib_round_trip_in_fresh_process(fitted, test_set, tmp_path):
    cat = test_set[0].iloc[:40]
    path, cat_path = tmp_path / "net.joblib", tmp_path / "cat.parquet"
    joblib.dump(fitted, path)
    cat.to_parquet(cat_path)
    mean, std = fitted.predict(cat, return_std=True)
    code = textwrap.dedent(f"""
        import joblib, numpy as np, pandas as pd
        net = joblib.load({str(path)!r})
        m, s = net.predict(pd.read_parquet({str(cat_path)!r}), return_std=True)
        np.save({str(tmp_path / "m.npy")!r}, m); np.save({str(tmp_path / "s.npy")!r}, s)
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), mean)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), std)


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------
def test_bad_input_errors(fitted, train):
    cat, y, _, sigma_b, _ = train
    cat, y, sigma_b = cat.iloc[:100], y[:100], sigma_b[:100]
    net = PhotoDNetwork(n_runs=1, **TINY)
    with pytest.raises(ValueError, match="Missing column 'izErr'"):
        net.fit(cat.drop(columns="izErr"), y)
    bad = cat.copy()
    bad.loc[1007, "grErr"] = np.nan
    with pytest.raises(ValueError, match=r"'grErr' has 1 NaN.*row 7, index 1007"):
        net.fit(bad, y)
    with pytest.raises(ValueError, match=r"'grErr' has 1 NaN"):
        fitted.predict(bad)
    arr = cat[list(PHOTOD_INPUT_COLUMNS)].to_numpy()
    arr_inf = arr.copy()
    arr_inf[3, 1] = np.inf
    with pytest.raises(ValueError, match="'ug' has 1 inf"):
        fitted.predict(arr_inf)
    with pytest.raises(ValueError, match="9 columns.*10 inputs"):
        net.fit(arr[:, :9], y)
    with pytest.raises(ValueError, match="9 columns.*10 inputs"):
        fitted.predict(arr[:, :9])
    with pytest.raises(ValueError, match="n_samples=100"):
        net.fit(cat, y[:50])
    y_nan = y.copy()
    y_nan[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"y\[FeH\]' has 1 NaN"):
        net.fit(cat, y_nan)
    with pytest.raises(ValueError, match="negative"):
        net.fit(cat, y, sigma_b=-sigma_b)
    with pytest.raises(ValueError, match="sigma_b has shape"):
        net.fit(cat, y, sigma_b=sigma_b[:, :2])
    with pytest.raises(ValueError, match="loss_scales has 3 entries"):
        net.fit(cat, y[:, :2])
    with pytest.raises(ValueError, match="requires y"):
        net.fit(cat, None)
    with pytest.raises(ValueError, match="validation split"):
        PhotoDNetwork(n_runs=2, validation_fraction=0.0).fit(cat, y)
    with pytest.raises(ValueError, match="sigma_activation"):
        PhotoDNetwork(sigma_activation="exp").fit(cat, y)
    with pytest.raises(ValueError, match="input_columns"):
        PhotoDNetwork(input_columns=["rmag", "rmag"]).fit(cat, y)
    with pytest.raises(NotFittedError):
        PhotoDNetwork().predict(cat)


# --------------------------------------------------------------------------
# Real teacher labels (skipped without the shared photo-D data)
# --------------------------------------------------------------------------
def test_learns_the_bayesian_teacher_on_simulated_lsst_stars():
    if find_shared_data("photod") is None:
        pytest.skip("photod data not found in the shared data folder")
    from skstellar.datasets.photod import make_lsst_catalog
    from skstellar.photod.teacher import BayesianPhotoD

    cat = make_lsst_catalog(2000, random_state=5)
    mean_b, std_b = BayesianPhotoD().fit(cat).predict(cat, return_std=True)
    train, test = slice(0, 1500), slice(1500, None)
    net = PhotoDNetwork(n_runs=1, **{**FAST, "batch_size": 128, "max_epochs": 25,
                                      "secondary_max_epochs": 10})
    net.fit(cat.iloc[train], mean_b[train], sigma_b=std_b[train])
    mean, std = net.predict(cat.iloc[test], return_std=True)
    resid = mean - mean_b[test]
    spread = np.array([robust_std(mean_b[test][:, j]) for j in range(3)])
    scatter = np.array([robust_std(resid[:, j]) for j in range(3)])
    # NN-vs-Bayes scatter well below the spread of the teacher's labels after this short
    # training (the paper's full training reaches 0.12 mag and 0.11 dex, Table 1)
    assert scatter[0] < 0.3 * spread[0] and scatter[1] < 0.75 * spread[1], (scatter, spread)
    # the total std is dominated by sigma_B, which the secondary net reproduces
    comp = net.predict_components(cat.iloc[test])
    rel = np.median(np.abs(comp["sigma_b"] / std_b[test] - 1), axis=0)
    assert np.all(rel < 0.35), rel
    assert np.all(std >= comp["sigma_b"])


# --------------------------------------------------------------------------
# scikit-learn estimator checks on a small configuration
# --------------------------------------------------------------------------
# input_columns=None reads the checks' generic arrays as they are (the default
# reads the ten named photo-D inputs); loss_scales=None weights any number of
# targets equally; one small hidden layer and few epochs keep the checks fast.
@parametrize_with_checks([
    PhotoDNetwork(input_columns=None, loss_scales=None, n_runs=1, hidden_layer_sizes=(16,),
                  activation="gelu", max_epochs=10, batch_size=50, lr=2e-2, patience=5,
                  random_state=0),
])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------
# Training loop and warm starts
# --------------------------------------------------------------------------
def test_lean_loop_trains_like_skorch_loop(train):
    """The lean loop (fused Adam) and skorch's loop run the same batches and updates."""
    cat, y, _, sigma_b, _ = train
    kw = {**TINY, "n_runs": 2, "max_epochs": 6}
    lean = PhotoDNetwork(**kw).fit(cat, y, sigma_b=sigma_b)
    old = PhotoDNetwork(**kw, training_loop="skorch").fit(cat, y, sigma_b=sigma_b)
    assert lean.training_loop == "lean" and type(lean.net_).__name__ == "LeanNeuralNet"
    assert type(old.net_).__name__ == "NeuralNet"
    np.testing.assert_allclose(lean.run_valid_losses_, old.run_valid_losses_, rtol=1e-4)
    np.testing.assert_allclose(lean.history_[:, "train_loss"], old.history_[:, "train_loss"],
                               rtol=1e-4)
    assert lean.secondary_valid_loss_ == pytest.approx(old.secondary_valid_loss_, rel=1e-4)
    np.testing.assert_allclose(lean.predict(cat), old.predict(cat), atol=1e-3)
    with pytest.raises(ValueError, match="training_loop"):
        PhotoDNetwork(training_loop="fast").fit(cat, y)


def test_warm_start_from_exported_weights(fitted, train, test_set):
    from sklearn.base import clone

    from skstellar.photod.network import StudentWeights

    cat, y, f, sigma_b, _ = train
    cat_t, _, f_t, _, _ = test_set
    w = fitted.export_weights()
    assert isinstance(w, StudentWeights) and w.secondary is not None
    assert w.input_columns == PHOTOD_INPUT_COLUMNS and w.target_names == TARGET_NAMES
    # a zero learning rate keeps the imported weights: identical predictions
    frozen = PhotoDNetwork(**{**FAST, "lr": 1e-12, "max_epochs": 1, "secondary_max_epochs": 1,
                              "n_runs": 1}, init_weights=w).fit(cat, y, sigma_b=sigma_b)
    np.testing.assert_allclose(frozen.predict(cat_t, return_std=True),
                               fitted.predict(cat_t, return_std=True), rtol=1e-5, atol=1e-6)
    # fine-tuning for 3 epochs stays as accurate as the 30-epoch cold fit, a cold 3-epoch fit
    # does not
    short = {**FAST, "max_epochs": 3, "secondary_max_epochs": 3, "n_runs": 1}
    warm = PhotoDNetwork(**short, init_weights=w).fit(cat, y, sigma_b=sigma_b)
    cold = PhotoDNetwork(**short).fit(cat, y, sigma_b=sigma_b)
    assert warm.n_epochs_ == 3 and len(warm.secondary_net_.history) == 3
    err = {name: (f_t - m.predict(cat_t)).std(0)
           for name, m in (("warm", warm), ("cold", cold), ("full", fitted))}
    assert np.all(err["warm"][:2] < 1.2 * err["full"][:2]), err
    assert np.all(err["warm"][:2] < 0.7 * err["cold"][:2]), err
    # the weights survive clone and joblib (plain numpy container)
    c = clone(warm)
    assert isinstance(c.init_weights, StudentWeights) and c.init_weights is not w
    for k, v in w.moments.items():
        np.testing.assert_array_equal(c.init_weights.moments[k], v)
    buf = io.BytesIO()
    joblib.dump(warm, buf)
    buf.seek(0)
    np.testing.assert_array_equal(joblib.load(buf).predict(cat_t), warm.predict(cat_t))


def test_quick_schedule_is_a_valid_shorter_recipe(train):
    from skstellar.photod.network import QUICK_SCHEDULE

    net = PhotoDNetwork(**QUICK_SCHEDULE)
    default = PhotoDNetwork()
    assert net.n_runs == 1 < default.n_runs and net.batch_size < default.batch_size
    assert net.max_epochs < default.max_epochs and net.patience < default.patience
    # the paper's architecture, loss and learning rate are kept
    for name in ("hidden_layer_sizes", "activation", "loss_scales", "lr", "lr_factor"):
        assert net.get_params()[name] == default.get_params()[name]
    cat, y, _, sigma_b, _ = train
    fast = PhotoDNetwork(**{**QUICK_SCHEDULE, "max_epochs": 3, "secondary_max_epochs": 2},
                         random_state=0).fit(cat, y, sigma_b=sigma_b)
    assert fast.n_epochs_ == 3 and fast.run_valid_losses_.shape == (1,)


def test_fast_schedule_is_the_quick_one_with_larger_batches_and_lr(train):
    from skstellar.photod.network import FAST_SCHEDULE, QUICK_SCHEDULE

    net, quick = PhotoDNetwork(**FAST_SCHEDULE), PhotoDNetwork(**QUICK_SCHEDULE)
    assert net.batch_size == 2 * quick.batch_size and net.lr == 2 * quick.lr
    # no early stop before max_epochs (the best epoch is still kept)
    assert net.patience >= net.max_epochs
    for name in ("n_runs", "max_epochs", "secondary_max_epochs",
                 "hidden_layer_sizes", "activation", "loss_scales", "lr_factor"):
        assert net.get_params()[name] == quick.get_params()[name]
    cat, y, _, sigma_b, _ = train
    fast = PhotoDNetwork(**{**FAST_SCHEDULE, "max_epochs": 3, "secondary_max_epochs": 2},
                         random_state=0).fit(cat, y, sigma_b=sigma_b)
    assert fast.n_epochs_ == 3 and fast.net_.batch_size == 512
    assert fast.net_.optimizer_.param_groups[0]["lr"] == pytest.approx(2e-3)


def test_warm_start_mismatch_errors(fitted, train):
    cat, y, _, sigma_b, _ = train
    w = fitted.export_weights()
    with pytest.raises(ValueError, match="architecture"):
        PhotoDNetwork(**TINY, hidden_layer_sizes=(8, 8), activation="gelu",
                      init_weights=w).fit(cat, y)
    with pytest.raises(ValueError, match="inputs"):
        PhotoDNetwork(**TINY, input_columns=PHOTOD_INPUT_COLUMNS[:5],
                      init_weights=w).fit(cat, y)
    with pytest.raises(ValueError, match="StudentWeights"):
        PhotoDNetwork(**TINY, init_weights={"a": 1}).fit(cat, y)


def test_prune_after_continues_only_the_best_run(train):
    from skstellar.photod.network import FAST_SCHEDULE, ROBUST_FAST_SCHEDULE

    assert PhotoDNetwork().prune_after is None  # the paper's recipe: every run to the end
    assert ROBUST_FAST_SCHEDULE == {**FAST_SCHEDULE, "n_runs": 2, "prune_after": 60}
    cat, y, _, sigma_b, _ = train
    small = dict(hidden_layer_sizes=(16, 16), activation="gelu", batch_size=256, lr=3e-3,
                 secondary_max_epochs=2, patience=3, random_state=0)
    pruned = PhotoDNetwork(**small, n_runs=3, max_epochs=12, prune_after=4).fit(
        cat, y, sigma_b=sigma_b)
    # the same three runs (same seeds and split) stopped after 4 epochs
    short = PhotoDNetwork(**small, n_runs=3, max_epochs=4).fit(cat, y)
    best = pruned.best_run_
    assert best == short.best_run_ == int(np.argmin(short.run_valid_losses_))
    others = np.arange(3) != best
    np.testing.assert_allclose(pruned.run_valid_losses_[others], short.run_valid_losses_[others])
    # cost: the pruned runs trained prune_after epochs, only the best one went on
    assert np.all(pruned.run_n_epochs_[others] == 4)
    assert 4 < pruned.run_n_epochs_[best] == pruned.n_epochs_ <= 12
    assert pruned.run_n_epochs_.sum() <= 12 + 2 * 4
    # the kept run continued from where it paused (its first 4 epochs are the short run's)
    np.testing.assert_array_equal(np.asarray(pruned.history_[:4, "valid_loss"]),
                                  np.asarray(short.history_[:, "valid_loss"]))
    assert pruned.run_valid_losses_[best] <= short.run_valid_losses_[best]
    # a paused and resumed run is bit-identical to an uninterrupted one
    one = PhotoDNetwork(**small, n_runs=1, max_epochs=12).fit(cat, y)
    one_paused = PhotoDNetwork(**small, n_runs=1, max_epochs=12, prune_after=5).fit(cat, y)
    np.testing.assert_array_equal(one.predict(cat), one_paused.predict(cat))
    assert one.n_epochs_ == one_paused.n_epochs_
    for bad in (0, -1, 2.5, "60"):
        with pytest.raises(ValueError, match="prune_after"):
            PhotoDNetwork(**TINY, prune_after=bad).fit(cat, y)
    with pytest.raises(ValueError, match="prune_after"):
        PhotoDNetwork(**TINY, n_runs=1, prune_after=2, validation_fraction=0).fit(cat, y)


class _Record(Callback):
    """Records, per epoch, the learning rate in use and the weights at the epoch's end."""

    lrs, weights = [], []

    def on_epoch_begin(self, net, **kwargs):
        type(self).lrs.append(net.optimizer_.param_groups[0]["lr"])

    def on_epoch_end(self, net, **kwargs):
        type(self).weights.append([p.detach().clone() for p in net.module_.parameters()])


SMALL = dict(hidden_layer_sizes=(16, 16), activation="gelu", batch_size=256, lr=3e-3,
             n_runs=1, max_epochs=8, early_stopping=False, random_state=0)


def test_anneal_epochs_cosine_tail(train):
    assert PhotoDNetwork().anneal_epochs is None  # the paper's schedule by default
    cat, y, _, _, _ = train
    _Record.lrs = []
    net = PhotoDNetwork(**SMALL, anneal_epochs=4, callbacks=[_Record()]).fit(cat, y)
    # four epochs at the (unreduced) learning rate, then a half cosine towards 0
    k = np.arange(4)
    expected = 3e-3 * np.r_[np.ones(4), 0.5 * (1 + np.cos(np.pi * (k + 0.5) / 4))]
    np.testing.assert_allclose(_Record.lrs, expected, rtol=1e-12)
    plain = PhotoDNetwork(**SMALL).fit(cat, y)
    p, q = net.predict(cat), plain.predict(cat)
    assert np.all(np.isfinite(p)) and not np.allclose(p, q)
    # longer than the run: the whole run is annealed
    _Record.lrs = []
    PhotoDNetwork(**{**SMALL, "max_epochs": 3}, anneal_epochs=50,
                  callbacks=[_Record()]).fit(cat, y)
    np.testing.assert_allclose(_Record.lrs, 3e-3 * 0.5 * (1 + np.cos(np.pi * (np.arange(3) + 0.5)
                                                                      / 3)), rtol=1e-12)
    # a paused and resumed run anneals exactly as an uninterrupted one
    paused = PhotoDNetwork(**SMALL, anneal_epochs=4, prune_after=6).fit(cat, y)
    np.testing.assert_array_equal(paused.predict(cat), p)
    for bad in (0, -1, 2.5, "4"):
        with pytest.raises(ValueError, match="anneal_epochs"):
            PhotoDNetwork(**TINY, anneal_epochs=bad).fit(cat, y)


def test_ema_decay_keeps_the_averaged_weights(train):
    assert PhotoDNetwork().ema_decay is None  # the paper's: the best epoch is kept
    cat, y, _, _, _ = train
    _Record.weights = []
    plain = PhotoDNetwork(**SMALL, callbacks=[_Record()]).fit(cat, y)
    per_epoch = _Record.weights
    net = PhotoDNetwork(**SMALL, ema_decay=0.6).fit(cat, y)
    # the averaging does not change the training, only the weights kept at the end
    np.testing.assert_array_equal(np.asarray(net.history_[:, "valid_loss"]),
                                  np.asarray(plain.history_[:, "valid_loss"]))
    avg = per_epoch[0]
    for w in per_epoch[1:]:
        avg = [0.6 * a + 0.4 * b for a, b in zip(avg, w)]
    kept = list(net.module_.parameters())
    for a, p in zip(avg, kept):
        np.testing.assert_allclose(p.detach().numpy(), a.numpy(), rtol=1e-5, atol=1e-7)
    assert not all(torch.equal(p.detach(), w) for p, w in zip(kept, per_epoch[-1]))
    pred = net.predict(cat)
    assert np.all(np.isfinite(pred)) and not np.allclose(pred, plain.predict(cat))
    # the run's loss is the validation loss of the averaged weights
    v = net.valid_indices_
    with torch.no_grad():
        mu_sigma = net.net_.module_(torch.as_tensor(cat[list(PHOTOD_INPUT_COLUMNS)].to_numpy(
            np.float32)[v]))
        loss = MomentLoss(1 / np.asarray((0.1, 0.1, 0.02)) ** 2)(
            mu_sigma, torch.as_tensor(y[v], dtype=torch.float32))
    assert net.run_valid_losses_[0] == pytest.approx(float(loss), rel=1e-5)
    # a paused and resumed run averages exactly as an uninterrupted one
    paused = PhotoDNetwork(**SMALL, ema_decay=0.6, prune_after=3).fit(cat, y)
    np.testing.assert_array_equal(paused.predict(cat), pred)
    for bad in (0, 1, -0.5, 1.5, "0.9"):
        with pytest.raises(ValueError, match="ema_decay"):
            PhotoDNetwork(**TINY, ema_decay=bad).fit(cat, y)


def test_robust_ema_schedule_is_the_robust_one_with_weight_averaging(train):
    from skstellar.photod.network import ROBUST_EMA_SCHEDULE, ROBUST_FAST_SCHEDULE

    assert ROBUST_EMA_SCHEDULE == {**ROBUST_FAST_SCHEDULE, "ema_decay": 0.8}
    cat, y, _, sigma_b, _ = train
    net = PhotoDNetwork(**{**ROBUST_EMA_SCHEDULE, "max_epochs": 6, "prune_after": 3,
                           "secondary_max_epochs": 2}, random_state=0).fit(cat, y, sigma_b=sigma_b)
    assert sorted(net.run_n_epochs_.tolist()) == [3, 6]
    assert dict(net.net_.callbacks_)["weight_ema"].decay == 0.8
    assert np.all(np.isfinite(net.predict(cat)))
