"""Tests of skstellar.photod.hybrid (HybridPhotoD) and skstellar.photod.evaluation."""

import io
import json
import math

import astropy.units as u
import joblib
import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from astropy_healpix import HEALPix, healpix_to_lonlat, nside_to_pixel_area
from photod_toys import toy_locus as _toy_locus
from photod_toys import toy_priors as _toy_priors
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skstellar.datasets.photod import make_lsst_catalog
from skstellar.io import find_shared_data
from skstellar.photod.evaluation import (
    PAPER_TABLE1,
    evaluate_photod,
    photod_table1,
    simulate_patch_catalog,
    summarise_evaluation,
)
from skstellar.photod.hybrid import TARGETS, HybridPhotoD, PatchStudent, healpix_patches
from skstellar.photod.teacher import BayesianPhotoD

# HybridPhotoD is not run through parametrize_with_checks: it reads named survey columns
# (ra, dec, photometry) and its "labels" come from the teacher, so the generic random-array
# checks do not apply. clone/get_params and joblib round trips are tested below.


# --------------------------------------------------------------------------
# A small locus and prior (fast teacher, no shared data needed)
# --------------------------------------------------------------------------
def toy_locus():
    return _toy_locus(step=0.2, tip=False)  # coarse: the hybrid tests fit many patches


def toy_priors():
    return _toy_priors(r_step=1.0)


class KNNStudent(RegressorMixin, BaseEstimator):
    """Fast, deterministic stand-in for PhotoDNetwork: k nearest labelled stars.

    Accepts ``sigma_b`` and answers ``return_std`` with the neighbours' spread
    plus their mean sigma_B (in quadrature), like the moments network's
    sigma_total.
    """

    def __init__(self, n_neighbors=8, random_state=None):
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    def fit(self, X, y, sigma_b=None):
        X = np.asarray(X, dtype=float)
        self.mu_, self.sd_ = X.mean(0), X.std(0) + 1e-9
        self.knn_ = KNeighborsRegressor(self.n_neighbors).fit((X - self.mu_) / self.sd_, y)
        self.y_ = np.asarray(y, dtype=float)
        self.sb_ = None if sigma_b is None else np.asarray(sigma_b, dtype=float)
        self.seen_random_state_ = self.random_state
        return self

    def predict(self, X, return_std=False):
        idx = self.knn_.kneighbors((np.asarray(X, dtype=float) - self.mu_) / self.sd_)[1]
        mean = self.y_[idx].mean(1)
        if not return_std:
            return mean
        var = self.y_[idx].var(1)
        if self.sb_ is not None:
            var = var + (self.sb_[idx] ** 2).mean(1)
        return mean, np.sqrt(var)


class StdOnlyStudent(KNNStudent):
    """Gives return_std but takes no sigma_b (the hybrid must add a sigma_B model)."""

    def fit(self, X, y):
        return super().fit(X, y)


@pytest.fixture(scope="module")
def teacher():
    return BayesianPhotoD(toy_locus(), toy_priors()).fit()


@pytest.fixture(scope="module")
def catalog():
    """2,400 stars over the 7 order-4 pixels touching RA 340-350, |Dec| < 1.3."""
    cat = make_lsst_catalog(2400, locus=toy_locus(), prior_maps=toy_priors(),
                            r_range=(15, 21), ar_distribution="uniform", random_state=3)
    cat.index = pd.Index([f"star{i:05d}" for i in range(len(cat))], name="source_id")
    return cat


def make_hybrid(teacher, **kw):
    params = dict(teacher=teacher, student=KNNStudent(), label_fraction=0.1, min_labelled=40,
                  random_state=0)
    params.update(kw)
    return HybridPhotoD(**params)


@pytest.fixture(scope="module")
def fitted(teacher, catalog):
    hyb = make_hybrid(teacher)
    return hyb, hyb.fit_predict(catalog)


# --------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------
def test_healpix_patches_agree_with_astropy_healpix():
    rng = np.random.default_rng(0)
    ra = rng.uniform(0, 360, 2000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 2000)))
    for order in (0, 3, 4, 7):
        hp = HEALPix(nside=2**order, order="nested")
        expected = hp.lonlat_to_healpix(ra * u.deg, dec * u.deg)
        np.testing.assert_array_equal(healpix_patches(ra, dec, order), expected)
    # pixel centres map back to their own pixel; nested parents are pixel // 4
    pix = rng.choice(12 * 4**4, 300, replace=False)
    lon, lat = healpix_to_lonlat(pix, 16, order="nested")
    np.testing.assert_array_equal(healpix_patches(lon.deg, lat.deg, 4), pix)
    np.testing.assert_array_equal(healpix_patches(lon.deg, lat.deg, 3), pix // 4)
    # Quantities in radians are converted; RA wraps
    np.testing.assert_array_equal(healpix_patches((lon.deg + 360) * u.deg, lat.to(u.rad), 4), pix)


def test_default_patch_is_about_ten_square_degrees():
    area = nside_to_pixel_area(2 ** HybridPhotoD().patch_order).to_value(u.deg**2)
    assert 8 < area < 15  # order 4: 13.4 deg^2 (the paper: ~10 deg^2)


def test_output_patch_column_is_the_healpix_pixel(fitted, catalog):
    hyb, out = fitted
    np.testing.assert_array_equal(out["patch"], healpix_patches(catalog["ra"], catalog["dec"], 4))
    assert (out["patch_order"] == 4).all()
    assert len(np.unique(out["patch"])) >= 5  # the catalogue spans several patches


# --------------------------------------------------------------------------
# Labelled subset, alignment, values
# --------------------------------------------------------------------------
def test_labelled_fraction_per_patch(fitted):
    hyb, out = fitted
    per = out.groupby("patch")["labelled_by_teacher"].agg(["sum", "size"])
    expected = np.maximum(np.ceil(0.1 * per["size"] - 1e-9), 40).astype(int)
    np.testing.assert_array_equal(per["sum"].to_numpy(), expected.to_numpy())
    summ = hyb.patch_summary_.set_index("patch")
    np.testing.assert_array_equal(summ.loc[per.index, "n_labelled"], per["sum"])
    assert set(hyb.patch_models_) == {(4, int(p)) for p in per.index}


def test_label_count_per_patch(teacher, catalog):
    out = make_hybrid(teacher, label_count=60).fit_predict(catalog)
    per = out.groupby("patch")["labelled_by_teacher"].sum()
    assert (per == 60).all()


def test_selection_is_seeded(teacher, catalog, fitted):
    _, out = fitted
    again = make_hybrid(teacher).fit_predict(catalog)
    pd.testing.assert_frame_equal(out, again)
    other = make_hybrid(teacher, random_state=1).fit_predict(catalog)
    assert not np.array_equal(out["labelled_by_teacher"], other["labelled_by_teacher"])


def test_teacher_rows_hold_teacher_values(fitted, catalog, teacher):
    _, out = fitted
    lab = out["labelled_by_teacher"].to_numpy()
    post = teacher.predict_posterior(catalog[lab])
    for t in TARGETS:
        np.testing.assert_allclose(out.loc[lab, t], post[t], rtol=1e-12)
        np.testing.assert_allclose(out.loc[lab, f"{t}_std"], post[f"{t}_std"], rtol=1e-12)
        np.testing.assert_allclose(out.loc[lab, f"{t}_sigma_b"], post[f"{t}_std"], rtol=1e-12)
        assert (out.loc[lab, f"{t}_sigma_nn"] == 0).all()
    np.testing.assert_allclose(out.loc[lab, "DM"], post["DM"], rtol=1e-12)
    # the student's rows are estimates, finite, with positive total stds
    rest = ~lab
    assert np.isfinite(out.loc[rest, list(TARGETS)].to_numpy()).all()
    assert (out.loc[rest, [f"{t}_std" for t in TARGETS]].to_numpy() > 0).all()
    dm = catalog.loc[rest, "rmag"] - out.loc[rest, "Mr"] - out.loc[rest, "Ar"]
    np.testing.assert_allclose(out.loc[rest, "DM"], dm)


def test_student_tracks_teacher(fitted, catalog, teacher):
    _, out = fitted
    rest = ~out["labelled_by_teacher"].to_numpy()
    bayes = teacher.predict_posterior(catalog[rest])
    # the k-NN student is crude but must beat predicting the patch median
    for t in ("Mr", "FeH"):
        err = np.median(np.abs(out.loc[rest, t] - bayes[t]))
        base = np.median(np.abs(bayes[t] - bayes[t].median()))
        assert err < 0.8 * base


def test_output_aligned_with_input_and_permutation_invariant(teacher, catalog, fitted):
    _, out = fitted
    assert out.index.equals(catalog.index)
    perm = np.random.default_rng(5).permutation(len(catalog))
    shuffled = catalog.iloc[perm]
    out_perm = make_hybrid(teacher).fit_predict(shuffled)
    assert out_perm.index.equals(shuffled.index)
    # labelled subsets are drawn in index order, so the row order of the input does not matter
    pd.testing.assert_frame_equal(out_perm.loc[catalog.index], out)


def test_process_patch_equals_fit_predict_rows(teacher, catalog, fitted):
    hyb, out = fitted
    pix = int(out["patch"].value_counts().index[0])
    rows = out["patch"].to_numpy() == pix
    res, model, summary = make_hybrid(teacher).process_patch(catalog[rows])
    pd.testing.assert_frame_equal(res, out[rows])
    assert isinstance(model, PatchStudent)
    assert summary["n_stars"] == rows.sum() and summary["patch"] == pix
    with pytest.raises(ValueError, match="HEALPix pixels"):
        make_hybrid(teacher).process_patch(catalog)


def test_student_seed_comes_from_random_state_and_patch(fitted):
    hyb, _ = fitted
    seeds = {k: m.estimator.seen_random_state_ for k, m in hyb.patch_models_.items()}
    assert all(isinstance(s, int) for s in seeds.values())
    assert len(set(seeds.values())) == len(seeds)


# --------------------------------------------------------------------------
# Small patches and bad input
# --------------------------------------------------------------------------
def test_small_patch_teacher_policy(teacher, catalog):
    counts = pd.Series(healpix_patches(catalog["ra"], catalog["dec"])).value_counts()
    cut = int(counts.iloc[2])  # patches with <= cut stars are small
    hyb = make_hybrid(teacher, min_labelled=cut)
    out = hyb.fit_predict(catalog)
    small = counts.index[counts <= cut]
    in_small = out["patch"].isin(small).to_numpy()
    assert in_small.any() and (~in_small).any()
    assert out.loc[in_small, "labelled_by_teacher"].all()
    summ = hyb.patch_summary_.set_index("patch")
    assert (summ.loc[small, "mode"] == "teacher").all()
    assert (summ.loc[small, "n_student"] == 0).all()
    assert all((4, int(p)) not in hyb.patch_models_ for p in small)
    assert np.isfinite(out.loc[in_small, "Mr"]).all()


def test_small_patch_raise_policy_before_any_work(catalog):
    class ExplodingTeacher(BayesianPhotoD):
        def predict_posterior(self, X):  # must not be reached
            raise AssertionError("the teacher ran before the small-patch check")

    bomb = ExplodingTeacher(toy_locus(), toy_priors()).fit()
    hyb = make_hybrid(bomb, label_count=500, small_patch="raise")
    with pytest.raises(ValueError, match=r"HEALPix order 4, pixel \d+\) has \d+ star"):
        hyb.fit_predict(catalog)


def test_small_patch_merge_policy(teacher, catalog):
    base = healpix_patches(catalog["ra"], catalog["dec"], 4)
    counts = pd.Series(base).value_counts()
    cut = int(counts.iloc[1])  # all but the most populated pixel are small at order 4
    hyb = make_hybrid(teacher, min_labelled=cut, small_patch="merge")
    out = hyb.fit_predict(catalog)
    big = counts.index[0]
    assert (out.loc[base == big, "patch_order"] == 4).all()
    merged = out[base != big]
    assert (merged["patch_order"] < 4).all()
    # a merged patch at order k holds stars whose order-4 pixel descends from it
    shift = 4 ** (4 - merged["patch_order"].to_numpy())
    np.testing.assert_array_equal(base[base != big] // shift, merged["patch"].to_numpy())
    for (order, pixel), m in hyb.patch_models_.items():
        n = int(((out["patch_order"] == order) & (out["patch"] == pixel)).sum())
        assert n > cut  # every patch that got a student is big enough
    # predict on new stars finds the merged patch through pixel_to_patch_
    pred = hyb.predict(catalog.iloc[:50])
    pd.testing.assert_series_equal(pred["patch"], out["patch"].iloc[:50])


@pytest.mark.parametrize("column", ["ra", "dec"])
def test_missing_sky_column(teacher, catalog, column):
    with pytest.raises(ValueError, match=f"Missing column '{column}'.*patch"):
        make_hybrid(teacher).fit_predict(catalog.drop(columns=column))


def test_missing_feature_column(teacher, catalog):
    with pytest.raises(ValueError, match="Missing column 'izErr'"):
        make_hybrid(teacher).fit_predict(catalog.drop(columns="izErr"))


def test_bad_sky_values(teacher, catalog):
    bad = catalog.copy()
    bad.iloc[7, bad.columns.get_loc("dec")] = np.nan
    with pytest.raises(ValueError, match=r"Column 'dec' has 1 NaN.*row 7, index 'star00007'"):
        make_hybrid(teacher).fit_predict(bad)
    bad = catalog.copy()
    bad.iloc[3, bad.columns.get_loc("dec")] = 95.0
    with pytest.raises(ValueError, match=r"outside \[-90, 90\].*row 3"):
        make_hybrid(teacher).fit_predict(bad)


@pytest.mark.parametrize("params, match", [
    ({"label_fraction": 0.0}, "label_fraction"),
    ({"label_fraction": 1.5}, "label_fraction"),
    ({"label_count": 1}, "label_count"),
    ({"min_labelled": 1}, "min_labelled"),
    ({"small_patch": "drop"}, "small_patch"),
    ({"patch_order": 30}, "patch_order"),
])
def test_invalid_parameters(teacher, catalog, params, match):
    with pytest.raises(ValueError, match=match):
        make_hybrid(teacher, **params).fit_predict(catalog)


def test_astropy_table_input(teacher, catalog, fitted):
    _, out = fitted
    tab = Table.from_pandas(catalog.reset_index(drop=True))
    tab["ra"].unit = u.deg
    tab["dec"] = (tab["dec"] * u.deg).to(u.rad)
    out_t = make_hybrid(teacher).fit_predict(tab)
    np.testing.assert_array_equal(out_t["labelled_by_teacher"], out["labelled_by_teacher"])


# --------------------------------------------------------------------------
# Students
# --------------------------------------------------------------------------
def test_sklearn_regressor_without_std_or_sigma_b(teacher, catalog):
    student = make_pipeline(StandardScaler(), KNeighborsRegressor(10))
    hyb = make_hybrid(teacher, student=student)
    out = hyb.fit_predict(catalog)
    model = next(iter(hyb.patch_models_.values()))
    assert model.std_mode == "holdout+sigma_model"
    rest = ~out["labelled_by_teacher"]
    for t in TARGETS:
        nn = out.loc[rest, f"{t}_sigma_nn"]
        assert (nn > 0).all() and out.loc[rest, f"{t}_sigma_b"].gt(0).all()
        # sigma_total = sqrt(sigma_nn^2 + sigma_b^2) (paper eq. 3)
        np.testing.assert_allclose(out.loc[rest, f"{t}_std"],
                                   np.hypot(nn, out.loc[rest, f"{t}_sigma_b"]))


def test_student_with_std_but_no_sigma_b(teacher, catalog):
    hyb = make_hybrid(teacher, student=StdOnlyStudent())
    hyb.fit_predict(catalog)
    assert {m.std_mode for m in hyb.patch_models_.values()} == {"student+sigma_model"}


def test_photod_network_student(teacher):
    from skstellar.photod.network import PhotoDNetwork

    cat = make_lsst_catalog(500, locus=toy_locus(), prior_maps=toy_priors(), r_range=(15, 21),
                            ra_range=(345.5, 346.4), dec_range=(-0.4, 0.4), random_state=1)
    net = PhotoDNetwork(hidden_layer_sizes=(16, 16), activation="gelu", max_epochs=3,
                        secondary_max_epochs=3,
                        n_runs=1, batch_size=64)
    hyb = HybridPhotoD(teacher, net, label_fraction=0.2, min_labelled=50, random_state=0)
    out = hyb.fit_predict(cat)
    (key, model), = hyb.patch_models_.items()
    assert model.std_mode == "student" and isinstance(model.estimator, PhotoDNetwork)
    assert model.estimator.secondary_net_ is not None  # trained with sigma_b
    rest = ~out["labelled_by_teacher"]
    assert rest.sum() == 400
    assert np.isfinite(out.loc[rest, [*TARGETS, *(f"{t}_std" for t in TARGETS)]]).all().all()
    np.testing.assert_allclose(out.loc[rest, "Mr_std"],
                               np.hypot(out.loc[rest, "Mr_sigma_nn"], out.loc[rest, "Mr_sigma_b"]),
                               rtol=1e-6)
    # joblib round trip of the whole fitted pipeline predicts identically
    buf = io.BytesIO()
    joblib.dump(hyb, buf)
    buf.seek(0)
    pd.testing.assert_frame_equal(joblib.load(buf).predict(cat), hyb.predict(cat))


# --------------------------------------------------------------------------
# Persistence and predict
# --------------------------------------------------------------------------
def test_predict_uses_patch_students(fitted, catalog):
    hyb, out = fitted
    pred = hyb.predict(catalog)
    assert pred.index.equals(catalog.index)
    assert not pred["labelled_by_teacher"].any()
    rest = ~out["labelled_by_teacher"]
    pd.testing.assert_frame_equal(pred[rest].drop(columns="labelled_by_teacher"),
                                  out[rest].drop(columns="labelled_by_teacher"))
    mean, std = hyb.predict(catalog, return_std=True)
    np.testing.assert_array_equal(mean, pred[list(TARGETS)].to_numpy())
    assert std.shape == (len(catalog), 3)


def test_save_and_load_patch_models(fitted, catalog, tmp_path):
    hyb, _ = fitted
    files = hyb.save_patch_models(tmp_path / "models")
    assert len([f for f in files if f.name.startswith("patch_o4_p")]) == len(hyb.patch_models_)
    index = json.loads((tmp_path / "models" / "index.json").read_text())
    assert index["patch_order"] == 4 and len(index["patches"]) == len(hyb.patch_models_)
    loaded = HybridPhotoD.load(tmp_path / "models")
    pd.testing.assert_frame_equal(loaded.predict(catalog), hyb.predict(catalog))
    with pytest.raises(FileExistsError):
        hyb.save_patch_models(tmp_path / "models")
    hyb.save_patch_models(tmp_path / "models", overwrite=True)
    # one patch only: the others fall back to the teacher
    key = next(iter(hyb.patch_models_))
    part = HybridPhotoD.load(tmp_path / "models", patches=[key])
    assert list(part.patch_models_) == [key]
    pred = part.predict(catalog)
    in_key = (pred["patch"] == key[1]).to_numpy()
    assert not pred.loc[in_key, "labelled_by_teacher"].any()
    assert pred.loc[~in_key, "labelled_by_teacher"].all()
    # a single patch model is a plain joblib file
    m = joblib.load(tmp_path / "models" / f"patch_o{key[0]}_p{key[1]}.joblib")
    rows = catalog[in_key]
    np.testing.assert_array_equal(m.predict(rows), hyb.patch_models_[key].predict(rows))
    with pytest.raises(FileNotFoundError):
        HybridPhotoD.load(tmp_path / "nothing")


def test_joblib_round_trip_and_clone(fitted, catalog, tmp_path):
    hyb, _ = fitted
    joblib.dump(hyb, tmp_path / "hybrid.joblib")
    again = joblib.load(tmp_path / "hybrid.joblib")
    pd.testing.assert_frame_equal(again.predict(catalog), hyb.predict(catalog))
    c = clone(hyb)
    assert c.get_params()["min_labelled"] == 40 and not hasattr(c, "patch_models_")


# --------------------------------------------------------------------------
# Dask
# --------------------------------------------------------------------------
def test_dask_local_cluster_equals_in_process(teacher, catalog, fitted):
    import dask.dataframe as dd
    import distributed

    hyb_ref, out = fitted
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        hyb = make_hybrid(teacher)
        out_d = hyb.fit_predict_dask(catalog, client=client, npartitions=3,
                                     shuffle_method="tasks")
        pd.testing.assert_frame_equal(out_d, out)
        assert set(hyb.patch_models_) == set(hyb_ref.patch_models_)
        pd.testing.assert_frame_equal(hyb.patch_summary_.drop(columns=[
            "teacher_seconds", "student_fit_seconds", "student_predict_seconds"]),
            hyb_ref.patch_summary_.drop(columns=[
                "teacher_seconds", "student_fit_seconds", "student_predict_seconds"]))
        # a dask DataFrame input, partitioned differently, gives the same numbers
        ddf = dd.from_pandas(catalog, npartitions=4)
        out_dd = make_hybrid(teacher).fit_predict_dask(ddf, client=client)  # P2P shuffle
        pd.testing.assert_frame_equal(out_dd.sort_index(), out.sort_index(), check_names=False,
                                      check_index_type=False)
        # lazy prediction with map_partitions
        pred = hyb.predict_dask(ddf).compute()
        pd.testing.assert_frame_equal(pred.sort_index(), hyb_ref.predict(catalog).sort_index(),
                                      check_names=False, check_index_type=False)


def test_joblib_n_jobs_equals_sequential(teacher, catalog, fitted):
    _, out = fitted
    with joblib.parallel_backend("threading"):  # same Parallel code path, no process start-up
        out_par = make_hybrid(teacher, n_jobs=2).fit_predict(catalog)
    pd.testing.assert_frame_equal(out_par, out)


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------
def test_photod_table1_statistics():
    rng = np.random.default_rng(0)
    n = 20000
    truth = pd.DataFrame({t: rng.normal(0, 1, n) for t in TARGETS})
    bayes = truth + pd.DataFrame({"Mr": rng.normal(0.1, 0.3, n), "FeH": rng.normal(0, 0.2, n),
                                  "Ar": rng.normal(-0.05, 0.04, n)})
    nn = bayes + rng.normal(0.0, 0.1, (n, 3))
    table = photod_table1(nn, bayes, truth).set_index(["comparison", "parameter"])
    assert table.loc[("Bayes vs truth", "Mr"), "median"] == pytest.approx(0.1, abs=0.01)
    assert table.loc[("Bayes vs truth", "Mr"), "robust_std"] == pytest.approx(0.3, rel=0.03)
    assert table.loc[("Bayes vs truth", "Ar"), "median"] == pytest.approx(-0.05, abs=0.002)
    assert table.loc[("NN vs Bayes", "FeH"), "robust_std"] == pytest.approx(0.1, rel=0.03)
    assert table.loc[("NN vs truth", "FeH"), "robust_std"] == pytest.approx(
        math.hypot(0.2, 0.1), rel=0.03)
    assert table.loc[("NN vs Bayes", "Mr"), "paper_robust_std"] == 0.123
    assert len(table) == 9
    only_nn = photod_table1(nn, bayes)
    assert set(only_nn["comparison"]) == {"NN vs Bayes"}
    assert len(PAPER_TABLE1) == 9


def test_simulate_patch_catalog_fills_the_pixels():
    cat = simulate_patch_catalog(600, pixels=(1177, 1176), locus=toy_locus(),
                                 prior_maps=toy_priors(), r_range=(15, 21))
    assert len(cat) == 600
    np.testing.assert_array_equal(healpix_patches(cat["ra"], cat["dec"], 4), cat["patch"])
    assert (cat["patch"].value_counts() == 300).all()


def test_evaluate_photod(teacher):
    cat = simulate_patch_catalog(1200, pixels=(1177, 1178), locus=toy_locus(),
                                 prior_maps=toy_priors(), r_range=(15, 21),
                                 ar_distribution="uniform")
    ev = evaluate_photod(cat, make_hybrid(teacher, min_labelled=60))
    t1 = ev["table1"].set_index(["comparison", "parameter"])
    assert len(t1) == 9
    assert t1.loc[("Bayes vs truth", "Mr"), "n"] == 1200
    assert t1.loc[("NN vs Bayes", "Mr"), "n"] == ev["counts"]["n_test"] == 1200 - 120
    assert ev["counts"]["n_patches"] == 2
    # calibration: z = (truth - NN) / sigma_total on the test set
    cal = ev["calibration"].set_index(["comparison", "parameter"])
    assert len(cal) == 6
    res = ev["result"][~ev["result"]["labelled_by_teacher"]]
    z = (cat.loc[res.index, "FeH_true"] - res["FeH"]) / res["FeH_std"]
    assert cal.loc[("NN vs truth (sigma_total)", "FeH"), "zscore_std"] == pytest.approx(
        np.std(z, ddof=1))
    assert cal.loc[("Bayes vs truth (sigma_B)", "Ar"), "n"] == 1200
    tm = ev["timing"]
    assert tm["teacher_full_measured"] and tm["teacher_stars_measured"] == 1200
    assert tm["speedup"] == pytest.approx(tm["teacher_full_seconds"] / tm["hybrid_seconds"])
    # CPU seconds of this process, bounded by the wall time on one thread
    assert 0 < tm["hybrid_cpu_seconds"] <= 1.05 * tm["hybrid_seconds"] + 0.05
    assert tm["cpu_speedup"] == pytest.approx(tm["teacher_full_cpu_seconds"]
                                              / tm["hybrid_cpu_seconds"])
    # NN vs Bayes on the test set uses the full teacher's values
    rest = ~ev["result"]["labelled_by_teacher"]
    r = ev["result"].loc[rest, "FeH"] - ev["bayes"].loc[rest, "FeH"]
    assert t1.loc[("NN vs Bayes", "FeH"), "median"] == pytest.approx(np.median(r))
    json.dumps(summarise_evaluation(ev))  # JSON-ready
    # teacher on a subset: time extrapolated, Bayes vs truth on the subset only
    ev2 = evaluate_photod(cat, make_hybrid(teacher, min_labelled=60), full_teacher=300,
                          one_core=False)
    assert not ev2["timing"]["teacher_full_measured"]
    assert ev2["timing"]["teacher_full_seconds"] == pytest.approx(
        ev2["timing"]["teacher_ms_per_star"] * 1.2)
    assert ev2["timing"]["teacher_full_cpu_seconds"] > 0
    assert ev2["table1"].set_index(["comparison", "parameter"]).loc[
        ("Bayes vs truth", "Ar"), "n"] == 300
    # no truth (real data): only NN vs Bayes
    ev3 = evaluate_photod(cat.drop(columns=["Mr_true"]), make_hybrid(teacher, min_labelled=60))
    assert set(ev3["table1"]["comparison"]) == {"NN vs Bayes"}


# --------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------
def test_stripe82_sample_runs():
    if find_shared_data("photod") is None:
        pytest.skip("shared photod data not available")
    from skstellar.io.photod import load_stripe82_priors, load_stripe82_sample

    cat = load_stripe82_sample()
    teacher = BayesianPhotoD(prior_maps=load_stripe82_priors(0)).fit()
    hyb = HybridPhotoD(teacher, KNNStudent(), label_fraction=0.1, min_labelled=100,
                       random_state=0)
    out = hyb.fit_predict(cat)
    assert len(out) == len(cat) == 3981
    assert list(hyb.patch_models_) == [(4, 0)]  # the sample is HEALPix order-4 pixel 0
    assert out["labelled_by_teacher"].sum() == math.ceil(0.1 * len(cat))
    assert np.isfinite(out[list(TARGETS)].to_numpy()).all()


# --------------------------------------------------------------------------
# Warm starts across patches
# --------------------------------------------------------------------------
def test_warm_start_first_patch_then_fine_tune(teacher, catalog, tmp_path):
    from skstellar.photod.network import PhotoDNetwork, StudentWeights

    net = PhotoDNetwork(hidden_layer_sizes=(16, 16), activation="gelu", max_epochs=60,
                        secondary_max_epochs=20, n_runs=1, batch_size=64, lr=3e-3)
    short = {"max_epochs": 3, "secondary_max_epochs": 3, "patience": 5}
    hyb = make_hybrid(teacher, student=net, warm_start="first", warm_start_params=short)
    out = hyb.fit_predict(catalog)
    summ = hyb.patch_summary_
    students = summ[summ["mode"] == "student"]
    assert len(students) >= 3
    first = students.loc[students["n_stars"].idxmax()]
    assert hyb.warm_start_patch_ == (first["patch_order"], first["patch"])
    assert not first["warm_start"] and students["warm_start"].sum() == len(students) - 1
    for key, model in hyb.patch_models_.items():
        est = model.estimator
        if key == hyb.warm_start_patch_:
            assert est.init_weights is None and est.max_epochs == 60
        else:  # fine-tuned from the first patch's student with the short schedule
            assert isinstance(est.init_weights, StudentWeights)
            assert est.max_epochs == 3 and est.n_epochs_ <= 3 and est.n_runs == 1
    rest = ~out["labelled_by_teacher"].to_numpy()
    assert np.isfinite(out.loc[rest, [*TARGETS, *(f"{t}_std" for t in TARGETS)]]).all().all()

    # accuracy: the warm 3-epoch students track the teacher better than cold 3-epoch ones
    cold = make_hybrid(teacher, student=clone(net).set_params(**short)).fit_predict(catalog)
    bayes, _ = teacher.predict(catalog, return_std=True)
    others = rest & ~((out["patch"] == hyb.warm_start_patch_[1]).to_numpy())
    err_warm = np.std(out[list(TARGETS)].to_numpy()[others] - bayes[others], axis=0)
    err_cold = np.std(cold[list(TARGETS)].to_numpy()[others] - bayes[others], axis=0)
    assert np.all(err_warm[:2] < 0.8 * err_cold[:2]), (err_warm, err_cold)

    # parameters survive clone; the fitted pipeline survives joblib
    c = clone(hyb)
    assert c.warm_start == "first" and c.warm_start_params == short
    joblib.dump(hyb, tmp_path / "warm.joblib")
    pd.testing.assert_frame_equal(joblib.load(tmp_path / "warm.joblib").predict(catalog),
                                  hyb.predict(catalog))

    # explicit weights (a prior student): every student patch starts warm
    w = hyb.patch_models_[hyb.warm_start_patch_].estimator.export_weights()
    hyb2 = make_hybrid(teacher, student=net, warm_start=w, warm_start_params=short)
    hyb2.fit_predict(catalog)
    s2 = hyb2.patch_summary_
    assert s2.loc[s2["mode"] == "student", "warm_start"].all()
    assert hyb2.warm_start_patch_ is None
    assert isinstance(clone(hyb2).warm_start, StudentWeights)


def test_warm_start_errors(teacher, catalog):
    from skstellar.photod.network import PhotoDNetwork, StudentWeights

    w = StudentWeights({}, None, ("rmag",), TARGETS)
    with pytest.raises(ValueError, match="init_weights"):
        make_hybrid(teacher, warm_start=w).fit_predict(catalog)  # KNN student
    with pytest.raises(ValueError, match="warm_start must be"):
        make_hybrid(teacher, warm_start="neighbour").fit_predict(catalog)
    with pytest.raises(ValueError, match="warm_start_params"):
        make_hybrid(teacher, warm_start="first", warm_start_params=[1]).fit_predict(catalog)
    with pytest.raises(ValueError, match="fit_predict only"):
        make_hybrid(teacher, student=PhotoDNetwork(), warm_start="first").fit_predict_dask(
            catalog)
