"""The bad-input contract, checked on every public estimator, transformer and reader.

Every class exported by ``skstellar`` and ``skstellar.preprocessing`` and every
``read_*``/``load_*`` function of ``skstellar.io`` has an entry in
:data:`SUBJECTS`, a tiny fitted configuration and its input (a test fails
when an export has none, so new estimators join the sweep). Each subject is
walked through the bad inputs of :data:`CASES` (:data:`READER_CASES` for
readers). The expected outcome of every (subject, case) pair is declared in
:data:`EXPECTED` (or by a case's default): a ``ValueError``/``NotFittedError``
(``FileNotFoundError`` for an absent file) whose message must match a
pattern naming the column, row, pixel or file; or a documented *policy* whose
check is run on the output. A case that cannot arise for a subject (no y, no
parallax, no wavelengths...) raises :class:`NotApplicable` with the reason,
which the doc lists.

``docs/bad_input.md`` is generated from this table and the messages actually
raised; :func:`test_doc_is_up_to_date` fails when it drifts. Regenerate it with::

    PYTHONPATH=$PWD python tests/test_bad_input.py > docs/bad_input.md
"""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from skstellar.spectrum import SpectrumBatch

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad_input.md"

# ---------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Raises:
    """The call must raise ``exc`` with a message matching ``match`` (re.search)."""

    exc: type
    match: str


@dataclass(frozen=True)
class Policy:
    """The call returns; ``check(output, ctx)`` asserts the documented behaviour."""

    text: str
    check: Callable = field(compare=False)


class NotApplicable(Exception):
    """Raised by a case builder when the case does not apply to a subject."""


# ------------------------------------------------------------ input helpers


def _copy(X):
    if isinstance(X, SpectrumBatch):
        return SpectrumBatch(
            X.wavelength.copy(), np.array(X.flux, dtype=np.float64, copy=True),
            None if X.ivar is None else X.ivar.copy(),
            None if X.mask is None else X.mask.copy(),
            None if X.meta is None else X.meta.copy(), X.npix.copy(),
        )
    if isinstance(X, pd.DataFrame):
        return X.copy()
    if isinstance(X, dict):
        return {k: np.array(v, copy=True) for k, v in X.items()}
    return np.array(X, dtype=np.float64, copy=True)


def _set(X, row, col, value):
    """Copy of X with one entry replaced (col: name, index, or pixel for spectra)."""
    X = _copy(X)
    if isinstance(X, SpectrumBatch):
        X.flux[row, col] = value
    elif isinstance(X, pd.DataFrame):
        if isinstance(col, str):
            X[col] = X[col].astype(np.float64)
            X.loc[X.index[row], col] = value
        else:
            X.iloc[row, col] = value
    else:
        X[row, col] = value
    return X


def _rows(X, rows):
    if isinstance(X, SpectrumBatch):
        return SpectrumBatch(
            X.wavelength if X.wavelength.ndim == 1 else X.wavelength[rows], X.flux[rows],
            None if X.ivar is None else X.ivar[rows], None if X.mask is None else X.mask[rows],
            None if X.meta is None else X.meta.iloc[rows].reset_index(drop=True), X.npix[rows],
        )
    if isinstance(X, pd.DataFrame):
        return X.iloc[rows]
    return np.asarray(X)[rows]


def _n_rows(out):
    if isinstance(out, tuple):
        out = out[0]
    if isinstance(out, SpectrumBatch):
        return len(out)
    return np.asarray(out).shape[0] if np.ndim(np.asarray(out)) else 0


def _values(out):
    """Numeric output values (flux of a batch; values of a CovariantFeatures)."""
    if isinstance(out, tuple):
        out = out[0]
    if isinstance(out, SpectrumBatch):
        return np.asarray(out.flux, dtype=np.float64)
    if hasattr(out, "values") and not isinstance(out, (pd.DataFrame, np.ndarray)):
        return np.asarray(out.values, dtype=np.float64)
    if isinstance(out, pd.DataFrame):
        return out.select_dtypes("number").to_numpy(dtype=np.float64)
    return np.asarray(out, dtype=np.float64)


# ----------------------------------------------------------------- subjects


class Subject:
    """A public estimator in a tiny configuration with valid input.

    Subclasses set ``make`` (an unfitted instance), ``data`` (the fit input
    ``X`` and ``y``), and may override ``fit``/``apply`` (the call that takes
    new data: ``predict`` or ``transform``). ``columns`` are the input
    columns the estimator reads (named input) and ``named`` says whether its
    input carries names. Case builders ``case_<name>`` override the generic
    ones.
    """

    supervised = True
    named = False
    columns: tuple = ()
    kind = "table"  # "table", "spectra" (2-D flux array) or "batch" (SpectrumBatch)

    def make(self):
        raise NotImplementedError

    def data(self):
        raise NotImplementedError

    def fit(self, est, X, y, **kw):
        return est.fit(X, y, **kw) if self.supervised else est.fit(X, **kw)

    def apply(self, est, X):
        return est.predict(X) if hasattr(est, "predict") else est.transform(X)

    def sigma(self, ctx, value):
        """Thunk calling the estimator with one error/sigma entry set to ``value``."""
        raise NotApplicable("no error/sigma input.")

    def col(self, k=1):
        """A column name (named input) or index read by the estimator."""
        return self.columns[k] if self.named else k


class Ctx:
    """A subject with its data and one fitted instance (shared by all cases)."""

    def __init__(self, subject):
        self.subject = subject
        self.X, self.y = subject.data()
        self.fitted = subject.fit(subject.make(), self.X, self.y)

    def apply(self, X):
        return self.subject.apply(self.fitted, X)

    def fit_new(self, X, y=None, **kw):
        s = self.subject
        return s.fit(s.make(), X, self.y if y is None else y, **kw)


# ---- tabular networks


def _photometry_frame(n, seed=0):
    from skstellar.columns import MDWARF_FEATURES

    rng = np.random.RandomState(seed)
    X = pd.DataFrame(rng.normal(8.0, 1.0, (n, len(MDWARF_FEATURES))), columns=list(MDWARF_FEATURES))
    return X, rng


class MDwarfSubject(Subject):
    named = True

    def __init__(self):
        from skstellar.columns import MDWARF_FEATURES

        self.columns = tuple(MDWARF_FEATURES)

    def make(self):
        from skstellar import MDwarfMetallicityRegressor

        return MDwarfMetallicityRegressor(max_epochs=2, batch_size=16, n_mc_passes=3,
                                          random_state=0)

    def data(self):
        X, rng = _photometry_frame(48)
        return X, np.tanh(0.3 * (X.iloc[:, 0] - 8.0)).to_numpy()


class UncertainNNSubject(MDwarfSubject):
    def make(self):
        from skstellar import UncertainNNRegressor

        return UncertainNNRegressor(hidden=(8,), batch_size=16, max_iter=5, warmup_iter=0,
                                    n_mc_passes=3, random_state=0)

    def fit(self, est, X, y, **kw):
        kw.setdefault("y_err", np.full(np.shape(y), 0.1))
        return est.fit(X, y, **kw)

    def sigma(self, ctx, value):
        err = np.full(ctx.y.shape, 0.1)
        err[4] = value
        return lambda: ctx.fit_new(ctx.X, ctx.y, y_err=err)

    def case_covariance_shape(self, ctx):
        from skstellar.covariance import CovariantFeatures

        values = ctx.X.to_numpy()
        packed = np.tile(np.eye(3)[np.tril_indices(3)], (len(values) - 1, 1))  # one row short
        return lambda: CovariantFeatures(values, [(np.arange(3), packed)],
                                         feature_names=list(ctx.X.columns))


class PhotoDNetworkSubject(Subject):
    named = True

    def __init__(self):
        from skstellar.photod.network import PHOTOD_INPUT_COLUMNS

        self.columns = tuple(PHOTOD_INPUT_COLUMNS)

    def make(self):
        from skstellar import PhotoDNetwork

        return PhotoDNetwork(hidden_layer_sizes=(8, 8), activation="gelu", n_runs=1,
                             max_epochs=2, secondary_max_epochs=1, batch_size=32,
                             random_state=0)

    def data(self):
        rng = np.random.RandomState(0)
        n = 64
        X = pd.DataFrame(np.hstack([rng.uniform(-1, 1, (n, 5)), rng.uniform(0.01, 0.3, (n, 5))]),
                         columns=list(self.columns))
        y = np.column_stack([4 + X.iloc[:, 1], -1 + 0.5 * X.iloc[:, 0], 0.1 + 0.05 * X.iloc[:, 2]])
        return X, y

    def sigma(self, ctx, value):
        sigma_b = np.full(ctx.y.shape, 0.1)
        sigma_b[4, 1] = value
        return lambda: ctx.fit_new(ctx.X, ctx.y, sigma_b=sigma_b)

    def case_one_row(self, ctx):
        return lambda: ctx.apply(_rows(ctx.X, [0]))


# ---- spectral networks and transformers on 2-D flux arrays


def _flux(n, p, seed=0):
    rng = np.random.RandomState(seed)
    x = np.linspace(0, 1, p)
    t = rng.uniform(0, 1, (n, 1))
    line = 0.4 * np.exp(-0.5 * ((x - 0.2 - 0.6 * t) / 0.05) ** 2)
    return 1 - line + 0.01 * rng.normal(size=(n, p))


class SpectralCNNRegressorSubject(Subject):
    kind = "spectra"

    def make(self):
        from skstellar import SpectralCNNRegressor

        return SpectralCNNRegressor(channels=(4,), convs_per_block=1, padding=1, pool_size=2,
                                    pool_stride=2, max_epochs=2, batch_size=16, n_mc_passes=3,
                                    random_state=0)

    def data(self):
        X = _flux(40, 32)
        return X, X[:, 10:20].sum(1)


class SpectralCNNClassifierSubject(SpectralCNNRegressorSubject):
    def make(self):
        from skstellar import SpectralCNNClassifier

        return SpectralCNNClassifier(channels=(4,), convs_per_block=1, padding=1, pool_size=2,
                                     pool_stride=2, max_epochs=2, batch_size=16, n_mc_passes=3,
                                     random_state=0)

    def data(self):
        X, s = super().data()
        return X, (s > np.median(s)).astype(int)


class PayneEmulatorSubject(Subject):
    """Labels in, spectra out: X is (teff, logg, mh), y the flux."""

    named = True
    columns = ("teff", "logg", "mh")

    def make(self):
        from skstellar import PayneEmulator

        return PayneEmulator(hidden=(8,), max_epochs=2, batch_size=16, random_state=0)

    def data(self):
        rng = np.random.RandomState(0)
        lab = pd.DataFrame(rng.uniform([3000, 4.5, -1], [4000, 5.5, 0.5], (48, 3)),
                           columns=list(self.columns))
        y = _flux(48, 24)
        return lab, y


class CycleStarNetSubject(Subject):
    supervised = False
    kind = "spectra"

    def make(self):
        from skstellar import CycleStarNet

        return CycleStarNet(synthetic=_flux(32, 64, seed=1), domain_channels=(4,),
                            shared_channels=(8, 8), kernel_size=4, strides=(2, 2, 2),
                            latent_channels=4, split_channels=1, split_width=4, n_iter=2,
                            lr_decay_every=None, random_state=0)

    def data(self):
        return _flux(32, 64), None

    def sigma(self, ctx, value):
        err = np.full(ctx.X.shape, 0.01)
        err[2, 5] = value
        return lambda: ctx.fit_new(ctx.X, obs_err=err)


class SpectralLabelFitterSubject(Subject):
    """Fits labels to spectra with an emulator; ``fit`` takes no data."""

    kind = "spectra"
    supervised = False

    def make(self):
        from skstellar import PayneEmulator, SpectralLabelFitter

        rng = np.random.RandomState(0)
        lab = rng.uniform([3000, 4.5, -1], [4000, 5.5, 0.5], (48, 3))
        emu = PayneEmulator(hidden=(8,), max_epochs=2, batch_size=16, random_state=0,
                            wavelength=np.linspace(6000, 6100, 24),
                            label_names=["teff", "logg", "mh"]).fit(lab, _flux(48, 24))
        return SpectralLabelFitter(emulator=emu, max_iter=3, random_state=0)

    def data(self):
        return _flux(6, 24, seed=2), None

    def fit(self, est, X, y, **kw):
        return est.fit()

    def apply(self, est, X):
        return est.predict(X, np.full(np.shape(X), 0.01))

    def sigma(self, ctx, value):
        err = np.full(ctx.X.shape, 0.01)
        err[2, 5] = value
        return lambda: ctx.fitted.predict(ctx.X, err)

    def case_nan_X_fit(self, ctx):
        raise NotApplicable("fit takes no data (it only checks the emulator).")

    case_empty_X_fit = case_one_row_fit = case_nan_X_fit


# ---- photo-D teacher and hybrid


def _lsst_catalog(n, seed=3):
    from photod_toys import toy_locus, toy_priors

    from skstellar.datasets import make_lsst_catalog

    cat = make_lsst_catalog(n, locus=toy_locus(), prior_maps=toy_priors(), r_range=(15, 20),
                            ar_distribution="uniform", random_state=seed)
    return cat.reset_index(drop=True)


class BayesianPhotoDSubject(Subject):
    named = True
    supervised = False
    columns = ("rmag", "ug", "gr", "ri", "iz", "ugErr", "grErr", "riErr", "izErr", "Ar_max")

    def make(self):
        from photod_toys import toy_locus, toy_priors

        from skstellar import BayesianPhotoD

        return BayesianPhotoD(locus=toy_locus(), prior_maps=toy_priors())

    def data(self):
        return _lsst_catalog(30), None

    def fit(self, est, X, y, **kw):
        return est.fit(X)

    def sigma(self, ctx, value):
        return lambda: ctx.apply(_set(ctx.X, 2, "ugErr", value))


class HybridPhotoDSubject(BayesianPhotoDSubject):
    columns = ("ra", "dec", "rmag", "ug", "gr", "ri", "iz", "ugErr", "grErr", "riErr", "izErr",
               "Ar_max")

    def make(self):
        from photod_toys import toy_locus, toy_priors

        from skstellar import BayesianPhotoD, HybridPhotoD, PhotoDNetwork

        net = PhotoDNetwork(hidden_layer_sizes=(8, 8), activation="gelu", n_runs=1, max_epochs=2,
                            secondary_max_epochs=1, batch_size=32, random_state=0)
        teacher = BayesianPhotoD(locus=toy_locus(), prior_maps=toy_priors())
        return HybridPhotoD(teacher=teacher, student=net, label_fraction=0.5,
                            min_labelled=20, random_state=0)

    def data(self):
        return _lsst_catalog(120), None


# ---- transformers


class AbsoluteMagnitudesSubject(Subject):
    named = True
    supervised = False

    def __init__(self):
        from skstellar.columns import BAND_COLUMNS, BAND_ERROR_COLUMNS, MDWARF_BANDS

        self.bands = MDWARF_BANDS
        mags = [BAND_COLUMNS[b] for b in MDWARF_BANDS]
        errs = [BAND_ERROR_COLUMNS[b] or BAND_COLUMNS[b] + "_error" for b in MDWARF_BANDS]
        self.columns = tuple(mags + ["parallax"] + errs + ["parallax_error"])
        self.mags, self.errs = mags, errs

    def make(self):
        from skstellar.preprocessing import AbsoluteMagnitudes

        return AbsoluteMagnitudes(return_errors=True,
                                  error_columns=dict(zip(self.bands, self.errs)))

    def data(self):
        rng = np.random.RandomState(0)
        n = 12
        X = pd.DataFrame({c: rng.uniform(8, 14, n) for c in self.mags})
        X["parallax"] = rng.uniform(5, 50, n)
        for c in self.errs:
            X[c] = rng.uniform(0.01, 0.05, n)
        X["parallax_error"] = 0.05
        return X, None

    def case_nonpositive_parallax(self, ctx):
        return lambda: ctx.apply(_set(ctx.X, 4, "parallax", -1.0))

    def sigma(self, ctx, value):
        return lambda: ctx.apply(_set(ctx.X, 2, self.errs[1], value))


class CovariantStandardScalerSubject(Subject):
    supervised = False

    def make(self):
        from skstellar.preprocessing import CovariantStandardScaler

        return CovariantStandardScaler()

    def data(self):
        rng = np.random.RandomState(0)
        return rng.normal(size=(20, 4)), None

    def case_covariance_shape(self, ctx):
        from skstellar.covariance import CovariantFeatures

        packed = np.tile(np.eye(2)[np.tril_indices(2)], (len(ctx.X), 1))
        return lambda: ctx.apply(CovariantFeatures(ctx.X, [(np.arange(3), packed)]))


class SpectrumMinMaxScalerSubject(Subject):
    supervised = False
    kind = "spectra"

    def make(self):
        from skstellar.preprocessing import SpectrumMinMaxScaler

        return SpectrumMinMaxScaler()

    def data(self):
        return _flux(10, 32), None


class ContinuumNormalizerSubject(SpectrumMinMaxScalerSubject):
    def make(self):
        from skstellar.preprocessing import ContinuumNormalizer

        return ContinuumNormalizer(sigma=10.0, wavelength=6000.0 + 2.0 * np.arange(64))

    def data(self):
        return _flux(10, 64), None


def _batch(n=6, p=400, lo=5000.0, step=2.0, z=None, seed=0):
    wave = lo + step * np.arange(p)
    flux = _flux(n, p, seed=seed)
    ivar = np.full((n, p), 1e4)
    meta = pd.DataFrame({"z": np.linspace(0.0, 0.01, n) if z is None else z})
    return SpectrumBatch(wave, flux, ivar=ivar, meta=meta)


class SpectrumResamplerSubject(Subject):
    supervised = False
    kind = "batch"

    def make(self):
        from skstellar.preprocessing import SpectrumResampler

        return SpectrumResampler(wave_min=5100.0, wave_max=5700.0, step=5.0)

    def data(self):
        return _batch(), None


class RestFrameShifterSubject(SpectrumResamplerSubject):
    named = True
    columns = ("z",)

    def make(self):
        from skstellar.preprocessing import RestFrameShifter

        return RestFrameShifter()

    def case_missing_column(self, ctx):
        X = _copy(ctx.X)
        X.meta = X.meta.rename(columns={"z": "redshift"})
        return lambda: ctx.apply(X)

    def case_nan_X(self, ctx):
        X = _copy(ctx.X)
        X.meta.loc[3, "z"] = np.nan
        return lambda: ctx.apply(X)

    def case_string_column(self, ctx):
        X = _copy(ctx.X)
        X.meta["z"] = X.meta["z"].astype(str)
        X.meta.loc[3, "z"] = "high"
        return lambda: ctx.apply(X)


class RadialVelocityCorrectorSubject(SpectrumResamplerSubject):
    def make(self):
        from skstellar.preprocessing import RadialVelocityCorrector

        wave = np.arange(5900.0, 9000.0, 1.0)
        return RadialVelocityCorrector(template=(wave, self._lines(wave)), v_grid=(-100, 100, 10),
                                       mask=None)

    @staticmethod
    def _lines(wave):
        centres = np.linspace(6100, 8800, 25)
        return 1 - 0.5 * np.exp(-0.5 * ((wave[..., None] - centres) / 3.0) ** 2).sum(-1)

    def data(self):
        wave = np.arange(5950.0, 8950.0, 2.0)
        rv = (-30.0, 0.0, 20.0, 40.0, -10.0)  # km/s
        flux = np.stack([self._lines(wave * (1 - v / 299792.458)) for v in rv])
        return SpectrumBatch(wave, flux, ivar=np.full(flux.shape, 1e4)), None


class XPNormalizerSubject(Subject):
    named = True
    supervised = False

    def make(self):
        from skstellar.preprocessing import XPNormalizer

        return XPNormalizer()

    def data(self):
        from skstellar.datasets import make_xp_catalog

        cat = make_xp_catalog(8, n_coefficients=8, random_state=0)
        self.columns = ("source_id", "j_m") + tuple(c for c in cat.columns if c != "j_m")
        return cat, None

    def case_nonpositive_parallax(self, ctx):
        return lambda: ctx.apply(_set(ctx.X, 4, "parallax", -0.5))

    def sigma(self, ctx, value):
        return lambda: ctx.apply(_set(ctx.X, 2, "j_msigcom", value))

    def case_covariance_shape(self, ctx):
        X = ctx.X.copy()
        col = "bp_coefficient_correlations"
        X.at[X.index[1], col] = X[col].iloc[1][:-2]  # two entries short
        return lambda: ctx.apply(X)


# ---- readers


def _shared(*parts):
    from skstellar.io import find_shared_data

    folder = find_shared_data(parts[0])
    if folder is None:
        return None
    path = Path(folder).joinpath(*parts[1:])
    return path if path.exists() else None


def _truncate(src, dst):
    data = Path(src).read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


class Reader:
    """A ``read_*``/``load_*`` function: ``read(path)``, its file ending, a valid file."""

    ext = ".fits"

    def read(self, path):
        raise NotImplementedError

    def valid_file(self, tmp):
        """Path of a valid file (or None when it needs absent shared data)."""
        raise NotImplementedError

    def wrong_format(self, tmp):
        path = tmp / f"wrong{self.ext}"
        path.write_bytes(b"this is not a data file\n" + bytes(range(256)) * 4)
        return path

    def truncated(self, tmp):
        src = self.valid_file(tmp)
        if src is None:
            return None
        return _truncate(src, tmp / f"truncated{self.ext}")


class ReadCatalog(Reader):
    def read(self, path):
        from skstellar.io import read_catalog

        return read_catalog(path)

    def valid_file(self, tmp):
        from skstellar.io import write_catalog

        df = pd.DataFrame({"ra": np.linspace(0, 1, 200),
                           "phot_g_mean_mag": np.linspace(10, 15, 200)})
        return write_catalog(df, tmp / "valid.fits", overwrite=True)


class ReadCatalogCSV(ReadCatalog):
    ext = ".csv"

    def valid_file(self, tmp):
        from skstellar.io import write_catalog

        df = pd.DataFrame({c: np.linspace(0, 1, 200) + k for k, c in enumerate(
            ["ra", "dec", "parallax", "phot_g_mean_mag", "j_m", "w1mpro"])})
        return write_catalog(df, tmp / "valid.csv", overwrite=True)


class ReadSpectraTable(Reader):
    def read(self, path):
        from skstellar.io import read_spectra_table

        return read_spectra_table(path)

    def valid_file(self, tmp):
        from skstellar.io import write_spectra_table

        return write_spectra_table(_batch(n=20, p=200), tmp / "valid.fits", overwrite=True)


class ReadLamost(Reader):
    def read(self, path):
        from skstellar.io import read_lamost_spectra

        return read_lamost_spectra([path])

    def valid_file(self, tmp):
        folder = _shared("lamost_spectra", "dr1_B6212_sp06")
        return None if folder is None else sorted(folder.glob("*.fits"))[0]


class ReadXPContinuous(Reader):
    ext = ".csv"

    def read(self, path):
        from skstellar.io import read_xp_continuous

        return read_xp_continuous(path)

    def valid_file(self, tmp):
        return _shared("gaia_xp", "XP_CONTINUOUS_RAW.csv")


class ReadXPAvro(Reader):
    ext = ".avro"

    def read(self, path):
        from skstellar.io import read_xp_avro

        return read_xp_avro(path)

    def valid_file(self, tmp):
        return _shared("gaia_xp", "MeanSpectrumSolutionWithCov.avro")


class LoadMdwarfCatalog(Reader):
    ext = ".csv"

    def read(self, path):
        from skstellar.io import load_mdwarf_catalog

        return load_mdwarf_catalog(path)

    def valid_file(self, tmp):
        return _shared("mdwarf_photometry", "birky2020_safe_8band.csv")


class LoadLocus(Reader):
    ext = ".txt"

    def read(self, path):
        from skstellar.io import load_locus

        return load_locus(path)

    def valid_file(self, tmp):
        return _shared("photod", "locus", "SDSSDSEDlocus_10Gyr.txt")


class LoadPriorMaps(Reader):
    """Reads a folder of 27 npz maps: the bad file is the first map."""

    ext = ".npz"
    name = "SDSSpatchRA340-350-priorMap-{:02d}.npz"

    def read(self, path):
        from skstellar.io import load_prior_maps

        return load_prior_maps(path)

    def valid_file(self, tmp):
        return _shared("photod", "priors_stripe82_RA340-350")

    def _folder(self, tmp, first):
        src = self.valid_file(tmp)
        folder = tmp / "maps"
        folder.mkdir(exist_ok=True)
        for i in range(27):
            dst = folder / self.name.format(i)
            if i == 0:
                first(dst)
            elif src is not None:
                dst.write_bytes((src / self.name.format(i)).read_bytes())
            else:
                dst.write_bytes(b"")
        return folder

    def wrong_format(self, tmp):
        return self._folder(tmp, lambda dst: dst.write_bytes(b"not an npz\n" * 10))

    def truncated(self, tmp):
        src = self.valid_file(tmp)
        if src is None:
            return None
        return self._folder(tmp, lambda dst: _truncate(src / self.name.format(0), dst))


class LoadStripe82Priors(Reader):
    ext = ".parquet"

    def read(self, path):
        from skstellar.io import load_stripe82_priors

        return load_stripe82_priors(path=path)

    def valid_file(self, tmp):
        folder = _shared("photod", "stripe82_sample")
        files = [] if folder is None else sorted(folder.glob("*prior*"))
        return files[0] if files else None


class LoadStripe82Sample(Reader):
    ext = ".parquet"

    def read(self, path):
        from skstellar.io import load_stripe82_sample

        return load_stripe82_sample(path)

    def valid_file(self, tmp):
        folder = _shared("photod", "stripe82_sample")
        files = [] if folder is None else sorted(p for p in folder.glob("*")
                                                 if "prior" not in p.name)
        return files[0] if files else None


READERS = {
    "read_catalog": ReadCatalog,
    "read_catalog (csv)": ReadCatalogCSV,
    "read_spectra_table": ReadSpectraTable,
    "read_lamost_spectra": ReadLamost,
    "read_xp_continuous": ReadXPContinuous,
    "read_xp_avro": ReadXPAvro,
    "load_mdwarf_catalog": LoadMdwarfCatalog,
    "load_locus": LoadLocus,
    "load_prior_maps": LoadPriorMaps,
    "load_stripe82_priors": LoadStripe82Priors,
    "load_stripe82_sample": LoadStripe82Sample,
}


class CalibratedRegressorSubject(MDwarfSubject):
    """The calibration meta-estimator around a tiny M-dwarf network (2 folds)."""

    def make(self):
        from skstellar import CalibratedRegressor, MDwarfMetallicityRegressor

        return CalibratedRegressor(
            estimator=MDwarfMetallicityRegressor(max_epochs=2, batch_size=16, n_mc_passes=3,
                                       uncertainty="mc", random_state=0),
            cv=2, warn_below=0, random_state=0)


SUBJECTS = {
    "AbsoluteMagnitudes": AbsoluteMagnitudesSubject,
    "BayesianPhotoD": BayesianPhotoDSubject,
    "CalibratedRegressor": CalibratedRegressorSubject,
    "ContinuumNormalizer": ContinuumNormalizerSubject,
    "CovariantStandardScaler": CovariantStandardScalerSubject,
    "CycleStarNet": CycleStarNetSubject,
    "HybridPhotoD": HybridPhotoDSubject,
    "MDwarfMetallicityRegressor": MDwarfSubject,
    "PayneEmulator": PayneEmulatorSubject,
    "PhotoDNetwork": PhotoDNetworkSubject,
    "RadialVelocityCorrector": RadialVelocityCorrectorSubject,
    "RestFrameShifter": RestFrameShifterSubject,
    "SpectralCNNClassifier": SpectralCNNClassifierSubject,
    "SpectralCNNRegressor": SpectralCNNRegressorSubject,
    "SpectralLabelFitter": SpectralLabelFitterSubject,
    "SpectrumMinMaxScaler": SpectrumMinMaxScalerSubject,
    "SpectrumResampler": SpectrumResamplerSubject,
    "UncertainNNRegressor": UncertainNNSubject,
    "XPNormalizer": XPNormalizerSubject,
}


# -------------------------------------------------------------------- cases


def case_not_fitted(s, ctx):
    return lambda: s.apply(s.make(), ctx.X)


def case_nan_X(s, ctx):
    return lambda: ctx.apply(_set(ctx.X, 3, s.col(1) if s.kind == "table" else 5, np.nan))


def case_inf_X(s, ctx):
    return lambda: ctx.apply(_set(ctx.X, 3, s.col(1) if s.kind == "table" else 5, np.inf))


def case_nan_X_fit(s, ctx):
    return lambda: ctx.fit_new(_set(ctx.X, 3, s.col(1) if s.kind == "table" else 5, np.nan))


def case_nan_y(s, ctx):
    if not s.supervised:
        raise NotApplicable("unsupervised: fit takes no y.")
    y = np.array(ctx.y, dtype=np.float64, copy=True)
    y[(2,) + (0,) * (y.ndim - 1)] = np.nan
    return lambda: ctx.fit_new(ctx.X, y)


def case_empty_X(s, ctx):
    return lambda: ctx.apply(_rows(ctx.X, slice(0, 0)))


def case_empty_X_fit(s, ctx):
    y = None if ctx.y is None else np.asarray(ctx.y)[:0]
    return lambda: ctx.fit_new(_rows(ctx.X, slice(0, 0)), y)


def case_one_row(s, ctx):
    return lambda: ctx.apply(_rows(ctx.X, [0]))


def case_one_row_fit(s, ctx):
    y = None if ctx.y is None else np.asarray(ctx.y)[:1]
    return lambda: ctx.fit_new(_rows(ctx.X, [0]), y)


def case_wrong_n_columns(s, ctx):
    X = ctx.X
    if isinstance(X, SpectrumBatch):
        raise NotApplicable("spectra as SpectrumBatch: see wavelength_grid.")
    if isinstance(X, pd.DataFrame):
        X = X[list(s.columns)].to_numpy()
    return lambda: ctx.apply(np.asarray(X)[:, :-1])


def case_missing_column(s, ctx):
    if not s.named:
        raise NotApplicable("positional input (no column names).")
    return lambda: ctx.apply(ctx.X.drop(columns=[s.col(1)]))


def case_column_order(s, ctx):
    if not s.named:
        raise NotApplicable("positional input (no column names).")
    X = ctx.X
    if isinstance(X, SpectrumBatch):
        X = _copy(X)
        X.meta = X.meta.assign(other=1.0)[["other", *X.meta.columns]]
        return lambda: ctx.apply(X)
    X = X[list(X.columns)[::-1]]
    return lambda: ctx.apply(X)


def case_string_column(s, ctx):
    X = ctx.X
    if isinstance(X, SpectrumBatch):
        raise NotApplicable("SpectrumBatch flux is numeric by construction.")
    if isinstance(X, pd.DataFrame):
        X = X.copy()
        c = s.col(1)
        X[c] = X[c].astype(object)
        X.loc[X.index[3], c] = "bad"
    else:
        X = np.asarray(X).astype(object)
        X[3, 1] = "bad"
    return lambda: ctx.apply(X)


def case_nonpositive_parallax(s, ctx):
    raise NotApplicable("no parallax input.")


def case_bad_sigma(s, ctx):
    return s.sigma(ctx, -0.02)


def case_nan_sigma(s, ctx):
    return s.sigma(ctx, np.nan)


def case_covariance_shape(s, ctx):
    raise NotApplicable("no covariance input.")


def case_wavelength_grid(s, ctx):
    if s.kind == "table":
        raise NotApplicable("no wavelength grid.")
    X = ctx.X
    if isinstance(X, SpectrumBatch):
        Y = _copy(X)
        Y.wavelength = Y.wavelength[::-1].copy()  # decreasing: not a valid grid
        return lambda: ctx.apply(Y)
    return lambda: ctx.apply(np.hstack([X, X[:, :3]]))  # three pixels more than at fit


CASES = {name[5:]: fn for name, fn in list(globals().items()) if name.startswith("case_")}

_NAME = r"('[^']+'|column|row|pixel|spectrum|spectra)"

#: The outcome of a case unless EXPECTED says otherwise.
DEFAULT = {
    "not_fitted": Raises(NotFittedError, r"not fitted"),
    "nan_X": Raises(ValueError, r"NaN.*row \d"),
    "inf_X": Raises(ValueError, r"inf.*row \d"),
    "nan_X_fit": Raises(ValueError, r"NaN.*row \d"),
    "nan_y": Raises(ValueError, r"NaN.*row \d"),
    "empty_X": Raises(ValueError, r"0 (sample|spectra|star)"),
    "empty_X_fit": Raises(ValueError, r"0 (sample|spectra|star)"),
    "one_row": Policy("one row is handled like any other (one finite output row)",
                      lambda out, ctx: _n_rows(out) == 1 and np.isfinite(_values(out)).all()),
    "one_row_fit": Raises(ValueError, r"1 sample|at least 2"),
    "wrong_n_columns": Raises(ValueError, r"\d+ (features|columns|pixels)|plain array"),
    "missing_column": Raises(ValueError, r"[Mm]issing column '[^']+'"),
    "column_order": Raises(ValueError, r"same order"),
    "string_column": Raises(ValueError, r"'[^']+'.*(string|numeric)|(string|numeric).*'[^']+'"),
    "nonpositive_parallax": Raises(ValueError, r"parallax"),
    "bad_sigma": Raises(ValueError, r"(negative|non-positive).*row \d"),
    "nan_sigma": Raises(ValueError, r"NaN.*row \d"),
    "covariance_shape": Raises(ValueError, r"shape|values in row \d"),
    "wavelength_grid": Raises(ValueError, r"wavelength|pixel|grid|\d+ features"),
}


def _finite(out, ctx):
    return _n_rows(out) > 0 and bool(np.isfinite(_values(out)).all())


def _fitted(out, ctx):
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(out)
    return True


def _same_as_valid(out, ctx):
    ref = ctx.apply(ctx.X)
    return np.array_equal(_values(out), _values(ref), equal_nan=True)


def _empty(out, ctx):
    return _n_rows(out) == 0


def _nan_at_bad_pixel_only(out, ctx):
    v = _values(out)
    bad = ~np.isfinite(v)
    return bool(bad[3, 5]) and bad.sum() == 1


def _inf_passes_through(out, ctx):
    v = _values(out)
    return bool(np.isinf(v[3, 5])) and np.isfinite(np.delete(v.ravel(), 3 * v.shape[1] + 5)).all()


BY_NAME = Policy("columns are selected by name: reordered input gives the identical output",
                 _same_as_valid)
MASKED = Policy("NaN/inf flux marks a bad pixel (zero weight, documented); outputs stay finite",
                _finite)
MASKED_FIT = Policy("NaN/inf flux marks a bad pixel at fit too (documented); fit succeeds",
                    _fitted)
NOTHING_LEARNT = Policy("fit learns nothing from the rows (it checks parameters/layout); "
                        "bad rows are reported by transform/predict", _fitted)
STATELESS = Policy("stateless: transform needs no fit (nothing is learnt)", _finite)
EMPTY_OUT = Policy("zero rows in, zero rows out", _empty)

#: Per-subject outcomes that differ from DEFAULT.
EXPECTED: dict = {
    # sklearn's feature-name check names the column
    **{(n, "missing_column"): Raises(ValueError, r"missing:\s+- (M_G|logg)")
       for n in ("MDwarfMetallicityRegressor", "UncertainNNRegressor", "PayneEmulator",
                 "CalibratedRegressor")},
    **{(n, "column_order"): BY_NAME
       for n in ("AbsoluteMagnitudes", "BayesianPhotoD", "HybridPhotoD", "PhotoDNetwork",
                 "RestFrameShifter", "XPNormalizer")},
    **{(n, "one_row_fit"): NOTHING_LEARNT
       for n in ("AbsoluteMagnitudes", "BayesianPhotoD", "ContinuumNormalizer",
                 "RadialVelocityCorrector", "RestFrameShifter",
                 "SpectrumMinMaxScaler", "SpectrumResampler", "XPNormalizer")},
    ("CovariantStandardScaler", "one_row_fit"): Policy(
        "one row fits: a zero spread keeps scale 1 (near-constant features are not scaled)",
        _fitted),
    ("HybridPhotoD", "one_row_fit"): Policy(
        "fit_predict labels and predicts a one-star catalogue (the teacher labels it)", _fitted),
    ("CycleStarNet", "one_row_fit"): Policy(
        "unsupervised adaptation trains on one observed spectrum", _fitted),
    **{(n, "empty_X_fit"): NOTHING_LEARNT
       for n in ("RadialVelocityCorrector", "RestFrameShifter", "XPNormalizer")},
    ("BayesianPhotoD", "nan_X_fit"): NOTHING_LEARNT,
    ("XPNormalizer", "nan_X_fit"): NOTHING_LEARNT,
    ("HybridPhotoD", "wrong_n_columns"): Raises(ValueError, r"must be a pandas DataFrame"),
    # spectra: NaN/inf pixels are bad pixels
    **{(n, c): MASKED for n in ("CycleStarNet", "RadialVelocityCorrector", "SpectrumResampler",
                                "SpectralLabelFitter") for c in ("nan_X", "inf_X")},
    **{(n, "nan_X_fit"): MASKED_FIT
       for n in ("CycleStarNet", "RadialVelocityCorrector", "SpectrumResampler",
                 "SpectrumMinMaxScaler", "ContinuumNormalizer", "RestFrameShifter")},
    ("SpectrumMinMaxScaler", "nan_X"): Policy(
        "NaN marks a masked pixel: scaled without it and written as fill_value (0)", _finite),
    ("ContinuumNormalizer", "nan_X"): Policy(
        "NaN flux is a bad pixel: its normalised flux stays NaN (documented), the other "
        "pixels are finite", _nan_at_bad_pixel_only),
    ("RestFrameShifter", "inf_X"): Policy(
        "only wavelengths change: the flux passes through untouched (bad_pixels() flags it)",
        _inf_passes_through),
    ("RestFrameShifter", "not_fitted"): STATELESS,
    ("RestFrameShifter", "empty_X"): EMPTY_OUT,
    ("RestFrameShifter", "wavelength_grid"): Policy(
        "only divides wavelengths by 1 + z; grid checks belong to the resampler", _finite),
    ("SpectralLabelFitter", "empty_X"): EMPTY_OUT,
    ("SpectrumMinMaxScaler", "not_fitted"): STATELESS,
    ("ContinuumNormalizer", "not_fitted"): STATELESS,
    **{("CycleStarNet", c): Policy(
        "a negative/zero/NaN error marks a bad pixel (zero weight, documented)", _fitted)
       for c in ("bad_sigma", "nan_sigma")},
    **{("SpectralLabelFitter", c): Policy(
        "a negative/zero/NaN error leaves the pixel out of the fit (documented)", _finite)
       for c in ("bad_sigma", "nan_sigma")},
    ("XPNormalizer", "nan_sigma"): Raises(ValueError, r"'j_m' \(or its error\).*NaN.*row 2"),
    ("UncertainNNRegressor", "nan_y"): Policy(
        "NaN marks a missing label, masked in the loss (documented)", _fitted),
    ("XPNormalizer", "nonpositive_parallax"): Policy(
        "the pseudo-absolute magnitude parallax x 10^(0.2 G_RP) is linear in the parallax, "
        "so negative parallaxes are valid input (paper Eq. 3)", _finite),
}


def expected(subject, case):
    return EXPECTED.get((subject, case), DEFAULT[case])


# ------------------------------------------------------------------- running


_CTX: dict = {}


def context(name):
    if name not in _CTX:
        _CTX[name] = Ctx(SUBJECTS[name]())
    return _CTX[name]


_RESULTS: dict = {}


def run_case(name, case):
    """Run one case (once per session).

    Returns ("n/a", reason), ("ok", output) or ("raised", exception).
    """
    if (name, case) not in _RESULTS:
        _RESULTS[name, case] = _run_case(name, case)
    return _RESULTS[name, case]


def _run_case(name, case):
    ctx = context(name)
    s = ctx.subject
    builder = getattr(s, f"case_{case}", None)
    try:
        thunk = builder(ctx) if builder is not None else CASES[case](s, ctx)
    except NotApplicable as exc:
        return "n/a", str(exc)
    try:
        return "ok", thunk()
    except Exception as exc:  # noqa: BLE001 - the outcome is what is tested
        return "raised", exc


def _excerpt(exc, width=140):
    msg = " ".join(str(exc).split())
    return msg if len(msg) <= width else msg[: width - 3] + "..."


READER_CASES = ("missing_file", "wrong_format", "truncated_file")


def run_reader_case(name, case, tmp):
    """Run one reader case in folder ``tmp``; same return values as :func:`run_case`."""
    r = READERS[name]()
    if case == "missing_file":
        path = tmp / f"no_such_file{r.ext}"
    elif case == "wrong_format":
        path = r.wrong_format(tmp)
    else:
        path = r.truncated(tmp)
        if path is None:
            return "skip", "needs the shared data folder for a valid file to truncate"
    try:
        return "ok", r.read(path)
    except Exception as exc:  # noqa: BLE001
        return "raised", exc


def _check(outcome, kind, value, ctx):
    """Assert that (kind, value) from run_case matches ``outcome``."""
    if isinstance(outcome, Raises):
        assert kind == "raised", f"expected {outcome.exc.__name__}, got {kind}: {value!r}"
        assert isinstance(value, outcome.exc), f"{type(value).__name__}: {value}"
        assert re.search(outcome.match, str(value)), f"{str(value)!r} !~ {outcome.match!r}"
    elif isinstance(outcome, Policy):
        if kind == "raised":
            raise AssertionError(f"policy '{outcome.text}' expected, got {value!r}") from value
        assert kind == "ok", value
        assert outcome.check(value, ctx), f"policy not met: {outcome.text}"


def _exported():
    from sklearn.base import BaseEstimator

    import skstellar
    import skstellar.io
    import skstellar.preprocessing

    classes = {n for n in skstellar.__all__ if n != "__version__"}
    classes |= set(skstellar.preprocessing.__all__)
    classes = {n for n in classes if inspect.isclass(obj := (
        getattr(skstellar, n, None) or getattr(skstellar.preprocessing, n)))
        and issubclass(obj, BaseEstimator)}
    readers = {n for n in skstellar.io.__all__ if n.startswith(("read_", "load_"))}
    return classes, readers


def test_every_export_is_in_the_sweep():
    classes, readers = _exported()
    assert classes <= set(SUBJECTS), f"add to SUBJECTS: {sorted(classes - set(SUBJECTS))}"
    covered = {k.split()[0] for k in READERS}
    assert readers <= covered, f"add to READERS: {sorted(readers - covered)}"


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", sorted(SUBJECTS))
def test_bad_input(name, case):
    kind, value = run_case(name, case)
    if kind == "n/a":
        return  # documented as n/a in docs/bad_input.md, with the reason
    _check(expected(name, case), kind, value, context(name))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("case", READER_CASES)
@pytest.mark.parametrize("name", list(READERS))
def test_reader_bad_file(name, case, tmp_path):
    kind, value = run_reader_case(name, case, tmp_path)
    if kind == "skip":
        pytest.skip(value)
    outcome = READER_EXPECTED[case]
    _check(outcome, kind, value, None)
    if kind == "raised":  # the message names the file
        assert ("no_such_file" in str(value) or "wrong" in str(value) or "truncated" in str(value)
                or "maps" in str(value)), str(value)


READER_EXPECTED = {
    "missing_file": Raises(FileNotFoundError, r"no_such_file"),
    "wrong_format": Raises(ValueError, r"wrong|maps"),
    "truncated_file": Raises(ValueError, r"truncated"),
}


# ------------------------------------------------------- shared helpers' edges


def test_text_table_check_accepts_complete_files(tmp_path):
    from skstellar._validation import check_text_table_complete

    path = tmp_path / "t.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6")  # complete, no final newline
    check_text_table_complete(path)
    path.write_text('a,b,c\n1,"x,y",3\n')  # quoted separator is one field
    check_text_table_complete(path)
    path.write_text("# comment\nMr FeH ug\n1 2 3\n4 5")
    with pytest.raises(ValueError, match="last line has 2 field.*header has 3"):
        check_text_table_complete(path, sep=None)


def test_numeric_check_names_place_and_leaves_other_objects_to_sklearn():
    from skstellar._validation import check_numeric_input

    X = np.ones((4, 3), dtype=object)
    X[2, 1] = {"not": "a number"}
    check_numeric_input(X)  # not text: scikit-learn's own TypeError follows
    X[2, 1] = "1.5"
    check_numeric_input(X)  # numeric text converts
    X[1, 2] = "n/a"
    with pytest.raises(ValueError, match=r"column 2 is not numeric: row 1 holds 'n/a'"):
        check_numeric_input(X)
    y = np.array([0.0, 1.0, np.inf])
    with pytest.raises(ValueError, match=r"y has 1 inf value\(s\) \(first at row 2\)"):
        check_numeric_input(y, what="y")
    check_numeric_input(y, what="y", allow_inf=True)


def test_reading_file_keeps_missing_files_and_names_the_file(tmp_path):
    from skstellar._validation import reading_file

    with pytest.raises(FileNotFoundError):
        with reading_file(tmp_path / "x.fits", "FITS table"):
            open(tmp_path / "x.fits")
    with pytest.raises(ValueError, match=r"Cannot read FITS table '.*x.fits': boom \(EOFError\)"):
        with reading_file(tmp_path / "x.fits", "FITS table"):
            raise EOFError("boom")


# ------------------------------------------------------------------ the doc


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def render_doc():
    """docs/bad_input.md from the tables above and the messages actually raised."""
    import tempfile
    import warnings

    lines = [
        "# Bad-input contract",
        "",
        "Generated by `PYTHONPATH=$PWD python tests/test_bad_input.py > docs/bad_input.md` from",
        "the tables of `tests/test_bad_input.py`, which checks every row (and fails when this",
        "file is out of date). Each public estimator, transformer and reader is walked through",
        "bad inputs; every outcome is a `ValueError`/`NotFittedError` (`FileNotFoundError` for",
        "an absent file) whose message names the column, row, pixel or file, or a documented",
        "policy whose behaviour the test checks. Rows are 0-based positions. Shared checks live",
        "in `skstellar/_validation.py` (`check_numeric_input`, `check_finite_columns`,",
        "`reading_file`, `check_text_table_complete`).",
        "",
        "Cases: " + ", ".join(f"`{c}`" for c in CASES) + ". `_fit` cases feed the bad input to",
        "`fit`, the others to `predict`/`transform` of an instance fitted on valid data.",
        "",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(SUBJECTS):
            lines += [f"## {name}", "", "| input | outcome | message or policy |",
                      "|---|---|---|"]
            for case in CASES:
                kind, value = run_case(name, case)
                if kind == "n/a":
                    lines.append(f"| {case} | n/a | {_cell(value)} |")
                    continue
                outcome = expected(name, case)
                if isinstance(outcome, Policy):
                    lines.append(f"| {case} | policy | {_cell(outcome.text)} |")
                else:
                    got = _excerpt(value) if kind == "raised" else f"(returned: {kind})"
                    lines.append(f"| {case} | {outcome.exc.__name__} | {_cell(got)} |")
            lines.append("")
        lines += ["## Readers", "", "| reader | input | outcome | message |", "|---|---|---|---|"]
        for name in READERS:
            for case in READER_CASES:
                with tempfile.TemporaryDirectory() as d:
                    kind, value = run_reader_case(name, case, Path(d))
                    if kind == "skip":
                        msg, out = value, "skipped"
                    elif kind == "raised":
                        msg = _excerpt(str(value).replace(d, "<tmp>"), 160)
                        out = type(value).__name__
                    else:
                        msg, out = "returned without error", "-"
                lines.append(f"| {name} | {case} | {out} | {_cell(msg)} |")
    return "\n".join(lines) + "\n"


def test_doc_is_up_to_date():
    doc, now = DOC.read_text(), render_doc()
    shared = all(READERS[n]().valid_file(Path(".")) is not None for n in READERS
                 if n.startswith(("read_lamost", "read_xp", "load_mdwarf", "load_locus")))
    if not shared:  # reader rows that truncate real files read "skipped" without the data
        doc, now = doc.split("## Readers")[0], now.split("## Readers")[0]
    assert doc == now, (
        "docs/bad_input.md is out of date: regenerate it with "
        "`PYTHONPATH=$PWD python tests/test_bad_input.py > docs/bad_input.md`"
    )


if __name__ == "__main__" and sys.argv[1:2] == ["readers"]:
    import tempfile
    import warnings

    warnings.simplefilter("ignore")
    for name in READERS:
        for case in READER_CASES:
            with tempfile.TemporaryDirectory() as d:
                kind, val = run_reader_case(name, case, Path(d))
                if kind == "raised":
                    val = f"{type(val).__name__}: {_excerpt(str(val).replace(d, '<tmp>'), 200)}"
                elif kind == "ok":
                    val = f"{type(val).__name__}"
            print(f"{name:24s} {case:16s} {kind:6s} {val}", flush=True)
    sys.exit()

if __name__ == "__main__" and sys.argv[1:2] != ["discover"]:
    sys.stdout.write(render_doc())
    sys.exit()

if __name__ == "__main__":  # discovery: print what every case does
    import warnings

    warnings.simplefilter("ignore")
    names = sys.argv[2:] or list(SUBJECTS)
    for name in names:
        try:
            context(name)
        except Exception as exc:  # noqa: BLE001
            print(f"{name}: SETUP FAILED {type(exc).__name__}: {exc}")
            continue
        for case in CASES:
            kind, val = run_case(name, case)
            if kind == "raised":
                val = f"{type(val).__name__}: {_excerpt(val)}"
            elif kind == "ok":
                try:
                    v = _values(val)
                    val = f"shape {v.shape}, finite={np.isfinite(v).all()}"
                except Exception as exc:  # noqa: BLE001
                    val = f"{type(val).__name__} ({exc})"
            print(f"{name:28s} {case:22s} {kind:6s} {val}", flush=True)
