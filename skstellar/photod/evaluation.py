"""Evaluation of the hybrid photo-D pipeline against the paper's Table 1, and its demo.

Mrakovčić, Ivezić & Palaversa (2025) judge the hybrid teacher + network
pipeline by the median and robust standard deviation of three residuals
(their Table 1: Bayes versus truth, NN versus Bayes, NN versus truth, for
M_r, A_r and [Fe/H], Sects. 3.3-3.5), by how well the predicted
uncertainties normalise the residuals (Figs. 7, 13, 19), by the ratios
sigma_total / sigma_B and sigma_NN / sigma_B (Figs. 26-27) and by speed
(Sect. 4.2: Bayes ~4400 s for 440,000 stars, the hybrid ~165 s). This
module measures the same numbers for skstellar:

* :func:`simulate_patch_catalog` -- simulated LSST stars filling whole HEALPix pixels;
* :func:`photod_table1` -- the Table-1 statistics from estimates and references;
* :func:`evaluate_photod` -- a :class:`~skstellar.photod.hybrid.HybridPhotoD` run and the
  full teacher side by side: Table 1, calibration, uncertainty ratios and timings
  (also without truth, e.g. on the real Stripe 82 sample);
* :func:`run_photod_demo` -- ``skstellar demo photod``: a short simulated run printed
  next to the paper's Table 1;
* :data:`PAPER_TABLE1`, :data:`PAPER_TIMING` -- the paper's figures.
"""

from __future__ import annotations

import contextlib
import sys
import time

import numpy as np
import pandas as pd

from .. import metrics
from ..reporting import format_table, write_json
from .hybrid import DEFAULT_PATCH_ORDER, TARGETS, HybridPhotoD
from .patch_job import teacher_estimates
from .patches import patch_key, patch_uniq

__all__ = [
    "PAPER_TABLE1",
    "PAPER_TIMING",
    "TRUTH_COLUMNS",
    "evaluate_photod",
    "format_table1",
    "photod_table1",
    "run_photod_demo",
    "simulate_patch_catalog",
    "single_core",
]

#: Table 1 of Mrakovčić et al. (2025): median and robust std of the residuals
#: (434,865 simulated stars, SNR > 5 in all bands) [mag for M_r and A_r, dex for [Fe/H]].
PAPER_TABLE1 = pd.DataFrame(
    [("Bayes vs truth", "Mr", -0.010, 0.282), ("Bayes vs truth", "Ar", -0.009, 0.041),
     ("Bayes vs truth", "FeH", -0.006, 0.315),
     ("NN vs Bayes", "Mr", 0.005, 0.123), ("NN vs Bayes", "Ar", 0.007, 0.048),
     ("NN vs Bayes", "FeH", -0.003, 0.110),
     ("NN vs truth", "Mr", 0.005, 0.324), ("NN vs truth", "Ar", -0.004, 0.055),
     ("NN vs truth", "FeH", -0.014, 0.352)],
    columns=["comparison", "parameter", "paper_median", "paper_robust_std"],
)
#: Timings of Sect. 4.2 (440,000 stars, CPU) and the per-star cost of Palaversa et al.
#: (2025) quoted in Sect. 1.
PAPER_TIMING = {
    "n_stars": 440_000,
    "teacher_ms_per_star": 10.0,
    "bayes_full_seconds": 4400.0,
    "nn_seconds": 65.0,
    "hybrid_seconds": 165.0,
    "speedup": 4400.0 / 165.0,
}
#: Truth columns of :func:`skstellar.datasets.photod.make_lsst_catalog`, per target.
TRUTH_COLUMNS = {"Mr": "Mr_true", "FeH": "FeH_true", "Ar": "Ar_true"}
_UNITS = {"Mr": "mag", "FeH": "dex", "Ar": "mag"}


# -------------------------------------------------------------------- Helpers
@contextlib.contextmanager
def single_core(enabled=True):
    """Limit BLAS/OpenMP pools (and torch, if loaded) to one thread inside the block.

    Per-core timings (the paper quotes ms per star per core) are measured
    inside it; the previous settings are restored on exit.

    Parameters
    ----------
    enabled : bool, default=True
        False makes the context a no-op.
    """
    if not enabled:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    old = torch.get_num_threads() if torch is not None else None
    try:
        with threadpool_limits(limits=1):
            if torch is not None:
                torch.set_num_threads(1)
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(old)


def simulate_patch_catalog(n_stars, pixels=(1177,), order=DEFAULT_PATCH_ORDER, *,
                           random_state=0, **kwargs):
    """Simulated LSST stars filling boxes inscribed in whole HEALPix pixels.

    Each pixel gets ``n_stars / len(pixels)`` stars from
    :func:`skstellar.datasets.photod.make_lsst_catalog`, drawn uniformly
    inside the largest RA/Dec box centred on the pixel that stays inside it
    (with a 10 % margin), so each pixel is one well-populated patch of
    :class:`~skstellar.photod.hybrid.HybridPhotoD` (no truncated patches).
    The default pixel 1177 (order 4, centre RA 345.9, Dec 0) lies in the
    Stripe 82 area of the default prior maps.

    Parameters
    ----------
    n_stars : int
        Total number of stars.
    pixels : sequence of int, default=(1177,)
        Nested HEALPix pixels at ``order``.
    order : int, default=4
        Their HEALPix order.
    random_state : int, default=0
        Seed; pixel k uses ``random_state + k``.
    **kwargs
        Passed to ``make_lsst_catalog`` (not ``ra_range``/``dec_range``).

    Returns
    -------
    pandas.DataFrame
        The concatenated catalogues (RangeIndex), columns of
        ``make_lsst_catalog`` plus ``patch`` (the pixel each star was drawn
        for).
    """
    import astropy.units as u
    from astropy_healpix import boundaries_lonlat, healpix_to_lonlat

    from ..datasets.photod import make_lsst_catalog

    pixels = [int(p) for p in np.atleast_1d(pixels)]
    if not pixels:
        raise ValueError("pixels must name at least one HEALPix pixel.")
    if n_stars < len(pixels):
        raise ValueError(f"n_stars={n_stars} is smaller than the number of pixels {len(pixels)}.")
    counts = np.full(len(pixels), n_stars // len(pixels))
    counts[: n_stars - counts.sum()] += 1
    parts = []
    for k, (pix, m) in enumerate(zip(pixels, counts)):
        lon0, lat0 = healpix_to_lonlat(pix, 2**order, order="nested")
        blon, blat = boundaries_lonlat(pix, 1, 2**order, order="nested")
        lon0, lat0 = lon0.to_value(u.deg), lat0.to_value(u.deg)
        dlon = np.abs((blon.to_value(u.deg) - lon0 + 180.0) % 360.0 - 180.0).max()
        dlat = np.abs(blat.to_value(u.deg) - lat0).max()
        a, b = 0.45 * dlon, 0.45 * dlat  # box inscribed in the diamond, 10 % margin
        cat = make_lsst_catalog(int(m), ra_range=(lon0 - a, lon0 + a),
                                dec_range=(max(lat0 - b, -90.0), min(lat0 + b, 90.0)),
                                random_state=int(random_state) + k, **kwargs)
        cat["ra"] = np.mod(cat["ra"], 360.0)
        cat["patch"] = pix
        parts.append(cat)
    return pd.concat(parts, ignore_index=True)


def _stats(est, ref):
    """(n, median, robust std) of est - ref over rows where both are finite."""
    est, ref = np.asarray(est, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    ok = np.isfinite(est) & np.isfinite(ref)
    if ok.sum() < 2:
        return int(ok.sum()), np.nan, np.nan
    r = est[ok] - ref[ok]
    return int(ok.sum()), float(np.median(r)), float(metrics.robust_std(r))


def photod_table1(nn, bayes=None, truth=None, rows=None, bayes_rows=None):
    """Median and robust std of Bayes - truth, NN - Bayes and NN - truth (the paper's Table 1).

    Parameters
    ----------
    nn : pandas.DataFrame
        Network estimates with columns ``Mr, FeH, Ar`` [mag, dex, mag].
    bayes : pandas.DataFrame or None
        Teacher estimates (same rows, same columns); NaN rows are skipped.
    truth : pandas.DataFrame or None
        True values with columns ``Mr, FeH, Ar`` (same rows).
    rows : array-like of bool or None
        Rows of the NN comparisons (the paper: the test set, i.e. the stars
        the network estimated); None uses all.
    bayes_rows : array-like of bool or None
        Rows of "Bayes vs truth"; None uses ``rows``.

    Returns
    -------
    pandas.DataFrame
        One row per available (comparison, parameter): ``comparison,
        parameter, unit, n, median, robust_std`` (residual = estimate -
        reference; robust std = 1.4826 MAD, :func:`skstellar.metrics.robust_std`)
        and the paper's ``paper_median, paper_robust_std``.
    """
    n_rows = len(nn)

    def mask(m):
        return np.ones(n_rows, dtype=bool) if m is None else np.asarray(m, dtype=bool)

    keep = mask(rows)
    keep_b = keep if bayes_rows is None else mask(bayes_rows)
    pairs = {"Bayes vs truth": (bayes, truth, keep_b), "NN vs Bayes": (nn, bayes, keep),
             "NN vs truth": (nn, truth, keep)}
    out = []
    for comp, (est, ref, sel) in pairs.items():
        if est is None or ref is None:
            continue
        for t in ("Mr", "Ar", "FeH"):
            n, med, rstd = _stats(est[t].to_numpy()[sel], ref[t].to_numpy()[sel])
            out.append({"comparison": comp, "parameter": t, "unit": _UNITS[t], "n": n,
                        "median": med, "robust_std": rstd})
    table = pd.DataFrame(out, columns=["comparison", "parameter", "unit", "n", "median",
                                       "robust_std"])
    return table.merge(PAPER_TABLE1, on=["comparison", "parameter"], how="left")


def format_table1(table):
    """Plain-text Table 1, ours next to the paper's (for printing)."""
    rows = [(r.comparison, f"{r.parameter} [{r.unit}]", f"{r.n}",
             f"{r.median:+.3f}", f"{r.paper_median:+.3f}",
             f"{r.robust_std:.3f}", f"{r.paper_robust_std:.3f}") for r in table.itertuples()]
    return format_table(["comparison", "parameter", "n", "median", "paper", "robust std", "paper"],
                  rows)


def _run_teacher(hybrid, catalog, result, rows):
    """Teacher posterior (TARGETS means and stds) on catalogue rows ``rows`` (bool), by patch."""
    job = hybrid._job(teacher=hybrid.teacher_)
    out = pd.DataFrame(np.nan, index=catalog.index,
                       columns=[*TARGETS, *(f"{t}_std" for t in TARGETS)])
    keys = patch_uniq(result["patch_order"].to_numpy(), result["patch"].to_numpy())
    pos = np.flatnonzero(rows)
    for k in np.unique(keys[pos]):
        sel = pos[keys[pos] == k]
        m, s, _, _ = teacher_estimates(job.teacher_for(*patch_key(k)), catalog.iloc[sel])
        out.iloc[sel] = np.hstack([m, s])
    return out


# ----------------------------------------------------------------- Evaluation
def evaluate_photod(catalog, hybrid=None, *, truth_columns=TRUTH_COLUMNS, full_teacher=True,
                    one_core=True, random_state=0):
    """Run the hybrid pipeline and the full teacher side by side; Table 1, calibration, timing.

    Steps (Mrakovčić et al. 2025, Sects. 3.3-3.5, 4.2):

    1. ``hybrid.fit_predict(catalog)``, timed end to end (teacher on the
       labelled stars, per-patch training, student prediction);
    2. the teacher on every star (``full_teacher=True``), timed: the
       full-Bayes cost; or on a seeded random subset of ``full_teacher``
       stars, whose ms/star is extrapolated to the whole catalogue;
    3. Table 1 on the *test set* (stars estimated by the student; for
       "Bayes vs truth" the stars the full teacher saw among them), the
       z-score calibration of sigma_total (NN vs truth) and of sigma_B
       (Bayes vs truth), and the median ratios sigma_total / sigma_B and
       sigma_NN / sigma_B (Figs. 26-27).

    Parameters
    ----------
    catalog : pandas.DataFrame
        Stars with sky positions, photometry and (optionally) truth.
    hybrid : HybridPhotoD or None, default=None
        The pipeline (fitted again here); None uses
        ``HybridPhotoD(random_state=random_state)``.
    truth_columns : dict or None, default=TRUTH_COLUMNS
        Target name -> truth column (``{"Mr": "Mr_true", ...}``); None or
        absent columns skip the comparisons with truth (real data).
    full_teacher : bool or int, default=True
        True: run the teacher on all stars. An int k: on k random stars
        (seeded by ``random_state``) and extrapolate its time linearly.
    one_core : bool, default=True
        Time everything on one CPU thread (:func:`single_core`), as the
        paper's per-core figures.
    random_state : int, default=0
        Seed of the default hybrid and of the teacher subset.

    Returns
    -------
    dict
        ``result`` (the hybrid's output table), ``bayes`` (teacher means and
        stds, NaN where not run), ``table1`` (see :func:`photod_table1`),
        ``calibration`` (DataFrame, one row per (comparison, target) with
        :func:`skstellar.metrics.calibration_summary` columns),
        ``uncertainty_ratios`` (dict), ``timing`` (dict of seconds, ms per
        star and ``speedup`` = full-teacher time / hybrid time; the same in
        this process's CPU seconds, ``hybrid_cpu_seconds``,
        ``teacher_full_cpu_seconds`` and ``cpu_speedup``, which depend much
        less on other processes sharing the machine;
        ``teacher_full_measured`` says whether the full teacher time was
        measured or extrapolated) and ``counts`` (dict).
    """
    if hybrid is None:
        hybrid = HybridPhotoD(random_state=random_state)
    n = len(catalog)
    with single_core(one_core):
        t0, c0 = time.perf_counter(), time.process_time()
        result = hybrid.fit_predict(catalog)
        t_hybrid, c_hybrid = time.perf_counter() - t0, time.process_time() - c0
        if full_teacher is True:
            rows = np.ones(n, dtype=bool)
        else:
            k = int(min(int(full_teacher), n))
            rows = np.zeros(n, dtype=bool)
            rows[np.random.default_rng(random_state).choice(n, k, replace=False)] = True
        t0, c0 = time.perf_counter(), time.process_time()
        bayes = _run_teacher(hybrid, catalog, result, rows)
        t_teacher, c_teacher = time.perf_counter() - t0, time.process_time() - c0
    n_teacher = int(rows.sum())
    ms_per_star = 1e3 * t_teacher / max(n_teacher, 1)
    t_full = t_teacher if full_teacher is True else ms_per_star * 1e-3 * n
    c_full = c_teacher * n / max(n_teacher, 1)
    test = ~result["labelled_by_teacher"].to_numpy()
    truth = None
    if truth_columns and all(c in catalog for c in truth_columns.values()):
        truth = pd.DataFrame({t: catalog[c].to_numpy(np.float64)
                              for t, c in truth_columns.items()}, index=catalog.index)
    nn = result[list(TARGETS)]
    # NN comparisons on the test set; Bayes vs truth on every star the full teacher saw
    table = photod_table1(nn, bayes, truth, rows=test, bayes_rows=rows)
    cal_rows = []
    for t in TARGETS if truth is not None else ():
        ref = truth[t].to_numpy()
        for name, est, sig, sel in (
                ("NN vs truth (sigma_total)", nn[t], result[f"{t}_std"], test),
                ("Bayes vs truth (sigma_B)", bayes[t], bayes[f"{t}_std"], rows)):
            est, sig = est.to_numpy(), sig.to_numpy()
            ok = sel & np.isfinite(est) & (sig > 0)
            if ok.sum() >= 2:
                c = metrics.calibration_summary(ref[ok], est[ok], sig[ok])
                cal_rows.append({"comparison": name, "parameter": t, **c})
    calibration = pd.DataFrame(cal_rows)
    ratios = {}
    for t in TARGETS:
        sb = bayes[f"{t}_std"].to_numpy()
        ok = test & np.isfinite(sb) & (sb > 0)
        if ok.any():
            ratios[f"{t}_total_over_bayes"] = float(np.median(result[f"{t}_std"].to_numpy()[ok]
                                                              / sb[ok]))
            nn_sig = result[f"{t}_sigma_nn"].to_numpy()[ok]
            if np.isfinite(nn_sig).any():
                ratios[f"{t}_nn_over_bayes"] = float(np.nanmedian(nn_sig / sb[ok]))
    summ = hybrid.patch_summary_
    timing = {
        "hybrid_seconds": t_hybrid,
        "hybrid_teacher_seconds": float(summ["teacher_seconds"].sum()),
        "hybrid_student_fit_seconds": float(summ["student_fit_seconds"].sum()),
        "hybrid_student_predict_seconds": float(summ["student_predict_seconds"].sum()),
        "teacher_seconds_measured": t_teacher,
        "teacher_stars_measured": n_teacher,
        "teacher_ms_per_star": ms_per_star,
        "teacher_full_seconds": t_full,
        "teacher_full_measured": bool(full_teacher is True),
        "speedup": t_full / t_hybrid if t_hybrid > 0 else np.nan,
        "hybrid_cpu_seconds": c_hybrid,
        "teacher_full_cpu_seconds": c_full,
        "cpu_speedup": c_full / c_hybrid if c_hybrid > 0 else np.nan,
        "student_ms_per_star": (1e3 * float(summ["student_predict_seconds"].sum())
                                / max(int(summ["n_student"].sum()), 1)),
        "one_core": bool(one_core),
    }
    counts = {"n_stars": n, "n_patches": int(len(summ)),
              "n_labelled": int((~test).sum()), "n_test": int(test.sum()),
              "label_fraction": float((~test).mean()),
              "n_teacher_only_patches": int((summ["mode"] == "teacher").sum())}
    return {"result": result, "bayes": bayes, "table1": table, "calibration": calibration,
            "uncertainty_ratios": ratios, "timing": timing, "counts": counts}


def _jsonable(obj):
    if isinstance(obj, pd.DataFrame):
        return obj.replace({np.nan: None}).to_dict(orient="records")
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    return obj


def summarise_evaluation(ev):
    """The JSON-ready figures of :func:`evaluate_photod` (drops the per-star tables)."""
    return _jsonable({k: ev[k] for k in ("table1", "calibration", "uncertainty_ratios",
                                         "timing", "counts")})


def print_evaluation(ev, out=print, title="skstellar"):
    """Print Table 1, calibration, uncertainty ratios and timing of :func:`evaluate_photod`."""
    out(format_table1(ev["table1"]))
    cal = ev["calibration"]
    if len(cal):
        out("")
        out("z-score calibration, z = (truth - estimate) / sigma (target std 0.8-1.2):")
        out(format_table(["comparison", "parameter", "n", "z mean", "z std", "z robust std",
                    "within 1 sigma"],
                   [(r.comparison, r.parameter, f"{r.n}", f"{r.zscore_mean:+.2f}",
                     f"{r.zscore_std:.2f}", f"{r.zscore_robust_std:.2f}",
                     f"{r.frac_within_1sigma:.2f}") for r in cal.itertuples()]))
    rat = ev["uncertainty_ratios"]
    if rat:
        out("")
        out("Median uncertainty ratios on the test set (paper Figs. 26-27: sigma_total/sigma_B "
            "~ 1, sigma_NN/sigma_B << 1):")
        out(format_table(["parameter", "sigma_total / sigma_B", "sigma_NN / sigma_B"],
                   [(t, f"{rat.get(f'{t}_total_over_bayes', np.nan):.2f}",
                     f"{rat.get(f'{t}_nn_over_bayes', np.nan):.2f}") for t in TARGETS]))
    tm, c = ev["timing"], ev["counts"]
    out("")
    full = "measured" if tm["teacher_full_measured"] else \
        f"extrapolated from {tm['teacher_stars_measured']} stars"
    core = "one core" if tm["one_core"] else "all cores"
    rows = [
        ("stars / patches / labelled", f"{PAPER_TIMING['n_stars']} / 1 / 10,000",
         f"{c['n_stars']} / {c['n_patches']} / {c['n_labelled']} "
         f"({100 * c['label_fraction']:.1f} %)"),
        (f"teacher ms per star ({core})", "~10 (Palaversa+2025)",
         f"{tm['teacher_ms_per_star']:.2f}"),
        ("full teacher (s)", f"{PAPER_TIMING['bayes_full_seconds']:.0f}",
         f"{tm['teacher_full_seconds']:.1f} ({full})"),
        ("hybrid end to end (s)", f"{PAPER_TIMING['hybrid_seconds']:.0f}",
         f"{tm['hybrid_seconds']:.1f}"),
        ("  of which teacher / NN fit / NN predict (s)", "100 / 65 (NN)",
         f"{tm['hybrid_teacher_seconds']:.1f} / {tm['hybrid_student_fit_seconds']:.1f} / "
         f"{tm['hybrid_student_predict_seconds']:.1f}"),
        ("speed-up (full teacher / hybrid)", f"{PAPER_TIMING['speedup']:.0f}x",
         f"{tm['speedup']:.1f}x"),
        ("CPU seconds: full teacher / hybrid (speed-up)", "",
         f"{tm['teacher_full_cpu_seconds']:.1f} / {tm['hybrid_cpu_seconds']:.1f} "
         f"({tm['cpu_speedup']:.1f}x)"),
        ("student inference, ms per star", f"{1e3 * 65 / 440000:.2f} (incl. training)",
         f"{tm['student_ms_per_star']:.4f}"),
    ]
    out(format_table(["timing", "paper", title], rows))


def run_photod_demo(n_stars=30000, random_state=0, max_epochs=500, out=print, json_path=None,
                    label_fraction=0.1, verbose=0):
    """Simulate one LSST sky patch, run the hybrid pipeline, print the paper's Table 1 beside ours.

    A catalogue of ``n_stars`` simulated stars in the HEALPix order-4 pixel
    1177 (Stripe 82, RA ~346 deg; :func:`simulate_patch_catalog`) goes
    through :class:`~skstellar.photod.hybrid.HybridPhotoD` with the
    default Bayesian teacher and ``PhotoDNetwork`` student (one training
    run, ``max_epochs`` for both networks; the paper: two runs, up to 1024
    and 256 epochs, on 10,000 labelled stars), then the teacher runs on all
    stars for the comparison and the speed-up (one core). The defaults take
    about 1-2 minutes on two cores.

    Parameters
    ----------
    n_stars : int, default=30000
        Simulated stars (the paper: 434,865).
    random_state : int, default=0
        Seed of the simulation, the labelled subset and the network.
    max_epochs : int, default=500
        Epoch cap of the moments network and of the sigma_B network.
    out : callable, default=print
        Where lines go.
    json_path : str or None, default=None
        Write the figures as JSON there.
    label_fraction : float, default=0.1
        Fraction labelled by the teacher (the paper: 5-10 %).
    verbose : int, default=0
        Passed to the hybrid (one line per patch).

    Returns
    -------
    dict
        :func:`summarise_evaluation` of the run.
    """
    from .network import PhotoDNetwork

    cat = simulate_patch_catalog(n_stars, random_state=random_state)
    student = PhotoDNetwork(max_epochs=max_epochs, secondary_max_epochs=max_epochs, n_runs=1)
    hybrid = HybridPhotoD(student=student, label_fraction=label_fraction,
                          min_labelled=min(1000, max(2, n_stars // 2)),
                          random_state=random_state, verbose=verbose)
    out(f"Simulated {n_stars} LSST stars (SNR > 5 in ugriz) in HEALPix order-4 pixel 1177; "
        f"the Bayesian teacher labels {100 * label_fraction:.0f} %, a PhotoDNetwork (<= "
        f"{max_epochs} epochs) estimates the rest.")
    ev = evaluate_photod(cat, hybrid, random_state=random_state)
    out("")
    print_evaluation(ev, out=out, title="skstellar (simulated)")
    out("")
    out("The paper's figures come from 434,865 TRILEGAL stars with 10,000 labelled and up to "
        "1024 training epochs x 2 runs; this demo trains on fewer stars for fewer epochs, so its "
        "NN-vs-Bayes scatter is larger. skstellar's vectorised teacher costs well under photoD's "
        "~10 ms per star, so at this size the network's training time is not repaid: the "
        "hybrid's speed-up is at most 1 / label_fraction and needs large patches (LSST: ~10^5-"
        "10^6 stars each) or a slower teacher. Full comparison: python benchmarks/photod.py")
    res = summarise_evaluation(ev)
    write_json(json_path, res, out)
    return res
