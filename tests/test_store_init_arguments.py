"""``NeuralEstimatorBase._store_init_arguments`` stores every ``__init__`` argument as given."""

import inspect

import pytest

from skstellar.galaxy import SpectralCNNClassifier, SpectralCNNRegressor
from skstellar.mdwarf import MDwarfMetallicityRegressor
from skstellar.xp import UncertainNNRegressor


@pytest.mark.parametrize("cls", [MDwarfMetallicityRegressor, UncertainNNRegressor,
                                 SpectralCNNRegressor, SpectralCNNClassifier])
def test_every_init_argument_is_stored_unchanged(cls):
    names = list(inspect.signature(cls).parameters)
    values = {name: object() for name in names}  # unique sentinels, stored by identity
    est = cls(**values)
    assert list(vars(est)) == names
    assert all(getattr(est, name) is values[name] for name in names)
