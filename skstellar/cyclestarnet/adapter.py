"""Cycle-StarNet as a scikit-learn transformer: unsupervised synthetic <-> observed spectra.

:class:`CycleStarNet` trains the domain-adaptation network of O'Briain et
al. (2021) as used for LAMOST M dwarfs (Sect. 3 of
``mdwarf-cycle-starnet-lamost``) on two *unpaired* sets of continuum-normalised
spectra on one wavelength grid: synthetic spectra (e.g. from The Payne) and
observed survey spectra. Once fitted,

* ``transform(X_obs)`` maps observed spectra into the synthetic domain
  (``CSN_obs->synth``, the target of the paper's first label fit, Sect. 3.5),
* ``inverse_transform(X_synth, split=...)`` maps synthetic spectra into the
  observed domain (``CSN_synth->obs``, the forward model of the final fit),
* ``to_synthetic_torch`` / ``to_observed_torch`` are the same mappings on
  torch tensors, differentiable with respect to their input, for
  :class:`skstellar.cyclestarnet.fitting.SpectralLabelFitter`.

The torch modules live in :mod:`skstellar.cyclestarnet.networks`.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .._validation import check_numeric_input
from ..nn.threads import torch_threads as _threads
from ..nn.training import SEED_MODULUS, Progress, seed_from
from ..parameters import LAYER_SIZES, Interval, Options, SequenceOf, validate_parameters
from ..preprocessing.spectra_input import forget_input_features
from ..spectrum import SpectrumBatch
from .networks import CycleStarNetGenerator, PairDiscriminator, closing_length

__all__ = ["CycleStarNet", "SPLIT_POLICIES"]

#: What :meth:`CycleStarNet.inverse_transform` uses when no split latent is given.
SPLIT_POLICIES = ("mean", "zeros", "sample")

#: Version tag written into (and required from) checkpoint files.
_CHECKPOINT_FORMAT = "skstellar.CycleStarNet/1"

#: Split latents of at most this many training spectra are kept for split_latent="sample".
_SPLIT_BANK_SIZE = 1024

#: Loss terms recorded in ``history_`` (block means), in order.
_HISTORY_KEYS = ("loss", "rec_synth", "cyc_synth", "rec_obs", "cyc_obs", "adv_synth",
                 "adv_obs", "disc_synth", "disc_obs")


# ------------------------------------------------------------- Input handling
def _grid_text(w):
    w = np.asarray(w, dtype=np.float64)
    return f"{w[0]:.6g}-{w[-1]:.6g} A, {w.size} pixels"


def _common_grid(batch: SpectrumBatch, what: str):
    """The one wavelength grid of a batch (1-D), or ValueError if rows differ."""
    w = batch.wavelength
    if w.ndim == 1:
        return w
    ref = w[0]
    if not np.all(np.isfinite(ref)):
        raise ValueError(
            f"{what}: spectrum 0 has non-finite (padded) wavelengths; CycleStarNet needs all "
            "spectra on one common grid. Resample them with "
            "skstellar.preprocessing.SpectrumResampler first."
        )
    step = np.median(np.abs(np.diff(ref))) if ref.size > 1 else 1.0
    with np.errstate(invalid="ignore"):
        same = np.abs(w - ref) <= 1e-3 * step
    bad_rows = np.flatnonzero(~same.all(axis=1))
    if bad_rows.size:
        raise ValueError(
            f"{what}: spectrum {int(bad_rows[0])} has a different wavelength grid from "
            f"spectrum 0 ({bad_rows.size} such row(s)); CycleStarNet needs one common grid. "
            "Resample with skstellar.preprocessing.SpectrumResampler first."
        )
    return ref


def _same_grid(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    step = np.median(np.abs(np.diff(a))) if a.size > 1 else 1.0
    return bool(np.all(np.abs(a - b) <= 1e-3 * step))


def _read_spectra(X, err, what):
    """Flux (float64), errors (float64 or None), good-pixel mask and grid of an input.

    ``X`` is a :class:`SpectrumBatch` (its ``ivar``/``mask`` give the errors
    and bad pixels) or a 2-D array-like of flux with optional ``err``.
    """
    if isinstance(X, SpectrumBatch):
        if err is not None:
            raise ValueError(
                f"{what} is a SpectrumBatch, which carries its own ivar: do not pass errors "
                "separately."
            )
        e = None if X.ivar is None else X.error()
        return np.asarray(X.flux, dtype=np.float64), e, ~X.bad_pixels(), _common_grid(X, what)
    check_numeric_input(X, what=what, allow_nan=True, allow_inf=True)
    flux = check_array(X, dtype=np.float64, ensure_all_finite=False, input_name=what)
    e = None
    good = np.isfinite(flux)
    if err is not None:
        e = np.asarray(err, dtype=np.float64)
        if e.ndim == 1 and e.shape[0] == flux.shape[1]:
            e = np.broadcast_to(e, flux.shape)
        if e.shape != flux.shape:
            raise ValueError(
                f"The errors of {what} have shape {np.shape(err)} but the flux has "
                f"{flux.shape}; give one error per pixel."
            )
        with np.errstate(invalid="ignore"):
            good = good & np.isfinite(e) & (e > 0)
    return flux, e, good, None


def _noise_der_snr(flux, good):
    """Robust per-spectrum noise from second differences (DER_SNR, Stoehr et al. 2008).

    ``sigma = 1.482602 / sqrt(6) * median |2 f_i - f_(i-2) - f_(i+2)|`` over
    pixels whose three fluxes are good; exact for white noise on a flux that
    is locally linear over 4 pixels, an overestimate where lines are
    narrower. NaN for spectra without such a triple.
    """
    f = np.where(good, flux, np.nan)
    d = np.abs(2.0 * f[:, 2:-2] - f[:, :-4] - f[:, 4:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        return 1.482602 / np.sqrt(6.0) * np.nanmedian(d, axis=1)


def _check_not_all_masked(good, what):
    empty = np.flatnonzero(~good.any(axis=1))
    if empty.size:
        shown = ", ".join(str(int(i)) for i in empty[:10])
        more = f" (and {empty.size - 10} more)" if empty.size > 10 else ""
        raise ValueError(
            f"{what}: spectrum/spectra at row(s) {shown}{more} have no usable pixel (all "
            "masked, NaN flux or zero/NaN errors). Remove them before fitting; nothing is "
            "dropped silently."
        )


class _EpochSampler:
    """Mini-batch indices: successive slices of seeded random permutations.

    Its state is saved and restored like a torch module's (``state_dict`` /
    ``load_state_dict``), so checkpoints treat both alike.
    """

    def __init__(self, n, rng):
        self.n = int(n)
        self.perm = rng.permutation(self.n)
        self.pos = 0

    def draw(self, size, rng):
        parts, need = [], int(size)
        while need > 0:
            if self.pos >= self.n:
                self.perm = rng.permutation(self.n)
                self.pos = 0
            take = self.perm[self.pos:self.pos + need]
            parts.append(take)
            self.pos += take.size
            need -= take.size
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def state_dict(self):
        return {"perm": torch.as_tensor(self.perm, dtype=torch.int64), "pos": int(self.pos)}

    def load_state_dict(self, state):
        perm = state["perm"].numpy().astype(np.int64)
        if perm.size != self.n:
            raise ValueError(
                f"The checkpoint was written for a training set of {perm.size} spectra, this "
                f"one has {self.n}; resume with the same training data."
            )
        self.perm, self.pos = perm, int(state["pos"])


def _block_means(acc, acc_n):
    """Means of the loss terms summed over the ``acc_n`` iterations of a history block."""
    return {k: acc[k] / acc_n for k in _HISTORY_KEYS}


def _wmse(pred, target, winv):
    """Mean of ``((pred - target) * mask / err)**2`` over pixels (``winv = mask / err``)."""
    return ((pred - target) * winv).square().mean()


# -------------------------------------------------------------- The estimator
class CycleStarNet(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Unsupervised domain adapter between synthetic and observed spectra (Cycle-StarNet).

    Trains the network of O'Briain et al. (2021) as described in Sect. 3 of
    the LAMOST M-dwarf paper: two domain-specific encoder/decoder pairs, a
    shared high-level pair whose latent is common to both domains, an
    observed-only split latent for the "synthetic gap", and one
    discriminator per domain judging (spectrum, latent) pairs (Sect. 3.1).
    Each iteration draws ``batch_size`` synthetic and ``batch_size``
    observed spectra (independently; the sets are unpaired) and takes one
    generator step on (Eq. 7)

    ``L = lambda_synth (L_rec,synth + L_cr,synth) + lambda_obs (L_rec,obs + L_cr,obs)
    + lambda_adv (L_adv,synth + L_adv,obs)``

    then one discriminator step (Sect. 3.2), with Adam and a step-wise
    learning-rate decay. The distances ``d`` are
    ``mean(((pred - target) * mask / err)**2)`` over pixels (the paper's
    uncertainty-weighted MSE); the cycles are obs -> synth -> obs with the
    spectrum's own split latent and synth -> obs -> synth with the split
    latents of the observed batch. The adversarial terms are binary
    cross-entropies on logits (Eq. 5): "real" pairs are within-domain
    reconstructions with their latents, "fake" pairs cross-domain transfers
    with theirs; the discriminators learn to tell them apart, the generator
    minimises the label-flipped cross-entropy (the usual non-saturating form
    of the min-max game).

    Parameters
    ----------
    synthetic : SpectrumBatch or array-like of shape (n_synth, n_pixels), optional
        Synthetic training spectra, used when ``fit`` gets no ``synthetic``
        keyword (see Notes, "Data flow and Pipelines").
    domain_channels : tuple of int, default=(16, 32)
        Output channels of the domain-encoder convolutions.
    shared_channels : tuple of int, default=(64, 128, 128)
        Output channels of the shared-encoder convolutions.
    kernel_size : int, default=7
        Kernel of every (transposed) convolution [pixels].
    strides : tuple of int, default=(4, 4, 2, 2, 2)
        One stride per convolution, domain layers then shared layers; their
        product is the compression of the latent length.
    latent_channels : int, default=25
        Channels of the shared latent (the reference's 25).
    split_channels : int, default=4
        Channels of the observed split latent (0: no split latent).
    split_width : int, default=32
        Hidden channels of the split encoder/decoder.
    disc_channels : tuple of int, optional
        Channels of the discriminators' spectrum branch, one per stride;
        default ``domain_channels + shared_channels``.
    tied_init : bool, default=True
        Initialise the observed encoder and decoder as copies of the
        synthetic ones (the decoder's split-feature weights at zero), so that
        training starts from ``obs -> synth`` = the synthetic autoencoder and
        only has to learn the gap; this converges much faster on short CPU
        runs. False gives independent initialisations (the reference code).
    lambda_synth, lambda_obs, lambda_adv : float, default=3.0, 9.0, 1.0
        The weights lambda_1, lambda_2, lambda_3 of Eq. 7 (reference values).
    lr : float, default=1e-4
        Adam learning rate of generator and discriminators.
    betas : (float, float), default=(0.5, 0.999)
        Adam betas.
    batch_size : int, default=8
        Spectra per domain per iteration (8 synthetic + 8 observed).
    n_iter : int, default=20000
        Total generator steps (each followed by one discriminator step),
        counted across resumed runs. The paper trained 5e5 on a GPU.
    lr_decay_every : int or None, default=5000
        Multiply the learning rate by ``lr_gamma`` every this many
        iterations (None: constant).
    lr_gamma : float, default=0.7
    error_floor : float, default=0.005
        Smallest observed flux error [normalised flux units].
    synthetic_error : float, default=0.01
        Error of synthetic spectra given without errors [normalised flux].
    fill_value : float, default=1.0
        Flux put into bad pixels before they enter the networks.
    split_latent : {"mean", "zeros", "sample"}, default="mean"
        Split latent used by ``inverse_transform`` / ``to_observed_torch``
        when none is given: the mean split latent of the observed training
        set ("the typical observed spectrum"), zeros, or the split latent of
        a random observed training spectrum (from a bank of up to 1024,
        drawn reproducibly: the same call gives the same draws).
    checkpoint_path : str or path-like, optional
        File to write training checkpoints to (a ``torch.save`` dict with
        the modules, optimisers, iteration, sampler and RNG states and the
        history). ``fit(..., resume=True)`` continues from it. Parallel fits
        (e.g. in ``GridSearchCV``) must not share one path.
    checkpoint_every : int, default=1000
        Write a checkpoint every this many iterations (and at the end).
    log_every : int, default=50
        Iterations averaged into one ``history_`` record (and one progress
        update when ``verbose``).
    n_threads : int or None, default=1
        torch intra-op threads while training and mapping (restored
        afterwards); None keeps torch's setting. The batches of 8 + 8
        spectra are small: on the project's 2-core machine shared with other
        jobs, one thread trained the default network at ~230 ms/iteration
        and two threads at ~2900 ms/iteration (OpenMP threads waiting for
        each other). Raise it on an idle many-core machine.
    random_state : int, RandomState or None, default=None
        Seeds the weights, the mini-batches and the "sample" split policy; a
        fixed int gives identical fits on the same machine and thread count.
    device : str, default="cpu"
        torch device of the networks.
    verbose : int, default=0
        1 shows a progress bar with the current losses.

    Attributes
    ----------
    generator_ : CycleStarNetGenerator
        The trained encoders/decoders (eval mode, parameters frozen).
    discriminator_synth_, discriminator_obs_ : PairDiscriminator
    history_ : list of dict
        One record per ``log_every`` iterations (the last block may be
        shorter): ``iteration`` (last iteration of the block), ``lr`` and
        the block means of ``loss``
        (Eq. 7), ``rec_synth``, ``cyc_synth``, ``rec_obs``, ``cyc_obs``
        (weighted MSEs, dimensionless: squared residuals in units of the
        errors), ``adv_synth``, ``adv_obs`` (generator adversarial terms)
        and ``disc_synth``, ``disc_obs`` (discriminator losses).
    n_iter_ : int
        Iterations trained in total.
    n_features_in_ : int
        Pixel count of the spectra.
    wavelength_ : ndarray of shape (n_features_in_,) or None
        The fitted wavelength grid [Angstrom] if a SpectrumBatch gave one.
    padded_length_ : int
        Pixel count the networks work on.
    padding_ : (int, int)
        Edge pixels added before and after the spectrum.
    latent_shape_, split_shape_ : (int, int)
        (channels, length) of the shared and split latents.
    split_mean_ : ndarray of shape split_shape_
        Mean split latent of the observed training spectra.
    split_bank_ : ndarray of shape (n_bank, *split_shape_)
        Split latents of up to 1024 random observed training spectra.
    flux_offset_, flux_scale_ : float
        The affine flux scaling in front of the networks (see Notes).
    sample_seed_ : int
        Seed of the ``split_latent="sample"`` draws.
    training_time_ : float
        Wall-clock seconds of the last ``fit`` call's training loop.

    Notes
    -----
    *Data flow and Pipelines.*
    ``fit(X, y=None, *, synthetic=...)``: ``X`` is the **observed** training
    set (what ``transform`` later maps), ``y`` is ignored, and the synthetic
    training set comes from the ``synthetic`` keyword of ``fit`` or, if that
    is not given, from the ``synthetic`` constructor parameter. So in
    ``Pipeline([("adapt", CycleStarNet(synthetic=S)), ("reg", Ridge())])``
    ``pipe.fit(X_obs, labels)`` trains the adapter on ``X_obs`` and ``S``
    and the regressor on the adapted spectra; ``pipe.fit(X_obs, labels,
    adapt__synthetic=S)`` does the same without storing ``S`` in the
    estimator's parameters (``clone`` deep-copies parameters and
    ``joblib.dump`` pickles them, so the keyword is lighter for big sets).

    *Inputs, masks and errors.*
    Spectra are a :class:`~skstellar.spectrum.SpectrumBatch` (flux, ``ivar``,
    ``mask``, wavelength; preferred) or 2-D flux arrays with per-pixel
    1-sigma errors given to ``fit`` as ``obs_err`` / ``synth_err``. All
    spectra must be continuum-normalised and share one wavelength grid (any
    pixel count; see ``n_features_in_`` and ``wavelength_``).

    * Bad pixels (``mask=True``, non-finite flux, non-finite or
      non-positive error / ``ivar <= 0``, padded tails) get zero weight in
      every loss and are filled with ``fill_value`` (1.0: the normalised
      continuum) before entering the networks.
    * Observed errors below ``error_floor`` are raised to it. Observed
      spectra without errors get a constant error per spectrum estimated
      from their second differences (DER_SNR), floored the same way.
      Synthetic spectra without errors get ``synthetic_error`` (the paper's
      0.01, Sect. 2.4).
    * A spectrum with no usable pixel at all raises ``ValueError`` at ``fit``
      (naming its row and domain); at ``transform``/``inverse_transform`` its
      output row is NaN and a ``UserWarning`` names it.
    * A pixel count (or, for a ``SpectrumBatch``, a wavelength grid)
      different from the fitted one raises ``ValueError`` naming both:
      resample with :class:`~skstellar.preprocessing.SpectrumResampler`.
    * The networks see the flux through one affine map shared by both
      domains, ``(flux - flux_offset_) / flux_scale_`` (median and standard
      deviation of the good training pixels), and their outputs are mapped
      back; the losses stay in units of the flux errors.
    * Spectra are padded (edge values, zero weight) at both ends up to the
      next length on which the unpadded convolutions close
      (:func:`~skstellar.cyclestarnet.networks.closing_length`) and cropped
      back on output.

    *Architecture defaults.*
    The reference APOGEE configuration (7167 pixels) uses domain channels
    (32, 64), shared channels (128, 256, 512), kernel 7, strides
    (4, 4, 4, 2, 2) and a 25 x 24 shared latent. For ~2900-pixel LAMOST
    spectra (1 A sampling at R ~ 1800, Sect. 2.4) on a CPU the defaults keep
    kernel 7 and the 25 latent channels but halve the widths, (16, 32) and
    (64, 128, 128), and use strides (4, 4, 2, 2, 2): 2901 pixels are padded
    to 3007 and the shared latent is 25 x 19 (a coarser 256-fold
    compression would leave only 8 positions). The generator has 0.44 M
    parameters and each discriminator 0.23 M (with the reference widths:
    2.6 M and 1.8 M). Measured on the project's shared 2-core CPU (one
    thread, batches of 8 + 8, 2901 pixels): ~200 ms per iteration (about
    3.3 min per 1000 iterations) with the defaults, ~610 ms with the
    reference widths; ``transform`` maps ~780 spectra/s.

    Examples
    --------
    >>> csn = CycleStarNet(n_iter=50000, random_state=0)                  # doctest: +SKIP
    >>> csn.fit(obs_batch, synthetic=payne_batch)                        # doctest: +SKIP
    >>> flux_in_synthetic_domain = csn.transform(obs_batch)              # doctest: +SKIP
    >>> model_in_observed_domain = csn.inverse_transform(
    ...     payne_flux, split=csn.encode_split(obs_batch))                # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        synthetic=None,
        domain_channels=(16, 32),
        shared_channels=(64, 128, 128),
        kernel_size=7,
        strides=(4, 4, 2, 2, 2),
        latent_channels=25,
        split_channels=4,
        split_width=32,
        disc_channels=None,
        tied_init=True,
        lambda_synth=3.0,
        lambda_obs=9.0,
        lambda_adv=1.0,
        lr=1e-4,
        betas=(0.5, 0.999),
        batch_size=8,
        n_iter=20000,
        lr_decay_every=5000,
        lr_gamma=0.7,
        error_floor=0.005,
        synthetic_error=0.01,
        fill_value=1.0,
        split_latent="mean",
        checkpoint_path=None,
        checkpoint_every=1000,
        log_every=50,
        n_threads=1,
        random_state=None,
        device="cpu",
        verbose=0,
    ):
        self.synthetic = synthetic
        self.domain_channels = domain_channels
        self.shared_channels = shared_channels
        self.kernel_size = kernel_size
        self.strides = strides
        self.latent_channels = latent_channels
        self.split_channels = split_channels
        self.split_width = split_width
        self.disc_channels = disc_channels
        self.tied_init = tied_init
        self.lambda_synth = lambda_synth
        self.lambda_obs = lambda_obs
        self.lambda_adv = lambda_adv
        self.lr = lr
        self.betas = betas
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.lr_decay_every = lr_decay_every
        self.lr_gamma = lr_gamma
        self.error_floor = error_floor
        self.synthetic_error = synthetic_error
        self.fill_value = fill_value
        self.split_latent = split_latent
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.log_every = log_every
        self.n_threads = n_threads
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------ checks
    #: Allowed hyperparameter values (checked at ``fit``).
    _parameter_constraints = {
        "synthetic": ["no_validation"],  # training data, checked by fit
        "domain_channels": [LAYER_SIZES],
        "shared_channels": [LAYER_SIZES],
        "kernel_size": [Interval("int", 1, None)],
        "strides": [LAYER_SIZES],
        "latent_channels": [Interval("int", 1, None)],
        "split_channels": [Interval("int", 0, None)],
        "split_width": [Interval("int", 1, None)],
        "disc_channels": [None, LAYER_SIZES],
        "tied_init": ["boolean"],
        "lambda_synth": [Interval("real", 0, None)],
        "lambda_obs": [Interval("real", 0, None)],
        "lambda_adv": [Interval("real", 0, None)],
        "lr": [Interval("real", 0, None, closed="neither")],
        "betas": [SequenceOf(Interval("real", 0, 1, closed="left"), length=2)],
        "batch_size": [Interval("int", 1, None)],
        "n_iter": [Interval("int", 1, None)],
        "lr_decay_every": [None, Interval("int", 1, None)],
        "lr_gamma": [Interval("real", 0, 1, closed="right")],
        "error_floor": [Interval("real", 0, None)],
        "synthetic_error": [Interval("real", 0, None, closed="neither")],
        "fill_value": [Interval("real")],
        "split_latent": [Options(SPLIT_POLICIES)],
        "checkpoint_path": [None, str, os.PathLike],
        "checkpoint_every": [Interval("int", 1, None)],
        "log_every": [Interval("int", 1, None)],
        "n_threads": [None, Interval("int", 1, None)],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "verbose": [Interval("int", 0, None), "boolean"],
    }

    def _arch(self):
        """Architecture settings (what a checkpoint must match)."""
        domain = [int(c) for c in self.domain_channels]
        shared = [int(c) for c in self.shared_channels]
        disc = (domain + shared if self.disc_channels is None
                else [int(c) for c in self.disc_channels])
        return {
            "domain_channels": domain, "shared_channels": shared,
            "kernel_size": int(self.kernel_size), "strides": [int(s) for s in self.strides],
            "latent_channels": int(self.latent_channels),
            "split_channels": int(self.split_channels), "split_width": int(self.split_width),
            "disc_channels": disc,
        }

    def _build(self, arch):
        gen = CycleStarNetGenerator(
            arch["domain_channels"], arch["shared_channels"], arch["kernel_size"],
            arch["strides"], arch["latent_channels"], arch["split_channels"], arch["split_width"],
        )
        # one per domain; the observed one also judges the split latent
        disc_s, disc_o = (PairDiscriminator(arch["disc_channels"], arch["kernel_size"],
                                            arch["strides"], arch["latent_channels"] + extra)
                          for extra in (0, arch["split_channels"]))
        if self.tied_init:
            gen.tie_domains_()
        return gen.to(self.device), disc_s.to(self.device), disc_o.to(self.device)

    # ------------------------------------------------------------ inputs
    def _training_set(self, X, err, what, observed):
        flux, e, good, grid = _read_spectra(X, err, what)
        flux = flux.astype(np.float32)  # halves the memory of large training sets
        e = None if e is None else np.asarray(e, dtype=np.float32)
        if flux.shape[0] < 1:
            raise ValueError(f"{what} has no spectra.")
        _check_not_all_masked(good, what)
        if observed:
            if e is None:
                noise = _noise_der_snr(flux, good)
                finite = np.isfinite(noise)
                fallback = np.median(noise[finite]) if finite.any() else float(self.error_floor)
                noise = np.where(np.isfinite(noise), noise, fallback)
                e = np.broadcast_to(noise[:, None].astype(np.float32), flux.shape)
            e = np.maximum(e, np.float32(self.error_floor))
        elif e is None:
            e = np.full(flux.shape, self.synthetic_error, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            winv = np.where(good & (e > 0), 1.0 / e, np.float32(0.0))
        if not np.any(winv > 0):
            raise ValueError(
                f"{what} has no pixel with a positive finite error; set error_floor > 0 or "
                "give errors."
            )
        return np.where(good, flux, np.float32(self.fill_value)), winv.astype(np.float32), grid

    def _check_grid(self, n_pixels, grid, what):
        if n_pixels != self.n_features_in_:
            fitted = (f"the fitted grid ({_grid_text(self.wavelength_)})"
                      if self.wavelength_ is not None else f"{self.n_features_in_} pixels")
            raise ValueError(
                f"{what} has {n_pixels} pixels but this CycleStarNet was fitted on {fitted}. "
                "Resample the spectra onto the fitted grid first "
                "(skstellar.preprocessing.SpectrumResampler)."
            )
        known = grid is not None and self.wavelength_ is not None
        if known and not _same_grid(grid, self.wavelength_):
            raise ValueError(
                f"{what} is on the wavelength grid {_grid_text(grid)}, which differs from the "
                f"fitted grid {_grid_text(self.wavelength_)}. Resample the spectra onto the "
                "fitted grid first (skstellar.preprocessing.SpectrumResampler)."
            )

    def _map_input(self, X, what, set_names=False):
        """Filled float32 flux, good mask and grid of spectra given to a mapping."""
        check_is_fitted(self, "generator_")
        flux, _, good, grid = _read_spectra(X, None, what)
        self._check_grid(flux.shape[1], grid, what)
        if set_names and not isinstance(X, SpectrumBatch):
            # feature-name consistency checks of scikit-learn
            validate_data(self, X, reset=False, ensure_all_finite=False, dtype=np.float64)
        return np.where(good, flux, float(self.fill_value)).astype(np.float32), good

    # --------------------------------------------------------------- fit
    def fit(self, X, y=None, *, synthetic=None, obs_err=None, synth_err=None, resume=False):
        """Train the adapter on observed spectra ``X`` and a synthetic set.

        Parameters
        ----------
        X : SpectrumBatch or array-like of shape (n_obs, n_pixels)
            Observed training spectra (continuum-normalised flux).
        y : ignored
            Accepted so that the adapter can sit in a ``Pipeline`` in front
            of a regressor.
        synthetic : SpectrumBatch or array-like of shape (n_synth, n_pixels), optional
            Synthetic training spectra; default the ``synthetic`` parameter.
        obs_err : array-like of shape (n_obs, n_pixels) or (n_pixels,), optional
            1-sigma flux errors of array ``X`` [normalised flux units].
        synth_err : array-like of shape (n_synth, n_pixels) or (n_pixels,), optional
            1-sigma errors of an array synthetic set (default
            ``synthetic_error``).
        resume : bool, default=False
            Continue from ``checkpoint_path`` if that file exists, up to
            ``n_iter`` iterations in total; without the file, start afresh.
            The architecture, pixel count, flux scaling and training-set
            sizes must match the checkpoint (``ValueError`` naming the
            difference); other settings (lambdas, learning-rate schedule,
            ``n_iter``) may change. With the same data and settings the
            resumed fit equals an uninterrupted one (same machine and
            thread count).

        Returns
        -------
        self
        """
        validate_parameters(self)
        synth = synthetic if synthetic is not None else self.synthetic
        if synth is None:
            raise ValueError(
                "CycleStarNet needs a synthetic training set: pass fit(X_obs, synthetic=...) "
                "(in a Pipeline: pipe.fit(X, y, adapt__synthetic=...)) or set the synthetic "
                "parameter."
            )
        if resume and self.checkpoint_path is None:
            raise ValueError("resume=True needs checkpoint_path (the file to resume from).")
        xo, wo, grid_o = self._training_set(X, obs_err, "observed spectra (X)", True)
        xs, ws, grid_s = self._training_set(synth, synth_err, "synthetic spectra", False)
        P = xo.shape[1]
        if xs.shape[1] != P:
            raise ValueError(
                f"The synthetic spectra have {xs.shape[1]} pixels and the observed spectra {P}; "
                "both domains must be on one wavelength grid (resample them with "
                "skstellar.preprocessing.SpectrumResampler)."
            )
        if grid_o is not None and grid_s is not None and not _same_grid(grid_o, grid_s):
            raise ValueError(
                f"The synthetic grid ({_grid_text(grid_s)}) differs from the observed grid "
                f"({_grid_text(grid_o)}); resample one onto the other first."
            )
        if isinstance(X, SpectrumBatch):
            forget_input_features(self)
            self.n_features_in_ = P
        else:
            validate_data(self, X, reset=True, ensure_all_finite=False, dtype=np.float64)
        self.wavelength_ = grid_o if grid_o is not None else grid_s

        arch = self._arch()
        L, m = closing_length(P, arch["kernel_size"], arch["strides"])
        if L - P > P:
            warnings.warn(
                f"Spectra of {P} pixels are padded to {L} for this architecture (more padding "
                "than data); use smaller strides or fewer layers.", UserWarning, stacklevel=2,
            )
        left = (L - P) // 2
        self.padded_length_, self.padding_ = L, (left, L - P - left)
        self.latent_shape_ = (arch["latent_channels"], m)
        self.split_shape_ = (arch["split_channels"], m)
        # one affine flux scaling for both domains: the networks see ~unit-variance input
        # (statistics of up to 2048 evenly spaced spectra per domain)
        rows_s = np.linspace(0, len(xs) - 1, min(len(xs), 2048)).astype(int)
        rows_o = np.linspace(0, len(xo) - 1, min(len(xo), 2048)).astype(int)
        pooled = np.concatenate([xs[rows_s][ws[rows_s] > 0],
                                 xo[rows_o][wo[rows_o] > 0]]).astype(np.float64)
        self.flux_offset_ = float(np.median(pooled))
        scale = float(np.std(pooled))
        self.flux_scale_ = scale if np.isfinite(scale) and scale > 0 else 1.0
        off32, scale32 = np.float32(self.flux_offset_), np.float32(self.flux_scale_)
        xs, xo = (xs - off32) / scale32, (xo - off32) / scale32
        ws, wo = ws * scale32, wo * scale32  # keeps the losses in flux-error units
        config = {**arch, "n_pixels": P, "padded_length": L, "flux_offset": self.flux_offset_,
                  "flux_scale": self.flux_scale_}

        rng0 = np.random.default_rng(seed_from(self.random_state))
        init_seed, data_seed, bank_seed, self.sample_seed_ = (
            int(s) for s in rng0.integers(0, SEED_MODULUS, 4))
        with torch.random.fork_rng(devices=[]), _threads(self.n_threads):
            torch.manual_seed(init_seed)
            gen, disc_s, disc_o = self._build(arch)
            self._train(gen, disc_s, disc_o, xs, ws, xo, wo, config, data_seed, resume)
            for module in (gen, disc_s, disc_o):  # frozen; drop the last step's gradients
                module.zero_grad(set_to_none=True)
                module.eval().requires_grad_(False)
            self.generator_ = gen
            self.discriminator_synth_, self.discriminator_obs_ = disc_s, disc_o
            self._split_statistics(xo, bank_seed)
        return self

    def _split_statistics(self, xo, bank_seed):
        if self.split_shape_[0] == 0:
            self.split_mean_ = np.zeros(self.split_shape_, np.float32)
            self.split_bank_ = np.zeros((1, *self.split_shape_), np.float32)
            return
        z = self._run(self.generator_.encode_split, xo, spectra_out=False, normalised=True)
        self.split_mean_ = z.mean(axis=0).astype(np.float32)
        rng = np.random.default_rng(bank_seed)
        keep = rng.choice(len(z), size=min(len(z), _SPLIT_BANK_SIZE), replace=False)
        self.split_bank_ = z[np.sort(keep)].astype(np.float32)

    # ------------------------------------------------------------- training
    def _pad(self, x):
        left, right = self.padding_
        if left == 0 and right == 0:
            return x
        return F.pad(x.unsqueeze(1), (left, right), mode="replicate").squeeze(1)

    def _crop(self, x):
        left = self.padding_[0]
        return x[:, left:left + self.n_features_in_]

    def _lr_at(self, it):
        if self.lr_decay_every is None:
            return float(self.lr)
        return float(self.lr) * float(self.lr_gamma) ** (it // int(self.lr_decay_every))

    def _train(self, gen, disc_s, disc_o, xs, ws, xo, wo, config, data_seed, resume):
        dev = self.device
        betas = tuple(float(b) for b in self.betas)
        d_params = list(disc_s.parameters()) + list(disc_o.parameters())
        opt_g = torch.optim.Adam(gen.parameters(), lr=float(self.lr), betas=betas)
        opt_d = torch.optim.Adam(d_params, lr=float(self.lr), betas=betas)
        rng = np.random.default_rng(data_seed)
        samp_s, samp_o = _EpochSampler(len(xs), rng), _EpochSampler(len(xo), rng)
        # what a checkpoint holds the state of, by its key in the file
        stateful = {"generator": gen, "disc_synth": disc_s, "disc_obs": disc_o, "opt_g": opt_g,
                    "opt_d": opt_d, "sampler_synth": samp_s, "sampler_obs": samp_o}
        start, history = 0, []
        acc, acc_n = dict.fromkeys(_HISTORY_KEYS, 0.0), 0
        path = None if self.checkpoint_path is None else Path(self.checkpoint_path)
        if resume and path is not None and path.exists():
            # CPU first: RNG states must be CPU tensors; load_state_dict moves the rest
            ck = torch.load(path, map_location="cpu", weights_only=True)
            if ck.get("format") != _CHECKPOINT_FORMAT:
                raise ValueError(f"{path} is not a CycleStarNet checkpoint ({_CHECKPOINT_FORMAT}).")
            diff = sorted(k for k in config if ck["config"].get(k) != config[k])
            if diff:
                raise ValueError(
                    f"Checkpoint {path} does not match this estimator/data in "
                    + ", ".join(f"{k} ({ck['config'].get(k)} vs {config[k]})" for k in diff)
                    + "; use the same architecture and pixel grid, or resume=False."
                )
            for key, obj in stateful.items():
                obj.load_state_dict(ck[key])
            rng.bit_generator.state = ck["rng"]
            torch.set_rng_state(ck["torch_rng"])
            start, history = int(ck["iteration"]), list(ck["history"])
            acc, acc_n = dict(ck["acc"]), int(ck["acc_n"])

        lam_s, lam_o = float(self.lambda_synth), float(self.lambda_obs)
        lam_a = float(self.lambda_adv)
        b, n_iter = int(self.batch_size), int(self.n_iter)
        log_every, ck_every = int(self.log_every), int(self.checkpoint_every)
        bar = Progress(n_iter, self.verbose and start < n_iter, "CycleStarNet", unit="it",
                       initial=start)
        gen.train(), disc_s.train(), disc_o.train()
        t0 = time.perf_counter()

        def save(it):
            state = {
                "format": _CHECKPOINT_FORMAT, "config": config, "iteration": it,
                **{key: obj.state_dict() for key, obj in stateful.items()},
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "history": history, "acc": acc, "acc_n": acc_n,
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            torch.save(state, tmp)
            os.replace(tmp, path)

        try:
            for it in range(start, n_iter):
                lr = self._lr_at(it)
                for opt in (opt_g, opt_d):
                    for group in opt.param_groups:
                        group["lr"] = lr
                i_s, i_o = samp_s.draw(b, rng), samp_o.draw(b, rng)
                ts, tws = (torch.from_numpy(a[i_s]).to(dev) for a in (xs, ws))
                to, two = (torch.from_numpy(a[i_o]).to(dev) for a in (xo, wo))
                terms = self._step(gen, disc_s, disc_o, opt_g, opt_d, d_params, ts, tws, to, two,
                                   lam_s, lam_o, lam_a)
                for k in _HISTORY_KEYS:
                    acc[k] += terms[k]
                acc_n += 1
                done, postfix = it + 1, {}
                if acc_n == log_every:
                    record = {"iteration": done, "lr": lr, **_block_means(acc, acc_n)}
                    history.append(record)
                    acc, acc_n = dict.fromkeys(_HISTORY_KEYS, 0.0), 0
                    postfix = {"loss": f"{record['loss']:.4g}",
                               "rec_obs": f"{record['rec_obs']:.3g}",
                               "rec_synth": f"{record['rec_synth']:.3g}"}
                bar(1, **postfix)
                if path is not None and (done % ck_every == 0 or done == n_iter):
                    save(done)
        finally:
            bar.close()
        self.training_time_ = time.perf_counter() - t0
        self.n_iter_ = max(start, n_iter)
        if acc_n:  # a last, shorter block (checkpoints keep it open for resuming)
            record = {"iteration": self.n_iter_, "lr": self._lr_at(self.n_iter_ - 1),
                      **_block_means(acc, acc_n)}
            history = history + [record]
        self.history_ = history

    def _step(self, gen, disc_s, disc_o, opt_g, opt_d, d_params, xs, ws, xo, wo,
              lam_s, lam_o, lam_a):
        """One generator step then one discriminator step; returns the loss terms."""
        pad, crop = self._pad, self._crop

        def for_disc(x):  # the discriminators see real pixels only (padding re-done)
            return pad(crop(x))

        out = gen.cycle(pad(xs), pad(xo))
        z_sp = out["z_sp"]
        zo_full = out["z_o"] if z_sp is None else torch.cat([out["z_o"], z_sp], dim=1)
        zs_full = out["z_s"] if z_sp is None else torch.cat([out["z_s"], z_sp], dim=1)
        # (real; fake) pairs stacked along the batch: reconstructions, then transfers
        pair_s = (torch.cat([for_disc(out["ss"]), for_disc(out["os"])]),
                  torch.cat([out["z_s"], out["z_o"]]))
        pair_o = (torch.cat([for_disc(out["oo"]), for_disc(out["so"])]),
                  torch.cat([zo_full, zs_full]))
        n = xs.shape[0]
        label = torch.cat([torch.ones(n, device=xs.device), torch.zeros(n, device=xs.device)])

        def bce(logits, lab):
            return 2.0 * F.binary_cross_entropy_with_logits(
                logits, lab[:, None].expand_as(logits))  # = H(real) + H(fake), Eq. 5

        rec_s, cyc_s = (_wmse(crop(out[k]), xs, ws) for k in ("ss", "sos"))
        rec_o, cyc_o = (_wmse(crop(out[k]), xo, wo) for k in ("oo", "oso"))
        for p in d_params:
            p.requires_grad_(False)
        adv_s = bce(disc_s(*pair_s), 1.0 - label)  # generator: label-flipped
        adv_o = bce(disc_o(*pair_o), 1.0 - label)
        loss = lam_s * (rec_s + cyc_s) + lam_o * (rec_o + cyc_o) + lam_a * (adv_s + adv_o)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        for p in d_params:
            p.requires_grad_(True)
        disc_s_loss = bce(disc_s(pair_s[0].detach(), pair_s[1].detach()), label)
        disc_o_loss = bce(disc_o(pair_o[0].detach(), pair_o[1].detach()), label)
        opt_d.zero_grad(set_to_none=True)
        (disc_s_loss + disc_o_loss).backward()
        opt_d.step()
        vals = torch.stack([loss, rec_s, cyc_s, rec_o, cyc_o, adv_s, adv_o, disc_s_loss,
                            disc_o_loss]).detach().cpu().tolist()
        return dict(zip(_HISTORY_KEYS, vals))

    # ------------------------------------------------------------- mapping
    def _to_net(self, x):
        """Normalised, padded network input from flux (n, P)."""
        return self._pad((x - self.flux_offset_) / self.flux_scale_)

    def _from_net(self, y):
        """Flux (n, P) from a network output (n, L)."""
        return self._crop(y) * self.flux_scale_ + self.flux_offset_

    def _run(self, fn, flux, spectra_out=True, normalised=False, row_args=()):
        """Apply ``fn`` to float32 spectra in chunks (no grad); float64 numpy output.

        ``fn`` gets normalised padded spectra, then the same rows of each
        tensor in ``row_args``; its output is mapped back to flux
        (``spectra_out``) or returned as is (latents).
        """
        out = []
        step = max(8, 2**20 // int(self.padded_length_))  # ~2**20 floats per chunk
        with _threads(self.n_threads), torch.inference_mode():
            for start in range(0, len(flux), step):
                chunk = np.ascontiguousarray(flux[start:start + step])
                x = torch.from_numpy(chunk).to(self.device)
                rows = [a[start:start + step].to(self.device) for a in row_args]
                y = fn(self._pad(x) if normalised else self._to_net(x), *rows)
                out.append((self._from_net(y) if spectra_out else y).float().cpu().numpy())
        if not out:
            shape = (0, self.n_features_in_) if spectra_out else (0, *self.split_shape_)
            return np.empty(shape)
        return np.concatenate(out).astype(np.float64)

    @staticmethod
    def _nan_empty_rows(out, good, what):
        empty = np.flatnonzero(~good.any(axis=1))
        if empty.size:
            out[empty] = np.nan
            shown = ", ".join(str(int(i)) for i in empty[:10])
            warnings.warn(
                f"{what}: {empty.size} spectrum/spectra without any usable pixel (rows {shown}"
                f"{' ...' if empty.size > 10 else ''}); their output rows are NaN.",
                UserWarning, stacklevel=3,
            )
        return out

    @staticmethod
    def _wrap(X, flux):
        return dataclasses.replace(X, flux=flux) if isinstance(X, SpectrumBatch) else flux

    def transform(self, X):
        """Map observed spectra into the synthetic domain (``CSN_obs->synth``).

        Parameters
        ----------
        X : SpectrumBatch or array-like of shape (n_spectra, n_pixels)
            Observed, continuum-normalised spectra on the fitted grid.

        Returns
        -------
        ndarray of shape (n_spectra, n_pixels) or SpectrumBatch
            Synthetic-domain flux (float64 values of a float32 network); a
            SpectrumBatch input gives a SpectrumBatch with the new flux and
            the input's wavelength, ivar, mask and meta. Every pixel gets a
            value, masked input pixels included (the network's estimate from
            the good ones); rows of spectra without a usable pixel are NaN.
        """
        flux, good = self._map_input(X, "X", set_names=True)
        out = self._run(self.generator_.obs_to_synth, flux)
        return self._wrap(X, self._nan_empty_rows(out, good, "transform"))

    def inverse_transform(self, X, split=None):
        """Map synthetic spectra into the observed domain (``CSN_synth->obs``).

        Parameters
        ----------
        X : SpectrumBatch or array-like of shape (n_spectra, n_pixels)
            Synthetic spectra on the fitted grid.
        split : array-like or str, optional
            Split latents to decode with: shape (n_spectra, *split_shape_),
            e.g. :meth:`encode_split` of the observed spectra being
            modelled, or ``split_shape_`` (one latent for all rows); or a
            policy name of ``split_latent``. Default: the ``split_latent``
            policy.

        Returns
        -------
        ndarray of shape (n_spectra, n_pixels) or SpectrumBatch
            Observed-domain flux (see :meth:`transform` for the conventions).
        """
        flux, good = self._map_input(X, "X")
        z = torch.from_numpy(self._split_array(split, len(flux)))
        out = self._run(self.generator_.synth_to_obs, flux, row_args=(z,))
        return self._wrap(X, self._nan_empty_rows(out, good, "inverse_transform"))

    def encode_split(self, X):
        """Split latents of observed spectra (the part the synthetic domain lacks).

        Parameters
        ----------
        X : SpectrumBatch or array-like of shape (n_spectra, n_pixels)

        Returns
        -------
        ndarray of shape (n_spectra, *split_shape_)
        """
        if self.split_shape_[0] == 0:
            raise ValueError("This CycleStarNet has no split latent (split_channels=0).")
        flux, _ = self._map_input(X, "X")
        return self._run(self.generator_.encode_split, flux, spectra_out=False)

    def encode_shared(self, X, domain="observed"):
        """Shared latents of spectra of either domain (e.g. for t-SNE maps, Fig. 7).

        Parameters
        ----------
        X : SpectrumBatch or array-like of shape (n_spectra, n_pixels)
        domain : {"observed", "synthetic"}

        Returns
        -------
        ndarray of shape (n_spectra, *latent_shape_)
        """
        if domain not in ("observed", "synthetic"):
            raise ValueError(f"domain must be 'observed' or 'synthetic', got {domain!r}.")
        flux, _ = self._map_input(X, "X")
        gen = self.generator_
        encoders = {"synthetic": gen.encode_synth,
                    "observed": lambda x: gen.encode_obs(x, split=False)[0]}
        return self._run(encoders[domain], flux, spectra_out=False)

    def _split_array(self, split, n):
        """Split latents (n, c, m) float32 from a policy name, one latent, or one per row."""
        check_is_fitted(self, "generator_")
        shape = tuple(self.split_shape_)
        if split is None or isinstance(split, str):
            policy = self.split_latent if split is None else split
            if policy not in SPLIT_POLICIES:
                raise ValueError(
                    f"split must be one of {SPLIT_POLICIES} or an array, got {policy!r}."
                )
            if policy == "zeros":
                return np.zeros((n, *shape), np.float32)
            if policy == "mean":
                return np.broadcast_to(self.split_mean_, (n, *shape)).copy()
            rng = np.random.default_rng(self.sample_seed_)
            return self.split_bank_[rng.integers(0, len(self.split_bank_), n)].copy()
        z = np.asarray(split, dtype=np.float32)
        if z.shape == shape:
            return np.broadcast_to(z, (n, *shape)).copy()
        if z.shape != (n, *shape):
            raise ValueError(
                f"split has shape {z.shape}; expected {shape} (one latent for all spectra) or "
                f"{(n, *shape)} (one per spectrum), as returned by encode_split."
            )
        if not np.all(np.isfinite(z)):
            raise ValueError("split contains NaN or inf values.")
        return z

    # ---------------------------------------------------- torch entry points
    @property
    def n_pixels_observed(self) -> int:
        """Pixel count of the spectra (read by ``SpectralLabelFitter``)."""
        check_is_fitted(self, "generator_")
        return int(self.n_features_in_)

    def _torch_input(self, flux, what):
        if flux.ndim != 2 or flux.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{what} must have shape (n_spectra, {self.n_features_in_}); got "
                f"{tuple(flux.shape)}. Resample onto the fitted grid first "
                "(skstellar.preprocessing.SpectrumResampler)."
            )
        x = flux.to(device=self.device, dtype=torch.float32)
        return torch.where(torch.isfinite(x), x, torch.full_like(x, float(self.fill_value)))

    def to_synthetic_torch(self, flux):
        """Differentiable observed -> synthetic mapping of a torch tensor.

        Parameters
        ----------
        flux : Tensor of shape (n_spectra, n_pixels)
            Observed, normalised flux (any float dtype and device;
            non-finite values are replaced by ``fill_value``).

        Returns
        -------
        Tensor of shape (n_spectra, n_pixels)
            Synthetic-domain flux, same dtype and device as ``flux``,
            differentiable with respect to ``flux`` (network weights frozen;
            rows are independent).
        """
        check_is_fitted(self, "generator_")
        x = self._torch_input(flux, "flux")
        with _threads(self.n_threads):
            y = self._from_net(self.generator_.obs_to_synth(self._to_net(x)))
        return y.to(device=flux.device, dtype=flux.dtype)

    def split_features_torch(self, flux_obs):
        """Decoded split latents of observed spectra, for :meth:`to_observed_torch`.

        The split latent of a spectrum enters the observed decoder only
        through its decoded features; a label fit that freezes the split
        latents (the paper's Sect. 3.5) can decode them once with this method
        and pass ``split_features=`` at every step (measured: about 16 % of
        the cost of one synthetic -> observed mapping).

        Parameters
        ----------
        flux_obs : Tensor of shape (n_spectra, n_pixels)

        Returns
        -------
        Tensor or None
            ``(n_spectra, split_width, n)`` features (no gradient), or None
            for a network without split latent.
        """
        check_is_fitted(self, "generator_")
        if self.split_shape_[0] == 0:
            return None
        gen = self.generator_
        with torch.no_grad(), _threads(self.n_threads):
            z = gen.encode_split(self._to_net(self._torch_input(flux_obs, "flux_obs")))
            return gen.split_features(z)

    def to_observed_torch(self, flux_synth, flux_obs=None, *, split=None, split_features=None):
        """Differentiable synthetic -> observed mapping of a torch tensor.

        Parameters
        ----------
        flux_synth : Tensor of shape (n_spectra, n_pixels)
            Synthetic-domain flux (e.g. The Payne's spectrum of trial labels).
        flux_obs : Tensor of shape (n_spectra, n_pixels), optional
            Observed spectra whose split latents are used, computed without
            gradient (frozen, as in the paper's label fit); this is how
            :class:`~skstellar.cyclestarnet.fitting.SpectralLabelFitter`
            calls it.
        split : Tensor, array-like or str, optional
            Split latents of shape (n_spectra, *split_shape_) or
            ``split_shape_`` (a tensor keeps its gradient), or a policy name.
            Give at most one of ``flux_obs``, ``split`` and
            ``split_features``; with none the ``split_latent`` policy applies.
        split_features : Tensor, optional
            Decoded split latents from :meth:`split_features_torch` (the
            fast path of a label fit with frozen split latents).

        Returns
        -------
        Tensor of shape (n_spectra, n_pixels)
            Observed-domain flux, same dtype and device as ``flux_synth``.
        """
        check_is_fitted(self, "generator_")
        if sum(v is not None for v in (flux_obs, split, split_features)) > 1:
            raise ValueError("Give at most one of flux_obs, split and split_features.")
        x = self._torch_input(flux_synth, "flux_synth")
        n = x.shape[0]
        gen = self.generator_
        z = feats = None  # the split latents, or their decoded features
        with _threads(self.n_threads):
            if self.split_shape_[0] == 0:
                pass  # no split latent: the observed decoder reads the shared features only
            elif split_features is not None:
                if split_features.shape[0] != n:
                    raise ValueError(
                        f"split_features has {split_features.shape[0]} rows, flux_synth {n}."
                    )
                feats = split_features.to(device=self.device, dtype=torch.float32)
            elif flux_obs is not None:
                if flux_obs.shape[0] != n:
                    raise ValueError(f"flux_obs has {flux_obs.shape[0]} spectra, flux_synth {n}.")
                feats = self.split_features_torch(flux_obs)
            elif isinstance(split, torch.Tensor):
                z = split.to(device=self.device, dtype=torch.float32)
                if z.shape == tuple(self.split_shape_):
                    z = z.expand(n, *z.shape)
                if tuple(z.shape) != (n, *self.split_shape_):
                    raise ValueError(
                        f"split has shape {tuple(split.shape)}; expected "
                        f"{tuple(self.split_shape_)} or {(n, *self.split_shape_)}."
                    )
            else:
                z = torch.from_numpy(self._split_array(split, n)).to(self.device)
            y = self._from_net(gen.decode_obs(gen.encode_synth(self._to_net(x)), z, feats))
        return y.to(device=flux_synth.device, dtype=flux_synth.dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.requires_fit = True
        tags.non_deterministic = self.random_state is None
        return tags
