"""Torch modules of Cycle-StarNet: domain/shared/split encoders and decoders, discriminators.

Cycle-StarNet (O'Briain et al. 2021; Sect. 3.1 of the LAMOST M-dwarf paper
``mdwarf-cycle-starnet-lamost``) maps spectra between a *synthetic* domain
(model spectra) and an *observed* domain (survey spectra) through

* two low-level, domain-specific encoder/decoder pairs (one per domain),
* one high-level encoder/decoder pair shared by both domains, whose output is
  the *shared latent* ``z_sh`` of shape ``(latent_channels, n_latent)``,
* an observed-only *split* encoder/decoder giving a small *split latent*
  ``z_sp`` of shape ``(split_channels, n_latent)`` that holds what the
  synthetic domain cannot express (the "synthetic gap"); the observed
  decoder reads the decoded shared and split features together,
* one discriminator per domain that judges (spectrum, latent) pairs
  (Sect. 3.2, Eq. 5) and returns one logit per latent position.

Everything here is plain ``torch.nn``; the training loop, losses and the
scikit-learn interface live in :mod:`skstellar.cyclestarnet.adapter`.

Lengths
-------
All convolutions are unpadded ("valid"), so the encoders map ``L`` pixels to
``floor((L - k) / s) + 1`` per layer and the transposed convolutions map back
``m -> (m - 1) s + k``. A round trip is exact only for the pixel counts
``L(m) = prod(strides) * m + B`` (``B`` fixed by the kernels and strides;
``256 m + 1023`` for the reference APOGEE configuration with kernel 7 and
strides 4, 4, 4, 2, 2). :func:`closing_length` gives the smallest such length
that holds a spectrum; the adapter pads spectra up to it and crops back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from ..nn.builders import make_activation

__all__ = [
    "CycleStarNetGenerator",
    "PairDiscriminator",
    "closing_length",
    "decoded_length",
    "encoded_length",
]

#: LeakyReLU slope of every hidden layer (the reference code's 0.1).
LEAKY = "leaky_relu:0.1"


def _check_conv_geometry(kernel_size, strides):
    k = int(kernel_size)
    strides = [int(s) for s in strides]
    if k < 1 or any(s < 1 for s in strides):
        raise ValueError(f"kernel_size and strides must be >= 1; got {k} and {strides}.")
    if any(s > k for s in strides):
        raise ValueError(
            f"Every stride must be <= kernel_size (got strides {strides}, kernel {k}): a "
            "transposed convolution with stride > kernel leaves pixels it never writes."
        )
    return k, strides


def encoded_length(n_pixels: int, kernel_size: int, strides: Sequence[int]) -> int:
    """Length after the unpadded strided convolutions (0 if the input is too short).

    Parameters
    ----------
    n_pixels : int
        Input length [pixels].
    kernel_size : int
        Kernel of every convolution [pixels].
    strides : sequence of int
        Stride of each convolution, in order.

    Returns
    -------
    int
        ``floor((L - k) / s) + 1`` applied for each stride.
    """
    k, strides = _check_conv_geometry(kernel_size, strides)
    length = int(n_pixels)
    for s in strides:
        if length < k:
            return 0
        length = (length - k) // s + 1
    return length


def decoded_length(n_latent: int, kernel_size: int, strides: Sequence[int]) -> int:
    """Length produced by the mirrored transposed convolutions from ``n_latent`` positions.

    Parameters
    ----------
    n_latent : int
        Latent length [positions].
    kernel_size : int
    strides : sequence of int
        Strides of the *encoder*, in encoding order.

    Returns
    -------
    int
        ``(m - 1) s + k`` applied from the last stride back to the first.
    """
    k, strides = _check_conv_geometry(kernel_size, strides)
    length = int(n_latent)
    for s in reversed(strides):
        length = (length - 1) * s + k
    return length


def closing_length(n_pixels: int, kernel_size: int, strides: Sequence[int],
                   min_latent: int = 2) -> tuple[int, int]:
    """Smallest padded length >= ``n_pixels`` on which encoder and decoder close.

    Parameters
    ----------
    n_pixels : int
        Number of pixels of the spectra.
    kernel_size : int
    strides : sequence of int
    min_latent : int, default=2
        Smallest latent length accepted (the instance normalisation of the
        shared latent needs more than one position).

    Returns
    -------
    padded_length : int
        ``L(m)``, the pixel count the networks work on.
    n_latent : int
        ``m``, the length of the latent spaces.

    Examples
    --------
    >>> closing_length(7167, 7, (4, 4, 4, 2, 2))   # the reference APOGEE setup
    (7167, 24)
    >>> closing_length(2901, 7, (4, 4, 2, 2, 2))   # skstellar's LAMOST default
    (3007, 19)
    """
    if int(n_pixels) < 1:
        raise ValueError(f"n_pixels must be >= 1, got {n_pixels}.")
    a = math.prod(int(s) for s in strides)
    b = decoded_length(0, kernel_size, strides)  # L(m) = a m + b
    m = max(int(min_latent), -(-(int(n_pixels) - b) // a))
    return a * m + b, m


def _conv_chain(channels, kernel_size, strides, *, last_activation=True, layer=nn.Conv1d):
    """``layer -> LeakyReLU`` (``Conv1d`` by default) for each consecutive pair of ``channels``."""
    layers: list[nn.Module] = []
    for i, (c_in, c_out, s) in enumerate(zip(channels[:-1], channels[1:], strides)):
        layers.append(layer(int(c_in), int(c_out), int(kernel_size), stride=int(s)))
        if i < len(channels) - 2 or last_activation:
            layers.append(make_activation(LEAKY))
    return layers


#: ``ConvTranspose1d -> LeakyReLU`` chains (the decoders).
_deconv_chain = partial(_conv_chain, layer=nn.ConvTranspose1d)


class CycleStarNetGenerator(nn.Module):
    """All encoders and decoders of Cycle-StarNet (the GAN's generator side).

    Spectra enter as ``(n, L)`` tensors with ``L`` a closing length (see
    :func:`closing_length`); the two domain encoders map them to
    ``domain_channels[-1]`` feature channels at ``L / prod(domain strides)``
    resolution; the shared encoder continues to the shared latent
    ``(latent_channels, m)`` (1x1 convolution, then instance normalisation as
    in the reference code); the split encoder reads the *observed* domain
    features and gives ``(split_channels, m)``. The shared decoder and the
    split decoder mirror them back to the domain-feature resolution; the
    synthetic decoder reads the shared features, the observed decoder the
    shared and split features concatenated (``domain_channels[-1] +
    split_width`` channels). Hidden layers use LeakyReLU(0.1); the outputs
    are linear.

    Parameters
    ----------
    domain_channels : sequence of int
        Output channels of the domain-encoder convolutions (mirrored by the
        domain decoders). Reference APOGEE configuration: (32, 64).
    shared_channels : sequence of int
        Output channels of the shared-encoder convolutions. Reference:
        (128, 256, 512).
    kernel_size : int
        Kernel of every (transposed) convolution [pixels]; reference 7.
    strides : sequence of int
        One stride per convolution: the domain layers first, then the shared
        (and split) layers. Reference: (4, 4, 4, 2, 2).
    latent_channels : int
        Channels of the shared latent; reference 25.
    split_channels : int
        Channels of the split latent; small (reference 4).
    split_width : int
        Hidden channels of the split encoder and decoder.
    latent_norm : bool
        Instance-normalise the shared latent (reference: yes).
    """

    def __init__(self, domain_channels=(16, 32), shared_channels=(64, 128, 128), kernel_size=7,
                 strides=(4, 4, 2, 2, 2), latent_channels=25, split_channels=4, split_width=32,
                 latent_norm=True):
        super().__init__()
        domain_channels = [int(c) for c in domain_channels]
        shared_channels = [int(c) for c in shared_channels]
        k, strides = _check_conv_geometry(kernel_size, strides)
        nd, ns = len(domain_channels), len(shared_channels)
        if nd < 1 or ns < 1:
            raise ValueError("domain_channels and shared_channels need at least one layer each.")
        if len(strides) != nd + ns:
            raise ValueError(
                f"strides has {len(strides)} entries but there are {nd} domain + {ns} shared "
                f"convolutions: give {nd + ns} strides."
            )
        if min(domain_channels + shared_channels + [int(latent_channels), int(split_width)]) < 1:
            raise ValueError("All channel counts must be >= 1.")
        if int(split_channels) < 0:
            raise ValueError(f"split_channels must be >= 0, got {split_channels}.")
        self.kernel_size = k
        self.strides = tuple(strides)
        self.domain_strides = tuple(strides[:nd])
        self.shared_strides = tuple(strides[nd:])
        self.latent_channels = int(latent_channels)
        self.split_channels = int(split_channels)
        feat = domain_channels[-1]
        dom_in = [1] + domain_channels
        dec_dom = list(reversed(dom_in))  # feat ... 1

        self.enc_synth = nn.Sequential(*_conv_chain(dom_in, k, self.domain_strides))
        self.enc_obs = nn.Sequential(*_conv_chain(dom_in, k, self.domain_strides))
        self.dec_synth = nn.Sequential(
            *_deconv_chain(dec_dom, k, self.domain_strides[::-1], last_activation=False))
        dec_obs = [feat + (int(split_width) if self.split_channels else 0)] + dec_dom[1:]
        self.dec_obs = nn.Sequential(
            *_deconv_chain(dec_obs, k, self.domain_strides[::-1], last_activation=False))

        sh = [feat] + shared_channels
        enc_shared = _conv_chain(sh, k, self.shared_strides)
        enc_shared.append(nn.Conv1d(sh[-1], self.latent_channels, 1))
        if latent_norm:
            enc_shared.append(nn.InstanceNorm1d(self.latent_channels))
        self.enc_shared = nn.Sequential(*enc_shared)
        self.dec_shared = nn.Sequential(
            nn.Conv1d(self.latent_channels, sh[-1], 1), make_activation(LEAKY),
            *_deconv_chain(list(reversed(sh)), k, self.shared_strides[::-1]),
        )
        if self.split_channels:
            sp = [feat] + [int(split_width)] * ns
            self.enc_split = nn.Sequential(
                *_conv_chain(sp, k, self.shared_strides),
                nn.Conv1d(int(split_width), self.split_channels, 1),
            )
            self.dec_split = nn.Sequential(
                nn.Conv1d(self.split_channels, int(split_width), 1), make_activation(LEAKY),
                *_deconv_chain([int(split_width)] * (ns + 1), k, self.shared_strides[::-1]),
            )
        else:
            self.enc_split = self.dec_split = None

    # ----------------------------------------------------------- encoders
    def encode_synth(self, x):
        """Shared latent of synthetic spectra ``x`` of shape (n, L)."""
        return self.enc_shared(self.enc_synth(x.unsqueeze(1)))

    def encode_obs(self, x, split=True):
        """Shared latent (and split latent) of observed spectra ``x`` of shape (n, L).

        Returns ``(z_shared, z_split)``; ``z_split`` is None with
        ``split=False`` or ``split_channels=0``.
        """
        h = self.enc_obs(x.unsqueeze(1))
        z_sp = self.enc_split(h) if (split and self.enc_split is not None) else None
        return self.enc_shared(h), z_sp

    def encode_split(self, x):
        """Split latent ``(n, split_channels, m)`` of observed spectra."""
        if self.enc_split is None:
            raise ValueError("This network has no split latent (split_channels=0).")
        return self.enc_split(self.enc_obs(x.unsqueeze(1)))

    # ----------------------------------------------------------- decoders
    def split_features(self, z_split):
        """Decoded split latent (domain-feature resolution), or None."""
        return None if self.dec_split is None else self.dec_split(z_split)

    def decode_synth(self, z_shared):
        """Synthetic-domain spectra (n, L) from shared latents."""
        return self.dec_synth(self.dec_shared(z_shared)).squeeze(1)

    def decode_obs(self, z_shared, z_split=None, split_features=None):
        """Observed-domain spectra (n, L) from shared and split latents.

        ``split_features`` (the output of :meth:`split_features`) may be
        given instead of ``z_split`` to reuse a decoded split latent.
        """
        h = self.dec_shared(z_shared)
        if self.dec_split is not None:
            if split_features is None:
                if z_split is None:
                    raise ValueError("The observed decoder needs a split latent.")
                split_features = self.dec_split(z_split)
            h = torch.cat([h, split_features], dim=1)
        return self.dec_obs(h).squeeze(1)

    def obs_to_synth(self, x):
        """Map observed spectra (n, L) to the synthetic domain."""
        return self.decode_synth(self.encode_obs(x, split=False)[0])

    def synth_to_obs(self, x, z_split=None):
        """Map synthetic spectra (n, L) to the observed domain with split latents ``z_split``."""
        return self.decode_obs(self.encode_synth(x), z_split)

    # ------------------------------------------------------------ training
    def cycle(self, x_synth, x_obs):
        """Every spectrum and latent one training step needs (Sect. 3.2 of the paper).

        The synthetic spectra are transferred to the observed domain with the
        split latents of the observed batch (row ``i`` with row ``i``: two
        independent random batches of equal size), so the transferred spectra
        carry split information drawn from the observed distribution; the
        observed -> synthetic -> observed cycle reuses each spectrum's own
        split latent, as in the reference code.

        Parameters
        ----------
        x_synth, x_obs : Tensor of shape (n, L)

        Returns
        -------
        dict of Tensor
            ``z_s``, ``z_o``, ``z_sp`` (latents), ``ss``, ``oo`` (within-domain
            reconstructions), ``os``, ``so`` (cross-domain transfers), ``sos``,
            ``oso`` (cycle reconstructions).
        """
        n = x_synth.shape[0]
        z_s = self.encode_synth(x_synth)
        z_o, z_sp = self.encode_obs(x_obs)
        g = self.dec_shared(torch.cat([z_s, z_o]))  # shared features of both batches at once
        f_sp = self.split_features(z_sp) if z_sp is not None else None

        def with_split(h, k):
            return h if f_sp is None else torch.cat([h, f_sp.repeat(k, 1, 1)], dim=1)

        to_synth = self.dec_synth(g).squeeze(1)           # [ss; os]
        to_obs = self.dec_obs(with_split(g, 2)).squeeze(1)  # [so; oo]
        ss, os_ = to_synth[:n], to_synth[n:]
        so, oo = to_obs[:n], to_obs[n:]
        # cycles: re-encode the transfers in the other domain, decode back
        z_so, _ = self.encode_obs(so, split=False)
        z_os = self.encode_synth(os_)
        g2 = self.dec_shared(torch.cat([z_so, z_os]))
        sos = self.dec_synth(g2[:n]).squeeze(1)
        oso = self.dec_obs(with_split(g2[n:], 1)).squeeze(1)
        return {"z_s": z_s, "z_o": z_o, "z_sp": z_sp, "ss": ss, "oo": oo, "os": os_,
                "so": so, "sos": sos, "oso": oso}

    @torch.no_grad()
    def tie_domains_(self):
        """Start the observed encoder/decoder as copies of the synthetic ones.

        The observed decoder's weights on the split features are set to
        zero, so that right after this call ``obs -> synth`` and
        ``obs -> obs`` are both the synthetic autoencoder. Returns self.
        """
        self.enc_obs.load_state_dict(self.enc_synth.state_dict())
        for d_obs, d_syn in zip(self.dec_obs, self.dec_synth):
            if isinstance(d_obs, nn.ConvTranspose1d):
                c = d_syn.weight.shape[0]
                d_obs.weight.zero_()
                d_obs.weight[:c].copy_(d_syn.weight)
                d_obs.bias.copy_(d_syn.bias)
        return self


class PairDiscriminator(nn.Module):
    """Judge a (spectrum, latent) pair: reconstruction ("real") or transfer ("fake").

    The spectrum goes through unpadded strided convolutions with the
    generator's kernel and strides (so it reaches the latent length ``m``);
    the latent goes through a 1x1 convolution; both feature maps are
    concatenated and reduced by two 1x1 convolutions to one logit per latent
    position (a patch discriminator: each position judges its part of the
    spectrum). LeakyReLU(0.1) everywhere.

    Parameters
    ----------
    channels : sequence of int
        Output channels of the spectrum-branch convolutions (one per stride).
    kernel_size : int
    strides : sequence of int
        Same length as ``channels``.
    latent_channels : int
        Channels of the latent it judges (shared, or shared + split for the
        observed domain).
    """

    def __init__(self, channels, kernel_size, strides, latent_channels):
        super().__init__()
        channels = [int(c) for c in channels]
        k, strides = _check_conv_geometry(kernel_size, strides)
        if len(channels) != len(strides):
            raise ValueError(
                f"The discriminator has {len(channels)} channel entries for "
                f"{len(strides)} strides."
            )
        width = channels[-1]
        self.spectrum = nn.Sequential(*_conv_chain([1] + channels, k, strides))
        self.latent = nn.Sequential(nn.Conv1d(int(latent_channels), width, 1),
                                    make_activation(LEAKY))
        self.head = nn.Sequential(nn.Conv1d(2 * width, width, 1), make_activation(LEAKY),
                                  nn.Conv1d(width, 1, 1))

    def forward(self, x, z):
        """Logits of shape (n, m) for spectra ``x`` (n, L) and latents ``z`` (n, c, m)."""
        h = torch.cat([self.spectrum(x.unsqueeze(1)), self.latent(z)], dim=1)
        return self.head(h).squeeze(1)
