"""Choose a short photo-D student schedule on *selection* catalogues (issue 14, item 1).

For every selection catalogue ``simulate_patch_catalog(400000, random_state=C)``
(C given by ``--catalogues``; never 0, 1 or 2, the benchmark catalogues),
10,000 stars labelled by the closed-form teacher and 10,000 other
teacher-labelled stars as a common test set (both drawn with
``RandomState(C)``, as ``benchmarks/photod_prune_selection.py``), it trains
one moments network per recipe (``--recipes``) and network seed
(``--seeds``) and records the NN-vs-Bayes robust std of M_r, [Fe/H] and A_r
on the common set of

* ``kept``: the weights the network keeps (its ``predict``);
* ``last``: the last epoch's weights;
* ``ema<d>``: an exponential moving average of the weights over epochs
  (``w <- d w + (1 - d) w_epoch``), for each ``--ema-decays`` d;
* ``swa<k>``: the uniform average of the last k epochs' weights, for each
  ``--swa-epochs`` k;

all from the same training run (the averages are evaluated, not trained
on). The sigma_B network is not trained (it does not change the means).
Student fit CPU seconds are this process's, on one thread.

    python benchmarks/photod_schedule_selection.py --catalogues 11 12 13 --seeds 0 1 2 \
        --recipes fast fast+anneal100
"""

import argparse
import ast
import json
import os
import time

import numpy as np
import torch
from skorch.callbacks import Callback

from skstellar.metrics import robust_std
from skstellar.photod import network
from skstellar.photod.evaluation import simulate_patch_catalog, single_core
from skstellar.photod.network import PHOTOD_INPUT_COLUMNS, PhotoDNetwork
from skstellar.photod.teacher import BayesianPhotoD

BASE = {"quick": network.QUICK_SCHEDULE, "fast": network.FAST_SCHEDULE,
        "robust-fast": network.ROBUST_FAST_SCHEDULE}


def recipe_params(name):
    """PhotoDNetwork parameters of a recipe: ``base[+key=value...]``.

    ``fast+anneal_epochs=100+early_stopping=False``; ``anneal100`` is short
    for ``anneal_epochs=100``.
    """
    base, *extra = name.split("+")
    params = dict(getattr(network, base) if base.isupper() else BASE[base])
    for item in extra:
        if item.startswith("anneal") and "=" not in item:
            params["anneal_epochs"] = int(item[len("anneal"):])
            continue
        k, v = item.split("=", 1)
        params[k] = ast.literal_eval(v)
    return params


class WeightAverages(Callback):
    """Robust std of NN - Bayes on a fixed set for the last weights and weight averages."""

    #: Results of every copy (each net deep-copies its callbacks), by net id.
    results = {}

    def __init__(self, X, y, ema_decays, swa_epochs, max_epochs):
        self.X, self.y = X, y
        self.ema_decays, self.swa_epochs = tuple(ema_decays), tuple(swa_epochs)
        self.max_epochs = max_epochs

    def on_train_begin(self, net, **kwargs):
        self.emas_ = dict.fromkeys(self.ema_decays)
        self.recent_ = []

    def _stats(self, net, params=None):
        saved = [p.detach().clone() for p in net.module_.parameters()]
        with torch.no_grad():
            if params is not None:
                for p, v in zip(net.module_.parameters(), params):
                    p.copy_(v)
            out = net.module_(torch.as_tensor(self.X)).numpy()
            for p, v in zip(net.module_.parameters(), saved):
                p.copy_(v)
        r = out[:, :self.y.shape[1]] - self.y
        return [float(robust_std(r[:, j])) for j in range(r.shape[1])] + \
            [float(np.median(r[:, 0]))]

    def on_epoch_end(self, net, **kwargs):
        if not hasattr(self, "emas_"):
            self.on_train_begin(net)
        params = [p.detach().clone() for p in net.module_.parameters()]
        for d in self.ema_decays:
            cur = self.emas_[d]
            self.emas_[d] = params if cur is None else [d * a + (1 - d) * b
                                                        for a, b in zip(cur, params)]
        self.recent_.append(params)
        if self.swa_epochs:
            self.recent_ = self.recent_[-max(self.swa_epochs):]
        epoch = len(net.history)
        stop = epoch == self.max_epochs
        es = dict(net.callbacks_).get("early_stopping")
        if es is not None and es.misses_ >= es.patience:
            stop = True
        if not stop:
            return
        res = {"epochs": epoch, "last": self._stats(net)}
        for d in self.ema_decays:
            res[f"ema{d:g}"] = self._stats(net, self.emas_[d])
        for k in self.swa_epochs:
            window = self.recent_[-k:]
            res[f"swa{k}"] = self._stats(net, [sum(ws) / len(window) for ws in zip(*window)])
        type(self).results[id(net)] = res


def load_catalogue(c, cache_dir):
    """Labelled stars (teacher means, stds) and the common test set of catalogue ``c``."""
    path = os.path.join(cache_dir, f"photod_selection_cat{c}.npz")
    if os.path.exists(path):
        return dict(np.load(path))
    cat = simulate_patch_catalog(400_000, random_state=c)
    rng = np.random.RandomState(c)
    rows = rng.choice(len(cat), 20_000, replace=False)
    lab, common = cat.iloc[rows[:10_000]], cat.iloc[rows[10_000:]]
    teacher = BayesianPhotoD().fit()
    y_lab, s_lab = teacher.predict(lab, return_std=True)
    cols = list(PHOTOD_INPUT_COLUMNS)
    data = {"X_lab": lab[cols].to_numpy(np.float64), "y_lab": np.asarray(y_lab),
            "s_lab": np.asarray(s_lab), "X_com": common[cols].to_numpy(np.float64),
            "y_com": np.asarray(teacher.predict(common))}
    np.savez(path, **data)
    return data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalogues", type=int, nargs="+", default=[11, 12, 13])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--recipes", nargs="+", default=["fast"])
    ap.add_argument("--ema-decays", type=float, nargs="*", default=[0.9, 0.95])
    ap.add_argument("--swa-epochs", type=int, nargs="*", default=[30, 60])
    ap.add_argument("--cache-dir", default="/tmp")
    ap.add_argument("--out", default="benchmarks/results/photod_schedule_selection.jsonl")
    args = ap.parse_args(argv)
    if set(args.catalogues) & {0, 1, 2}:
        ap.error("catalogues 0, 1 and 2 are the benchmark's: choose on others")
    torch.set_num_threads(1)
    for c in args.catalogues:
        t0 = time.perf_counter()
        data = load_catalogue(c, args.cache_dir)
        print(f"catalogue {c}: labels ready in {time.perf_counter() - t0:.0f} s", flush=True)
        X_com, y_com = data["X_com"], data["y_com"]
        for recipe in args.recipes:
            params = recipe_params(recipe)
            for seed in args.seeds:
                WeightAverages.results = {}
                probe = WeightAverages(X_com.astype(np.float32), y_com.astype(np.float32),
                                       args.ema_decays, args.swa_epochs, params["max_epochs"])
                net = PhotoDNetwork(**params, random_state=seed, callbacks=[("avg", probe)])
                with single_core():
                    c0 = time.process_time()
                    net.fit(data["X_lab"], data["y_lab"])
                    cpu = time.process_time() - c0
                pred = np.asarray(net.predict(X_com))
                r = pred - y_com
                kept = [float(robust_std(r[:, j])) for j in range(3)] + \
                    [float(np.median(r[:, 0]))]
                run = WeightAverages.results.get(id(net.net_), {})
                row = {"catalogue": c, "recipe": recipe, "seed": seed, "kept": kept,
                       "fit_cpu_seconds": cpu, "run_n_epochs": net.run_n_epochs_.tolist(),
                       "best_run": int(net.best_run_), **run}
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(f"cat {c} {recipe} seed {seed}: cpu {cpu:.1f} s epochs "
                      f"{row['run_n_epochs']} | M_r rstd kept {kept[0]:.3f} "
                      + " ".join(f"{k} {v[0]:.3f}" for k, v in run.items() if k != "epochs")
                      + f" | FeH/Ar kept {kept[1]:.3f}/{kept[2]:.3f}", flush=True)


if __name__ == "__main__":
    main()
