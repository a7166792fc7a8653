"""A vectorised mini-batch loader for in-memory arrays, used as skorch's iterator.

skorch's default ``DataLoader`` fetches a mini-batch row by row
(``Dataset.__getitem__`` then ``collate``), which for the small dense
networks of photometric methods costs more than the forward and backward
passes themselves. :class:`ArrayBatchLoader` slices whole batches out of
tensors with one index operation: same batches, same seeded shuffling
semantics, several times faster per epoch.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ArrayBatchLoader"]


def _to_tensor(a):
    if a is None:
        return None
    if isinstance(a, dict):
        return {k: _to_tensor(v) for k, v in a.items()}
    return a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))


def _take(a, idx):
    if a is None:
        return None
    return {k: v[idx] for k, v in a.items()} if isinstance(a, dict) else a[idx]


def _length(a):
    return len(next(iter(a.values())) if isinstance(a, dict) else a)


class ArrayBatchLoader:
    """Iterate over ``(X_batch, y_batch)`` of a skorch ``Dataset`` by slicing.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
        Holds ``X`` (array, tensor or dict of those) and ``y`` (or None).
    batch_size : int, default=128
    shuffle : bool, default=False
        Draw a new permutation each epoch from ``generator``.
    generator : torch.Generator, optional
        Seeded generator for the shuffling.
    drop_last : bool, default=False
        Drop a final incomplete batch.
    **kwargs
        Other DataLoader arguments (``num_workers``, ...) are ignored.
    """

    def __init__(self, dataset, batch_size=128, shuffle=False, generator=None,
                 drop_last=False, **kwargs):
        self.X = _to_tensor(dataset.X)
        self.y = _to_tensor(getattr(dataset, "y", None))
        self.n = _length(self.X)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.generator = generator
        self.drop_last = drop_last

    def __len__(self):
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else None
        for start in range(0, self.n, self.batch_size):
            stop = start + self.batch_size
            if stop > self.n and self.drop_last:
                break
            idx = order[start:stop] if order is not None else slice(start, stop)
            xb = _take(self.X, idx)
            yb = _take(self.y, idx)
            if yb is None:  # skorch expects a placeholder target when predicting
                yb = torch.zeros(_length(xb))
            yield xb, yb
