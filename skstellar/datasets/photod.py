"""An LSST catalogue simulator for the Bayesian photometric-distance method (photo-D).

:func:`make_lsst_catalog` is a vectorised simulator of LSST coadd photometry
whose truth (M_r, [Fe/H], A_r, distance) is drawn from the photo-D prior maps
and colour locus (Palaversa et al. 2025; Mrakovčić, Ivezić & Palaversa 2025,
Sect. 2.1), with the same column names as the real Stripe 82 sample. It is
observed with the LSST error model: the 5-sigma depths
(:data:`LSST_M5_COADD`, :data:`LSST_M5_SINGLE`), the parameter gamma
(:data:`LSST_GAMMA`) and :func:`lsst_magnitude_error`.

The real inputs (locus, prior maps, Stripe 82 stars) and the constants of the
photoD code that made them are read by :mod:`skstellar.io.photod`
(``<shared data>/photod``); nothing here needs network access.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

from .._validation import check_integer, check_range_pair
from ..io.photod import (
    EXTINCTION_COEFFICIENTS,
    PHOTOD_BANDS,
    PHOTOD_COLOURS,
    ColourLocus,
    PriorMaps,
    ar_prior_max,
    load_locus,
    load_prior_maps,
    reddening_vector,
)
from ._moved import moved_getattr
from .simulation import _MAG_PER_LN_FLUX

__all__ = [
    "LSST_ERROR_FLOOR",
    "LSST_GAMMA",
    "LSST_M5_COADD",
    "LSST_M5_SINGLE",
    "lsst_magnitude_error",
    "make_lsst_catalog",
]

#: Readers and constants that moved to :mod:`skstellar.io.photod` (served
#: here with a FutureWarning for one release).
_MOVED = {
    name: "skstellar.io.photod"
    for name in ("AR_PRIOR_OFFSET", "AR_PRIOR_SLOPE", "load_stripe82_priors",
                 "load_stripe82_sample")
}
__getattr__ = moved_getattr(__name__, _MOVED)

# ------------------------- LSST error model (README of ../shared/data/photod)
#: LSST 10-year coadded 5-sigma depths m5 [AB mag] (Bianco et al. 2022).
LSST_M5_COADD = {"u": 25.73, "g": 26.86, "r": 26.88, "i": 26.34, "z": 25.63, "y": 24.87}
#: LSST single-visit 5-sigma depths m5 [AB mag], as in the photoD code.
LSST_M5_SINGLE = {"u": 23.50, "g": 24.44, "r": 23.98, "i": 23.41, "z": 22.77, "y": 22.01}
#: Parameter gamma of the LSST random-error model (Ivezić et al. 2019, eq. 5).
LSST_GAMMA = {"u": 0.038, "g": 0.039, "r": 0.039, "i": 0.039, "z": 0.039, "y": 0.039}
#: Systematic floor [mag] added in quadrature to the LSST random error.
LSST_ERROR_FLOOR = 0.005


# --------------------------------------------------------- Photometric errors
def lsst_magnitude_error(mag, band, m5=None, *, gamma=None, floor=LSST_ERROR_FLOOR):
    """LSST photometric error of a magnitude (Ivezić et al. 2019, eq. 5, plus a floor).

    ``sigma**2 = floor**2 + (0.04 - gamma) x + gamma x**2`` with
    ``x = 10**(0.4 (m - m5))``; this is the model the photoD simulator uses
    for the coadded LSST catalogue (README of ``../shared/data/photod``).

    Parameters
    ----------
    mag : float or array-like
        AB magnitude(s) [mag].
    band : {"u", "g", "r", "i", "z", "y"}
        LSST band; selects the default ``m5`` and ``gamma``.
    m5 : float, dict or None, default=None
        5-sigma depth [mag]; a dict maps band -> depth. None uses
        :data:`LSST_M5_COADD` (10-year coadd).
    gamma : float or None, default=None
        Error-model parameter; None uses :data:`LSST_GAMMA`.
    floor : float, default=0.005
        Systematic error floor [mag], added in quadrature.

    Returns
    -------
    float or ndarray
        Error sigma [mag], same shape as ``mag``.

    Raises
    ------
    ValueError
        For an unknown band or a band missing from an ``m5`` dict.

    Examples
    --------
    >>> round(float(lsst_magnitude_error(24.0, "r")), 4)
    0.0143
    """
    if band not in LSST_GAMMA:
        raise ValueError(f"Unknown LSST band {band!r}; expected one of {sorted(LSST_GAMMA)}.")
    if m5 is None:
        m5 = LSST_M5_COADD
    if isinstance(m5, dict):
        if band not in m5:
            raise ValueError(f"m5 has no depth for band {band!r}; got bands {sorted(m5)}.")
        m5 = m5[band]
    g = LSST_GAMMA[band] if gamma is None else float(gamma)
    x = 10.0 ** (0.4 * (np.asarray(mag, dtype=np.float64) - float(m5)))
    sigma = np.sqrt(floor**2 + (0.04 - g) * x + g * x**2)
    return sigma if np.ndim(sigma) else float(sigma)


# ------------------------------------------------------------------ Simulator


#: Rotation from ICRS (equatorial) to Galactic unit vectors
#: (Hipparcos catalogue, ESA 1997, Vol. 1, eq. 1.5.11).
_ICRS_TO_GALACTIC = np.array([
    [-0.0548755604162154, -0.8734370902348850, -0.4838350155487132],
    [+0.4941094278755837, -0.4448296299600112, +0.7469822444972189],
    [-0.8676661490190047, -0.1980763734312015, +0.4559837761750669],
])


def _galactic(ra, dec):
    """Galactic (l, b) [deg] of ICRS (ra, dec) [deg]; agrees with astropy to ~1e-6 deg."""
    a, d = np.radians(ra), np.radians(dec)
    xyz = np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])
    gx, gy, gz = _ICRS_TO_GALACTIC @ xyz
    glon = np.degrees(np.arctan2(gy, gx)) % 360.0
    glat = np.degrees(np.arcsin(np.clip(gz, -1.0, 1.0)))
    return glon, glat


def _r_sampler(maps: PriorMaps, r_lo, r_hi):
    """Inverse-CDF sampler of apparent r from the maps' number counts (or uniform)."""
    grid = np.linspace(r_lo, r_hi, 2001)
    if maps.counts is not None and maps.n_bins > 1 and np.any(maps.counts > 0):
        dens = np.interp(grid, maps.r_centres, maps.counts)
    else:
        dens = np.ones_like(grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    if cdf[-1] <= 0:
        cdf = np.linspace(0.0, 1.0, grid.size)
    cdf /= cdf[-1]
    return lambda u: np.interp(u, cdf, grid)


def make_lsst_catalog(
    n_stars=10000,
    *,
    prior_maps=None,
    locus=None,
    r_range=(14.0, 25.0),
    ra_range=(340.0, 350.0),
    dec_range=(-1.3, 1.3),
    ar_sfd=0.15,
    ar_sfd_variation=0.2,
    ar_distribution="dust_layer",
    dust_scale_height=100.0,
    snr_min=5.0,
    m5=None,
    add_noise=True,
    errors_from="observed",
    jitter=True,
    extinction_coefficients=None,
    random_state=None,
):
    """Simulate an LSST coadd catalogue of stars for the photo-D method.

    Truth is drawn from the photo-D priors and the colour locus, then
    observed with LSST coadd errors, following the photoD simulator used by
    Palaversa et al. (2025) and Mrakovčić et al. (2025, Sect. 2.1 and Table
    1: SNR > 5 in all bands); TRILEGAL itself is replaced by its per-bin
    prior maps and number counts.

    Parameters
    ----------
    n_stars : int, default=10000
        Number of stars returned (all pass the SNR cut).
    prior_maps : PriorMaps or None, default=None
        p(M_r, [Fe/H] | r); None uses :func:`load_prior_maps`.
    locus : ColourLocus or None, default=None
        Intrinsic colours; None uses :func:`load_locus` (10 Gyr).
    r_range : (float, float), default=(14.0, 25.0)
        Range of true apparent r [mag].
    ra_range, dec_range : (float, float), default=(340, 350), (-1.3, 1.3)
        Sky patch [deg]; positions are uniform on the sphere inside it.
    ar_sfd : float or callable, default=0.15
        SFD-like total r-band extinction of the patch [mag]: a float is the
        patch mean, modulated by a smooth random field (see
        ``ar_sfd_variation``); a callable ``f(ra, dec) -> A_r^SFD`` is used
        as is.
    ar_sfd_variation : float, default=0.2
        Log-amplitude of the smooth modulation of a float ``ar_sfd``:
        ``A = ar_sfd * exp(v * (sin(2 pi x + p1) + sin(2 pi y + p2)) / 2)``,
        x, y the fractional position across the patch, p1, p2 random phases.
    ar_distribution : {"dust_layer", "uniform"}, default="dust_layer"
        True A_r of a star: ``"dust_layer"`` puts it behind an exponential
        dust layer, ``A_r = A_SFD (1 - exp(-d |sin b| / h))``, solved
        consistently with its distance; ``"uniform"`` draws it uniformly on
        [0, Ar_max], exactly the flat prior of the Bayesian method.
    dust_scale_height : float, default=100.0
        Dust scale height h [pc] of ``"dust_layer"``.
    snr_min : float, default=5.0
        Keep stars with SNR > snr_min in all of ugriz, i.e. reported errors
        below 1.0857 / snr_min mag; rejected stars are replaced by new draws
        (drop and top up) until ``n_stars`` remain.
    m5 : dict or None, default=None
        5-sigma depth per band [mag]; None uses :data:`LSST_M5_COADD`.
    add_noise : bool, default=True
        Add Gaussian noise to the *fluxes*, with the relative flux error
        sigma_true / 1.0857 given by the true magnitudes' errors; for bright
        stars this is Gaussian magnitude noise of width sigma_true. (photoD
        adds Gaussian noise in magnitudes and clips it at 1 mag, which lets
        stars many magnitudes below the detection limit scatter up into an
        SNR > 5 sample; noise in flux keeps that selection physical.) When
        False the observed magnitudes equal the true (reddened) ones.
    errors_from : {"observed", "true"}, default="observed"
        Reported errors come from the noisy magnitudes (as photoD does) or
        from the true ones.
    jitter : bool, default=True
        Spread (M_r, [Fe/H]) uniformly inside the grid cell of the sampled
        node and interpolate the colours bilinearly; False keeps the truth on
        the locus nodes. A jittered point that leaves the grid or touches an
        undefined node keeps its node values.
    extinction_coefficients : dict or None, default=None
        A_b/A_r; None uses :data:`EXTINCTION_COEFFICIENTS`.
    random_state : int, numpy.random.RandomState or None, default=None
        Seed; the same seed gives the same catalogue.

    Returns
    -------
    pandas.DataFrame
        ``n_stars`` rows with columns ``ra, dec, glon, glat`` [deg], ``Ar``
        (SFD-like) and ``Ar_max`` = 1.3 Ar + 0.1 [mag], ``umag gmag rmag imag
        zmag`` and ``uErr gErr rErr iErr zErr`` [mag], observed colours ``ug
        gr ri iz`` with ``ugErr grErr riErr izErr`` (band errors in
        quadrature) [mag], and the truth ``Mr_true`` [mag], ``FeH_true``
        [dex], ``Ar_true`` [mag], ``DM_true`` = r_true - Mr_true - Ar_true
        [mag], ``dist_pc`` [pc]. Column names match
        :func:`skstellar.io.load_stripe82_sample`.

    Raises
    ------
    ValueError
        For invalid arguments.
    RuntimeError
        When almost no draws pass the SNR cut (e.g. ``r_range`` too faint).

    Notes
    -----
    Sampling order: r from the maps' number counts (TRILEGAL stars per bin,
    linearly interpolated between bin centres; uniform if the maps carry no
    counts); the prior bin from r (nearest centre); a locus node with
    probability proportional to that bin's map interpolated onto the locus
    grid (the same prior the teacher uses, truncated to nodes where the locus
    is defined); then A_r, distance and magnitudes. Magnitudes: r true,
    g = r + (g-r), u = g + (u-g), i = r - (r-i), z = i - (i-z), with colours
    reddened by A_r (C_b1 - C_b2). Errors follow :func:`lsst_magnitude_error`.

    Examples
    --------
    >>> cat = make_lsst_catalog(1000, random_state=0)  # doctest: +SKIP
    """
    check_integer("n_stars", n_stars, kind="a positive integer")
    r_lo, r_hi = check_range_pair("r_range", r_range)
    ra_lo, ra_hi = check_range_pair("ra_range", ra_range)
    dec_lo, dec_hi = check_range_pair("dec_range", dec_range)
    if not (-90 <= dec_lo and dec_hi <= 90):
        raise ValueError(f"dec_range must lie within [-90, 90], got {dec_range!r}.")
    if ar_distribution not in ("dust_layer", "uniform"):
        raise ValueError(
            f"ar_distribution must be 'dust_layer' or 'uniform', got {ar_distribution!r}."
        )
    if errors_from not in ("observed", "true"):
        raise ValueError(f"errors_from must be 'observed' or 'true', got {errors_from!r}.")
    if not (np.isfinite(snr_min) and snr_min >= 0):
        raise ValueError(f"snr_min must be a non-negative number, got {snr_min!r}.")
    if not (np.isfinite(dust_scale_height) and dust_scale_height > 0):
        raise ValueError(f"dust_scale_height must be positive [pc], got {dust_scale_height!r}.")
    if not callable(ar_sfd) and not (np.isfinite(ar_sfd) and ar_sfd >= 0):
        raise ValueError(
            f"ar_sfd must be a non-negative number [mag] or a callable, got {ar_sfd!r}."
        )
    maps = load_prior_maps() if prior_maps is None else prior_maps
    loc = load_locus() if locus is None else locus
    if not isinstance(maps, PriorMaps):
        raise ValueError(f"prior_maps must be a PriorMaps, got {type(maps).__name__}.")
    if not isinstance(loc, ColourLocus):
        raise ValueError(f"locus must be a ColourLocus, got {type(loc).__name__}.")
    if tuple(loc.colour_names) != PHOTOD_COLOURS:
        raise ValueError(
            f"The locus must hold the colours {PHOTOD_COLOURS}, got {loc.colour_names}."
        )
    coeffs = EXTINCTION_COEFFICIENTS if extinction_coefficients is None else extinction_coefficients
    for b in PHOTOD_BANDS:
        if b not in coeffs:
            raise ValueError(f"extinction_coefficients has no value for band {b!r}.")
    red = reddening_vector(PHOTOD_COLOURS, coeffs)
    rng = check_random_state(random_state)

    # Prior on the locus nodes, as a cumulative table per bin for vectorised sampling.
    mr_nodes, feh_nodes = loc.grid_points()
    valid = loc.valid.ravel()
    prior = maps.on_grid(mr_nodes, feh_nodes) * valid[None, :]
    totals = prior.sum(axis=1)
    if np.any(totals <= 0):
        bad = int(np.flatnonzero(totals <= 0)[0])
        raise ValueError(
            f"Prior bin {bad} (r = {maps.r_centres[bad]:g}) has no weight on the locus grid; "
            "the prior maps and the locus do not overlap."
        )
    cum = np.cumsum(prior / totals[:, None], axis=1)
    cum[:, -1] = 1.0
    n_nodes = cum.shape[1]
    flat_cum = (cum + np.arange(maps.n_bins)[:, None]).ravel()
    sample_r = _r_sampler(maps, r_lo, r_hi)
    flat_colours = loc.colours.reshape(n_nodes, -1)
    phases = rng.uniform(0, 2 * np.pi, 2)
    sig_max = _MAG_PER_LN_FLUX / snr_min if snr_min > 0 else np.inf

    def band_errors(mags):
        return np.column_stack([lsst_magnitude_error(mags[:, k], b, m5)
                                for k, b in enumerate(PHOTOD_BANDS)])

    def draw(m):
        # sky position, uniform on the sphere inside the patch
        ra = rng.uniform(ra_lo, ra_hi, m)
        s_lo, s_hi = np.sin(np.radians([dec_lo, dec_hi]))
        dec = np.degrees(np.arcsin(rng.uniform(s_lo, s_hi, m)))
        glon, glat = _galactic(ra, dec)
        if callable(ar_sfd):
            a_sfd = np.asarray(ar_sfd(ra, dec), dtype=np.float64) * np.ones(m)
        else:
            fx = (ra - ra_lo) / (ra_hi - ra_lo)
            fy = (dec - dec_lo) / (dec_hi - dec_lo)
            wave = 0.5 * (np.sin(2 * np.pi * fx + phases[0]) + np.sin(2 * np.pi * fy + phases[1]))
            a_sfd = ar_sfd * np.exp(ar_sfd_variation * wave)
        a_max = ar_prior_max(a_sfd)
        # apparent magnitude, prior bin, then a locus node from that bin's prior
        r_true = sample_r(rng.uniform(size=m))
        bins = maps.bin_index(r_true, policy="clip")
        node = np.searchsorted(flat_cum, bins + rng.uniform(size=m), side="right") - bins * n_nodes
        node = np.clip(node, 0, n_nodes - 1)
        mr, feh = mr_nodes[node].copy(), feh_nodes[node].copy()
        col0 = flat_colours[node].copy()
        if jitter:
            mr_j = mr + rng.uniform(-0.5, 0.5, m) * loc.mr_step
            feh_j = feh + rng.uniform(-0.5, 0.5, m) * loc.feh_step
            col_j = loc.colours_at(mr_j, feh_j)
            ok = np.all(np.isfinite(col_j), axis=1)
            mr[ok], feh[ok], col0[ok] = mr_j[ok], feh_j[ok], col_j[ok]
        # extinction and distance
        if ar_distribution == "uniform":
            a_true = rng.uniform(0.0, 1.0, m) * a_max
            dm = r_true - mr - a_true
        else:
            sinb = np.abs(np.sin(np.radians(glat)))
            a_true = a_sfd.copy()
            for _ in range(30):  # fixed point: contraction factor <= 0.17 A_SFD
                dm = r_true - mr - a_true
                dist = 10.0 ** (0.2 * dm + 1.0)
                a_true = a_sfd * -np.expm1(-dist * sinb / dust_scale_height)
            dm = r_true - mr - a_true
        dist = 10.0 ** (0.2 * dm + 1.0)
        col = col0 + a_true[:, None] * red[None, :]
        g = r_true + col[:, 1]
        mags_true = np.column_stack([g + col[:, 0], g, r_true, r_true - col[:, 2],
                                     r_true - col[:, 2] - col[:, 3]])
        sig_true = band_errors(mags_true)
        if add_noise:
            # Gaussian noise in flux (relative flux error sigma_m / 1.0857); a flux <= 0
            # gives NaN and fails the SNR cut.
            rel = 1.0 + sig_true / _MAG_PER_LN_FLUX * rng.standard_normal((m, 5))
            with np.errstate(invalid="ignore", divide="ignore"):
                mags = mags_true - 2.5 * np.log10(np.where(rel > 0, rel, np.nan))
        else:
            mags = mags_true
        sig = band_errors(mags) if errors_from == "observed" else sig_true
        keep = np.all(sig < sig_max, axis=1)
        cols = {"ra": ra, "dec": dec, "glon": glon, "glat": glat, "Ar": a_sfd, "Ar_max": a_max}
        cols.update({f"{b}mag": mags[:, k] for k, b in enumerate(PHOTOD_BANDS)})
        cols.update({f"{b}Err": sig[:, k] for k, b in enumerate(PHOTOD_BANDS)})
        cols.update({c: mags[:, k] - mags[:, k + 1] for k, c in enumerate(PHOTOD_COLOURS)})
        cols.update({f"{c}Err": np.hypot(sig[:, k], sig[:, k + 1])
                     for k, c in enumerate(PHOTOD_COLOURS)})
        cols.update(Mr_true=mr, FeH_true=feh, Ar_true=a_true, DM_true=dm, dist_pc=dist)
        return {k: v[keep] for k, v in cols.items()}

    parts, acceptance, n_drawn, n_kept = [], 0.5, 0, 0
    for _ in range(200):
        need = n_stars - n_kept
        m = int(min(max(math.ceil(1.15 * need / max(acceptance, 1e-3)) + 16, need), 2_000_000))
        part = draw(m)
        n_drawn, n_kept = n_drawn + m, n_kept + part["ra"].size
        acceptance = max(n_kept / n_drawn, 1e-3)
        parts.append(part)
        if n_kept >= n_stars or (n_drawn > 50 * n_stars + 100_000 and acceptance < 0.01):
            break
    if n_kept < n_stars:
        raise RuntimeError(
            f"Only {n_kept} of {n_stars} simulated stars pass SNR > {snr_min:g} in all bands "
            f"(acceptance {acceptance:.2%}); use a brighter r_range or a lower snr_min."
        )
    data = {k: np.concatenate([p[k] for p in parts])[:n_stars] for k in parts[0]}
    return pd.DataFrame(data)
