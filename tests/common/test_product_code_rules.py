"""Rules the product code keeps (issue 20): no ``assert``, no silent ``except``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = sorted(
    path
    for package in ("admin_app", "proxy_app", "common")
    for path in (ROOT / package).rglob("*.py")
    if "__pycache__" not in path.parts
)
BROAD = {"Exception", "BaseException"}


def _names(node: ast.expr | None) -> set[str]:
    if node is None:
        return {"BaseException"}  # a bare except
    if isinstance(node, ast.Tuple):
        return set().union(*(_names(item) for item in node.elts))
    return {ast.unparse(node).rsplit(".", 1)[-1]}


def _silent(handler: ast.ExceptHandler) -> bool:
    # Nothing done at all: the error vanishes without a word.
    return all(isinstance(stmt, ast.Pass) or _is_ellipsis(stmt) for stmt in handler.body)


def _is_ellipsis(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is ...


def _findings(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Assert):
            found.append(f"{where}: assert")
        elif isinstance(node, ast.ExceptHandler) and _silent(node):
            found.append(f"{where}: except {ast.unparse(node.type) if node.type else ''} that only passes")
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func).endswith("suppress")
            and BROAD & set().union(*(_names(arg) for arg in node.args))
        ):
            found.append(f"{where}: suppress(Exception)")
    return found


def test_the_product_code_is_found():
    assert len(PRODUCT) > 100 and ROOT / "proxy_app" / "gateway.py" in PRODUCT


@pytest.mark.parametrize("path", PRODUCT, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_assert_and_no_silent_except(path):
    assert _findings(path) == []


def test_the_rules_catch_what_they_forbid(tmp_path):
    sample = tmp_path / "sample.py"
    lines = ["try:", "    x = 1", "except ValueError:", "    pass", "assert x"]
    sample.write_text("\n".join([*lines, "with contextlib.suppress(Exception):", "    y = 2", ""]))
    found = _findings(sample, tmp_path)
    assert sorted(found) == [
        "sample.py:3: except ValueError that only passes",
        "sample.py:5: assert",
        "sample.py:6: suppress(Exception)",
    ]
