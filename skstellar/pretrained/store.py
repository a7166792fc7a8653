"""Save and rebuild a fitted M-dwarf pipeline as plain arrays plus JSON.

A shipped model is two files in one folder:

``weights.npz``
    The torch ``state_dict`` of the network (``numpy`` arrays, float32),
    read with ``numpy.load(..., allow_pickle=False)``: no code is executed
    when loading.
``model.json``
    The constructor parameters of every pipeline step (``get_params``), the
    fitted attributes the network does not hold (``mc_seed_``,
    ``feature_names_in_``, ...), the versions that wrote it, and the model
    card (description, training data, validity domain, measured accuracy).

On load the pipeline is rebuilt from the parameters with the estimator's own
code, its network is created by a one-epoch fit on four synthetic rows (so
its layer layout is exactly what the installed ``skstellar`` builds), and the
stored weights and attributes then replace the synthetic ones.

Why not a pickle (``joblib.dump``): a pickle is tied to the scikit-learn,
skorch and torch versions that wrote it, and loading one runs arbitrary
code. Arrays + JSON survive library upgrades and can be audited by eye.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

__all__ = ["save_mdwarf_pipeline", "load_mdwarf_pipeline", "load_payne_npz", "read_model_json",
           "FORMAT_VERSION"]

#: Version of the folder layout written by :func:`save_mdwarf_pipeline`.
FORMAT_VERSION = 1

_WEIGHTS = "weights.npz"
_META = "model.json"


def _jsonable(value):
    """Convert a parameter or attribute value to JSON (tuples become lists)."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return {"__tuple__": [_jsonable(v) for v in value]} if isinstance(value, tuple) \
            else [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"Cannot store a value of type {type(value).__name__} as JSON: {value!r}")


def _from_json(value):
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        if "__tuple__" in value:
            return tuple(_from_json(v) for v in value["__tuple__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _fitted_attributes(estimator):
    """Public fitted attributes (``name_``) that are plain values, not the network."""
    out = {}
    for name, value in vars(estimator).items():
        if not name.endswith("_") or name.startswith("_") or name == "net_":
            continue
        try:
            out[name] = _jsonable(value)
        except ValueError:
            continue
    return out


def _calibrator_state(regressor):
    """The held-out variance calibration (scale a, floor b per target), or None."""
    cal = getattr(regressor, "calibrator_", None)
    if cal is None:
        return None
    fitted = {k: _jsonable(np.asarray(getattr(cal, k))) for k in ("scale_", "floor_", "n_samples_")}
    return {"params": _jsonable({"fit_scale": cal.fit_scale, "fit_floor": cal.fit_floor,
                                 "warn_below": cal.warn_below}), **fitted}


def _restore_calibrator(state):
    from ..calibration import VarianceCalibrator

    cal = VarianceCalibrator(**state["params"])
    for name, dtype in (("scale_", np.float64), ("floor_", np.float64), ("n_samples_", int)):
        setattr(cal, name, np.asarray(state[name], dtype=dtype))
    return cal


def save_mdwarf_pipeline(pipeline, folder, card=None):
    """Write a fitted ``AbsoluteMagnitudes -> MDwarfMetallicityRegressor`` pipeline.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Fitted, as built by :func:`skstellar.cli.make_mdwarf_pipeline`.
    folder : str or path-like
        Created if needed; ``weights.npz`` and ``model.json`` are written
        (overwritten) inside.
    card : dict, optional
        Model card stored under ``"card"`` (description, data, accuracy...).

    Returns
    -------
    pathlib.Path
        The folder.
    """
    import sklearn
    import torch

    from .. import __version__

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [n for n, _ in pipeline.steps]
    if names != ["absolute_magnitudes", "regressor"]:
        raise ValueError(
            f"Expected pipeline steps ['absolute_magnitudes', 'regressor']; got {names}.")
    absmag, reg = pipeline.steps[0][1], pipeline.steps[1][1]
    state = {k: v.detach().cpu().numpy() for k, v in reg.module_.state_dict().items()}
    np.savez(folder / _WEIGHTS, **state)
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": "mdwarf_pipeline",
        "written_by": {"skstellar": __version__, "torch": torch.__version__,
                       "scikit-learn": sklearn.__version__, "numpy": np.__version__},
        "steps": {
            "absolute_magnitudes": {"params": _jsonable(absmag.get_params(deep=False)),
                                    "input_columns": list(absmag.feature_names_in_)},
            "regressor": {"params": _jsonable(reg.get_params(deep=False)),
                          "fitted": _fitted_attributes(reg),
                          "calibrator": _calibrator_state(reg)},
        },
        "card": _jsonable(card or {}),
    }
    (folder / _META).write_text(json.dumps(meta, indent=1) + "\n")
    return folder


def read_model_json(folder):
    """The parsed ``model.json`` of a stored model folder (tuples and arrays restored)."""
    path = Path(folder) / _META
    if not path.is_file():
        raise FileNotFoundError(f"No {_META} in {os.fspath(folder)!r}.")
    meta = json.loads(path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {meta.get('format_version')!r} is not supported "
            f"(this skstellar reads {FORMAT_VERSION}).")
    return _from_json(meta)


def _synthetic_rows(columns):
    """Four finite rows with the training columns (only to build the network)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    data = {}
    for c in columns:
        if "parallax" in c and "error" not in c:
            data[c] = 20.0 + rng.uniform(0, 1, 4)
        elif c.endswith("error") or "sig" in c:
            data[c] = 0.05 + rng.uniform(0, 0.01, 4)
        else:
            data[c] = 12.0 + rng.uniform(0, 1, 4)
    return pd.DataFrame(data), np.array([-0.2, 0.0, 0.1, 0.2])


def load_mdwarf_pipeline(folder):
    """Rebuild the pipeline written by :func:`save_mdwarf_pipeline`.

    Parameters
    ----------
    folder : str or path-like

    Returns
    -------
    sklearn.pipeline.Pipeline
        Fitted; ``pipeline.card_`` holds the model card (dict).
    """
    import torch

    from ..cli import make_mdwarf_pipeline

    folder = Path(folder)
    meta = read_model_json(folder)
    if meta.get("kind") != "mdwarf_pipeline":
        raise ValueError(f"{folder}: not an M-dwarf pipeline (kind={meta.get('kind')!r}).")
    steps = meta["steps"]
    reg_params = steps["regressor"]["params"]
    pipe = make_mdwarf_pipeline()
    pipe.set_params(**{f"{step}__{k}": v for step in ("absolute_magnitudes", "regressor")
                       for k, v in steps[step]["params"].items()})
    # Build the network with the estimator's own code: one epoch on 4 synthetic rows.
    pipe.set_params(regressor__max_epochs=1, regressor__validation_fraction=0.0,
                    regressor__verbose=0, regressor__batch_size=4,
                    regressor__uncertainty="mc")
    pipe.fit(*_synthetic_rows(steps["absolute_magnitudes"]["input_columns"]))
    pipe.set_params(**{f"regressor__{k}": reg_params[k]
                       for k in ("max_epochs", "validation_fraction", "verbose", "batch_size")})
    cal_state = steps["regressor"].get("calibrator")
    # A model written before calibrated uncertainties existed has no calibrator:
    # it keeps the raw MC-dropout spread it was published with.
    pipe.set_params(regressor__uncertainty=reg_params.get("uncertainty", "mc")
                    if cal_state is not None else "mc")
    reg = pipe.steps[1][1]
    with np.load(folder / _WEIGHTS, allow_pickle=False) as npz:
        state = {k: torch.from_numpy(np.array(npz[k])) for k in npz.files}
    reg.module_.load_state_dict(state, strict=True)
    reg.module_.eval()
    for name, value in steps["regressor"]["fitted"].items():
        setattr(reg, name, value)
    reg.calibrator_ = _restore_calibrator(cal_state) if cal_state is not None else None
    pipe.card_ = meta.get("card", {})
    return pipe


def load_payne_npz(folder):
    """A shipped Payne emulator: ``weights.npz`` in The Payne's array format.

    Returns
    -------
    skstellar.PayneEmulator
        Fitted (see :meth:`skstellar.PayneEmulator.from_npz`); ``card_`` holds
        the model card.
    """
    from ..cyclestarnet import PayneEmulator

    folder = Path(folder)
    meta = read_model_json(folder)
    emu = PayneEmulator.from_npz(folder / _WEIGHTS)
    emu.card_ = meta.get("card", {})
    return emu
