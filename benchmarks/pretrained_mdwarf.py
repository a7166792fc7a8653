"""Benchmark: the shipped ``mdwarf-feh`` model vs the authors' released METaMorPHosis-NN.

Both models predict [Fe/H] of the same held-out stars: the 20 % test split of
the real 8-band Birky et al. (2020) sample whose APOGEE ids are stored in the
shipped model's card (never seen in its training). The authors' network
(Duque-Arribas et al. 2025; github.com/chrduque/metamorphosis-NN,
``metamorphosisNN.keras``, MIT licence) is read with ``h5py`` - no TensorFlow -
and rebuilt in torch: BatchNorm(8) -> [Dense 64 no bias -> LeakyReLU(0.1) ->
BatchNorm -> Dropout 0.2] x 2 -> Dense 1 -> tanh, Keras BatchNorm epsilon 1e-3,
inputs in their order M_G, M_BP, M_RP, M_J, M_H, M_K, M_W1, M_W2, 100 MC-dropout
passes with BatchNorm in inference mode (their notebook's MonteCarloModel).
The rebuild is checked against their notebook's two example stars
(HD 18143C: 0.15 +- 0.04 dex, HD 20727B: -0.28 +- 0.08 dex).

Their weights are not part of skstellar: download the file yourself and pass
its path (the ``.keras`` zip or the ``model.weights.h5`` inside it)::

    PYTHONPATH=$PWD python benchmarks/pretrained_mdwarf.py \
        --weights /tmp/metamorphosis/metamorphosisNN.keras

Without ``--weights`` (or when the file or ``h5py`` is missing) only the
shipped model is evaluated and the comparison is skipped with a message.

Caveats printed with the table: their network was trained on 4919 Birky
stars with Gaia DR3 + CatWISE2020 photometry, so many of these test stars
were in *their* training set (an advantage to them), while the inputs here
are Gaia DR2 + AllWISE (a photometric-system shift, a disadvantage to them).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile

import numpy as np

from skstellar import metrics
from skstellar.cli import predict_table
from skstellar.io import load_mdwarf_catalog
from skstellar.pretrained import load_pretrained
from skstellar.reporting import format_table

#: Input order of the released Keras model (their notebook's DataFrame).
RELEASED_FEATURES = ("M_G", "M_BP", "M_RP", "M_J", "M_H", "M_Ks", "M_W1", "M_W2")
#: Their notebook's example stars (absolute magnitudes in RELEASED_FEATURES order) and output.
EXAMPLES = {
    "HD 18143C": ([10.728, 12.331, 9.502, 7.804, 7.178, 6.904, 6.698, 6.606], 0.15, 0.04),
    "HD 20727B": ([10.053, 11.523, 8.866, 7.231, 6.701, 6.487, 6.346, 6.160], -0.28, 0.08),
}


def read_keras_weights(path):
    """The arrays of a Keras 3 ``.keras`` zip (or ``model.weights.h5``) as a dict.

    Returns
    -------
    dict
        ``"layers/<name>/vars/<i>"`` -> numpy array.
    """
    import h5py

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            raw = zf.read("model.weights.h5")
        fh = h5py.File(io.BytesIO(raw), "r")
    else:
        fh = h5py.File(path, "r")
    out = {}
    with fh:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.startswith("layers/"):
                out[name] = np.array(obj)
        fh.visititems(visit)
    return out


def released_module(path):
    """The authors' network as a torch ``nn.Sequential`` with their weights."""
    import torch
    from torch import nn

    w = read_keras_weights(path)

    def bn(name, n):
        layer = nn.BatchNorm1d(n, eps=1e-3)  # Keras default epsilon
        g, b, mean, var = (w[f"layers/{name}/vars/{i}"] for i in range(4))
        layer.weight.data = torch.tensor(g)
        layer.bias.data = torch.tensor(b)
        layer.running_mean.data = torch.tensor(mean)
        layer.running_var.data = torch.tensor(var)
        return layer

    def dense(name, n_in, n_out, bias):
        layer = nn.Linear(n_in, n_out, bias=bias)
        layer.weight.data = torch.tensor(w[f"layers/{name}/vars/0"].T.copy())
        if bias:
            layer.bias.data = torch.tensor(w[f"layers/{name}/vars/1"])
        return layer

    module = nn.Sequential(
        bn("batch_normalization", 8),
        dense("dense", 8, 64, False), nn.LeakyReLU(0.1), bn("batch_normalization_1", 64),
        nn.Dropout(0.2),
        dense("dense_1", 64, 64, False), nn.LeakyReLU(0.1), bn("batch_normalization_2", 64),
        nn.Dropout(0.2),
        dense("dense_2", 64, 1, True), nn.Tanh(),
    )
    return module.eval()


def released_predict(module, M, n_passes=100, seed=0):
    """MC-dropout mean and std of the released network; ``M`` in RELEASED_FEATURES order."""
    from skstellar.nn import mc_dropout_predict

    mean, std = mc_dropout_predict(module, np.asarray(M, np.float32), n_passes,
                                   random_state=seed)
    return np.asarray(mean).ravel(), np.asarray(std).ravel()


def summary(y, p, s):
    r = metrics.residual_summary(y, p)
    c = metrics.calibration_summary(y, p, s)
    return {"n": int(len(y)), "bias": r["mean"], "std": r["std"], "mad": r["mad"],
            "robust_std": r["robust_std"], "rmse": r["rmse"], "pearson": r["pearson"],
            "median_sigma": float(np.median(s)), "zscore_std": c["zscore_std"]}


def paired_bootstrap(y, p1, p2, n_boot=2000, seed=0):
    """Bootstrap of RMSE(p1) - RMSE(p2) on the same stars: median and 95 % interval."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), (n_boot, len(y)))
    e1, e2 = (p1 - y)[idx], (p2 - y)[idx]
    d = np.sqrt((e1 ** 2).mean(1)) - np.sqrt((e2 ** 2).mean(1))
    return float(np.median(d)), float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


def retrain_comparison(cat, theirs, seeds):
    """RMSE of the shipped recipe retrained on other splits vs the released model."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from train_pretrained_mdwarf import INPUT_COLUMNS, RECIPE, split

    from skstellar.cli import make_mdwarf_pipeline

    rows, out = [], []
    for seed in seeds:
        train, test = split(cat, seed)
        pipe = make_mdwarf_pipeline(random_state=seed, **RECIPE)
        pipe.fit(train[INPUT_COLUMNS], train["fe_h"])
        y = test["fe_h"].to_numpy()
        p1 = pipe.predict(test[INPUT_COLUMNS])
        M = pipe[:-1].transform(test[INPUT_COLUMNS])[list(RELEASED_FEATURES)].to_numpy()
        p2, _ = released_predict(theirs, M)
        r1, r2 = (float(np.sqrt(np.mean((p - y) ** 2))) for p in (p1, p2))
        d = paired_bootstrap(y, p1, p2)
        out.append({"seed": seed, "n_test": len(test), "rmse_ours": r1, "rmse_released": r2,
                    "difference_median": d[0], "difference_lo95": d[1],
                    "difference_hi95": d[2]})
        rows.append((seed, len(test), f"{r1:.4f}", f"{r2:.4f}",
                     f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]"))
    print("\nShipped recipe retrained on other seeded 80/20 splits (held-out RMSE, dex):")
    print(format_table(["split seed", "test stars", "retrained", "released",
                        "difference [95 %]"], rows))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None,
                    help="metamorphosisNN.keras (or its model.weights.h5); optional")
    ap.add_argument("--data", default=None, help="birky2020_safe_8band.csv or its folder")
    ap.add_argument("--json", default=None, help="write the figures as JSON")
    ap.add_argument("--retrain-seeds", type=int, nargs="*", default=[],
                    help="also retrain the shipped recipe on other seeded 80/20 splits and "
                         "compare with the released model on each split's test stars")
    args = ap.parse_args(argv)

    try:
        cat = load_mdwarf_catalog(args.data)
    except FileNotFoundError as exc:
        print(f"skipped: {exc}")
        return 0
    model = load_pretrained("mdwarf-feh")
    ids = set(model.card_["split"]["test_apogee_ids"])
    test = cat[cat["apogee_id"].astype(str).isin(ids)].reset_index(drop=True)
    y = test["fe_h"].to_numpy()
    ours = predict_table(model, test)
    in_dom = ours["in_domain"].to_numpy()
    results = {"n_test": len(test), "ours": {
        "all": summary(y, ours["fe_h_pred"].to_numpy(), ours["fe_h_pred_error"].to_numpy()),
        "in_domain": summary(y[in_dom], ours["fe_h_pred"].to_numpy()[in_dom],
                             ours["fe_h_pred_error"].to_numpy()[in_dom])}}
    print(f"Held-out stars: {len(test)} of {len(cat)} (8-band Birky 2020 sample, Gaia DR2 + "
          f"2MASS + AllWISE); {int(in_dom.sum())} inside the validity domain.")

    theirs = None
    if args.weights is None:
        print("skipped the comparison: pass --weights PATH to metamorphosisNN.keras "
              "(github.com/chrduque/metamorphosis-NN)")
    else:
        try:
            import h5py  # noqa: F401  (only to report its absence cleanly)
        except ImportError:
            print("skipped the comparison: h5py is not installed (pip install h5py)")
        else:
            try:
                module = released_module(args.weights)
            except (FileNotFoundError, OSError, KeyError) as exc:
                print(f"skipped the comparison: cannot read {args.weights!r}: {exc}")
            else:
                theirs = module
    if theirs is not None:
        ex_rows = []
        for name, (m, want, want_sd) in EXAMPLES.items():
            mu, sd = released_predict(theirs, [m])
            ex_rows.append((name, f"{want:+.2f} +- {want_sd:.2f}", f"{mu[0]:+.2f} +- {sd[0]:.2f}"))
        print("\nRebuild check on their notebook's example stars:")
        print(format_table(["star", "their notebook", "torch rebuild"], ex_rows))
        M = model[:-1].transform(test)[list(RELEASED_FEATURES)].to_numpy()
        p2, s2 = released_predict(theirs, M)
        results["released"] = {"all": summary(y, p2, s2),
                               "in_domain": summary(y[in_dom], p2[in_dom], s2[in_dom])}
        results["rmse_difference_ours_minus_released"] = dict(zip(
            ("median", "lo95", "hi95"),
            paired_bootstrap(y, ours["fe_h_pred"].to_numpy(), p2)))

    rows = []
    for key in ("bias", "std", "mad", "robust_std", "rmse", "pearson", "median_sigma",
                "zscore_std"):
        row = [key]
        for who in ("ours", "released"):
            for dom in ("all", "in_domain"):
                row.append(f"{results[who][dom][key]:.3f}" if who in results else "-")
        rows.append(row)
    print()
    print(format_table(["held-out stars (dex)", "mdwarf-feh all", "mdwarf-feh in-domain",
                        "released all", "released in-domain"], rows))
    if "released" in results:
        d = results["rmse_difference_ours_minus_released"]
        print(f"\nRMSE(mdwarf-feh) - RMSE(released), paired bootstrap over the same stars: "
              f"{d['median']:+.4f} dex (95 % interval {d['lo95']:+.4f} to {d['hi95']:+.4f}).")
        print("Caveats: the released network was trained on 4919 Birky stars with Gaia DR3 + "
              "CatWISE2020 photometry, so many of these stars were in its training set; the "
              "inputs here are Gaia DR2 + AllWISE. sigma is the MC-dropout std for both.")
    if args.retrain_seeds and theirs is not None:
        results["retrained"] = retrain_comparison(cat, theirs, args.retrain_seeds)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
