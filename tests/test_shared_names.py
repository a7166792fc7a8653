"""Shared names live once, and no private name crosses a subpackage.

An AST walk over ``skstellar/``:

* every ``from X import name`` whose module ``X`` lies in another subpackage
  (or another top-level module) than the importing file imports only public
  names (no leading underscore; dunders such as ``__version__`` are
  public): what is shared gets a public name in the
  module that owns it;
* the speed of light is written once (``skstellar.spectrum``), and the
  photo-D target names once.
"""

from __future__ import annotations

import ast
from pathlib import Path

import skstellar

PACKAGE_DIR = Path(skstellar.__file__).resolve().parent


def _module_name(path: Path) -> list[str]:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _owner(parts: list[str]) -> str:
    """The subpackage (or top-level module) a dotted module belongs to."""
    return parts[1] if len(parts) > 1 else parts[0]


def private_imports_across_subpackages() -> list[str]:
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = _module_name(path)
        package = parts if path.name == "__init__.py" else parts[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = node.module.split(".") if node.module else []
            if not target or target[0] != "skstellar":
                continue
            if _owner(target) == _owner(parts):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.endswith("__"):
                    offenders.append(
                        f"{path.relative_to(PACKAGE_DIR)}:{node.lineno} imports private "
                        f"{alias.name!r} from {'.'.join(target)}"
                    )
    return offenders


def test_walk_resolves_relative_imports():
    # The walk must see "from ..nn.base import X" inside skstellar/xp, else the
    # test below could pass vacuously.
    parts = _module_name(PACKAGE_DIR / "xp" / "regressor.py")
    assert _owner(parts) == "xp"
    assert _owner(["skstellar", "nn", "base"]) == "nn"
    assert _owner(["skstellar", "metrics"]) == "metrics"


def test_no_private_name_is_imported_across_subpackages():
    offenders = private_imports_across_subpackages()
    assert not offenders, "\n".join(offenders)


def _float_literals(value: float) -> list[str]:
    hits = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value == value and isinstance(
                node.value, float
            ):
                hits.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno}")
    return hits


def test_speed_of_light_is_written_once():
    from skstellar.spectrum import SPEED_OF_LIGHT_KMS

    hits = _float_literals(299792.458)
    assert SPEED_OF_LIGHT_KMS == 299792.458
    assert hits == [h for h in hits if h.startswith("spectrum.py:")] and len(hits) == 1, hits
