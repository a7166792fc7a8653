"""The ``skstellar`` command line: ``predict``, ``fit``, ``list`` and ``demo``.

Examples
--------
::

    skstellar predict mdwarf-feh stars.csv feh.csv     # pretrained model, no training
    skstellar list                                     # the pretrained models
    skstellar fit mdwarf train.fits model.joblib --target fe_h
    skstellar predict model.joblib stars.csv predictions.parquet
    skstellar fit xp xp_labelled.csv xp.joblib         # Gaia XP continuous table + labels
    skstellar fit photod stars.parquet photod.joblib --target Mr_true FeH_true Ar_true
    skstellar fit galaxy spectra.parquet cnn.joblib --target oh
    skstellar predict cnn.joblib lamost_spectra/ oh.csv
    skstellar fit labelfit model_spectra.parquet payne.joblib --target teff logg m_h
    skstellar predict payne.joblib lamost_spectra/ labels.csv --n-jobs 2
    skstellar demo mdwarf                              # simulate, train, print paper-vs-ours

Catalogues are read and written as CSV, ECSV, FITS, Parquet or VOTable
(chosen by the file extension); XP tables as the Gaia archive serves them;
spectra as LAMOST FITS files (a file, a folder or a glob) or a spectra table.
A fitted model is a joblib file holding a scikit-learn ``Pipeline`` that
remembers its method and label names; a pretrained model is loaded by name
(:func:`skstellar.load_pretrained`). The Python functions behind the
commands (:func:`read_method_input`, :func:`fit_method`,
:func:`predict_method`, :func:`load_model`) give identical results.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from .reporting import format_table as _table  # noqa: F401  (benchmarks import it from here)
from .reporting import timed, write_json

__all__ = ["main", "build_parser", "make_mdwarf_pipeline", "predict_table", "read_method_input",
           "make_method_model", "fit_method", "predict_method", "load_model", "model_method"]

METHODS = ("mdwarf", "xp", "photod", "galaxy", "labelfit")
DEMOS = ("mdwarf", "galaxy", "xp", "photod", "cyclestarnet")


# --------------------------------------------------------------------- models
def make_mdwarf_pipeline(random_state=None, verbose=0, **regressor_params):
    """The M-dwarf method as a Pipeline: survey magnitudes + parallax -> [Fe/H].

    ``AbsoluteMagnitudes`` (Gaia DR3 / 2MASS / CatWISE column names by
    default) feeds ``MDwarfMetallicityRegressor``; the pipeline outputs
    pandas so the regressor knows its feature names (``M_G``, ``M_J``, ...).
    """
    from sklearn.pipeline import Pipeline

    from .mdwarf import MDwarfMetallicityRegressor
    from .preprocessing import AbsoluteMagnitudes

    return Pipeline(
        [
            ("absolute_magnitudes", AbsoluteMagnitudes()),
            ("regressor", MDwarfMetallicityRegressor(
                random_state=random_state, verbose=verbose, **regressor_params)),
        ]
    ).set_output(transform="pandas")


def predict_table(model, catalog):
    """Predictions with uncertainties (and flags where the method has them) as a DataFrame.

    Parameters
    ----------
    model : estimator or Pipeline
        A fitted skstellar model.
    catalog : pandas.DataFrame or SpectrumBatch
        Input catalogue (or spectra).

    Returns
    -------
    pandas.DataFrame
        Indexed like ``catalog`` (0..n-1 for spectra). Columns ``prediction``
        and ``prediction_error`` (``prediction_<i>``, ``prediction_<i>_error``
        for several targets), or the final step's ``predict_catalog`` table.
        Models without an uncertainty have no error column.
    """
    import pandas as pd
    from sklearn.pipeline import Pipeline

    final, Xt = model, catalog
    if isinstance(model, Pipeline):
        final = model.steps[-1][1]
        if len(model.steps) > 1:
            Xt = model[:-1].transform(catalog)
    index = catalog.index if isinstance(catalog, pd.DataFrame) else pd.RangeIndex(len(Xt))
    if hasattr(final, "predict_catalog"):
        out = final.predict_catalog(Xt)
        out.index = index
        return out
    try:
        mean, std = final.predict(Xt, return_std=True)
    except (TypeError, ValueError):
        # No uncertainty for this model (e.g. a CNN without dropout); a genuine
        # input error is raised again by the plain predict below.
        mean, std = final.predict(Xt), None

    cols = {}  # prediction<suffix> for one target, prediction_<i><suffix> for several
    for suffix, values in [("", mean)] + ([] if std is None else [("_error", std)]):
        values = np.asarray(values)
        if values.ndim == 1:
            cols[f"prediction{suffix}"] = values
        else:
            cols.update({f"prediction_{i}{suffix}": values[:, i] for i in range(values.shape[1])})
    return pd.DataFrame(cols, index=index)


# ----------------------------------------------------------------------- demo
def _slashed(values, spec=".2f"):
    """Figures that share one table cell, ``"a / b / c"``, each formatted with ``spec``."""
    return " / ".join(format(v, spec) for v in values)


def run_mdwarf_demo(n_samples=5000, random_state=0, max_epochs=300, plots=None,
                    json_path=None, architecture="paper", verbose=0, out=print):
    """Simulate an M-dwarf catalogue, train the paper's network and compare with the paper.

    The catalogue (:func:`skstellar.datasets.make_mdwarf_photometry`) goes
    through the paper's quality cuts, a seeded 60/20/20 split, the
    ``AbsoluteMagnitudes -> MDwarfMetallicityRegressor`` pipeline, and 100
    MC-dropout passes on the test set.

    Returns
    -------
    dict
        The measured figures (also printed as a table).
    """
    from sklearn.model_selection import train_test_split

    from . import metrics
    from .datasets import make_mdwarf_photometry
    from .mdwarf.selection import select_mdwarfs

    cat, _ = select_mdwarfs(make_mdwarf_photometry(n_samples, random_state=random_state))
    out(f"Simulated {n_samples} M dwarfs; {len(cat)} pass the paper's Table 1 cuts and "
        "validity domain.")
    train, test = train_test_split(cat, test_size=0.2, random_state=random_state)
    pipe = make_mdwarf_pipeline(random_state=random_state, verbose=verbose,
                                max_epochs=max_epochs, architecture=architecture)
    _, t_fit = timed(pipe.fit, train, train["fe_h"])
    pred, t_pred = timed(predict_table, pipe, test)
    y_true = test["fe_h"].to_numpy()
    y_pred = pred["fe_h_pred"].to_numpy()
    res = metrics.residual_summary(y_true, y_pred)
    cal = metrics.calibration_summary(y_true, y_pred, pred["fe_h_pred_error"].to_numpy())
    reg = pipe[-1]
    reg.set_params(uncertainty="mc")  # the paper's raw MC-dropout sigma, same predictions
    _, s_mc = reg.predict(pipe[:-1].transform(test), return_std=True)
    reg.set_params(uncertainty="calibrated")
    cal_mc = metrics.calibration_summary(y_true, y_pred, s_mc)
    results = {
        "n_train": int(len(train) - reg.n_valid_), "n_valid": int(reg.n_valid_),
        "n_test": int(len(test)), "epochs": int(reg.n_epochs_),
        "fit_seconds": t_fit, "predict_seconds": t_pred,
        "residual_mean": res["mean"], "residual_std": res["std"],
        "residual_mad": res["mad"], "residual_robust_std": res["robust_std"],
        "pearson": res["pearson"], "spearman": res["spearman"],
        "median_mc_std": float(np.median(s_mc)),
        "median_sigma": float(np.median(pred["fe_h_pred_error"])),
        "zscore_std": cal["zscore_std"],
        "coverage_68": cal["frac_within_1sigma"], "coverage_95": cal["frac_within_2sigma"],
        "zscore_std_mc": cal_mc["zscore_std"],
        "coverage_68_mc": cal_mc["frac_within_1sigma"],
        "coverage_95_mc": cal_mc["frac_within_2sigma"],
        "calibration_a": float(reg.calibrator_.scale_[0]),
        "calibration_b": float(reg.calibrator_.floor_[0]),
        "frac_in_domain": float(pred["in_domain"].mean()),
        "label_noise_std": float(np.median(test["fe_h_error"])) if "fe_h_error" in test else None,
    }
    rows = [
        ("test stars", "984", f"{results['n_test']}"),
        ("residual mean (dex)", "0.00", f"{results['residual_mean']:+.3f}"),
        ("residual std (dex)", "0.08", f"{results['residual_std']:.3f}"),
        ("residual MAD (dex)", "-", f"{results['residual_mad']:.3f}"),
        ("Pearson r", "0.92 (binaries)", f"{results['pearson']:.3f}"),
        ("Spearman r_S", "0.88 (binaries)", f"{results['spearman']:.3f}"),
        ("median MC-dropout std (dex)", "-", f"{results['median_mc_std']:.3f}"),
        ("z std / 68% / 95% coverage, MC std", "-",
         _slashed(results[k] for k in ("zscore_std_mc", "coverage_68_mc", "coverage_95_mc"))),
        ("median calibrated sigma (dex)", "-", f"{results['median_sigma']:.3f}"),
        ("z std / 68% / 95% coverage, calibrated", "1 / 0.68 / 0.95",
         _slashed(results[k] for k in ("zscore_std", "coverage_68", "coverage_95"))),
        ("fraction in validity domain", "-", f"{results['frac_in_domain']:.3f}"),
        ("epochs / fit time (s)", "-", f"{results['epochs']} / {t_fit:.1f}"),
    ]
    out("")
    out(_table(["quantity", "paper (Duque-Arribas+2025)", "skstellar (simulated)"], rows))
    out("")
    out("The paper's figures are on real Gaia DR3/2MASS/CatWISE data; ours are on the "
        "simulated catalogue (see skstellar.datasets.make_mdwarf_photometry), so they "
        "check the method, not the paper's numbers. Real-data figures: "
        "python benchmarks/mdwarf_metallicity.py")
    out("sigma: the default is the calibrated total sqrt(a sigma_MC^2 + sigma_input^2 + b^2) "
        f"(a = {results['calibration_a']:.2f}, b = {results['calibration_b']:.3f} dex fitted on "
        "the validation stars); uncertainty='mc' gives the paper's MC-dropout std.")
    if plots:
        _save_mdwarf_plots(plots, y_true, pred, test, out, s_mc)
    write_json(json_path, results, out)
    return results


def _save_mdwarf_plots(folder, y_true, pred, test, out, s_mc):
    import matplotlib

    matplotlib.use("Agg")
    from . import plotting

    bp_rp = (test["phot_bp_mean_mag"] - test["phot_rp_mean_mag"]).to_numpy()
    figs = {
        "mdwarf_one_to_one.png": plotting.plot_one_to_one(
            y_true, pred["fe_h_pred"], pred["fe_h_pred_error"], color=bp_rp,
            color_label="BP - RP (mag)"),
        "mdwarf_residuals.png": plotting.plot_residual_histogram(y_true, pred["fe_h_pred"]),
        "mdwarf_zscores.png": plotting.plot_zscore_histogram(
            y_true, pred["fe_h_pred"], pred["fe_h_pred_error"]),
        "mdwarf_calibration.png": plotting.plot_calibration(
            y_true, pred["fe_h_pred"], pred["fe_h_pred_error"], label="calibrated"),
    }
    plotting.plot_calibration(y_true, pred["fe_h_pred"], s_mc,
                              ax=figs["mdwarf_calibration.png"].axes[0], label="MC dropout")
    _save_figures(folder, figs, out, dpi=120, bbox_inches="tight")


def _save_figures(folder, figures, out, **savefig_kw):
    """Save ``{file name: Figure}`` in ``folder`` (created if needed), close them, say so."""
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    for name, fig in figures.items():
        path = os.path.join(folder, name)
        fig.savefig(path, **savefig_kw)
        plt.close(fig)
        out(f"Saved {path}")


# ------------------------------------------------------------------- commands
#: Each demo: its function (module, name), the keywords that take ``--n-samples``
#: and ``--max-epochs``, and the other command-line options it accepts.
DEMO_RUNNERS = {
    "mdwarf": ("skstellar.cli", "run_mdwarf_demo", "n_samples", "max_epochs",
               ("plots", "architecture")),
    "galaxy": ("skstellar.cli", "run_galaxy_demo", "n_spectra", "max_epochs", ()),
    "cyclestarnet": ("skstellar.cyclestarnet.evaluation", "run_cyclestarnet_demo", "n_train",
                     "n_iter", ()),
    "photod": ("skstellar.photod.evaluation", "run_photod_demo", "n_stars", "max_epochs", ()),
    "xp": ("skstellar.cli", "run_xp_demo", "n_stars", "max_iter", ("plots",)),
}


def _cmd_demo(args):
    import importlib

    module, name, size_kw, epochs_kw, options = DEMO_RUNNERS[args.method]
    kwargs = {"random_state": args.random_state, "json_path": args.json, "verbose": args.verbose}
    kwargs.update({opt: getattr(args, opt) for opt in options})
    if args.n_samples:  # 0 or absent: the demo's default
        kwargs[size_kw] = args.n_samples
    if args.max_epochs:
        kwargs[epochs_kw] = args.max_epochs
    getattr(importlib.import_module(module), name)(**kwargs)
    return 0


def run_xp_demo(n_stars=6000, random_state=0, max_iter=1500, batch_size=500, json_path=None,
                plots=None, verbose=0, out=print):
    """Simulate Gaia XP stars, train the uncertain network, print paper vs ours.

    Stars from :func:`skstellar.datasets.make_xp_catalog` (XP coefficients
    with full covariances, photometry, six APOGEE-like labels with errors)
    go through ``XPNormalizer -> UncertainNNRegressor`` with the paper's
    network, loss and optimiser, but far fewer iterations than its 20,000
    batches of 10,000 (``max_iter`` steps of ``batch_size``; warm-up 1/8 of
    them, the paper's proportion).

    Returns
    -------
    dict
    """
    from .xp.evaluation import evaluate_xp

    res = evaluate_xp(n_stars=n_stars, random_state=random_state, max_iter=max_iter,
                      warmup_iter=max(1, max_iter // 8), batch_size=batch_size,
                      noise_levels=(1.0, 2.0), verbose=verbose)
    pipe = res.pop("pipeline")
    test_index = np.asarray(res.pop("test_index"))
    out(f"Simulated {n_stars} Gaia XP stars; {res['n_train']} train / {res['n_test']} test; "
        f"{res['n_iter']} iterations of {batch_size} (the paper: 20,000 of 10,000); "
        f"fit {res['fit_seconds']:.0f} s.")
    rows = []
    for p in res["per_label"]:
        f = (lambda v: f"{v:.1f}") if p["label"] == "teff" else (lambda v: f"{v:.3f}")
        rows.append((p["label"], f(p["paper_rmse"]), f(p["rmse_vs_truth"]),
                     f(p["paper_median_sigma_total"]), f(p["median_sigma_total"]),
                     _slashed((p[f"median_sigma_{k}"] for k in ("model", "input", "excess")),
                              ".3g"),
                     _slashed(p[f"{k}_vs_truth_raw"] for k in ("zscore_std", "cov68", "cov95")),
                     _slashed(p[f"{k}_vs_truth"] for k in ("zscore_std", "cov68", "cov95"))))
    out("")
    out(_table(["label", "paper RMSE", "ours RMSE", "paper med sigma", "ours med sigma",
                "ours model / input / excess", "Eq. 11 z std / 68% / 95%",
                "calibrated z std / 68% / 95%"], rows))
    out("ours med sigma: the default calibrated total sqrt(a (model + excess) + input + b^2); "
        "uncertainty='mc' gives the paper's Eq. 11 total.")
    n1, n2 = res["noise_tracking"]
    ratio = np.median([n2[k] / n1[k] for k in n1 if k.startswith("median_sigma_input_")])
    out("")
    out(f"sigma_input with the input noise doubled: x{ratio:.2f} (first-order propagation: x2).")
    out(f"Prediction with {res['n_mc_passes']} MC passes and input propagation: "
        f"{res['n_test'] / res['predict_seconds_test']:.0f} stars/s.")
    out("The paper's figures are on real APOGEE stars after 20,000 iterations; ours on simulated "
        "stars after a short run (RMSE against the noiseless truth; z = (truth - prediction) / "
        "sigma_total). Full benchmark: python benchmarks/xp_uncertain_nn.py")
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        from .datasets.gaia_xp import make_xp_catalog
        from .xp.diagnostics import plot_zscores

        cat, truth = make_xp_catalog(n_stars, random_state=random_state, return_truth=True)
        sub = test_index[:2000]  # held-out stars only
        u = pipe[-1].predict_uncertainty(pipe[0].transform(cat.iloc[sub]))
        labels = res["labels"]
        t = np.column_stack([truth[f"true_{c}"].to_numpy()[sub] for c in labels])
        fig = plot_zscores(t, u["prediction"], u["total_std"], label_names=labels)
        _save_figures(plots, {"xp_zscores.png": fig}, out, dpi=110)
    write_json(json_path, res, out, default=float)
    return res


def run_galaxy_demo(n_spectra=2000, random_state=0, max_epochs=10, json_path=None, verbose=0,
                    out=print):
    """Simulate star-forming galaxy spectra, train the paper's CNN, print paper vs ours.

    Spectra from :func:`skstellar.datasets.make_galaxy_spectra` (observed
    frame, 0 < z < 0.25, S/N_r 3-30) are resampled onto 3800-8000 A at 1 A
    without a redshift correction, min-max scaled per spectrum and split
    7:1:2; the CNN trains ``max_epochs`` epochs (the paper: 100).

    Returns
    -------
    dict
    """
    from .datasets import make_galaxy_spectra
    from .galaxy.evaluation import evaluate_regression

    batch = make_galaxy_spectra(n_spectra, random_state=random_state, z_range=(0.0, 0.25))
    res = evaluate_regression(batch, max_epochs=max_epochs, random_state=random_state,
                              verbose=verbose)
    cnn = res["models"][0]
    out(f"Simulated {n_spectra} star-forming galaxy spectra; {res['n_train']}/{res['n_valid']}/"
        f"{res['n_test']} train/validation/test; {res['n_pixels']} pixels (3800-8000 A, "
        "observed frame).")
    unc = cnn["uncertainty"]["calibrated"]
    rows = [
        ("test spectra", "~7700", f"{cnn['n_test']}"),
        ("residual mean (dex)", "-0.0002", f"{cnn['residual_mean']:+.4f}"),
        ("residual std (dex)", "0.0829", f"{cnn['residual_std']:.4f}"),
        ("robust std (dex)", "-", f"{cnn['residual_robust_std']:.4f}"),
        ("epochs", "100", f"{cnn['epochs']}"),
        ("s / epoch per 10k spectra", "-", f"{cnn['epoch_seconds_per_10k']:.1f}"),
        ("resampling (spectra/s)", "-", f"{res['resample_per_second']:.0f}"),
        ("prediction (spectra/s)", "-", f"{cnn['predict_per_second']:.0f}"),
        ("median calibrated sigma (dex)", "none", f"{unc['median_sigma']:.4f}"),
        ("z std / 68% / 95% coverage", "-",
         _slashed(unc[k] for k in ("zscore_std", "cov68", "cov95"))),
    ]
    out("")
    out(_table(["quantity", "paper (LAMOST DR10)", "skstellar (simulated)"], rows))
    out("sigma: the paper's CNN has no dropout, so the default calibrated sigma is the scatter "
        "b fitted on the validation spectra (the same for every galaxy); dropout > 0 gives "
        "per-galaxy MC-dropout sigmas, calibrated the same way.")
    snr = res["snr_bins"]
    out("")
    out("Residual std in the paper's S/N_r bins (paper: ~0.11 dex at S/N < 5 falling to ~0.05):")
    out(_table(["S/N_r bin", "n", "std (dex)"],
               [(f"[{lo:g}, {hi:g})", int(n), f"{sd:.3f}" if n > 1 else "-")
                for lo, hi, n, sd in zip(snr["bin_lo"], snr["bin_hi"], snr["n"], snr["std"])]))
    out("")
    out("The paper's figures are on real LAMOST spectra with MPA-JHU labels; ours are on "
        "simulated spectra with fewer epochs. Full comparison: python benchmarks/galaxy_cnn.py")
    results = {**cnn, "resample_per_second": res["resample_per_second"],
               "snr_bins": snr.to_dict(orient="list")}
    write_json(json_path, results, out, default=float)
    return results


# ---------------------------------------------------------------- fit/predict
#: Input columns copied to the output of ``skstellar predict`` when present
#: (matched case-insensitively), so each prediction can be joined back.
ID_COLUMNS = ("source_id", "apogee_id", "designation", "obsid", "filename", "star_id", "id",
              "objid", "object_id", "name", "ra", "dec")

#: Default label column(s) of ``skstellar fit`` for each method.
DEFAULT_TARGETS = {
    "mdwarf": ("fe_h",),
    "xp": ("teff", "logg", "fe_h", "c_fe", "n_fe", "alpha_m"),
    # photod: no default - catalogues already hold an input "Ar" (SFD extinction);
    # name the label columns, e.g. --target Mr_true FeH_true Ar_true
    "photod": (),
    "galaxy": ("oh",),
    "labelfit": ("teff", "logg", "m_h"),
}

METHOD_HELP = {
    "mdwarf": "M-dwarf [Fe/H] from Gaia/2MASS/WISE magnitudes + parallax (catalogue in)",
    "xp": "Gaia XP uncertain network (XP continuous table in: CSV, ECSV, FITS, VOTable)",
    "photod": "LSST photo-D moments network: M_r, [Fe/H], A_r (catalogue in)",
    "galaxy": "galaxy CNN, 12+log(O/H) from spectra (LAMOST FITS file/folder/glob or a "
              "spectra table .parquet)",
    "labelfit": "M-dwarf spectral label fit: Payne emulator trained on labelled model spectra "
                "(spectra table), labels fitted to LAMOST FITS spectra",
}


def _fail(message):
    """A one-line user error (no traceback)."""
    raise ValueError(" ".join(str(message).split()))


def _check_rows(n, path):
    if n == 0:
        _fail(f"{path}: the file has no rows")


def _is_spectra_table(path):
    """A FITS/Parquet file with one spectrum per row (not a LAMOST spectrum file)."""
    from pathlib import Path

    name = Path(path).name.lower()
    if name.endswith((".parquet", ".pq")):
        return True
    if not name.endswith((".fits", ".fits.gz", ".fit", ".fit.gz")) or not Path(path).is_file():
        return False
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        return (hdul[0].data is None and len(hdul) > 1
                and "flux" in [c.lower() for c in getattr(hdul[1], "columns", []).names or []])


def read_method_input(method, path):
    """Read ``path`` as the natural input of ``method``.

    Parameters
    ----------
    method : {"mdwarf", "xp", "photod", "galaxy", "labelfit"}
    path : str
        Catalogue (mdwarf, photod: CSV, ECSV, FITS, Parquet, VOTable), Gaia XP
        continuous table (xp), or spectra (galaxy, labelfit: a LAMOST FITS file, a
        folder or glob of them, or a spectra table written by
        :func:`skstellar.io.write_spectra_table`).

    Returns
    -------
    X : pandas.DataFrame or SpectrumBatch
        What the method's pipeline takes.
    table : pandas.DataFrame
        One row per object: the catalogue itself, or the spectra's ``meta``
        (ids and labels), in the order of ``X``.

    Raises
    ------
    ValueError
        Wrong file type or an empty file (one-line message naming the file).
    FileNotFoundError
        If nothing exists at ``path``.
    """
    import glob

    try:
        if method in ("mdwarf", "photod", "xp"):  # one catalogue (xp: a Gaia XP table)
            from .io import read_catalog, read_xp_continuous

            if method == "xp" and not os.path.exists(path):
                raise FileNotFoundError(f"No such file: {path!r}")
            if method != "xp" and os.path.isdir(path):
                _fail(f"{path} is a folder; {method} reads one catalogue file")
            cat = read_xp_continuous(path) if method == "xp" else read_catalog(path)
            _check_rows(len(cat), path)
            return cat, cat
        if method in ("galaxy", "labelfit"):
            from .io import read_lamost_spectra, read_spectra_table

            if not (os.path.exists(path) or glob.glob(path)):
                raise FileNotFoundError(f"No such file or folder: {path!r}")
            read = read_spectra_table if _is_spectra_table(path) else read_lamost_spectra
            batch = read(path)
            _check_rows(len(batch.flux), path)
            if batch.meta is None:
                import pandas as pd

                return batch, pd.DataFrame(index=range(len(batch.flux)))
            return batch, batch.meta.reset_index(drop=True)
        _fail(f"unknown method {method!r}; choose from {', '.join(DEFAULT_TARGETS)}")
    except ValueError as exc:
        msg = " ".join(str(exc).split())
        if "No columns to parse" in msg:
            msg = "the file is empty"
        if str(path) not in msg:
            raise ValueError(f"{path}: {msg}") from exc
        raise


def id_columns(table, keep=None):
    """Names of the columns of ``table`` copied next to the predictions."""
    lower = {c.lower(): c for c in table.columns if isinstance(c, str)}
    cols = [lower[c] for c in ID_COLUMNS if c in lower]
    for c in keep or []:
        if c not in table.columns:
            _fail(f"--keep column {c!r} is not in the input; columns are {list(table.columns)}")
        if c not in cols:
            cols.append(c)
    return cols


class SpectralLabelModel:
    """The ``labelfit`` method of the CLI: a Payne emulator + per-spectrum label fits.

    ``fit`` trains a :class:`~skstellar.cyclestarnet.PayneEmulator` on
    labelled rest-frame, continuum-normalised spectra on one wavelength grid
    (for example the synthetic domain of
    :func:`skstellar.datasets.make_mdwarf_spectra`, or model spectra);
    ``predict_catalog`` fits the labels of new spectra with
    :class:`~skstellar.cyclestarnet.SpectralLabelFitter` (the paper's L-BFGS
    fit, Zhang et al. Sect. 3.5, without a Cycle-StarNet adapter). Spectra
    not already on the emulator's grid (observed LAMOST files) are first
    moved to the rest frame by
    :class:`~skstellar.preprocessing.RadialVelocityCorrector` (its default
    M-dwarf template) and continuum-normalised by
    :class:`~skstellar.preprocessing.continuum.ContinuumNormalizer` (the
    paper's masks), as in Zhang et al. Sect. 2.4.

    Parameters
    ----------
    labels : sequence of str
        Label columns of the training spectra's ``meta``.
    max_epochs : int, default=2000
        Emulator training epochs cap.
    random_state : int, default=0
    n_jobs : int or None
        Worker processes of the label fits.
    verbose : int, default=0
        1 shows progress bars of the label fits.
    """

    def __init__(self, labels, max_epochs=2000, random_state=0, n_jobs=None, verbose=0):
        self.labels = tuple(labels)
        self.max_epochs = max_epochs
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    def fit(self, batch, y):
        """Train the emulator: labels ``y`` (n, n_labels) -> the spectra's flux."""
        import pandas as pd

        from .cyclestarnet import PayneEmulator

        wave = np.asarray(batch.wavelength)
        if wave.ndim != 1:  # one grid per spectrum: they must all be the same
            if not np.allclose(wave, wave[:1], equal_nan=True):
                _fail("labelfit trains on spectra sharing one wavelength grid (rest frame, "
                      "continuum-normalised); resample them first")
            wave = wave[0]
        y = np.asarray(y, dtype=np.float64).reshape(len(batch.flux), -1)
        X = pd.DataFrame(y, columns=list(self.labels))
        self.emulator_ = PayneEmulator(max_epochs=int(self.max_epochs), wavelength=wave,
                                       random_state=self.random_state, verbose=self.verbose)
        self.emulator_.fit(X, np.asarray(batch.flux, dtype=np.float64))
        self.n_epochs_ = self.emulator_.n_epochs_
        return self

    def _prepare(self, batch):
        """Spectra on the emulator grid: as they are, or RV-corrected + normalised."""
        from .preprocessing import RadialVelocityCorrector
        from .preprocessing.continuum import ContinuumNormalizer

        grid = np.asarray(self.emulator_.wavelength_)
        wave = batch.wavelength_2d()
        if wave.shape[1] == grid.size and np.allclose(wave, grid[None, :], equal_nan=False):
            return batch, None  # already rest-frame on the emulator's grid
        rest = RadialVelocityCorrector(window=(float(grid[0]), float(grid[-1])),
                                       step=float(np.median(np.diff(grid))),
                                       on_failure="nan").fit_transform(batch)
        obs = ContinuumNormalizer(mask="paper", flag_windows=True).fit_transform(rest)
        if obs.flux.shape[1] != grid.size:
            _fail(f"the prepared spectra have {obs.flux.shape[1]} pixels but the emulator "
                  f"{grid.size}")
        return obs, rest.meta

    def predict_catalog(self, batch):
        """Fitted labels with errors and fit flags, one row per spectrum.

        Returns
        -------
        pandas.DataFrame
            ``<label>_pred``, ``<label>_pred_error`` (formal curvature errors,
            :class:`~skstellar.cyclestarnet.fitting.LabelFitResult`), ``rv``
            and ``rv_err`` [km/s] when the spectra were RV-corrected,
            ``chi2_reduced``, ``fit_ok``, ``at_bound``.
        """
        import pandas as pd
        from sklearn.frozen import FrozenEstimator

        from .cyclestarnet import SpectralLabelFitter

        obs, rvmeta = self._prepare(batch)
        fitter = SpectralLabelFitter(emulator=FrozenEstimator(self.emulator_), n_jobs=self.n_jobs,
                                     verbose=self.verbose, random_state=0).fit()
        res = fitter.fit_labels(obs.flux, ivar=obs.ivar, mask=obs.mask)
        cols = {f"{name}_pred{suffix}": values[:, i] for i, name in enumerate(res.label_names)
                for suffix, values in (("", res.labels), ("_error", res.labels_err))}
        if rvmeta is not None:
            cols.update({c: rvmeta[c].to_numpy() for c in ("rv", "rv_err")})
        cols.update({"chi2_reduced": res.chi2_reduced, "fit_ok": res.fit_ok,
                     "at_bound": res.any_at_bound})
        return pd.DataFrame(cols)

    def predict(self, batch):
        """Fitted labels, shape (n_spectra, n_labels)."""
        return self.predict_catalog(batch)[[f"{n}_pred" for n in self.labels]].to_numpy()


def make_method_model(method, *, targets=None, random_state=0, max_epochs=None, verbose=0,
                      photometry=True, architecture=None):
    """The untrained pipeline that ``skstellar fit METHOD`` trains.

    Returns
    -------
    sklearn.pipeline.Pipeline
        mdwarf: :func:`make_mdwarf_pipeline`; xp:
        :func:`skstellar.xp.evaluation.make_xp_pipeline`; photod: a one-step
        pipeline around :class:`~skstellar.photod.PhotoDNetwork`; galaxy:
        :func:`skstellar.galaxy.evaluation.galaxy_input_pipeline` then
        :class:`~skstellar.galaxy.SpectralCNNRegressor`. Each carries
        ``skstellar_method_`` and ``skstellar_labels_`` (what ``predict``
        needs to read the input and name the outputs).
    """
    from sklearn.pipeline import Pipeline

    params = {} if max_epochs is None else {"max_epochs": int(max_epochs)}
    if method == "mdwarf":
        if architecture is not None:
            params["architecture"] = architecture
        model = make_mdwarf_pipeline(random_state=random_state, verbose=verbose, **params)
    elif method == "xp":
        from .xp.evaluation import make_xp_pipeline

        xp_params = {"max_iter": params["max_epochs"]} if params else {}
        model = make_xp_pipeline(photometry=photometry, random_state=random_state,
                                 verbose=verbose, **xp_params)
    elif method == "photod":
        from .photod import PhotoDNetwork

        model = Pipeline([("network", PhotoDNetwork(random_state=random_state, verbose=verbose,
                                                     **params))])
    elif method == "galaxy":
        from .galaxy import SpectralCNNRegressor
        from .galaxy.evaluation import galaxy_input_pipeline

        model = Pipeline(galaxy_input_pipeline().steps + [
            ("cnn", SpectralCNNRegressor(random_state=random_state, verbose=verbose, **params))])
    elif method == "labelfit":
        model = Pipeline([("labelfit", SpectralLabelModel(
            targets or DEFAULT_TARGETS[method], random_state=random_state, verbose=verbose,
            **params))])
    else:
        _fail(f"unknown method {method!r}; choose from {', '.join(DEFAULT_TARGETS)}")
    model.skstellar_method_ = method
    model.skstellar_labels_ = tuple(targets or DEFAULT_TARGETS[method])
    return model


def _targets(method, table, targets, path):
    targets = list(targets or DEFAULT_TARGETS[method])
    if not targets:
        _fail(f"{method} needs --target (the label columns, e.g. Mr_true FeH_true Ar_true)")
    missing = [t for t in targets if t not in table.columns]
    if missing:
        _fail(f"label column(s) {missing} not in {path}; columns are {list(table.columns)} "
              "(choose with --target)")
    y = np.column_stack([np.asarray(table[t], dtype=np.float64) for t in targets])
    bad = ~np.isfinite(y)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        _fail(f"label column {targets[c]!r} of {path} is not finite in row {r} "
              f"({int(bad.any(axis=1).sum())} rows); remove those rows")
    return targets, (y[:, 0] if len(targets) == 1 else y)


def fit_method(method, path, *, targets=None, labels_path=None, random_state=0,
               max_epochs=None, verbose=0, n_jobs=None, architecture=None):
    """What ``skstellar fit METHOD PATH MODEL`` does, minus the saving.

    Parameters
    ----------
    method : {"mdwarf", "xp", "photod", "galaxy"}
    path : str
        Training file(s), read by :func:`read_method_input`.
    targets : sequence of str, optional
        Label columns (default :data:`DEFAULT_TARGETS`); for galaxy spectra
        they come from the spectra's metadata or from ``labels_path``.
    labels_path : str, optional
        A catalogue with a ``filename`` column and the label columns, joined
        to the spectra by file name (galaxy only).
    n_jobs : int, optional
        torch threads during training.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Fitted.
    """
    from .nn.threads import torch_threads

    X, table = read_method_input(method, path)
    if labels_path is not None:
        from .io import read_catalog

        labels = read_catalog(labels_path)
        if "filename" not in labels.columns or "filename" not in table.columns:
            _fail(f"--labels {labels_path} must have a 'filename' column matching the spectra")
        table = table[["filename"]].merge(labels, on="filename", how="left")
    photometry = True
    if method == "xp":
        from .preprocessing.xp import XP_PHOTOMETRY_COLUMNS

        photometry = all(c in table.columns for c in XP_PHOTOMETRY_COLUMNS.values())
    model = make_method_model(method, targets=targets, random_state=random_state,
                              max_epochs=max_epochs, verbose=verbose, photometry=photometry,
                              architecture=architecture)
    names, y = _targets(method, table, model.skstellar_labels_, path)
    fit_params = {}
    if method == "xp":
        errs = [f"{t}_err" for t in names]
        if all(e in table.columns for e in errs):
            err = np.column_stack([np.asarray(table[e], dtype=np.float64) for e in errs])
            fit_params["uncertainnnregressor__y_err"] = err[:, 0] if err.shape[1] == 1 else err
    with torch_threads(n_jobs):
        model.fit(X, y, **fit_params)
    return model


def model_method(model):
    """The ``skstellar fit`` method a fitted model belongs to (None when it has none).

    Models saved before the method was recorded are recognised by their final
    estimator's class.
    """
    method = getattr(model, "skstellar_method_", None)
    if method is not None:
        return method
    from sklearn.pipeline import Pipeline

    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    return {"MDwarfMetallicityRegressor": "mdwarf", "UncertainNNRegressor": "xp",
            "PhotoDNetwork": "photod", "SpectralCNNRegressor": "galaxy",
            "SpectralLabelModel": "labelfit"}.get(type(final).__name__)


def invalid_input_rows(model, catalog):
    """Rows an M-dwarf pipeline cannot take: a non-finite magnitude or parallax, or parallax <= 0.

    Parameters
    ----------
    model : Pipeline
        Starting with a fitted ``AbsoluteMagnitudes`` step.
    catalog : pandas.DataFrame

    Returns
    -------
    ndarray of bool, shape (n_rows,)
        True for rows to leave out. Missing *columns* are not handled here
        (they stay an error).
    """
    step = model.steps[0][1]
    mags = list(getattr(step, "magnitude_columns_", ()))
    plx = getattr(step, "parallax_column_", None)
    bad = np.zeros(len(catalog), dtype=bool)
    for c in mags + ([plx] if plx else []):
        if c in catalog.columns:
            v = pd_to_float(catalog[c])
            bad |= ~np.isfinite(v)
            if c == plx:
                with np.errstate(invalid="ignore"):
                    bad |= ~(v > 0)
    return bad


def pd_to_float(series):
    """A column as float64, non-numeric entries as NaN."""
    import pandas as pd

    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)


def predict_method(model, X, table=None, keep=None, n_jobs=None, verbose=None,
                   invalid="raise"):
    """Predictions of a fitted model as the table ``skstellar predict`` writes.

    Parameters
    ----------
    model : Pipeline
        From :func:`fit_method`, ``joblib.load`` or
        :func:`skstellar.load_pretrained`.
    X : DataFrame or SpectrumBatch
        As returned by :func:`read_method_input`.
    table : DataFrame, optional
        The rows' catalogue/metadata; its id columns (:data:`ID_COLUMNS`)
        and ``keep`` are copied first.
    n_jobs : int, optional
        torch threads during prediction (labelfit: worker processes).
    verbose : int, optional
        Sets the final step's ``verbose`` (1: progress bars of MC dropout on
        100,000+ rows and of the label fits); None leaves it.
    invalid : {"raise", "flag"}, default="raise"
        mdwarf only. A row with a NaN magnitude, a NaN or non-positive
        parallax: "raise" a ValueError naming the column and row; "flag"
        predicts the other rows and gives those NaN predictions and
        ``valid_input=False`` (a ``valid_input`` column is then always
        written).

    Returns
    -------
    pandas.DataFrame
        Id columns, then ``<label>_pred`` and ``<label>_pred_error`` for each
        label, then the method's flags (mdwarf: validity domain).
    """
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from .nn.threads import torch_threads

    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    if n_jobs is not None and isinstance(final, SpectralLabelModel):
        final.n_jobs = n_jobs  # worker processes of the label fits
    if verbose is not None and hasattr(final, "verbose"):
        final.verbose = int(verbose)
    if invalid not in ("raise", "flag"):
        _fail(f"invalid must be 'raise' or 'flag'; got {invalid!r}")
    bad = None
    if invalid == "flag" and isinstance(X, pd.DataFrame) and model_method(model) == "mdwarf":
        bad = invalid_input_rows(model, X)
        if bad.all():
            _fail("no row has finite magnitudes and a positive parallax")
    with torch_threads(n_jobs):
        if bad is None:
            pred = predict_table(model, X)
        else:
            good = predict_table(model, X.loc[~bad]).reset_index(drop=True)
            pred = pd.DataFrame(index=range(len(X)), columns=good.columns)
            for c in good.columns:
                col = np.full(len(X), np.nan) if good[c].dtype.kind == "f" else \
                    np.zeros(len(X), dtype=good[c].dtype)
                col[~bad] = good[c].to_numpy()
                pred[c] = col
            pred["valid_input"] = ~bad
            if "in_domain" in pred.columns:
                pred.loc[bad, "in_domain"] = False
    pred = pred.reset_index(drop=True)
    labels = getattr(model, "skstellar_labels_", None)
    if labels is not None:
        # predict_table names one target "prediction", several "prediction_<i>"
        n = len(labels)
        keys = ["prediction"] if n == 1 else [f"prediction_{i}" for i in range(n)]
        ren = {f"{key}{suffix}": f"{lab}_pred{suffix}"
               for key, lab in zip(keys, labels) for suffix in ("", "_error")}
        pred = pred.rename(columns=ren)
        order = [c for c in ren.values() if c in pred.columns]
        pred = pred[order + [c for c in pred.columns if c not in order]]
    if table is None:
        return pred
    ids = table[[c for c in id_columns(table, keep) if c not in pred.columns]]
    return pd.concat([ids.reset_index(drop=True), pred], axis=1)


def load_model(name_or_path):
    """A pretrained model by name, or a fitted model from a joblib file.

    Raises
    ------
    ValueError
        If it is neither a pretrained name nor a joblib file holding a model.
    """
    from .pretrained import is_pretrained_name, list_pretrained, load_pretrained

    if is_pretrained_name(name_or_path):
        return load_pretrained(name_or_path)
    if not os.path.isfile(name_or_path):
        _fail(f"{name_or_path!r} is neither a pretrained model "
              f"({', '.join(list_pretrained().names())}) nor a model file")
    import joblib

    try:
        model = joblib.load(name_or_path)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a wrong file type
        _fail(f"{name_or_path} is not a model file written by 'skstellar fit' "
              f"(joblib could not read it: {type(exc).__name__})")
    if not hasattr(model, "predict"):
        _fail(f"{name_or_path} holds a {type(model).__name__}, not a fitted model")
    return model


def _cmd_fit(args):
    import joblib

    t0 = time.perf_counter()
    model = fit_method(args.method, args.input, targets=args.target, labels_path=args.labels,
                       random_state=args.random_state, max_epochs=args.max_epochs,
                       verbose=args.verbose, n_jobs=args.n_jobs, architecture=args.architecture)
    if os.path.exists(args.model) and not args.overwrite:
        _fail(f"{args.model} exists; pass --overwrite to replace it")
    joblib.dump(model, args.model)
    epochs = getattr(model.steps[-1][1], "n_epochs_", None)
    print(f"Trained {args.method} on {args.input} in {time.perf_counter() - t0:.1f} s"
          + (f" ({epochs} epochs)" if epochs is not None else "") + f"; saved {args.model}")
    return 0


def _cmd_predict(args):
    import pandas as pd

    from .io import write_catalog

    model = load_model(args.model)
    method = model_method(model)
    if method is None:
        _fail(f"{args.model} holds a {type(model).__name__}, which 'skstellar predict' does "
              "not run (an emulator maps labels to spectra: use it from Python, e.g. with "
              "skstellar.SpectralLabelFitter)")
    X, table = read_method_input(method, args.input)
    t0 = time.perf_counter()
    out = predict_method(model, X, None if args.all_columns else table, keep=args.keep,
                         n_jobs=args.n_jobs, verbose=args.verbose, invalid=args.invalid)
    if args.all_columns:  # every input column, then the predictions
        out = pd.concat([table.reset_index(drop=True).drop(
            columns=[c for c in table.columns if c in out.columns]), out], axis=1)
    for c in out.columns:  # array columns (XP coefficients) cannot go into a flat catalogue
        if out[c].dtype == object and len(out) and isinstance(out[c].iloc[0], np.ndarray):
            out = out.drop(columns=c)
    write_catalog(out, args.output, overwrite=args.overwrite)
    print(f"Predicted {len(out)} rows with {args.model} ({method}) in "
          f"{time.perf_counter() - t0:.1f} s; wrote {args.output}")
    return 0


def _cmd_list(args):
    from .pretrained import list_pretrained

    print(list_pretrained())
    return 0


#: One line per method, for the help texts.
_METHOD_LINES = "\n".join(f"  {k:8s} {v}" for k, v in METHOD_HELP.items())

_EPILOG = """\
methods (skstellar fit METHOD ...):
""" + _METHOD_LINES + """

pretrained models (skstellar predict NAME ...): see 'skstellar list'

examples:
  skstellar predict mdwarf-feh stars.csv feh.csv        # pretrained, no training
  skstellar fit mdwarf train.fits model.joblib --target fe_h
  skstellar predict model.joblib stars.parquet out.parquet --keep source_id
  skstellar fit xp xp_with_labels.csv xp.joblib --max-epochs 2000
  skstellar fit galaxy spectra.parquet cnn.joblib --target oh
  skstellar predict cnn.joblib lamost_folder/ oh.csv
  skstellar fit labelfit model_spectra.parquet payne.joblib --target teff logg m_h
  skstellar predict payne.joblib lamost_folder/ labels.csv --n-jobs 2
  skstellar demo mdwarf
"""


def build_parser():
    """The argparse parser of the ``skstellar`` command."""
    parser = argparse.ArgumentParser(
        prog="skstellar",
        description="Stellar and galaxy parameters from survey data with honest uncertainties.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="simulate a catalogue, train a method, print paper vs ours")
    demo.add_argument("method", choices=DEMOS)
    demo.add_argument("--n-samples", type=int, default=None,
                      help="simulated stars/galaxies (default 5000 for mdwarf, 2000 for galaxy, "
                           "6000 for xp, 30000 for photod, 300 training spectra per "
                           "domain for cyclestarnet)")
    demo.add_argument("--max-epochs", type=int, default=None,
                      help="training epochs cap (default 300 for mdwarf, where early stopping "
                           "usually ends sooner; 10 for galaxy, the paper trains 100); for xp "
                           "the number of iterations (default 1500; the paper 20,000); for photod "
                           "the student's epoch cap (default 500; the paper 1024); for "
                           "cyclestarnet the adapter iterations (default 300; the paper ~5e5)")
    demo.add_argument("--architecture", choices=("paper", "released"), default="paper")
    demo.add_argument("--random-state", type=int, default=0)
    demo.add_argument("--plots", metavar="DIR", help="save diagnostic plots (PNG) in DIR")
    demo.add_argument("--json", metavar="FILE", help="write the measured figures as JSON")
    demo.add_argument("-v", "--verbose", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)

    fit = sub.add_parser(
        "fit", help="train a method on labelled files and save it (joblib)",
        description="Train a method and save the fitted pipeline with joblib.\n\n" + _METHOD_LINES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    fit.add_argument("method", choices=METHODS)
    fit.add_argument("input", help="training file(s): catalogue, XP table or spectra")
    fit.add_argument("model", help="output model file (.joblib)")
    fit.add_argument("--target", nargs="+", default=None, metavar="COLUMN",
                     help="label column(s); defaults: " + "; ".join(
                         f"{k}: {' '.join(v) or '(required)'}" for k, v in DEFAULT_TARGETS.items()))
    fit.add_argument("--labels", default=None, metavar="CATALOGUE",
                     help="galaxy: catalogue with 'filename' + label columns, joined to the "
                          "spectra by file name")
    fit.add_argument("--max-epochs", type=int, default=None,
                     help="training epochs cap (xp: iterations)")
    fit.add_argument("--architecture", choices=("paper", "released"), default=None,
                     help="mdwarf only")
    fit.add_argument("--random-state", type=int, default=0)
    fit.add_argument("--n-jobs", type=int, default=None, help="torch threads")
    fit.add_argument("--overwrite", action="store_true")
    fit.add_argument("-v", "--verbose", type=int, default=0,
                     help="1: per-epoch table and progress bars")
    fit.set_defaults(func=_cmd_fit)

    pred = sub.add_parser(
        "predict", help="predict with a pretrained model or a saved one, write a catalogue")
    pred.add_argument("model", help="pretrained name (see 'skstellar list', e.g. mdwarf-feh) "
                                    "or a model file written by 'skstellar fit'")
    pred.add_argument("input", help="catalogue, XP table, LAMOST FITS file/folder/glob or "
                                    "spectra table (as the model's method reads)")
    pred.add_argument("output", help="output catalogue; format from the extension (CSV, ECSV, "
                                     "FITS, Parquet, VOTable)")
    pred.add_argument("--keep", nargs="*", metavar="COLUMN",
                      help="more input columns to copy (id columns such as source_id are "
                           "always copied)")
    pred.add_argument("--all-columns", action="store_true", help="copy every input column")
    pred.add_argument("--n-jobs", type=int, default=None, help="torch threads")
    pred.add_argument("--overwrite", action="store_true")
    pred.add_argument("--invalid", choices=("raise", "flag"), default="raise",
                      help="mdwarf: rows with a NaN magnitude or a non-positive parallax stop "
                           "the run (raise, default) or get NaN predictions and "
                           "valid_input=False (flag)")
    pred.add_argument("-v", "--verbose", type=int, default=None,
                      help="1: progress bars (MC dropout on 100,000+ rows, label fits)")
    pred.set_defaults(func=_cmd_predict)

    lst = sub.add_parser("list", help="list the pretrained models shipped with skstellar")
    lst.set_defaults(func=_cmd_list)
    return parser


def main(argv=None):
    """Entry point of the ``skstellar`` console script.

    User errors (a missing column, a wrong file type, an empty file, a file
    that does not exist) print one line ``error: ...`` on stderr and return 2.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, ImportError, KeyError) as exc:  # (file errors are OSErrors)
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
