"""The package layout: readers in skstellar.io, simulators in skstellar.datasets.

Checks that the readers and the preprocessing never import the simulators
(AST walk plus a fresh import), that the old ``skstellar.datasets`` names of
the moved readers still work for one release with a FutureWarning naming the
new import, and that no subpackage import hits an import cycle.
"""

from __future__ import annotations

import ast
import importlib
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import skstellar
import skstellar.datasets as datasets
import skstellar.io as sio

PACKAGE_DIR = Path(skstellar.__file__).resolve().parent


def imported_modules(path: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) of every import statement in a file."""
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    package = list(rel.parts[:-1])  # same for a module and for a package's __init__
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            out.append((module, [alias.name for alias in node.names], node.lineno))
    return out


def test_import_resolver_sees_relative_imports():
    # The AST walk must resolve "from ..datasets import x" inside a subpackage,
    # else the layout tests below could pass vacuously.
    mods = imported_modules(PACKAGE_DIR / "datasets" / "photod.py")
    assert any(m == "skstellar.io.photod" and "load_locus" in names for m, names, _ in mods)
    mods = imported_modules(PACKAGE_DIR / "cli.py")
    assert any(m == "skstellar.datasets" for m, _, _ in mods)


@pytest.mark.parametrize("subpackage", ["io", "preprocessing"])
def test_readers_and_preprocessing_do_not_import_datasets(subpackage):
    offenders = []
    for path in sorted((PACKAGE_DIR / subpackage).rglob("*.py")):
        for module, names, line in imported_modules(path):
            targets = [module] + [f"{module}.{n}" for n in names]
            if any(t == "skstellar.datasets" or t.startswith("skstellar.datasets.")
                   for t in targets):
                offenders.append(f"{path.relative_to(PACKAGE_DIR)}:{line} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_nothing_uses_the_deprecated_reader_names():
    # Code of the project (package, benchmarks, scripts, tests) imports readers from
    # skstellar.io; the old names in skstellar.datasets are for users only.
    import skstellar.datasets.photod as sim_photod

    moved = {"skstellar.datasets": set(datasets.MOVED_TO_IO),
             "skstellar.datasets.photod": set(sim_photod._MOVED),
             "skstellar.datasets.mdwarf": {"load_mdwarf_catalog", "MDWARF_CATALOG_FILENAME"}}
    old_modules = {"skstellar.datasets.catalog_io", "skstellar.datasets.spectra_io",
                   "skstellar.datasets.gaia_xp_io", "skstellar.datasets._paths"}
    root = PACKAGE_DIR.parent
    files = [p for p in PACKAGE_DIR.rglob("*.py") if p.parent.name != "datasets"]
    for folder in ("benchmarks", "scripts", "tests"):
        if (root / folder).is_dir():
            files += sorted((root / folder).rglob("*.py"))
    files = [p for p in files if p.name != "test_layout.py"]  # it tests the old names
    offenders = []
    for path in files:
        if path.is_relative_to(PACKAGE_DIR):
            found = imported_modules(path)
        else:  # scripts outside the package: absolute imports only
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found = [(n.module, [a.name for a in n.names], n.lineno) for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and n.module and not n.level]
            found += [(a.name, [], n.lineno) for n in ast.walk(tree)
                      if isinstance(n, ast.Import) for a in n.names]
        for module, names, line in found:
            bad = [n for n in names if n in moved.get(module, ())]
            if module in old_modules or bad:
                offenders.append(f"{path.relative_to(root)}:{line} {module} {bad}")
    assert not offenders, "import these from skstellar.io:\n" + "\n".join(offenders)


def test_io_imports_no_simulator():
    for path in sorted((PACKAGE_DIR / "io").rglob("*.py")):
        for module, names, line in imported_modules(path):
            simulators = [n for n in names if n.startswith("make_")]
            assert not simulators, f"{path.name}:{line} imports {simulators} from {module}"
    # At run time too: importing skstellar.io loads neither the simulators nor torch.
    code = ("import sys, skstellar.io; "
            "print(sorted(m for m in sys.modules if m.startswith('skstellar.datasets') "
            "or m == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PACKAGE_DIR.parent)
    assert out.stdout.strip() == "[]"


def test_io_all_is_complete_and_importable():
    for name in sio.__all__:
        assert getattr(sio, name) is not None
    for name in datasets.MOVED_TO_IO:
        if not name.endswith("_io"):
            assert name in sio.__all__, name


def test_datasets_all_has_only_simulators_and_no_warning():
    assert not set(datasets.__all__) & set(datasets.MOVED_TO_IO)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in datasets.__all__:
            getattr(datasets, name)
        from skstellar.datasets import make_lsst_catalog, make_mdwarf_photometry  # noqa: F401


@pytest.mark.parametrize("name", sorted(n for n in datasets.MOVED_TO_IO if not n.endswith("_io")))
def test_moved_names_warn_and_return_the_io_object(name):
    with pytest.warns(FutureWarning, match=rf"from skstellar\.io import {name}\b"):
        old = getattr(datasets, name)
    assert old is getattr(sio, name)


@pytest.mark.parametrize("old, new", [
    ("skstellar.datasets.catalog_io", "skstellar.io.catalog"),
    ("skstellar.datasets.spectra_io", "skstellar.io.spectra"),
    ("skstellar.datasets.gaia_xp_io", "skstellar.io.gaia_xp"),
    ("skstellar.datasets._paths", "skstellar.io.paths"),
])
def test_old_module_paths_resolve_to_the_new_modules(old, new, monkeypatch):
    # Start as if never imported (an import binds the old name on the package).
    monkeypatch.delitem(sys.modules, old, raising=False)
    monkeypatch.delitem(vars(datasets), old.rsplit(".", 1)[1], raising=False)
    short = old.rsplit(".", 1)[1]
    if not short.startswith("_"):  # public module names also work as attributes
        with pytest.warns(FutureWarning, match=rf"import {new}\b"):
            assert getattr(datasets, short) is importlib.import_module(new)
    with pytest.warns(FutureWarning, match=rf"import {new}\b"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__name__ == new and module.__spec__.name == new


@pytest.mark.parametrize("old_module, new_module, name", [
    ("skstellar.datasets.gaia_xp_io", "skstellar.io.gaia_xp", "XPBand"),
    ("skstellar.datasets.photod", "skstellar.io.photod", "ColourLocus"),
    ("skstellar.datasets.photod", "skstellar.io.photod", "PriorMaps"),
])
def test_objects_pickled_under_the_old_module_paths_still_load(old_module, new_module, name):
    # Fitted estimators saved with joblib before the move name these classes by
    # their old module path (protocol 0 writes "c<module>\n<name>\n").
    new = getattr(importlib.import_module(new_module), name)
    data = pickle.dumps(new, protocol=0)
    assert f"c{new_module}\n{name}\n".encode() in data
    old_data = data.replace(new_module.encode(), old_module.encode())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        assert pickle.loads(old_data) is new


def test_moved_submodule_names_warn():
    import skstellar.datasets.mdwarf as sim_mdwarf
    import skstellar.datasets.photod as sim_photod

    with pytest.warns(FutureWarning, match=r"from skstellar\.io\.mdwarf import load_mdwarf"):
        assert sim_mdwarf.load_mdwarf_catalog is sio.load_mdwarf_catalog
    with pytest.warns(FutureWarning, match=r"from skstellar\.io\.photod import load_stripe82"):
        assert sim_photod.load_stripe82_sample is sio.load_stripe82_sample


def test_unknown_names_still_raise_attribute_error():
    with pytest.raises(AttributeError, match="no_such_reader"):
        datasets.no_such_reader
    with pytest.raises(ImportError):
        importlib.import_module("skstellar.datasets.no_such_module")


def test_top_level_exposes_io_and_stays_light():
    code = ("import sys, skstellar; assert 'skstellar.io' not in sys.modules; "
            "assert skstellar.io.read_catalog is not None; "
            "assert skstellar.datasets.make_xp_catalog is not None; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PACKAGE_DIR.parent)
    assert out.stdout.strip() == "ok"


def test_no_import_cycles():
    # Import every subpackage first, in a fresh interpreter each time (a cycle
    # shows up only for some entry points); one interpreter, modules dropped
    # between entries, to stay fast.
    entries = ["skstellar.io", "skstellar.datasets", "skstellar.preprocessing",
               "skstellar.cli", "skstellar.photod.teacher", "skstellar.io.photod",
               "skstellar.io.mdwarf", "skstellar.datasets.photod"]
    code = (
        "import importlib, sys\n"
        f"for entry in {entries!r}:\n"
        "    for m in [m for m in sys.modules if m == 'skstellar' or m.startswith('skstellar.')]:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module(entry)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PACKAGE_DIR.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_benchmarks_and_scripts_import_only_names_that_exist():
    # A clean-up that removes or renames a name must update the benchmarks and scripts that
    # use it (benchmarks/cycle_starnet.py once imported a removed helper and could not start).
    import importlib

    root = PACKAGE_DIR.parent
    missing = []
    for folder in ("benchmarks", "scripts"):
        for path in sorted((root / folder).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.ImportFrom) and node.module
                        and node.module.split(".")[0] == "skstellar"):
                    continue
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        try:  # a submodule imported by name
                            importlib.import_module(f"{node.module}.{alias.name}")
                        except ImportError:
                            missing.append(f"{folder}/{path.name}:{node.lineno} "
                                           f"{node.module}.{alias.name}")
    assert not missing, "imported names that do not exist:\n" + "\n".join(missing)
