"""Context manager for torch's intra-op thread count.

The estimators here run small, memory-bound tensor operations for which one
CPU thread is often faster than several (thread synchronisation costs more
than it saves, above all when other processes share the cores). They set
the count for the duration of a call and restore the caller's setting.
"""

from __future__ import annotations

import torch

__all__ = ["torch_threads"]


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
