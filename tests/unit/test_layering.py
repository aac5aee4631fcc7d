"""The library never imports a shell: ``serving``, ``flows``, ``bench`` and ``tests`` build on it, not the reverse.

Every import statement counts, also those inside functions (deferred imports are still dependencies).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

LIBRARY = Path(__file__).resolve().parents[2] / "src" / "mlops_recipes"
SHELLS = ("serving", "flows", "bench", "tests")


def _imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def shell_imports(root: Path) -> dict[str, list[str]]:
    """Per module under ``root``: the shell modules it imports."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        shells = sorted(
            name for name in _imported_modules(ast.parse(path.read_text(), str(path))) if name.split(".")[0] in SHELLS
        )
        if shells:
            found[str(path.relative_to(root))] = shells
    return found


def test_no_library_module_imports_a_shell() -> None:
    assert len(list(LIBRARY.rglob("*.py"))) > 20  # the walk found the library
    assert shell_imports(LIBRARY) == {}


def test_the_check_sees_deferred_imports(tmp_path: Path) -> None:
    (tmp_path / "module.py").write_text(
        "import os\nfrom mlops_recipes import contract\n\ndef later():\n    from serving.metrics import X\n"
        "    import flows.retrain\n"
    )
    assert shell_imports(tmp_path) == {"module.py": ["flows.retrain", "serving.metrics"]}
