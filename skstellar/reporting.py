"""Tables, JSON files and timings for the reports of the CLI, demos and benchmarks.

This module sits below :mod:`skstellar.cli` and the per-method evaluation
modules so that both can format, write and time their figures the same way
without importing each other.
"""

from __future__ import annotations

import json
import time

__all__ = ["format_table", "timed", "write_json"]


def format_table(header, rows):
    r"""Format rows as a boxed, left-aligned plain-text table.

    Parameters
    ----------
    header : sequence
        Column titles.
    rows : sequence of sequence
        Table rows; each cell is converted with ``str``. Every row must have
        as many cells as ``header``.

    Returns
    -------
    str
        The table, lines separated by ``"\n"`` (no trailing newline).

    Raises
    ------
    ValueError
        If a row has a different number of cells than the header.
    """
    header = list(header)
    rows = [list(r) for r in rows]
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise ValueError(
                f"Row {i} has {len(r)} cells but the header has {len(header)} columns.")
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(r):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"

    return "\n".join([line, fmt(header), line] + [fmt(r) for r in rows] + [line])


def write_json(path, results, out=print, default=None):
    """Write ``results`` to ``path`` as indented JSON when ``path`` is given, and say so.

    Parameters
    ----------
    path : str or path-like or None
        Output file; None or "" writes nothing.
    results : dict
        JSON-serialisable figures.
    out : callable, default=print
        Receives the line ``"Wrote <path>"``.
    default : callable, optional
        Passed to :func:`json.dump` for objects it cannot serialise (``float``
        for numpy scalars).
    """
    if not path:
        return
    with open(path, "w") as fh:
        json.dump(results, fh, indent=2, default=default)
    out(f"Wrote {path}")


def timed(func, *args, **kwargs):
    """Call ``func(*args, **kwargs)`` and time it.

    Returns
    -------
    result : object
        What ``func`` returned.
    seconds : float
        Its wall-clock time [s] (``time.perf_counter``).
    """
    t0 = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - t0
