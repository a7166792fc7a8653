"""Simulated synthetic and "observed" LAMOST-like M-dwarf spectra with a known synthetic gap.

The Cycle-StarNet analysis of LAMOST M dwarfs (Zhang et al., Sects. 2-3)
learns the mapping between two *unpaired* sets of spectra: model spectra of
M dwarfs (the "synthetic domain", BT-Settl through The Payne) and real LAMOST
low-resolution spectra (the "observed domain"), which differ by a "synthetic
gap" (model imperfections, observational effects and processing errors).
This module simulates both domains offline, with a gap whose every ingredient
is known, so that domain adaptation and label fitting can be checked against
truth:

* :func:`mdwarf_model_spectrum`, the exact, deterministic label -> spectrum
  model of the synthetic domain: molecular bands (TiO, CaH, VO) and atomic
  lines (K I, Na I, Ca II, H-alpha) whose strengths are smooth functions of
  the labels (:data:`LABEL_RANGES`), seen through a Gaussian LSF;
* :func:`make_mdwarf_spectra`, the two domains as
  :class:`~skstellar.spectrum.SpectrumBatch` objects (plus, on request, the
  noiseless truth of the observed stars);
* :func:`draw_mdwarf_labels`, the label distribution both domains share;
* :func:`mdwarf_wavelength_grid`, the paper's 6000-8900 A grid at 1 A;
* :data:`MDWARF_BAND_SYSTEMS`, :data:`MDWARF_ATOMIC_LINES` and
  :data:`MDWARF_GAP_FEATURES`, the tables behind the model and the gap.

All wavelengths are vacuum Angstrom (LAMOST's convention); flux is relative
to the model's pseudo-continuum (1 outside the features) unless
``normalized=False`` is asked for. The band and line tables are a stylised
model tuned to the index scale of M dwarfs at R ~ 2000, not a line list.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.fft as sp_fft
from scipy.special import expit
from sklearn.utils import Bunch, check_random_state

from .._validation import (
    check_finite_columns,
    check_integer,
    column_names,
    is_named_input,
    missing_column_error,
)
from ..spectrum import SPEED_OF_LIGHT_KMS, SpectrumBatch
from .simulation import _HC_K, flag_bad_pixels, truncated_normal

__all__ = [
    "LABEL_NAMES",
    "LABEL_RANGES",
    "MDWARF_ATOMIC_LINES",
    "MDWARF_BAND_SYSTEMS",
    "MDWARF_GAP_FEATURES",
    "draw_mdwarf_labels",
    "make_mdwarf_spectra",
    "mdwarf_model_spectrum",
    "mdwarf_wavelength_grid",
]

#: FWHM / sigma of a Gaussian.
_FWHM_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))

#: Label columns, in the order of the (n, 3) label arrays.
LABEL_NAMES = ("teff", "logg", "m_h")
#: Range of the simulated labels: Teff [K], log g [dex, cgs], [M/H] [dex]
#: (the synthetic training set of Zhang et al., Sect. 3.3.2).
LABEL_RANGES = {"teff": (3000.0, 4000.0), "logg": (4.5, 5.5), "m_h": (-1.0, 0.5)}

#: Reference star of the strength laws (Teff [K], log g, [M/H]): the tabulated
#: optical depths ``tau_ref`` hold for it.
_REF = (3500.0, 5.0, 0.0)

# ------------------------------------------------ The spectral model (tables)

#: Molecular band systems of the model. Each entry: ``species`` (sets how the
#: strength scales with the labels, see :func:`mdwarf_model_spectrum`),
#: ``tau_ref`` (optical depth at the strongest head for the reference star
#: Teff = 3500 K, log g = 5.0, [M/H] = 0), ``heads`` ((vacuum wavelength [A],
#: relative strength), ...), ``tail`` (e-folding length [A] of the absorption
#: behind each head; positive = degraded to the red) and ``end`` (where the
#: system fades out [A]). Head positions are approximate (+-3 A): the model is
#: stylised, not a line list.
MDWARF_BAND_SYSTEMS = {
    "TiO_6150": dict(species="TiO", tau_ref=0.45, tail=55.0, end=6360.0,
                     heads=((6160.0, 1.0), (6189.0, 0.7), (6217.0, 0.55), (6253.0, 0.4))),
    "CaH_6380": dict(species="CaH", tau_ref=0.10, tail=25.0, end=6440.0,
                     heads=((6384.0, 1.0), (6391.0, 0.6))),
    "TiO_6650": dict(species="TiO", tau_ref=0.26, tail=70.0, end=6860.0,
                     heads=((6653.0, 1.0), (6683.0, 0.7), (6716.0, 0.5))),
    "CaH_6800": dict(species="CaH", tau_ref=0.90, tail=45.0, end=7030.0,
                     heads=((6760.0, 0.5), (6832.0, 1.0), (6910.0, 0.6), (6960.0, 0.45))),
    "TiO_7050": dict(species="TiO", tau_ref=0.36, tail=110.0, end=7420.0,
                     heads=((7055.0, 1.0), (7090.0, 0.8), (7128.0, 0.8))),
    "VO_7400": dict(species="VO", tau_ref=0.05, tail=55.0, end=7560.0,
                    heads=((7336.0, 0.6), (7374.0, 0.8), (7407.0, 1.0), (7474.0, 0.6))),
    "TiO_7600": dict(species="TiO", tau_ref=0.20, tail=90.0, end=7920.0,
                     heads=((7591.0, 0.8), (7668.0, 1.0), (7705.0, 0.4))),
    "VO_7900": dict(species="VO", tau_ref=0.04, tail=50.0, end=8010.0,
                    heads=((7853.0, 1.0), (7867.0, 0.8), (7898.0, 0.5))),
}

#: Atomic lines of the model: ``species``, vacuum ``wavelengths`` [A] and
#: relative strengths ``weights``, the core optical depth ``tau_ref`` and
#: Gaussian core width ``sigma`` [A] (reference star), and for the
#: pressure-broadened alkali lines a broad wing component (``wing_tau`` times
#: the core depth, Gaussian of width ``wing_sigma`` [A]) whose depth grows with
#: log g.
MDWARF_ATOMIC_LINES = {
    "KI": dict(species="KI", wavelengths=(7667.01, 7701.08), weights=(1.0, 0.85),
               tau_ref=1.1, sigma=0.9, wing_tau=0.08, wing_sigma=7.0),
    "NaI": dict(species="NaI", wavelengths=(8185.51, 8197.08), weights=(0.85, 1.0),
                tau_ref=0.55, sigma=0.9, wing_tau=0.10, wing_sigma=5.0),
    "CaII": dict(species="CaII", wavelengths=(8500.36, 8544.44, 8664.52),
                 weights=(0.55, 1.0, 0.85), tau_ref=0.45, sigma=1.2, wing_tau=0.0,
                 wing_sigma=0.0),
    "Halpha": dict(species="Halpha", wavelengths=(6564.61,), weights=(1.0,), tau_ref=0.10,
                   sigma=1.0, wing_tau=0.0, wing_sigma=0.0),
}

#: Strength law (theta [K], a_m, a_g) of each species and gravity exponent a_wing of the
#: alkali wings (the formulas: :func:`mdwarf_model_spectrum`, Notes).
_SPECIES_LAWS = {
    "TiO": (520.0, 0.5, 0.1),
    "CaH": (650.0, 0.2, 0.4),
    "VO": (220.0, 0.5, 0.0),
    "KI": (1300.0, 0.25, 0.0),
    "NaI": (1100.0, 0.25, 0.0),
    "CaII": (-1500.0, 0.35, -0.3),
    "Halpha": (-800.0, 0.0, 0.0),
}
_WING_GRAVITY = {"KI": 0.5, "NaI": 0.7}

#: Band-head edge width [A] (logistic) and fade-out width at the band end [A].
_EDGE_WIDTH = 0.6
_END_WIDTH = 12.0

#: Ingredients of the synthetic gap (observed domain only), scaled by
#: ``gap_scale``; see :func:`make_mdwarf_spectra` (Notes) for how they enter.
MDWARF_GAP_FEATURES = {
    # a TiO system the model lacks (epsilon system near 8430-8460 A): strength
    # follows TiO times a hidden per-star factor
    "TiO_8430": dict(species="TiO", tau_ref=0.12, tail=50.0, end=8600.0,
                     heads=((8435.0, 1.0), (8445.0, 0.8), (8455.0, 0.6))),
    # telluric O2 / H2O residuals (fixed positions, hidden per-star strength)
    "O2_B": dict(tau_ref=0.25, tail=8.0, end=6890.0, heads=((6870.0, 1.0),)),
    "O2_A": dict(tau_ref=0.60, tail=25.0, end=7690.0, heads=((7596.0, 1.0), (7603.0, 0.6))),
    "H2O_7200": dict(tau_ref=0.05, band=(7165.0, 7330.0)),
    "H2O_8200": dict(tau_ref=0.05, band=(8130.0, 8240.0)),
}
#: Number, wavelength range [A], depth range and Gaussian width [A] of the
#: weak lines "missing from the model's line list" (fixed positions).
_FOREST = dict(n_lines=80, span=(6020.0, 8880.0), tau=(0.02, 0.12), sigma=0.8, seed=20250611)
#: Intrinsic Gaussian width [A] of the H-alpha emission of active stars.
_HALPHA_EMISSION_SIGMA = 1.0
#: Systematic part of the continuum distortion: coefficients of the Legendre
#: polynomials P1, P2, P3 (on u = (lambda - 7450) / 1450) for gap_scale = 1.
_CONT_SYSTEMATIC = (0.03, -0.02, 0.01)
#: Per-star scatter of the Legendre coefficients P1..P3 for gap_scale = 1.
_CONT_SCATTER = 0.025
#: Reference wavelength range [A] of the continuum-distortion polynomials.
_CONT_RANGE = (6000.0, 8900.0)
#: Residual radial-velocity error [km/s] (1 sigma) for gap_scale = 1.
_RV_RESIDUAL = 5.0
#: Lognormal scatter (natural log) of the hidden extra-band and forest strengths.
_EXTRA_BAND_SCATTER = 0.4
_FOREST_SCATTER = 0.3

#: Fine-grid step in ln(lambda) (~0.3-0.45 A over 6000-8900 A).
_FINE_STEP = 5e-5
#: Stars per block in the renderer (memory ~ 6 x block x fine pixels x 8 bytes).
_BLOCK = 512
#: Extra fine-grid padding, in LSF sigmas, beyond the output range.
_PAD_SIGMAS = 10.0

#: Relative photon-count continuum of the observed domain: lambda * B_lambda(Teff)
#: through a LAMOST-like red-arm throughput exp(-((lambda - 7300) / 1500)**2 / 2),
#: and the sky/read-noise floor in units of the continuum.
_THROUGHPUT = (7300.0, 1500.0)
_NOISE_FLOOR = 0.05


# ----------------------------------------------------------- Grids and labels


def mdwarf_wavelength_grid(start=6000.0, stop=8900.0, step=1.0):
    """The linear wavelength grid of the LAMOST M-dwarf analysis.

    Parameters
    ----------
    start, stop : float, default=6000.0, 8900.0
        First and last wavelength [Angstrom, vacuum] (both included when
        ``stop - start`` is a multiple of ``step``).
    step : float, default=1.0
        Pixel size [Angstrom].

    Returns
    -------
    ndarray of shape (n_pixels,)
        Wavelengths [Angstrom]; 2901 pixels by default (Zhang et al.,
        Sect. 2.4: 6000-8900 A resampled at 1 A).
    """
    start, stop, step = float(start), float(stop), float(step)
    if not (np.isfinite([start, stop, step]).all() and 0 < start < stop and step > 0):
        raise ValueError(
            f"Need 0 < start < stop and step > 0, got start={start!r}, stop={stop!r}, "
            f"step={step!r}."
        )
    n = int(np.floor((stop - start) / step + 1e-9)) + 1
    return start + step * np.arange(n)


def draw_mdwarf_labels(n, random_state=None):
    """Draw M-dwarf labels from the distribution shared by both simulated domains.

    Parameters
    ----------
    n : int
        Number of stars.
    random_state : int, numpy.random.RandomState or None, default=None
        Seed or generator (see :func:`sklearn.utils.check_random_state`).

    Returns
    -------
    pandas.DataFrame
        Columns ``teff`` [K], ``logg`` [dex], ``m_h`` [dex], within
        :data:`LABEL_RANGES`.

    Notes
    -----
    A LAMOST-like, early-M-dominated sample (Zhang et al., Sect. 3.3.2 and
    Fig. 9): Teff = 3000 + 1000 B with B ~ Beta(2.2, 1.5) (mean ~3600 K, most
    stars M0-M3); [M/H] ~ Normal(-0.15, 0.30) truncated to [-1, 0.5]; log g
    follows a 5-Gyr-isochrone-like main sequence,
    ``4.65 + 0.35 x + 0.20 x**2 - 0.12 [M/H]`` with x = (4000 - Teff) / 1000
    (log g rises towards cooler, lower-mass dwarfs and, at fixed Teff, for
    metal-poor ones), plus Normal(0, 0.04) scatter truncated to [4.5, 5.5].
    """
    n = check_integer("n", n, minimum=0)
    rng = check_random_state(random_state)
    teff = 3000.0 + 1000.0 * rng.beta(2.2, 1.5, size=n)
    u_clip = (1e-12, 1 - 1e-12)
    m_h = truncated_normal(rng, np.full(n, -0.15), 0.30, *LABEL_RANGES["m_h"], u_clip=u_clip)
    x = (4000.0 - teff) / 1000.0
    mu = 4.65 + 0.35 * x + 0.20 * x**2 - 0.12 * m_h
    logg = truncated_normal(rng, mu, 0.04, *LABEL_RANGES["logg"], u_clip=u_clip)
    return pd.DataFrame({"teff": teff, "logg": logg, "m_h": m_h})


def _as_labels(labels):
    """(n, 3) float64 array of (teff, logg, m_h) from an array or a named table."""
    if is_named_input(labels):
        names = column_names(labels)
        for name in LABEL_NAMES:
            if name not in names:
                raise missing_column_error(name, "the M-dwarf model labels", names)
        arr = np.column_stack([np.asarray(labels[name], dtype=np.float64) for name in LABEL_NAMES])
    else:
        arr = np.asarray(labels, dtype=np.float64)
        if arr.ndim == 1 and arr.shape[0] == 3:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise ValueError(
                f"labels must have shape (n_stars, 3) with columns {LABEL_NAMES}, "
                f"got shape {arr.shape}."
            )
    check_finite_columns(arr, LABEL_NAMES, "label",
                         hint="Give finite Teff [K], log g [dex] and [M/H] [dex].")
    if (arr[:, 0] <= 0).any():
        row = int(np.argmax(arr[:, 0] <= 0))
        raise ValueError(f"Column 'teff' must be positive (Kelvin); row {row} has {arr[row, 0]}.")
    return arr


def _check_wavelength(wavelength):
    if wavelength is None:
        return mdwarf_wavelength_grid()
    wave = np.asarray(wavelength, dtype=np.float64)
    if wave.ndim != 1 or wave.size < 2:
        raise ValueError(f"wavelength must be a 1-D grid of >= 2 pixels, got shape {wave.shape}.")
    if not np.isfinite(wave).all() or (wave <= 0).any():
        raise ValueError("wavelength must be finite and positive (Angstrom).")
    if not (np.diff(wave) > 0).all():
        raise ValueError("wavelength must increase strictly.")
    return wave


def _check_resolution(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    try:
        r = float(value)
    except (TypeError, ValueError):
        r = np.nan
    if not (np.isfinite(r) and r > 0):
        raise ValueError(f"{name} must be a positive number (R = lambda / FWHM), got {value!r}.")
    return r


# ----------------------------------------------- Feature shapes and strengths


def _band_shape(lam, heads, tail, end):
    """Sum over heads of a logistic edge times an exponential tail, faded out at ``end``."""
    shape = np.zeros_like(lam)
    sign = np.sign(tail)
    for head, rel in heads:
        d = sign * (lam - head)
        shape += rel * expit(d / _EDGE_WIDTH) * np.exp(-np.maximum(d, 0.0) / abs(tail))
    return shape * expit(sign * (end - lam) / _END_WIDTH)


def _box_shape(lam, lo, hi):
    """A band with soft (logistic, 4 A) edges between lo and hi [A]."""
    return expit((lam - lo) / 4.0) * expit((hi - lam) / 4.0)


def _gauss(lam, centre, sigma):
    return np.exp(-0.5 * ((lam - centre) / sigma) ** 2)


def _species_factor(species, labels):
    """Label dependence of a species' optical depth (1 for the reference star)."""
    theta, a_m, a_g = _SPECIES_LAWS[species]
    teff, logg, m_h = labels[:, 0], labels[:, 1], labels[:, 2]
    return (np.exp(-(teff - _REF[0]) / theta) * 10.0 ** (a_m * (m_h - _REF[2]))
            * 10.0 ** (a_g * (logg - _REF[1])))


def _model_components():
    """Names, species and tau_ref of the model's basis columns (fixed order)."""
    comps = [(name, sysd["species"], sysd["tau_ref"]) for name, sysd in MDWARF_BAND_SYSTEMS.items()]
    for name, line in MDWARF_ATOMIC_LINES.items():
        comps.append((name, line["species"], line["tau_ref"]))
        if line["wing_tau"] > 0:
            comps.append((name + "_wing", line["species"], line["tau_ref"] * line["wing_tau"]))
    return comps


_COMPONENTS = _model_components()


def _model_basis(lam):
    """Optical-depth shapes (per unit strength) of the model's components on ``lam``."""
    rows = [_band_shape(lam, sysd["heads"], sysd["tail"], sysd["end"])
            for sysd in MDWARF_BAND_SYSTEMS.values()]
    for line in MDWARF_ATOMIC_LINES.values():
        # the core, then (pressure-broadened alkali lines only) the wing
        widths = (line["sigma"], line["wing_sigma"]) if line["wing_tau"] > 0 else (line["sigma"],)
        for sigma in widths:
            rows.append(sum(w * _gauss(lam, c, sigma)
                            for c, w in zip(line["wavelengths"], line["weights"])))
    return np.array(rows)


def _gap_basis(lam):
    """Shapes of the gap's extra absorbers: TiO 8430 system, line forest, tellurics."""
    sysd = MDWARF_GAP_FEATURES["TiO_8430"]
    tio = _band_shape(lam, sysd["heads"], sysd["tail"], sysd["end"])
    frng = np.random.default_rng(_FOREST["seed"])  # fixed: part of the "true star" physics
    centres = np.sort(frng.uniform(*_FOREST["span"], _FOREST["n_lines"]))
    depths = np.exp(frng.uniform(np.log(_FOREST["tau"][0]), np.log(_FOREST["tau"][1]),
                                 _FOREST["n_lines"]))
    forest = (depths[:, None] * _gauss(lam, centres[:, None], _FOREST["sigma"])).sum(axis=0)
    tell = np.zeros_like(lam)
    for key in ("O2_B", "O2_A"):
        t = MDWARF_GAP_FEATURES[key]
        tell += t["tau_ref"] * _band_shape(lam, t["heads"], t["tail"], t["end"])
    for key in ("H2O_7200", "H2O_8200"):
        t = MDWARF_GAP_FEATURES[key]
        # a comb of unresolved lines: the box modulated at ~7 A
        comb = 1.0 + 0.6 * np.cos(2 * np.pi * lam / 7.0)
        tell += t["tau_ref"] * _box_shape(lam, *t["band"]) * comb
    return np.array([sysd["tau_ref"] * tio, forest, tell])


def _model_strengths(labels):
    """(n, K) optical-depth amplitudes of the model components for ``labels``."""
    cols = []
    for name, species, tau_ref in _COMPONENTS:
        f = _species_factor(species, labels)
        if name.endswith("_wing"):
            f = f * 10.0 ** (_WING_GRAVITY[species] * (labels[:, 1] - _REF[1]))
        cols.append(tau_ref * f)
    return np.column_stack(cols)


# --- Rendering: fine log-lambda grid -> exp(-tau) (+ emission) -> LSF -> output grid


class _Renderer:
    """Spectra of many stars on a fine ln(lambda) grid, LSF-convolved (FFT) and resampled.

    ``dtype`` is the working precision (float64 for :func:`mdwarf_model_spectrum`,
    float32 inside :func:`make_mdwarf_spectra`, ~1e-6 relative round-off).
    """

    def __init__(self, wave, resolution, gap=False, max_shift_kms=0.0, dtype=np.float64):
        self.wave = wave
        self.resolution = resolution
        self.dtype = np.dtype(dtype)
        if resolution is None:
            sig_ln = 0.0
            step = min(_FINE_STEP, 0.5 * float(np.min(np.diff(np.log(wave)))))
        else:
            sig_ln = 1.0 / (_FWHM_SIGMA * resolution)
            step = min(_FINE_STEP, sig_ln / 3.0)
        pad = _PAD_SIGMAS * sig_ln + 2.0 * max_shift_kms / SPEED_OF_LIGHT_KMS + 4 * step
        # the fine grid sits on multiples of ``step`` in ln(lambda), whatever the
        # output grid, so a wavelength gets the same flux on every output grid
        lo = np.floor((np.log(wave[0]) - pad) / step) * step
        hi = np.log(wave[-1]) + pad
        n_fine = int(np.ceil((hi - lo) / step)) + 2
        if resolution is not None:
            # the grid itself is the (circular) FFT length: its padding (>= 10 LSF
            # sigmas at each end, flux - 1 ~ 0 there) keeps wrap-around off the output
            n_fine = sp_fft.next_fast_len(n_fine, real=True)
        self.step = step
        lam = np.exp(lo + step * np.arange(n_fine))
        basis = _model_basis(lam)
        if gap:
            basis = np.vstack([basis, _gap_basis(lam)])
        self.basis = basis.astype(self.dtype)
        sig_em = _HALPHA_EMISSION_SIGMA
        self.halpha = (_gauss(lam, MDWARF_ATOMIC_LINES["Halpha"]["wavelengths"][0], sig_em)
                       / (np.sqrt(2 * np.pi) * sig_em)).astype(self.dtype)
        self.pos = (np.log(wave) - lo) / step  # output pixels in fine-pixel units
        self.n_fine = n_fine
        self.i0 = np.clip(np.floor(self.pos).astype(np.intp), 0, n_fine - 2)
        self.w = (self.pos - self.i0).astype(self.dtype)
        if resolution is not None:
            freq = np.fft.rfftfreq(n_fine)  # cycles per fine pixel
            s_pix = sig_ln / step
            self.transfer = np.exp(-2.0 * (np.pi * s_pix * freq) ** 2).astype(self.dtype)

    def render(self, strengths, emission=None, shift_kms=None):
        """Spectra on the output grid, shape (n, n_pixels), in ``self.dtype``.

        strengths : (n, K) optical-depth amplitudes (K = basis rows);
        emission : (n,) H-alpha emission equivalent widths [A] or None;
        shift_kms : (n,) Doppler shifts [km/s] or None (the spectrum is read
        at lambda / (1 + v / c), by linear interpolation on the fine grid).
        """
        n = strengths.shape[0]
        strengths = np.asarray(strengths, dtype=self.dtype)
        out = np.empty((n, self.wave.size), dtype=self.dtype)
        for start in range(0, n, _BLOCK):  # blocks of stars, not one star at a time
            sl = slice(start, min(n, start + _BLOCK))
            flux = strengths[sl] @ self.basis
            np.negative(flux, out=flux)
            np.exp(flux, out=flux)
            if emission is not None:
                flux += emission[sl, None].astype(self.dtype) * self.halpha
            flux -= 1.0  # ~0 at both ends: no wrap-around step in the FFT
            if self.resolution is not None:
                spec = sp_fft.rfft(flux, axis=1, overwrite_x=True)
                spec *= self.transfer
                flux = sp_fft.irfft(spec, n=self.n_fine, axis=1, overwrite_x=True)
            if shift_kms is None:
                i0, w = self.i0, self.w
                res = flux[:, i0] * (1.0 - w)
                res += flux[:, i0 + 1] * w
            else:
                # a constant shift of s fine pixels per star: read at pos - s
                s = np.log1p(shift_kms[sl] / SPEED_OF_LIGHT_KMS) / self.step
                k = np.floor(s)
                f = (s - k).astype(self.dtype)[:, None]
                wrap = self.w[None, :] < f
                i0 = self.i0[None, :] - k.astype(np.intp)[:, None] - wrap
                np.clip(i0, 0, self.n_fine - 2, out=i0)
                i0 += (np.arange(i0.shape[0]) * self.n_fine)[:, None]  # flat indices
                w = self.w[None, :] - f
                w += wrap
                flat = flux.reshape(-1)
                res = np.take(flat, i0) * (1.0 - w)
                i0 += 1
                res += np.take(flat, i0) * w
            res += 1.0
            out[sl] = res
        return out


def mdwarf_model_spectrum(labels, wavelength=None, *, resolution=2000.0):
    """The synthetic-domain M-dwarf spectrum for given labels (exact model).

    Parameters
    ----------
    labels : array-like of shape (n_stars, 3) or (3,), or DataFrame/Table/dict
        Teff [K], log g [dex, cgs] and [M/H] [dex], in that column order, or a
        named table with columns ``teff``, ``logg``, ``m_h``. The model is
        meant for :data:`LABEL_RANGES`; outside it the smooth laws extrapolate.
    wavelength : array-like of shape (n_pixels,), optional
        Strictly increasing output grid [Angstrom, vacuum]; default
        :func:`mdwarf_wavelength_grid` (6000-8900 A at 1 A, 2901 pixels).
        Features are modelled between ~6000 and ~8900 A only.
    resolution : float or None, default=2000.0
        Resolving power R = lambda / FWHM of the Gaussian line-spread
        function (constant in velocity, sigma = c / (2.355 R)); None returns
        the intrinsic (unconvolved) model, linearly interpolated.

    Returns
    -------
    ndarray of shape (n_stars, n_pixels), float64
        Flux relative to the pseudo-continuum (1 outside the features).

    Notes
    -----
    **Flux.** F(lambda) = exp(-tau(lambda)) convolved with the LSF, where
    tau = sum_k A_k(labels) phi_k(lambda) sums fixed shapes phi_k with
    label-dependent amplitudes, so the model is smooth (infinitely
    differentiable) in the labels.

    **Molecular bands** (:data:`MDWARF_BAND_SYSTEMS`: TiO 6150-6300,
    6650-6850, 7050-7250, 7600-7900 A; CaH 6380 and 6750-7030 A; VO 7330-7550
    and 7850-8000 A): each head is a logistic edge (0.6 A) followed by an
    exponential tail of length ``tail`` (sawtooth-like band shapes at low
    resolution), the system faded out at ``end``.

    **Atomic lines** (:data:`MDWARF_ATOMIC_LINES`: K I 7667/7701, Na I
    8186/8197, Ca II 8500/8544/8665, H-alpha 6565 absorption, vacuum): a
    Gaussian core in tau, plus a broad Gaussian wing for the pressure-broadened
    alkali doublets.

    **Strength laws.** Every amplitude is

        A = tau_ref * exp(-(Teff - 3500 K) / theta) * 10**(a_m [M/H])
            * 10**(a_g (log g - 5)),

    with (theta [K], a_m, a_g) = TiO (520, 0.5, 0.1), CaH (650, 0.2, 0.4),
    VO (220, 0.5, 0), K I (1300, 0.25, 0), Na I (1100, 0.25, 0), Ca II
    (-1500, 0.35, -0.3), H-alpha (-800, 0, 0); the K I and Na I wings carry an
    extra 10**(0.5 (log g - 5)) and 10**(0.7 (log g - 5)). Hence all
    molecular bands and the alkali lines deepen towards cooler Teff (VO only
    matters below ~3300 K), while Ca II and H-alpha absorption weaken; TiO
    weakens strongly with decreasing metallicity and CaH only mildly, so the
    CaH/TiO ratio rises in metal-poor dwarfs (the zeta_TiO/CaH behaviour of
    Lepine et al. 2007); CaH and the alkali wings grow with gravity, Ca II
    weakens with it. The reference depths were tuned so that the TiO5 index
    (Zhang et al., Sect. 4.4, Eq. 12) measured on the R = 2000 model follows
    the SpT-TiO5 relation (Eq. 11) for the usual M-dwarf Teff-SpT scale to
    within about one subtype, and the TiO5/CaH2/CaH3 depths of a 3800 K,
    log g 4.5, solar model lie within ~0.1 of those of the BT-Settl M0V
    template degraded to R ~ 2000.

    References
    ----------
    Zhang S., Zhang H.-W., Ting Y.-S. et al., "Half a Million M Dwarf Stars
    Characterized Using Domain-Adapted Spectral Analysis" (Sects. 2.2, 2.4, 4.4).
    Lepine S., Rich R. M. & Shara M. M. 2007, ApJ 669, 1235.
    Reid I. N., Hawley S. L. & Gizis J. E. 1995, AJ 110, 1838.
    """
    labels = _as_labels(labels)
    wave = _check_wavelength(wavelength)
    resolution = _check_resolution("resolution", resolution, allow_none=True)
    return _Renderer(wave, resolution).render(_model_strengths(labels))


# ------------------------------------------------------------ The two domains


def _planck_ratio(lam, teff, dtype=np.float64):
    """B_lambda(lam, Teff) / B_lambda(7500 A, Teff), shape (n, P), for (n,) Teff on (P,) lam."""
    x = (_HC_K / lam).astype(dtype)[None, :] * (1.0 / teff).astype(dtype)[:, None]
    ratio = np.expm1(x, out=x)
    np.divide(np.expm1(_HC_K / (7500.0 * teff)).astype(dtype)[:, None], ratio, out=ratio)
    ratio *= ((7500.0 / lam) ** 5).astype(dtype)[None, :]
    return ratio


def _draw_gap(rng, labels, gap_scale):
    """Hidden per-star gap parameters of the observed domain (all zero for gap_scale=0)."""
    n = labels.shape[0]
    teff = labels[:, 0]
    x = (4000.0 - teff) / 1000.0
    p_active = 0.03 + 0.35 * x**2
    active_draw = rng.uniform(size=n) < p_active
    ew = np.maximum(10.0 ** (np.log10(3.0) + 0.3 * rng.standard_normal(n)), 0.8)
    extra = np.exp(_EXTRA_BAND_SCATTER * rng.standard_normal(n) - 0.5 * _EXTRA_BAND_SCATTER**2)
    forest = np.exp(_FOREST_SCATTER * rng.standard_normal(n) - 0.5 * _FOREST_SCATTER**2)
    telluric = rng.uniform(size=n)
    rv = _RV_RESIDUAL * rng.standard_normal(n)
    cont = np.asarray(_CONT_SYSTEMATIC)[None, :] + _CONT_SCATTER * rng.standard_normal((n, 3))
    g = float(gap_scale)
    active = active_draw & (g > 0)
    return {
        "active": active,
        "halpha_emission_ew": np.where(active, g * ew, 0.0),
        "tio_scale": np.exp(g * 0.35 * (teff - 3500.0) / 500.0),
        "cah_scale": np.full(n, np.exp(-0.3 * g)),
        "vo_scale": np.full(n, np.exp(0.4 * g)),
        "alkali_wing_scale": np.full(n, np.exp(0.3 * g)),
        "extra_band_strength": g * extra,
        "forest_strength": g * forest,
        "telluric_strength": g * telluric,
        "rv_residual": g * rv,
        "cont_c1": g * cont[:, 0],
        "cont_c2": g * cont[:, 1],
        "cont_c3": g * cont[:, 2],
    }


#: Gap parameter that scales the optical depths of each distorted molecular species.
_GAP_SCALES = {"TiO": "tio_scale", "CaH": "cah_scale", "VO": "vo_scale"}


def _gap_strengths(labels, gap):
    """(n, K + 3) amplitudes of the observed domain: distorted model + extra absorbers."""
    base = _model_strengths(labels)
    scale = np.ones_like(base)
    for k, (name, species, _) in enumerate(_COMPONENTS):
        key = _GAP_SCALES.get(species, "alkali_wing_scale" if name.endswith("_wing") else None)
        if key is not None:
            scale[:, k] = gap[key]
    tio = _species_factor("TiO", labels)
    extra = np.column_stack([
        tio * gap["extra_band_strength"],
        np.sqrt(tio) * gap["forest_strength"],
        gap["telluric_strength"],
    ])
    return np.hstack([base * scale, extra])


def _continuum_distortion(wave, gap, dtype=np.float64):
    """1 + sum_k c_k P_k(u), u = (lambda - 7450) / 1450, Legendre P1..P3; shape (n, P)."""
    u = (wave - 0.5 * sum(_CONT_RANGE)) / (0.5 * (_CONT_RANGE[1] - _CONT_RANGE[0]))
    legendre = np.array([u, 0.5 * (3 * u**2 - 1), 0.5 * (5 * u**3 - 3 * u)], dtype=dtype)
    coef = np.column_stack([gap["cont_c1"], gap["cont_c2"], gap["cont_c3"]]).astype(dtype)
    out = coef @ legendre
    out += 1.0
    return out


def _check_range(name, value, lo, hi):
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}.") from None
    if not (np.isfinite([a, b]).all() and lo <= a <= b <= hi):
        raise ValueError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got {value!r}.")
    return a, b


def make_mdwarf_spectra(
    n_synthetic=1000,
    n_observed=1000,
    *,
    wavelength=None,
    paired=False,
    snr_range=(5.0, 100.0),
    gap_scale=1.0,
    resolution=2000.0,
    observed_resolution=1800.0,
    synthetic_error=0.01,
    bad_pixel_fraction=0.002,
    mask_telluric=False,
    normalized=True,
    random_state=None,
    return_truth=False,
):
    """Simulate a synthetic and an "observed" domain of M-dwarf spectra with a known gap.

    The synthetic domain holds noiseless model spectra
    (:func:`mdwarf_model_spectrum`) with the fixed error the paper gives to
    synthetic spectra; the observed domain holds LAMOST-like spectra of stars
    drawn from the same label distribution, each the model spectrum plus a
    known "synthetic gap" (features the model lacks, band-strength and
    continuum distortions, a residual Doppler shift, a different resolution)
    and noise at S/N 5-100, as in the Cycle-StarNet setup (Zhang et al.,
    Sects. 2.4 and 3.3). The domains are unpaired by default, as the method
    requires.

    Parameters
    ----------
    n_synthetic, n_observed : int, default=1000
        Number of spectra in each domain (>= 1).
    wavelength : array-like of shape (n_pixels,), optional
        Strictly increasing output grid [Angstrom, vacuum] within
        6000-8900 A (the observed domain's continuum distortion is defined
        there only; a grid outside raises ValueError); default
        :func:`mdwarf_wavelength_grid` (6000-8900 A at 1 A, 2901 pixels).
    paired : bool, default=False
        If True both domains hold the same stars in the same order (for
        evaluation; needs ``n_synthetic == n_observed``); otherwise the
        observed stars are drawn independently from the same distribution
        (:func:`draw_mdwarf_labels`).
    snr_range : (float, float), default=(5, 100)
        Range of the observed S/N (median per-pixel S/N of the noiseless
        observed spectrum over the grid), drawn log-uniformly;
        ``low == high`` fixes it.
    gap_scale : float, default=1.0
        Multiplies every ingredient of the synthetic gap (>= 0). With 0 the
        noiseless observed spectra equal the synthetic model at
        ``observed_resolution`` exactly; only the resolution mismatch and the
        noise remain.
    resolution : float, default=2000.0
        Resolving power of the synthetic domain (the paper convolves the
        models to R ~ 2000, Sect. 2.2).
    observed_resolution : float, default=1800.0
        Resolving power of the observed domain (LAMOST LRS, R ~ 1800).
    synthetic_error : float, default=0.01
        Flux error of the synthetic spectra (continuum units); ``ivar`` is
        ``1 / synthetic_error**2`` (Sect. 2.4: "fixed to be 0.01").
    bad_pixel_fraction : float, default=0.002
        Probability that an observed pixel is bad (``mask=True``,
        ``ivar=0``, ``flux=0``; ~6 per default spectrum). Synthetic spectra
        have no bad pixels.
    mask_telluric : bool, default=False
        Also set ``mask=True`` in the paper's masked windows
        (:data:`~skstellar.preprocessing.continuum.PAPER_MASK_WINDOWS`:
        tellurics and H-alpha) in both domains; flux and ``ivar`` are kept.
    normalized : bool, default=True
        Return flux relative to the pseudo-continuum (directly comparable
        between the domains). If False, flux (and error) are multiplied by
        the star's Planck continuum B_lambda(Teff) / B_lambda(7500 A, Teff),
        so that :class:`~skstellar.preprocessing.continuum.ContinuumNormalizer`
        can be exercised; the truth arrays follow the same choice.
    random_state : int, numpy.random.RandomState or None, default=None
        Seed or generator; it seeds the labels, the gap parameters, the noise
        and the bad pixels. The same seed gives identical output.
    return_truth : bool, default=False
        Also return the noiseless truth of the observed stars (see Returns).

    Returns
    -------
    synthetic : SpectrumBatch
        ``n_synthetic`` model spectra on ``wavelength`` (float32 flux,
        ``ivar = 1 / synthetic_error**2``). ``meta`` columns: ``star_id``,
        ``teff`` [K], ``logg`` [dex], ``m_h`` [dex], ``snr``
        (= 1 / synthetic_error).
    observed : SpectrumBatch
        ``n_observed`` noisy spectra (float32 flux and ``ivar``, bad-pixel
        ``mask``). ``meta`` columns: ``star_id`` (equal to the synthetic ids
        when ``paired``, disjoint otherwise), ``teff``, ``logg``, ``m_h``,
        ``snr`` and the hidden gap parameters ``active`` (bool),
        ``halpha_emission_ew`` [A], ``tio_scale``, ``cah_scale``,
        ``vo_scale``, ``alkali_wing_scale``, ``extra_band_strength``,
        ``forest_strength``, ``telluric_strength``, ``rv_residual`` [km/s],
        ``cont_c1``, ``cont_c2``, ``cont_c3``.
    truth : sklearn.utils.Bunch
        Only with ``return_truth``; arrays of shape (n_observed, n_pixels),
        float32: ``observed_noiseless`` (the observed spectra before noise
        and bad pixels), ``synthetic`` (the synthetic-domain spectra of the
        observed stars, at ``resolution``: the paired truth),
        ``synthetic_observed_resolution`` (the model of the observed stars at
        ``observed_resolution``, no gap), ``error`` (the noise sigma of every
        observed pixel, also where the pixel is bad), and ``labels`` (the
        observed stars' labels as a DataFrame).

    Notes
    -----
    **Synthetic gap** (observed domain only; every amplitude below is for
    ``gap_scale = 1`` and scales with it):

    1. *Features the model lacks:* an extra TiO system at 8435-8600 A (the
       epsilon system; depth TiO-like times a hidden lognormal per-star
       factor ``extra_band_strength``, median ~1, 0.4 e-fold scatter); a
       forest of 80 weak lines (tau 0.02-0.12 each, fixed positions) times
       sqrt(TiO strength) and a hidden factor ``forest_strength``
       (0.3 e-fold scatter), i.e. an incomplete line list; telluric O2 A/B
       and H2O residuals (fixed positions inside the paper's masked windows)
       with a hidden strength ``telluric_strength`` ~ U(0, 1); H-alpha
       emission (Gaussian, sigma 1 A, equivalent width
       ``halpha_emission_ew`` ~ lognormal with median 3 A, 0.3 dex, >= 0.8 A)
       in a fraction 0.03 + 0.35 ((4000 - Teff) / 1000 K)**2 of the stars
       (``active``; 3% at 4000 K, 38% at 3000 K).
    2. *Band-strength distortion:* TiO optical depths times
       ``tio_scale = exp(0.35 (Teff - 3500 K) / 500 K)`` (the model's TiO too
       weak in warm and too strong in cool stars, by up to ~30-40%), CaH times
       exp(-0.3), VO times exp(0.4), the alkali wings times exp(0.3).
    3. *Continuum distortion:* the normalised flux is multiplied by
       1 + c1 P1(u) + c2 P2(u) + c3 P3(u) (Legendre polynomials,
       u = (lambda - 7450 A) / 1450 A) with a systematic part (0.03, -0.02,
       0.01) plus per-star Normal(0, 0.025) scatter: residual flux-calibration
       and normalisation errors.
    4. *Residual Doppler shift* ``rv_residual`` ~ Normal(0, 5 km/s) of the
       whole observed spectrum (imperfect rest-frame correction, cf. the
       9 km/s RV scatter of Sect. 2.3).
    5. *Resolution mismatch:* the observed spectra are convolved to
       ``observed_resolution`` instead of ``resolution`` (not scaled by
       ``gap_scale``).

    **Noise.** The observed error is
    sigma(lambda) = sqrt((F(lambda) + 0.05) / (K b(lambda))): photon noise of
    the normalised flux F plus a small floor, with b the relative photon
    count continuum (lambda B_lambda(Teff) through a Gaussian red-arm
    throughput centred at 7300 A, sigma 1500 A, so the S/N peaks in the i band
    for M dwarfs) and K set per star so that the median of F / sigma over the
    grid equals ``snr``; the flux is F + Normal(0, sigma), ``ivar = 1 /
    sigma**2``. S/N values are drawn log-uniformly in ``snr_range``.

    **Size of the gap.** With the defaults the noiseless gap (observed minus
    model at the observed resolution) has an rms of ~4% of the continuum
    outside the paper's masked windows; the per-star rms of (observed -
    paired synthetic) / sigma there is ~1.05 at S/N 5-10, ~1.2 at 10-20,
    ~1.6 at 20-50 and ~3 at 50-100 (Zhang et al., Sect. 3.4 and Fig. 8,
    report "over 2 times" the flux uncertainty before adaptation).

    **Speed.** Spectra are computed in blocks of 512 stars on a fine
    ln(lambda) grid (~0.4 A) in float32, convolved by FFT and interpolated
    (linearly) to the output grid: 10,000 x 2901-pixel spectra take ~2.5 s
    of CPU time for the synthetic and ~5 s for the observed domain (one
    core); the arrays of 10,000 spectra take ~0.12 GB each.

    References
    ----------
    Zhang S., Zhang H.-W., Ting Y.-S. et al., "Half a Million M Dwarf Stars
    Characterized Using Domain-Adapted Spectral Analysis" (Sects. 2.2-2.4,
    3.3-3.4, 4.3). O'Briain T. et al. 2021, ApJ 906, 130 (Cycle-StarNet).

    Examples
    --------
    >>> from skstellar.datasets.mdwarf_spectra import make_mdwarf_spectra
    >>> synth, obs = make_mdwarf_spectra(20, 30, random_state=0)
    >>> synth.flux.shape, obs.flux.shape
    ((20, 2901), (30, 2901))
    >>> bool(obs.meta["snr"].between(5, 100).all())
    True
    """
    n_synthetic = check_integer("n_synthetic", n_synthetic)
    n_observed = check_integer("n_observed", n_observed)
    if paired and n_synthetic != n_observed:
        raise ValueError(
            f"paired=True needs n_synthetic == n_observed (the same stars in both "
            f"domains), got {n_synthetic} and {n_observed}."
        )
    wave = _check_wavelength(wavelength)
    if wave[0] < _CONT_RANGE[0] or wave[-1] > _CONT_RANGE[1]:
        # the continuum distortion is a polynomial in (lambda - 7450) / 1450: outside its
        # range it can turn the observed continuum negative (infinite ivar, NaN noise)
        raise ValueError(f"wavelength must lie within the observed domain's "
                         f"{_CONT_RANGE[0]:g}-{_CONT_RANGE[1]:g} A, got "
                         f"{wave[0]:g}-{wave[-1]:g} A.")
    snr_lo, snr_hi = _check_range("snr_range", snr_range, 1e-3, 1e6)
    gap_scale = float(gap_scale)
    if not (np.isfinite(gap_scale) and gap_scale >= 0):
        raise ValueError(f"gap_scale must be a finite number >= 0, got {gap_scale!r}.")
    resolution = _check_resolution("resolution", resolution)
    observed_resolution = _check_resolution("observed_resolution", observed_resolution)
    synthetic_error = float(synthetic_error)
    if not (np.isfinite(synthetic_error) and synthetic_error > 0):
        raise ValueError(f"synthetic_error must be positive, got {synthetic_error!r}.")
    bad_pixel_fraction = float(bad_pixel_fraction)
    if not 0.0 <= bad_pixel_fraction < 0.5:
        raise ValueError(f"bad_pixel_fraction must lie in [0, 0.5), got {bad_pixel_fraction!r}.")

    rng = check_random_state(random_state)
    syn_labels = draw_mdwarf_labels(n_synthetic, rng)
    obs_labels = syn_labels.copy() if paired else draw_mdwarf_labels(n_observed, rng)
    ls = syn_labels.to_numpy()
    lo = obs_labels.to_numpy()
    gap = _draw_gap(rng, lo, gap_scale)
    noise_rng = np.random.default_rng(rng.randint(0, 2**31 - 1, size=4))
    if snr_hi > snr_lo:
        snr = np.exp(noise_rng.uniform(np.log(snr_lo), np.log(snr_hi), n_observed))
    else:
        snr = np.full(n_observed, snr_lo)

    f32 = np.float32
    # --- synthetic domain ---------------------------------------------------------
    syn_render = _Renderer(wave, resolution, dtype=f32)
    syn_flux = syn_render.render(_model_strengths(ls))

    # --- observed domain: model + gap at the observed resolution ------------------
    max_shift = float(np.max(np.abs(gap["rv_residual"]), initial=0.0))
    obs_render = _Renderer(wave, observed_resolution, gap=True, max_shift_kms=max_shift, dtype=f32)
    has_gap = gap_scale > 0
    truth_obs = obs_render.render(
        _gap_strengths(lo, gap),
        emission=gap["halpha_emission_ew"] if has_gap else None,
        shift_kms=gap["rv_residual"] if has_gap else None,
    )
    if has_gap:
        truth_obs *= _continuum_distortion(wave, gap, dtype=f32)

    # noise: photon noise of the normalised flux with a red-rising count continuum
    teff_o = lo[:, 0]
    thr = (wave / 7500.0) * np.exp(-0.5 * ((wave - _THROUGHPUT[0]) / _THROUGHPUT[1]) ** 2)
    counts = _planck_ratio(wave, teff_o, dtype=f32)
    counts *= thr.astype(f32)
    f_pos = np.maximum(truth_obs, f32(0.0))
    var_unit = f_pos + f32(_NOISE_FLOOR)
    var_unit /= counts  # sigma**2 for K = 1
    del counts
    snr_unit = np.median(f_pos / np.sqrt(var_unit), axis=1)
    del f_pos
    var_unit *= ((snr_unit / snr) ** 2).astype(f32)[:, None]
    obs_ivar = np.divide(f32(1.0), var_unit)
    sigma = np.sqrt(var_unit, out=var_unit)
    obs_flux = noise_rng.standard_normal(truth_obs.shape, dtype=f32)
    obs_flux *= sigma
    obs_flux += truth_obs
    obs_mask = np.zeros(obs_flux.shape, dtype=bool)
    flag_bad_pixels(noise_rng, bad_pixel_fraction, obs_flux, obs_ivar, obs_mask)

    syn_ivar = np.full(syn_flux.shape, 1.0 / synthetic_error**2, dtype=f32)
    syn_mask = np.zeros(syn_flux.shape, dtype=bool)
    if mask_telluric:
        from ..preprocessing.continuum import window_mask

        win = window_mask(wave, "paper")
        syn_mask |= win
        obs_mask |= win

    truth = None
    if return_truth:
        truth = Bunch(
            observed_noiseless=truth_obs,
            synthetic=syn_flux.copy() if paired else syn_render.render(_model_strengths(lo)),
            synthetic_observed_resolution=_Renderer(wave, observed_resolution, dtype=f32).render(
                _model_strengths(lo)),
            error=sigma,
            labels=obs_labels.copy(),
        )

    if not normalized:
        sed_s = _planck_ratio(wave, ls[:, 0], dtype=f32)
        syn_flux *= sed_s
        syn_ivar /= sed_s**2
        del sed_s
        sed_o = _planck_ratio(wave, teff_o, dtype=f32)
        obs_flux *= sed_o
        obs_ivar /= sed_o**2
        if truth is not None:
            for key in ("observed_noiseless", "synthetic", "synthetic_observed_resolution"):
                truth[key] = truth[key] * sed_o
            truth["error"] = sigma * sed_o

    def domain_batch(flux, ivar, mask, star_id, labels, snr, extra, description):
        meta = pd.DataFrame({"star_id": star_id, **{c: labels[c].to_numpy() for c in LABEL_NAMES},
                             "snr": snr, **extra})
        meta.attrs["description"] = description
        return SpectrumBatch(wavelength=wave, flux=flux, ivar=ivar, mask=mask, meta=meta)

    unit = "continuum-normalised" if normalized else "B_lambda(Teff)/B_lambda(7500 A)-scaled"
    n_s = n_synthetic
    synthetic = domain_batch(
        syn_flux, syn_ivar, syn_mask, np.arange(n_s), syn_labels,
        np.full(n_s, 1.0 / synthetic_error), {},
        f"Simulated synthetic-domain M-dwarf spectra (skstellar make_mdwarf_spectra): "
        f"{unit} flux, vacuum wavelengths [A], R = {resolution:g}, error {synthetic_error:g}.")
    observed = domain_batch(
        obs_flux, obs_ivar, obs_mask, np.arange(n_s) if paired else n_s + np.arange(n_observed),
        obs_labels, snr, gap,
        f"Simulated observed-domain M-dwarf spectra with a known synthetic gap "
        f"(gap_scale = {gap_scale:g}): {unit} flux, vacuum wavelengths [A], "
        f"R = {observed_resolution:g}.")
    return (synthetic, observed, truth) if return_truth else (synthetic, observed)
