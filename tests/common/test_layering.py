"""The packages depend one way: admin_app and proxy_app on common, never on each other (README, Layout)."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import ROOT


def imported_packages(package: str) -> dict[str, set[str]]:
    """Every top-level package each module of ``package`` imports, lazy imports inside functions included."""
    found: dict[str, set[str]] = {}
    for path in sorted(Path(ROOT, package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_the_admin_app_imports_nothing_from_the_gateway():
    offenders = {path for path, names in imported_packages("admin_app").items() if "proxy_app" in names}
    assert offenders == set()


def test_the_gateway_imports_nothing_from_the_admin_app():
    offenders = {path for path, names in imported_packages("proxy_app").items() if "admin_app" in names}
    assert offenders == set()


def test_common_imports_no_web_framework_and_neither_app():
    banned = {"flask", "quart", "werkzeug", "admin_app", "proxy_app"}
    offenders = {
        path: names & banned for path, names in imported_packages("common").items() if names & banned
    }
    assert offenders == {}


@pytest.mark.costly  # a Python process importing every module
def test_the_admin_app_and_its_openapi_document_load_without_the_gateway():
    modules = [f"admin_app.{info.name}" for info in pkgutil.iter_modules([str(Path(ROOT, "admin_app"))])]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "from common import gateway_openapi\n"
        "gateway_openapi.gateway_paths()\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('proxy_app', 'quart'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == ""
