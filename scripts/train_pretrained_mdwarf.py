"""Rebuild the shipped ``mdwarf-feh`` model from the real Birky et al. (2020) sample.

One command, seeded, no network::

    PYTHONPATH=$PWD python scripts/train_pretrained_mdwarf.py

It reads ``../shared/data/mdwarf_photometry/birky2020_safe_8band.csv`` (2459
stars with all eight bands: Gaia DR2 G/BP/RP, 2MASS J/H/Ks, AllWISE W1/W2 and
the Cannon [Fe/H]; see that folder's README), splits it 80/20 with a fixed
seed, trains ``AbsoluteMagnitudes -> MDwarfMetallicityRegressor`` with the
estimator's defaults (the paper's network and recipe; inside ``fit`` 25 % of
the training rows are the early-stopping validation set, i.e. the paper's
60/20/20), measures the held-out accuracy, and writes
``skstellar/pretrained/data/mdwarf-feh/{weights.npz,model.json}``. The test
stars' APOGEE ids are stored in the card so benchmarks use the same stars.

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
from skstellar.datasets import load_mdwarf_catalog
from skstellar.pretrained import PRETRAINED_DIR, save_mdwarf_pipeline

#: Catalogue columns the shipped model reads (archive names).
INPUT_COLUMNS = [BAND_COLUMNS[b] for b in MDWARF_BANDS] + [GAIA_DR3["parallax"],
                                                             GAIA_DR3["parallax_error"]]
SEED = 0
TEST_SIZE = 0.2


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="birky2020_safe_8band.csv or its folder")
    ap.add_argument("--out", default=str(PRETRAINED_DIR / "mdwarf-feh"))
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)

    cat = load_mdwarf_catalog(args.data)
    data_sha = hashlib.sha256(Path(cat.attrs["path"]).read_bytes()).hexdigest()
    train, test = split(cat, args.seed)
    pipe = make_mdwarf_pipeline(random_state=args.seed)
    t0 = time.perf_counter()
    pipe.fit(train[INPUT_COLUMNS], train["fe_h"])
    t_fit = time.perf_counter() - t0
    pred = predict_table(pipe, test[INPUT_COLUMNS])
    acc = accuracy(test["fe_h"].to_numpy(), pred)
    reg = pipe[-1]
    a, d = acc["all"], acc["in_domain"]
    summary = (f"held-out 20 % of the Birky sample ({a['n']} stars): bias {a['bias']:+.3f}, "
               f"std {a['std']:.3f}, RMSE {a['rmse']:.3f} dex; in-domain {d['n']} stars: "
               f"std {d['std']:.3f} dex; median MC sigma {a['median_sigma']:.3f} dex "
               f"(z std {a['zscore_std']:.2f}: raw MC-dropout sigma, not calibrated)")
    card = {
        "description": "[Fe/H] (dex) of M0V-M5V dwarfs from Gaia G/BP/RP, 2MASS J/H/Ks, "
                       "WISE W1/W2 and parallax (Duque-Arribas et al. 2025 network)",
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
        "uncertainty": "fe_h_pred_error is the raw Monte Carlo dropout std (model "
                       "uncertainty only, 100 passes); it underestimates the scatter",
        "split": {"seed": args.seed, "test_size": TEST_SIZE,
                  "function": "sklearn.model_selection.train_test_split",
                  "test_apogee_ids": test["apogee_id"].astype(str).tolist()},
        "data_file": {"name": Path(cat.attrs["path"]).name, "sha256": data_sha},
        "recipe": {"architecture": reg.architecture, "epochs": int(reg.n_epochs_),
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
