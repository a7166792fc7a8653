"""skstellar: scikit-learn estimators for stellar and galaxy parameters from survey data.

Every method is a scikit-learn estimator or transformer built on PyTorch
(through skorch) that composes in ``Pipeline``, ``GridSearchCV`` and
``cross_val_score``, survives ``joblib.dump``/``joblib.load`` and answers
``predict(X, return_std=True)`` with honest uncertainties.
"""

__version__ = "0.1.0"

_LAZY = {
    "BayesianPhotoD": "skstellar.photod",
    "CalibratedRegressor": "skstellar.calibration",
    "HybridPhotoD": "skstellar.photod",
    "PhotoDNetwork": "skstellar.photod",
    "CycleStarNet": "skstellar.cyclestarnet",
    "MDwarfMetallicityRegressor": "skstellar.mdwarf",
    "PayneEmulator": "skstellar.cyclestarnet",
    "SpectralLabelFitter": "skstellar.cyclestarnet",
    "SpectralCNNClassifier": "skstellar.galaxy",
    "SpectralCNNRegressor": "skstellar.galaxy",
    "UncertainNNRegressor": "skstellar.xp",
}

#: Functions of skstellar.pretrained exported at the top level.
_LAZY.update({"list_pretrained": "skstellar.pretrained", "load_pretrained": "skstellar.pretrained"})

#: Subpackages reachable as ``skstellar.<name>`` after ``import skstellar``:
#: ``io`` reads real survey files, ``datasets`` simulates them.
_SUBPACKAGES = ("datasets", "io")

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    # Estimators are imported on first use so ``import skstellar`` stays light
    # (torch is only loaded when a network is needed).
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"skstellar.{name}")
    raise AttributeError(f"module 'skstellar' has no attribute {name!r}")
