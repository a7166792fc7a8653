"""The Payne: a neural-network emulator of stellar spectra (labels -> normalised flux).

:class:`PayneEmulator` is the spectral emulator of Ting et al. (2019, ApJ 879,
69) as used by the Cycle-StarNet M-dwarf paper (Sect. 2.2 of
``mdwarf-cycle-starnet-lamost``), a multilayer perceptron from scaled labels
to a continuum-normalised spectrum. It is trained with :meth:`PayneEmulator.fit`
(skorch-backed) or loaded from The Payne's ``.npz`` weight files with
:meth:`PayneEmulator.from_npz`: the modern dense format (e.g. the 25-label
Kurucz network of The Payne) or the legacy 2018 per-pixel format of the
repository's first commit (:class:`PerPixelNetwork`, El-Badry et al. 2018).
:meth:`PayneEmulator.predict_torch` is the differentiable forward pass used by
:class:`skstellar.cyclestarnet.fitting.SpectralLabelFitter`.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..nn.base import BaseNeuralRegressor
from ..nn.builders import ACTIVATION, build_mlp, make_activation
from ..parameters import LAYER_SIZES, Options, SequenceOf, validate_parameters

__all__ = ["PayneEmulator", "PayneNetwork", "PerPixelNetwork", "OUT_OF_RANGE_POLICIES"]

#: What :meth:`PayneEmulator.predict` does with labels outside the training range.
OUT_OF_RANGE_POLICIES = ("allow", "warn", "raise")

#: Label names of the legacy 2018 normalised-flux network (data README).
LEGACY_2018_LABELS = ("teff", "logg", "feh", "mgfe", "vmacro")


class PerPixelNetwork(nn.Module):
    """One tiny network per pixel, all pixels evaluated in one batched product.

    For pixel ``p`` and scaled labels ``s`` (shape (n_labels,)):
    ``flux[p] = w1[p] . sigmoid(w0[p] @ s + b0[p]) + b1[p]``; this is the
    layout of the 2018 BinSpec/Payne ``NN_normalized_spectra.npz`` (see
    ``../shared/data/payne/README.md``).

    Parameters
    ----------
    w0 : array-like of shape (n_pixels, n_hidden, n_labels)
    b0 : array-like of shape (n_pixels, n_hidden)
    w1 : array-like of shape (n_pixels, n_hidden)
    b1 : array-like of shape (n_pixels,)
    """

    def __init__(self, w0, b0, w1, b1):
        super().__init__()
        w0, b0, w1, b1 = (torch.as_tensor(np.asarray(a), dtype=torch.float32)
                          for a in (w0, b0, w1, b1))
        n_pix, n_hid, n_lab = w0.shape
        self.n_pixels, self.n_hidden, self.n_labels = int(n_pix), int(n_hid), int(n_lab)
        # (n_pixels * n_hidden, n_labels): every pixel's hidden layer in one matmul
        self.w0 = nn.Parameter(w0.reshape(n_pix * n_hid, n_lab).clone())
        self.b0 = nn.Parameter(b0.reshape(-1).clone())
        self.w1, self.b1 = nn.Parameter(w1.clone()), nn.Parameter(b1.clone())

    def forward(self, s):
        """Flux (n, n_pixels) from scaled labels ``s`` (n, n_labels)."""
        h = torch.sigmoid(torch.nn.functional.linear(s, self.w0, self.b0))
        h = h.view(s.shape[0], self.n_pixels, self.n_hidden)
        return (h * self.w1).sum(-1) + self.b1

    def arrays(self):
        """The weights in the npz layout (float32 numpy arrays)."""
        w0, b0, w1, b1 = (p.detach().cpu().numpy() for p in (self.w0, self.b0, self.w1, self.b1))
        shape = (self.n_pixels, self.n_hidden)
        return {"w_array_0": w0.reshape(*shape, self.n_labels), "b_array_0": b0.reshape(shape),
                "w_array_1": w1, "b_array_1": b1}

    def extra_repr(self):
        """Sizes shown in the module's repr."""
        return f"n_pixels={self.n_pixels}, n_hidden={self.n_hidden}, n_labels={self.n_labels}"


class PayneNetwork(nn.Module):
    """Label scaling followed by the emulator body: raw labels -> flux.

    ``s = (labels - x_min) / (x_max - x_min) - 0.5`` (The Payne's scaling,
    Ting et al. 2019, Sect. 2), then ``body(s)``.

    Parameters
    ----------
    x_min, x_max : array-like of shape (n_labels,)
        Label scaling bounds (buffers, saved in ``state_dict``).
    body : nn.Module
        Maps scaled labels (n, n_labels) to flux (n, n_pixels).
    """

    def __init__(self, x_min, x_max, body):
        super().__init__()
        self.register_buffer("x_min", torch.as_tensor(np.asarray(x_min), dtype=torch.float32))
        self.register_buffer("x_span", torch.as_tensor(
            np.asarray(x_max, dtype=np.float64) - np.asarray(x_min, dtype=np.float64),
            dtype=torch.float32))
        self.body = body

    def scale(self, labels):
        """Labels in physical units -> The Payne's scaled labels in [-0.5, 0.5]."""
        return (labels - self.x_min.to(labels.dtype)) / self.x_span.to(labels.dtype) - 0.5

    def forward(self, labels):
        """Flux (n, n_pixels) from labels in physical units (n, n_labels)."""
        return self.body(self.scale(labels))

    def forward_scaled(self, scaled):
        """Flux from already-scaled labels."""
        return self.body(scaled)


class PayneEmulator(BaseNeuralRegressor):
    """The Payne spectral emulator: stellar labels -> continuum-normalised spectrum.

    ``fit(labels, spectra)`` trains the multilayer perceptron of The Payne
    (Ting et al. 2019) as adopted by the Cycle-StarNet M-dwarf paper
    (Sect. 2.2): labels min-max scaled to [-0.5, 0.5] with the training
    set's extremes (``x_min_``, ``x_max_``), two hidden layers of 300
    LeakyReLU(0.01) units, one linear output per pixel. The Payne trains with
    an L1 loss and keeps the weights of the best validation loss; the paper
    uses an 8:2 train/validation split (``validation_fraction=0.2``).
    Pretrained networks are loaded with :meth:`from_npz` (both The Payne's
    dense format and the legacy 2018 per-pixel format) and written with
    :meth:`to_npz`.

    Parameters
    ----------
    hidden : tuple of int, default=(300, 300)
        Widths of the hidden layers.
    activation : str, default="leaky_relu:0.01"
        Hidden activation (see :func:`skstellar.nn.make_activation`).
    loss : {"l1", "mse"}, default="l1"
        Training loss on the flux; ``"l1"`` is The Payne's choice.
    lr : float, default=1e-3
        Adam learning rate.
    batch_size : int, default=256
    max_epochs : int, default=2000
    weight_decay : float, default=0.0
    validation_fraction : float, default=0.2
        Seeded hold-out fraction for early stopping (the paper's 8:2 split).
    early_stopping : bool, default=True
        Stop after ``patience`` epochs without validation improvement and
        restore the best weights.
    patience : int, default=100
    lr_schedule : {None, "plateau"}, default="plateau"
    lr_factor : float, default=0.5
    lr_patience : int, default=30
    label_names : sequence of str, optional
        Names of the labels when ``fit`` gets an array (a DataFrame's column
        names win). Default ``label_0, label_1, ...``.
    wavelength : array-like of shape (n_pixels,), optional
        Wavelength of each output pixel in Angstrom (needed to fit radial
        velocities with the label fitter); stored as ``wavelength_``.
    out_of_range : {"warn", "allow", "raise"}, default="warn"
        What :meth:`predict` does with labels outside ``[x_min_, x_max_]``,
        where the network extrapolates: warn (default), allow silently or
        raise ``ValueError``. :meth:`predict_torch` never checks (it is the
        inner loop of the fitter, which keeps labels inside by construction).
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation, the validation split and shuffling.
    device : str, default="cpu"
    verbose : int, default=0
    callbacks : None or list of skorch callbacks or (name, callback) pairs, default=None
        Extra skorch callbacks (e.g. ``LRScheduler``, ``Checkpoint``,
        ``EpochScoring``), appended after the ones the ``early_stopping`` and
        ``lr_schedule`` shortcuts build; a callback named ``"early_stopping"``
        or ``"lr_schedule"`` replaces that shortcut's (see
        :mod:`skstellar.nn.training`).

    Attributes
    ----------
    x_min_, x_max_ : ndarray of shape (n_labels,)
        Label scaling bounds (the training range), float64.
    label_names_ : list of str
    n_labels_ : int
    n_pixels_ : int
        Number of output pixels.
    wavelength_ : ndarray of shape (n_pixels,) or None
    architecture_ : {"mlp", "legacy_2018"}
        ``"legacy_2018"`` for a per-pixel network loaded by :meth:`from_npz`.
    net_ : skorch.NeuralNet
        Holds the torch module (``module_``), a :class:`PayneNetwork`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.uniform([3000, 4.5], [4000, 5.5], size=(300, 2))
    >>> wave = np.linspace(7000, 7100, 40)
    >>> spectra = 1 - 0.3 * np.exp(-((wave - 7050) / (labels[:, :1] / 400)) ** 2)
    >>> emu = PayneEmulator(hidden=(32, 32), max_epochs=20, random_state=0)
    >>> emu = emu.fit(labels, spectra)
    >>> emu.predict(labels[:2]).shape
    (2, 40)
    """

    # Dense emulators have no dropout: a single deterministic pass.
    n_mc_passes = 0
    mc_mode = "network"

    def __init__(
        self,
        *,
        hidden=(300, 300),
        activation="leaky_relu:0.01",
        loss="l1",
        lr=1e-3,
        batch_size=256,
        max_epochs=2000,
        weight_decay=0.0,
        validation_fraction=0.2,
        early_stopping=True,
        patience=100,
        lr_schedule="plateau",
        lr_factor=0.5,
        lr_patience=30,
        label_names=None,
        wavelength=None,
        out_of_range="warn",
        random_state=None,
        device="cpu",
        verbose=0,
        callbacks=None,
    ):
        self.hidden = hidden
        self.activation = activation
        self.loss = loss
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.lr_schedule = lr_schedule
        self.lr_factor = lr_factor
        self.lr_patience = lr_patience
        self.label_names = label_names
        self.wavelength = wavelength
        self.out_of_range = out_of_range
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.callbacks = callbacks

    # ------------------------------------------------------------- network
    def _build_module(self, n_features, n_outputs):
        body = build_mlp(n_features, self.hidden, n_outputs, activation=self.activation)
        return PayneNetwork(self.x_min_, self.x_max_, body)

    def _build_criterion(self):
        return nn.L1Loss() if self.loss == "l1" else nn.MSELoss()

    #: Allowed hyperparameter values (the neural base declares the common ones;
    #: The Payne uses ``hidden=(300, 300)``).
    _parameter_constraints = {
        "hidden": [LAYER_SIZES],
        "activation": [ACTIVATION],
        "loss": [Options(("l1", "mse"))],
        "label_names": [None, SequenceOf(str)],
        "wavelength": ["no_validation"],  # checked against the pixels at fit
        "out_of_range": [Options(OUT_OF_RANGE_POLICIES)],
    }

    # ----------------------------------------------------------------- fit
    def fit(self, X, y):
        """Train the emulator on labelled spectra.

        Parameters
        ----------
        X : array-like of shape (n_spectra, n_labels)
            Stellar labels in physical units (e.g. Teff in K, log g in dex,
            [M/H] in dex). A DataFrame's column names become ``label_names_``.
        y : array-like of shape (n_spectra, n_pixels)
            Continuum-normalised fluxes on a common wavelength grid.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If a label is constant over the training set (it cannot be
            min-max scaled: drop it), if ``wavelength`` does not have one
            entry per pixel, or on NaN/inf input.
        """
        validate_parameters(self)
        X, y = self._validate_Xy(X, y)
        x64 = X.astype(np.float64)
        x_min, x_max = x64.min(0), x64.max(0)
        names = self._resolve_label_names(X.shape[1])
        const = np.nonzero(x_max <= x_min)[0]
        if len(const):
            j = int(const[0])
            raise ValueError(
                f"Label {names[j]!r} (column {j}) is constant ({x_min[j]}) over the training "
                "set, so it cannot be min-max scaled; drop it or vary it in the training grid."
            )
        self._y_ndim = y.ndim
        y2 = y.reshape(len(y), -1).astype(np.float32)
        self.x_min_, self.x_max_ = x_min, x_max
        self.label_names_ = names
        self.n_labels_ = X.shape[1]
        self.n_outputs_ = self.n_pixels_ = y2.shape[1]
        self.wavelength_ = self._check_wavelength(self.wavelength, self.n_pixels_)
        self.architecture_ = "mlp"
        return self._train(X, y2, self.n_outputs_)

    def _resolve_label_names(self, n_labels):
        names = getattr(self, "feature_names_in_", None)
        if names is None and self.label_names is not None:
            names = list(self.label_names)
            if len(names) != n_labels:
                raise ValueError(
                    f"label_names has {len(names)} entries but the labels have {n_labels} columns."
                )
        if names is None:
            names = [f"label_{j}" for j in range(n_labels)]
        return [str(n) for n in names]

    @staticmethod
    def _check_wavelength(wavelength, n_pixels):
        if wavelength is None:
            return None
        wave = np.asarray(wavelength, dtype=np.float64).reshape(-1)
        if wave.shape[0] != n_pixels:
            raise ValueError(
                f"wavelength has {wave.shape[0]} entries but the emulator has {n_pixels} pixels."
            )
        if not np.all(np.isfinite(wave)) or np.any(np.diff(wave) <= 0):
            raise ValueError("wavelength must be finite and strictly increasing (Angstrom).")
        return wave

    # ------------------------------------------------------------- predict
    def label_range_violations(self, labels):
        """Where labels fall outside the emulator's range ``[x_min_, x_max_]``.

        Parameters
        ----------
        labels : array-like of shape (n, n_labels)

        Returns
        -------
        ndarray of bool, shape (n, n_labels)
            True where a label is below ``x_min_`` or above ``x_max_``.
        """
        check_is_fitted(self, "x_min_")
        lab = np.asarray(labels, dtype=np.float64).reshape(-1, self.n_labels_)
        tol = 1e-6 * (self.x_max_ - self.x_min_)
        return (lab < self.x_min_ - tol) | (lab > self.x_max_ + tol)

    def predict(self, X, return_std=False):
        """Emulated spectra for the given labels.

        Parameters
        ----------
        X : array-like of shape (n, n_labels)
            Labels in physical units, columns as ``label_names_``.
        return_std : bool, default=False
            Not supported (the emulator is deterministic); raises if True.

        Returns
        -------
        ndarray of shape (n, n_pixels), float64
            Normalised flux.

        Raises
        ------
        ValueError
            If ``out_of_range="raise"`` and a label lies outside
            ``[x_min_, x_max_]`` (the message names the row and label).

        Warns
        -----
        UserWarning
            With ``out_of_range="warn"`` for labels outside the range (the
            network extrapolates there).
        """
        check_is_fitted(self, "net_")
        if return_std:
            raise ValueError("PayneEmulator is deterministic: return_std is not available.")
        lab = self._validate_X(X, reset=False, dtype=np.float64)
        if self.out_of_range != "allow":
            bad = self.label_range_violations(lab)
            if bad.any():
                i, j = (int(v) for v in np.argwhere(bad)[0])
                msg = (
                    f"{int(bad.any(1).sum())} of {len(lab)} label rows lie outside the emulator's "
                    f"training range, e.g. row {i}: {self.label_names_[j]} = {lab[i, j]:g} not in "
                    f"[{self.x_min_[j]:g}, {self.x_max_[j]:g}]; the network extrapolates there."
                )
                if self.out_of_range == "raise":
                    raise ValueError(msg + " Set out_of_range='warn' or 'allow' to predict anyway.")
                warnings.warn(msg, UserWarning, stacklevel=2)
        return self._format(self._deterministic(lab.astype(np.float32)))

    def predict_torch(self, labels, scaled=False):
        """Differentiable forward pass on a torch tensor.

        Parameters
        ----------
        labels : torch.Tensor of shape (n, n_labels)
            Physical labels, or The Payne's scaled labels in [-0.5, 0.5] if
            ``scaled``. Gradients flow to ``labels`` (and to the network's
            weights).
        scaled : bool, default=False

        Returns
        -------
        torch.Tensor of shape (n, n_pixels)
            Flux in the module's dtype (float32 unless converted).
        """
        module = self.module_
        module.eval()
        x = labels.to(dtype=next(module.parameters()).dtype)
        return module.forward_scaled(x) if scaled else module(x)

    def export_torch(self, dtype=torch.float32, device=None) -> PayneNetwork:
        """A frozen copy of the network (raw labels -> flux) for fitting.

        The copy is in eval mode with ``requires_grad=False`` on its weights,
        so autograd only tracks the labels (cheaper backward passes).

        Parameters
        ----------
        dtype : torch.dtype, default=torch.float32
        device : str or torch.device, optional
            Default: the estimator's ``device``.

        Returns
        -------
        PayneNetwork
        """
        module = copy.deepcopy(self.module_).to(dtype=dtype, device=device or self.device)
        return module.eval().requires_grad_(False)

    # ---------------------------------------------------------------- I/O
    @classmethod
    def from_npz(cls, path, wavelength=None, label_names=None, **params):
        """Load a pretrained network saved in The Payne's npz format.

        Two layouts are recognised from the arrays' shapes:

        * dense (The Payne, Ting et al. 2019): ``w_array_0..k`` with
          ``w_array_i`` of shape (n_out_i, n_in_i) (``torch.nn.Linear``'s
          layout), ``b_array_0..k``, ``x_min``, ``x_max``; hidden layers use
          LeakyReLU(0.01). The published network has k = 2 (two hidden layers
          of 300) and 25 labels;
        * legacy 2018 per-pixel (El-Badry et al. 2018, the repository's first
          commit): ``w_array_0`` (n_pixels, n_hidden, n_labels), ``b_array_0``
          (n_pixels, n_hidden), ``w_array_1`` (n_pixels, n_hidden),
          ``b_array_1`` (n_pixels,), sigmoid hidden units.

        In both cases ``s = (labels - x_min) / (x_max - x_min) - 0.5``. Extra
        keys ``wavelength`` and ``label_names`` (written by :meth:`to_npz`)
        are read when present.

        Parameters
        ----------
        path : str or path-like
        wavelength : array-like of shape (n_pixels,), optional
            Pixel wavelengths in Angstrom (overrides one stored in the file).
        label_names : sequence of str, optional
            Label names (overrides stored ones). Default for the legacy
            5-label network: teff, logg, feh, mgfe, vmacro.
        **params
            Other constructor parameters (``device``, ``out_of_range``...).

        Returns
        -------
        PayneEmulator
            A fitted estimator (``predict`` works; ``fit`` would retrain a
            dense network from scratch).

        Raises
        ------
        ValueError
            If arrays are missing or their shapes are inconsistent.
        """
        import skorch

        path = Path(path)
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        for key in ("w_array_0", "b_array_0", "w_array_1", "b_array_1", "x_min", "x_max"):
            if key not in arrays:
                raise ValueError(
                    f"{path.name} is not a Payne network: key {key!r} is missing "
                    f"(found {sorted(arrays)})."
                )
        x_min, x_max = (np.asarray(arrays[k], dtype=np.float64).reshape(-1)
                        for k in ("x_min", "x_max"))
        n_labels = x_min.shape[0]
        if x_max.shape[0] != n_labels or np.any(x_max <= x_min):
            raise ValueError(
                f"{path.name}: x_min and x_max must have the same length and x_max > x_min."
            )
        build = cls._legacy_body if arrays["w_array_0"].ndim == 3 else cls._dense_body
        body, hidden, act, arch = build(arrays, n_labels, path.name)
        n_pixels = body(torch.zeros((1, n_labels))).shape[1]
        if label_names is None and "label_names" in arrays:
            label_names = [str(s) for s in arrays["label_names"]]
        if label_names is None and arch == "legacy_2018" and n_labels == len(LEGACY_2018_LABELS):
            label_names = list(LEGACY_2018_LABELS)
        if wavelength is None and "wavelength" in arrays:
            wavelength = arrays["wavelength"]
        params = {"hidden": hidden, "activation": act, **params}
        est = cls(label_names=label_names, wavelength=wavelength, **params)
        validate_parameters(est)
        est.x_min_, est.x_max_ = x_min, x_max
        est.n_features_in_ = est.n_labels_ = n_labels
        est.label_names_ = est._resolve_label_names(n_labels)
        est.n_outputs_ = est.n_pixels_ = int(n_pixels)
        est.wavelength_ = cls._check_wavelength(wavelength, est.n_pixels_)
        est.architecture_ = arch
        est._y_ndim = 2
        module = PayneNetwork(x_min, x_max, body).to(est.device)
        est.net_ = skorch.NeuralNet(
            module=module, criterion=est._build_criterion(), device=est.device
        ).initialize()
        est.n_epochs_ = est.n_valid_ = est.mc_seed_ = 0
        return est

    @staticmethod
    def _legacy_body(arrays, n_labels, name):
        w0, b0, w1, b1 = (arrays[k] for k in ("w_array_0", "b_array_0", "w_array_1", "b_array_1"))
        n_pix, n_hid, n_lab = w0.shape
        expected = {"b_array_0": (n_pix, n_hid), "w_array_1": (n_pix, n_hid), "b_array_1": (n_pix,)}
        for key, shape in expected.items():
            if arrays[key].shape != shape:
                raise ValueError(
                    f"{name}: legacy per-pixel network with w_array_0 {w0.shape} needs "
                    f"{key} of shape {shape}, got {arrays[key].shape}."
                )
        if n_lab != n_labels:
            raise ValueError(f"{name}: w_array_0 takes {n_lab} labels but x_min has {n_labels}.")
        return PerPixelNetwork(w0, b0, w1, b1), (int(n_hid),), "sigmoid", "legacy_2018"

    @staticmethod
    def _dense_body(arrays, n_labels, name):
        n_layers = next(i for i in itertools.count() if f"w_array_{i}" not in arrays)
        if n_layers < 2:
            raise ValueError(
                f"{name}: a dense Payne network needs at least w_array_0 and w_array_1."
            )
        ws = [np.asarray(arrays[f"w_array_{i}"], dtype=np.float32) for i in range(n_layers)]
        bs = []
        for i in range(n_layers):
            if f"b_array_{i}" not in arrays:
                raise ValueError(f"{name}: b_array_{i} is missing.")
            bs.append(np.asarray(arrays[f"b_array_{i}"], dtype=np.float32).reshape(-1))
        width = n_labels
        for i, (w, b) in enumerate(zip(ws, bs)):
            if w.ndim != 2 or w.shape[1] != width or b.shape[0] != w.shape[0]:
                raise ValueError(
                    f"{name}: w_array_{i} has shape {w.shape} and b_array_{i} {b.shape}; "
                    f"expected ({b.shape[0]}, {width}) weights stored as (out, in) after a "
                    f"layer of width {width}."
                )
            width = w.shape[0]
        hidden = tuple(int(w.shape[0]) for w in ws[:-1])
        body = build_mlp(n_labels, hidden, int(ws[-1].shape[0]), activation="leaky_relu:0.01")
        with torch.no_grad():
            for lin, w, b in zip((m for m in body if isinstance(m, nn.Linear)), ws, bs):
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(b))
        return body, hidden, "leaky_relu:0.01", "mlp"

    def to_npz(self, path):
        """Write the network in The Payne's npz format.

        A dense network is written as ``w_array_i`` (out, in), ``b_array_i``,
        ``x_min``, ``x_max`` (the modern format; with two hidden layers this
        is exactly what The Payne's own loader reads), a legacy per-pixel
        network in its 2018 layout. ``label_names`` and, when known,
        ``wavelength`` are added as extra keys (ignored by The Payne).

        Parameters
        ----------
        path : str or path-like

        Raises
        ------
        ValueError
            For a dense network whose hidden activation is not
            LeakyReLU(0.01) or that is not a plain Linear/activation stack:
            the format has no field for other activations.
        """
        check_is_fitted(self, "net_")
        body = self.module_.body
        if isinstance(body, PerPixelNetwork):
            arrays = body.arrays()
        else:
            arrays = {}
            for layer in body:
                if isinstance(layer, (nn.Linear, type(make_activation(None)))):
                    continue
                if isinstance(layer, nn.LeakyReLU) and abs(layer.negative_slope - 0.01) < 1e-12:
                    continue
                raise ValueError(
                    f"The Payne's npz format assumes LeakyReLU(0.01) hidden layers; this network "
                    f"has {layer!r}. Save it with joblib instead."
                )
            for i, lin in enumerate(m for m in body if isinstance(m, nn.Linear)):
                arrays[f"w_array_{i}"] = lin.weight.detach().cpu().numpy().astype(np.float32)
                arrays[f"b_array_{i}"] = lin.bias.detach().cpu().numpy().astype(np.float32)
        arrays["x_min"] = np.asarray(self.x_min_, dtype=np.float64)
        arrays["x_max"] = np.asarray(self.x_max_, dtype=np.float64)
        arrays["label_names"] = np.asarray(self.label_names_, dtype=str)
        if self.wavelength_ is not None:
            arrays["wavelength"] = np.asarray(self.wavelength_, dtype=np.float64)
        np.savez(path, **arrays)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
