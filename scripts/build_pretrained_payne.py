"""Package The Payne's legacy 2018 emulator as the shipped ``payne-legacy-2018`` model.

One command, deterministic, no network::

    PYTHONPATH=$PWD python scripts/build_pretrained_payne.py

Reads ``../shared/data/payne/legacy_2018/NN_normalized_spectra.npz`` (real
trained per-pixel networks of El-Badry et al. 2018, from the first commit
7d565bf of github.com/tingyuansen/The_Payne, MIT licence, "Copyright 2018 by
Kareem El-Badry") and ``apogee_wavelength.npz`` (same repository, MIT,
"Copyright 2018 by Yuan-Sen Ting"), loads them with
:meth:`skstellar.PayneEmulator.from_npz`, writes them back with
:meth:`~skstellar.PayneEmulator.to_npz` (arrays only, plus the wavelength grid
and label names) into ``skstellar/pretrained/data/payne-legacy-2018/``
together with ``model.json`` (model card) and ``LICENSE.txt`` (the MIT
notices, which the licence requires to travel with the copies).

Measured figure in the card: a label fit (skstellar.SpectralLabelFitter) to
the one real APOGEE combined spectrum in ``../shared/data/payne``, with the
APOGEE mask and pixels with error > 0.1 left out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from skstellar import PayneEmulator, SpectralLabelFitter
from skstellar.io import find_shared_data
from skstellar.pretrained import FORMAT_VERSION, PRETRAINED_DIR

LICENSE = """The Payne legacy 2018 emulator shipped with skstellar
=====================================================

weights.npz holds the per-pixel networks of neural_nets/NN_normalized_spectra.npz
from commit 7d565bf1f088b021f880c46866d4c0ad96855a04 of
https://github.com/tingyuansen/The_Payne (El-Badry et al. 2018), and the
wavelength grid of The_Payne/other_data/apogee_wavelength.npz (same repository,
HEAD 610ff9142386f178a60cca6391e078e397864eb6), re-saved as arrays by
scripts/build_pretrained_payne.py. Their licences, as stated in that
repository's README at those commits:

Copyright 2018 by Kareem El-Badry. (weights)
Copyright 2018 by Yuan-Sen Ting. (wavelength grid)

This software is governed by the MIT License:

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in
all copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
THE SOFTWARE.
"""


def real_spectrum_fit(emu, folder):
    """Labels and reduced chi-square of the real APOGEE spectrum in the data folder."""
    spec = np.load(folder / "apogee_combined_2M13012770+5754582.npz")
    mask = np.load(folder / "apogee_mask.npz")["apogee_mask"].astype(bool)
    flux, err = spec["spectrum"].astype(np.float64), spec["spec_err"].astype(np.float64)
    bad = mask | (err > 0.1) | ~np.isfinite(flux)
    res = SpectralLabelFitter(emulator=emu, random_state=0).fit().fit_labels(
        flux[None], err[None], bad[None])
    return {name: float(v) for name, v in zip(res.label_names, res.labels[0])}, \
        float(res.chi2_reduced[0]), int(res.n_good_pixels[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(PRETRAINED_DIR / "payne-legacy-2018"))
    args = ap.parse_args(argv)
    folder = find_shared_data("payne")
    if folder is None:
        raise SystemExit("needs ../shared/data/payne")
    wave = np.load(folder / "apogee_wavelength.npz")["wavelength"]
    emu = PayneEmulator.from_npz(folder / "legacy_2018" / "NN_normalized_spectra.npz",
                                 wavelength=wave)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    emu.to_npz(out / "weights.npz")
    with np.load(out / "weights.npz", allow_pickle=False) as npz:  # re-save compressed
        arrays = {k: npz[k] for k in npz.files}
    np.savez_compressed(out / "weights.npz", **arrays)
    labels, chi2, n_good = real_spectrum_fit(emu, folder)
    names = list(emu.label_names_)
    lo, hi = np.asarray(emu.x_min_), np.asarray(emu.x_max_)
    card = {
        "description": "The Payne legacy emulator (El-Badry et al. 2018): normalised APOGEE "
                       "H-band spectrum (7214 pixels) from Teff, log g, [Fe/H], [Mg/Fe], vmacro",
        "training_data": "APOGEE spectra of single FGK dwarfs (data-driven, El-Badry et al. "
                         "2018); weights from github.com/tingyuansen/The_Payne commit 7d565bf, "
                         "MIT licence (LICENSE.txt)",
        "validity_domain": "; ".join(f"{n} {a:.3g} to {b:.3g}" for n, a, b in zip(names, lo, hi))
                           + " (FGK dwarfs; no M dwarfs); APOGEE vacuum wavelengths "
                             "15168-16937 A",
        "accuracy_summary": (
            f"fit to the real APOGEE spectrum 2M13012770+5754582 ({n_good} good pixels): "
            f"reduced chi2 {chi2:.2f}, "
            + ", ".join(f"{k} {v:.3g}" for k, v in labels.items())
            + " (no reference labels: a smoke test, not an accuracy)"),
        "accuracy": {"real_spectrum_fit": {"labels": labels, "chi2_reduced": chi2,
                                           "n_good_pixels": n_good}},
        "inputs": names,
        "usage": "load_pretrained('payne-legacy-2018') -> PayneEmulator; predict(labels) -> "
                 "flux; SpectralLabelFitter(emulator).fit_labels(flux, err) -> labels",
        "recipe": {"script": "scripts/build_pretrained_payne.py"},
    }
    meta = {"format_version": FORMAT_VERSION, "kind": "payne_npz", "card": card}
    (out / "model.json").write_text(json.dumps(meta, indent=1) + "\n")
    (out / "LICENSE.txt").write_text(LICENSE)
    print(card["accuracy_summary"])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
