"""Declared hyperparameters: the one checker, its message, and every estimator's table."""

import importlib
import inspect
import pathlib
import pkgutil
import re

import numpy as np
import pytest
from sklearn.base import BaseEstimator

import skstellar
from skstellar.parameters import (
    Interval,
    Options,
    Rule,
    Satisfies,
    SequenceOf,
    parameter_constraints,
    parameter_rules,
    validate_parameters,
)

MESSAGE = re.compile(r"^(?P<cls>\w+): parameter '(?P<name>\w+)' must be .+; got .+\.$", re.S)


def _public_estimators():
    """Every public estimator/transformer class defined in skstellar (skorch nets excluded)."""
    import skorch

    found = {}
    for info in pkgutil.walk_packages(skstellar.__path__, "skstellar."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseEstimator)
                    and obj.__module__.startswith("skstellar.") and not name.startswith("_")
                    and not issubclass(obj, skorch.NeuralNet)
                    and "__init__" in vars(obj)):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


ESTIMATORS = _public_estimators()


def test_the_public_estimators_are_found():
    names = {cls.__name__ for cls in ESTIMATORS}
    assert {"MDwarfMetallicityRegressor", "PhotoDNetwork", "UncertainNNRegressor",
            "AbsoluteMagnitudes", "SpectrumResampler", "HybridPhotoD",
            "SpectralLabelFitter", "CovariantStandardScaler"} <= names
    assert len(ESTIMATORS) >= 19


def test_no_hand_written_check_params_left():
    root = pathlib.Path(skstellar.__file__).parent
    hits = [str(p.relative_to(root)) for p in root.rglob("*.py")
            if "def _check_params" in p.read_text()]
    assert hits == []


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_constructor_is_keyword_only_and_every_parameter_is_declared(cls):
    sig = inspect.signature(cls.__init__)
    positional = [p.name for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]
    assert positional == [], f"{cls.__name__}.__init__ takes {positional} positionally"
    declared = parameter_constraints(cls)
    missing = sorted(set(cls._get_param_names()) - set(declared))
    assert missing == [], f"{cls.__name__} does not declare {missing}"
    for name, kinds in declared.items():
        assert isinstance(kinds, list) and kinds, (cls.__name__, name)


def test_every_declared_parameter_is_taken_by_some_estimator():
    # a table entry nobody takes is a typo or a leftover
    taken = set().union(*(set(cls._get_param_names()) for cls in ESTIMATORS))
    pending = set() if "callbacks" in taken else {"callbacks"}  # declared ahead of branch core
    declared = set().union(*(set(parameter_constraints(cls)) for cls in ESTIMATORS))
    assert declared - taken - pending == set()


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_defaults_are_valid_and_a_wrong_type_is_named(cls):
    est = cls()
    validate_parameters(est)  # the defaults satisfy the table
    for name, kinds in parameter_constraints(cls).items():
        if name not in cls._get_param_names() or "no_validation" in kinds:
            continue
        bad = cls(**{name: object()})
        with pytest.raises(ValueError) as info:
            validate_parameters(bad)
        match = MESSAGE.match(str(info.value))
        assert match, str(info.value)
        assert (match["cls"], match["name"]) == (cls.__name__, name)


def test_message_format():
    class Toy(BaseEstimator):
        _parameter_constraints = {
            "dropout": [Interval("real", 0, 1, closed="left")],
            "mode": [Options(("a", "b"))],
            "sizes": [SequenceOf(Interval("int", 1, None))],
            "window": [None, Satisfies(lambda w: w[0] < w[1], "a pair (lo, hi) with lo < hi")],
        }
        _parameter_rules = (
            Rule(("dropout", "mode"), lambda dropout, mode: mode == "a" or dropout == 0,
                 "mode='b' needs dropout=0"),
        )

        def __init__(self, *, dropout=0.2, mode="a", sizes=(4,), window=None):
            self.dropout, self.mode, self.sizes, self.window = dropout, mode, sizes, window

    validate_parameters(Toy())
    cases = {
        "Toy: parameter 'dropout' must be a float in [0, 1); got 1.5.": {"dropout": 1.5},
        "Toy: parameter 'dropout' must be a float in [0, 1); got True.": {"dropout": True},
        "Toy: parameter 'mode' must be one of 'a', 'b'; got 'c'.": {"mode": "c"},
        ("Toy: parameter 'sizes' must be a non-empty sequence, each an int >= 1; "
         "got (4, 0)."): {"sizes": (4, 0)},
        ("Toy: parameter 'window' must be None or a pair (lo, hi) with lo < hi; got 3 "
         "('int' object is not subscriptable)."): {"window": 3},
        "Toy: mode='b' needs dropout=0; got dropout=0.2, mode='b'.": {"mode": "b"},
    }
    for message, params in cases.items():
        with pytest.raises(ValueError) as info:
            validate_parameters(Toy(**params))
        assert str(info.value) == message


def test_constraint_kinds():
    assert Interval("int", 1, None).is_satisfied_by(np.int64(3))
    assert not Interval("int", 1, None).is_satisfied_by(3.0)
    assert not Interval("int", 0, None).is_satisfied_by(False)
    assert not Interval("real").is_satisfied_by(np.nan)
    assert not Interval("real").is_satisfied_by(np.inf)
    assert Interval("real", 0, 1, closed="right").is_satisfied_by(1)
    assert not Interval("real", 0, 1, closed="right").is_satisfied_by(0)
    assert not Options((1, 2)).is_satisfied_by(True)  # True == 1, but not an option
    assert not Options(("raise",)).is_satisfied_by(["raise"])
    pair = SequenceOf(Interval("real"), length=2, increasing=True)
    assert pair.is_satisfied_by(np.array([0.0, 1.0])) and not pair.is_satisfied_by((1, 0))
    assert not pair.is_satisfied_by("ab") and not pair.is_satisfied_by(np.zeros((2, 2)))
    names = SequenceOf(str, distinct=True, arrays=False)
    assert names.is_satisfied_by(["a", "b"]) and not names.is_satisfied_by(["a", "a"])
    assert not names.is_satisfied_by(np.array(["a", "b"]))
    # a numpy False rejects like a Python False (a check that returns an array accepts)
    assert not Satisfies(lambda v: np.bool_(v > 0), "positive").is_satisfied_by(-1)
    assert Satisfies(lambda v: np.asarray(v), "array-like").is_satisfied_by([0])


def test_tables_merge_along_the_mro_and_skip_what_init_does_not_take():
    class Base(BaseEstimator):
        _parameter_constraints = {"a": [Interval("int", 0, None)], "b": ["boolean"]}
        _parameter_rules = (Rule(("a",), lambda a: a < 10, "a < 10"),)

    class Child(Base):
        _parameter_constraints = {"a": [Interval("int", 5, None)]}  # tighter than the base's

        def __init__(self, *, a=5):  # takes no b
            self.a = a

    assert parameter_constraints(Child)["a"] == [Interval("int", 5, None)]
    assert set(parameter_constraints(Child)) == {"a", "b"}
    assert len(parameter_rules(Child)) == 1
    validate_parameters(Child())  # b is declared by the base but not taken: skipped
    with pytest.raises(ValueError, match=r"Child: parameter 'a' must be an int >= 5; got 3\."):
        validate_parameters(Child(a=3))
    with pytest.raises(ValueError, match=r"Child: a < 10; got a=12\."):
        validate_parameters(Child(a=12))


# ---------------------------------------------------------------- issue 17, item 3
def test_mdwarf_dropout_out_of_range():
    from skstellar import MDwarfMetallicityRegressor

    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(40, 8)), rng.uniform(-0.4, 0.4, 40)
    with pytest.raises(ValueError) as info:
        MDwarfMetallicityRegressor(dropout=1.5).fit(X, y)
    assert str(info.value) == (
        "MDwarfMetallicityRegressor: parameter 'dropout' must be a float in [0, 1); got 1.5.")


def test_photod_network_zero_epochs():
    from skstellar.photod.network import PHOTOD_INPUT_COLUMNS, PhotoDNetwork

    rng = np.random.RandomState(0)
    import pandas as pd

    X = pd.DataFrame(rng.uniform(0.01, 1, (40, 10)), columns=list(PHOTOD_INPUT_COLUMNS))
    y = rng.normal(size=(40, 3))
    with pytest.raises(ValueError) as info:
        PhotoDNetwork(max_epochs=0).fit(X, y)
    assert str(info.value) == "PhotoDNetwork: parameter 'max_epochs' must be an int >= 1; got 0."


def test_uncertain_nn_zero_width_layer():
    from skstellar import UncertainNNRegressor

    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(40, 4)), rng.normal(size=(40, 2))
    with pytest.raises(ValueError) as info:
        UncertainNNRegressor(hidden=(0,)).fit(X, y)
    assert str(info.value) == (
        "UncertainNNRegressor: parameter 'hidden' must be a non-empty sequence, each an "
        "int >= 1; got (0,).")
