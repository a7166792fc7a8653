"""Is an undertrained photo-D student run identifiable early? (issue 14, selection catalogue).

Trains single ``FAST_SCHEDULE`` runs of :class:`~skstellar.photod.network.PhotoDNetwork`
(network seeds given on the command line) on 10,000 teacher-labelled stars of the
*selection* catalogue (``simulate_patch_catalog(400000, random_state=11)``, never a
benchmark catalogue) and records, at checkpoint epochs, the moments loss (Eq. 2) and the
NN-vs-Bayes robust std of M_r on 10,000 other teacher-labelled stars (a set common to
all seeds), next to each run's own validation loss. Used to choose ``prune_after``.

    python benchmarks/photod_prune_selection.py --seeds 0 1 2 --checkpoints 15 30 45 60
"""

import argparse
import json
import time

import numpy as np
import torch
from skorch.callbacks import Callback

from skstellar.metrics import robust_std
from skstellar.photod.evaluation import simulate_patch_catalog, single_core
from skstellar.photod.network import FAST_SCHEDULE, PHOTOD_INPUT_COLUMNS, MomentLoss, PhotoDNetwork
from skstellar.photod.teacher import BayesianPhotoD


class CommonSetProbe(Callback):
    """Moments loss and M_r robust std of NN - Bayes on a fixed star set at given epochs."""

    def __init__(self, X, y, weights, checkpoints):
        self.X, self.y, self.weights, self.checkpoints = X, y, weights, checkpoints

    #: Records of every copy (each net deep-copies its callbacks).
    records = []

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        if epoch not in self.checkpoints:
            return
        with torch.no_grad():
            out = net.module_(torch.as_tensor(self.X))
        if out.shape[1] != 2 * self.y.shape[1]:  # the sigma_B network
            return
        with torch.no_grad():
            loss = float(MomentLoss(self.weights)(out, torch.as_tensor(self.y)))
        mr = out[:, 0].numpy() - self.y[:, 0]
        type(self).records.append({"net": id(net), "epoch": epoch, "common_loss": loss,
                             "common_mr_robust_std": float(robust_std(mr)),
                             "own_valid_loss": float(net.history[-1, "valid_loss"])})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--checkpoints", type=int, nargs="+", default=[15, 30, 45, 60, 100, 300])
    ap.add_argument("--n-runs", type=int, default=1)
    ap.add_argument("--prune-after", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results/photod_prune_selection.json")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    cat = simulate_patch_catalog(400_000, random_state=11)
    rng = np.random.RandomState(11)
    rows = rng.choice(len(cat), 20_000, replace=False)
    lab, common = cat.iloc[rows[:10_000]], cat.iloc[rows[10_000:]]
    teacher = BayesianPhotoD().fit()
    y_lab, s_lab = teacher.predict(lab, return_std=True)
    y_com = np.asarray(teacher.predict(common))
    X_com = common[list(PHOTOD_INPUT_COLUMNS)].to_numpy(np.float32)
    print(f"catalogue + teacher labels in {time.perf_counter() - t0:.1f} s", flush=True)
    weights = 1.0 / np.asarray((0.1, 0.1, 0.02)) ** 2
    results = []
    for seed in args.seeds:
        CommonSetProbe.records = []
        probe = CommonSetProbe(X_com, y_com.astype(np.float32), weights, set(args.checkpoints))
        params = {**FAST_SCHEDULE, "n_runs": args.n_runs}
        if args.prune_after is not None:
            params["prune_after"] = args.prune_after
        net = PhotoDNetwork(**params, random_state=seed, callbacks=[("probe", probe)])
        with single_core():
            c0 = time.process_time()
            net.fit(lab, y_lab, sigma_b=s_lab)
            cpu = time.process_time() - c0
        pred = net.predict(common)
        mr = robust_std(np.asarray(pred)[:, 0] - y_com[:, 0])
        hist = np.asarray(net.history_[:, "valid_loss"], dtype=float)
        row = {"seed": seed, "final_mr_robust_std": float(mr), "fit_cpu_seconds": cpu,
               "run_valid_losses": net.run_valid_losses_.tolist(),
               "run_n_epochs": net.run_n_epochs_.tolist(), "best_run": net.best_run_,
               "kept_best_epoch_loss": float(hist.min()), "probe": CommonSetProbe.records}
        results.append(row)
        print(json.dumps(row), flush=True)
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
