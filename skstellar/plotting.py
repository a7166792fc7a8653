"""Diagnostic figures for predicted stellar parameters.

This module holds the standard plots used to inspect a regressor:

* :func:`plot_one_to_one` -- predicted vs true values with a residual panel;
* :func:`plot_residual_histogram` -- distribution of ``y_pred - y_true``;
* :func:`plot_zscore_histogram` -- z-scores against N(0, 1), to check the
  predicted uncertainties;
* :func:`plot_calibration` -- reliability diagram: observed coverage of the
  Gaussian intervals against their nominal coverage;
* :func:`plot_cmd` -- a colour-magnitude diagram.

Only matplotlib is needed, and :mod:`matplotlib.pyplot` is imported inside
the functions so importing this module stays cheap and backend-neutral.
Every function draws into the ``ax`` (or ``fig``) it is given, or into a new
figure, and returns the :class:`~matplotlib.figure.Figure` so scripts can
``fig.savefig(...)`` it; nothing calls ``plt.show()``. Rows in which any
plotted input is non-finite are left out of the plots and annotations.
Annotations use the statistics of :mod:`skstellar.metrics` and its sign
convention (residual = prediction - truth).
"""

from __future__ import annotations

import numpy as np

from skstellar import metrics

__all__ = [
    "plot_calibration",
    "plot_cmd",
    "plot_one_to_one",
    "plot_residual_histogram",
    "plot_zscore_histogram",
]


def _finite_1d(arrays, names):
    """1-D float arrays of equal length without their non-finite rows; ``None`` passes through."""
    out = []
    n = None
    for a, name in zip(arrays, names):
        if a is None:
            out.append(None)
            continue
        arr = metrics.to_float_array(a, name)
        if arr.ndim == 0 and name == "y_std":
            arr = np.full(n if n is not None else 1, float(arr))
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
        if n is None:
            n = arr.size
        elif arr.size != n:
            raise ValueError(f"{names[0]} and {name} have different lengths ({n} and {arr.size})")
        out.append(arr)
    if not n:
        raise ValueError(f"{names[0]} is empty")
    keep = np.all([np.isfinite(a) for a in out if a is not None], axis=0)
    if not keep.any():
        raise ValueError("no finite rows to plot")
    return [None if a is None else a[keep] for a in out]


def _with_unit(text, unit):
    return f"{text} ({unit})" if unit else text


def _figure(fig, figsize):
    """Return ``fig``, or a new constrained-layout figure of ``figsize`` when it is None."""
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figsize, layout="constrained")
    return fig


def _single_axes(ax, fig, figsize):
    """Return ``(fig, ax)``: the given axes, a new axes on ``fig``, or both new."""
    if ax is not None:
        return ax.figure, ax
    fig = _figure(fig, figsize)
    return fig, fig.add_subplot()


def _scatter_style(s, c, cmap, color):
    """Keyword arguments of ``Axes.scatter``: coloured by ``c`` if given, else ``color``."""
    colour = {"color": color} if c is None else {"c": c, "cmap": cmap}
    return {"s": s, "edgecolors": "none", **colour}


def _fmt(value, unit=""):
    text = f"{value:+.3g}" if np.isfinite(value) else "nan"
    return f"{text} {unit}".rstrip()


def _annotate(ax, text, x=0.97, y=0.95, ha="right", **text_kw):
    """Small text, its top at axes coordinates ``(x, y)`` (top right), ``text_kw`` to ``text``."""
    ax.text(x, y, text, transform=ax.transAxes, va="top", ha=ha, fontsize="small", **text_kw)


def plot_one_to_one(
    y_true,
    y_pred,
    y_std=None,
    color=None,
    color_label=None,
    label="[Fe/H]",
    unit="dex",
    lims=None,
    ax=None,
    fig=None,
    cmap="viridis",
    s=12,
):
    """Predicted vs true values with a residual panel underneath.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Reference and predicted values, in ``unit``.
    y_std : array-like of shape (n,) or float, optional
        Predicted 1-sigma uncertainties in ``unit``, drawn as vertical error
        bars in both panels.
    color : array-like of shape (n,), optional
        Quantity used to colour the points (e.g. S/N or colour in mag); a
        colorbar labelled ``color_label`` is added.
    color_label : str, optional
        Colorbar label, including its unit.
    label : str, default="[Fe/H]"
        Name of the target, used in the axis labels.
    unit : str, default="dex"
        Unit of the target; ``""`` or ``None`` for none.
    lims : (float, float), optional
        Limits of both axes of the top panel (and the shared x axis), in
        ``unit``. Defaults to the range of the data plus a 5 % margin.
    ax : sequence of two Axes, optional
        ``(top, bottom)`` axes to draw into; they should share x.
    fig : matplotlib.figure.Figure, optional
        Figure in which to create the two panels when ``ax`` is not given.
    cmap : str or Colormap, default="viridis"
        Colormap for ``color``.
    s : float, default=12
        Marker size in points^2.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the two panels (and the colorbar, if any). The
        top panel is annotated with N, the bias and the robust standard
        deviation of the residuals (see :mod:`skstellar.metrics`).
    """
    t, p, e, c = _finite_1d([y_true, y_pred, y_std, color], ["y_true", "y_pred", "y_std", "color"])
    res = p - t

    if ax is not None:
        axes = list(np.ravel(ax))
        if len(axes) != 2:
            raise ValueError("ax must be a pair of Axes (top, bottom)")
        ax_top, ax_bot = axes
        fig = ax_top.figure
    else:
        fig = _figure(fig, (5.0, 6.0))
        ax_top, ax_bot = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})

    if lims is None:
        lo = float(min(t.min(), p.min()))
        hi = float(max(t.max(), p.max()))
        pad = 0.05 * (hi - lo) if hi > lo else 0.5
        lims = (lo - pad, hi + pad)
    lims = tuple(float(v) for v in lims)

    point_kw = dict(_scatter_style(s, c, cmap, "C0"), zorder=3)

    for axis, y in ((ax_bot, res), (ax_top, p)):  # (the top panel's points feed the colorbar)
        if e is not None:
            axis.errorbar(t, y, yerr=e, fmt="none", ecolor="0.6", elinewidth=0.7, zorder=2)
        sc = axis.scatter(t, y, **point_kw)

    ax_top.plot(lims, lims, color="k", lw=1, ls="--", zorder=4)
    ax_top.set(xlim=lims, ylim=lims, ylabel=_with_unit(f"Predicted {label}", unit))
    ax_bot.axhline(0.0, color="k", lw=1, ls="--", zorder=4)

    ax_bot.set(xlabel=_with_unit(f"True {label}", unit), ylabel=_with_unit("Pred $-$ True", unit))
    ax_top.tick_params(labelbottom=False)

    text = "\n".join(
        [
            f"N = {t.size}",
            f"bias = {_fmt(metrics.bias(t, p), unit or '')}",
            r"$\sigma_\mathrm{rob}$ = " + f"{metrics.robust_std(res):.3g} {unit or ''}".rstrip(),
        ]
    )
    _annotate(ax_top, text, x=0.04, y=0.96, ha="left",
              bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})

    if c is not None:
        fig.colorbar(sc, ax=[ax_top, ax_bot], label=color_label or "")
    return fig


def plot_residual_histogram(
    y_true, y_pred, bins=40, ax=None, label="[Fe/H]", unit="dex", fig=None
):
    """Histogram of the residuals ``y_pred - y_true``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Reference and predicted values, in ``unit``.
    bins : int or array-like, default=40
        Passed to :meth:`matplotlib.axes.Axes.hist` (count or edges in
        ``unit``).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.
    label : str, default="[Fe/H]"
        Name of the target, used in the x label.
    unit : str, default="dex"
        Unit of the target; ``""`` or ``None`` for none.
    fig : matplotlib.figure.Figure, optional
        Figure to add a new axes to when ``ax`` is not given.

    Returns
    -------
    matplotlib.figure.Figure
        The figure; the axes is annotated with N, the mean, the standard
        deviation and the robust standard deviation of the residuals.
    """
    t, p = _finite_1d([y_true, y_pred], ["y_true", "y_pred"])
    summary = metrics.residual_summary(t, p)
    fig, ax = _single_axes(ax, fig, (5.0, 3.8))

    ax.hist(p - t, bins=bins, histtype="stepfilled", color="C0", alpha=0.6)
    ax.axvline(0.0, color="k", lw=1, ls="--")
    ax.axvline(summary["mean"], color="C3", lw=1)
    ax.set(xlabel=_with_unit(f"Pred $-$ True {label}", unit), ylabel="N")
    u = unit or ""
    text = "\n".join(
        [
            f"N = {summary['n']}",
            f"mean = {_fmt(summary['mean'], u)}",
            f"std = {summary['std']:.3g} {u}".rstrip(),
            r"$\sigma_\mathrm{rob}$ = " + f"{summary['robust_std']:.3g} {u}".rstrip(),
        ]
    )
    _annotate(ax, text)
    return fig


def plot_zscore_histogram(y_true, y_pred, y_std, bins=40, ax=None, fig=None, zmax=None):
    """Density histogram of z-scores with the standard normal overlaid.

    The z-score is ``(y_true - y_pred) / y_std`` (see
    :func:`skstellar.metrics.zscore`); for calibrated uncertainties the
    histogram follows the N(0, 1) curve and its standard deviation is 1.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Reference and predicted values (any common unit).
    y_std : array-like of shape (n,) or float
        Predicted 1-sigma uncertainties in the same unit, strictly positive.
    bins : int or array-like, default=40
        Number of bins over ``[-zmax, zmax]`` or explicit (dimensionless)
        edges.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.
    fig : matplotlib.figure.Figure, optional
        Figure to add a new axes to when ``ax`` is not given.
    zmax : float, optional
        Half-width of the plotted z range; defaults to
        ``max(4, 99th percentile of |z|)``. Points beyond it are not drawn
        but are counted in the annotation.

    Returns
    -------
    matplotlib.figure.Figure
        The figure; the axes is annotated with N and the mean and standard
        deviation of the z-scores.
    """
    t, p, e = _finite_1d([y_true, y_pred, y_std], ["y_true", "y_pred", "y_std"])
    z = metrics.zscore(t, p, e)
    cal = metrics.calibration_summary(t, p, e)
    fig, ax = _single_axes(ax, fig, (5.0, 3.8))

    if zmax is None:
        zmax = max(4.0, float(np.percentile(np.abs(z), 99)))
    ax.hist(
        z,
        bins=bins,
        range=(-zmax, zmax) if np.ndim(bins) == 0 else None,
        density=True,
        histtype="stepfilled",
        color="C0",
        alpha=0.6,
        label="z-scores",
    )
    grid = np.linspace(-zmax, zmax, 400)
    ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), "k-", lw=1.2, label="N(0, 1)")
    ax.set(xlim=(-zmax, zmax), xlabel=r"$z = (y_\mathrm{true} - y_\mathrm{pred}) / \sigma$",
           ylabel="Density")
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    text = "\n".join(
        [
            f"N = {cal['n']}",
            f"mean = {_fmt(cal['zscore_mean'])}",
            f"std = {cal['zscore_std']:.3g}",
        ]
    )
    _annotate(ax, text)
    return fig


def plot_calibration(y_true, y_pred, y_std, ax=None, fig=None, label=None, nominal=None):
    """Reliability diagram: observed vs nominal coverage of Gaussian intervals.

    Each point is one interval ``y_pred -+ k sigma`` with nominal coverage
    ``c`` (``k = Phi^-1((1 + c) / 2)``) against the fraction of ``y_true``
    inside it (:func:`skstellar.metrics.coverage_curve`). Calibrated
    uncertainties lie on the diagonal; a curve below it means the
    uncertainties are too small (over-confident), above it too large. Call
    it again with the same ``ax`` and another ``label`` to compare, e.g.,
    raw MC-dropout and calibrated sigmas.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Reference and predicted values (any common unit).
    y_std : array-like of shape (n,) or float
        Predicted 1-sigma uncertainties in the same unit, strictly positive.
    ax : matplotlib.axes.Axes, optional
    fig : matplotlib.figure.Figure, optional
    label : str, optional
        Legend label of the curve; its z-score std and 68 %/95 % coverages
        are appended.
    nominal : array-like, optional
        Nominal coverages (default 0.05-0.95 in steps of 0.05, and 0.99).

    Returns
    -------
    matplotlib.figure.Figure
    """
    t, p, e = _finite_1d([y_true, y_pred, y_std], ["y_true", "y_pred", "y_std"])
    curve = metrics.coverage_curve(t, p, e, nominal=nominal)
    cal = metrics.calibration_summary(t, p, e)
    fig, ax = _single_axes(ax, fig, (4.2, 4.2))
    if not getattr(ax, "_skstellar_diagonal", False):
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
        ax._skstellar_diagonal = True
    text = (f"z std {cal['zscore_std']:.2f}, 68%: {cal['frac_within_1sigma']:.2f}, "
            f"95%: {cal['frac_within_2sigma']:.2f}")
    ax.plot(curve["nominal"], curve["observed"], "o-", ms=3,
            label=f"{label}: {text}" if label else text)
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal",
           xlabel="Nominal coverage of the Gaussian interval", ylabel="Observed coverage")
    ax.legend(loc="upper left", fontsize="x-small", frameon=False)
    return fig


def plot_cmd(
    colour,
    abs_mag,
    c=None,
    color_label=None,
    xlabel=r"$G_\mathrm{BP} - G_\mathrm{RP}$ (mag)",
    ylabel=r"$M_G$ (mag)",
    ax=None,
    fig=None,
    s=4,
    cmap="viridis",
    **scatter_kwargs,
):
    """Colour-magnitude diagram, brighter stars at the top.

    Parameters
    ----------
    colour : array-like of shape (n,)
        Colour index in mag (x axis).
    abs_mag : array-like of shape (n,)
        Absolute magnitude in mag (y axis, inverted).
    c : array-like of shape (n,), optional
        Quantity used to colour the points (e.g. predicted [Fe/H] in dex);
        a colorbar labelled ``color_label`` is added.
    color_label : str, optional
        Colorbar label, including its unit.
    xlabel, ylabel : str
        Axis labels; the defaults are for Gaia BP - RP and M_G.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.
    fig : matplotlib.figure.Figure, optional
        Figure to add a new axes to when ``ax`` is not given.
    s : float, default=4
        Marker size in points^2.
    cmap : str or Colormap, default="viridis"
        Colormap for ``c``.
    **scatter_kwargs
        Further keyword arguments for :meth:`matplotlib.axes.Axes.scatter`.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the diagram (and the colorbar, if any).
    """
    x, y, cc = _finite_1d([colour, abs_mag, c], ["colour", "abs_mag", "c"])
    fig, ax = _single_axes(ax, fig, (4.5, 5.0))

    sc = ax.scatter(x, y, **{**_scatter_style(s, cc, cmap, "k"), **scatter_kwargs})
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if cc is not None:
        fig.colorbar(sc, ax=ax, label=color_label or "")
    return fig
