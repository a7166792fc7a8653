"""Simulated LAMOST-like galaxy spectra with gas-phase metallicity labels.

:func:`make_galaxy_spectra` builds observed-frame, low-resolution (R ~ 1800)
galaxy spectra on a LAMOST-like log-linear vacuum wavelength grid, labelled
with 12 + log(O/H) on the MPA-JHU (Tremonti et al. 2004) scale, so that the
spectrum -> metallicity methods of skstellar can be trained and tested
offline. Emission-line ratios follow published strong-line calibrations
(Curti et al. 2017, 2020); the stellar continuum is a simple analytic model.
The small helpers below expose the relations the simulator uses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import erf, expit, gammainc, gammaincinv
from sklearn.utils import check_random_state

from .._validation import check_integer, check_range_pair
from ..spectrum import SPEED_OF_LIGHT_KMS as _C_KMS  # [km/s]
from ..spectrum import SpectrumBatch
from .simulation import _HC_K, flag_bad_pixels, truncated_normal

__all__ = [
    "make_galaxy_spectra",
    "EMISSION_LINES",
    "CURTI2020_COEFFICIENTS",
    "tremonti_mass_metallicity",
    "te_scale_metallicity",
    "curti2020_log_ratio",
    "pettini_pagel_n2_metallicity",
    "kauffmann03_o3hb",
    "calzetti_k",
]

#: Vacuum rest wavelengths [Angstrom] of the simulated emission lines
#: (SDSS/NIST vacuum values).
EMISSION_LINES = {
    "OII_3727": 3727.092,
    "OII_3729": 3729.875,
    "Hdelta": 4102.892,
    "Hgamma": 4341.684,
    "Hbeta": 4862.683,
    "OIII_4959": 4960.295,
    "OIII_5007": 5008.240,
    "NII_6548": 6549.86,
    "Halpha": 6564.61,
    "NII_6584": 6585.27,
    "SII_6717": 6718.29,
    "SII_6731": 6732.67,
}

#: Curti et al. (2020, MNRAS 491, 944; Table 2) strong-line calibrations:
#: log10(R) = sum_n c_n x**n with x = 12 + log(O/H) - 8.69 on the T_e
#: (direct-method) scale. R2 = [OII]3727,29/Hbeta, R3 = [OIII]5007/Hbeta,
#: N2 = [NII]6584/Halpha, S2 = [SII]6717,31/Halpha. The R3 and N2 polynomials
#: are those first published by Curti et al. (2017, MNRAS 465, 1384).
CURTI2020_COEFFICIENTS = {
    "R2": (0.435, -1.362, -5.655, -4.851, -0.478, 0.736),
    "R3": (-0.277, -3.549, -3.593, -0.981),
    "N2": (-0.489, 1.513, -2.554, -5.293, -2.867),
    "S2": (-0.442, -0.360, -6.271, -8.339, -3.559),
}

#: Tremonti et al. (2004) mass-metallicity relation coefficients:
#: 12 + log(O/H) = a + b x + c x**2, x = log10(M*/Msun), 8.5 < x < 11.5.
_TREMONTI = (-1.492, 1.847, -0.08026)

#: MPA-JHU (T04) scale -> T_e scale: 12+log(O/H)_Te = a + b d + c d**2,
#: d = 12+log(O/H)_T04 - 8.9. Least-squares fit (max deviation 0.018 dex) to
#: the pairs (T04 MZR, Curti et al. 2020 MZR) at equal stellar mass,
#: 8.5 < log M* < 11.3 (Curti 2020 MZR: Z0 = 8.793, log M0 = 10.02,
#: gamma = 0.28, beta = 1.2).
_T04_TO_TE = (8.681, 0.573, -0.214)

#: Range of the simulated labels [dex] (MPA-JHU scale), cf. Feng et al. Fig. 3.
_OH_CLIP = (7.9, 9.3)

#: Above this T_e-scale abundance the N2 polynomial turns over; N2 is held at
#: its maximum there (the well-known N2 saturation).
_N2_PEAK_OH = 8.87

#: Scatter of the line ratios at fixed O/H [dex]: an ionisation-parameter-like
#: common factor (loadings) plus an independent part per ratio.
_IONISATION_LOADING = {"R2": -0.06, "R3": 0.08, "N2": -0.04, "S2": -0.05}
_RATIO_SCATTER = 0.07
#: Star-forming galaxies are kept this far [dex] below the Kauffmann et al.
#: (2003) line in log([OIII]/Hbeta).
_KAUFFMANN_MARGIN = 0.05

#: Case-B recombination ratios (T = 10^4 K, n_e = 100 cm^-3; Osterbrock &
#: Ferland 2006) and fixed doublet ratios ([OIII] 2.98 from Storey & Zeippen
#: 2000; [NII] 3.05, the commonly adopted value, S&Z give 3.07).
_HA_HB = 2.86
_HA_HB_AGN = 3.1
_HG_HB = 0.468
_HD_HB = 0.259
_OIII_RATIO = 2.98
_NII_RATIO = 3.05

#: Calzetti et al. (2000) R_V and stellar-to-gas colour-excess ratio.
_RV_CALZETTI = 4.05
_STAR_GAS_EBV = 0.44

#: Observed-frame r-band window [Angstrom] where S/N_r is defined.
_R_BAND = (5500.0, 6900.0)

#: Stellar absorption features: (vacuum rest wavelength [A], intrinsic sigma
#: [A], depth in the old component, depth in the young component).
_ABSORPTION_FEATURES = (
    (3890.17, 10.0, 0.05, 0.22),  # H8
    (3934.78, 6.0, 0.45, 0.08),  # Ca II K
    (3969.59, 6.0, 0.40, 0.06),  # Ca II H
    (3971.20, 10.0, 0.04, 0.22),  # H epsilon
    (4102.89, 10.0, 0.06, 0.25),  # H delta
    (4305.60, 8.0, 0.18, 0.02),  # G band (CH)
    (4341.69, 10.0, 0.06, 0.22),  # H gamma
    (4862.68, 9.0, 0.06, 0.17),  # H beta
    (5176.70, 7.0, 0.18, 0.02),  # Mg b triplet (blended)
    (5271.50, 5.0, 0.07, 0.01),  # Fe 5270
    (5336.10, 5.0, 0.06, 0.01),  # Fe 5335
    (5894.60, 4.0, 0.13, 0.02),  # Na D (blended)
    (6564.61, 8.0, 0.05, 0.12),  # H alpha
    (8500.36, 4.0, 0.12, 0.03),  # Ca II triplet
    (8544.44, 4.0, 0.18, 0.03),
    (8664.52, 4.0, 0.16, 0.03),
)

#: Night-sky emission lines (approximate vacuum wavelengths [A]) and their
#: equivalent widths relative to the sky continuum [A]: [OI], Na D, OH bands.
_SKY_LINES = (
    (5578.89, 300.0), (5891.6, 30.0), (5897.6, 30.0), (6302.05, 100.0),
    (6365.54, 35.0), (6865.0, 25.0), (7318.2, 35.0), (7342.4, 35.0),
    (7716.0, 30.0), (7796.0, 40.0), (7916.0, 40.0), (7995.0, 45.0),
    (8346.8, 50.0), (8401.7, 60.0), (8432.6, 45.0), (8467.6, 45.0),
    (8829.5, 60.0), (8888.2, 60.0), (8922.0, 45.0), (8960.0, 50.0),
)
#: Sky lines that leave subtraction residuals ("spikes") [A].
_SKY_RESIDUAL_LINES = (5578.89, 6302.05)

#: Redshift distribution: gamma(shape, scale) truncated to z_range; gives
#: ~85% of galaxies at 0.02 < z < 0.15 and ~8% above 0.15 (cf. Feng et al.).
_Z_GAMMA = (3.0, 0.027)

_CHUNK = 2048
_PAD = 96
_COARSE = 8


# -------------------------------------------------------- Published relations


def tremonti_mass_metallicity(log_mstar):
    """Tremonti et al. (2004) mass-metallicity relation.

    Parameters
    ----------
    log_mstar : array-like
        Stellar mass log10(M*/Msun) [dex]; calibrated for 8.5-11.5.

    Returns
    -------
    ndarray
        12 + log(O/H) [dex] on the MPA-JHU (Bayesian photoionisation-model)
        scale: -1.492 + 1.847 x - 0.08026 x**2.

    References
    ----------
    Tremonti C. A. et al. 2004, ApJ 613, 898.
    """
    x = np.asarray(log_mstar, dtype=float)
    a, b, c = _TREMONTI
    return a + b * x + c * x**2


def te_scale_metallicity(oh):
    """Convert 12 + log(O/H) from the MPA-JHU scale to the T_e (direct) scale.

    Parameters
    ----------
    oh : array-like
        12 + log(O/H) on the Tremonti et al. (2004) / MPA-JHU scale [dex].

    Returns
    -------
    ndarray
        12 + log(O/H) on the electron-temperature scale [dex]:
        8.681 + 0.573 d - 0.214 d**2 with d = oh - 8.9.

    Notes
    -----
    Photoionisation-model abundances (MPA-JHU ``oh_p50``) exceed T_e-based
    ones by up to several tenths of a dex at high metallicity (Kewley &
    Ellison 2008). The conversion matches the Tremonti et al. (2004) and the
    T_e-anchored Curti et al. (2020) mass-metallicity relations at equal
    stellar mass (8.5 < log M* < 11.3; fit residuals < 0.02 dex). The slope
    is 1.0 at oh = 7.9 (the scales converge at low metallicity) and 0.4 at
    oh = 9.3. It is monotonic for oh < 10.2.

    References
    ----------
    Curti M. et al. 2020, MNRAS 491, 944. Kewley L. J. & Ellison S. L. 2008,
    ApJ 681, 1183. Tremonti C. A. et al. 2004, ApJ 613, 898.
    """
    d = np.asarray(oh, dtype=float) - 8.9
    a, b, c = _T04_TO_TE
    return a + b * d + c * d**2


def curti2020_log_ratio(name, oh_te):
    """Strong-line ratio predicted by the Curti et al. (2017, 2020) calibrations.

    Parameters
    ----------
    name : {"R2", "R3", "N2", "S2"}
        ``R2`` = log([OII]3727,29 / Hbeta), ``R3`` = log([OIII]5007 / Hbeta),
        ``N2`` = log([NII]6584 / Halpha), ``S2`` = log([SII]6717,31 / Halpha)
        (reddening-corrected fluxes).
    oh_te : array-like
        12 + log(O/H) on the T_e scale [dex]; the calibrations cover about
        7.6-8.9.

    Returns
    -------
    ndarray
        log10 of the line ratio, sum_n c_n x**n with x = oh_te - 8.69 and the
        coefficients of :data:`CURTI2020_COEFFICIENTS`.

    References
    ----------
    Curti M. et al. 2017, MNRAS 465, 1384. Curti M. et al. 2020, MNRAS 491, 944.
    """
    try:
        coeffs = CURTI2020_COEFFICIENTS[name]
    except KeyError:
        raise ValueError(
            f"name must be one of {sorted(CURTI2020_COEFFICIENTS)}, got {name!r}."
        ) from None
    x = np.asarray(oh_te, dtype=float) - 8.69
    return np.polynomial.polynomial.polyval(x, coeffs)


def pettini_pagel_n2_metallicity(n2):
    """Pettini & Pagel (2004) linear N2 calibration.

    Parameters
    ----------
    n2 : array-like
        log10([NII]6584 / Halpha); valid for -2.5 < N2 < -0.3.

    Returns
    -------
    ndarray
        12 + log(O/H) = 8.90 + 0.57 N2 [dex] (T_e-anchored, 1-sigma 0.18 dex).

    References
    ----------
    Pettini M. & Pagel B. E. J. 2004, MNRAS 348, L59.
    """
    return 8.90 + 0.57 * np.asarray(n2, dtype=float)


def kauffmann03_o3hb(n2):
    """Kauffmann et al. (2003) star-forming / AGN demarcation in the BPT diagram.

    Parameters
    ----------
    n2 : array-like
        log10([NII]6584 / Halpha).

    Returns
    -------
    ndarray
        log10([OIII]5007 / Hbeta) of the dividing line,
        0.61 / (N2 - 0.05) + 1.3, for N2 < 0.05; -inf elsewhere (every
        galaxy with N2 >= 0.05 lies on the AGN side).

    References
    ----------
    Kauffmann G. et al. 2003, MNRAS 346, 1055.
    """
    n2 = np.asarray(n2, dtype=float)
    with np.errstate(divide="ignore"):
        line = 0.61 / (n2 - 0.05) + 1.3
    return np.where(n2 < 0.05, line, -np.inf)


def calzetti_k(wavelength):
    """Calzetti et al. (2000) attenuation curve k(lambda) = A_lambda / E(B-V).

    Parameters
    ----------
    wavelength : array-like
        Rest-frame wavelength [Angstrom], 1200-22000.

    Returns
    -------
    ndarray
        k(lambda) with R_V = 4.05 (k(Halpha) = 3.33, k(Hbeta) = 4.60).

    References
    ----------
    Calzetti D. et al. 2000, ApJ 533, 682.
    """
    x = 1.0e4 / np.asarray(wavelength, dtype=float)  # 1 / lambda [micron^-1]
    blue = 2.659 * (-2.156 + x * (1.509 + x * (-0.198 + 0.011 * x)))
    red = 2.659 * (-1.857 + 1.040 * x)
    return np.where(x > 1.0 / 0.63, blue, red) + _RV_CALZETTI


# ------------------------------------------------------------ Building blocks


def _window(centre, sigma, n_sigma, width):
    """Pixel windows around one Gaussian per row of a (n, width) array.

    ``centre`` and ``sigma`` are in pixels, shape (n,). Returns the row and
    column index arrays (n, 2 h + 1) and the column offsets from the centre
    [pixels]. Windows are clipped inside the array; a profile
    whose centre lies far outside only touches the array with ~0 weight.
    """
    half = int(min((width - 1) // 2, np.ceil(n_sigma * np.max(sigma)) + 1))
    offs = np.arange(-half, half + 1)
    base = np.clip(np.floor(centre).astype(np.int64), half, width - 1 - half)
    cols = base[:, None] + offs[None, :]
    rows = np.broadcast_to(np.arange(centre.size)[:, None], cols.shape)
    return rows, cols, cols - centre[:, None]


def _add_emission(target, centre, sigma, flux, inv_dlam=None):
    """Add pixel-integrated Gaussians holding ``flux`` (per row) to ``target``.

    With ``inv_dlam`` (1 / pixel width [1/A], per column) the result is a flux
    density; otherwise the integrated value per pixel.
    """
    rows, cols, d = _window(centre, sigma, 6.0, target.shape[1])
    s = 1.0 / (np.sqrt(2.0) * sigma[:, None])
    values = flux[:, None] * (0.5 * (erf((d + 0.5) * s) - erf((d - 0.5) * s)))
    if inv_dlam is not None:
        values *= inv_dlam[cols]
    target[rows, cols] += values.astype(target.dtype)


def _apply_absorption(target, centre, sigma, depth):
    """Multiply ``target`` by Gaussian dips 1 - depth exp(-u**2 / 2) (per row)."""
    rows, cols, d = _window(centre, sigma, 4.0, target.shape[1])
    dip = 1.0 - depth[:, None] * np.exp(-0.5 * (d / sigma[:, None]) ** 2)
    target[rows, cols] *= dip.astype(target.dtype)


def _components(lam_rest, p):
    """Smooth old and young continuum components, each 1 at 5500 A (rest).

    ``lam_rest`` has shape (n, m) [Angstrom]. Old: blackbody shape
    f_lambda ~ lambda**-5 / (exp(hc / lambda k T) - 1) times a 4000 A break;
    young: lambda**-beta times a small Balmer jump.
    """
    t = p["t_old"][:, None]
    r = 5500.0 / lam_rest
    e = np.exp(-_HC_K / (lam_rest * t))
    e0 = np.exp(-_HC_K / (5500.0 * t))
    old = (r * r) ** 2 * r * (e / (1.0 - e)) * ((1.0 - e0) / e0)
    old *= 1.0 - p["d4000"][:, None] * expit((4000.0 - lam_rest) / 20.0)
    young = np.exp(p["beta"][:, None] * np.log(r))
    young *= 1.0 - 0.15 * expit((3650.0 - lam_rest) / 15.0)
    return old, young


def _dust(lam_rest, ebv):
    """Attenuation factor 10**(-0.4 k(lambda) E(B-V)), Calzetti et al. (2000)."""
    return 10.0 ** (-0.4 * ebv[:, None] * calzetti_k(lam_rest))


def _sky_and_throughput(wave, log_step, sigma_inst_pix):
    """Relative night-sky spectrum and instrument throughput on the observed grid.

    The sky is a continuum rising slowly to the red (1 at 3700 A) plus the
    lines of ``_SKY_LINES`` at the instrumental resolution; the throughput
    mimics a two-arm spectrograph: low efficiency below ~4100 A and above
    ~8700 A and a dip at the dichroic cross-over near 5850 A.
    """
    loglam0 = np.log10(wave[0])
    dlam = wave * np.log(10.0) * log_step  # pixel widths [A]
    lines = np.zeros((1, wave.size))
    for line_wave, ew in _SKY_LINES:
        centre = np.array([(np.log10(line_wave) - loglam0) / log_step])
        _add_emission(lines, centre, np.array([sigma_inst_pix]), np.array([ew]))
    sky = 1.0 + 0.5 * (wave - 3700.0) / 5300.0 + lines[0] / dlam
    throughput = (
        expit((wave - 4100.0) / 180.0)
        * expit(-(wave - 8700.0) / 250.0)
        * (1.0 - 0.5 * np.exp(-0.5 * ((wave - 5850.0) / 60.0) ** 2))
    )
    return sky, np.maximum(throughput, 0.05)


def _draw_galaxies(rng, n, star_forming_fraction, z_range, snr_range, label_noise):
    """Per-galaxy physical and observational parameters (all vectorised)."""
    u_type = rng.uniform(size=n)
    u_agn = rng.uniform(size=n)
    kind = np.where(u_type < star_forming_fraction, 0, np.where(u_agn < 0.5, 1, 2))
    sf, agn = kind == 0, kind == 1
    p = {"kind": kind}

    # redshift: truncated gamma distribution
    shape, scale = _Z_GAMMA
    lo, hi = gammainc(shape, z_range[0] / scale), gammainc(shape, z_range[1] / scale)
    u = lo + (hi - lo) * rng.uniform(size=n)
    p["z"] = np.clip(scale * gammaincinv(shape, u), *z_range)

    # stellar mass: more massive galaxies dominate at higher z (flux limit)
    mean = np.where(sf, 9.75 + 3.0 * p["z"], 10.55 + 2.0 * p["z"])
    p["log_mstar"] = truncated_normal(rng, mean, np.where(sf, 0.5, 0.35), 8.5, 11.5)

    # gas-phase metallicity (MPA-JHU scale) from the Tremonti et al. MZR
    oh = tremonti_mass_metallicity(p["log_mstar"]) + 0.1 * rng.standard_normal(n)
    p["oh_all"] = np.clip(oh, *_OH_CLIP)
    p["oh_te_all"] = te_scale_metallicity(p["oh_all"])

    # stellar populations: young light fraction at 5500 A, old-star temperature,
    # 4000 A break depth, young power-law slope, stellar velocity dispersion
    dm = p["log_mstar"] - 10.0
    y_sf = expit(0.4 - 1.2 * dm + 0.8 * rng.standard_normal(n))
    y_agn = rng.uniform(0.05, 0.3, n)
    y_passive = rng.uniform(0.0, 0.08, n)
    p["young"] = np.where(sf, y_sf, np.where(agn, y_agn, y_passive))
    p["t_old"] = rng.uniform(4300.0, 5200.0, n)
    p["d4000"] = rng.uniform(0.25, 0.40, n)
    p["beta"] = rng.uniform(1.6, 2.6, n)
    p["sigma_star"] = np.clip(10.0 ** (2.0 + 0.25 * dm + 0.06 * rng.standard_normal(n)), 40, 300)

    # dust (nebular A_V; the stars see 0.44 of the colour excess)
    a_v_sf = np.clip(0.8 + 0.35 * dm + 0.3 * rng.standard_normal(n), 0.0, 1.5)
    p["a_v"] = np.where(sf, a_v_sf, np.where(agn, rng.uniform(0.0, 1.0, n),
                                             rng.uniform(0.0, 0.5, n)))
    p["ebv"] = p["a_v"] / _RV_CALZETTI

    # emission lines: gas velocity dispersion, rest-frame EW(Halpha)
    p["sigma_gas"] = np.where(sf, rng.uniform(50.0, 100.0, n), rng.uniform(150.0, 250.0, n))
    log_ew_sf = 1.1 + 0.8 * p["young"] - 0.1 * dm + 0.2 * rng.standard_normal(n)
    log_ew_agn = rng.uniform(np.log10(0.5), np.log10(6.0), n)
    p["ew_halpha"] = np.where(
        sf, np.clip(10.0**log_ew_sf, 10.0, 200.0), np.where(agn, 10.0**log_ew_agn, 0.0)
    )

    # strong-line ratios (log10, reddening-free) at fixed O/H
    ion = rng.standard_normal(n)
    ratios = {}
    for name in ("R2", "R3", "N2", "S2"):
        oh_eval = np.minimum(p["oh_te_all"], _N2_PEAK_OH) if name == "N2" else p["oh_te_all"]
        ratios[name] = (curti2020_log_ratio(name, oh_eval) + _IONISATION_LOADING[name] * ion
                        + _RATIO_SCATTER * rng.standard_normal(n))
    n2_agn = rng.uniform(-0.25, 0.35, n)
    r3_agn = np.maximum(kauffmann03_o3hb(n2_agn), -0.5) + rng.uniform(0.1, 1.2, n)
    s2_agn = -0.25 + 0.12 * rng.standard_normal(n)
    r2_agn = 0.55 + 0.15 * rng.standard_normal(n)
    p["N2"] = np.where(sf, ratios["N2"], n2_agn)
    # star-forming galaxies (BPT class 1) lie below the Kauffmann et al. line,
    # in the observed (attenuated) ratios
    k = {name: calzetti_k(EMISSION_LINES[name]) for name in
         ("Hbeta", "OIII_5007", "Halpha", "NII_6584")}
    dust_n2 = -0.4 * p["ebv"] * (k["NII_6584"] - k["Halpha"])
    dust_r3 = -0.4 * p["ebv"] * (k["OIII_5007"] - k["Hbeta"])
    r3_max = kauffmann03_o3hb(ratios["N2"] + dust_n2) - _KAUFFMANN_MARGIN - dust_r3
    p["R3"] = np.where(sf, np.minimum(ratios["R3"], r3_max), r3_agn)
    p["S2"] = np.where(sf, ratios["S2"], s2_agn)
    p["R2"] = np.where(sf, ratios["R2"], r2_agn)
    p["ha_hb"] = np.where(sf, _HA_HB, _HA_HB_AGN)
    p["oii_ratio"] = rng.uniform(1.25, 1.45, n)  # [OII]3729/3727 (n_e ~ 100 cm^-3)
    p["sii_ratio"] = rng.uniform(1.25, 1.45, n)  # [SII]6717/6731

    # observing conditions
    log_lo, log_hi = np.log(snr_range[0]), np.log(snr_range[1])
    p["snr_r"] = np.exp(rng.uniform(log_lo, log_hi, n)) if log_hi > log_lo else np.full(
        n, snr_range[0])
    p["mag_r"] = 17.3 - 2.0 * np.log10(p["snr_r"] / 10.0) + 0.4 * rng.standard_normal(n)
    p["sky_ratio"] = 10.0 ** rng.uniform(np.log10(0.3), np.log10(3.0), n)

    # catalogue label: the true abundance plus MPA-JHU-like measurement noise
    p["oh_label"] = np.clip(p["oh_all"] + label_noise * rng.standard_normal(n), *_OH_CLIP)
    return p


def _line_fluxes(p, ha_obs):
    """Observed (attenuated) fluxes of every line in EMISSION_LINES from Halpha."""
    ebv = p["ebv"]

    def att(name):
        return 10.0 ** (-0.4 * calzetti_k(EMISSION_LINES[name]) * ebv)

    ha_int = ha_obs / att("Halpha")
    hb_int = ha_int / p["ha_hb"]
    nii = ha_int * 10.0 ** p["N2"]
    oiii = hb_int * 10.0 ** p["R3"]
    oii = hb_int * 10.0 ** p["R2"]
    sii = ha_int * 10.0 ** p["S2"]
    r_o, r_s = p["oii_ratio"], p["sii_ratio"]
    intrinsic = {
        "OII_3727": oii / (1.0 + r_o),
        "OII_3729": oii * r_o / (1.0 + r_o),
        "Hdelta": _HD_HB * hb_int,
        "Hgamma": _HG_HB * hb_int,
        "Hbeta": hb_int,
        "OIII_4959": oiii / _OIII_RATIO,
        "OIII_5007": oiii,
        "NII_6548": nii / _NII_RATIO,
        "Halpha": ha_int,
        "NII_6584": nii,
        "SII_6717": sii * r_s / (1.0 + r_s),
        "SII_6731": sii / (1.0 + r_s),
    }
    return {name: f * att(name) for name, f in intrinsic.items()}


def make_galaxy_spectra(
    n_spectra=1000,
    *,
    random_state=None,
    star_forming_fraction=1.0,
    z_range=(0.0, 0.3),
    snr_range=(3, 30),
    wave_min=3700.0,
    wave_max=9000.0,
    log_step=1e-4,
    resolution=1800,
    label_noise=0.05,
    sky_residuals=True,
    bad_pixel_fraction=1e-3,
    return_batch=True,
):
    """Simulate LAMOST-like galaxy spectra labelled with gas-phase 12 + log(O/H).

    The sample mimics the training set of the LAMOST gas-metallicity CNN
    (Feng, Wang & Li 2026): low-resolution (R ~ 1800) observed-frame spectra
    of galaxies at z < 0.3, S/N_r of 3-30, with star-forming galaxies
    labelled by the MPA-JHU-like 12 + log(O/H). Metallicity enters the
    spectrum through the strong emission-line ratios and, via the
    mass-metallicity relation, through the stellar continuum.

    Parameters
    ----------
    n_spectra : int, default=1000
        Number of spectra.
    random_state : int, numpy.random.RandomState or None, default=None
        Seed or generator (see :func:`sklearn.utils.check_random_state`). The
        same seed gives identical spectra.
    star_forming_fraction : float, default=1.0
        Fraction of star-forming galaxies (0-1). The others are split evenly
        between LINER/AGN-like galaxies (weak lines above the Kauffmann et al.
        2003 line) and passive galaxies (no emission lines).
    z_range : (float, float), default=(0.0, 0.3)
        Redshift range (within [0, 1]); redshifts follow a gamma distribution
        (shape 3, scale 0.027) truncated to it: ~85% lie at 0.02-0.15, ~8%
        above 0.15.
    snr_range : (float, float), default=(3, 30)
        Range of the median per-pixel S/N in the observed r band (5500-6900
        A), drawn log-uniformly; ``low == high`` fixes it.
    wave_min, wave_max : float, default=3700.0, 9000.0
        Observed wavelength range [Angstrom, vacuum]; it must cover part of
        5500-6900 A.
    log_step : float, default=1e-4
        Pixel size in log10(wavelength) [dex] (LAMOST/SDSS: 1e-4, i.e. 69
        km/s per pixel).
    resolution : float, default=1800
        Spectral resolving power R = lambda / FWHM; the instrumental Gaussian
        has sigma_lambda = lambda / (2.355 R).
    label_noise : float, default=0.05
        Gaussian noise [dex] added to the catalogue label ``oh`` (not to the
        abundance that sets the emission lines, ``oh_true``), like the
        uncertainty of the MPA-JHU ``oh_p50`` estimates (typically a few
        hundredths to 0.1 dex). 0 gives noise-free labels.
    sky_residuals : bool, default=True
        Add sky-subtraction residuals at [OI] 5578.9 and 6302.0 A (vacuum) to
        about half of the spectra each (not reflected in ``ivar``).
    bad_pixel_fraction : float, default=1e-3
        Probability that a pixel is bad: such pixels have ``mask=True``,
        ``ivar=0`` and ``flux=0`` (~4 per default spectrum).
    return_batch : bool, default=True
        Return a :class:`~skstellar.spectrum.SpectrumBatch`; otherwise the
        tuple ``(flux, wavelength, meta)``.

    Returns
    -------
    batch : SpectrumBatch
        When ``return_batch``: shared 1-D ``wavelength`` [A, vacuum,
        observed frame], ``flux`` (n_spectra, n_pixels) float32 [1e-17 erg
        s^-1 cm^-2 A^-1], ``ivar`` float32 [(1e-17 erg s^-1 cm^-2
        A^-1)^-2], boolean ``mask`` and ``meta``.
    flux, wavelength, meta : ndarray, ndarray, pandas.DataFrame
        When ``return_batch=False``.

        ``meta`` has one row per spectrum with the columns

        * ``z``: redshift;
        * ``snr_r``: median S/N per pixel in the observed r band (exact for the
          noise-free model over the error spectrum);
        * ``log_mstar``: log10(M*/Msun) [dex];
        * ``oh``: the catalogue label 12 + log(O/H) [dex], MPA-JHU scale,
          ``oh_true`` plus ``label_noise``; NaN for non-star-forming galaxies
          (the label exists for star-forming galaxies only);
        * ``oh_true``: the noise-free 12 + log(O/H) [dex] (MPA-JHU scale)
          that sets the line ratios; NaN for non-star-forming galaxies;
        * ``star_forming``: bool; ``galaxy_type``: "star_forming", "agn" or
          "passive";
        * ``a_v``: nebular V-band attenuation [mag] (the stellar continuum
          has 0.44 of the colour excess; for passive galaxies only that
          stellar part is used);
        * ``ew_halpha``: rest-frame Halpha emission equivalent width [A],
          against the smooth continuum;
        * ``n2``: log10([NII]6584/Halpha); ``o3n2``:
          log10([OIII]5007/Hbeta) - n2 (observed line fluxes; NaN without
          lines);
        * ``oh_te``: ``oh_true`` converted to the T_e scale, used with the
          strong-line calibrations (see :func:`te_scale_metallicity`; NaN for
          non-SF);
        * ``halpha_flux``, ``hbeta_flux``, ``nii_6584_flux``,
          ``oiii_5007_flux``: observed line fluxes [1e-17 erg s^-1 cm^-2];
        * ``young_fraction`` (light fraction of the young component at
          5500 A), ``sigma_gas``, ``sigma_star`` [km/s], ``mag_r``
          (r-band continuum magnitude [AB mag]).

    Raises
    ------
    ValueError
        For a non-positive ``n_spectra`` or out-of-range arguments.

    See Also
    --------
    tremonti_mass_metallicity, te_scale_metallicity, curti2020_log_ratio,
    pettini_pagel_n2_metallicity, kauffmann03_o3hb, calzetti_k

    Notes
    -----
    **Grid.** Pixels are at 10**(log10(wave_min) + log_step i) up to
    ``wave_max`` (3861 pixels by default), vacuum, observed frame (the
    spectra are not shifted to the rest frame, as in Feng et al.).

    **Galaxies.** log M* follows a normal distribution (mean 9.75 + 3 z,
    sigma 0.5 dex for star-forming; 10.55 + 2 z, 0.35 dex otherwise)
    truncated to 8.5-11.5, so massive galaxies dominate at high z as in a
    flux-limited survey. The label is the Tremonti et al. (2004) MZR,
    12 + log(O/H) = -1.492 + 1.847 x - 0.08026 x**2, plus 0.1 dex Gaussian
    scatter, clipped to 7.9-9.3 (``oh_true``); the catalogue label ``oh``
    adds ``label_noise`` (0.05 dex by default) and is clipped again.

    **Emission lines.** The strong-line calibrations of Curti et al. (2020,
    Table 2; R3 and N2 as in Curti et al. 2017; :func:`curti2020_log_ratio`,
    :data:`CURTI2020_COEFFICIENTS`) are on the T_e scale, while the label is
    on the MPA-JHU scale, which is higher by up to ~0.35 dex (Kewley &
    Ellison 2008), so the label is first converted with
    :func:`te_scale_metallicity` (obtained by matching the Tremonti and Curti
    et al. 2020 MZRs at equal mass).

    N2 is held at its maximum above 12+log(O/H)_Te = 8.87, where the
    polynomial turns over (N2 saturation). Each log ratio gets 0.07 dex
    independent scatter plus a common ionisation-parameter-like term (unit
    normal u times -0.06, +0.08, -0.04, -0.05 dex for R2, R3, N2, S2).
    log([OIII]/Hbeta) is capped 0.05 dex below the Kauffmann et al. (2003)
    line (affects ~4% of galaxies, at the highest O/H), since the label
    exists for BPT star-forming galaxies only. With these relations the
    simulated N2 maps back through the Pettini & Pagel (2004) calibration
    12+log(O/H) = 8.90 + 0.57 N2 to the T_e-scale value within ~0.1 dex
    (median offset -0.08 dex, scatter 0.05 dex). Fixed ratios: [OIII]4959 =
    [OIII]5007 / 2.98 (Storey & Zeippen 2000), [NII]6548 = [NII]6584 / 3.05;
    case-B Halpha/Hbeta = 2.86, Hgamma/Hbeta = 0.468, Hdelta/Hbeta = 0.259
    (Osterbrock & Ferland 2006);
    [OII]3729/3727 and [SII]6717/6731 uniform in 1.25-1.45 (n_e ~ 100
    cm^-3). The rest-frame EW(Halpha) is log-normal,
    log EW = 1.1 + 0.8 f_young - 0.1 (log M* - 10) +- 0.2, clipped to 10-200
    A; it fixes the Halpha flux against the attenuated continuum. The
    nebular A_V = 0.8 + 0.35 (log M* - 10) +- 0.3 mag, clipped to 0-1.5
    (dustier massive galaxies, Garn & Best 2010), attenuates the lines with
    the Calzetti et al. (2000) curve (R_V = 4.05), producing the Balmer
    decrement. Lines are Gaussians with intrinsic velocity dispersion
    U(50, 100) km/s added in quadrature to the instrumental
    sigma = c / (2.355 R) (71 km/s at R = 1800), integrated over pixels.

    **Non-star-forming galaxies.** LINER/AGN-like: log([NII]/Halpha) uniform
    in -0.25..0.35, log([OIII]/Hbeta) = max(Kauffmann line, -0.5) +
    U(0.1, 1.2) (so always above the Kauffmann et al. 2003 line),
    log([SII]/Halpha) ~ -0.25 +- 0.12, log([OII]/Hbeta) ~ 0.55 +- 0.15,
    Halpha/Hbeta = 3.1, EW(Halpha) 0.5-6 A, dispersion 150-250 km/s.
    Passive: no emission lines. Both have older populations and higher mass.

    **Continuum (a simple analytic model, not population synthesis).** A mix
    of an old component (blackbody shape of 4300-5200 K in f_lambda, a 4000 A
    break of depth 25-40%, absorption by Ca II H and K, the G band, Mg b,
    Fe 5270/5335, Na D, the Ca II triplet and weak Balmer lines) and a young
    component (f_lambda ~ lambda**-beta, beta = 1.6-2.6, strong broad Balmer
    absorption H8-Halpha, a small Balmer jump), both 1 at 5500 A and mixed
    with the young light fraction f_young = expit(0.4 - 1.2 (log M* - 10) +-
    0.8) for star-forming galaxies (lower-mass galaxies are bluer). Features
    are Gaussian dips broadened by the stellar dispersion (100 km/s at
    10^10 Msun, scaling as M*^0.25) and the instrument. The stars are
    attenuated with E(B-V)_star = 0.44 E(B-V)_gas (Calzetti et al. 2000).

    **Noise.** The smooth continuum is scaled so that its mean flux density
    over 5500-6900 A (observed) matches an AB magnitude ``mag_r`` =
    17.3 - 2 log10(S/N_r / 10) +- 0.4 (fibre-like). The error spectrum is
    sigma ~ sqrt(f + s B_sky(lambda)) / T(lambda): object and sky photon
    noise (sky 0.3-3 times the galaxy in r, with [OI], Na D and OH lines)
    through a LAMOST-like throughput T (poor below ~4100 A and above ~8700 A,
    a dip at the dichroic near 5850 A), scaled so that the median S/N per
    pixel over 5500-6900 A equals ``snr_r``. The flux is the model plus
    Gaussian noise; ``ivar = 1 / sigma**2``.

    **Recoverability.** With the defaults, a ridge regression (alpha = 10)
    on de-redshifted, min-max scaled spectra (3700-6900 A rest, 2 A steps)
    of 1600 galaxies predicts ``oh`` for 400 others with a residual scatter
    of ~0.075 dex (~0.45 of the label spread; ~0.06 dex against
    ``oh_true``), comparable to the 0.083 dex of the CNN of Feng et al.;
    the same regression on observed-frame spectra (3800-8000 A, as the CNN
    input) reaches only ~0.15 dex, since a linear model cannot follow the
    redshifted lines.

    **Speed.** The spectra are built in blocks of 2048 as 2-D arrays (the
    smooth continuum on every 8th pixel, interpolated); 10,000 spectra take
    a few seconds and ~0.35 GB.

    References
    ----------
    Calzetti D. et al. 2000, ApJ 533, 682. Curti M. et al. 2017, MNRAS 465,
    1384. Curti M. et al. 2020, MNRAS 491, 944. Feng J., Wang L. & Li P.
    2026, Acta Astron. Sin. 67 (2), doi:10.15940/j.cnki.0001-5245.2026.02.010.
    Garn T. & Best P. N. 2010, MNRAS 409, 421. Kauffmann G. et al. 2003,
    MNRAS 346, 1055. Kewley L. J. & Ellison S. L. 2008, ApJ 681, 1183.
    Osterbrock D. E. & Ferland G. J. 2006, Astrophysics of Gaseous Nebulae
    and AGN. Pettini M. & Pagel B. E. J. 2004, MNRAS 348, L59. Storey P. J. &
    Zeippen C. J. 2000, MNRAS 312, 813. Tremonti C. A. et al. 2004, ApJ 613,
    898.

    Examples
    --------
    >>> from skstellar.datasets.galaxy import make_galaxy_spectra
    >>> batch = make_galaxy_spectra(100, random_state=0)
    >>> batch.flux.shape
    (100, 3861)
    >>> bool(batch.meta["star_forming"].all())
    True
    """
    n = check_integer("n_spectra", n_spectra, kind="a positive integer")
    sff = float(star_forming_fraction)
    if not 0.0 <= sff <= 1.0:
        raise ValueError(
            f"star_forming_fraction must lie in [0, 1], got {star_forming_fraction!r}."
        )
    z_range = check_range_pair("z_range", z_range, 0.0, 1.0)
    snr_range = check_range_pair("snr_range", snr_range, 1e-3, 1e4, allow_equal=True)
    wave_min, wave_max, log_step = float(wave_min), float(wave_max), float(log_step)
    if not (np.isfinite(wave_min) and np.isfinite(wave_max) and 0 < wave_min < wave_max):
        raise ValueError(f"Need 0 < wave_min < wave_max, got {wave_min!r}, {wave_max!r}.")
    if not (np.isfinite(log_step) and 0 < log_step < 0.01):
        raise ValueError(f"log_step must lie in (0, 0.01) dex, got {log_step!r}.")
    resolution = float(resolution)
    if not (np.isfinite(resolution) and resolution > 0):
        raise ValueError(f"resolution must be positive, got {resolution!r}.")
    bad_pixel_fraction = float(bad_pixel_fraction)
    label_noise = float(label_noise)
    if not (np.isfinite(label_noise) and 0.0 <= label_noise <= 1.0):
        raise ValueError(f"label_noise must lie in [0, 1] dex, got {label_noise!r}.")
    if not 0.0 <= bad_pixel_fraction < 0.5:
        raise ValueError(f"bad_pixel_fraction must lie in [0, 0.5), got {bad_pixel_fraction!r}.")

    n_pix = int(np.floor((np.log10(wave_max) - np.log10(wave_min)) / log_step + 1e-9)) + 1
    loglam = np.log10(wave_min) + log_step * np.arange(n_pix)
    wave = 10.0**loglam
    if ((wave >= _R_BAND[0]) & (wave <= _R_BAND[1])).sum() < 10:
        raise ValueError("The wavelength grid must cover the r band (5500-6900 A).")

    rng = check_random_state(random_state)
    p = _draw_galaxies(rng, n, sff, z_range, snr_range, label_noise)
    noise_rng = np.random.default_rng(rng.randint(0, 2**31 - 1, size=4))

    ln10 = np.log(10.0)
    sigma_inst_v = _C_KMS / (2.3548 * resolution)  # [km/s]
    sigma_inst_pix = sigma_inst_v / (_C_KMS * ln10 * log_step)
    sky, throughput = _sky_and_throughput(wave, log_step, sigma_inst_pix)
    sky32, thr32 = sky.astype(np.float32), throughput.astype(np.float32)
    # continuum flux density [1e-17 erg/s/cm^2/A] at 6231 A for an AB magnitude mag_r
    f_r = 10.0 ** (-0.4 * (p["mag_r"] + 48.6)) * 2.99792458e18 / 6231.0**2 / 1e-17

    # padded grid (a multiple of _COARSE pixels wide) so that line/feature
    # windows never wrap at the edges; the smooth continuum is computed on every
    # _COARSE-th pixel and interpolated linearly (in log lambda)
    inner = slice(_PAD, _PAD + n_pix)
    width = int(np.ceil((n_pix + 2 * _PAD) / _COARSE)) * _COARSE
    loglam_pad = loglam[0] + log_step * np.arange(-_PAD, width - _PAD)
    wave_coarse = 10.0 ** (loglam[0] + log_step * (np.arange(0, width + 1, _COARSE) - _PAD))
    w_frac = (np.arange(_COARSE) / _COARSE).astype(np.float32)
    inv_dlam_pad = 1.0 / (10.0**loglam_pad * ln10 * log_step)  # 1 / pixel width [1/A]
    feat_rest, feat_sig, feat_old, feat_young = np.array(_ABSORPTION_FEATURES).T

    r_lo, r_hi = np.searchsorted(wave, _R_BAND[0]), np.searchsorted(wave, _R_BAND[1], "right")
    r_coarse = (wave_coarse >= _R_BAND[0]) & (wave_coarse <= _R_BAND[1])

    flux = np.empty((n, n_pix), dtype=np.float32)
    ivar = np.empty((n, n_pix), dtype=np.float32)
    mask = np.zeros((n, n_pix), dtype=bool)
    fluxes = {name: np.zeros(n) for name in EMISSION_LINES}
    residual_lines = [w for w in _SKY_RESIDUAL_LINES if wave[0] < w < wave[-1]]
    # work buffers reused by every chunk
    n_buf = min(n, _CHUNK)
    cont_buf = np.empty((n_buf, width), dtype=np.float32)
    line_buf = np.empty((n_buf, width), dtype=np.float32)
    sigma_buf = np.empty((n_buf, n_pix), dtype=np.float32)

    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        pc = {key: value[sl] for key, value in p.items()}
        m = pc["z"].size
        opz = 1.0 + pc["z"]
        log_opz = np.log10(opz)
        y = pc["young"][:, None]
        ebv_star = _STAR_GAS_EBV * pc["ebv"]
        cont, lines, sigma = cont_buf[:m], line_buf[:m], sigma_buf[:m]

        # --- stellar continuum: rest-frame model on the observed grid ---------------
        lam_rest = wave_coarse[None, :] / opz[:, None]
        old, young = _components(lam_rest, pc)
        coarse = ((1.0 - y) * old + y * young) * _dust(lam_rest, ebv_star)
        # scale to the r-band flux density of the magnitude mag_r
        norm = f_r[sl] / coarse[:, r_coarse].mean(axis=1)
        coarse = (coarse * norm[:, None]).astype(np.float32)
        shape3 = (m, width // _COARSE, _COARSE)
        np.multiply(coarse[:, :-1, None], 1.0 - w_frac, out=cont.reshape(shape3))
        np.multiply(coarse[:, 1:, None], w_frac, out=lines.reshape(shape3))
        cont += lines
        # absorption features with the light-weighted depth of both components
        o_f, y_f = _components(np.broadcast_to(feat_rest, (m, feat_rest.size)).copy(), pc)
        y_loc = y * y_f / ((1.0 - y) * o_f + y * y_f)
        depth = (1.0 - y_loc) * feat_old + y_loc * feat_young
        for k, rest in enumerate(feat_rest):
            sig_a = np.sqrt(feat_sig[k] ** 2 + (rest * pc["sigma_star"] / _C_KMS) ** 2
                            + (rest * sigma_inst_v / _C_KMS) ** 2)
            centre = (np.log10(rest) + log_opz - loglam_pad[0]) / log_step
            _apply_absorption(cont, centre, sig_a / (rest * ln10 * log_step), depth[:, k])

        # --- emission lines ---------------------------------------------------------
        lam_ha = np.full((m, 1), EMISSION_LINES["Halpha"])
        o_ha, y_ha = _components(lam_ha, pc)
        c_ha = norm * (((1.0 - y) * o_ha + y * y_ha) * _dust(lam_ha, ebv_star))[:, 0]
        line_f = _line_fluxes(pc, pc["ew_halpha"] * opz * c_ha)
        sig_line = np.sqrt(pc["sigma_gas"] ** 2 + sigma_inst_v**2) / (_C_KMS * ln10 * log_step)
        for name, rest in EMISSION_LINES.items():
            fluxes[name][sl] = line_f[name]
            centre = (np.log10(rest) + log_opz - loglam_pad[0]) / log_step
            _add_emission(cont, centre, sig_line, line_f[name], inv_dlam_pad)
        model = cont[:, inner]

        # --- noise -------------------------------------------------------------------
        sky_level = (pc["sky_ratio"] * f_r[sl]).astype(np.float32)[:, None]
        tmp = lines[:, inner]
        np.multiply(sky_level, sky32, out=tmp)
        np.maximum(model, 0.0, out=sigma)
        sigma += tmp
        sigma /= thr32
        np.sqrt(sigma, out=sigma)
        snr_unit = np.median(model[:, r_lo:r_hi] / sigma[:, r_lo:r_hi], axis=1)
        sigma *= (snr_unit / pc["snr_r"]).astype(np.float32)[:, None]
        obs = flux[sl]
        noise_rng.standard_normal(dtype=np.float32, out=obs)
        obs *= sigma
        obs += model
        if sky_residuals:
            for line_wave in residual_lines:
                u = (loglam - np.log10(line_wave)) / (sigma_inst_pix * log_step)
                near = np.abs(u) < 6.0
                prof = np.exp(-0.5 * u[near] ** 2)
                peak = int(np.argmin(np.abs(u)))
                amp = noise_rng.normal(0.0, 3.0, m) * (noise_rng.uniform(size=m) < 0.5)
                obs[:, near] += ((amp * sigma[:, peak])[:, None] * prof).astype(np.float32)
        iv = ivar[sl]
        np.multiply(sigma, sigma, out=iv)
        np.divide(1.0, iv, out=iv)
        # bad pixels: a Poisson number per spectrum at random positions
        flag_bad_pixels(noise_rng, bad_pixel_fraction, obs, iv, mask[sl])

    sf = p["kind"] == 0
    has_lines = p["kind"] != 2
    with np.errstate(divide="ignore", invalid="ignore"):
        n2 = np.where(has_lines, np.log10(fluxes["NII_6584"] / fluxes["Halpha"]), np.nan)
        o3hb = np.where(has_lines, np.log10(fluxes["OIII_5007"] / fluxes["Hbeta"]), np.nan)
    meta = pd.DataFrame(
        {
            "z": p["z"],
            "snr_r": p["snr_r"],
            "log_mstar": p["log_mstar"],
            "oh": np.where(sf, p["oh_label"], np.nan),
            "star_forming": sf,
            "a_v": p["a_v"],
            "ew_halpha": p["ew_halpha"],
            "n2": n2,
            "o3n2": o3hb - n2,
            "oh_true": np.where(sf, p["oh_all"], np.nan),
            "oh_te": np.where(sf, p["oh_te_all"], np.nan),
            "galaxy_type": np.array(["star_forming", "agn", "passive"])[p["kind"]],
            "halpha_flux": fluxes["Halpha"],
            "hbeta_flux": fluxes["Hbeta"],
            "nii_6584_flux": fluxes["NII_6584"],
            "oiii_5007_flux": fluxes["OIII_5007"],
            "young_fraction": p["young"],
            "sigma_gas": np.where(has_lines, p["sigma_gas"], np.nan),
            "sigma_star": p["sigma_star"],
            "mag_r": p["mag_r"],
        }
    )
    meta.attrs["description"] = (
        "Simulated LAMOST-like galaxy spectra (skstellar.datasets.make_galaxy_spectra): "
        "observed-frame vacuum wavelengths [A], flux [1e-17 erg/s/cm^2/A], "
        "oh = 12+log(O/H) on the MPA-JHU scale (NaN for non-star-forming)."
    )
    if return_batch:
        return SpectrumBatch(wavelength=wave, flux=flux, ivar=ivar, mask=mask, meta=meta)
    return flux, wave, meta
