"""Builders for the torch modules shared by skstellar's networks.

``build_cnn1d`` makes the 1-D convolutional networks of the spectral methods
(blocks of Conv1d layers each followed by max pooling, then a dense head).

``build_mlp`` makes the fully connected networks used by every photometric
method (M-dwarf metallicity, photo-D moments network, XP uncertain NN, the
Payne emulator): widths, per-layer activations, batch normalisation (before
or after the activation), dropout, bias on/off and an output activation are
all arguments, so a paper's exact architecture is a call, not a class.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn

from ..parameters import Satisfies

__all__ = ["ACTIVATION", "ACTIVATIONS", "make_activation", "build_mlp", "build_cnn1d",
           "cnn1d_output_length", "count_parameters"]


class _Linear(nn.Module):
    """Identity activation (the paper's "linear" activation), named for printing."""

    def forward(self, x):  # noqa: D401
        return x

    def extra_repr(self):
        return "identity"


def _leaky_relu(slope=0.01):
    return nn.LeakyReLU(negative_slope=slope)


#: Activation names accepted by :func:`make_activation` (case-insensitive).
ACTIVATIONS = {
    "linear": _Linear,
    "identity": _Linear,
    "none": _Linear,
    "relu": nn.ReLU,
    "leaky_relu": _leaky_relu,
    "gelu": nn.GELU,
    "softsign": nn.Softsign,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
}


def make_activation(spec) -> nn.Module:
    """Return a fresh activation module from a name, a module class or an instance.

    Parameters
    ----------
    spec : str, type, nn.Module or None
        A name from :data:`ACTIVATIONS` (``"leaky_relu:0.1"`` sets the negative
        slope), an ``nn.Module`` subclass (instantiated without arguments), a
        module instance (deep-copied so layers never share state) or ``None``
        for the identity.
    """
    if spec is None:
        return _Linear()
    if isinstance(spec, nn.Module):
        return copy.deepcopy(spec)
    if isinstance(spec, type) and issubclass(spec, nn.Module):
        return spec()
    if isinstance(spec, str):
        name, _, arg = spec.strip().lower().partition(":")
        if name not in ACTIVATIONS:
            raise ValueError(
                f"Unknown activation {spec!r}; choose one of {sorted(ACTIVATIONS)}, "
                "an nn.Module class or an nn.Module instance."
            )
        if arg:
            if name != "leaky_relu":
                raise ValueError(f"Activation {name!r} takes no argument (got {spec!r}).")
            return _leaky_relu(float(arg))
        return ACTIVATIONS[name]()
    raise TypeError(f"Cannot make an activation from {spec!r} ({type(spec).__name__}).")


#: The constraint of an activation parameter (see :func:`make_activation`).
ACTIVATION = Satisfies(
    make_activation,
    "an activation name (e.g. 'relu', 'leaky_relu:0.1') or an nn.Module class or instance",
)


def _per_layer(value, n, name):
    """Broadcast a scalar/str option to ``n`` hidden layers, or check a sequence's length."""
    if (isinstance(value, (str, nn.Module, type)) or value is None
            or not isinstance(value, Sequence)):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries but there are {n} hidden layers.")
    return value


def build_mlp(
    n_inputs: int,
    hidden_sizes: Sequence[int],
    n_outputs: int,
    *,
    activation="relu",
    output_activation=None,
    batch_norm=False,
    batch_norm_position="before_activation",
    input_batch_norm=False,
    dropout=0.0,
    bias=True,
    output_bias=True,
) -> nn.Sequential:
    """Build a multilayer perceptron as an ``nn.Sequential``.

    Each hidden block is ``Linear -> [BatchNorm] -> activation -> [Dropout]``
    (or ``Linear -> activation -> [BatchNorm] -> [Dropout]`` with
    ``batch_norm_position="after_activation"``), followed by a final
    ``Linear -> output_activation``.

    Parameters
    ----------
    n_inputs, n_outputs : int
        Number of input features and of outputs.
    hidden_sizes : sequence of int
        Width of each hidden layer; empty for a linear model.
    activation : str, nn.Module or sequence of those
        Hidden activation(s), one for all layers or one per layer
        (see :func:`make_activation`).
    output_activation : str, nn.Module or None
        Activation applied to the outputs (``"tanh"`` bounds them to (-1, 1)).
    batch_norm : bool or sequence of bool
        Batch normalisation in each hidden block.
    batch_norm_position : {"before_activation", "after_activation"}
        Where the BatchNorm sits in a hidden block.
    input_batch_norm : bool
        Put a ``BatchNorm1d`` on the raw inputs (the M-dwarf paper's network).
    dropout : float or sequence of float
        Dropout probability after each hidden block (0 disables it).
    bias : bool or sequence of bool
        Bias in the hidden ``Linear`` layers.
    output_bias : bool
        Bias in the output ``Linear`` layer.

    Returns
    -------
    nn.Sequential
    """
    hidden_sizes = [int(h) for h in hidden_sizes]
    if n_inputs < 1 or n_outputs < 1 or any(h < 1 for h in hidden_sizes):
        raise ValueError(
            f"Layer sizes must be positive: n_inputs={n_inputs}, hidden={hidden_sizes}, "
            f"n_outputs={n_outputs}."
        )
    if batch_norm_position not in ("before_activation", "after_activation"):
        raise ValueError(
            "batch_norm_position must be 'before_activation' or 'after_activation', "
            f"got {batch_norm_position!r}."
        )
    n_hidden = len(hidden_sizes)
    acts = _per_layer(activation, n_hidden, "activation")
    bns = _per_layer(batch_norm, n_hidden, "batch_norm")
    drops = _per_layer(dropout, n_hidden, "dropout")
    biases = _per_layer(bias, n_hidden, "bias")

    layers: list[nn.Module] = []
    if input_batch_norm:
        layers.append(nn.BatchNorm1d(n_inputs))
    width = n_inputs
    for size, act, bn, p, b in zip(hidden_sizes, acts, bns, drops, biases):
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}.")
        layers.append(nn.Linear(width, size, bias=bool(b)))
        if bn and batch_norm_position == "before_activation":
            layers.append(nn.BatchNorm1d(size))
        layers.append(make_activation(act))
        if bn and batch_norm_position == "after_activation":
            layers.append(nn.BatchNorm1d(size))
        if p > 0:
            layers.append(nn.Dropout(float(p)))
        width = size
    layers.append(nn.Linear(width, n_outputs, bias=bool(output_bias)))
    if output_activation is not None:
        layers.append(make_activation(output_activation))
    return nn.Sequential(*layers)


def cnn1d_output_length(n_pixels, n_blocks, convs_per_block=2, kernel_size=3, padding=0,
                        pool_size=3, pool_stride=3):
    """Length of the signal after the convolutional blocks of :func:`build_cnn1d`.

    Each Conv1d (stride 1) maps L -> L + 2 padding - kernel_size + 1; each
    max pool maps L -> floor((L - pool_size) / pool_stride) + 1.
    """
    length = int(n_pixels)
    for _ in range(n_blocks):
        length += convs_per_block * (2 * padding - kernel_size + 1)
        length = (length - pool_size) // pool_stride + 1
        if length < 1:
            break
    return length


def build_cnn1d(
    n_pixels: int,
    n_outputs: int,
    *,
    channels: Sequence[int] = (16, 32, 64, 128),
    convs_per_block: int = 2,
    kernel_size: int = 3,
    padding: int = 0,
    pool_size: int = 3,
    pool_stride: int = 3,
    activation="relu",
    dropout: float = 0.0,
    hidden_sizes: Sequence[int] = (),
    output_activation=None,
) -> nn.Sequential:
    """Build a 1-D CNN for spectra of ``n_pixels`` pixels.

    ``(batch, n_pixels) -> unflatten -> [Conv1d -> act] x convs_per_block ->
    MaxPool1d`` for each entry of ``channels``, then ``Flatten -> [Dropout]
    -> [Linear -> act]* -> Linear(n_outputs)``. With the defaults this is
    the galaxy gas-metallicity network of the LAMOST CNN paper (Sect. 3.1):
    four blocks of two Conv1d (kernel 3, stride 1, no padding, ReLU) with
    16, 32, 64, 128 channels, MaxPool1d(3, stride 3) after each, and one
    fully connected output layer (4201 pixels -> 128 x 49 = 6272 features).

    Parameters
    ----------
    n_pixels : int
        Length of the input spectra (whatever the resampler produced).
    n_outputs : int
    channels : sequence of int
        Output channels of the convolutions of each block.
    convs_per_block, kernel_size, padding, pool_size, pool_stride : int
    activation : str or nn.Module
        Activation after every convolution (and hidden dense layer).
    dropout : float
        Dropout before the dense head (0 = none, the paper; > 0 enables
        Monte Carlo dropout uncertainties).
    hidden_sizes : sequence of int
        Optional hidden dense layers before the output layer.
    output_activation : str or None

    Returns
    -------
    nn.Sequential
    """
    length = cnn1d_output_length(n_pixels, len(channels), convs_per_block, kernel_size, padding,
                                 pool_size, pool_stride)
    if length < 1:
        raise ValueError(
            f"Spectra of {n_pixels} pixels are too short for {len(channels)} blocks of "
            f"{convs_per_block} convolutions (kernel {kernel_size}) and pooling {pool_size}/"
            f"{pool_stride}: use fewer blocks or longer spectra."
        )
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    layers: list[nn.Module] = [nn.Unflatten(1, (1, int(n_pixels)))]
    in_ch = 1
    for out_ch in channels:
        for _ in range(convs_per_block):
            layers.append(nn.Conv1d(in_ch, int(out_ch), kernel_size, stride=1, padding=padding))
            layers.append(make_activation(activation))
            in_ch = int(out_ch)
        layers.append(nn.MaxPool1d(pool_size, stride=pool_stride))
    layers.append(nn.Flatten())
    if dropout > 0:
        layers.append(nn.Dropout(float(dropout)))
    width = in_ch * length
    for h in hidden_sizes:
        layers += [nn.Linear(width, int(h)), make_activation(activation)]
        width = int(h)
    layers.append(nn.Linear(width, n_outputs))
    if output_activation is not None:
        layers.append(make_activation(output_activation))
    return nn.Sequential(*layers)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

