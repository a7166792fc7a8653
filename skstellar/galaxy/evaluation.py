"""Input preparation and the paper's evaluation of the galaxy gas-metallicity CNN.

Shared by ``skstellar demo galaxy`` and ``benchmarks/galaxy_cnn.py``:
redshift-free inputs (observed-frame resampling onto 3800-8000 A at 1 A,
then per-spectrum min-max scaling), residual statistics in the paper's S/N_r
and redshift bins, and the mass-metallicity relation against Tremonti et
al. (2004).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import metrics
from ..datasets.galaxy import tremonti_mass_metallicity
from ..reporting import timed

__all__ = [
    "SNR_BINS",
    "Z_BINS",
    "galaxy_input_pipeline",
    "binned_residuals",
    "tremonti_mzr",
    "mass_metallicity_check",
]

#: The paper's S/N_r bins [3,5), [5,7), [7,10), [10,15), [15,25), [25, inf).
SNR_BINS = np.array([3, 5, 7, 10, 15, 25, 1e9])  # last bin open-ended
#: The paper's redshift bins.
Z_BINS = np.array([0.0, 0.03, 0.05, 0.07, 0.10, 0.15, 0.30])


def galaxy_input_pipeline(wave_min=3800.0, wave_max=8000.0, step=1.0):
    """The paper's redshift-free input: resample in the observed frame, then min-max per spectrum.

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``SpectrumResampler -> SpectrumMinMaxScaler``; its output is a 2-D
        float array (masked pixels filled as the scaler documents).
    """
    from sklearn.pipeline import Pipeline

    from ..preprocessing import SpectrumMinMaxScaler, SpectrumResampler

    return Pipeline([
        ("resample", SpectrumResampler(wave_min=wave_min, wave_max=wave_max, step=step)),
        ("minmax", SpectrumMinMaxScaler()),
    ])


def binned_residuals(x, y_true, y_pred, bins):
    """Residual mean/std/robust std of ``y_pred - y_true`` in bins of ``x`` (a table)."""
    return metrics.binned_statistics(
        x, y_true, y_pred, bins=bins, statistics=("n", "mean", "std", "robust_std"))


#: Tremonti et al. (2004) mass-metallicity relation, 12 + log(O/H), valid 8.5 < x < 11.5
#: (the simulator's :func:`~skstellar.datasets.galaxy.tremonti_mass_metallicity`).
tremonti_mzr = tremonti_mass_metallicity


def mass_metallicity_check(log_mstar, oh_pred, bins=np.arange(8.5, 11.75, 0.5)):
    """Median predicted 12 + log(O/H) in stellar-mass bins next to Tremonti et al. (2004).

    Returns
    -------
    pandas.DataFrame
        ``mass_lo, mass_hi, n, median_pred, tremonti, offset``.
    """
    oh_pred = np.asarray(oh_pred, float)
    idx = np.digitize(np.asarray(log_mstar, float), bins) - 1
    rows = []
    for k in range(len(bins) - 1):
        sel = idx == k
        centre = 0.5 * (bins[k] + bins[k + 1])
        med = float(np.median(oh_pred[sel])) if sel.any() else np.nan
        rows.append({"mass_lo": bins[k], "mass_hi": bins[k + 1], "n": int(sel.sum()),
                     "median_pred": med, "tremonti": float(tremonti_mzr(centre)),
                     "offset": med - float(tremonti_mzr(centre))})
    return pd.DataFrame(rows)


def _fit_and_score(name, model, X_train, y_train, X_test, y_test):
    """Fit and time ``model``, then score its test predictions: (summary dict, predictions)."""
    _, fit_seconds = timed(model.fit, X_train, y_train)
    p, predict_seconds = timed(model.predict, X_test)
    s = metrics.residual_summary(y_test, p)
    return {"model": name, "n_test": int(len(y_test)), "residual_mean": s["mean"],
            "residual_std": s["std"], "residual_robust_std": s["robust_std"],
            "fit_seconds": fit_seconds, "predict_per_second": len(X_test) / predict_seconds}, p


def uncertainty_calibration(model, X, y):
    """z-score std and 68 %/95 % coverage of a fitted regressor's sigma on test rows.

    Returns
    -------
    dict
        ``"calibrated"`` (the default ``uncertainty="calibrated"`` sigma) and,
        when the model has an MC-dropout spread, ``"mc"`` (the raw spread):
        each with ``median_sigma`` (target unit), ``zscore_std``, ``cov68``,
        ``cov95``; plus the calibration's ``a`` and ``b``.
    """
    out = {}
    u = model.predict_uncertainty(X)
    pred = np.asarray(u.prediction).ravel()
    candidates = [("calibrated", np.asarray(u.total_std).ravel())]
    raw = np.asarray(u.raw_std).ravel()
    if np.all(raw > 0):
        candidates.append(("mc", raw))
    for name, sig in candidates:
        cal = metrics.calibration_summary(y, pred, sig)
        out[name] = {"median_sigma": float(np.median(sig)), "zscore_std": cal["zscore_std"],
                     "cov68": cal["frac_within_1sigma"], "cov95": cal["frac_within_2sigma"]}
    if getattr(model, "calibrator_", None) is not None:
        out["a"] = float(model.calibrator_.scale_[0])
        out["b"] = float(model.calibrator_.floor_[0])
    return out


def evaluate_regression(batch, *, max_epochs=100, random_state=0, baselines=(), verbose=0,
                        cnn_params=None):
    """The paper's regression experiment on a batch of star-forming galaxy spectra.

    Inputs go through :func:`galaxy_input_pipeline`; the sample is split 7:1:2
    (test 20 %, validation 1/8 of the rest inside ``fit``); the CNN (paper's
    configuration unless ``cnn_params`` says otherwise) and optional baselines
    (``"random_forest"``: 100 trees; ``"mlp"``: 3 x 1024, both scikit-learn)
    are trained on the same rows.

    Parameters
    ----------
    batch : SpectrumBatch
        With ``meta`` columns ``oh`` (label), ``snr_r``, ``z`` and ``log_mstar``.

    Returns
    -------
    dict
        ``models`` (one summary per model), ``snr_bins``, ``z_bins``, ``mzr``
        (DataFrames for the CNN), ``resample_per_second``, ``epoch_seconds``.
    """
    from sklearn.model_selection import train_test_split

    from .cnn import SpectralCNNRegressor

    meta = batch.meta.reset_index(drop=True)
    y = meta["oh"].to_numpy(float)
    X, resample_seconds = timed(galaxy_input_pipeline().fit_transform, batch)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=0.2,
                                           random_state=random_state)
    Xtr, Xte, ytr, yte = X[idx_train], X[idx_test], y[idx_train], y[idx_test]

    cnn = SpectralCNNRegressor(max_epochs=max_epochs, random_state=random_state,
                               verbose=verbose, **(cnn_params or {}))
    summary, p = _fit_and_score("CNN", cnn, Xtr, ytr, Xte, yte)
    models = [summary]
    models[0]["uncertainty"] = uncertainty_calibration(cnn, Xte, yte)
    n_train = len(Xtr) - cnn.n_valid_
    models[0]["epochs"] = int(cnn.n_epochs_)
    models[0]["epoch_seconds"] = summary["fit_seconds"] / max(cnn.n_epochs_, 1)
    models[0]["epoch_seconds_per_10k"] = models[0]["epoch_seconds"] * 10_000 / n_train

    for name in baselines:
        if name == "random_forest":
            from sklearn.ensemble import RandomForestRegressor

            model = RandomForestRegressor(n_estimators=100, n_jobs=-1, random_state=random_state)
        elif name == "mlp":
            from sklearn.neural_network import MLPRegressor

            model = MLPRegressor(hidden_layer_sizes=(1024, 1024, 1024), early_stopping=True,
                                 validation_fraction=0.125, random_state=random_state,
                                 max_iter=200)
        else:
            raise ValueError(f"Unknown baseline {name!r}; use 'random_forest' or 'mlp'.")
        models.append(_fit_and_score(name, model, Xtr, ytr, Xte, yte)[0])

    test_meta = meta.iloc[idx_test]
    return {
        "models": models,
        "n_train": int(n_train), "n_valid": int(cnn.n_valid_), "n_test": int(len(Xte)),
        "n_pixels": int(X.shape[1]),
        "snr_bins": binned_residuals(test_meta["snr_r"].to_numpy(), yte, p, SNR_BINS),
        "z_bins": binned_residuals(test_meta["z"].to_numpy(), yte, p, Z_BINS),
        "mzr": mass_metallicity_check(test_meta["log_mstar"].to_numpy(), p),
        "resample_per_second": len(X) / resample_seconds,
        "model": cnn,
    }


def evaluate_classification(batch, *, max_epochs=100, random_state=0, verbose=0,
                            cnn_params=None):
    """The paper's star-forming classifier experiment (split 7:1:2).

    ``batch.meta["star_forming"]`` holds the labels ("star-forming" / "other").

    Returns
    -------
    dict
        ``accuracy``, ``report`` (per-class precision/recall/F1 DataFrame), ``fit_seconds``.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support
    from sklearn.model_selection import train_test_split

    from .cnn import SpectralCNNClassifier

    labels = np.where(batch.meta["star_forming"].to_numpy(bool), "star-forming", "other")
    X = galaxy_input_pipeline().fit_transform(batch)
    Xtr, Xte, ytr, yte = train_test_split(X, labels, test_size=0.2, random_state=random_state,
                                          stratify=labels)
    clf = SpectralCNNClassifier(max_epochs=max_epochs, random_state=random_state,
                                verbose=verbose, **(cnn_params or {}))
    _, t_fit = timed(clf.fit, Xtr, ytr)
    pred = clf.predict(Xte)
    prec, rec, f1, sup = precision_recall_fscore_support(yte, pred, labels=clf.classes_)
    report = pd.DataFrame({"class": clf.classes_, "precision": prec, "recall": rec, "f1": f1,
                           "support": sup})
    return {"accuracy": float(accuracy_score(yte, pred)), "report": report,
            "fit_seconds": t_fit, "epochs": int(clf.n_epochs_), "n_test": int(len(yte))}
