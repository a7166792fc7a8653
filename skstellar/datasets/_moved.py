"""Deprecation aliases for the readers that moved from ``skstellar.datasets`` to ``skstellar.io``.

Real-file readers and loaders now live in :mod:`skstellar.io`; the simulators
stay in :mod:`skstellar.datasets`. For one release the old names still work:
a module-level ``__getattr__`` built by :func:`moved_getattr` returns the
object from its new home and emits a :class:`FutureWarning` naming the new
import, and :class:`MovedModuleFinder` lets ``import
skstellar.datasets.spectra_io`` (and the other old module paths) resolve to
the new module with the same warning.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: Old module path -> new module path (whole-file moves).
MOVED_MODULES = {
    "skstellar.datasets.catalog_io": "skstellar.io.catalog",
    "skstellar.datasets.spectra_io": "skstellar.io.spectra",
    "skstellar.datasets.gaia_xp_io": "skstellar.io.gaia_xp",
    "skstellar.datasets._paths": "skstellar.io.paths",
}


def _warn_moved(old: str, new: str, stacklevel: int) -> None:
    warnings.warn(
        f"{old} has moved to skstellar.io; use `{new}` instead "
        "(the old name will be removed in the next release).",
        FutureWarning,
        stacklevel=stacklevel,
    )


def moved_getattr(module_name: str, moved: dict):
    """Build a module ``__getattr__`` serving names that moved elsewhere.

    Parameters
    ----------
    module_name : str
        Dotted name of the old module (e.g. ``"skstellar.datasets"``).
    moved : dict of str to str
        Old attribute name -> dotted name of the module that now holds it.
        Whole submodules are listed as ``"<name>": "<new module path>"``
        with the new module's last component different from the old name
        (e.g. ``"spectra_io": "skstellar.io.spectra"``).

    Returns
    -------
    callable
        ``__getattr__(name)``: for a moved name, emits a FutureWarning whose
        message names the new import and returns the object; otherwise
        raises AttributeError.
    """

    def __getattr__(name):
        target = moved.get(name)
        if target is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        new_module = importlib.import_module(target)
        if f"{module_name}.{name}" in MOVED_MODULES:
            _warn_moved(f"{module_name}.{name}", f"import {target}", stacklevel=3)
            return new_module
        _warn_moved(f"{module_name}.{name}", f"from {target} import {name}", stacklevel=3)
        return getattr(new_module, name)

    return __getattr__


class _AliasLoader(importlib.abc.Loader):
    """Loader that hands back the already-imported new module under the old name."""

    def __init__(self, new_name):
        self.new_name = new_name

    def create_module(self, spec):
        module = importlib.import_module(self.new_name)
        self.new_spec = module.__spec__
        return module

    def exec_module(self, module):
        # The import machinery stamps the alias spec on the module; give the
        # module its own spec back so that it keeps one identity.
        module.__spec__ = self.new_spec


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolve the old module paths of :data:`MOVED_MODULES` to the new modules.

    ``import skstellar.datasets.spectra_io`` then returns
    :mod:`skstellar.io.spectra` itself (same object, so no state is
    duplicated) after a FutureWarning naming the new import.
    """

    def find_spec(self, fullname, path=None, target=None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        _warn_moved(fullname, f"import {new}", stacklevel=4)
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install_finder() -> None:
    """Add one :class:`MovedModuleFinder` to ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
