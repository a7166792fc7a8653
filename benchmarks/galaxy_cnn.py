"""Benchmark: galaxy gas-phase metallicity CNN on simulated LAMOST-like spectra.

What it measures, prints and writes as JSON:

1. Regression: residual mean and std of the paper's CNN against a random
   forest (100 trees) and an MLP (3 x 1024) trained on the same 7:1:2 split
   of simulated star-forming galaxy spectra (``make_galaxy_spectra``,
   observed frame, 0 < z < 0.25, S/N_r 3-30), resampled onto 3800-8000 A at
   1 A and min-max scaled per spectrum; the CNN's std in the paper's S/N_r
   and redshift bins; the mass-metallicity relation of its predictions vs
   Tremonti et al. (2004).
2. Classification: star-forming vs not on a 50/50 simulated sample,
   precision/recall/F1 (the paper: > 92 %, accuracy 92.5 %).
3. Throughput: resampling (target >= 20,000 spectra/s), CNN training time
   per epoch scaled to 10,000 spectra, prediction spectra/s.

The paper trains 100 epochs on ~27,000 spectra; on a 2-core CPU that takes
hours, so the defaults here are smaller (stated in the output); pass
``--n-spectra 38500 --max-epochs 100`` for the full recipe.

Usage::

    python benchmarks/galaxy_cnn.py
    python benchmarks/galaxy_cnn.py --n-spectra 10000 --max-epochs 30 --skip-baselines
    python benchmarks/galaxy_cnn.py --n-spectra 3000 --max-epochs 10 --skip-baselines \
        --skip-classifier --dropout 0.2     # calibrated per-galaxy sigmas
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from skstellar.cli import _table
from skstellar.datasets import make_galaxy_spectra
from skstellar.galaxy.evaluation import (
    evaluate_classification,
    evaluate_regression,
    galaxy_input_pipeline,
)

PAPER = {"cnn_residual_mean": -0.0002, "cnn_residual_std": 0.0829,
         "classifier_accuracy": 0.925, "snr_std_low": 0.11, "snr_std_high": 0.05}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-spectra", type=int, default=6000)
    ap.add_argument("--max-epochs", type=int, default=20)
    ap.add_argument("--n-classifier", type=int, default=4000)
    ap.add_argument("--classifier-epochs", type=int, default=10)
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--skip-classifier", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dropout", type=float, default=0.0,
                    help="CNN dropout (paper: 0, calibrated sigma is then one floor b; "
                         "> 0 gives per-galaxy MC-dropout sigmas, calibrated)")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results",
                                                   "galaxy_cnn.json"))
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")

    t0 = time.perf_counter()
    batch = make_galaxy_spectra(args.n_spectra, random_state=args.seed, z_range=(0.0, 0.25))
    print(f"Simulated {args.n_spectra} star-forming spectra in {time.perf_counter() - t0:.1f} s "
          f"({batch.n_pixels} pixels each)")

    # resampling throughput on its own (the evaluation also times it once)
    pipe = galaxy_input_pipeline()
    t0 = time.perf_counter()
    pipe.fit_transform(batch)
    resample_rate = len(batch) / (time.perf_counter() - t0)

    baselines = () if args.skip_baselines else ("random_forest", "mlp")
    res = evaluate_regression(batch, max_epochs=args.max_epochs, random_state=args.seed,
                              baselines=baselines, cnn_params={"dropout": args.dropout})
    print(f"\nRegression: {res['n_train']}/{res['n_valid']}/{res['n_test']} "
          f"train/valid/test, CNN {args.max_epochs} epochs (paper: 100)")
    rows = [["paper CNN", "~7700", f"{PAPER['cnn_residual_mean']:+.4f}",
             f"{PAPER['cnn_residual_std']:.4f}", "-", "-", "-"]]
    for m in res["models"]:
        rows.append([m["model"], str(m["n_test"]), f"{m['residual_mean']:+.4f}",
                     f"{m['residual_std']:.4f}", f"{m['residual_robust_std']:.4f}",
                     f"{m['fit_seconds']:.0f}", f"{m['predict_per_second']:.0f}"])
    print(_table(["model", "n test", "mean (dex)", "std (dex)", "robust std", "fit (s)",
                  "predict/s"], rows))

    unc = res["models"][0]["uncertainty"]
    print(f"\nCNN uncertainty on the test spectra (dropout {args.dropout:g}; calibration "
          f"a = {unc.get('a', float('nan')):.3f}, b = {unc.get('b', float('nan')):.4f} dex on "
          "the validation rows). Bar: z std 0.85-1.15")
    rows = []
    for key, name in (("mc", "before: raw MC dropout"), ("calibrated", "after: calibrated")):
        if key in unc:
            u = unc[key]
            rows.append([name, f"{res['models'][0]['residual_std']:.4f}",
                         f"{u['median_sigma']:.4f}", f"{u['zscore_std']:.2f}",
                         f"{u['cov68']:.3f}", f"{u['cov95']:.3f}"])
    if "mc" not in unc:
        rows.insert(0, ["before: none (paper, no dropout)", "-", "-", "-", "-", "-"])
    print(_table(["sigma", "residual std (dex)", "median sigma (dex)", "z std", "68% cov.",
                  "95% cov."], rows))

    for title, key in (("S/N_r", "snr_bins"), ("redshift", "z_bins")):
        t = res[key]
        print(f"\nCNN residuals in the paper's {title} bins")
        print(_table([f"{title} bin", "n", "mean", "std"],
                     [[f"[{lo:g}, {hi:g})", int(n), f"{mu:+.3f}" if n else "-",
                       f"{sd:.3f}" if n > 1 else "-"]
                      for lo, hi, n, mu, sd in zip(t["bin_lo"], t["bin_hi"], t["n"], t["mean"],
                                                   t["std"])]))
    mzr = res["mzr"]
    print("\nMass-metallicity relation of the CNN predictions vs Tremonti et al. (2004)")
    print(_table(["log M* bin", "n", "median pred", "Tremonti", "offset"],
                 [[f"[{lo:.1f}, {hi:.1f})", int(n), f"{m:.3f}", f"{t:.3f}", f"{o:+.3f}"]
                  for lo, hi, n, m, t, o in zip(mzr["mass_lo"], mzr["mass_hi"], mzr["n"],
                                                mzr["median_pred"], mzr["tremonti"],
                                                mzr["offset"])]))
    cnn = res["models"][0]
    print(f"\nThroughput: resampling {resample_rate:,.0f} spectra/s (target >= 20,000); "
          f"CNN {cnn['epoch_seconds_per_10k']:.1f} s/epoch per 10,000 spectra; "
          f"prediction {cnn['predict_per_second']:,.0f} spectra/s")

    out = {"paper": PAPER, "args": vars(args), "resample_per_second": resample_rate,
           "models": res["models"], "n_pixels": res["n_pixels"],
           "snr_bins": res["snr_bins"].to_dict(orient="list"),
           "z_bins": res["z_bins"].to_dict(orient="list"),
           "mzr": res["mzr"].to_dict(orient="list")}

    if not args.skip_classifier:
        cbatch = make_galaxy_spectra(args.n_classifier, random_state=args.seed + 1,
                                     star_forming_fraction=0.5, z_range=(0.0, 0.25))
        cres = evaluate_classification(cbatch, max_epochs=args.classifier_epochs,
                                       random_state=args.seed)
        print(f"\nClassifier ({args.n_classifier} spectra, 50 % star-forming, "
              f"{args.classifier_epochs} epochs; paper: 20,000 spectra, 100 epochs)")
        rep = cres["report"]
        print(_table(["class", "precision", "recall", "F1", "support"],
                     [[c, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", int(s)]
                      for c, p, r, f, s in zip(rep["class"], rep["precision"], rep["recall"],
                                               rep["f1"], rep["support"])]))
        print(f"accuracy {cres['accuracy']:.3f} (paper 0.925)")
        out["classifier"] = {"accuracy": cres["accuracy"], "fit_seconds": cres["fit_seconds"],
                             "report": rep.to_dict(orient="list")}

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(out, fh, indent=2, default=float)
    print(f"\nWrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
