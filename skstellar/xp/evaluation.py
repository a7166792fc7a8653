"""Train-and-evaluate helpers for the Gaia XP uncertain network (demo and benchmark).

- :func:`make_xp_pipeline` -- ``XPNormalizer -> UncertainNNRegressor``;
- :func:`labels_and_errors` -- label matrix and label errors from a catalogue;
- :func:`evaluate_xp` -- simulate a catalogue (:func:`skstellar.datasets.make_xp_catalog`),
  train, and measure per-label RMSE, bias, median uncertainties, z-score
  calibration against the truth and the three uncertainty parts.

The paper's reference figures (APOGEE hold-out, Sect. 4.1) are in
:data:`PAPER_RESULTS`; they are on real data, ours on simulated data.
"""

from __future__ import annotations

import numpy as np

from ..datasets.gaia_xp import XP_LABELS, make_xp_catalog
from ..reporting import timed

__all__ = ["XP_LABELS", "PAPER_RESULTS", "make_xp_pipeline", "labels_and_errors", "evaluate_xp"]

#: Paper, Sect. 4.1 (APOGEE hold-out): RMSE and median sigma_total per label.
PAPER_RESULTS = {
    "teff": {"rmse": 51.8, "median_sigma_total": 69.1},
    "logg": {"rmse": 0.091, "median_sigma_total": 0.14},
    "fe_h": {"rmse": 0.064, "median_sigma_total": 0.068},
    "c_fe": {"rmse": 0.043, "median_sigma_total": 0.031},
    "n_fe": {"rmse": 0.052, "median_sigma_total": 0.040},
    "alpha_m": {"rmse": 0.025, "median_sigma_total": 0.029},
}


def make_xp_pipeline(covariance="paper", photometry=True, **regressor_params):
    """``XPNormalizer -> UncertainNNRegressor`` as a scikit-learn Pipeline.

    Parameters
    ----------
    covariance : {"paper", "exact"}
        Normalisation covariance (see :class:`~skstellar.preprocessing.XPNormalizer`).
    photometry : bool
        Append the colours and pseudo-absolute magnitude.
    **regressor_params
        Passed to :class:`~skstellar.xp.UncertainNNRegressor`.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``xpnormalizer`` and ``uncertainnnregressor``; pass label errors
        as ``fit(X, y, uncertainnnregressor__y_err=err)``.
    """
    from sklearn.pipeline import make_pipeline

    from ..preprocessing.xp import XPNormalizer
    from .regressor import UncertainNNRegressor

    return make_pipeline(XPNormalizer(covariance=covariance, photometry=photometry),
                         UncertainNNRegressor(**regressor_params))


def labels_and_errors(catalog, labels=XP_LABELS, error_suffix="_err"):
    """Label matrix and label errors (NaN where missing) from a catalogue.

    Returns
    -------
    y, y_err : ndarray of shape (n, n_labels)
    """
    y = np.column_stack([np.asarray(catalog[c], dtype=np.float64) for c in labels])
    err = np.column_stack([np.asarray(catalog[c + error_suffix], dtype=np.float64) for c in labels])
    return y, err


def evaluate_xp(n_stars=8000, test_fraction=0.25, labels=XP_LABELS, random_state=0,
                noise_levels=(), verbose=0, **regressor_params):
    """Simulate, train the uncertain network and measure it against the truth.

    Parameters
    ----------
    n_stars : int
        Simulated stars (train + test).
    test_fraction : float
        Seeded test split.
    labels : sequence of str
    random_state : int
    noise_levels : sequence of float
        Extra test catalogues with the same stars and the input noise scaled
        by these factors (``make_xp_catalog(noise_scale=...)``), to measure how
        ``sigma_input`` tracks the injected noise.
    verbose : int
    **regressor_params
        For :class:`~skstellar.xp.UncertainNNRegressor` (e.g. ``max_iter``).

    Returns
    -------
    dict
        ``per_label`` (list of dicts), ``n_train``, ``n_test``, timings,
        ``noise_tracking`` and the fitted ``pipeline``.
    """
    from ..metrics import calibration_summary

    labels = tuple(labels)
    cat, truth = make_xp_catalog(n_stars, labels=labels, random_state=random_state,
                                 return_truth=True)
    perm = np.random.RandomState(random_state).permutation(len(cat))
    n_test = int(round(test_fraction * len(cat)))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    y, err = labels_and_errors(cat, labels)
    y_true = np.column_stack([np.asarray(truth[f"true_{c}"], dtype=np.float64) for c in labels])

    pipe = make_xp_pipeline(**{"random_state": random_state, "verbose": verbose,
                               **regressor_params})
    _, fit_s = timed(pipe.fit, cat.iloc[train], y[train],
                     uncertainnnregressor__y_err=err[train])

    norm, model = pipe[0], pipe[-1]
    X_test, norm_s = timed(norm.transform, cat.iloc[test])
    u, pred_s = timed(model.predict_uncertainty, X_test)

    pred, tot, raw = (u[k].reshape(n_test, -1) for k in ("prediction", "total_std", "raw_std"))
    cal_truth = calibration_summary(y_true[test], pred, tot, target_names=list(labels))
    cal_raw = calibration_summary(y_true[test], pred, raw, target_names=list(labels))
    obs_std = np.sqrt(tot**2 + err[test] ** 2)
    cal_obs = calibration_summary(y[test], pred, obs_std, target_names=list(labels))
    sigma = {part: np.sqrt(u[f"{part}_var"].reshape(n_test, -1))
             for part in ("model", "input", "excess")}
    calibrator = model.calibrator_
    per_label = []
    for j, name in enumerate(labels):
        r = pred[:, j] - y_true[test, j]
        per_label.append({
            "label": name,
            "rmse_vs_truth": float(np.sqrt(np.mean(r**2))),
            "bias_vs_truth": float(np.mean(r)),
            "rmse_vs_observed": float(np.sqrt(np.mean((pred[:, j] - y[test, j]) ** 2))),
            "median_sigma_total": float(np.median(tot[:, j])),
            "median_sigma_model": float(np.median(sigma["model"][:, j])),
            "median_sigma_input": float(np.median(sigma["input"][:, j])),
            "median_sigma_excess": float(np.median(sigma["excess"][:, j])),
            "median_label_error": float(np.nanmedian(err[test, j])),
            "zscore_std_vs_truth": float(cal_truth.loc[name, "zscore_std"]),
            "zscore_robust_std_vs_truth": float(cal_truth.loc[name, "zscore_robust_std"]),
            "zscore_std_vs_observed": float(cal_obs.loc[name, "zscore_std"]),
            "cov68_vs_truth": float(cal_truth.loc[name, "frac_within_1sigma"]),
            "cov95_vs_truth": float(cal_truth.loc[name, "frac_within_2sigma"]),
            "median_sigma_raw": float(np.median(raw[:, j])),
            "zscore_std_vs_truth_raw": float(cal_raw.loc[name, "zscore_std"]),
            "cov68_vs_truth_raw": float(cal_raw.loc[name, "frac_within_1sigma"]),
            "cov95_vs_truth_raw": float(cal_raw.loc[name, "frac_within_2sigma"]),
            "calib_a": None if calibrator is None else float(calibrator.scale_[j]),
            "calib_b": None if calibrator is None else float(calibrator.floor_[j]),
            "paper_rmse": PAPER_RESULTS.get(name, {}).get("rmse"),
            "paper_median_sigma_total": PAPER_RESULTS.get(name, {}).get("median_sigma_total"),
        })

    tracking = []
    for level in noise_levels:
        cat_l = make_xp_catalog(n_stars, labels=labels, random_state=random_state,
                                noise_scale=float(level))
        u_l = model.predict_uncertainty(norm.transform(cat_l.iloc[test]))
        vin = u_l["input_var"].reshape(n_test, -1)
        tracking.append({"noise_scale": float(level),
                         **{f"median_sigma_input_{c}": float(np.median(np.sqrt(vin[:, j])))
                            for j, c in enumerate(labels)}})

    return {
        "n_train": int(len(train)), "n_test": int(n_test), "labels": list(labels),
        "per_label": per_label, "fit_seconds": fit_s, "n_iter": int(model.n_iter_),
        "normalise_seconds_test": norm_s, "predict_seconds_test": pred_s,
        "n_mc_passes": int(model.n_mc_passes), "noise_tracking": tracking,
        "pipeline": pipe, "test_index": test.tolist(),
    }
