"""Context managers for torch's intra-op thread count.

They set the count for a block and restore the caller's setting: for
small, memory-bound tensor operations one CPU thread is often faster than
several (see :class:`training_threads`).
"""

from __future__ import annotations

import torch

__all__ = ["torch_threads", "training_threads"]


class torch_threads:
    """Set torch's intra-op thread count inside a ``with`` block, then restore it.

    Parameters
    ----------
    n : int or None
        Threads to use inside the block; None leaves torch's setting alone.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """

    def __init__(self, n):
        self.n = None if n is None else int(n)
        self.old = None

    def __enter__(self):
        if self.n is not None and self.n != torch.get_num_threads():
            self.old = torch.get_num_threads()
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            torch.set_num_threads(self.old)
            self.old = None
        return False


class training_threads(torch_threads):
    """Train small mini-batches on one CPU thread, inside a ``with`` block.

    For small dense networks and batches (<= ``small`` rows) torch's intra-op
    thread synchronisation costs more than it saves: on a 2-core machine one
    thread trains several times faster per epoch, and much faster still when
    other processes share the cores. Larger batches keep torch's thread
    setting. The previous setting is restored afterwards.

    Parameters
    ----------
    batch_size : int
        Rows per training batch.
    small : int, default=256
        Largest batch trained on one thread.
    enabled : bool, default=True
        False leaves torch's setting alone.
    """

    def __init__(self, batch_size, small=256, enabled=True):
        super().__init__(1 if (enabled and batch_size <= small) else None)
