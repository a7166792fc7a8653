"""One sky patch's student of the hybrid photo-D and how its uncertainty is formed.

:class:`PatchStudent` holds a fitted student regressor with what completes its
uncertainty; the helpers here adapt any scikit-learn regressor (or Pipeline) as a
student: which ``fit`` keywords it takes, whether ``predict`` returns a std, seeding.
"""

from __future__ import annotations

import inspect

import numpy as np

from ..columns import PHOTOD_TARGETS as TARGETS

__all__ = ["PatchStudent"]


def _final_step(est):
    steps = getattr(est, "steps", None)
    return (steps[-1][0], steps[-1][1]) if steps else (None, est)


def _has_parameter(func, name):
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def _fit_kwarg(est, name):
    """Keyword under which ``est.fit`` takes ``name`` (a Pipeline's last step), or None."""
    step, last = _final_step(est)
    if not _has_parameter(last.fit, name):
        return None
    return name if step is None else f"{step}__{name}"


def _predict_has_std(est):
    return _has_parameter(_final_step(est)[1].predict, "return_std")


def _seed_estimator(est, seed):
    """Set every ``random_state`` parameter (also nested ones) of ``est`` to ``seed``."""
    keys = [k for k in est.get_params(deep=True) if k.split("__")[-1] == "random_state"]
    if keys:
        est.set_params(**{k: int(seed) for k in keys})
    return est


def _as_2d(a, n, what):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.shape != (n, len(TARGETS)):
        raise ValueError(
            f"The student's {what} has shape {a.shape}; expected ({n}, {len(TARGETS)}) "
            f"for the targets {TARGETS}. The student must be a multi-output regressor."
        )
    return a


class PatchStudent:
    """One sky patch's fitted student and how its total uncertainty is formed.

    Mrakovčić et al. (2025, Sect. 2.6) combine the network's own scatter
    about the teacher, sigma_NN, with the teacher's posterior width sigma_B
    (learned by a secondary network): sigma_total = sqrt(sigma_NN^2 +
    sigma_B^2) (their eq. 3). Which parts a student supplies decides
    ``std_mode``:

    ``"student"``
        The student was trained with the teacher's sigma_B (its ``fit``
        takes ``sigma_b``) and ``predict(X, return_std=True)`` already
        returns sigma_total (e.g. ``PhotoDNetwork``).
    ``"student+sigma_model"``
        ``predict(..., return_std=True)`` gives sigma_NN; sigma_B comes from
        ``sigma_model``, a regressor of log sigma_B.
    ``"holdout+sigma_model"``
        The student gives no std: sigma_NN is the robust std (1.4826 MAD)
        of student - teacher on a held-out quarter of the labelled stars
        (the paper's 75/25 split), one number per target; sigma_B as above.

    Parameters
    ----------
    estimator : fitted regressor
        Maps the feature columns to (M_r [mag], [Fe/H] [dex], A_r [mag]).
    feature_columns : sequence of str
        Its input columns, in order.
    std_mode : {"student", "student+sigma_model", "holdout+sigma_model"}
    sigma_model : fitted regressor or None
        Predicts log sigma_B (natural log of mag, mag, dex) per target.
    sigma_nn : ndarray of shape (3,) or None
        Constant sigma_NN per target for ``"holdout+sigma_model"``.
    n_train : int
        Labelled stars the student was trained on.
    """

    def __init__(self, estimator, feature_columns, std_mode, sigma_model=None, sigma_nn=None,
                 n_train=0):
        self.estimator = estimator
        self.feature_columns = tuple(feature_columns)
        self.std_mode = std_mode
        self.sigma_model = sigma_model
        self.sigma_nn = None if sigma_nn is None else np.asarray(sigma_nn, dtype=np.float64)
        self.n_train = int(n_train)

    def __repr__(self):
        return (f"PatchStudent({type(self.estimator).__name__}, std_mode={self.std_mode!r}, "
                f"n_train={self.n_train})")

    def features(self, frame):
        """The student's input matrix (DataFrame of float64 feature columns)."""
        return frame.loc[:, list(self.feature_columns)].astype(np.float64)

    def predict_components(self, frame):
        """Means and the parts of their uncertainty for the stars of ``frame``.

        Parameters
        ----------
        frame : pandas.DataFrame
            Holds the feature columns.

        Returns
        -------
        dict of ndarray of shape (n, 3)
            ``mean`` (columns M_r [mag], [Fe/H] [dex], A_r [mag]),
            ``sigma_nn`` (scatter of the teacher about the student),
            ``sigma_b`` (the teacher's posterior width, as learned),
            ``total_std`` = sqrt(sigma_nn^2 + sigma_b^2), same units. Parts a
            student does not expose are NaN (``std_mode="student"`` without a
            ``predict_components`` method).
        """
        X = self.features(frame)
        n = len(X)
        nan = np.full((n, len(TARGETS)), np.nan)
        est = self.estimator
        if self.std_mode == "student":
            if hasattr(est, "predict_components"):
                comp = est.predict_components(X)
                mean = _as_2d(comp["mean"], n, "prediction")
                sig_nn = _as_2d(comp["sigma_nn"], n, "sigma_nn")
                sig_b = nan if comp.get("sigma_b") is None else _as_2d(comp["sigma_b"], n,
                                                                      "sigma_b")
                total = _as_2d(comp["total_std"], n, "std")
            else:
                mean, total = est.predict(X, return_std=True)
                mean, total = _as_2d(mean, n, "prediction"), _as_2d(total, n, "std")
                sig_nn, sig_b = nan, nan
            return {"mean": mean, "sigma_nn": sig_nn, "sigma_b": sig_b, "total_std": total}
        if self.std_mode == "holdout+sigma_model":
            mean = _as_2d(est.predict(X), n, "prediction")
            sig_nn = np.broadcast_to(self.sigma_nn, mean.shape).copy()
        else:
            mean, sig_nn = est.predict(X, return_std=True)
            mean, sig_nn = _as_2d(mean, n, "prediction"), _as_2d(sig_nn, n, "std")
        sig_b = np.exp(_as_2d(self.sigma_model.predict(X), n, "log sigma_B prediction"))
        return {"mean": mean, "sigma_nn": sig_nn, "sigma_b": sig_b,
                "total_std": np.sqrt(sig_nn**2 + sig_b**2)}

    def predict(self, frame, return_std=False):
        """Estimates (and total uncertainties) for the stars of ``frame``.

        Parameters
        ----------
        frame : pandas.DataFrame
            Holds the feature columns.
        return_std : bool, default=False
            Also return sigma_total.

        Returns
        -------
        mean : ndarray of shape (n, 3)
            M_r [mag], [Fe/H] [dex], A_r [mag].
        std : ndarray of shape (n, 3)
            sigma_total in the same units (only with ``return_std=True``).
        """
        if not return_std:
            return _as_2d(self.estimator.predict(self.features(frame)), len(frame), "prediction")
        comp = self.predict_components(frame)
        return comp["mean"], comp["total_std"]
