"""Why does a short photo-D student schedule miss Table 1 for M_r on a catalogue? (issue 14).

Measurement only. Reproduces the student of the benchmark's hybrid
(``benchmarks/photod.py``: one patch, ``--label-count 10000``, ``--seed S``):
the same simulated catalogue, the hybrid's own labelled stars and student
seed, and the test stars ``evaluate_photod`` compares with the teacher
(``--test-stars`` drawn with ``default_rng(S)``, minus the labelled ones).
The labelled set, its teacher labels and the test set are cached
(``--cache``), so other training recipes can be run on the same data. Per
moments-network run it records, every ``--every`` epochs, the NN-vs-Bayes
robust std and median of M_r on the test stars and the run's validation
loss, plus the same for parameter averages (uniform over the epochs from
``--average-from``, and per-epoch EMAs with ``--ema-decays``). At the end:
the kept student's residuals binned in M_r and g - r.

    python benchmarks/photod_schedule_diagnosis.py --seed 2 --schedule fast
    python benchmarks/photod_schedule_diagnosis.py --seed 2 --schedule paper --every 10
"""

import argparse
import json
import os
import time

import numpy as np
import torch
from skorch.callbacks import Callback

from skstellar.metrics import robust_std
from skstellar.photod import network
from skstellar.photod.evaluation import simulate_patch_catalog, single_core
from skstellar.photod.hybrid import HybridPhotoD
from skstellar.photod.network import PHOTOD_INPUT_COLUMNS, PhotoDNetwork
from skstellar.photod.teacher import BayesianPhotoD

SCHEDULES = {"paper": {}, "quick": network.QUICK_SCHEDULE, "fast": network.FAST_SCHEDULE,
             "robust-fast": network.ROBUST_FAST_SCHEDULE}


def mr_stats(pred, y):
    """(robust std, median) of NN - Bayes for M_r."""
    r = np.asarray(pred, dtype=np.float64) - y
    return float(robust_std(r)), float(np.median(r))


class EpochProbe(Callback):
    """M_r NN-vs-Bayes of the current weights and of parameter averages, every few epochs."""

    #: Records of every copy (each net deep-copies its callbacks).
    records = []

    def __init__(self, X, y, every=1, average_from=(), ema_decays=()):
        self.X, self.y, self.every = X, y, every
        self.average_from, self.ema_decays = tuple(average_from), tuple(ema_decays)

    def on_train_begin(self, net, **kwargs):
        self.sums_ = {s: None for s in self.average_from}
        self.counts_ = dict.fromkeys(self.average_from, 0)
        self.emas_ = dict.fromkeys(self.ema_decays)

    def _params(self, net):
        return [p.detach().clone() for p in net.module_.parameters()]

    def _eval_with(self, net, params):
        saved = self._params(net)
        with torch.no_grad():
            for p, v in zip(net.module_.parameters(), params):
                p.copy_(v)
            out = net.module_(torch.as_tensor(self.X))
            for p, v in zip(net.module_.parameters(), saved):
                p.copy_(v)
        return out

    def on_epoch_end(self, net, **kwargs):
        if not hasattr(self, "sums_"):  # resumed run after a pause keeps its state
            self.on_train_begin(net)
        epoch = len(net.history)
        params = self._params(net)
        for s in self.average_from:
            if epoch >= s:
                cur = self.sums_[s]
                self.sums_[s] = params if cur is None else [a + b for a, b in zip(cur, params)]
                self.counts_[s] += 1
        for d in self.ema_decays:
            cur = self.emas_[d]
            self.emas_[d] = params if cur is None else [d * a + (1 - d) * b
                                                        for a, b in zip(cur, params)]
        if epoch % self.every:
            return
        with torch.no_grad():
            out = net.module_(torch.as_tensor(self.X))
        if out.shape[1] != 2 * self.y.shape[1]:  # the sigma_B network
            return
        rec = {"net": id(net), "epoch": epoch,
               "valid_loss": float(net.history[-1, "valid_loss"]),
               "lr": float(net.optimizer_.param_groups[0]["lr"])}
        rec["mr_rstd"], rec["mr_median"] = mr_stats(out[:, 0].numpy(), self.y[:, 0])
        for s in self.average_from:
            if self.counts_[s]:
                avg = [a / self.counts_[s] for a in self.sums_[s]]
                o = self._eval_with(net, avg)
                rec[f"swa{s}_rstd"], rec[f"swa{s}_median"] = mr_stats(o[:, 0].numpy(),
                                                                      self.y[:, 0])
        for d in self.ema_decays:
            o = self._eval_with(net, self.emas_[d])
            rec[f"ema{d}_rstd"], rec[f"ema{d}_median"] = mr_stats(o[:, 0].numpy(), self.y[:, 0])
        type(self).records.append(rec)


def build_cache(args, path):
    """Hybrid's labelled stars (teacher labels), its student seed and the test stars."""
    t0 = time.perf_counter()
    cat = simulate_patch_catalog(args.n_stars, pixels=(1177,), random_state=args.seed)
    hyb = HybridPhotoD(student=PhotoDNetwork(**{**network.FAST_SCHEDULE, "max_epochs": 2,
                                                "secondary_max_epochs": 1}),
                       label_count=10_000, random_state=args.seed)
    with single_core():
        res = hyb.fit_predict(cat)
    lab = res["labelled_by_teacher"].to_numpy()
    est = next(iter(hyb.patch_models_.values())).estimator
    rows = np.zeros(len(cat), dtype=bool)
    rows[np.random.default_rng(args.seed).choice(len(cat), min(args.test_stars, len(cat)),
                                                 replace=False)] = True
    test = np.flatnonzero(rows & ~lab)
    teacher = BayesianPhotoD().fit()
    cols = list(PHOTOD_INPUT_COLUMNS)
    y_test = np.asarray(teacher.predict(cat.iloc[test]))
    targets = ["Mr", "FeH", "Ar"]
    data = {"X_lab": cat.loc[lab, cols].to_numpy(np.float64),
            "y_lab": res.loc[lab, targets].to_numpy(np.float64),
            "s_lab": res.loc[lab, [f"{t}_std" for t in targets]].to_numpy(np.float64),
            "X_test": cat.iloc[test][cols].to_numpy(np.float64), "y_test": y_test,
            "student_seed": int(est.random_state)}
    np.savez(path, **data)
    print(f"cache {path}: {lab.sum()} labelled, {len(test)} test stars, student seed "
          f"{data['student_seed']} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return data


def residual_pattern(pred, y, X):
    """Median and robust std of NN - Bayes (M_r) in bins of Bayes M_r and of g - r."""
    r = pred[:, 0] - y[:, 0]
    out = {}
    for name, v, edges in (("Mr", y[:, 0], [-1, 2, 4, 5, 6, 7, 8, 9, 11, 16]),
                           ("gr", X[:, 2], [-1, 0.3, 0.4, 0.5, 0.7, 1.0, 1.3, 2.5])):
        rows = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            m = (v >= lo) & (v < hi)
            if m.sum() >= 30:
                rows.append({"lo": lo, "hi": hi, "n": int(m.sum()),
                             "median": float(np.median(r[m])),
                             "rstd": float(robust_std(r[m]))})
        out[name] = rows
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--n-stars", type=int, default=400_000)
    ap.add_argument("--test-stars", type=int, default=20_000)
    ap.add_argument("--schedule", choices=tuple(SCHEDULES), default="fast")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="PhotoDNetwork parameters on top of the schedule (python literals)")
    ap.add_argument("--net-seed", type=int, default=None,
                    help="student random_state (default: the hybrid's)")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--average-from", type=int, nargs="*", default=[])
    ap.add_argument("--ema-decays", type=float, nargs="*", default=[])
    ap.add_argument("--cache", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import ast

    cache = args.cache or f"/tmp/photod_diag_{args.n_stars}_seed{args.seed}.npz"
    data = dict(np.load(cache)) if os.path.exists(cache) else build_cache(args, cache)
    params = dict(SCHEDULES[args.schedule])
    for kv in args.set:
        k, v = kv.split("=", 1)
        params[k] = ast.literal_eval(v)
    seed = int(data["student_seed"]) if args.net_seed is None else args.net_seed
    EpochProbe.records = []
    probe = EpochProbe(data["X_test"].astype(np.float32), data["y_test"].astype(np.float32),
                       args.every, args.average_from, args.ema_decays)
    net = PhotoDNetwork(**params, random_state=seed, callbacks=[("probe", probe)])
    with single_core():
        c0 = time.process_time()
        net.fit(data["X_lab"], data["y_lab"], sigma_b=data["s_lab"])
        cpu = time.process_time() - c0
    pred = np.asarray(net.predict(data["X_test"]))
    y = data["y_test"]
    rstd = [float(robust_std(pred[:, j] - y[:, j])) for j in range(3)]
    med = [float(np.median(pred[:, j] - y[:, j])) for j in range(3)]
    hist = np.asarray(net.history_[:, "valid_loss"], dtype=float)
    summary = {"seed": args.seed, "schedule": args.schedule, "params": params, "net_seed": seed,
               "nn_vs_bayes_rstd": rstd, "nn_vs_bayes_median": med, "fit_cpu_seconds": cpu,
               "run_n_epochs": net.run_n_epochs_.tolist(), "best_run": int(net.best_run_),
               "run_valid_losses": net.run_valid_losses_.tolist(),
               "kept_epoch": int(np.argmin(hist)) + 1,
               "pattern": residual_pattern(pred, y, data["X_test"])}
    runs = {}
    for rec in EpochProbe.records:
        runs.setdefault(rec["net"], []).append(rec)
    summary["curves"] = list(runs.values())
    print(json.dumps({k: v for k, v in summary.items() if k not in ("curves", "pattern")}))
    for pname, rows in summary["pattern"].items():
        print(pname, " ".join(f"[{r['lo']},{r['hi']}) n={r['n']} med={r['median']:+.3f} "
                              f"rstd={r['rstd']:.3f}" for r in rows))
    for i, curve in enumerate(summary["curves"]):
        print(f"run {i}:")
        for rec in curve:
            print("  " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in rec.items() if k != "net"))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
