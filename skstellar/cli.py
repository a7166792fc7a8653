"""The ``skstellar`` command line: ``demo``, ``fit`` and ``predict``.

Examples
--------
::

    skstellar demo mdwarf                       # simulate, train, print paper-vs-ours
    skstellar demo mdwarf --plots plots/        # ... and save the diagnostic plots
    skstellar demo xp                           # Gaia XP uncertain network on simulated stars
    skstellar demo photod                       # LSST photo-D teacher + student, Table 1
    skstellar demo cyclestarnet                 # short domain adaptation, residuals before/after
    skstellar fit mdwarf train.fits model.joblib --target fe_h
    skstellar predict model.joblib stars.csv predictions.parquet

Catalogues are read and written as CSV, ECSV, FITS, Parquet or VOTable
(chosen by the file extension); a fitted model is a joblib file holding a
scikit-learn ``Pipeline``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

__all__ = ["main", "build_parser", "make_mdwarf_pipeline"]

METHODS = ("mdwarf",)
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

    pipe = Pipeline(
        [
            ("absolute_magnitudes", AbsoluteMagnitudes()),
            ("regressor", MDwarfMetallicityRegressor(
                random_state=random_state, verbose=verbose, **regressor_params)),
        ]
    )
    return pipe.set_output(transform="pandas")


def predict_table(model, catalog):
    """Predictions with uncertainties (and flags where the method has them) as a DataFrame.

    Parameters
    ----------
    model : estimator or Pipeline
        A fitted skstellar model.
    catalog : pandas.DataFrame
        Input catalogue.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``catalog``.
    """
    import pandas as pd
    from sklearn.pipeline import Pipeline

    final, Xt = model, catalog
    if isinstance(model, Pipeline):
        final = model.steps[-1][1]
        Xt = model[:-1].transform(catalog)
    if hasattr(final, "predict_catalog"):
        out = final.predict_catalog(Xt)
        out.index = catalog.index
        return out
    try:
        mean, std = final.predict(Xt, return_std=True)
    except TypeError:
        mean, std = final.predict(Xt), None
    mean = np.asarray(mean)
    cols = {"prediction": mean} if mean.ndim == 1 else {
        f"prediction_{i}": mean[:, i] for i in range(mean.shape[1])}
    if std is not None:
        std = np.asarray(std)
        if std.ndim == 1:
            cols["prediction_error"] = std
        else:
            cols.update({f"prediction_{i}_error": std[:, i] for i in range(std.shape[1])})
    return pd.DataFrame(cols, index=catalog.index)


# ----------------------------------------------------------------------- demo
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

    cat = make_mdwarf_photometry(n_samples, random_state=random_state)
    cat, report = select_mdwarfs(cat)
    out(f"Simulated {n_samples} M dwarfs; {len(cat)} pass the paper's Table 1 cuts and "
        "validity domain.")
    train, test = train_test_split(cat, test_size=0.2, random_state=random_state)
    pipe = make_mdwarf_pipeline(random_state=random_state, verbose=verbose,
                                max_epochs=max_epochs, architecture=architecture)
    t0 = time.perf_counter()
    pipe.fit(train, train["fe_h"])
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = predict_table(pipe, test)
    t_pred = time.perf_counter() - t0
    y_true = test["fe_h"].to_numpy()
    res = metrics.residual_summary(y_true, pred["fe_h_pred"].to_numpy())
    cal = metrics.calibration_summary(y_true, pred["fe_h_pred"].to_numpy(),
                                      pred["fe_h_pred_error"].to_numpy())
    reg = pipe[-1]
    reg.set_params(uncertainty="mc")  # the paper's raw MC-dropout sigma, same predictions
    _, s_mc = reg.predict(pipe[:-1].transform(test), return_std=True)
    reg.set_params(uncertainty="calibrated")
    cal_mc = metrics.calibration_summary(y_true, pred["fe_h_pred"].to_numpy(), s_mc)
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
         f"{results['zscore_std_mc']:.2f} / {results['coverage_68_mc']:.2f} / "
         f"{results['coverage_95_mc']:.2f}"),
        ("median calibrated sigma (dex)", "-", f"{results['median_sigma']:.3f}"),
        ("z std / 68% / 95% coverage, calibrated", "1 / 0.68 / 0.95",
         f"{results['zscore_std']:.2f} / {results['coverage_68']:.2f} / "
         f"{results['coverage_95']:.2f}"),
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
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(results, fh, indent=2)
        out(f"Wrote {json_path}")
    return results


def _save_mdwarf_plots(folder, y_true, pred, test, out, s_mc=None):
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plotting

    os.makedirs(folder, exist_ok=True)
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
    if s_mc is not None:
        plotting.plot_calibration(y_true, pred["fe_h_pred"], s_mc,
                                  ax=figs["mdwarf_calibration.png"].axes[0], label="MC dropout")
    for name, fig in figs.items():
        path = os.path.join(folder, name)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        out(f"Saved {path}")


def _table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    fmt = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join(["+" + line + "+", fmt(header), "+" + line + "+"]
                     + [fmt(r) for r in rows] + ["+" + line + "+"])


# ------------------------------------------------------------------- commands
def _cmd_demo(args):
    if args.method == "mdwarf":
        run_mdwarf_demo(n_samples=args.n_samples or 5000, random_state=args.random_state,
                        max_epochs=args.max_epochs or 300, plots=args.plots,
                        json_path=args.json, architecture=args.architecture,
                        verbose=args.verbose)
    elif args.method == "galaxy":
        run_galaxy_demo(n_spectra=args.n_samples or 2000, random_state=args.random_state,
                        max_epochs=args.max_epochs or 10, json_path=args.json,
                        verbose=args.verbose)
    elif args.method == "cyclestarnet":
        from .cyclestarnet.evaluation import run_cyclestarnet_demo

        run_cyclestarnet_demo(n_iter=args.max_epochs or 300, n_train=args.n_samples or 300,
                              random_state=args.random_state, json_path=args.json,
                              verbose=args.verbose)
    elif args.method == "photod":
        from .photod.evaluation import run_photod_demo

        run_photod_demo(n_stars=args.n_samples or 30000, random_state=args.random_state,
                        max_epochs=args.max_epochs or 500, json_path=args.json,
                        verbose=args.verbose)
    elif args.method == "xp":
        run_xp_demo(n_stars=args.n_samples or 6000, random_state=args.random_state,
                    max_iter=args.max_epochs or 1500, json_path=args.json, plots=args.plots,
                    verbose=args.verbose)
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

    t0 = time.perf_counter()
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
                     f"{p['median_sigma_model']:.3g} / {p['median_sigma_input']:.3g} / "
                     f"{p['median_sigma_excess']:.3g}",
                     f"{p['zscore_std_vs_truth_raw']:.2f} / {p['cov68_vs_truth_raw']:.2f} / "
                     f"{p['cov95_vs_truth_raw']:.2f}",
                     f"{p['zscore_std_vs_truth']:.2f} / {p['cov68_vs_truth']:.2f} / "
                     f"{p['cov95_vs_truth']:.2f}"))
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
        import os

        import matplotlib

        matplotlib.use("Agg")
        from .datasets.gaia_xp import make_xp_catalog
        from .xp.diagnostics import plot_zscores

        os.makedirs(plots, exist_ok=True)
        cat, truth = make_xp_catalog(n_stars, random_state=random_state, return_truth=True)
        sub = test_index[:2000]  # held-out stars only
        u = pipe[-1].predict_uncertainty(pipe[0].transform(cat.iloc[sub]))
        labels = res["labels"]
        t = np.column_stack([truth[f"true_{c}"].to_numpy()[sub] for c in labels])
        fig = plot_zscores(t, u["prediction"], u["total_std"], label_names=labels)
        path = os.path.join(plots, "xp_zscores.png")
        fig.savefig(path, dpi=110)
        out(f"Saved {path}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(res, fh, indent=2, default=float)
        out(f"Wrote {json_path}")
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
    rows = [
        ("test spectra", "~7700", f"{cnn['n_test']}"),
        ("residual mean (dex)", "-0.0002", f"{cnn['residual_mean']:+.4f}"),
        ("residual std (dex)", "0.0829", f"{cnn['residual_std']:.4f}"),
        ("robust std (dex)", "-", f"{cnn['residual_robust_std']:.4f}"),
        ("epochs", "100", f"{cnn['epochs']}"),
        ("s / epoch per 10k spectra", "-", f"{cnn['epoch_seconds_per_10k']:.1f}"),
        ("resampling (spectra/s)", "-", f"{res['resample_per_second']:.0f}"),
        ("prediction (spectra/s)", "-", f"{cnn['predict_per_second']:.0f}"),
    ]
    unc = cnn["uncertainty"]["calibrated"]
    rows += [
        ("median calibrated sigma (dex)", "none", f"{unc['median_sigma']:.4f}"),
        ("z std / 68% / 95% coverage", "-",
         f"{unc['zscore_std']:.2f} / {unc['cov68']:.2f} / {unc['cov95']:.2f}"),
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
    results = {k: v for k, v in cnn.items()}
    results.update({"resample_per_second": res["resample_per_second"],
                    "snr_bins": snr.to_dict(orient="list")})
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(results, fh, indent=2, default=float)
        out(f"Wrote {json_path}")
    return results


def _cmd_fit(args):
    import joblib

    from .datasets import read_catalog

    cat = read_catalog(args.catalog)
    if args.target not in cat.columns:
        raise SystemExit(
            f"error: target column {args.target!r} is not in {args.catalog}; "
            f"columns are {list(cat.columns)}"
        )
    params = {}
    if args.max_epochs is not None:
        params["max_epochs"] = args.max_epochs
    if args.architecture is not None:
        params["architecture"] = args.architecture
    model = make_mdwarf_pipeline(random_state=args.random_state, verbose=args.verbose, **params)
    t0 = time.perf_counter()
    model.fit(cat, cat[args.target])
    joblib.dump(model, args.model)
    print(f"Trained on {len(cat)} rows in {time.perf_counter() - t0:.1f} s "
          f"({model[-1].n_epochs_} epochs); saved {args.model}")
    return 0


def _cmd_predict(args):
    import joblib
    import pandas as pd

    from .datasets import read_catalog, write_catalog

    model = joblib.load(args.model)
    cat = read_catalog(args.catalog)
    t0 = time.perf_counter()
    pred = predict_table(model, cat)
    keep = [c for c in (args.keep or []) if c in cat.columns]
    missing = [c for c in (args.keep or []) if c not in cat.columns]
    if missing:
        raise SystemExit(f"error: --keep columns not in the catalogue: {missing}")
    table = pd.concat([cat[keep], pred], axis=1) if keep else pred
    if args.all_columns:
        table = pd.concat([cat, pred], axis=1)
    write_catalog(table.reset_index(drop=True), args.output, overwrite=args.overwrite)
    print(f"Predicted {len(cat)} rows in {time.perf_counter() - t0:.1f} s; wrote {args.output}")
    return 0


def build_parser():
    """The argparse parser of the ``skstellar`` command."""
    parser = argparse.ArgumentParser(
        prog="skstellar",
        description="Stellar and galaxy parameters from survey data with honest uncertainties.",
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

    fit = sub.add_parser("fit", help="train a method on a catalogue and save it (joblib)")
    fit.add_argument("method", choices=METHODS)
    fit.add_argument("catalog", help="training catalogue (CSV, ECSV, FITS, Parquet, VOTable)")
    fit.add_argument("model", help="output model file (.joblib)")
    fit.add_argument("--target", default="fe_h", help="label column (default fe_h)")
    fit.add_argument("--max-epochs", type=int, default=None)
    fit.add_argument("--architecture", choices=("paper", "released"), default=None)
    fit.add_argument("--random-state", type=int, default=0)
    fit.add_argument("-v", "--verbose", type=int, default=0)
    fit.set_defaults(func=_cmd_fit)

    pred = sub.add_parser("predict", help="predict with a saved model, write a catalogue")
    pred.add_argument("model", help="model file written by 'skstellar fit' (or any joblib Pipeline)")
    pred.add_argument("catalog", help="input catalogue (CSV, ECSV, FITS, Parquet, VOTable)")
    pred.add_argument("output", help="output catalogue; format from the extension")
    pred.add_argument("--keep", nargs="*", metavar="COLUMN",
                      help="input columns to copy to the output (e.g. source_id)")
    pred.add_argument("--all-columns", action="store_true", help="copy every input column")
    pred.add_argument("--overwrite", action="store_true")
    pred.set_defaults(func=_cmd_predict)
    return parser


def main(argv=None):
    """Entry point of the ``skstellar`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
