"""Diagnostics of the Gaia XP uncertain network (Sect. 4.4-5.1 of the paper).

- :func:`derivative_coefficients` -- the weighted pseudo-inverse of the
  network gradient, ``dx/dy = P(J w^2)^T w^2`` (Eq. 14), one coefficient
  vector per label;
- :func:`derivative_spectra` -- those coefficients mapped through the Gaia XP
  basis into sampled spectra with the official ``gaiaxpy`` package (optional
  extra ``pip install "skstellar[xp]"``; it ships its basis files, so this
  works offline);
- :func:`plot_uncertainty_parts` -- model, input, excess and total
  uncertainty against the predicted label (the paper's Fig. 5);
- :func:`plot_zscores` -- one z-score histogram per label against N(0, 1)
  (Fig. 7).

Feature attention (Eq. 13) is :meth:`UncertainNNRegressor.feature_attention`;
the z-score numbers are :func:`skstellar.metrics.calibration_summary`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..covariance import CovariantFeatures

__all__ = [
    "derivative_coefficients",
    "derivative_spectra",
    "plot_uncertainty_parts",
    "plot_zscores",
]

_COEF = re.compile(r"^(bp|rp)_(\d+)$")


def derivative_coefficients(model, X, weights=None):
    """Weighted pseudo-inverse of the mean network gradient (Eq. 14).

    Parameters
    ----------
    model : fitted UncertainNNRegressor
    X : CovariantFeatures or array-like (n_samples, n_features)
        The sample over which gradients are averaged (e.g. red-clump stars).
    weights : array-like of shape (n_features,), optional
        ``w^2`` of Eq. 14; default the standard deviation of each feature over
        ``X`` (the paper's choice).

    Returns
    -------
    pandas.DataFrame
        Index: feature names; columns ``y0, y1, ...``: ``dx_i / dy_j`` in
        feature units per label unit.
    """
    values = X.values if isinstance(X, CovariantFeatures) else np.asarray(X, dtype=np.float64)
    J = model.input_jacobian(X).mean(axis=0)  # (L, d)
    w2 = values.std(axis=0) if weights is None else np.asarray(weights, dtype=np.float64)
    if w2.shape != (values.shape[1],):
        raise ValueError(f"weights must have one value per feature ({values.shape[1]}).")
    dxdy = np.linalg.pinv(J * w2[None, :]).T * w2[None, :]  # (L, d)
    return pd.DataFrame(dxdy.T, index=list(model.feature_names_),
                        columns=[f"y{j}" for j in range(model.n_outputs_)])


def _coefficient_vectors(dcoef, n_coefficients=55):
    """Per label, full BP and RP coefficient vectors from feature rows bp_i / rp_i."""
    L = dcoef.shape[1]
    bp, rp = np.zeros((2, L, n_coefficients))
    found = False
    for name, row in zip(dcoef.index, dcoef.to_numpy()):
        m = _COEF.match(str(name))
        if m and int(m.group(2)) < n_coefficients:
            (bp if m.group(1) == "bp" else rp)[:, int(m.group(2))] = row
            found = True
    if not found:
        raise ValueError(
            "No feature is named bp_<i> or rp_<i>: derivative spectra need the "
            "feature names XPNormalizer gives (fit the model on its output)."
        )
    return bp, rp


def derivative_spectra(model, X, weights=None, calibrated=True, sampling=None):
    """Derivative spectra of every label through the Gaia XP basis.

    The BP/RP parts of :func:`derivative_coefficients` are used as basis
    coefficients (RP0, constant after normalisation, gets 0) and sampled with
    ``gaiaxpy.calibrate`` (absolute wavelengths, nm; BP and RP merged) or
    ``gaiaxpy.convert`` (internal pseudo-wavelengths, per band).

    Parameters
    ----------
    model : fitted UncertainNNRegressor (trained on XPNormalizer features)
    X : CovariantFeatures
    weights : array-like, optional
        See :func:`derivative_coefficients`.
    calibrated : bool, default=True
        ``gaiaxpy.calibrate`` (True) or ``gaiaxpy.convert`` (False).
    sampling : array-like, optional
        Wavelength grid [nm] (calibrated) or pseudo-wavelength grid passed to
        gaiaxpy; default gaiaxpy's.

    Returns
    -------
    pandas.DataFrame
        Long format: ``label``, ``band`` ("BP+RP" when calibrated),
        ``wavelength`` (nm, or pseudo-wavelength) and ``derivative`` (flux per
        RP0-normalised unit per label unit).
    """
    try:
        import matplotlib as mpl

        # gaiaxpy's plotter sets text.usetex=True on import (needs LaTeX):
        # keep the user's matplotlib settings untouched.
        with mpl.rc_context():
            import gaiaxpy
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "derivative_spectra needs the optional gaiaxpy package: "
            'pip install "skstellar[xp]" (or pip install gaiaxpy).'
        ) from exc
    dcoef = derivative_coefficients(model, X, weights)
    k = 55
    bp, rp = _coefficient_vectors(dcoef, k)
    L = bp.shape[0]
    n_corr = k * (k - 1) // 2
    table = pd.DataFrame({
        "source_id": np.arange(L, dtype=np.int64),
        "bp_coefficients": list(bp), "rp_coefficients": list(rp),
        "bp_coefficient_errors": [np.ones(k)] * L, "rp_coefficient_errors": [np.ones(k)] * L,
        "bp_coefficient_correlations": [np.zeros(n_corr)] * L,
        "rp_coefficient_correlations": [np.zeros(n_corr)] * L,
        "bp_n_parameters": [k] * L, "rp_n_parameters": [k] * L,
        "bp_standard_deviation": [1.0] * L, "rp_standard_deviation": [1.0] * L,
    })
    kwargs = {"save_file": False, "truncation": False, "disable_info": True}
    if sampling is not None:
        kwargs["sampling"] = np.asarray(sampling, dtype=np.float64)
    func = gaiaxpy.calibrate if calibrated else gaiaxpy.convert
    try:
        out, grid = func(table, **kwargs)
    except TypeError:  # older gaiaxpy without disable_info
        kwargs.pop("disable_info")
        out, grid = func(table, **kwargs)
    names = list(dcoef.columns)
    grid = np.asarray(grid, dtype=np.float64)
    return pd.concat([pd.DataFrame({"label": names[int(r["source_id"])],
                                    "band": str(r.get("xp", "BP+RP")).upper(), "wavelength": grid,
                                    "derivative": np.asarray(r["flux"], dtype=np.float64)})
                      for _, r in out.iterrows()], ignore_index=True)


def plot_uncertainty_parts(prediction, parts, label=0, label_name=None, ax=None, bins=20):
    """Median uncertainty parts against the predicted label (paper Fig. 5).

    Parameters
    ----------
    prediction : ndarray (n,) or (n, L)
    parts : dict
        From :meth:`UncertainNNRegressor.predict_uncertainty`
        (``model_var``, ``input_var``, ``excess_var``, ``total_std``).
    label : int
        Column to plot for 2-D input.
    label_name : str, optional
    ax : matplotlib Axes, optional
    bins : int
        Number of bins in the predicted value.

    Returns
    -------
    matplotlib Axes
    """
    import matplotlib.pyplot as plt

    def col(a):
        a = np.asarray(a, dtype=np.float64)
        return a[:, label] if a.ndim == 2 else a

    x = col(prediction)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    edges = np.quantile(x, np.linspace(0, 1, bins + 1))
    centre = 0.5 * (edges[1:] + edges[:-1])
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
    styles = (("total_std", "total", "k", False), ("model_var", "model", "tab:red", True),
              ("input_var", "input", "tab:blue", True), ("excess_var", "excess", "tab:green", True))
    for key, name, colour, is_var in styles:
        v = col(parts[key])
        s = np.sqrt(v) if is_var else v
        med = np.array([np.median(s[idx == b]) if np.any(idx == b) else np.nan
                        for b in range(bins)])
        ax.plot(centre, med, color=colour, label=name)
    ax.set_xlabel(label_name or f"predicted y{label}")
    ax.set_ylabel("median uncertainty")
    ax.legend(frameon=False, fontsize=8)
    return ax


def plot_zscores(y_true, y_pred, y_std, label_names=None, bins=40):
    """One z-score histogram per label against N(0, 1) (paper Fig. 7).

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt

    from ..plotting import plot_zscore_histogram

    t, p, s = (np.asarray(a, dtype=np.float64).reshape(len(y_true), -1)
               for a in (y_true, y_pred, y_std))
    L = t.shape[1]
    names = label_names or [f"y{j}" for j in range(L)]
    ncol = min(3, L)
    nrow = -(-L // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.2 * nrow), squeeze=False)
    for j in range(L):
        ax = axes.flat[j]
        ok = np.isfinite(t[:, j]) & np.isfinite(p[:, j]) & (s[:, j] > 0)
        plot_zscore_histogram(t[ok, j], p[ok, j], s[ok, j], bins=bins, ax=ax)
        ax.set_title(names[j])
    for ax in list(axes.flat)[L:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
