"""Monte Carlo dropout inference, vectorised over passes.

Monte Carlo (MC) dropout (Gal & Ghahramani 2016) keeps dropout active at
prediction time and reads the spread of many stochastic passes as the model
uncertainty. Two things matter for a correct and fast implementation:

* only the dropout layers are stochastic: BatchNorm layers stay in eval mode
  and use their running statistics (putting the whole module in training mode,
  as ``forward_iter(training=True)`` would, corrupts BatchNorm);
* the passes are one batched forward call: each chunk of stars is repeated
  ``n_passes`` times along the batch axis, so there is no Python loop per pass
  or per star.

Dropout is applied through forward hooks on the module's ``nn.Dropout``
layers (the module stays in eval mode), so any network built from standard
layers works. Two sampling modes are offered:

``"network"`` (default)
    Each pass samples one thinned network (one dropout mask per layer and per
    pass) and applies it to every star. Every star's predictive distribution
    is the same as with independent masks, and the prediction for a star does
    not depend on which other stars are in the batch, so results are
    reproducible, order- and subset-invariant for a fixed ``random_state``.
``"per_sample"``
    Independent masks for every star and pass (what Keras' ``training=True``
    does). Predictions of a star then depend on its position in the batch.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from .builders import _Linear

__all__ = ["mc_dropout_predict", "dropout_layers", "inference_forward", "MC_MODES", "DropoutHooks",
           "seeded_generator"]

MC_MODES = ("network", "per_sample")

_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)


def dropout_layers(module: nn.Module) -> list[nn.Module]:
    """All dropout layers of ``module`` with a positive drop probability."""
    return [m for m in module.modules() if isinstance(m, _DROPOUT_TYPES) and m.p > 0]


_VIEW_LAYERS = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)
_FRESH_OUTPUT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d,
                        nn.MaxPool1d, nn.AvgPool1d)


def inference_forward(module):
    """An eval-mode forward of ``module`` that applies ReLUs in place where safe.

    For an ``nn.Sequential``, a ``ReLU`` that follows a layer allocating a
    fresh output (convolution, linear, batch norm, pooling) is applied in
    place, which saves one allocation and one pass over the largest
    activations of a CNN; outputs are bit-identical to ``module(x)``. Other
    modules are returned unchanged. Call it inside ``torch.inference_mode``.
    """
    if not isinstance(module, nn.Sequential):
        return module
    layers = list(module)

    def forward(x):
        fresh = False
        for layer in layers:
            if fresh and type(layer) is nn.ReLU:
                x = torch.relu_(x)
            else:
                x = layer(x)
                fresh = isinstance(layer, _FRESH_OUTPUT_LAYERS) or (
                    fresh and isinstance(layer, _VIEW_LAYERS))
        return x

    return forward


class DropoutHooks:
    """Context manager that turns the dropout layers of an eval-mode module stochastic.

    Inputs must be pass-major: a batch of ``n_passes * n_rows`` rows where rows
    ``[k * n_rows, (k + 1) * n_rows)`` belong to pass ``k``.

    Parameters
    ----------
    module : torch.nn.Module
        Network whose dropout layers sample masks inside the block.
    n_passes : int
        Monte Carlo passes stacked in each batch.
    mode : {"network", "per_sample"}
        One mask per pass shared by the rows, or one per row and pass.
    generator : torch.Generator
        Draws the masks.
    """

    def __init__(self, module, n_passes, mode, generator):
        self.layers = dropout_layers(module)
        self.n_passes = n_passes
        self.mode = mode
        self.generator = generator
        self.masks: dict[int, torch.Tensor] = {}
        self.handles = []

    def _pass_mask(self, layer, x):
        """The layer's "network"-mode mask, shape ``(n_passes, 1, *x.shape[1:])``, drawn once."""
        mask = self.masks.get(id(layer))
        if mask is None:
            # scaled so the expectation matches eval mode (inverted dropout, as nn.Dropout)
            keep = 1.0 - layer.p
            shape = (self.n_passes, 1) + tuple(x.shape[1:])
            mask = torch.empty(shape, dtype=x.dtype, device=x.device)
            self.masks[id(layer)] = mask.bernoulli_(keep, generator=self.generator).div_(keep)
        return mask

    def _pass_shape(self, x):
        """``(n_passes, n_rows, *features)`` of pass-major ``x``."""
        return (self.n_passes, x.shape[0] // self.n_passes) + tuple(x.shape[1:])

    def multiplier(self, layer, x):
        """The dropout multiplier (mask / keep) this layer applies to pass-major ``x``."""
        if self.mode == "per_sample":
            keep = 1.0 - layer.p
            return torch.empty_like(x).bernoulli_(keep, generator=self.generator).div_(keep)
        return self._pass_mask(layer, x).expand(self._pass_shape(x)).reshape(x.shape)

    def _hook(self, layer, inputs, output):
        x = inputs[0]
        if self.mode == "per_sample":
            return x * self.multiplier(layer, x)
        return (x.view(self._pass_shape(x)) * self._pass_mask(layer, x)).view_as(x)

    def __enter__(self):
        self.handles = [layer.register_forward_hook(self._hook) for layer in self.layers]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []
        return False


_IDENTITY = (nn.Identity, _Linear)
_ELEMENTWISE = (
    nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Softsign, nn.Sigmoid, nn.Tanh, nn.ELU,
    nn.SELU, nn.SiLU, nn.Softplus, nn.Hardtanh, nn.Mish,
)


def _foldable(module: nn.Module) -> bool:
    """True when ``module`` is a Sequential MLP the folded fast path can evaluate."""
    if not isinstance(module, nn.Sequential) or len(module) == 0:
        return False
    for layer in module:
        if isinstance(layer, nn.BatchNorm1d):
            if not layer.track_running_stats or layer.running_mean is None:
                return False
        elif not (type(layer) is nn.Dropout
                  or isinstance(layer, (nn.Linear,) + _ELEMENTWISE + _IDENTITY)):
            return False
    return True


class _FoldedPasses:
    """The ``n_passes`` thinned networks of a Sequential MLP, folded into affine maps.

    In "network" mode every pass is a fixed network, so consecutive affine
    pieces (Linear, eval-mode BatchNorm, a dropout mask) compose into one
    matrix per pass. Layers before the first dropout are shared by all passes
    and evaluated once per star; only nonlinear activations force the
    hidden state to be materialised. For a network with linear activations
    (the M-dwarf paper's) all passes collapse to one ``(n_passes, n_out,
    n_in)`` affine map.
    """

    def __init__(self, module: nn.Sequential, n_passes: int, generator, device):
        self.steps = []  # ("affine", A, c) or ("act", layer)
        A = None  # (P or 1, F_out, F_in) or None (identity)
        c = None  # (P or 1, F_out) or None (zero)
        width = None  # current feature width
        for layer in module:
            if isinstance(layer, nn.Linear):
                width = layer.out_features
                W = layer.weight.detach().to(device, torch.float32)
                A = W.unsqueeze(0) if A is None else torch.matmul(W, A)
                c = None if c is None else torch.matmul(c, W.T)
                if layer.bias is not None:
                    b = layer.bias.detach().to(device, torch.float32)
                    c = b.unsqueeze(0) if c is None else c + b
            elif isinstance(layer, nn.BatchNorm1d):
                width = layer.num_features
                var = layer.running_var.detach().to(device, torch.float32)
                mean = layer.running_mean.detach().to(device, torch.float32)
                scale = torch.rsqrt(var + layer.eps)
                shift = -mean * scale
                if layer.affine:
                    w = layer.weight.detach().to(device, torch.float32)
                    scale = scale * w
                    shift = shift * w + layer.bias.detach().to(device, torch.float32)
                A, c = self._scale(A, c, scale.unsqueeze(0), shift.unsqueeze(0))
            elif isinstance(layer, nn.Dropout):
                if layer.p == 0:
                    continue
                if width is None:
                    width = self._input_width(module)
                keep = 1.0 - layer.p
                mask = torch.empty((n_passes, 1, width), dtype=torch.float32, device=device)
                mask = mask.bernoulli_(keep, generator=generator).div_(keep)[:, 0, :]
                A, c = self._scale(A, c, mask, None)
            elif isinstance(layer, _IDENTITY):
                continue
            else:  # nonlinear elementwise activation
                if A is not None or c is not None:
                    self.steps.append(("affine", A, c))
                A, c = None, None
                self.steps.append(("act", layer))
        if A is not None or c is not None:
            self.steps.append(("affine", A, c))
        self._transposed = {
            k: step[1].transpose(1, 2).contiguous()
            for k, step in enumerate(self.steps)
            if step[0] == "affine" and step[1] is not None
        }
        self._buffers: dict[int, torch.Tensor] = {}

    @staticmethod
    def _input_width(module):
        """Width of the inputs (for dropout placed before any Linear/BatchNorm)."""
        for m in module:
            if isinstance(m, nn.Linear):
                return m.in_features
            if isinstance(m, nn.BatchNorm1d):
                return m.num_features
        raise ValueError("Cannot infer the width of a dropout layer.")

    @staticmethod
    def _scale(A, c, scale, shift):
        """Compose an elementwise affine ``h -> scale * h + shift`` after ``(A, c)``."""
        A = torch.diag_embed(scale) if A is None else scale.unsqueeze(-1) * A
        if c is not None:
            c = scale * c
        if shift is not None:
            c = shift if c is None else c + shift
        return A, c

    def __call__(self, x):
        """Evaluate all passes on ``x`` (rows, F).

        Returns (n_passes, rows, n_out), or (rows, n_out) when the network
        has no dropout (every pass is the same). Per-pass activations are
        kept pass-major in buffers reused across calls of the same size, so
        streaming a large catalogue allocates nothing per chunk (repeated
        multi-MB allocations fragmented glibc's heap). The returned tensor
        may be such a buffer: use it before the next call.
        """
        h = x  # (rows, F) shared by all passes, or (P, rows, F) per pass
        for k, step in enumerate(self.steps):
            if step[0] == "act":
                h = self._inplace_activation(step[1], h) if h.dim() == 3 else step[1](h)
                continue
            _, A, c = step
            if A is not None:
                AT = self._transposed[k]  # (P or 1, F_in, F_out)
                if h.dim() == 2 and AT.shape[0] == 1:
                    h = h @ AT[0]
                else:
                    P = max(AT.shape[0], h.shape[0] if h.dim() == 3 else 1)
                    shape = (P, h.shape[-2], AT.shape[-1])
                    buf = self._buffer(k, shape, h)
                    if h.dim() == 2:  # shared state meets per-pass weights
                        rep = self._buffer(("in", k), (P,) + tuple(h.shape), h)
                        h = rep.copy_(h.unsqueeze(0).expand_as(rep))
                    if AT.shape[0] != P:
                        AT = AT.expand(P, -1, -1)
                    # bmm into our own buffers: no temporaries per chunk
                    h = torch.bmm(h, AT, out=buf)
            if c is not None:
                if h.dim() == 3:
                    h.add_(c.unsqueeze(1))  # h is one of our buffers here
                elif c.shape[0] > 1:
                    h = c.unsqueeze(1) + h
                else:
                    h = h + c[0]
        return h

    def _buffer(self, k, shape, like):
        buf = self._buffers.get(k)
        if buf is None or tuple(buf.shape) != shape:
            buf = torch.empty(shape, dtype=torch.float32, device=like.device)
            self._buffers[k] = buf
        return buf

    @staticmethod
    def _inplace_activation(layer, h):
        if isinstance(layer, nn.ReLU):
            return h.relu_()
        if isinstance(layer, nn.LeakyReLU):
            return torch.nn.functional.leaky_relu_(h, layer.negative_slope)
        if isinstance(layer, nn.Sigmoid):
            return h.sigmoid_()
        if isinstance(layer, nn.Tanh):
            return h.tanh_()
        return layer(h)


def seeded_generator(random_state, device) -> torch.Generator:
    """A torch generator on ``device`` seeded from an int, a ``RandomState`` or None (entropy)."""
    gen = torch.Generator(device=device)
    if random_state is None:
        gen.seed()
    elif isinstance(random_state, np.random.RandomState):
        gen.manual_seed(int(random_state.randint(0, 2**31 - 1)))
    else:
        gen.manual_seed(int(random_state))
    return gen


def mc_dropout_predict(
    module: nn.Module,
    X,
    n_passes: int = 100,
    *,
    mode: str = "network",
    random_state=None,
    batch_rows: int | None = None,
    return_samples: bool = False,
    output_transform=None,
    device="cpu",
    ddof: int = 1,
    progress=None,
    fold: bool = True,
):
    """Mean and standard deviation of ``n_passes`` stochastic dropout passes.

    Parameters
    ----------
    module : nn.Module
        The trained network. It is put in eval mode (BatchNorm uses its
        running statistics); only its dropout layers are made stochastic.
    X : array-like or torch.Tensor of shape (n_samples, ...)
        Inputs, converted to float32.
    n_passes : int, default=100
        Number of stochastic passes (the M-dwarf paper uses 100).
    mode : {"network", "per_sample"}, default="network"
        Mask sampling scheme, see the module docstring.
    random_state : int, numpy RandomState or None
        Seed of the dropout masks; a fixed value gives identical results
        on every call.
    batch_rows : int, optional
        Upper bound on ``n_passes * rows`` evaluated in one forward call, which
        bounds the memory use (about ``batch_rows * widest_layer * 4`` bytes).
        Default: 2**15 on the folded path (cache-sized chunks measured
        fastest on a 2-core machine; its buffers are reused so memory stays
        flat) and 2**20 with hooks.
    return_samples : bool, default=False
        Also return all passes as an array of shape ``(n_passes, n_samples, ...)``
        (memory: ``n_passes`` times the output).
    output_transform : callable, optional
        Applied to each pass's raw output tensor before the statistics (for
        example to undo a target scaling).
    device : str or torch.device, default="cpu"
    ddof : int, default=1
        Delta degrees of freedom of the standard deviation over passes.
    progress : callable, optional
        Called as ``progress(n_done)`` after each chunk (e.g. ``tqdm.update``).
    fold : bool, default=True
        In "network" mode, evaluate a Sequential MLP (Linear, BatchNorm1d,
        Dropout and elementwise activations only) through its folded affine
        maps (see ``_FoldedPasses``): same numbers as the hooked forward pass
        up to float rounding, many times faster. Other modules always use hooks.

    Returns
    -------
    mean, std : ndarray
        Arrays of shape ``(n_samples, *output_shape)``.
    samples : ndarray, optional
        Only if ``return_samples``.
    """
    if mode not in MC_MODES:
        raise ValueError(f"mode must be one of {MC_MODES}, got {mode!r}.")
    n_passes = int(n_passes)
    if n_passes < 1:
        raise ValueError(f"n_passes must be >= 1, got {n_passes}.")
    if n_passes - ddof < 1:
        raise ValueError(f"n_passes={n_passes} is too few for a std with ddof={ddof}.")
    x_all = torch.as_tensor(X if torch.is_tensor(X) else np.asarray(X)).to(torch.float32)
    n = x_all.shape[0]
    gen = seeded_generator(random_state, device)

    was_training = module.training
    module.eval()
    folded = None
    if fold and mode == "network" and _foldable(module):
        folded = _FoldedPasses(module, n_passes, gen, device)
    if batch_rows is None:
        batch_rows = 2**15 if folded is not None else 2**20
    chunk = max(1, int(batch_rows) // n_passes)
    # Results go into arrays allocated once: keeping thousands of small
    # per-chunk tensors alive between large temporaries fragments glibc's heap
    # (resident memory grew ~8 MB per chunk before this).
    mean_all = std_all = samples_all = None
    try:
        hooks = DropoutHooks(module, n_passes, mode, gen) if folded is None else nullcontext()
        with torch.inference_mode(), hooks:
            for start in range(0, n, chunk):
                xb = x_all[start : start + chunk].to(device)
                rows = xb.shape[0]
                if folded is not None:
                    out = folded(xb.reshape(rows, -1))
                    if out.dim() == 2:  # no dropout at all: every pass is the same
                        out = out.unsqueeze(0).expand(n_passes, rows, out.shape[-1])
                    out = out.reshape(n_passes * rows, -1)  # pass-major
                else:
                    rep = xb.unsqueeze(0).expand((n_passes,) + tuple(xb.shape))
                    out = module(rep.reshape((n_passes * rows,) + tuple(xb.shape[1:])))
                if output_transform is not None:
                    out = output_transform(out)
                out = out.reshape((n_passes, rows) + tuple(out.shape[1:])).float()
                if n_passes > 1:
                    var, mean = torch.var_mean(out, dim=0, correction=ddof)
                    std = var.sqrt_()
                else:
                    mean, std = out[0], torch.zeros_like(out[0])
                if mean_all is None:
                    tail = tuple(mean.shape[1:])
                    mean_all = np.empty((n,) + tail, dtype=np.float32)
                    std_all = np.empty((n,) + tail, dtype=np.float32)
                    if return_samples:
                        samples_all = np.empty((n_passes, n) + tail, dtype=np.float32)
                mean_all[start : start + rows] = mean.cpu().numpy()
                std_all[start : start + rows] = std.cpu().numpy()
                if return_samples:
                    samples_all[:, start : start + rows] = out.cpu().numpy()
                if progress is not None:
                    progress(rows)
    finally:
        module.train(was_training)
    if n == 0:
        raise ValueError("Cannot run MC dropout on 0 samples.")
    if return_samples:
        return mean_all, std_all, samples_all
    return mean_all, std_all

