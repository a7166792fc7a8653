"""The per-patch work of the hybrid photo-D, the same in-process and on Dask workers.

:class:`_PatchJob` holds what a worker needs (the estimator's parameters, the
teacher, the base seed); :func:`_process` labels a seeded subset of one
patch's stars with the teacher, fits a student on them and estimates the
rest; :func:`_run_partition` does so for every patch of one Dask partition.
Random choices are seeded from ``random_state`` and the patch id alone.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from ..columns import PHOTOD_TARGETS as TARGETS
from ..nn.training import SEED_MODULUS
from .patches import patch_key

__all__ = ["teacher_estimates"]

#: Column holding a star's input position while a catalogue is processed.
_ROW = "_hybrid_row"
#: Column holding a star's patch (NUNIQ id) while a catalogue is processed.
_UNIQ = "_hybrid_patch"


class _PatchJob:
    """Everything :meth:`HybridPhotoD.process_patch` needs, small enough to ship to workers."""

    def __init__(self, hybrid, teacher, base_seed):
        self.hybrid = hybrid  # an unfitted clone: parameters only
        self.teacher = teacher  # fitted estimator, or None for a per-patch factory
        self.base_seed = int(base_seed)

    def seeds(self, order, pixel):
        """(selection seed, student seed) of one patch, from random_state and the patch only."""
        ss = np.random.SeedSequence([self.base_seed, int(order), int(pixel)])
        a, b = ss.generate_state(2)
        return int(a), int(b) % SEED_MODULUS

    def teacher_for(self, order, pixel):
        if self.teacher is not None:
            return self.teacher
        return _fit_teacher(self.hybrid.teacher(int(order), int(pixel)))


def _fit_teacher(teacher):
    if not hasattr(teacher, "predict"):
        raise ValueError(
            f"The teacher must be an estimator with predict_posterior or predict(X, "
            f"return_std=True), got {type(teacher).__name__}."
        )
    try:
        check_is_fitted(teacher)
        return teacher
    except Exception:  # noqa: BLE001 - not fitted (NotFittedError or no fitted attributes)
        return clone(teacher).fit()


def teacher_estimates(teacher, frame):
    """Teacher means and stds (n, 3) in TARGETS order, plus DM and its std when provided.

    Parameters
    ----------
    teacher : fitted estimator
        Has ``predict_posterior(frame)`` or ``predict(frame, return_std=True)``.
    frame : pandas.DataFrame
        The stars to label.

    Returns
    -------
    mean, std : ndarray of shape (n, 3)
        M_r [mag], [Fe/H] [dex], A_r [mag] and their posterior stds.
    dm, dm_std : ndarray of shape (n,) or None
        Distance modulus [mag] and its std, when the teacher gives them.
    """
    if hasattr(teacher, "predict_posterior"):
        post = teacher.predict_posterior(frame)
        mean, std = (np.column_stack([post[t + end].to_numpy(np.float64) for t in TARGETS])
                     for end in ("", "_std"))
        dm, dm_std = (post[c].to_numpy(np.float64) if c in post else None for c in ("DM", "DM_std"))
        return mean, std, dm, dm_std
    m, s = teacher.predict(frame, return_std=True)
    names = tuple(getattr(teacher, "target_names_", ("Mr", "FeH", "Ar")))
    order = [names.index(t) for t in TARGETS]
    return np.asarray(m)[:, order], np.asarray(s)[:, order], None, None


def _teacher_components(mean, std):
    """The teacher's estimates in PatchStudent.predict_components form (sigma_NN = 0)."""
    return {"mean": mean, "sigma_nn": np.zeros_like(std), "sigma_b": std, "total_std": std}


def _put(comp, rows, values):
    for k in comp:
        comp[k][rows] = values[k]


def _process(job, frame, order, pixel):
    """Process the stars of one patch (rows in canonical order); see HybridPhotoD.process_patch."""
    hyb = job.hybrid
    n = len(frame)
    n_label = hyb._n_labelled(n)
    small = n <= n_label
    sel_seed, student_seed = job.seeds(order, pixel)
    summary = {"patch_order": int(order), "patch": int(pixel), "n_stars": int(n),
               "n_labelled": 0, "n_student": 0, "mode": "student",
               "teacher_seconds": 0.0, "student_fit_seconds": 0.0,
               "student_predict_seconds": 0.0,
               "warm_start": hyb._warm_weights() is not None}
    if small and hyb.small_patch == "raise":
        raise hyb._small_patch_error(order, pixel, n)
    teacher = job.teacher_for(order, pixel)
    comp = {k: np.full((n, len(TARGETS)), np.nan)
            for k in ("mean", "sigma_nn", "sigma_b", "total_std")}
    dm = np.full(n, np.nan)
    dm_std = np.full(n, np.nan)
    labelled = np.zeros(n, dtype=bool)
    if small:
        labelled[:] = True
        summary.update(mode="teacher", warm_start=False)
    else:
        labelled[np.random.default_rng(sel_seed).choice(n, size=n_label, replace=False)] = True
    lab = np.flatnonzero(labelled)
    t0 = time.perf_counter()
    m_t, s_t, dm_t, dms_t = teacher_estimates(teacher, frame.iloc[lab])
    summary["teacher_seconds"] = time.perf_counter() - t0
    _put(comp, lab, _teacher_components(m_t, s_t))
    if dm_t is not None:
        dm[lab] = dm_t
    if dms_t is not None:
        dm_std[lab] = dms_t
    summary["n_labelled"] = int(lab.size)
    model = None
    rest = np.flatnonzero(~labelled)
    if rest.size:
        t0 = time.perf_counter()
        model = hyb._fit_student(frame.iloc[lab], m_t, s_t, student_seed, (order, pixel))
        summary["student_fit_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _put(comp, rest, model.predict_components(frame.iloc[rest]))
        summary["student_predict_seconds"] = time.perf_counter() - t0
        summary["n_student"] = int(rest.size)
    return hyb._result_frame(frame, order, pixel, labelled, comp, dm, dm_std), model, summary


def _canonical(grp):
    """Rows of one patch in a canonical order: by index label, ties by input position.

    The labelled subset is drawn in this order, so it depends on the stars
    (their index labels) and not on how a catalogue was partitioned or
    ordered. Unsortable index labels fall back to the input position.
    """
    grp = grp.sort_values(_ROW, kind="stable")
    try:
        order = np.argsort(grp.index.to_numpy(), kind="stable")
    except TypeError:
        return grp
    return grp.iloc[order]


def _patch_groups(work):
    """(NUNIQ id, its stars in canonical order) of every patch of ``work``, by id."""
    return [(int(k), _canonical(g)) for k, g in work.groupby(_UNIQ, sort=True)]


def _collect(groups, outs):
    """Frames (tagged with input rows), models by patch and summaries of ``_process`` outputs."""
    frames, models, summaries = [], {}, []
    for (_, grp), (res, model, summary) in zip(groups, outs):
        res[_ROW] = grp[_ROW].to_numpy()
        frames.append(res)
        summaries.append(summary)
        if model is not None:
            models[(summary["patch_order"], summary["patch"])] = model
    return frames, models, summaries


def _run_partition(part, job):
    """Process every patch present in one Dask partition (a pandas DataFrame)."""
    groups = _patch_groups(part)
    frames, models, summaries = _collect(groups, [_process(job, g, *patch_key(k))
                                                  for k, g in groups])
    if not frames:
        return job.hybrid._empty_result(with_row=True), models, summaries
    return pd.concat(frames), models, summaries
