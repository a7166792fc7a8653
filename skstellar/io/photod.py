"""Readers of the real photo-D files: colour locus, TRILEGAL prior maps and the Stripe 82 sample.

Everything the photo-D teacher (:class:`skstellar.photod.teacher.BayesianPhotoD`)
needs as *data* rather than code (Palaversa et al. 2025; Mrakovčić, Ivezić &
Palaversa 2025, Sect. 2.1), read from the files of ``<shared data>/photod``:

* the constants of the photoD code that made those files: bands and colours,
  extinction ratios (:data:`EXTINCTION_COEFFICIENTS`, :func:`reddening_vector`)
  and the flat A_r prior (:data:`AR_PRIOR_SLOPE`, :data:`AR_PRIOR_OFFSET`,
  :func:`ar_prior_max`);
* :class:`ColourLocus` (intrinsic colours on a regular (M_r, [Fe/H]) grid) and
  :func:`load_locus`, which resamples the photoD ``SDSSDSEDlocus_*`` tables onto it;
* :class:`PriorMaps` (TRILEGAL p(M_r, [Fe/H] | r) in 27 overlapping r bins), read
  by :func:`load_prior_maps` (~10 deg^2 Stripe 82 patch, RA 340-350) and
  :func:`load_stripe82_priors` (HEALPix order-5 pixels);
* :func:`load_stripe82_sample`, 3,981 real, unlabelled SDSS Stripe 82 standard stars.

The LSST simulator that draws from these maps is
:func:`skstellar.datasets.make_lsst_catalog`. The folder is found by
:func:`skstellar.io.find_shared_data` (environment variable
``SKSTELLAR_DATA``); nothing here needs network access.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.interpolate import RegularGridInterpolator

from .._validation import check_text_table_complete, reading_file
from .paths import DATA_ENV_VAR, find_shared_data

__all__ = [
    "AR_PRIOR_OFFSET",
    "AR_PRIOR_SLOPE",
    "EXTINCTION_COEFFICIENTS",
    "PHOTOD_BANDS",
    "PHOTOD_COLOURS",
    "ColourLocus",
    "PriorMaps",
    "ar_prior_max",
    "load_locus",
    "load_prior_maps",
    "load_stripe82_priors",
    "load_stripe82_sample",
    "reddening_vector",
]

# --------- Constants (README of ../shared/data/photod; Palaversa et al. 2025)
#: Bands of the photo-D fit, blue to red.
PHOTOD_BANDS = ("u", "g", "r", "i", "z")
#: Colours fitted by the Bayesian method, in the order of the locus tables.
PHOTOD_COLOURS = ("ug", "gr", "ri", "iz")

#: Extinction ratios A_b / A_r (Berry et al. 2012, Table 1), as used by photoD.
#: No y value: the photoD code that made the priors has none.
EXTINCTION_COEFFICIENTS = {"u": 1.810, "g": 1.400, "r": 1.000, "i": 0.759, "z": 0.561}


#: photoD's A_r prior is flat on [0, AR_PRIOR_SLOPE * A_r^SFD + AR_PRIOR_OFFSET].
AR_PRIOR_SLOPE = 1.3
#: See :data:`AR_PRIOR_SLOPE` [mag].
AR_PRIOR_OFFSET = 0.1


_SUBDIR = "photod"
_LOCUS_FILES = {"10Gyr": "SDSSDSEDlocus_10Gyr.txt", "1Gyr": "SDSSDSEDlocus_1Gyr.txt"}
_PRIOR_FOLDER = "priors_stripe82_RA340-350"
_PRIOR_PATTERN = "SDSSpatchRA340-350-priorMap-{:02d}.npz"
_S82_SAMPLE = "s82_stdstars_hp4_0.parquet"
_S82_PRIOR_PATTERN = "s82_priors_hp5_{}.parquet"
#: Placeholder columns (all -99) of the Stripe 82 HATS test file.
_S82_PLACEHOLDERS = ("Mr", "FeH", "MrEst", "MrEstUnc", "FeHEst")
#: Default column names of a locus table without a header line.
_LOCUS_DEFAULT_NAMES = ("Mr", "FeH", "ug", "gr", "ri", "iz", "zy")


def _photod_folder(sub: str | None = None) -> Path:
    """``<shared data>/photod[/sub]``, or a FileNotFoundError that says how to fix it."""
    folder = find_shared_data(_SUBDIR)
    if folder is None:
        raise FileNotFoundError(
            "The photo-D data folder 'photod' was not found in the shared data folder. "
            f"Set the environment variable {DATA_ENV_VAR} to the folder that contains "
            "'photod/' (e.g. ../shared/data), or pass an explicit path."
        )
    path = folder if sub is None else folder / sub
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected inside {folder}).")
    return path


# ------------------------------------------------ Reddening and the A_r prior
def reddening_vector(colour_names=PHOTOD_COLOURS, coefficients=None) -> np.ndarray:
    """Colour excess per unit A_r for colours named by their two bands.

    Parameters
    ----------
    colour_names : sequence of str, default=("ug", "gr", "ri", "iz")
        Each name is two band letters, blue band first ("ug" = u - g).
    coefficients : dict or None, default=None
        A_b / A_r per band; None uses :data:`EXTINCTION_COEFFICIENTS`.

    Returns
    -------
    ndarray of shape (n_colours,)
        E(b1 - b2) / A_r = C_b1 - C_b2 (dimensionless), e.g. 0.41 for u - g.

    Raises
    ------
    ValueError
        For a name that is not two known bands.
    """
    coeffs = EXTINCTION_COEFFICIENTS if coefficients is None else coefficients
    out = []
    for name in colour_names:
        if len(name) != 2 or name[0] not in coeffs or name[1] not in coeffs:
            raise ValueError(
                f"Colour {name!r} must be two band letters with extinction coefficients "
                f"(known bands: {sorted(coeffs)})."
            )
        out.append(float(coeffs[name[0]]) - float(coeffs[name[1]]))
    return np.asarray(out)


def ar_prior_max(ar_sfd, slope=AR_PRIOR_SLOPE, offset=AR_PRIOR_OFFSET):
    """Upper end of photoD's flat A_r prior from the SFD extinction [mag].

    Parameters
    ----------
    ar_sfd : float or array-like
        SFD (total line-of-sight) r-band extinction [mag].
    slope, offset : float, default=1.3, 0.1
        ``A_r^max = slope * ar_sfd + offset`` [mag], as in the photoD code.

    Returns
    -------
    float or ndarray
        A_r^max [mag].
    """
    out = slope * np.asarray(ar_sfd, dtype=np.float64) + offset
    return out if np.ndim(out) else float(out)


def _check_regular_axis(values, name):
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(
            f"{name} must be a 1-D axis with at least 2 values, got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite values.")
    step = np.diff(arr)
    if np.any(step <= 0) or not np.allclose(step, step[0], rtol=1e-6, atol=1e-9):
        raise ValueError(f"{name} must be strictly increasing with a constant step.")
    return arr


def _as_grid(values, name, axes, expected):
    """``values`` as a float64 array of shape ``expected`` (named ``axes`` in the message)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != expected:
        raise ValueError(f"{name} must have shape {axes} = {expected}, got {arr.shape}.")
    return arr


# --------------------------------------------------------------- Colour locus
@dataclass(eq=False, repr=False)
class ColourLocus:
    """Intrinsic (dust-free) colours on a regular (M_r, [Fe/H]) grid.

    Parameters
    ----------
    mr : ndarray of shape (n_mr,)
        Absolute r magnitude axis [mag], increasing, constant step.
    feh : ndarray of shape (n_feh,)
        Metallicity axis [dex], increasing, constant step.
    colours : ndarray of shape (n_feh, n_mr, n_colours)
        Colours [mag] at each node; NaN marks nodes where the locus is not
        defined (e.g. brighter than the tip of the giant branch of that
        [Fe/H]). Such nodes are excluded from fits and simulations.
    colour_names : tuple of str, default=("ug", "gr", "ri", "iz")
        Names of the colours, two band letters each.
    meta : dict
        Free-form provenance (source file, age, resampling choices).

    Attributes
    ----------
    valid : ndarray of bool, shape (n_feh, n_mr)
        Nodes where every colour is finite.
    mr_step, feh_step : float
        Grid steps [mag] and [dex].
    """

    mr: np.ndarray
    feh: np.ndarray
    colours: np.ndarray
    colour_names: tuple = PHOTOD_COLOURS
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.mr = _check_regular_axis(self.mr, "ColourLocus.mr")
        self.feh = _check_regular_axis(self.feh, "ColourLocus.feh")
        self.colour_names = tuple(self.colour_names)
        col = _as_grid(self.colours, "ColourLocus.colours", "(n_feh, n_mr, n_colours)",
                       (self.feh.size, self.mr.size, len(self.colour_names)))
        if np.isinf(col).any():
            raise ValueError("ColourLocus.colours holds inf; use NaN for undefined nodes.")
        self.colours = col
        if not self.valid.any():
            raise ValueError("ColourLocus has no node where all colours are defined.")

    def __repr__(self):
        return (f"ColourLocus(n_feh={self.feh.size}, n_mr={self.mr.size}, "
                f"mr=[{self.mr[0]:g}, {self.mr[-1]:g}], feh=[{self.feh[0]:g}, {self.feh[-1]:g}], "
                f"colours={self.colour_names}, n_valid={int(self.valid.sum())})")

    @property
    def valid(self) -> np.ndarray:
        """Nodes where every colour is finite, bool of shape (n_feh, n_mr)."""
        return np.all(np.isfinite(self.colours), axis=-1)

    @property
    def mr_step(self) -> float:
        """Step of the absolute r magnitude axis [mag]."""
        return float(self.mr[1] - self.mr[0])

    @property
    def feh_step(self) -> float:
        """Step of the metallicity axis [dex]."""
        return float(self.feh[1] - self.feh[0])

    def grid_points(self):
        """Flattened node coordinates, [Fe/H]-major (node ``i * n_mr + j``).

        Returns
        -------
        mr, feh : ndarray of shape (n_feh * n_mr,)
            M_r [mag] and [Fe/H] [dex] of every node, valid or not.
        """
        feh2, mr2 = np.meshgrid(self.feh, self.mr, indexing="ij")
        return mr2.ravel(), feh2.ravel()

    def colours_at(self, mr, feh) -> np.ndarray:
        """Bilinear interpolation of the colours at arbitrary (M_r, [Fe/H]).

        Parameters
        ----------
        mr, feh : array-like of shape (n,)
            M_r [mag] and [Fe/H] [dex].

        Returns
        -------
        ndarray of shape (n, n_colours)
            Colours [mag]; NaN outside the grid or where a node with non-zero
            interpolation weight is undefined. On a node the node's value is
            returned exactly.
        """
        tol = 1e-9

        def cell(v, axis):  # inside the grid?, lower node, fraction (snapped to 0/1 at nodes)
            t = (np.atleast_1d(np.asarray(v, dtype=np.float64)) - axis[0]) / (axis[1] - axis[0])
            inside = (t >= -tol) & (t <= axis.size - 1 + tol)
            t = np.clip(t, 0.0, axis.size - 1)
            k = np.minimum(np.floor(t + tol).astype(np.intp), axis.size - 2)
            f = np.clip(t - k, 0.0, 1.0)
            return inside, k, np.where(np.abs(f) < tol, 0.0, np.where(np.abs(f - 1) < tol, 1.0, f))

        in_x, j0, fx = cell(mr, self.mr)
        in_y, i0, fy = cell(feh, self.feh)
        flat = np.nan_to_num(self.colours, nan=0.0).reshape(-1, len(self.colour_names))
        flat_valid = self.valid.ravel()
        out = np.zeros((j0.size, len(self.colour_names)))
        bad = ~(in_x & in_y)
        for di, dj in ((0, 0), (0, 1), (1, 0), (1, 1)):  # the four corners of the cell
            w = (fy if di else 1 - fy) * (fx if dj else 1 - fx)
            node = (i0 + di) * self.mr.size + (j0 + dj)
            out += w[:, None] * flat.take(node, axis=0)
            bad |= (w > 0) & ~flat_valid.take(node)
        out[bad] = np.nan
        return out

    def to_frame(self, valid_only=True) -> pd.DataFrame:
        """The grid as a long table with columns ``Mr, FeH`` and the colours."""
        mr, feh = self.grid_points()
        flat = self.colours.reshape(-1, len(self.colour_names))
        df = pd.DataFrame({"Mr": mr, "FeH": feh, **dict(zip(self.colour_names, flat.T))})
        return df[self.valid.ravel()].reset_index(drop=True) if valid_only else df


def _read_locus_table(path: Path) -> pd.DataFrame:
    with reading_file(path, "locus table"):
        df = pd.read_csv(path, sep=r"\s+", comment="#", header=0)
        if "Mr" not in df.columns or "FeH" not in df.columns:
            df = pd.read_csv(path, sep=r"\s+", comment="#", header=None)
            df.columns = list(_LOCUS_DEFAULT_NAMES[: df.shape[1]])
        check_text_table_complete(path, sep=None, what="locus table")
        df = df.apply(pd.to_numeric, errors="raise")
    return df


def load_locus(path=None, age="10Gyr", *, mr_step=0.1, mr_range=None, feh_stride=1,
               colours=PHOTOD_COLOURS):
    """Read a photoD stellar-locus table and resample it onto a regular (M_r, [Fe/H]) grid.

    The ``SDSSDSEDlocus_*`` tables give ugriz colours along each [Fe/H] track
    as a function of a running parameter ``tLoc`` (1.40-15.99, step 0.01):
    the SDSS empirical main-sequence/giant locus joined to DSED isochrones
    above the turn-off (README of ``../shared/data/photod``). The photoD
    Bayesian code (Palaversa et al. 2025) works on a grid in (M_r, [Fe/H])
    with 0.1 mag x 0.1 dex resolution, so each track is resampled onto a
    regular M_r grid.

    Parameters
    ----------
    path : str, path-like or None, default=None
        Locus table (whitespace separated, ``#`` comments). Columns ``Mr``,
        ``FeH`` and the colours are required; ``tLoc`` is used when present.
        A file without a header line is read with the columns
        ``Mr FeH ug gr ri iz zy`` (the ``MSandRGBcolors_v1.3`` layout). None
        reads ``<shared data>/photod/locus/SDSSDSEDlocus_<age>.txt``.
    age : {"10Gyr", "1Gyr"}, default="10Gyr"
        Isochrone age of the default table (ignored when ``path`` is given).
    mr_step : float, default=0.1
        Step of the regular M_r grid [mag].
    mr_range : (float, float) or None, default=None
        First and last M_r node [mag]. None uses -2.0 (the bright limit of
        the prior maps and of the photoD simulator) to the faintest node
        inside the table (15.9 mag for the default table).
    feh_stride : int, default=1
        Keep every ``feh_stride``-th [Fe/H] track, starting from the most
        metal-poor one (the tables have 0.1 dex steps from -2.5 to +0.5).
    colours : sequence of str, default=("ug", "gr", "ri", "iz")
        Colour columns to keep.

    Returns
    -------
    ColourLocus
        Colours of shape (n_feh, n_mr, n_colours); NaN where M_r lies outside
        the track of that [Fe/H].

    Raises
    ------
    FileNotFoundError
        When ``path`` is None and the shared data folder is absent (set
        ``SKSTELLAR_DATA``), or the file does not exist.
    ValueError
        For an unknown ``age``, a missing column, or an invalid grid.

    Notes
    -----
    **Non-monotonic M_r above the turn-off.** Along a track, M_r equals
    ``tLoc`` on the main sequence, but brighter than the turn-off it is not
    monotonic in ``tLoc``: the turn-off hook, the subgiant branch (nearly
    horizontal in the colour-magnitude diagram), a red-clump loop, the
    branch after the giant tip that comes back to fainter M_r, and padding
    copies of the last point of isochrones that end early. A regular M_r grid
    can hold one colour vector per node, so each track is reduced to its
    *first-passage envelope*: walking from the faint end (large ``tLoc``)
    towards the bright end, a point is kept only if it is strictly brighter
    than every point kept before it (a running minimum of M_r). This keeps
    the main sequence, the turn-off, the part of the subgiant branch where
    the star first gets brighter and the red-giant branch up to the tip, and
    drops the hook reversal, loops, post-tip branches and padding. Colours
    are then interpolated linearly in M_r. Nodes brighter than the tip (or
    fainter than the faint end) of a track are NaN (undefined). The price is
    that the colour jump across the subgiant branch happens within ~0.1 mag
    of M_r, so subgiant colours are represented only coarsely: a limitation
    of any M_r-parametrised grid (the later photoD code parametrises its
    grid by ``tLoc`` instead).

    Examples
    --------
    >>> locus = load_locus()  # doctest: +SKIP
    >>> locus.colours.shape  # doctest: +SKIP
    (31, 180, 4)
    """
    if path is None:
        if age not in _LOCUS_FILES:
            raise ValueError(f"age must be one of {sorted(_LOCUS_FILES)}, got {age!r}.")
        path = _photod_folder("locus") / _LOCUS_FILES[age]
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Locus table {path} does not exist.")
    if not (isinstance(feh_stride, (int, np.integer)) and feh_stride >= 1):
        raise ValueError(f"feh_stride must be a positive integer, got {feh_stride!r}.")
    if not (np.isfinite(mr_step) and mr_step > 0):
        raise ValueError(f"mr_step must be a positive number [mag], got {mr_step!r}.")
    table = _read_locus_table(path)
    colours = tuple(colours)
    for col in ("Mr", "FeH", *colours):
        if col not in table.columns:
            raise ValueError(
                f"Missing column '{col}' in locus table {path}; available columns: "
                f"{', '.join(map(str, table.columns))}"
            )
    order_col = "tLoc" if "tLoc" in table.columns else "Mr"
    feh_all = np.round(table["FeH"].to_numpy(np.float64), 6)
    fehs = np.unique(feh_all)[::feh_stride]

    # First-passage envelope of every track (loop over the ~31 tracks, not stars).
    tracks = []
    for feh in fehs:
        t = table[feh_all == feh].sort_values(order_col, ascending=False, kind="stable")
        mr = t["Mr"].to_numpy(np.float64)
        keep = mr < np.minimum.accumulate(np.concatenate([[np.inf], mr[:-1]]))  # running minimum
        tracks.append((mr[keep][::-1], t[list(colours)].to_numpy(np.float64)[keep][::-1]))

    if mr_range is None:
        faintest = max(trk[0][-1] for trk in tracks)
        lo, hi = -2.0, math.floor(faintest / mr_step + 1e-9) * mr_step
    else:
        lo, hi = (float(v) for v in mr_range)
        if not hi > lo:
            raise ValueError(f"mr_range must be (low, high) with low < high, got {mr_range!r}.")
    n_mr = int(math.floor((hi - lo) / mr_step + 1e-6)) + 1
    mr_grid = np.round(lo + mr_step * np.arange(n_mr), 10)

    grid = np.full((fehs.size, n_mr, len(colours)), np.nan)
    for i, (mr, col) in enumerate(tracks):
        inside = (mr_grid >= mr[0] - 1e-9) & (mr_grid <= mr[-1] + 1e-9)
        for k in range(len(colours)):
            grid[i, inside, k] = np.interp(mr_grid[inside], mr, col[:, k])
    meta = {
        "source": str(path),
        "age": age if path.name in _LOCUS_FILES.values() else None,
        "parameter": order_col,
        "resampling": "first-passage envelope in M_r, linear interpolation",
        "mr_step": float(mr_step),
    }
    return ColourLocus(mr=mr_grid, feh=fehs.astype(np.float64), colours=grid,
                       colour_names=colours, meta=meta)


# ----------------------------------------------------------------- Prior maps
@dataclass(eq=False, repr=False)
class PriorMaps:
    """p(M_r, [Fe/H] | r) maps in overlapping apparent-magnitude bins.

    Parameters
    ----------
    r_centres : ndarray of shape (n_bins,)
        Centres of the r-band bins [mag], increasing, constant step
        (14.0, 14.5, ..., 27.0 for the photoD maps).
    mr : ndarray of shape (n_mr,)
        M_r axis [mag], increasing (the files store it decreasing; the
        loaders flip it).
    feh : ndarray of shape (n_feh,)
        [Fe/H] axis [dex], increasing.
    density : ndarray of shape (n_bins, n_mr, n_feh)
        Non-negative prior density on the nodes [mag^-1 dex^-1]; for the
        photoD maps sum(density) * 0.2 * 0.1 ~ 1 in each bin.
    r_half_width : float, default=0.5
        A bin holds the stars with |r - r_centre| < r_half_width [mag]
        (bins 1 mag wide, overlapping by half).
    counts : ndarray of shape (n_bins,) or None
        Number of model stars behind each map (TRILEGAL ``size``), used by
        :func:`skstellar.datasets.make_lsst_catalog` as apparent-magnitude number counts.
    meta : dict
        Provenance.
    """

    r_centres: np.ndarray
    mr: np.ndarray
    feh: np.ndarray
    density: np.ndarray
    r_half_width: float = 0.5
    counts: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.r_centres = np.asarray(self.r_centres, dtype=np.float64)
        if self.r_centres.ndim != 1 or self.r_centres.size < 1:
            raise ValueError("PriorMaps.r_centres must be a non-empty 1-D array.")
        if self.r_centres.size > 1:
            _check_regular_axis(self.r_centres, "PriorMaps.r_centres")
        self.mr = _check_regular_axis(self.mr, "PriorMaps.mr")
        self.feh = _check_regular_axis(self.feh, "PriorMaps.feh")
        dens = _as_grid(self.density, "PriorMaps.density", "(n_bins, n_mr, n_feh)",
                        (self.r_centres.size, self.mr.size, self.feh.size))
        if not np.all(np.isfinite(dens)) or np.any(dens < 0):
            raise ValueError("PriorMaps.density must be finite and non-negative.")
        self.density = dens
        self.r_half_width = float(self.r_half_width)
        if self.counts is not None:
            self.counts = np.asarray(self.counts, dtype=np.float64)
            if self.counts.shape != (self.r_centres.size,) or np.any(self.counts < 0):
                raise ValueError("PriorMaps.counts must be non-negative with one value per bin.")

    def __repr__(self):
        return (f"PriorMaps(n_bins={self.n_bins}, "
                f"r=[{self.r_centres[0]:g}, {self.r_centres[-1]:g}], "
                f"mr=[{self.mr[0]:g}, {self.mr[-1]:g}], feh=[{self.feh[0]:g}, {self.feh[-1]:g}])")

    @property
    def n_bins(self) -> int:
        """Number of r-magnitude bins."""
        return int(self.r_centres.size)

    @property
    def r_coverage(self):
        """(r_min, r_max) [mag] covered by the bins: first/last centre -/+ half width."""
        return (float(self.r_centres[0] - self.r_half_width),
                float(self.r_centres[-1] + self.r_half_width))

    def bin_index(self, r, policy="clip", name="rmag", index=None) -> np.ndarray:
        """Index of the prior bin used for apparent magnitude(s) ``r``.

        The bin whose centre is nearest to r, rounding halves up, as photoD
        does (``int(interp(r, centres, arange(n)) + 0.5)``).

        Parameters
        ----------
        r : array-like of shape (n,)
            Apparent r magnitudes [mag]; must be finite.
        policy : {"clip", "raise"}, default="clip"
            For r outside :attr:`r_coverage`: ``"clip"`` uses the nearest
            (first or last) bin, ``"raise"`` raises a ValueError naming the
            first such row.
        name : str, default="rmag"
            Column name used in messages.
        index : sequence, optional
            Row labels for messages.

        Returns
        -------
        ndarray of intp, shape (n,)
        """
        if policy not in ("clip", "raise"):
            raise ValueError(f"r_policy must be 'clip' or 'raise', got {policy!r}.")
        r = np.atleast_1d(np.asarray(r, dtype=np.float64))
        if not np.all(np.isfinite(r)):
            row = int(np.flatnonzero(~np.isfinite(r))[0])
            raise ValueError(f"Column '{name}' has non-finite values (first at row {row}).")
        if policy == "raise":
            lo, hi = self.r_coverage
            bad = (r < lo) | (r > hi)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                where = f"row {row}"
                if index is not None:
                    where += f", index {list(index)[row]!r}"
                raise ValueError(
                    f"Column '{name}' has {int(bad.sum())} value(s) outside the prior maps' "
                    f"range {lo:g} <= r <= {hi:g} (first at {where}: r = {r[row]:.3f}). "
                    "Use r_policy='clip' to apply the nearest bin, or remove these stars."
                )
        if self.n_bins == 1:
            return np.zeros(r.size, dtype=np.intp)
        pos = (r - self.r_centres[0]) / (self.r_centres[1] - self.r_centres[0])
        return np.clip(np.floor(pos + 0.5), 0, self.n_bins - 1).astype(np.intp)

    def on_grid(self, mr, feh) -> np.ndarray:
        """Bilinear interpolation of every map at points (M_r, [Fe/H]).

        Parameters
        ----------
        mr, feh : array-like of shape (n,)
            Points [mag], [dex] (e.g. the nodes of a :class:`ColourLocus`).

        Returns
        -------
        ndarray of shape (n_bins, n)
            Prior density; 0 outside the maps (photoD's ``griddata`` fill value).
        """
        interp = RegularGridInterpolator(
            (self.mr, self.feh), np.moveaxis(self.density, 0, -1),
            method="linear", bounds_error=False, fill_value=0.0,
        )
        return np.ascontiguousarray(interp(np.column_stack([np.ravel(mr), np.ravel(feh)])).T)


def _stripe82_file(path, default_name, what) -> Path:
    """``path``, or ``default_name`` in ``<shared data>/photod/stripe82_sample``; it must exist."""
    path = Path(_photod_folder("stripe82_sample") / default_name if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    return path


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:  # pragma: no cover - pyarrow is an optional extra
        raise ImportError(
            f"Reading {path.name} needs pyarrow: pip install 'skstellar[parquet]'."
        ) from exc
    with reading_file(path, "Parquet table"):
        return pd.read_parquet(path)


def _maps_from_arrays(r_centres, xgrids, ygrids, kdes, counts, half_width, meta):
    """Build PriorMaps from photoD (96, 36) arrays: x = [Fe/H] columns, y = M_r rows."""
    x0, y0 = xgrids[0], ygrids[0]
    for x, y in zip(xgrids, ygrids):
        if not (np.allclose(x, x0) and np.allclose(y, y0)):
            raise ValueError("The prior maps do not share one (M_r, [Fe/H]) grid.")
    feh = x0[0, :]
    mr = y0[:, 0]
    dens = np.stack(kdes)
    if mr[0] > mr[-1]:
        mr = mr[::-1]
        dens = dens[:, ::-1, :]
    return PriorMaps(r_centres=np.asarray(r_centres), mr=mr, feh=feh, density=dens,
                     r_half_width=half_width, counts=counts, meta=meta)


def load_prior_maps(folder=None):
    """Read the 27 TRILEGAL prior maps of the Stripe 82 patch RA 340-350 deg.

    Each ``SDSSpatchRA340-350-priorMap-XX.npz`` holds a Gaussian KDE of the
    TRILEGAL stars with |r - r_c| < 0.5 on a (96 M_r x 36 [Fe/H]) grid, M_r
    from 17 to -2 (step 0.2) and [Fe/H] from -2.5 to 1.0 (step 0.1); r_c =
    14.0, 14.5, ..., 27.0 (Mrakovčić et al. 2025, Sect. 2.1; Palaversa et
    al. 2025).

    Parameters
    ----------
    folder : str, path-like or None, default=None
        Folder holding the 27 ``.npz`` files; None uses
        ``<shared data>/photod/priors_stripe82_RA340-350``.

    Returns
    -------
    PriorMaps
        With ``counts`` (TRILEGAL stars per bin) and ``meta`` holding the
        per-file ``metadata`` vectors (key ``"metadata"``, shape (27, 12)).

    Raises
    ------
    FileNotFoundError
        When the folder or a file is absent (set ``SKSTELLAR_DATA``).
    """
    folder = _photod_folder(_PRIOR_FOLDER) if folder is None else Path(folder)
    files = [folder / _PRIOR_PATTERN.format(i) for i in range(27)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Prior map file(s) missing in {folder}: {', '.join(missing[:3])}..."
        )
    xg, yg, kdes, metas = [], [], [], []
    for f in files:
        with reading_file(f, "prior-map npz file"), np.load(f, allow_pickle=False) as d:
            xg.append(d["xGrid"])
            yg.append(d["yGrid"])
            kdes.append(d["kde"])
            metas.append(np.asarray(d["metadata"], dtype=np.float64))
    metas = np.stack(metas)
    # metadata: FeHmin FeHmax FeHNpts MrFaint MrBright MrNpts rmagMin rmagMax rmagNsteps
    #           rmagBinWidth size r_centre
    return _maps_from_arrays(
        metas[:, 11], xg, yg, kdes, counts=metas[:, 10], half_width=float(metas[0, 9]),
        meta={"source": str(folder), "patch": "Stripe 82, 340 < RA < 350, |Dec| < 1.3",
              "metadata": metas},
    )


def load_stripe82_priors(pixel=0, path=None):
    """Read one HEALPix order-5 prior file of the Stripe 82 HATS test data.

    Parameters
    ----------
    pixel : {0, 1, 2}, default=0
        HEALPix order-5 pixel (all three lie inside the area of
        :func:`load_stripe82_sample`).
    path : str, path-like or None, default=None
        A ``s82_priors_hp5_N.parquet`` file; None uses
        ``<shared data>/photod/stripe82_sample/s82_priors_hp5_<pixel>.parquet``.

    Returns
    -------
    PriorMaps
        27 bins r = 14.0-27.0, same grid as :func:`load_prior_maps`; no counts.

    Raises
    ------
    FileNotFoundError
        When the file is absent (set ``SKSTELLAR_DATA``).
    """
    path = _stripe82_file(path, _S82_PRIOR_PATTERN.format(int(pixel)), "Prior file")
    df = _read_parquet(path).sort_values("rmag")

    def arrays(col):
        return [np.frombuffer(b, dtype=np.float64).reshape(96, 36) for b in df[col]]

    return _maps_from_arrays(
        df["rmag"].to_numpy(np.float64), arrays("xGrid"), arrays("yGrid"), arrays("kde"),
        counts=None, half_width=0.5,
        meta={"source": str(path), "healpix_order": 5, "healpix_pixel": int(pixel)},
    )


def load_stripe82_sample(path=None, *, drop_placeholders=True, ar_max_slope=AR_PRIOR_SLOPE,
                         ar_max_offset=AR_PRIOR_OFFSET):
    """Read the 3,981 real SDSS Stripe 82 standard stars (HEALPix order 4, pixel 0).

    Recalibrated Stripe 82 standard-star photometry (Thanjavur et al. 2021)
    at RA 43.5-46.5 deg, Dec 0.04-1.26 deg, r = 14.0-21.7. Magnitudes and
    colours are **not** dereddened; ``Ar`` is the SFD r-band extinction.
    There are no labels.

    Parameters
    ----------
    path : str, path-like or None, default=None
        The parquet file; None uses
        ``<shared data>/photod/stripe82_sample/s82_stdstars_hp4_0.parquet``.
    drop_placeholders : bool, default=True
        Drop the columns ``Mr FeH MrEst MrEstUnc FeHEst``, which hold -99.
    ar_max_slope, ar_max_offset : float, default=1.3, 0.1
        Add ``Ar_max = slope * Ar + offset`` [mag], the upper end of
        photoD's flat A_r prior, so that the teacher runs on this table and
        on :func:`skstellar.datasets.make_lsst_catalog` output with the same call.

    Returns
    -------
    pandas.DataFrame
        One row per star with (among 50+ columns) ``ra dec glon glat Ar
        Ar_max umag gmag rmag imag zmag uErr ... zErr ug gr ri iz gi ugErr
        grErr riErr izErr`` [deg, mag]; numeric columns are float64/int64
        numpy dtypes.

    Raises
    ------
    FileNotFoundError
        When the file is absent (set ``SKSTELLAR_DATA``).
    """
    df = _read_parquet(_stripe82_file(path, _S82_SAMPLE, "Stripe 82 sample"))
    out = {}
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_float_dtype(s.dtype):
            out[col] = s.to_numpy(dtype=np.float64, na_value=np.nan)
        elif pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
            out[col] = s.to_numpy(dtype=np.int64)
        else:
            out[col] = s.astype(object).to_numpy()
    df = pd.DataFrame(out, index=pd.RangeIndex(len(df)))
    if drop_placeholders:
        df = df.drop(columns=[c for c in _S82_PLACEHOLDERS if c in df.columns])
    df["Ar_max"] = ar_prior_max(df["Ar"].to_numpy(), ar_max_slope, ar_max_offset)
    return df

