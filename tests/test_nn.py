"""Tests of the shared torch core: MLP builder, MC dropout, losses, base regressor."""

import numpy as np
import pytest
import torch
from torch import nn

from skstellar.nn import (
    LinearWeightedMSELoss,
    build_mlp,
    count_parameters,
    dropout_layers,
    make_activation,
    mc_dropout_predict,
)


def _trained_like(module, n_in, seed=0):
    """Give BatchNorm layers non-trivial running statistics."""
    g = torch.Generator().manual_seed(seed)
    module.train()
    with torch.no_grad():
        for _ in range(5):
            module(torch.randn(256, n_in, generator=g) * 3 + 1)
    module.eval()
    return module


def test_build_mlp_structure_and_options():
    m = build_mlp(8, [64, 32], 1, activation="linear", batch_norm=True, input_batch_norm=True,
                  dropout=0.2, output_activation="tanh")
    kinds = [type(layer).__name__ for layer in m]
    assert kinds == ["BatchNorm1d", "Linear", "BatchNorm1d", "_Linear", "Dropout",
                     "Linear", "BatchNorm1d", "_Linear", "Dropout", "Linear", "Tanh"]
    # bias off in hidden layers only
    m2 = build_mlp(8, [64, 64], 1, activation="leaky_relu:0.1", bias=False,
                   batch_norm=True, batch_norm_position="after_activation")
    linears = [layer for layer in m2 if isinstance(layer, nn.Linear)]
    assert linears[0].bias is None and linears[1].bias is None and linears[2].bias is not None
    assert isinstance(m2[1], nn.LeakyReLU) and m2[1].negative_slope == 0.1
    assert isinstance(m2[2], nn.BatchNorm1d)
    # per-layer activations (the photo-D network)
    m3 = build_mlp(10, [45, 45, 42, 33, 36], 6,
                   activation=["gelu", "softsign", "softsign", "sigmoid", "gelu"])
    acts = [type(layer).__name__ for layer in m3 if not isinstance(layer, nn.Linear)]
    assert acts == ["GELU", "Softsign", "Softsign", "Sigmoid", "GELU"]
    assert count_parameters(m3) == (10 * 45 + 45) + (45 * 45 + 45) + (45 * 42 + 42) + (
        42 * 33 + 33) + (33 * 36 + 36) + (36 * 6 + 6)


@pytest.mark.parametrize("bad", [dict(activation="nope"), dict(dropout=1.0),
                                 dict(activation=["relu"]), dict(batch_norm_position="x")])
def test_build_mlp_rejects_bad_options(bad):
    with pytest.raises(ValueError):
        build_mlp(4, [8, 8], 1, **bad)


def test_make_activation_returns_fresh_modules():
    a = nn.LeakyReLU(0.2)
    b = make_activation(a)
    assert b is not a and b.negative_slope == 0.2
    assert isinstance(make_activation(nn.GELU), nn.GELU)
    with pytest.raises(TypeError):
        make_activation(3)


@pytest.mark.parametrize("activation", ["linear", "leaky_relu:0.1", "gelu"])
def test_mc_folded_path_equals_hooked_forward(activation):
    m = _trained_like(build_mlp(8, [32, 16], 2, activation=activation, batch_norm=True,
                                input_batch_norm=True, dropout=0.3, output_activation="tanh"), 8)
    X = np.random.RandomState(1).randn(300, 8).astype(np.float32)
    a_mean, a_std = mc_dropout_predict(m, X, 50, random_state=3, fold=False)
    b_mean, b_std = mc_dropout_predict(m, X, 50, random_state=3, fold=True)
    np.testing.assert_allclose(a_mean, b_mean, atol=2e-5)
    np.testing.assert_allclose(a_std, b_std, atol=2e-5)
    assert a_std.min() > 0


def test_mc_dropout_keeps_batchnorm_in_eval_and_restores_mode():
    m = _trained_like(build_mlp(4, [16], 1, batch_norm=True, dropout=0.5), 4)
    bn = m[1]
    before = bn.running_mean.clone()
    m.train()
    X = np.random.RandomState(0).randn(50, 4)
    mean, std = mc_dropout_predict(m, X, 20, random_state=0, fold=False)
    assert torch.equal(bn.running_mean, before)  # running stats untouched
    assert m.training  # mode restored
    # with dropout removed the MC mean equals the deterministic eval output
    m.eval()
    m_nodrop = nn.Sequential(*[layer for layer in m if not isinstance(layer, nn.Dropout)])
    with torch.no_grad():
        det = m_nodrop(torch.as_tensor(X, dtype=torch.float32)).numpy()
    mean1, std1 = mc_dropout_predict(m_nodrop, X, 5, random_state=0)
    np.testing.assert_allclose(mean1, det, atol=1e-6)
    assert np.all(std1 == 0)


@pytest.mark.parametrize("fold", [True, False])
def test_mc_network_mode_is_seeded_and_subset_invariant(fold):
    m = _trained_like(build_mlp(6, [32, 32], 1, activation="relu", batch_norm=True,
                                dropout=0.2), 6)
    X = np.random.RandomState(2).randn(500, 6)
    full = mc_dropout_predict(m, X, 40, random_state=7, fold=fold, batch_rows=40 * 64)
    sub = mc_dropout_predict(m, X[100:150], 40, random_state=7, fold=fold)
    np.testing.assert_allclose(full[0][100:150], sub[0], atol=1e-5)
    again = mc_dropout_predict(m, X, 40, random_state=7, fold=fold)
    np.testing.assert_allclose(full[0], again[0], atol=1e-6)
    other = mc_dropout_predict(m, X, 40, random_state=8, fold=fold)
    assert not np.allclose(full[1], other[1])


def test_mc_per_sample_mode_matches_network_mode_in_distribution():
    # Both modes sample the same predictive distribution per star; with many
    # passes their per-star means and stds agree statistically.
    m = _trained_like(build_mlp(3, [64], 1, activation="relu", dropout=0.5), 3)
    X = np.random.RandomState(0).randn(20, 3)
    mn, sn = mc_dropout_predict(m, X, 4000, mode="network", random_state=1)
    mp, sp = mc_dropout_predict(m, X, 4000, mode="per_sample", random_state=1)
    np.testing.assert_allclose(mn, mp, atol=4 * sn.max() / np.sqrt(4000) * 2)
    np.testing.assert_allclose(sn, sp, rtol=0.1)


def test_mc_return_samples_and_bad_args():
    m = build_mlp(3, [8], 2, dropout=0.5)
    X = np.zeros((7, 3))
    mean, std, samples = mc_dropout_predict(m, X, 11, random_state=0, return_samples=True)
    assert samples.shape == (11, 7, 2) and mean.shape == (7, 2)
    np.testing.assert_allclose(samples.mean(0), mean, atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        mc_dropout_predict(m, X, 10, mode="bogus")
    with pytest.raises(ValueError, match="n_passes"):
        mc_dropout_predict(m, X, 0)
    assert len(dropout_layers(m)) == 1


def test_linear_weighted_mse():
    loss = LinearWeightedMSELoss(4.0, 0.5)
    y = torch.tensor([[0.0], [0.5], [-0.25]])
    p = torch.tensor([[0.1], [0.3], [-0.25]])
    expected = np.mean([0.01 * 0.5, 0.04 * 2.5, 0.0])
    assert float(loss(p, y)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        loss(p, y.ravel())
    with pytest.raises(ValueError):
        LinearWeightedMSELoss(1.0, 0.0)


def test_torch_threads_sets_and_restores():
    from skstellar.nn import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
        with torch_threads(None):  # None leaves the setting alone
            assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            raise RuntimeError("restored even on error")
    assert torch.get_num_threads() == before
