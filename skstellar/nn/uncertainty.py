"""Input-uncertainty propagation through a network and the Gaussian-likelihood loss.

Pieces shared by estimators whose inputs carry covariances (the Gaia XP
uncertain network first):

* :func:`batched_jacobian` -- ``d outputs / d inputs`` for a whole batch with
  one batched backward call (``is_grads_batched``), differentiable when
  ``create_graph=True`` so the loss can train through it;
* :class:`TorchCovariance` -- a :class:`~skstellar.covariance.CovariantFeatures`
  covariance moved to torch (diagonal part plus dense blocks) with
  :meth:`TorchCovariance.propagate`, ``diag(J Sigma J^T)`` per sample;
* :func:`gaussian_nll` -- ``mean_i sum_j [0.5 r^2 exp(-s) + 0.5 s]`` with
  ``s = ln(sum of variances)`` and missing labels masked (Gaia XP paper,
  Eq. 9-10).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["batched_jacobian", "mlp_forward_with_jacobian", "TorchCovariance", "gaussian_nll"]


def batched_jacobian(outputs, inputs, create_graph=False):
    """Per-sample Jacobian of ``outputs`` (rows independent) w.r.t. ``inputs``.

    Parameters
    ----------
    outputs : Tensor of shape (n, L)
        Computed from ``inputs`` with rows that do not interact (no
        BatchNorm in training mode).
    inputs : Tensor of shape (n, d), ``requires_grad=True``
    create_graph : bool, default=False
        Keep the graph so a loss built on the Jacobian can be differentiated.

    Returns
    -------
    Tensor of shape (n, L, d)
    """
    n, L = outputs.shape
    eye = torch.eye(L, dtype=outputs.dtype, device=outputs.device)
    grad_outputs = eye[:, None, :].expand(L, n, L)
    try:
        (J,) = torch.autograd.grad(
            outputs, inputs, grad_outputs=grad_outputs, is_grads_batched=True,
            create_graph=create_graph, retain_graph=True,
        )
    except RuntimeError:  # pragma: no cover - ops without batching rules
        J = torch.stack([
            torch.autograd.grad(outputs[:, j].sum(), inputs, create_graph=create_graph,
                                retain_graph=True)[0]
            for j in range(L)
        ])
    return J.permute(1, 0, 2)


_PIECEWISE_LINEAR = (torch.nn.ReLU, torch.nn.LeakyReLU, torch.nn.Identity)


def _supported_mlp(module):
    from .builders import _Linear

    if not isinstance(module, torch.nn.Sequential):
        return False
    for layer in module:
        if isinstance(layer, (torch.nn.Linear, torch.nn.Dropout, _Linear) + _PIECEWISE_LINEAR):
            continue
        if isinstance(layer, (torch.nn.GELU, torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.Softsign,
                              torch.nn.ELU, torch.nn.SiLU, torch.nn.Softplus)):
            continue
        return False
    return True


def mlp_forward_with_jacobian(module, x, n_outputs, create_graph=True, dropout_fn=None):
    """Outputs of a Sequential MLP and the Jacobian of its first outputs, in one pass.

    For ``Linear -> activation -> Dropout -> ... -> Linear`` networks the
    Jacobian is ``W_out[:L] diag(g_k) W_k ... diag(g_1) W_1`` with ``g`` the
    activation derivatives times the dropout mask of *this* forward pass.
    Evaluated output-side first as batched matrix products, it costs about
    as much as ``L`` backward passes but runs as dense GEMMs, and its
    gradient is an ordinary backward pass (no double backward through
    autograd's graph). Dropout layers sample their masks here (training
    mode) exactly as ``nn.Dropout`` would.

    Parameters
    ----------
    module : nn.Sequential
        Linear layers, elementwise activations and Dropout only (see
        :func:`batched_jacobian` for anything else).
    x : Tensor of shape (n, d)
    n_outputs : int
        Jacobian of outputs ``[:n_outputs]``.
    create_graph : bool
        Keep the graph through the Jacobian (for training).
    dropout_fn : callable, optional
        ``dropout_fn(layer, h) -> multiplier`` (broadcastable to ``h``)
        replacing the dropout layers' own sampling, e.g. the per-pass masks
        of Monte Carlo dropout at prediction.

    Returns
    -------
    out : Tensor of shape (n, n_out_total)
    J : Tensor of shape (n, n_outputs, d)
    """
    from .builders import _Linear

    if not _supported_mlp(module):
        raise TypeError("mlp_forward_with_jacobian needs a Sequential of Linear, elementwise "
                        "activations and Dropout; use batched_jacobian.")
    linears, gains = [], []  # gains[k]: per-row elementwise factor after linear k
    h = x
    for layer in module:
        if isinstance(layer, torch.nn.Linear):
            h = layer(h)
            linears.append(layer)
            gains.append(None)
        elif isinstance(layer, (torch.nn.Identity, _Linear)):
            continue
        elif isinstance(layer, torch.nn.Dropout):
            if dropout_fn is not None and layer.p > 0:
                mask = dropout_fn(layer, h)
                h = h * mask
                gains[-1] = mask if gains[-1] is None else gains[-1] * mask
            elif layer.training and layer.p > 0:
                keep = 1.0 - layer.p
                mask = torch.empty_like(h).bernoulli_(keep).div_(keep)
                h = h * mask
                gains[-1] = mask if gains[-1] is None else gains[-1] * mask
        else:  # elementwise activation
            pre = h
            if isinstance(layer, torch.nn.ReLU):
                g = (pre > 0).to(pre.dtype)
                h = layer(pre)
            elif isinstance(layer, torch.nn.LeakyReLU):
                g = torch.where(pre > 0, torch.ones_like(pre),
                                torch.full_like(pre, layer.negative_slope))
                h = layer(pre)
            else:
                with torch.enable_grad():
                    p = pre if pre.requires_grad else pre.detach().requires_grad_(True)
                    h = layer(p)
                    (g,) = torch.autograd.grad(h, p, torch.ones_like(h), create_graph=create_graph)
                if p is not pre:
                    h = layer(pre)
            gains[-1] = g if gains[-1] is None else gains[-1] * g
    # output side first: A = W_out[:L]; then A <- (A * g_k) @ W_k for k = K-1..0
    A = linears[-1].weight[:n_outputs]  # (L, h)
    A = A.unsqueeze(0).expand(x.shape[0], -1, -1)
    if gains[-1] is not None:  # an activation/dropout after the output layer
        A = A * gains[-1][:, :n_outputs, None]
    for k in range(len(linears) - 2, -1, -1):
        if gains[k] is not None:
            A = A * gains[k].unsqueeze(1)
        A = torch.matmul(A, linears[k].weight)
    if not create_graph:
        A = A.detach()
    return h, A


class TorchCovariance:
    """Per-sample block-diagonal covariance as torch tensors.

    1 x 1 blocks are merged into one diagonal-variance tensor; larger blocks
    keep their packed lower triangles and are unpacked per batch.

    Parameters
    ----------
    features : CovariantFeatures
    device : str or torch.device
    dtype : torch dtype, default float32
    """

    def __init__(self, features, device="cpu", dtype=torch.float32):
        n, d = features.shape
        diag = np.zeros((n, d), dtype=np.float32)
        has_diag = False
        self.blocks = []
        for cols, packed in features.blocks:
            k = len(cols)
            if k == 1:
                diag[:, cols[0]] = packed[:, 0]
                has_diag = True
                continue
            i, j = np.tril_indices(k)
            idx = np.zeros((k, k), dtype=np.int64)
            idx[i, j] = np.arange(len(i))
            idx[j, i] = np.arange(len(i))
            contiguous = bool(np.all(np.diff(cols) == 1))
            self.blocks.append((
                slice(int(cols[0]), int(cols[0]) + k) if contiguous
                else torch.as_tensor(cols, dtype=torch.long, device=device),
                torch.as_tensor(packed, dtype=dtype, device=device),
                torch.as_tensor(idx, device=device),
            ))
        self.diag = torch.as_tensor(diag, dtype=dtype, device=device) if has_diag else None
        self.n = n

    def __len__(self):
        return self.n

    def propagate(self, J, rows=None):
        """``diag(J Sigma J^T)`` for each sample.

        Parameters
        ----------
        J : Tensor of shape (m, L, d) or (P, m, L, d)
            Jacobians of the selected rows (optionally for P networks sharing
            the same inputs, e.g. MC-dropout passes).
        rows : index Tensor/slice, optional
            Rows of the stored covariance matching ``J`` (default all).

        Returns
        -------
        Tensor of shape (m, L) or (P, m, L)
        """
        rows = slice(None) if rows is None else rows
        out = None
        if self.diag is not None:
            dg = self.diag[rows] if isinstance(rows, slice) else self.diag.index_select(0, rows)
            out = (J * J * dg.unsqueeze(-2)).sum(-1)
        for cols, packed, idx in self.blocks:
            k = idx.shape[0]
            sel = packed if isinstance(rows, slice) and rows == slice(None) else (
                packed[rows] if isinstance(rows, slice) else packed.index_select(0, rows))
            # index_select on the flattened map is ~6x faster than advanced indexing
            S = sel.index_select(1, idx.reshape(-1)).view(-1, k, k)  # (m, k, k)
            Jb = J[..., cols]  # (..., m, L, k)
            if Jb.dim() == 4:
                # P networks share S: fold P into the rows of one bmm per star
                # (broadcasting S over P would copy it P times)
                P, m, L, _ = Jb.shape
                Jm = Jb.permute(1, 0, 2, 3).reshape(m, P * L, k)
                term = (torch.bmm(Jm, S) * Jm).sum(-1).view(m, P, L).permute(1, 0, 2)
            else:
                # (J S) J^T row by row with a batched matmul
                term = (torch.matmul(Jb, S) * Jb).sum(-1)
            out = term if out is None else out + term
        if out is None:
            out = torch.zeros(J.shape[:-1], dtype=J.dtype, device=J.device)
        return out

    def take(self, rows):
        """A new TorchCovariance restricted to ``rows`` (index tensor)."""
        new = TorchCovariance.__new__(TorchCovariance)
        new.diag = None if self.diag is None else self.diag[rows]
        new.blocks = [(c, p[rows], i) for c, p, i in self.blocks]
        new.n = len(rows)
        return new


def gaussian_nll(pred, target, variance, mask=None):
    """Gaussian negative log-likelihood with a per-element variance.

    ``J = mean_i sum_j mask_ij [0.5 (pred - target)^2 exp(-s) + 0.5 s]``,
    ``s = ln(variance)`` (Eq. 9-10 of the Gaia XP paper, whose ``variance``
    is ``sigma_y^2 + sigma_model^2 + sigma_input^2 + sigma_excess^2``).

    Parameters
    ----------
    pred, target, variance : Tensor of shape (n, L)
        ``target`` may hold anything where ``mask`` is False.
    mask : bool Tensor of shape (n, L), optional
        True where a label is present.

    Returns
    -------
    Tensor (scalar)
    """
    s = torch.log(variance)
    r2 = (pred - target) ** 2
    term = 0.5 * r2 * torch.exp(-s) + 0.5 * s
    if mask is not None:
        term = torch.where(mask, term, torch.zeros_like(term))
    return term.sum(dim=1).mean()
