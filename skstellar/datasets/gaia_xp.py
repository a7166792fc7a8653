"""Simulated Gaia DR3 XP continuous spectra with photometry and APOGEE-like labels.

:func:`make_xp_catalog` builds an offline stand-in for the training table of
the Gaia XP "uncertain neural network" (Fallows & Sanders, Sects. 2-3): Gaia
BP/RP continuous-spectrum coefficients with their errors and correlations in
the layout of the Gaia archive table ``gaiadr3.xp_continuous_mean_spectrum``,
Gaia/2MASS/WISE photometry and parallaxes with archive column names, and six
APOGEE-like labels with errors. The same module exposes the pieces of the
forward model that other code may want to reuse: the Hermite-function basis
(:func:`hermite_functions`), the design matrix of each band
(:func:`xp_design_matrix`) and the wavelength of each pseudo-wavelength
sample (:func:`xp_wavelength_grid`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

from .._validation import check_integer
from ..io.gaia_xp import DR3_N_COEFFICIENTS
from .simulation import _MAG_PER_LN_FLUX, scattered_magnitude_error, truncated_normal

__all__ = [
    "XP_BANDS",
    "XP_LABELS",
    "XP_N_SAMPLES",
    "hermite_functions",
    "make_xp_catalog",
    "xp_design_matrix",
    "xp_wavelength_grid",
]

#: The two Gaia spectrophotometers, in archive column-prefix order.
XP_BANDS = ("bp", "rp")

#: APOGEE (ASPCAP) label names predicted by the XP uncertain NN (Sect. 3).
XP_LABELS = ("teff", "logg", "fe_h", "c_fe", "n_fe", "alpha_m")

#: Number of pseudo-wavelength samples per band of the simulated internal spectra.
XP_N_SAMPLES = 60

# --- Instrument model (see make_xp_catalog Notes, "Spectra" and "Coefficients").

#: Hermite argument x at pseudo-wavelength 0 and 59 (GaiaXPy sampling of DR3 bases).
_X_RANGE = {"bp": (-9.800, 9.467), "rp": (-9.933, 9.600)}

#: Wavelength [nm] at pseudo-wavelength 0 and 59; 1/lambda is linear in the sample index.
_LAMBDA_RANGE_NM = {"bp": (318.0, 705.0), "rp": (610.0, 1070.0)}

#: Band response: blue edge, red edge [nm], edge widths [nm] and a Gaussian
#: quantum-efficiency envelope (centre, sigma) [nm]; the amplitude is calibrated.
_RESPONSE = {
    "bp": dict(blue=345.0, red=660.0, blue_width=6.0, red_width=11.0, qe=(520.0, 400.0)),
    "rp": dict(blue=648.0, red=1025.0, blue_width=8.0, red_width=12.0, qe=(720.0, 260.0)),
}

#: Line-spread function: Gaussian sigma in units of the local sample spacing.
_LSF_SAMPLES = 1.0

#: Broad-band G response on its own wavelength grid [nm].
_G_GRID_NM = np.linspace(325.0, 1075.0, 76)
_G_RESPONSE = dict(blue=340.0, red=1020.0, blue_width=8.0, red_width=15.0, qe=(650.0, 260.0))

#: Effective wavelengths [um] of 2MASS J, H and WISE W1, W2.
_IR_BANDS = ("j_m", "h_m", "w1mpro", "w2mpro")
_IR_LAMBDA_UM = np.array([1.235, 1.662, 3.35, 4.60])

#: Solar absolute magnitudes (Vega) used to set the zero points: G (Casagrande &
#: VandenBerg 2018), BP - G and G - RP of the Sun (BP - RP = 0.82), and 2MASS /
#: WISE values of Willmer (2018).
_SUN_ABS_MAG = {
    "G": 4.67,
    "BP": 4.67 + 0.33,
    "RP": 4.67 - 0.49,
    "j_m": 3.67,
    "h_m": 3.32,
    "w1mpro": 3.26,
    "w2mpro": 3.28,
}
_SUN = dict(teff=5772.0, logg=4.438, fe_h=0.0, c_fe=0.0, n_fe=0.0, alpha_m=0.0)

#: Flux calibration anchor: 18 Sco (Gaia DR3 4345775217221821312, a solar twin,
#: Teff 5810 K, logg 4.45, [Fe/H] 0.05) has G = 5.33 and BP, RP c0 = 9.23e6, 8.81e6
#: (GaiaXPy test fixture ``18Sco-XP-spectra.csv`` in the shared ``gaia_xp`` data folder).
_ANCHOR = dict(teff=5810.0, logg=4.45, fe_h=0.05, c_fe=0.0, n_fe=0.0, alpha_m=0.0)
_ANCHOR_G = 5.33
_ANCHOR_C0 = {"bp": 9.23e6, "rp": 8.81e6}

#: Per-sample noise variance (internal units, e-/s per sample squared):
#: noise_scale**2 * (30 / n_transits) * (read**2 + gain * l + (floor * l)**2),
#: with l = f + spread * mean(f) the light in the sample of flux f.
_NOISE_READ = {"bp": 1.2, "rp": 0.9}
_NOISE_GAIN = 3.0e-3
_NOISE_FLOOR = 1.0e-3
#: Fraction of a star's mean sample flux spread over all samples by PSF/LSF wings.
_NOISE_SPREAD = 1.0
_MEAN_TRANSITS = 30.0

#: Gaia magnitude errors [mag]: floor + scale * 10**(0.4 (m - m_ref)).
_GAIA_MAG_ERROR = {
    "G": (0.0003, 0.0010, 16.0),
    "BP": (0.0010, 0.0040, 17.0),
    "RP": (0.0008, 0.0025, 16.0),
}
#: 2MASS / WISE magnitude errors [mag], same form.
_IR_MAG_ERROR = {
    "j_m": (0.020, 0.010, 14.0),
    "h_m": (0.022, 0.012, 13.5),
    "w1mpro": (0.022, 0.008, 13.0),
    "w2mpro": (0.020, 0.015, 12.8),
}
#: Parallax error [mas]: floor + scale * 10**(0.4 (G - 16)).
_PARALLAX_ERROR = (0.012, 0.025, 16.0)

#: Typical APOGEE DR17 label errors (teff in K, the others in dex).
_LABEL_ERROR = {
    "teff": 60.0,
    "logg": 0.045,
    "fe_h": 0.010,
    "c_fe": 0.022,
    "n_fe": 0.030,
    "alpha_m": 0.012,
}

#: Stars per chunk of the vectorised spectral computation (bounds temporary memory).
_CHUNK = 4096

#: Second radiation constant hc/k [um K].
_C2_UM_K = 14387.77


# ------------------------------------------------- Basis functions and grids


def hermite_functions(n_functions, x) -> np.ndarray:
    """Orthonormal Hermite functions psi_0 ... psi_{n-1} evaluated at ``x``.

    psi_n(x) = H_n(x) exp(-x**2 / 2) / sqrt(2**n n! sqrt(pi)), with H_n the
    physicists' Hermite polynomials; they are orthonormal on the real line and
    are the raw basis of the Gaia XP continuous representation (Carrasco et
    al. 2021). They are computed with the stable three-term recurrence
    psi_{n+1} = sqrt(2 / (n + 1)) x psi_n - sqrt(n / (n + 1)) psi_{n-1},
    starting from psi_0 = pi**(-1/4) exp(-x**2 / 2), which never forms the
    (overflowing) polynomial or factorial.

    Parameters
    ----------
    n_functions : int
        Number of functions (orders 0 to ``n_functions - 1``), at least 1.
    x : array-like
        Dimensionless abscissae.

    Returns
    -------
    ndarray of shape (n_functions,) + x.shape
        ``out[n]`` is psi_n(x).

    Raises
    ------
    ValueError
        If ``n_functions`` is not a positive integer or ``x`` is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(-12, 12, 4001)
    >>> psi = hermite_functions(3, x)
    >>> bool(np.allclose(psi @ psi.T * (x[1] - x[0]), np.eye(3)))
    True
    """
    n_functions = check_integer("n_functions", n_functions, kind="a positive integer")
    x = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be finite; remove NaN or inf abscissae.")
    out = np.empty((n_functions,) + x.shape)
    out[0] = np.pi**-0.25 * np.exp(-0.5 * x**2)
    if n_functions > 1:
        out[1] = np.sqrt(2.0) * x * out[0]
    for n in range(1, n_functions - 1):
        out[n + 1] = np.sqrt(2.0 / (n + 1)) * x * out[n] - np.sqrt(n / (n + 1.0)) * out[n - 1]
    return out


def _check_band(band):
    if band not in XP_BANDS:
        raise ValueError(f"band must be 'bp' or 'rp', got {band!r}.")
    return band


def xp_wavelength_grid(band) -> np.ndarray:
    """Wavelength of each pseudo-wavelength sample of the simulated XP spectra.

    Sample ``u = 0 ... 59`` of a band lies at 1/lambda linear in ``u``,
    from 318 to 705 nm (BP) and 610 to 1070 nm (RP), so that, as in Gaia's
    prism spectra, the dispersion is finer in the blue of each band.

    Parameters
    ----------
    band : {"bp", "rp"}
        Spectrophotometer.

    Returns
    -------
    ndarray of shape (60,)
        Wavelengths [nm], increasing.
    """
    lo, hi = _LAMBDA_RANGE_NM[_check_band(band)]
    return 1.0 / np.linspace(1.0 / lo, 1.0 / hi, XP_N_SAMPLES)


def xp_design_matrix(band, n_coefficients=DR3_N_COEFFICIENTS) -> np.ndarray:
    """Hermite design matrix of a band on its 60-sample pseudo-wavelength grid.

    Pseudo-wavelength samples ``u = 0 ... 59`` map linearly onto the Hermite
    argument x in [-9.800, 9.467] (BP) or [-9.933, 9.600] (RP), the ranges of
    the Gaia DR3 bases as sampled by GaiaXPy. An internally calibrated
    spectrum is ``flux = coefficients @ A`` and its covariance
    ``A.T @ C @ A``, the GaiaXPy convention.

    Parameters
    ----------
    band : {"bp", "rp"}
        Spectrophotometer.
    n_coefficients : int, default=55
        Number of basis functions, 1 to 55.

    Returns
    -------
    ndarray of shape (n_coefficients, 60)
        ``A[n, u]`` = psi_n(x(u)) (dimensionless).
    """
    k = _check_n_coefficients(n_coefficients)
    return hermite_functions(k, np.linspace(*_X_RANGE[_check_band(band)], XP_N_SAMPLES))


def _check_n_coefficients(n_coefficients):
    # any integer passes the type check; the range has its own message below
    k = check_integer("n_coefficients", n_coefficients, minimum=-np.inf,
                      kind=f"an integer in [1, {DR3_N_COEFFICIENTS}]")
    if not 1 <= k <= DR3_N_COEFFICIENTS:
        raise ValueError(
            f"n_coefficients must be in [1, {DR3_N_COEFFICIENTS}] (55 is Gaia DR3's value), "
            f"got {n_coefficients!r}."
        )
    return k


# ------------------------------------------------------------ Spectral model


def _logistic(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _response(lam_nm, blue, red, blue_width, red_width, qe):
    """Dimensionless band response on ``lam_nm``."""
    centre, sigma = qe
    return (
        _logistic((lam_nm - blue) / blue_width)
        * _logistic((red - lam_nm) / red_width)
        * np.exp(-0.5 * ((lam_nm - centre) / sigma) ** 2)
    )


def _ccm_extinction(lam_um):
    """A_lambda / A_V of Cardelli, Clayton & Mathis (1989) for R_V = 3.1.

    Valid for 0.3 um^-1 <= 1/lambda <= 3.3 um^-1; the infrared power law is
    extrapolated to the WISE bands (x ~ 0.2-0.3 um^-1).
    """
    x = 1.0 / np.asarray(lam_um, dtype=float)
    ir = x < 1.1  # infrared power law, else the optical polynomials in y
    y = x - 1.82
    a = np.where(ir, 0.574 * x**1.61, np.polyval(
        [0.32999, -0.77530, 0.01979, 0.72085, -0.02427, -0.50447, 0.17699, 1.0], y))
    b = np.where(ir, -0.527 * x**1.61, np.polyval(
        [-2.09002, 5.30260, -0.62251, -5.38434, 1.07233, 2.28305, 1.41338, 0.0], y))
    return a + b / 3.1  # R_V


def _photon_planck(lam_nm, teff):
    """Planck photon flux density, up to a constant: lambda**-4 / (exp(c2/lambda T) - 1).

    ``lam_nm`` (n_lambda,), ``teff`` (m,) -> (m, n_lambda).
    """
    lam_um = lam_nm * 1e-3
    return lam_um**-4 / np.expm1(_C2_UM_K / (lam_um[None, :] * teff[:, None]))


#: Absorption features: centre [nm], intrinsic Gaussian sigma [nm], maximum depth.
#: Their optical depths are computed in _feature_optical_depths (same order).
_FEATURES = (
    ("Ca II H&K", 395.0, 8.0, 0.75),
    ("blue metal-line blanketing", 405.0, 45.0, 0.55),
    ("CN 388", 388.0, 7.0, 0.45),
    ("CH G band", 430.0, 7.0, 0.45),
    ("H gamma", 434.0, 5.0, 0.35),
    ("H beta", 486.0, 6.0, 0.40),
    ("Mg b + MgH", 517.0, 9.0, 0.50),
    ("Na D", 589.0, 6.0, 0.35),
    ("TiO 495-590 blanket", 550.0, 45.0, 0.85),
    ("TiO 625", 625.0, 12.0, 0.60),
    ("H alpha", 656.0, 6.0, 0.40),
    ("CaH 690", 690.0, 8.0, 0.50),
    ("TiO 715", 715.0, 14.0, 0.70),
    ("TiO 770", 770.0, 14.0, 0.70),
    ("CN red", 800.0, 35.0, 0.15),
    ("TiO 845", 845.0, 18.0, 0.50),
    ("Ca II triplet", 858.0, 11.0, 0.40),
    ("H2O 930", 930.0, 25.0, 0.35),
)
_FEATURE_CENTRE, _FEATURE_SIGMA, _FEATURE_DEPTH = np.array([f[1:] for f in _FEATURES]).T


def _feature_optical_depths(p):
    """Optical depth of every feature, shape (m, n_features).

    ``p`` maps label names to (m,) arrays. Strengths scale with the relevant
    abundance as 10**[X/H] and with temperature through theta = 5040 / Teff;
    gravity enters through the giant-enhanced and dwarf-enhanced factors.
    """
    t, g = p["teff"], p["logg"]
    feh, cfe, nfe, afe = p["fe_h"], p["c_fe"], p["n_fe"], p["alpha_m"]
    theta = 5040.0 / t
    metal = 10.0 ** (2.0 * (theta - 0.87))  # neutral metal lines, stronger when cool
    hydrogen = 10.0 ** (3.0 * (0.87 - theta))  # Balmer lines, stronger when hot
    giant = 10.0 ** (0.25 * (3.5 - g))  # low-gravity enhancement (CN, Ca triplet)
    dwarf = 10.0 ** (0.3 * (g - 4.0))  # pressure-sensitive hydrides and wings
    cool = np.clip((5000.0 - t) / 1500.0, 0.0, 1.0)
    cn = 10.0 ** (feh + 0.3 * cfe + 0.7 * nfe) * metal**1.5 * giant
    tio = 2.0 * np.exp(-(t - 3500.0) / 230.0) * 10.0 ** (0.7 * (feh + afe)) * giant**0.3
    return np.stack(
        [
            2.5 * 10.0**feh * metal**0.5,
            0.5 * 10.0**feh * metal,
            0.3 * cn,
            0.5 * 10.0 ** (feh + cfe) * metal**1.2,
            0.35 * hydrogen,
            0.45 * hydrogen,
            0.5 * 10.0 ** (feh + afe) * metal * (1.0 + 0.7 * dwarf * cool),
            0.3 * 10.0**feh * metal * (1.0 + 0.5 * dwarf * cool),
            1.5 * tio,
            0.6 * tio,
            0.5 * hydrogen,
            1.2 * np.exp(-(t - 3500.0) / 250.0) * dwarf**2 * 10.0 ** (feh + afe),
            tio,
            0.9 * tio,
            0.1 * cn,
            0.7 * tio,
            0.4 * 10.0 ** (feh + 0.5 * afe) * giant**0.6 * metal**0.5,
            0.8 * np.exp(-(t - 3500.0) / 280.0) * dwarf,
        ],
        axis=1,
    )


def _intrinsic_spectrum(p, lam_nm, lsf_sigma_nm):
    """Photon flux density shape of a star (no radius, distance or dust), (m, n_lambda).

    Planck continuum times a gravity-dependent tilt, a Balmer jump and the
    absorption features, each broadened to sqrt(sigma**2 + lsf**2) with its
    equivalent width kept.
    """
    teff, logg = p["teff"], p["logg"]
    flux = _photon_planck(lam_nm, teff)
    # Low-gravity atmospheres are redder at fixed Teff (H- opacity).
    flux *= (lam_nm[None, :] / 600.0) ** (0.05 * (4.4 - logg))[:, None]
    tau = _feature_optical_depths(p)
    depth = _FEATURE_DEPTH * -np.expm1(-tau)  # (m, n_features), saturating
    hydrogen = 10.0 ** (3.0 * (0.87 - 5040.0 / teff))
    jump = 0.35 * -np.expm1(-0.6 * hydrogen) * 10.0 ** (0.15 * (4.4 - logg))
    step_width = np.maximum(5.0, lsf_sigma_nm)
    flux *= 1.0 - jump[:, None] * _logistic((365.0 - lam_nm) / step_width)[None, :]
    for j in range(len(_FEATURES)):  # loop over the 18 features, vectorised over stars
        width = np.sqrt(_FEATURE_SIGMA[j] ** 2 + lsf_sigma_nm**2)
        profile = (_FEATURE_SIGMA[j] / width) * np.exp(
            -0.5 * ((lam_nm - _FEATURE_CENTRE[j]) / width) ** 2
        )
        flux *= 1.0 - depth[:, j, None] * profile[None, :]
    return flux


@lru_cache(maxsize=None)
def _band_geometry(band):
    """Wavelengths, response * dlambda/du, LSF sigma and extinction curve of a band."""
    lam = xp_wavelength_grid(band)
    lo, hi = _LAMBDA_RANGE_NM[band]
    dlam_du = lam**2 * (1.0 / lo - 1.0 / hi) / (XP_N_SAMPLES - 1)
    weight = _response(lam, **_RESPONSE[band]) * dlam_du
    return lam, weight, _LSF_SAMPLES * dlam_du, _ccm_extinction(lam * 1e-3)


@lru_cache(maxsize=None)
def _projector(band, n_coefficients):
    """Least-squares projector P (k, 60): coefficients = flux @ P.T."""
    a = xp_design_matrix(band, n_coefficients)  # (k, 60)
    return np.linalg.solve(a @ a.T, a)


@lru_cache(maxsize=None)
def _gls_operators(band, n_coefficients):
    """Constant matrices that turn per-sample variances into the fit covariance.

    With A (k, N) the design matrix, P = (A A^T)^-1 A its least-squares
    projector and Q (N - k, N) an orthonormal basis of the complement of A's
    row space, H = [A; Q] is invertible with H^-1 = [P^T, Q^T]. For
    W = diag(1 / v), (A W A^T)^-1 is the inverse of the top-left block of
    H W H^T, i.e. the Schur complement of the inverse
    H^-T V H^-1 = [[P V P^T, P V Q^T], [Q V P^T, Q V Q^T]]:

        C = P V P^T - P V Q^T (Q V Q^T)^-1 Q V P^T,

    which needs only an (N - k) x (N - k) inverse per star and products
    that are linear in v (one matrix product for the whole batch). By the
    same identity the weighted fit of a noisy spectrum moves the
    coefficients by C A W eps = P eps - P V Q^T (Q V Q^T)^-1 Q eps. Returns
    ``(mode, ops)``: ``"direct"`` with the outer products of A's columns
    (invert A W A^T itself, cheaper for k <= N / 2), or ``"schur"`` with
    the flattened outer products of the columns of (P, P), (P, Q), (Q, Q)
    and P and Q themselves.
    """
    a = xp_design_matrix(band, n_coefficients)
    k, n_samp = a.shape

    def outer(u, v):
        """(N, rows of u * rows of v): per sample, the flattened outer product of the columns."""
        return (u.T[:, :, None] * v.T[:, None, :]).reshape(n_samp, -1)

    if k <= n_samp - k:
        return "direct", (outer(a, a),)
    proj = _projector(band, n_coefficients)
    _, _, vt = np.linalg.svd(a)
    comp = vt[k:]  # (N - k, N), orthonormal, orthogonal to A's rows
    return "schur", (outer(proj, proj), outer(proj, comp), outer(comp, comp), proj, comp)


def _gls_fit(var, eps, band, n_coefficients, work):
    """Formal covariance and noise of a weighted Hermite fit to m sampled spectra.

    ``var`` (m, N) are the per-sample noise variances and ``eps`` (m, N) one
    noise realisation per spectrum, eps ~ N(0, diag(var)). ``work`` holds
    buffers ``"cov"`` (>= m, k * k) and ``"gain"`` (>= m, k, k), reused across
    chunks to avoid re-faulting ~100 MB per chunk. Returns the flattened
    C = (A W A^T)^-1, W = diag(1 / var), shape (m, k * k) (a view of
    ``work["cov"]`` in the Schur mode), and the noise C A W eps (m, k), the
    change of the weighted least-squares coefficients caused by ``eps``,
    whose covariance is exactly C.
    """
    m = var.shape[0]
    k = n_coefficients
    mode, ops = _gls_operators(band, k)
    if mode == "direct":
        info = ((1.0 / var) @ ops[0]).reshape(m, k, k)
        cov = np.linalg.inv(info)
        rhs = (eps / var) @ xp_design_matrix(band, k).T
        noise = np.matmul(cov, rhs[:, :, None])[:, :, 0]
        return cov.reshape(m, k * k), noise
    pp, pq, qq, proj, comp = ops
    q = comp.shape[0]
    cov = np.matmul(var, pp, out=work["cov"][:m])  # P V P^T, flattened
    g12t = (var @ pq).reshape(m, k, q).transpose(0, 2, 1)  # Q V P^T
    g22 = (var @ qq).reshape(m, q, q)  # Q V Q^T
    linv = np.linalg.inv(np.linalg.cholesky(g22))  # L^-1, Q V Q^T = L L^T
    y = np.matmul(linv, g12t)  # (m, q, k)
    gain = np.matmul(y.transpose(0, 2, 1), y, out=work["gain"][:m])
    cov -= gain.reshape(m, k * k)
    # GLS noise: P eps - P V Q^T (Q V Q^T)^-1 Q eps.
    u = np.matmul(linv, (eps @ comp.T)[:, :, None])[:, :, 0]  # (m, q)
    noise = eps @ proj.T - np.einsum("sai,sa->si", y, u)
    return cov, noise


def _g_shape(p):
    """Unscaled G-band photon rate per wavelength bin (shape x response x dlambda)."""
    lam = _G_GRID_NM
    weight = _response(lam, **_G_RESPONSE) * (lam[1] - lam[0])
    return _intrinsic_spectrum(p, lam, np.zeros_like(lam)) * weight


def _single(params):
    return {k: np.array([float(v)]) for k, v in params.items()}


@lru_cache(maxsize=None)
def _calibration():
    """Zero points and flux constants fixed by the Sun and by 18 Sco (A_V = 0)."""
    sun, anchor = _single(_SUN), _single(_ANCHOR)
    cal = {"zp_G": _SUN_ABS_MAG["G"] + 2.5 * np.log10(_g_shape(sun).sum())}
    # Internal flux unit: 18 Sco at G = 5.33 has the measured c0 in each band.
    scale = 10.0 ** (-0.4 * (_ANCHOR_G - cal["zp_G"])) / _g_shape(anchor).sum()
    scale_sun = 10.0 ** (-0.4 * (_SUN_ABS_MAG["G"] - cal["zp_G"])) / _g_shape(sun).sum()
    for band in XP_BANDS:
        lam, weight, lsf, _ = _band_geometry(band)
        f = scale * _intrinsic_spectrum(anchor, lam, lsf) * weight
        c0 = (f @ _projector(band, DR3_N_COEFFICIENTS).T)[0, 0]
        cal[f"k_{band}"] = _ANCHOR_C0[band] / c0
        # BP / RP zero points from the Sun's colours (synthetic sums of the samples).
        total = cal[f"k_{band}"] * scale_sun * (_intrinsic_spectrum(sun, lam, lsf) * weight).sum()
        cal[f"zp_{band}"] = _SUN_ABS_MAG[band.upper()] + 2.5 * np.log10(total)
    # Infrared: Planck photon flux at the effective wavelengths, Sun at 1 R_sun.
    ir_sun = _photon_planck(_IR_LAMBDA_UM * 1e3, sun["teff"])[0]
    cal["zp_ir"] = np.array([_SUN_ABS_MAG[b] for b in _IR_BANDS]) + 2.5 * np.log10(ir_sun)
    return cal


# -------------------------------------------------------- Stellar population


def _draw_population(n, rng):
    """Labels, masses and evolutionary classes of ``n`` stars (see Notes)."""
    # Galactic components: thin disc, thick disc, halo.
    comp = rng.choice(3, size=n, p=[0.70, 0.22, 0.08])
    feh_mean = np.array([-0.05, -0.55, -1.35])[comp]
    feh_sigma = np.array([0.20, 0.22, 0.40])[comp]
    fe_h = truncated_normal(rng, feh_mean, feh_sigma, -2.0, 0.5, u_clip=(1e-300, 1.0 - 1e-16))
    low_alpha = np.clip(-0.08 * fe_h, -0.03, 0.12) + 0.01
    high_alpha = 0.30 - 0.18 * np.clip((fe_h + 0.9) / 1.0, 0.0, 1.0)
    alpha_m = np.where(comp == 0, low_alpha, high_alpha) + rng.normal(0.0, 0.025, n)
    alpha_m = np.clip(alpha_m, -0.2, 0.5)

    # Evolutionary class: 0 dwarf, 1 subgiant, 2 red giant branch, 3 red clump.
    cls = rng.choice(4, size=n, p=[0.38, 0.07, 0.40, 0.15])
    teff = np.empty(n)
    logg = np.empty(n)
    d = cls == 0
    teff[d] = rng.uniform(3500.0, 7000.0, d.sum())
    # Main-sequence log g(Teff): 4.8 at 3500 K, 4.44 at 5772 K, 4.1 at 7000 K.
    logg[d] = np.interp(teff[d], [3500, 4500, 5200, 5772, 6500, 7000],
                        [4.80, 4.70, 4.55, 4.44, 4.25, 4.10])
    turnoff = np.clip((teff[d] - 5000.0) / 1000.0, 0.0, 1.0)
    logg[d] -= rng.exponential(0.10, d.sum()) * turnoff
    logg[d] += rng.normal(0.0, 0.04, d.sum())
    s = cls == 1
    teff[s] = rng.uniform(4900.0, 6300.0, s.sum())
    logg[s] = rng.uniform(3.5, 4.1, s.sum())
    r = cls == 2
    logg[r] = rng.uniform(1.0, 3.6, r.sum())
    # Metal-poor giants are hotter at fixed gravity.
    teff[r] = 4550.0 + 520.0 * (logg[r] - 2.5) - 300.0 * fe_h[r] + rng.normal(0.0, 60.0, r.sum())
    c = cls == 3
    logg[c] = rng.normal(2.45, 0.08, c.sum())
    teff[c] = 4800.0 - 250.0 * fe_h[c] + rng.normal(0.0, 70.0, c.sum())
    teff = np.clip(teff, 3500.0, 7000.0)
    logg = np.clip(logg, 1.0, 5.0)

    # Masses [M_sun]: main-sequence mass-Teff relation, giants log-normal.
    mass = np.where(cls == 0, (teff / 5772.0) ** 1.6 * 10.0 ** (0.1 * fe_h), 1.1)
    evolved = cls >= 2
    giant_mass = np.clip(np.exp(rng.normal(np.log(1.2), 0.3, n)), 0.8, 3.0)
    giant_mass = np.where(fe_h < -1.0, 0.85, giant_mass)
    mass = np.where(evolved, giant_mass, mass)

    # C and N: dredge-up and extra mixing lower C and raise N in giants, more
    # so for massive stars (the [C/N]-mass relation); thick disc is C-rich.
    c_fe = rng.normal(0.0, 0.05, n) + 0.3 * np.clip(alpha_m, 0.0, None)
    n_fe = rng.normal(0.0, 0.06, n)
    extra = 0.1 * np.clip(2.5 - logg, 0.0, 1.5) * (fe_h < -0.5)
    dm = np.clip(mass - 1.0, 0.0, 2.0)
    c_fe = np.where(evolved, c_fe - 0.08 - 0.12 * dm - extra, c_fe)
    n_fe = np.where(evolved, n_fe + 0.15 + 0.20 * dm + 1.5 * extra, n_fe)
    labels = dict(teff=teff, logg=logg, fe_h=fe_h, c_fe=c_fe, n_fe=n_fe, alpha_m=alpha_m)
    return labels, mass, cls, comp


def _label_errors(labels, rng, n):
    """APOGEE-like label errors before ``label_error_scale`` (teff in K, others dex)."""
    t, feh = labels["teff"], labels["fe_h"]
    snr = np.exp(np.clip(rng.normal(0.0, 0.15, n), -0.3, 0.3))  # per-star spectrum quality
    hot = np.clip((t - 5000.0) / 2000.0, 0.0, 1.0)
    poor = np.clip(-feh / 2.0, 0.0, 1.0)
    factor = {"teff": 1.0 + 0.4 * hot, "logg": 1.0 + 0.3 * hot}
    abundance = (1.0 + 0.6 * hot) * (1.0 + 0.8 * poor)
    return {name: _LABEL_ERROR[name] * factor.get(name, abundance) * snr for name in XP_LABELS}


# ------------------------------------------------------------- The catalogue


def _check_fraction(name, value, allow_one=True):
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}.") from exc
    if not (0.0 <= v <= 1.0) or (not allow_one and v >= 1.0):
        bound = "]" if allow_one else ")"
        raise ValueError(f"{name} must lie in [0, 1{bound}, got {value!r}.")
    return v


def _check_nonnegative(name, value, strict=False):
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number, got {value!r}.") from exc
    if not np.isfinite(v) or v < 0.0 or (strict and v == 0.0):
        kind = "positive" if strict else "non-negative"
        raise ValueError(f"{name} must be a finite {kind} number, got {value!r}.")
    return v


def _check_labels(labels):
    if isinstance(labels, str):
        labels = (labels,)
    try:
        labels = tuple(labels)
    except TypeError as exc:
        raise ValueError(f"labels must be a sequence of label names, got {labels!r}.") from exc
    unknown = [name for name in labels if name not in XP_LABELS]
    if unknown:
        raise ValueError(f"Unknown label(s) {unknown}; choose among {list(XP_LABELS)}.")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must not repeat a name, got {list(labels)}.")
    return labels


def _object_column(rows, present=None):
    """Object Series holding one 1-D row view of ``rows`` per star (None where absent)."""
    col = pd.Series(list(rows), dtype=object)
    if present is not None and not present.all():
        col[~present] = None
    return col


def _solve_distance(g_mag, abs_g_of_av, av_grid, a_inf, scale_height):
    """A_V [mag] at the distance d where G = M_G(A_V(d)) + 5 log10(d / 10), by bisection in log d.

    ``abs_g_of_av`` (m, n_av) tabulates the reddened absolute G on ``av_grid``;
    A_V(d) = a_inf (1 - exp(-d / scale_height)) grows monotonically with d.
    """
    step = av_grid[1] - av_grid[0]
    rows = np.arange(g_mag.size)

    def residual(log_d):
        a_v = a_inf * -np.expm1(-(10.0**log_d) / scale_height)
        pos = np.clip(a_v / step, 0.0, av_grid.size - 1.000001)
        i = pos.astype(int)
        w = pos - i
        abs_g = (1.0 - w) * abs_g_of_av[rows, i] + w * abs_g_of_av[rows, i + 1]
        return abs_g + 5.0 * log_d - 5.0 - g_mag, a_v

    lo = np.full(g_mag.size, -1.0)
    hi = np.full(g_mag.size, 6.0)
    for _ in range(48):
        mid = 0.5 * (lo + hi)
        above = residual(mid)[0] > 0.0
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return residual(0.5 * (lo + hi))[1]


def make_xp_catalog(
    n_stars=5000,
    *,
    n_coefficients=55,
    labels=XP_LABELS,
    g_mag_range=(9.0, 17.5),
    noise_scale=1.0,
    excess_fraction=0.0,
    excess_scale=3.0,
    missing_bp_fraction=0.0,
    label_error_scale=1.0,
    random_state=None,
    return_truth=False,
):
    """Simulate Gaia XP coefficients, photometry and APOGEE-like labels of field stars.

    The table mimics the training sample of the Gaia XP uncertain neural
    network (Fallows & Sanders, Sect. 2): Gaia DR3 BP/RP continuous
    spectra (Sect. 2.1) with their full coefficient covariance, Gaia G, BP,
    RP, 2MASS J, H and WISE W1, W2 photometry, parallaxes, and the six
    ASPCAP labels teff, logg, fe_h, c_fe, n_fe, alpha_m with errors
    (Sect. 2.3). The noiseless inputs are a deterministic, nonlinear function
    of the true labels and two nuisance parameters (distance, extinction A_V),
    so calibration can be checked against the truth.

    Parameters
    ----------
    n_stars : int, default=5000
        Number of stars (rows).
    n_coefficients : int, default=55
        Number k of Hermite coefficients per band (1 to 55; Gaia DR3 uses 55).
    labels : sequence of str, default=XP_LABELS
        Labels to report, any subset of ``("teff", "logg", "fe_h", "c_fe",
        "n_fe", "alpha_m")`` in any order (may be empty).
    g_mag_range : (float, float), default=(9.0, 17.5)
        Range of the true G magnitude [mag], within [3, 21]. G is drawn from
        dN/dG ~ 10**(0.12 G) (more faint stars, as in a magnitude-limited
        survey; Gaia XP spectra reach G = 17.65).
    noise_scale : float, default=1.0
        Multiplies the per-sample noise standard deviation of the XP spectra,
        hence every coefficient error (must be > 0).
    excess_fraction : float, default=0.0
        Fraction of stars (chosen at random with ``random_state``) whose
        observed labels get an extra "excess" scatter that their reported
        errors do not include (the hidden-variable scatter of Sect. 3.1.2).
    excess_scale : float, default=3.0
        Standard deviation of that excess scatter in units of the typical
        APOGEE error of each label (60 K, 0.045, 0.010, 0.022, 0.030, 0.012
        dex for teff, logg, fe_h, c_fe, n_fe, alpha_m); independent of
        ``label_error_scale``.
    missing_bp_fraction : float, default=0.0
        Fraction of stars, in [0, 1), without a BP spectrum: their BP array
        columns are None, ``bp_standard_deviation`` is NaN and
        ``bp_n_parameters`` is 0 (BP photometry is kept).
    label_error_scale : float, default=1.0
        Multiplies the reported label errors ``<label>_err`` and the noise
        drawn with them (0 gives noiseless labels apart from any excess).
    random_state : int, numpy.random.RandomState or None, default=None
        Seed for everything stochastic (see
        :func:`sklearn.utils.check_random_state`). The same seed gives an
        identical catalogue and truth.
    return_truth : bool, default=False
        Also return a second DataFrame with the truth (see Returns).

    Returns
    -------
    catalog : pandas.DataFrame
        One row per star, archive column names:

        * ``source_id`` (int64): unique, Gaia-like (``source_id // 2**35``
          is a random HEALPix level-12 nested pixel).
        * for b in ``bp``, ``rp``: ``b_coefficients`` (object; a float64
          array of length k per row, internal units e-/s),
          ``b_coefficient_errors`` (float64 arrays, length k, already
          multiplied by ``b_standard_deviation`` as in the archive),
          ``b_coefficient_correlations`` (float32 arrays of length
          k (k - 1) / 2: the strict lower triangle of the correlation matrix
          row by row, i.e. ``np.tril_indices(k, -1)`` order),
          ``b_standard_deviation`` (float64, ~1.0-1.2) and
          ``b_n_parameters`` (int64, k). Rows without BP hold None (see
          ``missing_bp_fraction``).
        * ``phot_g_mean_mag``, ``phot_bp_mean_mag``, ``phot_rp_mean_mag``
          [mag] and ``phot_g_mean_flux_over_error``,
          ``phot_bp_mean_flux_over_error``, ``phot_rp_mean_flux_over_error``;
          ``parallax``, ``parallax_error`` [mas] (the parallax can be
          negative, as in Gaia); ``j_m``, ``h_m``, ``j_msigcom``,
          ``h_msigcom``, ``w1mpro``, ``w2mpro``, ``w1sigmpro``,
          ``w2sigmpro`` [mag].
        * for each requested label: ``<label>`` (observed) and
          ``<label>_err`` (teff in K, logg in dex (cgs), abundances in dex).

    truth : pandas.DataFrame
        Only with ``return_truth=True``; same rows and ``source_id``, plus
        ``true_<label>`` for all six labels, ``mass`` [M_sun],
        ``evolutionary_class`` ("dwarf", "subgiant", "rgb", "red_clump"),
        ``population`` ("thin", "thick", "halo"), ``distance_pc`` [pc],
        ``a_v`` [mag], ``true_parallax`` [mas], noiseless
        ``true_phot_g_mean_mag``, ``true_phot_bp_mean_mag``,
        ``true_phot_rp_mean_mag``, ``true_j_m``, ``true_h_m``,
        ``true_w1mpro``, ``true_w2mpro`` [mag], ``true_bp_coefficients`` and
        ``true_rp_coefficients`` (object, noiseless float64 arrays; BP is
        given even where the catalogue's BP is missing), ``bp_missing``
        (bool), ``excess`` (bool) and ``excess_sigma_<label>`` for each
        requested label (0 where ``excess`` is False).

    Raises
    ------
    ValueError
        For a non-positive ``n_stars``, an unknown or repeated label, a bad
        ``n_coefficients``, ``g_mag_range`` outside [3, 21], a non-positive
        ``noise_scale`` or fractions/scales outside their ranges.

    See Also
    --------
    hermite_functions, xp_design_matrix, xp_wavelength_grid

    Notes
    -----
    **Stars.** A thin disc / thick disc / halo mixture (70/22/8 per cent)
    sets [Fe/H] (normal, means -0.05, -0.55, -1.35 dex, sigmas 0.20, 0.22,
    0.40, truncated to [-2, 0.5]); thin-disc stars follow the low-alpha
    sequence ([alpha/M] = 0.01 - 0.08 [Fe/H], clipped), thick-disc and halo
    stars the high-alpha one (0.30 below [Fe/H] = -0.9 falling to 0.12 at
    +0.1), with 0.025 dex scatter. Evolutionary classes: 38 per cent
    dwarfs (Teff uniform in 3500-7000 K on a main-sequence log g(Teff) with
    a turn-off spread), 7 per cent subgiants, 40 per cent red-giant branch
    (log g uniform in 1-3.6, Teff = 4550 + 520 (log g - 2.5) - 300 [Fe/H]
    K) and 15 per cent red clump (log g 2.45, Teff = 4800 - 250 [Fe/H] K).
    Giants have log-normal masses (median 1.2 M_sun; 0.85 M_sun below
    [Fe/H] = -1) and lower [C/Fe] / higher [N/Fe] the more massive they
    are (first dredge-up, the [C/N]-mass relation), with extra mixing on
    the upper branch of metal-poor giants. Radii follow from mass and log g.

    **Spectra.** The photon flux density is a Planck function of Teff
    times a mild gravity-dependent tilt, a Balmer jump growing with Teff,
    and 18 Gaussian absorption features whose depths saturate as
    d_max (1 - exp(-tau)): Ca II H&K, blue metal-line blanketing, Na D and
    the Ca triplet scale with 10**[Fe/H] (the triplet grows in giants); CH
    with 10**([Fe/H] + [C/Fe]); CN (388 nm and red) with
    10**([Fe/H] + 0.3 [C/Fe] + 0.7 [N/Fe]) and low gravity; Mg b/MgH with
    10**([Fe/H] + [alpha/M]) (MgH stronger in cool dwarfs); TiO bands
    (550 nm blanket, 625, 715, 770, 845 nm) appear below ~4200 K and scale with
    [Fe/H] + [alpha/M]; CaH and H2O trace cool dwarfs; the Balmer lines
    strengthen with Teff. Line strengths also depend on Teff through
    theta = 5040 / Teff. A broad TiO blanket over 495-590 nm reddens
    M dwarfs to BP - RP ~ 2.1 at 3500 K (solar twin 0.83, 7000 K 0.6).
    Dust follows Cardelli, Clayton & Mathis (1989) with R_V = 3.1. Each
    band's spectrum is sampled at 60 pseudo-wavelengths
    (:func:`xp_wavelength_grid`), multiplied by a smooth band response and
    the dispersion d lambda / du, with every feature broadened by a
    one-sample Gaussian line-spread function (equivalent width kept). The
    internal flux unit is fixed so that the solar twin 18 Sco at G = 5.33
    has the c0 of its real DR3 spectrum (BP 9.23e6, RP 8.81e6); BP and RP
    magnitudes are synthetic sums of the samples with zero points set by
    the Sun's colours (BP - G = 0.33, G - RP = 0.49), G is a synthetic
    broad-band magnitude with M_G(Sun) = 4.67, and J, H, W1, W2 come from
    the Planck function at their effective wavelengths with the Sun's
    absolute magnitudes.

    **Coefficients and covariance.** The noiseless coefficients are the
    least-squares projection of the sampled spectrum onto the first k Hermite
    functions (:func:`xp_design_matrix`, as in the DR3 bases). Each sample j
    has noise variance
    v_j = s**2 (30 / N_transit) (r_b**2 + g l_j + (e l_j)**2), where
    l_j = f_j + mean_j(f) is the light in the sample (its flux f_j plus the
    star's PSF/LSF wings and scattered light, spread evenly), r_b a
    read-out/background term (1.2 and 0.9 for BP and RP), g = 3e-3 the
    photon-noise factor, e = 1e-3 a calibration floor, s = ``noise_scale``
    and N_transit = 12 + Poisson(18). The formal covariance of the weighted
    fit is C = (A W A^T)^-1 with W = diag(1 / v_j); it is correlated between
    coefficients (median |correlation| ~0.06-0.09 and smallest eigenvalue
    of the correlation matrix ~0.003-0.04; the DR3 fixture spectra give
    0.03-0.09 and 0.016-0.27) and grows for fainter stars. It is computed
    for all stars at once through a Schur complement (no per-star loop or
    factorisation of a k x k matrix). As in the archive (Gaia DR3
    documentation; De Angeli et al. 2023) the reported errors include the
    fit's standard deviation sigma = sqrt(chi2_nu) (chi2_nu drawn for
    60 N_transit - k degrees of freedom, inflated for bright stars by model
    mismatch). The observed coefficients are those of the same weighted fit
    to the sampled spectrum plus Gaussian noise of variance v_j, scaled by
    sigma: true + sigma C A W eps, exactly distributed as
    N(true, sigma**2 C). At these settings the median coefficient error
    relative to RP c0 is ~6e-4 at G = 10, ~2.4e-3 at G = 16.5 and ~4e-3
    at G = 17.25, about 1.5 times the GaiaXPy fixture spectra (4e-4 at
    G ~ 8-14, 1.7e-3 to 2.6e-3 at G ~ 16.5-17); use ``noise_scale`` to
    change it. Because the raw Hermite functions are narrow (psi_0 spans a
    few samples) the coefficients do not decay as fast as in DR3's
    optimised bases, and c0 measures the flux near the centre of each
    window.

    **Distances and dust.** True G comes from ``g_mag_range``. Along each
    sight line A_V(d) = A_inf (1 - exp(-d / 800 pc)) with A_inf log-normal
    (median 0.8 mag, capped at 6 mag); the distance solves
    G = M_G(A_V(d)) + 5 log10(d / 10 pc) with the reddened synthetic M_G.

    **Photometric errors.** sigma = floor + scale 10**(0.4 (m - m_ref))
    with (floor, scale, m_ref) = (0.3, 1.0, 16), (1.0, 4.0, 17) and
    (0.8, 2.5, 16) mmag for G, BP, RP (reported as
    flux_over_error = 1.0857 / sigma; G 0.3-4 mmag over 9 < G < 17.5),
    (20, 10, 14), (22, 12, 13.5), (22, 8, 13), (20, 15, 12.8) mmag for J,
    H, W1, W2, and parallax error 0.012 + 0.025 10**(0.4 (G - 16)) mas;
    each with a 10 per cent log-normal spread. Observed values are truth
    plus Gaussian noise with these errors.

    **Labels.** ``<label>_err`` are APOGEE DR17-like (the typical errors of
    ``excess_scale``; up to 1.4 times larger for hot stars and, for
    abundances, up to 2.9 times for hot metal-poor stars; a per-star quality
    factor within a factor 1.35 either way) times ``label_error_scale``;
    observed = true + N(0, err**2) (+ the excess scatter for flagged stars).

    References
    ----------
    Fallows C. P. & Sanders J. L. (Gaia XP uncertain neural network).
    Carrasco J. M. et al. 2021, A&A 652, A86. De Angeli F. et al. 2023,
    A&A 674, A2. Cardelli J. A., Clayton G. C. & Mathis J. S. 1989, ApJ 345,
    245. Casagrande L. & VandenBerg D. A. 2018, MNRAS 479, L102. Willmer
    C. N. A. 2018, ApJS 236, 47. Martig M. et al. 2016, MNRAS 456, 3655.

    Examples
    --------
    >>> from skstellar.datasets.gaia_xp import make_xp_catalog
    >>> cat, truth = make_xp_catalog(200, random_state=0, return_truth=True)
    >>> cat["rp_coefficients"].iloc[0].shape
    (55,)
    >>> cat["rp_coefficient_correlations"].iloc[0].dtype
    dtype('float32')
    >>> bool((truth["true_teff"] >= 3500).all())
    True
    """
    n = check_integer("n_stars", n_stars, kind="a positive integer")
    k = _check_n_coefficients(n_coefficients)
    labels = _check_labels(labels)
    try:
        g_lo, g_hi = (float(v) for v in g_mag_range)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"g_mag_range must be a (low, high) pair of magnitudes, got {g_mag_range!r}."
        ) from exc
    if not (np.isfinite(g_lo) and np.isfinite(g_hi) and 3.0 <= g_lo < g_hi <= 21.0):
        raise ValueError(
            f"g_mag_range must satisfy 3 <= low < high <= 21 [mag], got {g_mag_range!r}."
        )
    noise_scale = _check_nonnegative("noise_scale", noise_scale, strict=True)
    excess_fraction = _check_fraction("excess_fraction", excess_fraction)
    excess_scale = _check_nonnegative("excess_scale", excess_scale)
    missing_bp_fraction = _check_fraction(
        "missing_bp_fraction", missing_bp_fraction, allow_one=False
    )
    label_error_scale = _check_nonnegative("label_error_scale", label_error_scale)
    rng = check_random_state(random_state)
    cal = _calibration()

    # --- stars, sight lines, magnitudes ----------------------------------------
    truth_labels, mass, cls, comp = _draw_population(n, rng)
    slope = 0.12
    lo, hi = 10.0 ** (slope * g_lo), 10.0 ** (slope * g_hi)
    g_true = np.log10(lo + rng.uniform(size=n) * (hi - lo)) / slope
    a_inf = np.minimum(np.exp(rng.normal(np.log(0.8), 0.8, n)), 6.0)
    n_transits = 12 + rng.poisson(18.0, n)
    chi2 = {b: rng.chisquare(XP_N_SAMPLES * n_transits - k) for b in XP_BANDS}
    noise_seeds = rng.randint(0, 2**31 - 1, size=len(XP_BANDS))
    hp_pixel = rng.randint(0, 12 * 4**12, size=n).astype(np.int64)
    source_id = hp_pixel * np.int64(2**35) + np.arange(1, n + 1, dtype=np.int64)

    radius2 = mass * 10.0 ** (_SUN["logg"] - truth_labels["logg"])  # (R / R_sun)**2
    av_grid = np.arange(0.0, 6.0 + 1e-9, 0.25)
    ext_g = _ccm_extinction(_G_GRID_NM * 1e-3)
    g_atten = 10.0 ** (-0.4 * ext_g[:, None] * av_grid[None, :])  # (n_lambda, n_av)

    # --- outputs ----------------------------------------------------------------
    n_corr = k * (k - 1) // 2
    tri_i, tri_j = np.tril_indices(k, -1)
    coef = {b: np.empty((n, k)) for b in XP_BANDS}
    coef_err = {b: np.empty((n, k)) for b in XP_BANDS}
    corr = {b: np.empty((n, n_corr), dtype=np.float32) for b in XP_BANDS}
    coef_true = {b: np.empty((n, k)) for b in XP_BANDS} if return_truth else None
    band_mag = {b: np.empty(n) for b in XP_BANDS}
    distance = np.empty(n)
    a_v = np.empty(n)
    noise_rng = {b: np.random.default_rng(int(s)) for b, s in zip(XP_BANDS, noise_seeds)}
    mismatch = 1.06 + 0.15 * 10.0 ** (-0.4 * (g_true - 10.0))
    std_dev = {b: np.sqrt(chi2[b] / (XP_N_SAMPLES * n_transits - k) * mismatch) for b in XP_BANDS}
    m_max = min(n, _CHUNK)
    work = {
        "cov": np.empty((m_max, k * k)),
        "gain": np.empty((m_max, k, k)),
        "lower": np.empty((m_max, n_corr)),
        "scale": np.empty((m_max, n_corr)),
    }
    flat_lower = tri_i * k + tri_j
    flat_diag = np.arange(k) * (k + 1)

    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        m = sl.stop - sl.start
        p = {name: v[sl] for name, v in truth_labels.items()}
        # Reddened absolute G on the A_V grid, then the distance.
        g_shape = _g_shape(p)
        abs_g = cal["zp_G"] - 2.5 * np.log10(radius2[sl, None] * (g_shape @ g_atten))
        av = _solve_distance(g_true[sl], abs_g, av_grid, a_inf[sl], 800.0)
        g_flux = (g_shape * 10.0 ** (-0.4 * av[:, None] * ext_g[None, :])).sum(axis=1)
        distance[sl] = 10.0 * 10.0 ** (
            0.2 * (g_true[sl] - cal["zp_G"] + 2.5 * np.log10(radius2[sl] * g_flux))
        )
        a_v[sl] = av
        scale = 10.0 ** (-0.4 * (g_true[sl] - cal["zp_G"])) / g_flux
        transit_factor = _MEAN_TRANSITS / n_transits[sl]
        for b in XP_BANDS:
            lam, weight, lsf, ext = _band_geometry(b)
            flux = _intrinsic_spectrum(p, lam, lsf) * weight
            flux *= (cal[f"k_{b}"] * scale)[:, None] * 10.0 ** (-0.4 * av[:, None] * ext)
            band_mag[b][sl] = cal[f"zp_{b}"] - 2.5 * np.log10(flux.sum(axis=1))
            truth_c = flux @ _projector(b, k).T
            # Light per sample that carries noise: the sample's own flux plus the
            # spread-out wings of the star's line/point-spread functions.
            lit = flux + _NOISE_SPREAD * flux.mean(axis=1, keepdims=True)
            var = noise_scale**2 * transit_factor[:, None] * (
                _NOISE_READ[b] ** 2 + _NOISE_GAIN * lit + (_NOISE_FLOOR * lit) ** 2
            )
            eps = np.sqrt(var) * noise_rng[b].standard_normal((m, XP_N_SAMPLES))
            flat, noise = _gls_fit(var, eps, b, k, work)
            sd = std_dev[b][sl]
            coef[b][sl] = truth_c + sd[:, None] * noise
            err = np.sqrt(np.take(flat, flat_diag, axis=1))
            coef_err[b][sl] = sd[:, None] * err
            # Correlations: gather the strict lower triangle, divide by e_i e_j.
            inv_err = 1.0 / err
            lower = np.take(flat, flat_lower, axis=1, out=work["lower"][:m], mode="clip")
            lower *= np.take(inv_err, tri_i, axis=1, out=work["scale"][:m], mode="clip")
            lower *= np.take(inv_err, tri_j, axis=1, out=work["scale"][:m], mode="clip")
            corr[b][sl] = lower
            if return_truth:
                coef_true[b][sl] = truth_c

    # --- photometry -------------------------------------------------------------
    ir_abs = cal["zp_ir"] - 2.5 * np.log10(
        radius2[:, None] * _photon_planck(_IR_LAMBDA_UM * 1e3, truth_labels["teff"])
    )
    teff, logg, fe_h = (truth_labels[x] for x in ("teff", "logg", "fe_h"))
    cool = np.clip((5000.0 - teff) / 1500.0, 0.0, 1.0)
    ir_abs[:, 1] -= 0.15 * cool  # H-band opacity minimum of cool atmospheres
    giantness = _logistic((3.5 - logg) / 0.3)
    ir_abs[:, 3] += 0.08 * 10.0**fe_h * giantness * np.clip((5200.0 - teff) / 1200.0, 0, 1)
    dist_mod = 5.0 * np.log10(distance / 10.0)
    ir_true = ir_abs + dist_mod[:, None] + a_v[:, None] * _ccm_extinction(_IR_LAMBDA_UM)
    true_mag = {"G": g_true, "BP": band_mag["bp"], "RP": band_mag["rp"]}
    catalog = {"source_id": source_id}
    bp_present = rng.uniform(size=n) >= missing_bp_fraction
    for b in XP_BANDS:
        present = bp_present if b == "bp" else np.ones(n, dtype=bool)
        catalog[f"{b}_coefficients"] = _object_column(coef[b], present)
        catalog[f"{b}_coefficient_errors"] = _object_column(coef_err[b], present)
        catalog[f"{b}_coefficient_correlations"] = _object_column(corr[b], present)
        catalog[f"{b}_standard_deviation"] = np.where(present, std_dev[b], np.nan)
        catalog[f"{b}_n_parameters"] = np.where(present, np.int64(k), np.int64(0))
    spread = {}
    for name, mag in true_mag.items():
        spread[name] = scattered_magnitude_error(_GAIA_MAG_ERROR[name], mag, rng)
        catalog[f"phot_{name.lower()}_mean_mag"] = mag + spread[name] * rng.standard_normal(n)
    for name, sigma in spread.items():
        catalog[f"phot_{name.lower()}_mean_flux_over_error"] = _MAG_PER_LN_FLUX / sigma
    parallax_true = 1000.0 / distance
    plx_err = scattered_magnitude_error(_PARALLAX_ERROR, g_true, rng)
    catalog["parallax"] = parallax_true + plx_err * rng.standard_normal(n)
    catalog["parallax_error"] = plx_err
    ir_err_names = {"j_m": "j_msigcom", "h_m": "h_msigcom",
                    "w1mpro": "w1sigmpro", "w2mpro": "w2sigmpro"}
    for i, name in enumerate(_IR_BANDS):
        sigma = scattered_magnitude_error(_IR_MAG_ERROR[name], ir_true[:, i], rng)
        catalog[name] = ir_true[:, i] + sigma * rng.standard_normal(n)
        catalog[ir_err_names[name]] = sigma

    # --- labels -----------------------------------------------------------------
    errors = _label_errors(truth_labels, rng, n)
    excess = rng.uniform(size=n) < excess_fraction
    excess_sigma = {}
    for name in XP_LABELS:  # draw for all six so a label subset keeps the same values
        err = errors[name] * label_error_scale
        sig_exc = np.where(excess, excess_scale * _LABEL_ERROR[name], 0.0)
        observed = (
            truth_labels[name]
            + err * rng.standard_normal(n)
            + sig_exc * rng.standard_normal(n)
        )
        if name in labels:
            catalog[name] = observed
            catalog[f"{name}_err"] = err
            excess_sigma[name] = sig_exc
    catalog = pd.DataFrame(catalog)
    if not return_truth:
        return catalog

    return catalog, pd.DataFrame({
        "source_id": source_id, **{f"true_{name}": truth_labels[name] for name in XP_LABELS},
        "mass": mass,
        "evolutionary_class": np.array(["dwarf", "subgiant", "rgb", "red_clump"])[cls],
        "population": np.array(["thin", "thick", "halo"])[comp],
        "distance_pc": distance, "a_v": a_v, "true_parallax": parallax_true,
        **{f"true_phot_{name.lower()}_mean_mag": mag for name, mag in true_mag.items()},
        **{f"true_{name}": col for name, col in zip(_IR_BANDS, ir_true.T)},
        **{f"true_{b}_coefficients": _object_column(coef_true[b]) for b in XP_BANDS},
        "bp_missing": ~bp_present, "excess": excess,
        **{f"excess_sigma_{name}": excess_sigma[name] for name in labels},
    })
