"""Pretrained models shipped with skstellar (package data, no network access).

>>> import skstellar
>>> print(skstellar.list_pretrained())           # doctest: +SKIP
>>> model = skstellar.load_pretrained("mdwarf-feh")
>>> feh, feh_err = model.predict(catalogue, return_std=True)   # doctest: +SKIP

See ``docs/pretrained.md`` for each model's training data, split, accuracy
and limits, and ``scripts/`` for the scripts that rebuild them.
"""

from .registry import (
    PRETRAINED_DIR,
    PretrainedModel,
    is_pretrained_name,
    list_pretrained,
    load_pretrained,
    pretrained_path,
)
from .store import (
    FORMAT_VERSION,
    load_mdwarf_pipeline,
    load_payne_npz,
    read_model_json,
    save_mdwarf_pipeline,
)

__all__ = [
    "FORMAT_VERSION",
    "PRETRAINED_DIR",
    "PretrainedModel",
    "is_pretrained_name",
    "list_pretrained",
    "load_mdwarf_pipeline",
    "load_payne_npz",
    "load_pretrained",
    "pretrained_path",
    "read_model_json",
    "save_mdwarf_pipeline",
]
