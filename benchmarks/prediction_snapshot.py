"""Regression snapshot: predictions of every neural estimator, to compare two versions.

Fits 14 small configurations (simulated data, fixed seeds, few epochs; early
stopping that triggers, the plateau schedule, no validation split, photo-D's
skorch loop, UNN with covariances, shuffling, MC sigma and no Jacobian
gradient, CycleStarNet) and saves every output array. Run it in two checkouts
and compare: issue 17's training core was checked this way (94 arrays,
0 differing, against commit bc6e705).

    python benchmarks/prediction_snapshot.py OUTDIR        # -> OUTDIR/<case>__<key>.npy
    python benchmarks/prediction_snapshot.py compare DIR_A DIR_B
"""

import os
import sys
import time

import numpy as np
import pandas as pd
import torch

from skstellar import (
    CycleStarNet,
    MDwarfMetallicityRegressor,
    PhotoDNetwork,
    SpectralCNNClassifier,
    SpectralCNNRegressor,
    UncertainNNRegressor,
)
from skstellar.covariance import CovariantFeatures
from skstellar.datasets.mdwarf import make_mdwarf_photometry
from skstellar.photod.network import PHOTOD_INPUT_COLUMNS


def compare(a, b):
    """Print the arrays of snapshot ``b`` that differ from snapshot ``a``."""
    bad = 0
    for f in sorted(os.listdir(a)):
        x = np.load(os.path.join(a, f), allow_pickle=True)
        p = os.path.join(b, f)
        if not os.path.exists(p):
            print("MISSING", f)
            bad += 1
            continue
        y = np.load(p, allow_pickle=True)
        same = x.shape == y.shape and np.array_equal(x, y)
        if not same:
            bad += 1
            d = (
                np.nanmax(np.abs(x.astype(float) - y.astype(float)))
                if x.shape == y.shape
                else "shape"
            )
            print("DIFF", f, d)
    print("compared", len(os.listdir(a)), "differing", bad)


def snapshot(out, only=()):
    """Fit every case (or those whose name starts with one of ``only``); save to ``out``."""
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    rng = np.random.RandomState(0)
    n = 240
    Xm, ym = make_mdwarf_photometry(n, as_frame=False, random_state=0)
    spec = 1 + 0.1 * rng.normal(size=(n, 64))
    cat = pd.DataFrame(
        np.hstack([rng.uniform(-1, 1, (n, 5)), rng.uniform(0.01, 0.3, (n, 5))]),
        columns=list(PHOTOD_INPUT_COLUMNS),
    )
    y3 = np.column_stack(
        [4 + cat.iloc[:, 1], -1 + 0.5 * cat.iloc[:, 0], 0.1 + 0.2 * cat.iloc[:, 2] ** 2]
    )
    sb = 0.05 + 0.1 * np.abs(y3 - y3.mean(0))
    xt = rng.normal(size=(n, 6))
    sig = np.full((n, 6), 0.1)
    xx = xt + sig * rng.normal(size=(n, 6))
    yx = np.stack([np.sin(xt[:, 0]) + 0.5 * xt[:, 1], 0.3 * xt[:, 2] ** 2 - xt[:, 3]], 1)
    yerr = np.full_like(yx, 0.05)
    XC = CovariantFeatures.from_variance(xx, sig**2)
    synth = 1 + 0.1 * rng.normal(size=(n, 64))
    obs = 1 + 0.1 * rng.normal(size=(n, 64))

    cnn = dict(
        channels=(4,),
        convs_per_block=1,
        padding=1,
        pool_size=2,
        pool_stride=2,
        max_epochs=6,
        batch_size=16,
        n_mc_passes=5,
        dropout=0.2,
        random_state=0,
    )
    unn = dict(
        hidden=(32, 32), batch_size=64, max_iter=60, warmup_iter=20, n_mc_passes=10, random_state=0
    )
    cases = {
        "mdwarf": (
            lambda: MDwarfMetallicityRegressor(max_epochs=8, n_mc_passes=5, random_state=0),
            Xm,
            ym,
            {},
        ),
        "mdwarf_plateau_es": (
            lambda: MDwarfMetallicityRegressor(
                max_epochs=30,
                patience=3,
                lr_schedule="plateau",
                lr_patience=1,
                n_mc_passes=5,
                random_state=0,
            ),
            Xm,
            ym,
            {},
        ),
        "mdwarf_noval": (
            lambda: MDwarfMetallicityRegressor(
                max_epochs=4, validation_fraction=0, uncertainty="mc", n_mc_passes=5, random_state=3
            ),
            Xm,
            ym,
            {},
        ),
        "cnnreg": (lambda: SpectralCNNRegressor(**cnn), spec, spec[:, :5].sum(1), {}),
        "cnnreg_es": (
            lambda: SpectralCNNRegressor(
                **{**cnn, "max_epochs": 30, "patience": 3, "lr_patience": 1}
            ),
            spec,
            spec[:, :5].sum(1),
            {},
        ),
        "cnnclf": (
            lambda: SpectralCNNClassifier(**cnn),
            spec,
            (spec[:, :5].sum(1) > 5).astype(int),
            {},
        ),
        "unn": (lambda: UncertainNNRegressor(**unn), XC, yx, {"y_err": yerr}),
        "unn_val_es_shuffle": (
            lambda: UncertainNNRegressor(
                **{
                    **unn,
                    "max_iter": 2000,
                    "validation_fraction": 0.2,
                    "early_stopping": True,
                    "patience": 2,
                    "shuffle": True,
                }
            ),
            XC,
            yx,
            {"y_err": yerr},
        ),
        "unn_mc_nojacgrad": (
            lambda: UncertainNNRegressor(
                **{
                    **unn,
                    "uncertainty": "mc",
                    "jacobian_gradient": False,
                    "model_variance_passes": 1,
                }
            ),
            XC,
            yx,
            {},
        ),
        "unn_plain": (
            lambda: UncertainNNRegressor(**{**unn, "uncertainty": "mc"}),
            xx,
            yx[:, 0],
            {},
        ),
        "photod": (
            lambda: PhotoDNetwork(
                hidden_layer_sizes=(16, 16),
                activation="gelu",
                max_epochs=60,
                patience=3,
                lr_patience=1,
                secondary_max_epochs=5,
                batch_size=32,
                random_state=0,
            ),
            cat,
            y3,
            {"sigma_b": sb},
        ),
        "photod_skorch": (
            lambda: PhotoDNetwork(
                hidden_layer_sizes=(16, 16),
                activation="gelu",
                max_epochs=6,
                secondary_max_epochs=3,
                batch_size=32,
                training_loop="skorch",
                random_state=1,
            ),
            cat,
            y3,
            {"sigma_b": sb},
        ),
        "photod_noval": (
            lambda: PhotoDNetwork(
                hidden_layer_sizes=(8,),
                activation="gelu",
                max_epochs=4,
                validation_fraction=0,
                n_runs=1,
                batch_size=32,
                random_state=2,
            ),
            cat,
            y3,
            {},
        ),
        "cyclestarnet": (
            lambda: CycleStarNet(
                synthetic=synth,
                domain_channels=(4,),
                shared_channels=(8, 8),
                kernel_size=4,
                strides=(2, 2, 2),
                latent_channels=4,
                split_channels=1,
                split_width=4,
                n_iter=6,
                lr_decay_every=None,
                random_state=0,
            ),
            obs,
            None,
            {},
        ),
    }

    for name, (make, X, y, kw) in cases.items():
        if only and not any(name.startswith(o) for o in only):
            continue
        t = time.perf_counter()
        est = make().fit(X, y, **kw) if y is not None else make().fit(X, **kw)
        res = {}
        if hasattr(est, "predict"):
            res["predict"] = est.predict(X)
            try:
                m, s = est.predict(X, return_std=True)
                res["mean"], res["std"] = m, s
            except (TypeError, ValueError):
                pass
            if hasattr(est, "predict_proba"):
                res["proba"] = est.predict_proba(X)
            if hasattr(est, "predict_uncertainty") and name.startswith("unn"):
                for k, v in est.predict_uncertainty(X).items():
                    res["unc_" + k] = v
        else:
            Z = est.transform(X)
            res["transform"] = Z
            res["inverse"] = est.inverse_transform(Z)
        for attr in ("n_epochs_", "n_iter_"):
            if hasattr(est, attr):
                res[attr] = np.asarray(getattr(est, attr))
        for k, v in res.items():
            np.save(f"{out}/{name}__{k}.npy", np.asarray(v))
        print(
            name,
            f"{time.perf_counter() - t:.1f}s",
            {k: np.shape(v) for k, v in res.items()},
            flush=True,
        )


if __name__ == "__main__":
    if sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        snapshot(sys.argv[1], sys.argv[2:])
