"""The core is a library: catalogue, architecture and engine import neither Flask nor SQLAlchemy."""

from __future__ import annotations

import subprocess
import sys

from service.catalogue.base import LayerType
from service.catalogue.registry import CATALOGUE
from tests.conftest import ROOT


def test_core_imports_no_web_or_database_framework():
    code = (
        "import sys\n"
        "import service.catalogue, service.architecture, service.engine.plan, service.weights\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('flask', 'flask_smorest', 'sqlalchemy', 'alembic', 'werkzeug'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_no_type_switch_outside_the_catalogue():
    """Type-specific behaviour lives in the layer type, not in `if type == ...` elsewhere."""
    names = sorted(CATALOGUE, key=len, reverse=True)
    for path in (ROOT / "service").rglob("*.py"):
        if "catalogue" in path.parts:
            continue
        text = path.read_text()
        for name in names:
            assert f'== "{name}"' not in text and f"== '{name}'" not in text, (path, name)


def test_every_type_has_a_forward_pass_and_an_explanation():
    for name, kind in CATALOGUE.items():
        assert type(kind).compile is not LayerType.compile, name
        assert type(kind).explain is not LayerType.explain, name


def _project_imports(package: str) -> dict[str, set[str]]:
    """Per module of `package`, the service.* modules it imports (absolute or relative)."""
    import ast

    found: dict[str, set[str]] = {}
    root = ROOT / "service" / package
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:  # relative: inside the package is fine, beyond it is not
                    depth = len(path.relative_to(root).parts) - 1
                    if node.level > depth + 1:
                        names.add("." * node.level + (node.module or ""))
                elif (node.module or "").startswith("service"):
                    names.add(node.module)
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names if a.name.startswith("service")}
        found[str(path.relative_to(ROOT))] = {
            n for n in names if not n.startswith(f"service.{package}")
        }
    return found


def test_kernels_and_runtime_are_leaves():
    """The NumPy kernels (and their thread pool) and the process settings import nothing of the
    project: the catalogue and the engine build on them, never the other way round."""
    for package in ("kernels", "runtime"):
        imports = _project_imports(package)
        assert imports, package
        assert all(not names for names in imports.values()), imports


def test_the_process_settings_load_before_numpy():
    """service.runtime must be importable before NumPy (OpenBLAS reads its kernels on load)."""
    code = (
        "import sys\n"
        "import service, service.runtime, service.runtime.blas, service.runtime.allocator\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
