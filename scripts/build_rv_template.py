"""Rebuild the default radial-velocity template of ``RadialVelocityCorrector``.

One command, deterministic, no network::

    PYTHONPATH=$PWD python scripts/build_rv_template.py

The template is the package's own synthetic M-dwarf spectrum
(:func:`skstellar.datasets.mdwarf_model_spectrum`: TiO/CaH/VO band heads,
K I, Na I, Ca II triplet and H-alpha at vacuum wavelengths) for an early-M
dwarf - Teff 3600 K, log g 4.8, [M/H] 0.0, the middle of LAMOST's M0-M3
sample - at LAMOST's resolving power R = 1800, on 5900-9000 A in 0.5 A steps
(the 6000-8900 A window widened by the +-500 km/s velocity search). It is
shifted by a velocity zero point ``ZERO_POINT_KMS`` and written to
``skstellar/preprocessing/data/mdwarf_rv_template.npz``
(``wavelength`` [A, vacuum], ``flux`` [relative to the pseudo-continuum],
float32, and a ``provenance`` string). No third-party model spectrum is
shipped: the BT-Settl templates in ``../shared/data/synthetic_spectra`` carry
no licence statement, so they are not redistributed.

Zero point: the simulator's band heads are schematic, so velocities measured
with the raw synthetic spectrum were offset. ``--measure-zero-point`` measures
the 21 real LAMOST M-dwarf spectra of ``../shared/data/lamost_spectra`` with
the raw synthetic template and with the BT-Settl M0V model (Teff 3800 K,
air wavelengths converted to vacuum, degraded to R = 1800; used only for this
number, not shipped) and prints the median difference. We measured -25.2 km/s
(robust scatter 9.4 km/s over the 21 stars); the shipped template is shifted by
it so its velocities sit on the BT-Settl scale. Rebuilding uses the recorded
constant, so it needs no data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from skstellar.datasets import mdwarf_model_spectrum

LABELS = {"teff": 3600.0, "logg": 4.8, "m_h": 0.0}
RESOLUTION = 1800.0
GRID = (5900.0, 9000.0, 0.5)
#: Velocity zero point [km/s] (median raw-template minus BT-Settl velocity, see above).
ZERO_POINT_KMS = -25.2
C_KMS = 299792.458
OUT = Path(__file__).resolve().parents[1] / "skstellar" / "preprocessing" / "data" / \
    "mdwarf_rv_template.npz"


def build(zero_point=ZERO_POINT_KMS):
    """(wavelength, flux) of the template, float32; wavelengths scaled by 1 + zero_point / c."""
    lo, hi, step = GRID
    wave = lo + step * np.arange(int(round((hi - lo) / step)) + 1)
    flux = mdwarf_model_spectrum([[LABELS["teff"], LABELS["logg"], LABELS["m_h"]]], wave,
                                 resolution=RESOLUTION)[0]
    wave = wave * (1.0 + zero_point / C_KMS)
    return wave.astype(np.float32), flux.astype(np.float32)


def measure_zero_point():
    """Median (raw synthetic - BT-Settl M0V) velocity on the real LAMOST M-dwarf spectra."""
    from astropy.io import fits

    from skstellar.io import find_shared_data, read_lamost_spectra
    from skstellar.preprocessing import RadialVelocityCorrector
    from skstellar.preprocessing.velocity import air_to_vacuum

    lamost, synth = find_shared_data("lamost_spectra"), find_shared_data("synthetic_spectra")
    if lamost is None or synth is None:
        raise SystemExit("needs ../shared/data/lamost_spectra and synthetic_spectra")
    batch = read_lamost_spectra(sorted(str(p) for p in lamost.iterdir() if p.is_dir()))
    bt = fits.getdata(synth / "bt_settl_pfs_etc" / "star_m0v.fits", 1)
    w, f = np.asarray(bt["wavelength"], float), np.asarray(bt["flux"], float)
    keep = (w > 5800) & (w < 9100)
    raw = RadialVelocityCorrector(template=build(0.0), on_failure="nan").fit().measure(batch)
    ref = RadialVelocityCorrector(template=(air_to_vacuum(w[keep]), f[keep]),
                                  template_resolution=RESOLUTION,
                                  on_failure="nan").fit().measure(batch)
    d = (raw["rv"] - ref["rv"]).to_numpy()
    d = d[np.isfinite(d)]
    med = float(np.median(d))
    print(f"{len(d)} spectra: median raw - BT-Settl {med:+.1f} km/s, robust scatter "
          f"{1.4826 * np.median(np.abs(d - med)):.1f} km/s")
    return med


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--measure-zero-point", action="store_true",
                    help="measure the zero point on the shared LAMOST spectra and stop")
    args = ap.parse_args(argv)
    if args.measure_zero_point:
        measure_zero_point()
        return 0
    wave, flux = build()
    provenance = (f"skstellar.datasets.mdwarf_model_spectrum teff={LABELS['teff']:g} K "
                  f"logg={LABELS['logg']:g} m_h={LABELS['m_h']:g} R={RESOLUTION:g}; "
                  f"grid {GRID[0]:g}-{GRID[1]:g} A step {GRID[2]:g} A, vacuum, scaled by "
                  f"1 + {ZERO_POINT_KMS:g} km/s / c (zero point tied to BT-Settl M0V); "
                  "built by scripts/build_rv_template.py")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, wavelength=wave, flux=flux, provenance=np.array(provenance))
    print(f"wrote {args.out}: {len(wave)} pixels, min flux {flux.min():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
