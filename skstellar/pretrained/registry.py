"""The catalogue of pretrained models shipped inside the package, loaded by name.

Each model lives in ``skstellar/pretrained/data/<name>/`` (package data, no
network access). :func:`list_pretrained` describes them; :func:`load_pretrained`
rebuilds one as a fitted estimator or ``Pipeline``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import store

__all__ = ["list_pretrained", "load_pretrained", "pretrained_path", "PretrainedModel",
           "PRETRAINED_DIR"]

#: Folder holding one sub-folder per shipped model.
PRETRAINED_DIR = Path(__file__).resolve().parent / "data"

#: Loader of each model kind written in ``model.json``.
_KINDS = {"mdwarf_pipeline": "load_mdwarf_pipeline", "payne_npz": "load_payne_npz"}


@dataclass(frozen=True)
class PretrainedModel:
    """What :func:`list_pretrained` says about one shipped model.

    Attributes
    ----------
    name : str
        Name passed to :func:`load_pretrained` (and to ``skstellar predict``).
    description : str
        One line: what goes in and what comes out.
    training_data : str
        The real sample it was trained on, with its provenance.
    validity_domain : str
        Where its predictions are meant to be used.
    accuracy : str
        Accuracy measured on held-out stars (the split is in the card).
    inputs : tuple of str
        Catalogue columns the model reads (archive names).
    card : dict
        The full model card (``model.json``'s ``card``).
    """

    name: str
    description: str
    training_data: str
    validity_domain: str
    accuracy: str
    inputs: tuple = ()
    card: dict = field(default_factory=dict, repr=False, compare=False)

    def __str__(self):
        return "\n".join([
            f"{self.name}: {self.description}",
            f"  training data  : {self.training_data}",
            f"  validity domain: {self.validity_domain}",
            f"  accuracy       : {self.accuracy}",
            f"  input columns  : {', '.join(self.inputs)}",
        ])


class PretrainedList(list):
    """A list of :class:`PretrainedModel` that prints as a readable block."""

    def __str__(self):
        return "\n\n".join(str(m) for m in self) or "No pretrained models are installed."

    __repr__ = __str__

    def names(self):
        """The model names, in order."""
        return [m.name for m in self]


def _folders():
    return sorted(p.parent for p in PRETRAINED_DIR.glob("*/model.json") if p.is_file())


def list_pretrained():
    """The pretrained models shipped with skstellar.

    Returns
    -------
    PretrainedList
        A list of :class:`PretrainedModel` (name, one-line description,
        training data, validity domain, measured accuracy, input columns);
        ``print`` shows one block per model.

    Examples
    --------
    >>> import skstellar
    >>> "mdwarf-feh" in skstellar.list_pretrained().names()
    True
    """
    out = PretrainedList()
    for folder in _folders():
        meta = store.read_model_json(folder)
        card = meta.get("card", {})
        out.append(PretrainedModel(
            name=folder.name,
            **{k: card.get(k, "") for k in ("description", "training_data", "validity_domain")},
            accuracy=card.get("accuracy_summary", ""),
            inputs=tuple(meta["steps"]["absolute_magnitudes"]["input_columns"])
            if "steps" in meta else tuple(card.get("inputs", ())),
            card=card,
        ))
    return out


def pretrained_path(name):
    """Folder of the shipped model ``name``.

    Raises
    ------
    ValueError
        If no model has that name (the message lists the names that exist).
    """
    if not is_pretrained_name(name):
        names = [p.name for p in _folders()]
        raise ValueError(
            f"No pretrained model named {name!r}; available: {', '.join(names) or 'none'}.")
    return PRETRAINED_DIR / name


def is_pretrained_name(name):
    """Whether ``name`` is the name of a shipped model."""
    return isinstance(name, str) and (PRETRAINED_DIR / name / "model.json").is_file()


def load_pretrained(name):
    """Load a shipped, fitted model by name.

    Parameters
    ----------
    name : str
        One of ``list_pretrained().names()``, e.g. ``"mdwarf-feh"``.

    Returns
    -------
    estimator or sklearn.pipeline.Pipeline
        Fitted. ``"mdwarf-feh"``: a Pipeline answering
        ``predict(X, return_std=True)``; ``"payne-legacy-2018"``: a
        :class:`~skstellar.PayneEmulator` (labels -> spectrum). Its ``card_``
        attribute holds the model card (dict: training data, split,
        accuracy, versions).

    Examples
    --------
    >>> import skstellar
    >>> model = skstellar.load_pretrained("mdwarf-feh")
    >>> sorted(model.card_)[:2]
    ['accuracy', 'accuracy_summary']
    """
    folder = pretrained_path(name)
    kind = store.read_model_json(folder).get("kind")
    if kind not in _KINDS:
        raise ValueError(f"Pretrained model {name!r} has an unknown kind {kind!r}.")
    return getattr(store, _KINDS[kind])(folder)
