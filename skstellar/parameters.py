"""Declared hyperparameters and the one checker every skstellar estimator calls in ``fit``.

Each estimator class lists what its constructor parameters may be in a
``_parameter_constraints`` dict (parameter name -> list of allowed kinds; a
value is valid when it matches any of them). The tables are merged along the
class's MRO, so a base class (the neural base, a calibration mixin) declares
its parameters once. Relations between parameters (``a < b``, "``x=True``
needs ``y > 0``") are :class:`Rule` entries in ``_parameter_rules``, checked by
the same function after the per-parameter constraints.

:func:`validate_parameters` raises one ``ValueError`` of one format::

    MDwarfMetallicityRegressor: parameter 'dropout' must be a float in [0, 1); got 1.5.

Allowed kinds in a constraint list: ``None``; a class (``str``, ``Mapping``,
...: ``isinstance``); the strings ``"boolean"``, ``"random_state"``,
``"callable"``, ``"no_validation"``; or a :class:`Constraint` object
(:class:`Interval`, :class:`Options`, :class:`SequenceOf`,
:class:`Satisfies`).

This is skstellar's own small equivalent of scikit-learn's semi-private
``sklearn.utils._param_validation`` (chosen so that the message names the
estimator, sequences and custom checks are first-class, and nothing depends
on a private module whose behaviour may change between releases).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = [
    "Constraint", "Interval", "Options", "SequenceOf", "Satisfies", "Rule",
    "COLUMN_NAMES", "LAYER_SIZES", "NAN", "RANGE", "SKORCH_CALLBACKS", "is_skorch_callback",
    "parameter_constraints", "parameter_rules", "validate_parameters", "InvalidParameterError",
]


class InvalidParameterError(ValueError, TypeError):
    """A hyperparameter outside its declared constraints.

    A ``ValueError`` (what scikit-learn's estimator checks expect of a bad
    value) and a ``TypeError`` (what code expects of a value of the wrong
    type), as scikit-learn's own ``InvalidParameterError`` is, so either
    ``except`` catches it.
    """


class Constraint:
    """A kind of allowed value: ``is_satisfied_by(value)`` and a description (``str``)."""

    def is_satisfied_by(self, value) -> bool:
        """Whether ``value`` is allowed."""
        raise NotImplementedError


def _accepted(result) -> bool:
    """A check's verdict: anything but ``False`` (Python or numpy) accepts."""
    return not (isinstance(result, (bool, np.bool_)) and not result)


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Interval(Constraint):
    """A number in an interval.

    Parameters
    ----------
    kind : {"int", "real"}
        ``"int"``: an integer (Python or numpy, not a bool); ``"real"``: any
        finite real number (integers included, not a bool, not NaN).
    low, high : float or None
        Ends of the interval; ``None`` is unbounded (and ``"real"`` then
        still excludes infinities).
    closed : {"both", "left", "right", "neither"}, default="both"
        Which ends belong to the interval.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def __post_init__(self):
        if self.kind not in ("int", "real"):
            raise ValueError(f"Interval kind must be 'int' or 'real', got {self.kind!r}.")
        if self.closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"Interval closed must be 'both', 'left', 'right' or 'neither', "
                             f"got {self.closed!r}.")

    def is_satisfied_by(self, value) -> bool:
        """Whether ``value`` is a number of the right kind inside the interval."""
        if _is_bool(value):
            return False
        if self.kind == "int":
            if not isinstance(value, numbers.Integral):
                return False
        elif not (isinstance(value, numbers.Real) and np.isfinite(value)):
            return False
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        above = self.low is None or bool(value >= self.low if left else value > self.low)
        below = self.high is None or bool(value <= self.high if right else value < self.high)
        return above and below

    def __str__(self):
        name = "an int" if self.kind == "int" else "a float"
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is None and self.high is None:
            return name
        if self.high is None:
            return f"{name} {'>=' if left else '>'} {self.low:g}"
        if self.low is None:
            return f"{name} {'<=' if right else '<'} {self.high:g}"
        return f"{name} in {'[' if left else '('}{self.low:g}, {self.high:g}{']' if right else ')'}"


@dataclass(frozen=True)
class Options(Constraint):
    """One of a fixed set of values (compared with ``==`` and the same type)."""

    options: tuple

    def __init__(self, options):
        object.__setattr__(self, "options", tuple(options))

    def is_satisfied_by(self, value) -> bool:
        """Whether ``value`` is one of the options."""
        return any(isinstance(value, type(o)) and not (_is_bool(value) and not _is_bool(o))
                   and value == o for o in self.options)

    def __str__(self):
        return "one of " + ", ".join(map(repr, self.options))


@dataclass(frozen=True)
class SequenceOf(Constraint):
    """A list or tuple (or 1-d array) whose items all satisfy ``item``.

    Parameters
    ----------
    item : Constraint or type
        What each item must be.
    length : int or None
        Exact number of items; ``None`` for any number >= ``min_length``.
    min_length : int, default=1
        Fewest items allowed.
    distinct : bool, default=False
        Items must not repeat.
    increasing : bool, default=False
        Items must be strictly increasing.
    arrays : bool, default=True
        Also accept a 1-d numpy array.
    """

    item: Any
    length: int | None = None
    min_length: int = 1
    distinct: bool = False
    increasing: bool = False
    arrays: bool = True

    def is_satisfied_by(self, value) -> bool:
        """Whether ``value`` is a sequence of valid items."""
        if isinstance(value, np.ndarray) and self.arrays:
            if value.ndim != 1:
                return False
            value = value.tolist()
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return False
        n = len(value)
        if (self.length is not None and n != self.length) or n < self.min_length:
            return False
        if not all(_satisfies(v, self.item) for v in value):
            return False
        if self.distinct and len(set(value)) != n:
            return False
        return not (self.increasing and any(a >= b for a, b in zip(value[:-1], value[1:])))

    def __str__(self):
        if self.length is not None:
            text = f"a sequence of {self.length} items"
        elif self.min_length == 0:
            text = "a (possibly empty) sequence"
        elif self.min_length == 1:
            text = "a non-empty sequence"
        else:
            text = f"a sequence of {self.min_length} or more items"
        text += f", each {_describe(self.item)}"
        text += ", all distinct" if self.distinct else ""
        return text + (", strictly increasing" if self.increasing else "")


@dataclass(frozen=True)
class Satisfies(Constraint):
    """A value accepted by a custom check.

    Parameters
    ----------
    check : callable
        ``check(value)``; the value is valid when it returns anything but
        ``False`` without raising ``ValueError``/``TypeError``.
    description : str
        What a valid value is, for the message.
    explain : bool, default=True
        Add the text of the check's error to the message (useful when it
        says which element is wrong; turn off when it only repeats
        ``description``).
    """

    check: Callable
    description: str
    explain: bool = True

    def is_satisfied_by(self, value) -> bool:
        """Whether ``check(value)`` accepts ``value``."""
        if self.explain:
            return _accepted(self.check(value))
        try:
            return _accepted(self.check(value))
        except (ValueError, TypeError):
            return False

    def __str__(self):
        return self.description


@dataclass(frozen=True)
class Rule:
    """A relation between parameters, checked after each parameter's own constraints.

    Parameters
    ----------
    names : tuple of str
        The parameters involved (shown with their values in the message).
    holds : callable
        ``holds(**{name: value})`` -> bool; ``False`` (or a ``ValueError``)
        means the rule is broken.
    requirement : str
        The rule in words, e.g. ``"early_stopping=True needs validation_fraction > 0"``.
    """

    names: tuple
    holds: Callable
    requirement: str


def _satisfies(value, kind) -> bool:
    if kind is None:
        return value is None
    if isinstance(kind, Constraint):
        return kind.is_satisfied_by(value)
    if isinstance(kind, type):
        return isinstance(value, kind) and not (kind is not bool and _is_bool(value)
                                                and issubclass(kind, numbers.Number))
    if kind == "boolean":
        return _is_bool(value)
    if kind == "random_state":
        return value is None or isinstance(value, np.random.RandomState) or (
            isinstance(value, numbers.Integral) and not _is_bool(value))
    if kind == "callable":
        return callable(value)
    if kind == "no_validation":
        return True
    raise ValueError(f"Unknown parameter constraint {kind!r}.")


def _describe(kind) -> str:
    if kind is None:
        return "None"
    if isinstance(kind, type):
        return {str: "a str", bool: "a bool"}.get(kind, f"an instance of {kind.__name__}")
    return {"boolean": "True or False", "callable": "a callable",
            "random_state": "an int, a numpy RandomState or None",
            "no_validation": "anything"}.get(kind, str(kind))


def _mro_tables(estimator_class, attribute):
    """``attribute`` of each class in the MRO of a class (or instance), bases first."""
    cls = estimator_class if isinstance(estimator_class, type) else type(estimator_class)
    return [vars(base).get(attribute, ()) for base in reversed(cls.__mro__)]


def parameter_constraints(estimator_class) -> dict:
    """The constraint table of ``estimator_class``, merged along its MRO.

    Parameters
    ----------
    estimator_class : type
        An estimator class (or instance).

    Returns
    -------
    dict
        Parameter name -> list of allowed kinds.
    """
    tables = _mro_tables(estimator_class, "_parameter_constraints")
    return {name: kinds for table in tables for name, kinds in dict(table).items()}


def parameter_rules(estimator_class) -> tuple:
    """The cross-parameter :class:`Rule` entries of ``estimator_class``, bases first.

    Parameters
    ----------
    estimator_class : type
        An estimator class (or instance).

    Returns
    -------
    tuple of Rule
    """
    return tuple(r for table in _mro_tables(estimator_class, "_parameter_rules") for r in table)


#: A ``(low, high)`` range of finite numbers with ``low < high``.
RANGE = SequenceOf(Interval("real"), length=2, increasing=True)

#: NaN (for fill values where a real number or NaN is allowed).
NAN = Satisfies(lambda v: isinstance(v, numbers.Real) and bool(np.isnan(v)), "NaN")

#: A non-empty sequence of distinct column names.
COLUMN_NAMES = SequenceOf(str, distinct=True)

#: Layer widths: a non-empty sequence of positive ints.
LAYER_SIZES = SequenceOf(Interval("int", 1, None))


def is_skorch_callback(item) -> bool:
    """Whether ``item`` is a skorch callback (instance or class) or a ``(name, callback)`` pair.

    Parameters
    ----------
    item : object
        One entry of a ``callbacks`` list.

    Returns
    -------
    bool
    """
    from skorch.callbacks import Callback

    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        item = item[1]
    return isinstance(item, Callback) or (isinstance(item, type) and issubclass(item, Callback))


#: The constraint of a ``callbacks`` parameter: a (possibly empty) list of skorch
#: callbacks or ``(name, callback)`` pairs.
SKORCH_CALLBACKS = SequenceOf(
    Satisfies(is_skorch_callback, "a skorch callback or a (name, callback) pair"), min_length=0
)


def _shown(value) -> str:
    """``repr(value)``, or the type's name when the repr is long (arrays, weights)."""
    text = repr(value)
    return text if len(text) <= 120 else f"a {type(value).__name__}"


def validate_parameters(estimator) -> None:
    """Check every declared hyperparameter of ``estimator``, then its rules.

    Parameters
    ----------
    estimator : object
        An estimator whose class (or a base) declares ``_parameter_constraints``
        and optionally ``_parameter_rules``. Declared parameters that the
        estimator's ``__init__`` does not take (a base class declares them for
        the subclasses that do) are skipped.

    Raises
    ------
    ValueError
        On the first invalid parameter, as ``"<Class>: parameter '<name>' must
        be <allowed>; got <value>."``, or the first broken rule, as
        ``"<Class>: <requirement>; got a=..., b=...."``.
    """
    owner = type(estimator).__name__
    getter = getattr(type(estimator), "_get_param_names", None)
    taken = set(getter()) if getter is not None else None
    for name, kinds in parameter_constraints(estimator).items():
        if taken is not None and name not in taken:
            continue  # declared by a base class for subclasses that expose it
        value = getattr(estimator, name)
        detail = ""
        for kind in kinds:
            try:
                if _satisfies(value, kind):
                    break
            except (ValueError, TypeError) as err:
                detail = f" ({str(err).rstrip('.')})"
        else:
            allowed = " or ".join(_describe(k) for k in kinds)
            raise InvalidParameterError(
                f"{owner}: parameter {name!r} must be {allowed}; got {_shown(value)}{detail}."
            )
    for rule in parameter_rules(estimator):
        values = {name: getattr(estimator, name) for name in rule.names}
        detail = ""
        try:
            ok = _accepted(rule.holds(**values))
        except (ValueError, TypeError) as err:
            ok, detail = False, f" ({err})"
        if not ok:
            shown = ", ".join(f"{k}={_shown(v)}" for k, v in values.items())
            raise InvalidParameterError(f"{owner}: {rule.requirement}; got {shown}{detail}.")
