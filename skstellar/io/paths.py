"""Locate the shared real-data folder (``../shared/data``) without network access.

The small real catalogues used by readers, tests and benchmarks live outside
the package, in a folder laid out as ``<data>/<subdir>/<files>``; see
:func:`shared_data_candidates` for where it is looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the folder that contains the data sub-folders.
DATA_ENV_VAR = "SKSTELLAR_DATA"

_REPO_ROOT = Path(__file__).resolve().parents[2]  # the directory above the package


def shared_data_candidates() -> list[Path]:
    """Folders searched for shared data, in search order.

    Returns
    -------
    list of pathlib.Path
        ``$SKSTELLAR_DATA`` (when set and non-empty), ``<cwd>/../shared/data``
        and ``<repo root>/../shared/data``, without duplicates. The folders
        need not exist.
    """
    env = os.environ.get(DATA_ENV_VAR, "").strip()
    candidates = [Path(env).expanduser()] if env else []
    candidates += [Path.cwd() / ".." / "shared" / "data", _REPO_ROOT.parent / "shared" / "data"]
    unique = dict.fromkeys(os.path.normpath(os.path.abspath(path)) for path in candidates)
    return [Path(key) for key in unique]


def find_shared_data(subdir: str | os.PathLike = "") -> Path | None:
    """Return the first existing ``<data>/<subdir>`` folder, or None.

    Parameters
    ----------
    subdir : str or path-like, default=""
        Sub-folder of the shared data folder, e.g. ``"mdwarf_photometry"``.
        An empty string returns the data folder itself.

    Returns
    -------
    pathlib.Path or None
        The first candidate of :func:`shared_data_candidates` under which
        ``subdir`` is an existing directory, or None when there is none.

    Examples
    --------
    >>> from skstellar.io import find_shared_data
    >>> folder = find_shared_data("mdwarf_photometry")  # doctest: +SKIP
    """
    for base in shared_data_candidates():
        path = base / subdir
        if path.is_dir():
            return path
    return None
