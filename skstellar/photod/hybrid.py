"""Hybrid per-sky-patch photo-D: the Bayesian teacher on a few stars, a student on the rest.

Mrakovčić, Ivezić & Palaversa (2025, Sects. 1 and 4.1-4.2) accelerate the
Bayesian photometric-distance method by running it on 5-10 % of the stars of
each ~10 deg^2 sky patch (priors change across the sky, so every patch gets
its own model), training a neural network on those labels and letting the
network estimate M_r, A_r and [Fe/H] for the remaining 90-95 %.
:class:`HybridPhotoD` is that pipeline (its docstring describes the HEALPix
patches, the labelled subset, small patches, persistence and Dask). It
re-exports :class:`PatchStudent` (:mod:`~skstellar.photod.student`; Sect. 2.6:
sigma_total^2 = sigma_NN^2 + sigma_B^2) and :func:`healpix_patches`
(:mod:`~skstellar.photod.patches`). Every patch is processed by the same pure
function (:mod:`~skstellar.photod.patch_job`, :meth:`HybridPhotoD.process_patch`)
seeded from ``random_state`` and the patch id alone, so the Dask run
(:mod:`~skstellar.photod.dask_run`: Dask's own ``dask.dataframe`` shuffled on
the patch column, one task per partition) equals the in-process one whatever
the partitioning.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path

import astropy.units as u
import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from .._validation import missing_column_error, to_frame_like
from ..columns import PHOTOD_INPUT_COLUMNS, PHOTOD_TARGETS
from ..nn.training import seed_from
from ..parameters import COLUMN_NAMES, Interval, Options, Rule, Satisfies, validate_parameters
from . import dask_run
from .patch_job import (
    _ROW,
    _UNIQ,
    _canonical,
    _collect,
    _fit_teacher,
    _patch_groups,
    _PatchJob,
    _process,
    _teacher_components,
    teacher_estimates,
)
from .patches import (
    _MAX_ORDER,
    DEFAULT_PATCH_ORDER,
    _sky_pixels,
    healpix_patches,
    patch_key,
    patch_uniq,
)
from .student import PatchStudent, _as_2d, _fit_kwarg, _predict_has_std, _seed_estimator

__all__ = [
    "DEFAULT_PATCH_ORDER",
    "WARM_START_PARAMS",
    "PHOTOD_FEATURES",
    "TARGETS",
    "HybridPhotoD",
    "PatchStudent",
    "healpix_patches",
]

#: Estimated parameters, in the order of the student's targets (the order of
#: ``BayesianPhotoD.predict`` and ``PhotoDNetwork``): M_r [mag], [Fe/H] [dex], A_r [mag].
TARGETS = PHOTOD_TARGETS
#: The network inputs of Mrakovčić et al. (2025, Sect. 2.3): r, the four colours
#: and their five errors [mag].
PHOTOD_FEATURES = PHOTOD_INPUT_COLUMNS
_SMALL_POLICIES = ("teacher", "raise", "merge")
_EMPTY = "Found a catalogue with 0 stars while a minimum of 1 is required."
#: Student parameters when fine-tuning from a warm start (``warm_start_params=None``):
#: one run of <= 200 epochs (100 for the sigma_B network), early-stopping patience 30.
WARM_START_PARAMS = {"n_runs": 1, "max_epochs": 200, "secondary_max_epochs": 100, "patience": 30}
_OUT_COLUMNS = ("patch_order", "patch", "labelled_by_teacher",
                "Mr", "Mr_std", "FeH", "FeH_std", "Ar", "Ar_std",
                "Mr_sigma_nn", "FeH_sigma_nn", "Ar_sigma_nn",
                "Mr_sigma_b", "FeH_sigma_b", "Ar_sigma_b",
                "DM", "DM_std", "dist_pc")


# -------------------------------------------------------------- The estimator
def _student_features(feature_columns, mag_column, mag_error_column):
    """The student's input columns: ``feature_columns`` or the paper's 10."""
    if feature_columns is None:
        return (mag_column, "ug", "gr", "ri", "iz", mag_error_column,
                "ugErr", "grErr", "riErr", "izErr")
    if isinstance(feature_columns, str):
        return (feature_columns,)
    return tuple(feature_columns)


class HybridPhotoD(BaseEstimator):
    """Hybrid Bayesian + neural photometric distances, one student per HEALPix sky patch.

    The pipeline of Mrakovčić, Ivezić & Palaversa (2025, Sects. 1, 3.1 and
    4.1-4.2): stars are grouped into sky patches of ~10 deg^2; in every
    patch the Bayesian teacher (Palaversa et al. 2025;
    :class:`~skstellar.photod.teacher.BayesianPhotoD`) labels a seeded random
    subset (5-10 %, or a fixed count such as the paper's 10,000), a student
    regressor is trained on those labels (the paper's moments network plus
    its sigma_B network, Sects. 2.3-2.6) and predicts the other stars. The
    result carries posterior means with total uncertainties for every star
    and says which stars the teacher labelled (their values are the
    teacher's).

    Parameters
    ----------
    teacher : estimator, callable or None, default=None
        The Bayesian method. An estimator (fitted or not; an unfitted one is
        cloned and fitted without data once) is used for every patch; a
        callable ``teacher(order, pixel) -> estimator`` builds one per patch
        (e.g. with that patch's prior maps, as the paper does). It must
        offer ``predict_posterior`` (columns ``Mr, Mr_std, Ar, Ar_std, FeH,
        FeH_std`` and optionally ``DM, DM_std``) or ``predict(X,
        return_std=True)``. None uses ``BayesianPhotoD()``.
    student : regressor or None, default=None
        Cloned for every patch and trained on the teacher-labelled stars:
        ``fit(X, y)`` with X the ``feature_columns`` (DataFrame) and y the
        teacher means of (M_r, [Fe/H], A_r) as an (n, 3) array (the order of
        ``BayesianPhotoD.predict`` and ``PhotoDNetwork``). When its
        ``fit`` accepts ``sigma_b`` the teacher's posterior stds (n, 3) are
        passed too; when its ``predict`` accepts ``return_std`` it is used.
        Any ``random_state`` parameter (also inside a Pipeline) is set from
        this estimator's ``random_state`` and the patch. None uses
        ``skstellar.photod.network.PhotoDNetwork()``. See
        :class:`PatchStudent` for how sigma_total is formed.
    sigma_student : regressor or None, default=None
        Model of log sigma_B, fitted per patch only when the student cannot
        take ``sigma_b`` (Sect. 2.6's secondary network); None clones
        ``student``.
    patch_order : int, default=4
        HEALPix order of the patches (nested; nside = 2^order). Order 4
        gives 13.4 deg^2 pixels, the closest to the paper's ~10 deg^2 and
        to the LSST camera's field of view; order 5 gives 3.4 deg^2.
    label_fraction : float, default=0.1
        Fraction of each patch labelled by the teacher (the paper: 5-10 %),
        rounded up. Ignored when ``label_count`` is set.
    label_count : int or None, default=None
        Labelled stars per patch (the paper: 10,000 of 440,000).
    min_labelled : int, default=1000
        Fewest labelled stars a student is trained on; a patch whose
        fraction asks for fewer gets this many. The paper finds that
        ~10,000 are needed for full accuracy (Sect. 3.1, Fig. 1).
    small_patch : {"teacher", "raise", "merge"}, default="teacher"
        A patch is *small* when it has no more stars than it needs labelled
        (``n <= max(label count, min_labelled)``), so no student can be
        trained for it. ``"teacher"``: the teacher labels all its stars
        (exact, only slower; ``patch_summary_["mode"] == "teacher"``).
        ``"raise"``: a ValueError naming the patch, before any work.
        ``"merge"``: small patches are merged with their small siblings into
        the parent HEALPix pixel (order - 1, and up again while still small;
        a merged patch is the part of the parent not covered by populated
        children), falling back to ``"teacher"`` at order 0.
    feature_columns : sequence of str or None, default=None
        Student inputs; None uses the paper's 10: ``rmag ug gr ri iz rErr
        ugErr grErr riErr izErr`` [mag].
    mag_column, mag_error_column : str, default="rmag", "rErr"
        Apparent r [mag] and its error, used for the distance modulus of
        student-estimated stars.
    ra_column, dec_column : str, default="ra", "dec"
        ICRS sky position [deg].
    random_state : int, RandomState or None, default=None
        Seeds the labelled subset and the student of every patch through
        ``numpy.random.SeedSequence([seed, order, pixel])``: the same seed
        gives the same labels and models whatever the partitioning or the
        number of workers.
    n_jobs : int or None, default=None
        Patches processed in parallel by :class:`joblib.Parallel` in
        :meth:`fit_predict` (None/1: sequential). For clusters use
        :meth:`fit_predict_dask`.
    verbose : int, default=0
        > 0 prints one line per patch.
    warm_start : None, "first" or StudentWeights, default=None
        Warm starts across patches (an option; the paper trains every
        patch's network from scratch). None: every student starts fresh.
        A :class:`~skstellar.photod.network.StudentWeights` (a sky-wide
        prior or a neighbouring patch's student, from
        ``PhotoDNetwork.export_weights()``): every student starts from it
        and fine-tunes with ``warm_start_params``. ``"first"``
        (:meth:`fit_predict` only): the most populated patch trains from
        scratch first and every other patch starts from its student. The
        student must take ``init_weights`` (``PhotoDNetwork`` does).
    warm_start_params : dict or None, default=None
        Student parameters for fine-tuning from a warm start; None uses
        :data:`WARM_START_PARAMS` (one run of at most 200 epochs, 100 for
        the sigma_B network, early-stopping patience 30).

    Attributes
    ----------
    teacher_ : estimator or None
        The fitted teacher shared by all patches (None for a per-patch
        factory).
    patch_models_ : dict
        ``(order, pixel) -> PatchStudent`` for every patch that has a
        student.
    patch_summary_ : pandas.DataFrame
        One row per patch: ``patch_order, patch, n_stars, n_labelled,
        n_student, mode`` ("student" or "teacher"), ``warm_start`` (whether
        the student started from warm-start weights) and the seconds spent
        in the teacher, the student's fit and its prediction.
    pixel_to_patch_ : dict
        HEALPix pixel at ``patch_order`` -> its ``(order, pixel)`` patch
        (differs from ``(patch_order, pixel)`` only for merged patches).
    feature_columns_ : tuple of str
        Student inputs used.
    fit_seconds_ : float
        Wall-clock time of the last fit [s].
    warm_start_patch_ : (int, int) or None
        The patch whose student started the others with
        ``warm_start="first"`` (None otherwise).

    Notes
    -----
    Output of :meth:`fit_predict` (index and row order of the input):
    ``patch_order``, ``patch`` (nested pixel), ``labelled_by_teacher``,
    ``Mr``, ``Mr_std`` [mag], ``FeH``, ``FeH_std`` [dex], ``Ar``, ``Ar_std``
    [mag], the parts ``<name>_sigma_nn`` and ``<name>_sigma_b`` of each std,
    ``DM``, ``DM_std`` [mag] and ``dist_pc`` [pc]. For teacher-labelled stars
    the values are the teacher's posterior means and stds (sigma_NN = 0,
    sigma_B = the posterior std); for the others the student's means and
    sigma_total = sqrt(sigma_NN^2 + sigma_B^2) (eq. 3; parts a student does
    not expose are NaN). DM = r - M_r - A_r; for student stars
    DM_std^2 = sigma_Mr^2 + sigma_Ar^2 + sigma_r^2 (no M_r-A_r covariance:
    the student does not predict it; the teacher's DM_std includes it).

    The random subset is the paper's choice "carefully selected to represent
    the diverse stellar populations" (Sect. 4.1) in its simplest form: a
    uniform draw, representative in expectation. It is drawn with a patch's
    stars sorted by index label (ties: input order), so neither the row
    order of the catalogue nor its Dask partitioning changes it. Stars the
    teacher cannot fit (``on_invalid="nan"``) stay labelled with NaN and
    are left out of the student's training set.

    Why not ``parametrize_with_checks``: the estimator reads named survey
    columns (sky position, photometry) and makes its own labels with the
    teacher, so the generic random-array checks do not apply; clone,
    get_params and joblib round trips are tested.

    References
    ----------
    Mrakovčić K., Ivezić Ž., Palaversa L. 2025, "Accelerating Stellar
    Photometric Distance Estimates with Neural Networks".
    Palaversa L. et al. 2025, AJ 169, 119.
    Górski K. M. et al. 2005, ApJ 622, 759 (HEALPix).

    Examples
    --------
    >>> from skstellar.datasets.photod import make_lsst_catalog
    >>> from skstellar.photod.hybrid import HybridPhotoD
    >>> cat = make_lsst_catalog(50_000, random_state=0)  # doctest: +SKIP
    >>> out = HybridPhotoD(random_state=0).fit_predict(cat)  # doctest: +SKIP
    >>> out[["Mr", "Mr_std", "labelled_by_teacher"]].head()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        teacher=None,
        student=None,
        sigma_student=None,
        patch_order=DEFAULT_PATCH_ORDER,
        label_fraction=0.1,
        label_count=None,
        min_labelled=1000,
        small_patch="teacher",
        feature_columns=None,
        mag_column="rmag",
        mag_error_column="rErr",
        ra_column="ra",
        dec_column="dec",
        random_state=None,
        n_jobs=None,
        verbose=0,
        warm_start=None,
        warm_start_params=None,
    ):
        self.teacher = teacher
        self.student = student
        self.sigma_student = sigma_student
        self.patch_order = patch_order
        self.label_fraction = label_fraction
        self.label_count = label_count
        self.min_labelled = min_labelled
        self.small_patch = small_patch
        self.feature_columns = feature_columns
        self.mag_column = mag_column
        self.mag_error_column = mag_error_column
        self.ra_column = ra_column
        self.dec_column = dec_column
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.warm_start = warm_start
        self.warm_start_params = warm_start_params

    # -- parameters ------------------------------------------------------------
    #: Allowed hyperparameter values (checked by ``fit``, ``fit_predict`` and ``predict``).
    _parameter_constraints = {
        "teacher": ["no_validation"],  # an estimator or a factory: used (and checked) per patch
        "student": ["no_validation"],  # a regressor: cloned per patch
        "sigma_student": ["no_validation"],
        "patch_order": [Interval("int", 0, _MAX_ORDER)],
        "label_fraction": [None, Interval("real", 0, 1, closed="neither")],
        "label_count": [None, Interval("int", 2, None)],
        "min_labelled": [Interval("int", 2, None)],
        "small_patch": [Options(_SMALL_POLICIES)],
        "feature_columns": [None, str, COLUMN_NAMES],
        "mag_column": [str],
        "mag_error_column": [str],
        "ra_column": [str],
        "dec_column": [str],
        "random_state": ["random_state"],
        "n_jobs": [None, Interval("int")],
        "verbose": [Interval("int", 0, None), "boolean"],
        "warm_start": [None, Options(("first",)),
                       Satisfies(lambda ws: type(ws).__name__ == "StudentWeights",
                                 "a StudentWeights (from PhotoDNetwork.export_weights())")],
        "warm_start_params": [None, Mapping],
    }
    _parameter_rules = (
        Rule(("label_fraction", "label_count"),
             lambda label_fraction, label_count: label_count is not None
             or label_fraction is not None,
             "label_fraction must be a number in (0, 1) when label_count is None (the paper "
             "labels 5-10 % of each patch)"),
        Rule(("feature_columns", "mag_column", "mag_error_column"),
             lambda **names: len(set(_student_features(**names)))
             == len(_student_features(**names)),
             "the student's feature columns must be distinct"),
    )

    def _features(self):
        return _student_features(self.feature_columns, self.mag_column, self.mag_error_column)

    def _n_labelled(self, n):
        """Labelled stars a patch of n stars needs (small when n <= this)."""
        want = int(self.label_count) if self.label_count is not None \
            else int(math.ceil(float(self.label_fraction) * n - 1e-9))
        return max(want, int(self.min_labelled))

    def _small_patch_error(self, order, pixel, n):
        need = self._n_labelled(n)
        rule = (f"label_count={self.label_count}" if self.label_count is not None
                else f"label_fraction={self.label_fraction}")
        return ValueError(
            f"Sky patch (HEALPix order {order}, pixel {pixel}) has {n} star(s) but needs "
            f"{need} labelled by the teacher ({rule}, min_labelled={self.min_labelled}) plus "
            "at least one left for the student. Use small_patch='teacher' (label all its "
            "stars with the teacher) or 'merge', a larger patch (smaller patch_order), or a "
            "smaller min_labelled / label_count."
        )

    # -- input -----------------------------------------------------------------
    @staticmethod
    def _as_frame(catalog):
        if isinstance(catalog, pd.DataFrame):
            return catalog
        if hasattr(catalog, "colnames") or isinstance(catalog, Mapping):
            # astropy Table / QTable or a dict of columns: angles -> deg, other Quantities -> value
            data, _, _ = to_frame_like(catalog)
            out = {}
            for name, col in data.items():
                if isinstance(col, u.Quantity):
                    angle = col.unit.physical_type == "angle"
                    col = col.to_value(u.deg) if angle else np.asarray(col.value)
                out[name] = col
            return pd.DataFrame(out)
        raise ValueError(
            "The catalogue must be a pandas DataFrame, an astropy Table or a mapping of "
            f"columns (sky positions and photometry), got {type(catalog).__name__}."
        )

    def _check_columns(self, columns):
        columns = list(columns)
        sky = "the sky position (ICRS {}, deg) that assigns each star to a patch"
        need = [(self.ra_column, sky.format("right ascension")),
                (self.dec_column, sky.format("declination")),
                *((c, "the student's inputs") for c in self._features())]
        for col, purpose in need:
            if col not in columns:
                raise missing_column_error(col, purpose, columns)

    def _base_pixels(self, frame):
        return _sky_pixels(frame[self.ra_column].to_numpy(), frame[self.dec_column].to_numpy(),
                           int(self.patch_order), self.ra_column, self.dec_column, frame.index)

    def _plan(self, pixels, counts):
        """Map each populated pixel (at patch_order) to its (order, pixel) patch."""
        order = int(self.patch_order)
        tab = pd.DataFrame({"base": np.asarray(pixels, dtype=np.int64),
                            "n": np.asarray(counts, dtype=np.int64),
                            "order": order, "pixel": np.asarray(pixels, dtype=np.int64)})
        small_fn = np.vectorize(lambda n: n <= self._n_labelled(int(n)), otypes=[bool])
        if self.small_patch == "merge":
            for o in range(order, 0, -1):
                tot = tab.groupby(["order", "pixel"])["n"].transform("sum").to_numpy()
                merge = (tab["order"].to_numpy() == o) & small_fn(tot)
                if not merge.any():
                    break
                tab.loc[merge, "pixel"] = tab.loc[merge, "pixel"] // 4
                tab.loc[merge, "order"] = o - 1
        elif self.small_patch == "raise":
            small = small_fn(tab["n"].to_numpy())
            if small.any():
                i = int(np.flatnonzero(small)[0])
                raise self._small_patch_error(order, int(tab["pixel"].iloc[i]),
                                              int(tab["n"].iloc[i]))
        return {int(b): (int(o), int(p)) for b, o, p in
                zip(tab["base"], tab["order"], tab["pixel"])}

    def _patch_uniq(self, base_pixels, mapping):
        """NUNIQ patch id per star (unknown pixels keep their own pixel at patch_order)."""
        uniq_of = {b: int(patch_uniq(o, p)) for b, (o, p) in mapping.items()}
        mapped = pd.Series(base_pixels).map(uniq_of)
        own = patch_uniq(int(self.patch_order), base_pixels)
        return np.where(mapped.isna().to_numpy(), own, mapped.fillna(0).to_numpy(dtype=np.int64))

    # -- teacher / student -----------------------------------------------------
    def _prepare_teacher(self):
        if self.teacher is None:
            from .teacher import BayesianPhotoD

            return BayesianPhotoD().fit()
        if callable(self.teacher) and not hasattr(self.teacher, "get_params"):
            return None  # per-patch factory
        return _fit_teacher(self.teacher)

    def _plain(self):
        """An unfitted copy holding the parameters only (small to ship to workers)."""
        return type(self)(**self.get_params(deep=False))

    def _job(self, teacher=None, base_seed=None, warm_start=None):
        teacher = self._prepare_teacher() if teacher is None else teacher
        hybrid = self._plain()
        if warm_start is not None:
            hybrid.warm_start = warm_start
        if teacher is not None:
            hybrid.teacher = None  # the fitted one travels in the job, once
        base_seed = seed_from(self.random_state) if base_seed is None else base_seed
        return _PatchJob(hybrid, teacher, base_seed)

    def _make_student(self, which="student"):
        est = getattr(self, which)
        if est is None:
            if which == "sigma_student" and self.student is not None:
                return clone(self.student)
            from .network import PhotoDNetwork  # lazy: pulls in torch

            return PhotoDNetwork()
        return clone(est)

    def _fit_student(self, frame, y, sigma_b, seed, patch):
        """Train a PatchStudent on teacher labels y / sigma_b (n, 3)."""
        feats = self._features()
        ok = np.all(np.isfinite(y), axis=1) & np.all(np.isfinite(sigma_b), axis=1) \
            & np.all(sigma_b > 0, axis=1)
        if ok.sum() < 2:
            raise ValueError(
                f"Sky patch (HEALPix order {patch[0]}, pixel {patch[1]}): the teacher returned "
                f"finite estimates for only {int(ok.sum())} of {len(y)} labelled stars; a "
                "student needs at least 2. Check the photometry of this patch."
            )
        frame, y, sigma_b = frame[ok], y[ok], sigma_b[ok]
        X = frame.loc[:, list(feats)].astype(np.float64)
        student = _seed_estimator(self._make_student("student"), seed)
        warm = self._warm_weights()
        if warm is not None:
            if "init_weights" not in student.get_params(deep=False):
                raise ValueError(
                    f"warm_start needs a student with an init_weights parameter (such as "
                    f"PhotoDNetwork); {type(student).__name__} has none."
                )
            params = WARM_START_PARAMS if self.warm_start_params is None \
                else dict(self.warm_start_params)
            student.set_params(init_weights=warm, **params)
        sig_kw = _fit_kwarg(student, "sigma_b")
        has_std = _predict_has_std(student)
        if sig_kw is not None and has_std:
            student.fit(X, y, **{sig_kw: sigma_b})
            return PatchStudent(student, feats, "student", n_train=len(X))
        sigma_model = _seed_estimator(self._make_student("sigma_student"), seed + 1)
        sigma_model.fit(X, np.log(sigma_b))
        if has_std:  # (so the student takes no sigma_b)
            student.fit(X, y)
            return PatchStudent(student, feats, "student+sigma_model", sigma_model=sigma_model,
                                n_train=len(X))
        # no std from the student: sigma_NN from a held-out quarter (the paper's 75/25 split)
        rng = np.random.default_rng(seed)
        n = len(X)
        n_val = max(1, int(round(0.25 * n))) if n >= 4 else 0
        val = np.zeros(n, dtype=bool)
        if n_val:
            val[rng.choice(n, n_val, replace=False)] = True
        train = ~val
        student.fit(X[train], y[train], **({} if sig_kw is None else {sig_kw: sigma_b[train]}))
        if n_val:
            resid = _as_2d(student.predict(X[val]), n_val, "prediction") - y[val]
            med = np.median(resid, axis=0)
            sigma_nn = 1.4826 * np.median(np.abs(resid - med), axis=0)
        else:
            sigma_nn = np.zeros(len(TARGETS))
        return PatchStudent(student, feats, "holdout+sigma_model", sigma_model=sigma_model,
                            sigma_nn=sigma_nn, n_train=int(train.sum()))

    def _warm_weights(self):
        """The StudentWeights students start from, or None (cold start)."""
        ws = self.warm_start
        return None if ws is None or isinstance(ws, str) else ws

    # -- output ----------------------------------------------------------------
    def _empty_result(self, with_row=False):
        cols = {c: pd.Series(dtype=np.int64 if c in ("patch_order", "patch") else
                             (bool if c == "labelled_by_teacher" else np.float64))
                for c in _OUT_COLUMNS}
        if with_row:
            cols[_ROW] = pd.Series(dtype=np.int64)
        return pd.DataFrame(cols)

    def _result_frame(self, frame, order, pixel, labelled, comp, dm, dm_std):
        """Output table of one patch; dm/dm_std are the teacher's (NaN where not known)."""
        n = len(frame)
        mean, std = comp["mean"], comp["total_std"]
        r = frame[self.mag_column].to_numpy(np.float64)
        r_err = frame[self.mag_error_column].to_numpy(np.float64) \
            if self.mag_error_column in frame else np.zeros(n)
        i_mr, i_ar = TARGETS.index("Mr"), TARGETS.index("Ar")
        fill = ~np.isfinite(dm)
        dm = np.where(fill, r - mean[:, i_mr] - mean[:, i_ar], dm)
        dm_std = np.where(fill | ~np.isfinite(dm_std),
                          np.sqrt(std[:, i_mr] ** 2 + std[:, i_ar] ** 2 + r_err**2), dm_std)
        out = {"patch_order": np.full(n, order, dtype=np.int64),
               "patch": np.full(n, pixel, dtype=np.int64),
               "labelled_by_teacher": np.asarray(labelled, dtype=bool)}
        for k, t in enumerate(TARGETS):  # (the columns are put in _OUT_COLUMNS order below)
            out[t] = mean[:, k]
            out[f"{t}_std"] = std[:, k]
            out[f"{t}_sigma_nn"] = comp["sigma_nn"][:, k]
            out[f"{t}_sigma_b"] = comp["sigma_b"][:, k]
        out["DM"] = dm
        out["DM_std"] = dm_std
        out["dist_pc"] = 10.0 ** (0.2 * dm + 1.0)
        return pd.DataFrame(out, index=frame.index)[list(_OUT_COLUMNS)]

    # -- public: one patch -----------------------------------------------------
    def process_patch(self, patch_frame, patch=None):
        """Run the hybrid method on the stars of one sky patch.

        The unit of work of :meth:`fit_predict` and :meth:`fit_predict_dask`:
        a pure function of the patch's stars, the patch id and the
        parameters (subset drawn as in the class Notes), so with an int
        ``random_state`` the same stars give the same numbers in all three.

        Parameters
        ----------
        patch_frame : pandas.DataFrame
            The stars of one patch, with the teacher's columns and
            ``feature_columns``.
        patch : (int, int) or None, default=None
            ``(order, pixel)`` of the patch; None computes it from the sky
            positions at ``patch_order`` (all stars must share one pixel).

        Returns
        -------
        result : pandas.DataFrame
            The output columns of :meth:`fit_predict` for these stars.
        model : PatchStudent or None
            The fitted student (None for a patch labelled by the teacher
            only).
        summary : dict
            Counts and timings (see ``patch_summary_``).

        Raises
        ------
        ValueError
            Stars from several patches (with ``patch=None``), a missing
            column, or a small patch with ``small_patch="raise"``.
        """
        frame = self._read_catalog(patch_frame, empty="patch_frame has no stars.")
        if patch is None:
            pix = np.unique(self._base_pixels(frame))
            if pix.size != 1:
                raise ValueError(
                    f"patch_frame holds stars of {pix.size} HEALPix pixels at order "
                    f"{self.patch_order} ({pix[:5].tolist()}...); pass one patch, or its "
                    "(order, pixel) as patch."
                )
            patch = (int(self.patch_order), int(pix[0]))
        job = self._job(teacher=getattr(self, "teacher_", None))
        work = _canonical(frame.assign(**{_ROW: np.arange(len(frame))}))
        result, model, summary = _process(job, work, int(patch[0]), int(patch[1]))
        result = result.iloc[np.argsort(work[_ROW].to_numpy())]
        return result, model, summary

    # -- public: whole catalogue ---------------------------------------------------
    def _read_catalog(self, catalog, empty=_EMPTY):
        """Validate the parameters; the catalogue as a DataFrame with its columns checked."""
        validate_parameters(self)
        frame = self._as_frame(catalog)
        self._check_columns(frame.columns)
        if len(frame) == 0:
            raise ValueError(empty)
        return frame

    def _prepare(self, catalog):
        frame = self._read_catalog(catalog)
        base = self._base_pixels(frame)
        mapping = self._plan(*np.unique(base, return_counts=True))
        uniq = self._patch_uniq(base, mapping)
        return frame, frame.assign(**{_UNIQ: uniq, _ROW: np.arange(len(frame))}), mapping

    def _store(self, job, mapping, models, summaries, seconds):
        self.teacher_ = job.teacher
        self.feature_columns_ = self._features()
        self.pixel_to_patch_ = mapping
        self.patch_models_ = dict(sorted(models.items()))
        summ = pd.DataFrame(summaries)
        if len(summ):
            summ = summ.sort_values(["patch_order", "patch"]).reset_index(drop=True)
        self.patch_summary_ = summ
        self.fit_seconds_ = float(seconds)

    def _log(self, s):
        if self.verbose:
            print(f"[HybridPhotoD] patch (order {s['patch_order']}, pixel {s['patch']}): "
                  f"{s['n_stars']} stars, {s['n_labelled']} by the teacher "
                  f"({s['teacher_seconds']:.1f} s), {s['n_student']} by the student "
                  f"(fit {s['student_fit_seconds']:.1f} s) [{s['mode']}]", flush=True)

    def fit_predict(self, catalog, y=None):
        """Label, train and predict every patch of a catalogue (in this process).

        Parameters
        ----------
        catalog : pandas.DataFrame, astropy Table or mapping of columns
            Stars with ``ra_column``, ``dec_column`` [deg], the teacher's
            columns (for ``BayesianPhotoD``: ``rmag ug gr ri iz`` and their
            errors, ``Ar_max``) and ``feature_columns``.
        y : ignored
            No labels: the teacher makes them.

        Returns
        -------
        pandas.DataFrame
            One row per input star, same index and order; columns described
            in the class Notes.

        Raises
        ------
        ValueError
            Missing column, NaN/inf or out-of-range sky positions, invalid
            parameters, a small patch with ``small_patch="raise"``, or the
            teacher's own input errors.
        """
        t_start = time.perf_counter()
        frame, work, mapping = self._prepare(catalog)
        job = self._job()
        groups = _patch_groups(work)

        outs = [None] * len(groups)
        todo = list(range(len(groups)))
        self.warm_start_patch_ = None
        if isinstance(self.warm_start, str) and self.warm_start == "first" and groups:
            # the most populated patch trains from scratch; the others start from its student
            first = max(todo, key=lambda i: (len(groups[i][1]), -groups[i][0]))
            k, g = groups[first]
            outs[first] = _process(job, g, *patch_key(k))
            self._log(outs[first][2])
            todo.remove(first)
            model = outs[first][1]
            if model is not None and hasattr(model.estimator, "export_weights"):
                job = self._job(teacher=job.teacher, base_seed=job.base_seed,
                                warm_start=model.estimator.export_weights())
                self.warm_start_patch_ = patch_key(k)
        if self.n_jobs in (None, 1):  # lazily: each patch is logged when it is done
            done = (_process(job, groups[i][1], *patch_key(groups[i][0])) for i in todo)
        else:
            done = joblib.Parallel(n_jobs=self.n_jobs)(joblib.delayed(_process)(
                job, groups[i][1], *patch_key(groups[i][0])) for i in todo)
        for i, o in zip(todo, done):
            outs[i] = o
            self._log(o[2])
        frames, models, summaries = _collect(groups, outs)
        result = self._assemble(frames, frame.index)
        self._store(job, mapping, models, summaries, time.perf_counter() - t_start)
        return result

    def _assemble(self, frames, index):
        out = pd.concat(frames).sort_values(_ROW, kind="stable")
        out = out.drop(columns=_ROW)
        out.index = index
        return out[list(_OUT_COLUMNS)]

    def fit(self, catalog, y=None):
        """Run :meth:`fit_predict` and keep only the fitted per-patch models.

        Parameters
        ----------
        catalog : pandas.DataFrame, astropy Table or mapping
            See :meth:`fit_predict`.
        y : ignored

        Returns
        -------
        self : HybridPhotoD
        """
        self.fit_predict(catalog)
        return self

    def predict(self, catalog, return_std=False):
        """Estimates for (new) stars from the fitted per-patch students.

        Parameters
        ----------
        catalog : pandas.DataFrame, astropy Table or mapping
            Stars with sky positions and ``feature_columns`` (and the
            teacher's columns when some stars fall in patches without a
            student).
        return_std : bool, default=False
            Return ``(mean, std)`` arrays instead of the table.

        Returns
        -------
        pandas.DataFrame or (ndarray, ndarray)
            The table of :meth:`fit_predict` (same index), every star
            estimated by its patch's student; stars in patches without a
            student (teacher-only patches, or sky the fit never saw) are
            estimated by the teacher and flagged ``labelled_by_teacher``.
            With ``return_std=True``: means and stds of shape (n, 3) in the
            order ``("Mr", "FeH", "Ar")``.
        """
        check_is_fitted(self, "patch_models_")
        frame = self._read_catalog(catalog)
        uniq = self._patch_uniq(self._base_pixels(frame), self.pixel_to_patch_)
        job = None
        frames = []
        work = frame.assign(**{_UNIQ: uniq, _ROW: np.arange(len(frame))})
        for k, g in work.groupby(_UNIQ, sort=True):
            order, pixel = patch_key(k)
            model = self.patch_models_.get((order, pixel))
            n = len(g)
            nan = np.full(n, np.nan)
            if model is not None:
                res = self._result_frame(g, order, pixel, np.zeros(n, bool),
                                         model.predict_components(g), nan, nan)
            else:
                if job is None:
                    job = self._job(teacher=self.teacher_)
                m, s, dm, dms = teacher_estimates(job.teacher_for(order, pixel), g)
                res = self._result_frame(g, order, pixel, np.ones(n, bool),
                                         _teacher_components(m, s),
                                         nan if dm is None else dm, nan if dms is None else dms)
            res[_ROW] = g[_ROW].to_numpy()
            frames.append(res)
        out = self._assemble(frames, frame.index)
        if return_std:
            return (out[list(TARGETS)].to_numpy(), out[[f"{t}_std" for t in TARGETS]].to_numpy())
        return out

    # -- Dask --------------------------------------------------------------------
    def fit_predict_dask(self, catalog, client=None, npartitions=None, shuffle_method=None):
        """:meth:`fit_predict` on Dask: one task per partition of a patch-shuffled DataFrame.

        The catalogue becomes a ``dask.dataframe`` (``from_pandas`` for a
        pandas input), gets the patch id of every star, is shuffled on it
        (``DataFrame.shuffle``: every patch lands whole in one partition)
        and each partition is processed by :meth:`process_patch`'s function
        in a Dask task (``to_delayed``); the tasks run on ``client`` (a
        ``distributed.Client``, e.g. of a ``LocalCluster``) or on Dask's
        default scheduler. The fitted students come back as task results.
        Seeds depend on ``random_state`` and the patch only, so the result
        equals :meth:`fit_predict`'s.

        Parameters
        ----------
        catalog : pandas.DataFrame or dask.dataframe.DataFrame
            As for :meth:`fit_predict`. A pandas catalogue travels inside
            the task graph (Dask warns about large graphs): read big ones
            with ``dask.dataframe.read_parquet`` (or take the Dask frame of
            an LSDB/HATS catalogue) and pass that. A Dask input is read
            three times (patch counts, partition lengths, the work); the
            output follows its partition order.
        client : distributed.Client or None, default=None
            Where to compute; None uses Dask's current default (the active
            Client if any).
        npartitions : int or None, default=None
            Partitions after the shuffle; None uses the number of patches
            (capped at 256).
        shuffle_method : {"p2p", "tasks", "disk"} or None, default=None
            Dask's shuffle algorithm; None lets Dask choose (P2P on a
            distributed cluster). ``"tasks"`` has less overhead for small
            catalogues.

        Returns
        -------
        pandas.DataFrame
            As :meth:`fit_predict` (index of the input; for a Dask input,
            its index in partition order).
        """
        return dask_run.fit_predict_dask(self, catalog, client=client, npartitions=npartitions,
                                         shuffle_method=shuffle_method)

    def predict_dask(self, ddf):
        """Lazy :meth:`predict` over a ``dask.dataframe`` with ``map_partitions``.

        Parameters
        ----------
        ddf : dask.dataframe.DataFrame
            Stars with sky positions and ``feature_columns``.

        Returns
        -------
        dask.dataframe.DataFrame
            Partition-wise :meth:`predict` tables (same index); compute it
            or write it out (``to_parquet``) without gathering it.
        """
        return dask_run.predict_dask(self, ddf)

    # -- persistence -------------------------------------------------------------
    def save_patch_models(self, folder, overwrite=False):
        """Write the fitted per-patch students with joblib, one file per patch.

        Parameters
        ----------
        folder : str or path-like
            Created if needed. Gets ``patch_o<order>_p<pixel>.joblib`` per
            student, ``hybrid.joblib`` (this estimator without its students:
            parameters, teacher, patch map, summary) and ``index.json``.
        overwrite : bool, default=False
            Replace existing files; otherwise an existing file raises.

        Returns
        -------
        list of pathlib.Path
            The files written.

        Raises
        ------
        FileExistsError
            When a file exists and ``overwrite`` is False.
        """
        check_is_fitted(self, "patch_models_")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = {key: folder / f"patch_o{key[0]}_p{key[1]}.joblib" for key in self.patch_models_}
        targets = [*files.values(), folder / "hybrid.joblib", folder / "index.json"]
        if not overwrite:
            for f in targets:
                if f.exists():
                    raise FileExistsError(f"{f} exists; pass overwrite=True to replace it.")
        for key, path in files.items():
            joblib.dump(self.patch_models_[key], path)
        shell = self.__class__.__new__(self.__class__)
        shell.__dict__.update(self.__dict__)
        shell.patch_models_ = {}
        joblib.dump(shell, folder / "hybrid.joblib")
        index = {"patches": [{"order": k[0], "pixel": k[1], "file": p.name}
                             for k, p in files.items()],
                 "patch_order": int(self.patch_order),
                 "feature_columns": list(self.feature_columns_), "targets": list(TARGETS)}
        (folder / "index.json").write_text(json.dumps(index, indent=2))
        return targets  # the files written

    @classmethod
    def load(cls, folder, patches=None):
        """Rebuild a fitted HybridPhotoD from :meth:`save_patch_models` output.

        Parameters
        ----------
        folder : str or path-like
            Folder written by :meth:`save_patch_models`.
        patches : iterable of (int, int) or None, default=None
            Load only these ``(order, pixel)`` students (e.g. the sky being
            processed); None loads all.

        Returns
        -------
        HybridPhotoD
            Predicts like the saved one (stars of patches not loaded fall
            back to the teacher).

        Raises
        ------
        FileNotFoundError
            When the folder lacks ``hybrid.joblib`` or ``index.json``.
        """
        folder = Path(folder)
        for name in ("hybrid.joblib", "index.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name} not found: not a folder written by "
                                        "HybridPhotoD.save_patch_models.")
        est = joblib.load(folder / "hybrid.joblib")
        if not isinstance(est, cls):
            raise ValueError(f"{folder / 'hybrid.joblib'} holds a {type(est).__name__}, "
                             f"not a {cls.__name__}.")
        index = json.loads((folder / "index.json").read_text())
        wanted = None if patches is None else {(int(o), int(p)) for o, p in patches}
        files = {(int(i["order"]), int(i["pixel"])): i["file"] for i in index["patches"]}
        est.patch_models_ = {key: joblib.load(folder / file) for key, file in files.items()
                             if wanted is None or key in wanted}
        return est
