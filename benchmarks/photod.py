"""Benchmark: the hybrid Bayesian + neural photo-D pipeline against Mrakovčić et al. (2025).

What it measures, prints and writes as JSON:

1. Table 1 on a simulated LSST catalogue spread over several HEALPix order-4
   patches (``simulate_patch_catalog``; one ``make_lsst_catalog`` box per
   pixel): median and robust std (1.4826 MAD) of Bayes - truth, NN - Bayes
   and NN - truth for M_r, A_r, [Fe/H] on the test set (stars estimated by
   the student), printed beside the paper's values (targets for NN vs Bayes:
   robust std <= 0.123 mag, 0.048 mag, 0.110 dex).
2. Calibration: z = (truth - estimate) / sigma for sigma_total (NN) and
   sigma_B (Bayes), target std 0.8-1.2; median sigma_total / sigma_B and
   sigma_NN / sigma_B (the paper's Figs. 26-27).
3. Speed, on one core, side by side: the teacher's ms per star (target
   <= 2 ms; photoD ~10 ms), the full-teacher time (measured on every star,
   or extrapolated from ``--teacher-subset`` stars: the output says which),
   the hybrid end to end, the speed-up (the paper ~27x; target >= 20x), and
   the student's per-star inference cost. The same on photoD's discrete
   A_r grid teacher (``--grid-teacher-stars``), whose cost is close to the
   paper's.
4. Dask scale-out: the same hybrid through ``fit_predict_dask`` on a
   ``distributed.LocalCluster(processes=True, threads_per_worker=1)`` with
   1 and 2 workers; wall time and whether the results equal the in-process
   run.
5. The real Stripe 82 sample (3,981 SDSS standard stars, HEALPix order-4
   pixel 0, priors of order-5 pixel 0): teacher on all, student trained on
   10 % with the paper's full training schedule, student vs teacher on the
   other 90 %.

The paper's configuration is 434,865 stars with 10,000 labelled and a
network trained up to 1024 epochs twice (plus 256 for the sigma_B network).
On a 2-core CPU that takes long; ``--n-stars``, ``--max-epochs`` and
``--n-runs`` shrink it (the printed header says what ran).

Usage::

    python benchmarks/photod.py                                  # the full recipe
    python benchmarks/photod.py --n-stars 50000 --max-epochs 300 --n-runs 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import pandas as pd

from skstellar.cli import _table
from skstellar.photod.evaluation import (
    PAPER_TIMING,
    evaluate_photod,
    print_evaluation,
    simulate_patch_catalog,
    single_core,
    summarise_evaluation,
)
from skstellar.photod.hybrid import TARGETS, HybridPhotoD

#: Order-4 pixels around Stripe 82 (RA 337-352 deg), used in this order.
PIXELS = (1177, 1178, 1176, 1179, 1171, 1180, 1174, 1189)


def make_student(args, seed=None):
    from skstellar.photod.network import PhotoDNetwork

    return PhotoDNetwork(max_epochs=args.max_epochs,
                         secondary_max_epochs=min(args.secondary_max_epochs, args.max_epochs),
                         n_runs=args.n_runs, random_state=seed)


def make_hybrid(args, teacher=None, **kw):
    params = dict(teacher=teacher, student=make_student(args), label_fraction=args.label_fraction,
                  label_count=args.label_count, min_labelled=args.min_labelled,
                  random_state=args.seed, verbose=args.verbose)
    params.update(kw)
    return HybridPhotoD(**params)


def grid_teacher_cost(cat, n, seed):
    """ms/star of photoD's discrete A_r grid (ar_integration='grid') and of the default."""
    from skstellar.photod.teacher import BayesianPhotoD

    sub = cat.sample(n=min(n, len(cat)), random_state=seed)
    out = {}
    for mode in ("analytic", "grid"):
        b = BayesianPhotoD(ar_integration=mode).fit()
        with single_core():
            t0 = time.perf_counter()
            b.predict_posterior(sub)
            out[mode] = 1e3 * (time.perf_counter() - t0) / len(sub)
    return out, len(sub)


def dask_scaling(args, cat, reference):
    """Hybrid via fit_predict_dask on LocalClusters of 1 and 2 single-threaded worker processes."""
    from distributed import Client, LocalCluster

    rows = []
    for n_workers in args.workers:
        t0 = time.perf_counter()
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            # import torch and skstellar in every worker before timing the work
            client.run(lambda: __import__("skstellar.photod.network"))
            t_start = time.perf_counter() - t0
            hyb = make_hybrid(args)
            t0 = time.perf_counter()
            out = hyb.fit_predict_dask(cat, client=client)
            wall = time.perf_counter() - t0
        num = list(TARGETS) + [f"{t}_std" for t in TARGETS]
        diff = float(np.nanmax(np.abs(out[num].to_numpy() - reference[num].to_numpy())))
        same_labels = bool(np.array_equal(out["labelled_by_teacher"],
                                          reference["labelled_by_teacher"]))
        summ = hyb.patch_summary_
        busy = float(summ[["teacher_seconds", "student_fit_seconds",
                           "student_predict_seconds"]].to_numpy().sum())
        rows.append({"n_workers": n_workers, "seconds": wall, "cluster_start_seconds": t_start,
                     "patch_work_seconds": busy,
                     "max_abs_diff_vs_in_process": diff, "same_labelled_stars": same_labels})
        print(f"  Dask, {n_workers} worker(s): {wall:.1f} s (per-patch work summed over "
              f"workers {busy:.1f} s; cluster start and imports {t_start:.1f} s, not counted); "
              f"max |diff| vs in-process {diff:.2e}; same labelled stars: {same_labels}",
              flush=True)
    if len(rows) > 1:
        for r in rows:
            r["speedup_vs_first"] = rows[0]["seconds"] / r["seconds"]
    return rows


def stripe82(args):
    """Teacher on all 3,981 real Stripe 82 stars, student on 10 %, comparison on the rest."""
    from skstellar.io.photod import load_stripe82_priors, load_stripe82_sample
    from skstellar.photod.teacher import BayesianPhotoD

    from skstellar.photod.network import PhotoDNetwork

    cat = load_stripe82_sample()
    teacher = BayesianPhotoD(prior_maps=load_stripe82_priors(0)).fit()
    # 399 labelled stars train quickly: use the paper's full schedule (2 runs, <= 1024 epochs)
    hyb = make_hybrid(args, teacher=teacher, student=PhotoDNetwork(), label_fraction=0.1,
                      label_count=None, min_labelled=2)
    ev = evaluate_photod(cat, hyb, truth_columns=None, random_state=args.seed)
    return ev


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-stars", type=int, default=400_000,
                    help="simulated stars (paper: 434,865)")
    ap.add_argument("--n-patches", type=int, default=4, help="HEALPix order-4 patches (<= 8)")
    ap.add_argument("--label-fraction", type=float, default=0.05,
                    help="fraction labelled by the teacher per patch (paper: 5-10 %%)")
    ap.add_argument("--label-count", type=int, default=None,
                    help="labelled stars per patch instead of a fraction (paper: 10,000)")
    ap.add_argument("--min-labelled", type=int, default=1000)
    ap.add_argument("--max-epochs", type=int, default=1024, help="paper: 1024")
    ap.add_argument("--secondary-max-epochs", type=int, default=256, help="paper: 256")
    ap.add_argument("--n-runs", type=int, default=2, help="paper: 2")
    ap.add_argument("--teacher-subset", type=int, default=None,
                    help="time the full teacher on this many stars and extrapolate "
                         "(default: every star)")
    ap.add_argument("--grid-teacher-stars", type=int, default=2000,
                    help="stars timed with photoD's A_r grid (0 to skip)")
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2],
                    help="Dask worker counts to time (none to skip)")
    ap.add_argument("--skip-stripe82", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-v", "--verbose", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "photod.json"))
    args = ap.parse_args(argv)
    results = {"config": vars(args).copy(), "paper_timing": PAPER_TIMING}

    pixels = PIXELS[: max(1, min(args.n_patches, len(PIXELS)))]
    t0 = time.perf_counter()
    cat = simulate_patch_catalog(args.n_stars, pixels=pixels, random_state=args.seed)
    print(f"Simulated {len(cat)} LSST stars (SNR > 5 in ugriz) in {len(pixels)} HEALPix order-4 "
          f"patches {list(pixels)} in {time.perf_counter() - t0:.1f} s. Student: PhotoDNetwork, "
          f"<= {args.max_epochs} epochs x {args.n_runs} run(s), sigma_B net <= "
          f"{min(args.secondary_max_epochs, args.max_epochs)} epochs; labelled per patch: "
          + (f"{args.label_count}" if args.label_count else
             f"{100 * args.label_fraction:g} % (>= {args.min_labelled})") + ".", flush=True)

    # 1-3: hybrid end to end and the full teacher, side by side on one core
    hyb = make_hybrid(args)
    ev = evaluate_photod(cat, hyb, full_teacher=True if args.teacher_subset is None
                         else args.teacher_subset, random_state=args.seed)
    print("")
    print_evaluation(ev, title="skstellar (simulated)")
    sim = summarise_evaluation(ev)
    summ = hyb.patch_summary_
    sim["timing"]["inference_speedup_per_star"] = (ev["timing"]["teacher_ms_per_star"]
                                                   / ev["timing"]["student_ms_per_star"])
    sim["patch_summary"] = summ.to_dict(orient="records")
    print(f"Student inference is {sim['timing']['inference_speedup_per_star']:.0f}x faster than "
          "the teacher per star; the hybrid approaches that only when the labelled fraction and "
          "the training time are amortised.")

    if args.grid_teacher_stars:
        cost, n = grid_teacher_cost(cat, args.grid_teacher_stars, args.seed)
        t_nn = ev["timing"]["hybrid_seconds"] - ev["timing"]["hybrid_teacher_seconds"]
        lab = ev["counts"]["n_labelled"]
        est_full = cost["grid"] * 1e-3 * len(cat)
        est_hybrid = cost["grid"] * 1e-3 * lab + t_nn
        sim["grid_teacher"] = {"stars_timed": n, "ms_per_star_grid": cost["grid"],
                               "ms_per_star_analytic": cost["analytic"],
                               "full_seconds_extrapolated": est_full,
                               "hybrid_seconds_estimated": est_hybrid,
                               "speedup_estimated": est_full / est_hybrid}
        print("")
        print(_table(["photoD's A_r grid teacher (one core)", "paper", "skstellar"], [
            ("ms per star (grid / analytic)", "~10",
             f"{cost['grid']:.2f} / {cost['analytic']:.2f} ({n} stars)"),
            ("full teacher (s, extrapolated)", "4400", f"{est_full:.0f}"),
            ("hybrid (s, estimated: grid teacher on the labelled + measured NN)", "165",
             f"{est_hybrid:.0f}"),
            ("speed-up", "27x", f"{est_full / est_hybrid:.1f}x"),
        ]))
    results["simulated"] = sim

    # 4: Dask scale-out
    if args.workers:
        print("")
        print(f"Dask LocalCluster (processes, 1 thread per worker) on the same {len(cat)} stars "
              f"(in-process, one core: {ev['timing']['hybrid_seconds']:.1f} s):", flush=True)
        results["dask"] = dask_scaling(args, cat, ev["result"])

    # 5: the real Stripe 82 sample
    if not args.skip_stripe82:
        try:
            ev82 = stripe82(args)
        except FileNotFoundError as exc:
            print(f"Stripe 82 sample skipped: {exc}")
        else:
            print("")
            print("Real SDSS Stripe 82 standard stars (teacher on all, student on 10 %, "
                  "comparison on the other 90 %):")
            print_evaluation(ev82, title="skstellar (Stripe 82)")
            results["stripe82"] = summarise_evaluation(ev82)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=2, default=float)
    print(f"\nWrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
