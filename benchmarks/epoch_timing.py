"""Training CPU time of every neural estimator, to compare two versions of the package.

Fits five fixed configurations (simulated data, fixed seeds, one torch thread,
early stopping off) and prints the CPU seconds per training epoch, the best of
``--repeats`` fits. The configurations train the same number of epochs in any
version whose predictions are bit-identical (``prediction_snapshot.py``), so
the per-epoch figures of two checkouts compare directly. Issue 17's "training
time per epoch is the same or better" was checked by running this in a checkout
of each version, interleaved:

    PYTHONPATH=/path/to/checkout python benchmarks/epoch_timing.py --repeats 3
"""

import argparse
import time

import numpy as np
import pandas as pd
import torch

from skstellar import (
    MDwarfMetallicityRegressor,
    PhotoDNetwork,
    SpectralCNNRegressor,
    UncertainNNRegressor,
)
from skstellar.covariance import CovariantFeatures
from skstellar.datasets.mdwarf import make_mdwarf_photometry
from skstellar.photod.network import PHOTOD_INPUT_COLUMNS


def cases():
    """Name -> (estimator factory, X, y, fit keyword arguments)."""
    rng = np.random.RandomState(0)
    Xm, ym = make_mdwarf_photometry(5000, as_frame=False, random_state=0)
    n = 20000
    cat = pd.DataFrame(
        np.hstack([rng.uniform(-1, 1, (n, 5)), rng.uniform(0.01, 0.3, (n, 5))]),
        columns=list(PHOTOD_INPUT_COLUMNS),
    )
    y3 = np.column_stack(
        [4 + cat.iloc[:, 1], -1 + 0.5 * cat.iloc[:, 0], 0.1 + 0.2 * cat.iloc[:, 2] ** 2]
    )
    sb = 0.05 + 0.1 * np.abs(y3 - y3.mean(0))
    xt = rng.normal(size=(4000, 6))
    sig = np.full((4000, 6), 0.1)
    xx = xt + sig * rng.normal(size=xt.shape)
    yx = np.stack([np.sin(xt[:, 0]) + 0.5 * xt[:, 1], 0.3 * xt[:, 2] ** 2 - xt[:, 3]], 1)
    spec = 1 + 0.1 * rng.normal(size=(1500, 512))
    return {
        "mdwarf (5000 stars)": (
            lambda: MDwarfMetallicityRegressor(max_epochs=20, early_stopping=False, random_state=0),
            Xm, ym, {},
        ),
        "photod (20000 rows)": (
            lambda: PhotoDNetwork(
                max_epochs=8, secondary_max_epochs=2, n_runs=1, patience=100,
                batch_size=128, random_state=0,
            ),
            cat, y3, {"sigma_b": sb},
        ),
        "uncertain-nn (4000 rows, covariances)": (
            lambda: UncertainNNRegressor(
                hidden=(64, 64), batch_size=128, max_iter=600, warmup_iter=200,
                n_mc_passes=10, random_state=0,
            ),
            CovariantFeatures.from_variance(xx, sig**2), yx, {"y_err": np.full_like(yx, 0.05)},
        ),
        "galaxy cnn (1500 x 512 px)": (
            lambda: SpectralCNNRegressor(max_epochs=4, early_stopping=False, random_state=0),
            spec, spec[:, :5].sum(1), {},
        ),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{'estimator':40s} {'epochs':>6s} {'CPU s / epoch (best of %d)' % args.repeats}")
    for name, (make, X, y, kw) in cases().items():
        best, epochs = np.inf, None
        for _ in range(args.repeats):
            est = make()
            t0 = time.process_time()
            est.fit(X, y, **kw)
            cpu = time.process_time() - t0
            epochs = int(getattr(est, "n_epochs_", 0)) or len(est.history_)
            best = min(best, cpu / epochs)
        print(f"{name:40s} {epochs:6d} {best:.4f}")


if __name__ == "__main__":
    main()
