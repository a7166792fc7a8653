"""Rebuild the shipped ``mdwarf-feh`` model from the real Birky et al. (2020) sample.

One command, seeded, no network::

    PYTHONPATH=$PWD python scripts/train_pretrained_mdwarf.py

It reads ``../shared/data/mdwarf_photometry/birky2020_safe_8band.csv`` (2459
stars with all eight bands: Gaia DR2 G/BP/RP, 2MASS J/H/Ks, AllWISE W1/W2 and
the Cannon [Fe/H]; see that folder's README), splits it 80/20 with a fixed
seed, trains ``AbsoluteMagnitudes -> MDwarfMetallicityRegressor`` with the
authors' released network (``architecture="released"``: LeakyReLU(0.1), no
hidden biases; otherwise the paper's recipe: weighted MSE, Adam 2e-4, batch
32, early stopping; inside ``fit`` 25 % of the training rows are the
early-stopping validation set, i.e. the paper's 60/20/20), measures the held-out
accuracy, and writes
``skstellar/pretrained/data/mdwarf-feh/{weights.npz,model.json}``. The test
stars' APOGEE ids are stored in the card so benchmarks use the same stars.

The recipe was chosen on the training split only (``--select-recipe`` reruns
that comparison: an inner 75/25 split of the 80 % training stars, two seeds
per candidate; the test stars are never used). Measured there (RMSE, dex,
seeds 0/1): paper 0.084/0.088, released 0.073/0.074, released + plateau
schedule 0.074/0.071, released 128x2 0.074/0.073 - the released network wins
and the extra options do not help beyond seed noise.

Re-run it after any change to the estimator's defaults (for example the
calibrated uncertainties) to refresh the shipped model.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from skstellar import metrics
from skstellar.cli import make_mdwarf_pipeline, predict_table
from skstellar.columns import BAND_COLUMNS, GAIA_DR3, MDWARF_BANDS
from skstellar.io import load_mdwarf_catalog
from skstellar.pretrained import PRETRAINED_DIR, save_mdwarf_pipeline

#: Catalogue columns the shipped model reads (archive names).
INPUT_COLUMNS = [BAND_COLUMNS[b] for b in MDWARF_BANDS] + [GAIA_DR3["parallax"],
                                                             GAIA_DR3["parallax_error"]]
SEED = 0
TEST_SIZE = 0.2
#: Estimator parameters of the shipped model (chosen by ``--select-recipe``).
RECIPE = {"architecture": "released"}
#: Candidates compared by ``--select-recipe``.
CANDIDATES = {
    "paper": {},
    "released": {"architecture": "released"},
    "released+plateau": {"architecture": "released", "lr_schedule": "plateau", "patience": 80},
    "released 128x2": {"architecture": "released", "hidden_layer_sizes": (128, 128)},
}


def split(cat, seed=SEED):
    """The fixed 80/20 split of the 8-band Birky sample."""
    return train_test_split(cat, test_size=TEST_SIZE, random_state=seed)


def accuracy(y, pred):
    """Held-out figures (dex) of a prediction table, all stars and in-domain ones."""
    p, s = pred["fe_h_pred"].to_numpy(), pred["fe_h_pred_error"].to_numpy()
    out = {}
    for key, m in (("all", np.ones(len(y), bool)), ("in_domain", pred["in_domain"].to_numpy())):
        r = metrics.residual_summary(y[m], p[m])
        c = metrics.calibration_summary(y[m], p[m], s[m])
        out[key] = {"n": int(m.sum()), "bias": r["mean"], "std": r["std"], "mad": r["mad"],
                    "robust_std": r["robust_std"], "rmse": r["rmse"], "pearson": r["pearson"],
                    "median_sigma": float(np.median(s[m])), "zscore_std": c["zscore_std"]}
    return out


def select_recipe(train, seeds=(0, 1)):
    """Compare CANDIDATES on an inner 75/25 split of the training stars (never the test)."""
    fit, val = train_test_split(train, test_size=0.25, random_state=1)
    for name, params in CANDIDATES.items():
        for seed in seeds:
            pipe = make_mdwarf_pipeline(random_state=seed, **params)
            pipe.fit(fit[INPUT_COLUMNS], fit["fe_h"])
            r = pipe.predict(val[INPUT_COLUMNS]) - val["fe_h"].to_numpy()
            print(f"{name:18s} seed {seed}: inner-validation RMSE {np.sqrt(np.mean(r**2)):.4f} dex "
                  f"({pipe[-1].n_epochs_} epochs)", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="birky2020_safe_8band.csv or its folder")
    ap.add_argument("--out", default=str(PRETRAINED_DIR / "mdwarf-feh"))
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--select-recipe", action="store_true",
                    help="only rerun the recipe comparison on the training split")
    args = ap.parse_args(argv)

    cat = load_mdwarf_catalog(args.data)
    data_sha = hashlib.sha256(Path(cat.attrs["path"]).read_bytes()).hexdigest()
    train, test = split(cat, args.seed)
    if args.select_recipe:
        select_recipe(train)
        return 0
    pipe = make_mdwarf_pipeline(random_state=args.seed, **RECIPE)
    t0 = time.perf_counter()
    pipe.fit(train[INPUT_COLUMNS], train["fe_h"])
    t_fit = time.perf_counter() - t0
    pred = predict_table(pipe, test[INPUT_COLUMNS])
    acc = accuracy(test["fe_h"].to_numpy(), pred)
    reg = pipe[-1]
    a, d = acc["all"], acc["in_domain"]
    summary = (f"held-out 20 % of the Birky sample ({a['n']} stars): bias {a['bias']:+.3f}, "
               f"std {a['std']:.3f}, RMSE {a['rmse']:.3f} dex; in-domain {d['n']} stars: "
               f"std {d['std']:.3f} dex; median sigma {a['median_sigma']:.3f} dex "
               f"(z std {a['zscore_std']:.2f}; sigma = {reg.uncertainty})")
    card = {
        "description": "[Fe/H] (dex) of M0V-M5V dwarfs from Gaia G/BP/RP, 2MASS J/H/Ks, "
                       "WISE W1/W2 and parallax (Duque-Arribas et al. 2025, their released "
                       "network)",
        "training_data": "Birky et al. (2020) APOGEE/Cannon safe sample, 8-band subset "
                         f"(N={len(cat)}): Gaia DR2 + 2MASS + AllWISE, Cannon [Fe/H]; "
                         f"seeded 80/20 split, {len(train)} train ({len(train) - reg.n_valid_} "
                         f"fit + {reg.n_valid_} early-stopping validation) / {len(test)} test",
        "validity_domain": "1.85 <= G-J <= 3.10 mag, -0.10 <= W1-W2 <= 0.24 mag (M0V-M5V), "
                           "-0.45 <= [Fe/H] <= 0.45 dex; nearby stars (no extinction "
                           "correction); flags: outside_colour_box, outside_feh_range, "
                           "saturated, in_domain",
        "accuracy_summary": summary,
        "accuracy": acc,
        "uncertainty": ("fe_h_pred_error is the calibrated total sigma: "
                        "sqrt(a * MC-dropout var + input var + b^2), a and b fitted by maximum "
                        "likelihood on the early-stopping validation stars (never the test "
                        "stars); load with regressor__uncertainty='mc' for the paper's raw "
                        "MC-dropout spread") if reg.uncertainty == "calibrated" else
                       "fe_h_pred_error is the raw Monte Carlo dropout std (model uncertainty "
                       "only, 100 passes); it underestimates the scatter",
        "split": {"seed": args.seed, "test_size": TEST_SIZE,
                  "function": "sklearn.model_selection.train_test_split",
                  "test_apogee_ids": test["apogee_id"].astype(str).tolist()},
        "data_file": {"name": Path(cat.attrs["path"]).name, "sha256": data_sha},
        "recipe": {"params": dict(RECIPE), "architecture": reg.architecture,
                   "epochs": int(reg.n_epochs_),
                   "fit_seconds": round(t_fit, 1),
                   "script": "scripts/train_pretrained_mdwarf.py"},
        "paper": "Duque-Arribas et al. 2025, A&A (METaMorPHosis-NN), Sect. 2.2-2.3",
    }
    folder = save_mdwarf_pipeline(pipe, args.out, card=card)
    print(summary)
    print(f"{reg.n_epochs_} epochs, fit {t_fit:.1f} s; wrote {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
