"""Survey-size inference paths: chunk-parallel deterministic predict and in-place activations."""

import numpy as np
import pytest
import torch

from skstellar.galaxy import SpectralCNNRegressor
from skstellar.nn import build_cnn1d
from skstellar.nn.mc_dropout import inference_forward
from skstellar.nn.threads import torch_threads


@pytest.fixture(scope="module")
def cnn():
    rng = np.random.RandomState(0)
    X = rng.rand(40, 700).astype(np.float32)
    y = X[:, :50].mean(1) + 0.1 * rng.rand(40)
    m = SpectralCNNRegressor(channels=(4, 8), max_epochs=1, batch_size=16, random_state=0).fit(X, y)
    return m, rng.rand(203, 700).astype(np.float32)


def test_inference_forward_bit_identical_and_leaves_input():
    torch.manual_seed(0)
    m = build_cnn1d(300, 2, channels=(4, 8), dropout=0.3, hidden_sizes=(5,)).eval()
    x = torch.randn(7, 300)
    x0 = x.clone()
    with torch.inference_mode():
        ref = m(x)
        out = inference_forward(m)(x)
    assert torch.equal(out, ref)
    assert torch.equal(x, x0)  # the input is never modified in place
    # a ReLU directly on the input is not applied in place
    seq = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(3, 1))
    xi = torch.tensor([[-1.0, 2.0, -3.0]])
    with torch.inference_mode():
        inference_forward(seq)(xi)
    assert xi[0, 0] == -1.0
    lin = torch.nn.Linear(3, 1)
    assert inference_forward(lin) is lin


def test_chunked_threaded_predict_row_invariant(cnn):
    m, X = cnn
    assert m._rows_per_chunk() == 2**17 // 700  # 187: two chunks for 203 rows
    with torch_threads(2):
        p2 = m.predict(X)
    with torch_threads(1):
        p1 = m.predict(X)
    with torch.inference_mode():
        full = m._format(m.module_.eval()(torch.as_tensor(X)).numpy())
    np.testing.assert_allclose(p2, p1, rtol=0, atol=1e-6)
    np.testing.assert_allclose(p2, full, rtol=0, atol=1e-6)
    # a row's prediction does not depend on the other rows or their order
    perm = np.random.RandomState(1).permutation(len(X))
    with torch_threads(2):
        pp = m.predict(X[perm])
        single = m.predict(X[5:6])
    np.testing.assert_allclose(pp, p2[perm], rtol=0, atol=1e-6)
    np.testing.assert_allclose(single, p2[5:6], rtol=0, atol=1e-6)


def test_predict_restores_module_mode_and_threads(cnn):
    m, X = cnn
    before = torch.get_num_threads()
    m.module_.train()
    m.predict(X[:10])
    assert m.module_.training
    m.module_.eval()
    assert torch.get_num_threads() == before
