"""The core is a library: catalogue, architecture and engine import neither Flask nor SQLAlchemy."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from service.catalogue.base import LayerType
from service.catalogue.index import CATALOGUE
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


#: Dict keys under which a type name is data, not a switch: a spec written out (`{"name":
#: "conv1", "type": "conv2d"}`, as the web page's example).
SPEC_KEYS = {"name", "type"}


def type_names_outside_the_catalogue(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each place a module names a layer type: a string equal to a type name
    (compared with ==, !=, in {...}, as a dict key or value, passed as an argument…), or an
    f-string that spells one (f"conv{rank}d"). Spec literals and CLI subcommands are not."""
    names = set(CATALOGUE)
    tree = ast.parse(path.read_text())
    allowed: set[int] = set()  # ids of constants that are data, not a type switch
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value in SPEC_KEYS:
                    allowed.add(id(value))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_parser":
            allowed.update(id(arg) for arg in node.args[:1])  # argparse: `token add`
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in names and id(node) not in allowed:
            found.append((node.lineno, repr(node.value)))
        elif isinstance(node, ast.JoinedStr):
            literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            pattern = "".join(
                re.escape(v.value) if isinstance(v, ast.Constant) else "[a-z0-9_]*"
                for v in node.values
            )
            # f"{x}" or f"{a}_{b}" could spell anything: only letters written out name a type.
            if re.search("[a-z]", literal) and any(re.fullmatch(pattern, n) for n in names):
                found.append((node.lineno, ast.unparse(node)))
    return found


def test_no_type_switch_outside_the_catalogue():
    """Type-specific behaviour lives in the layer type, not in `if type == ...` elsewhere: no
    module outside the catalogue names a layer type."""
    for path in (ROOT / "service").rglob("*.py"):
        if "catalogue" in path.parts:
            continue
        assert not type_names_outside_the_catalogue(path), path


def test_the_type_switch_check_catches_each_way_of_naming_a_type(tmp_path):
    code = {
        'if layer["type"] != "linear":\n    pass\n': ["'linear'"],
        'if layer["type"] == "relu":\n    pass\n': ["'relu'"],
        'ok = kind in {"relu", "relu6"}\n': ["'relu'", "'relu6'"],
        'kinds = {"flatten": 1}\n': ["'flatten'"],
        'kinds = {0: "batchnorm1d"}\n': ["'batchnorm1d'"],
        'layer = make("softmax")\n': ["'softmax'"],
        'kind = f"conv{rank}d"\n': ["f'conv{rank}d'"],
        'kind = f"{mode}pool{rank}d"\n': ["f'{mode}pool{rank}d'"],
    }
    for source, named in code.items():
        path = tmp_path / "module.py"
        path.write_text(source)
        assert sorted(text for _, text in type_names_outside_the_catalogue(path)) == named, source
    path.write_text(
        'spec = {"name": "relu", "type": "relu"}\nlabel = f"{name}_{i}"\nsize = f"{n:,}"\n'
    )
    assert type_names_outside_the_catalogue(path) == []


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


def _imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module a file imports, absolute names (relative ones resolved against its package,
    which is its folder below `root`)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}  # `from service import api`
    return names


#: What the model registry must not know of: it hands out records, the HTTP layer makes them
#: documents (service.api.documents), and the pages render those.
NOT_FOR_THE_REGISTRY = ("service.api", "service.web", "flask", "flask_smorest", "werkzeug")


def test_the_registry_knows_nothing_of_http():
    paths = sorted((ROOT / "service" / "registry").glob("*.py"))
    assert paths
    for path in paths:
        bad = sorted(
            name
            for name in _imported_modules(path)
            if any(name == b or name.startswith(b + ".") for b in NOT_FOR_THE_REGISTRY)
        )
        assert not bad, (path.name, bad)


def test_the_registry_import_check_sees_every_way_of_importing(tmp_path):
    package = tmp_path / "service" / "registry"
    package.mkdir(parents=True)
    path = package / "probe.py"
    for source in (
        "import flask\n",
        "from flask import Response\n",
        "from service.api.documents import iso\n",
        "from service import web\n",
        "from ..api import documents\n",
        "def f():\n    from werkzeug.exceptions import NotFound\n",
    ):
        path.write_text(source)
        found = _imported_modules(path, tmp_path)
        assert any(n == b or n.startswith(b + ".") for n in found for b in NOT_FOR_THE_REGISTRY), (
            source
        )
    path.write_text("from .records import StoredModel\nfrom service.errors import NotFound\n")
    assert _imported_modules(path, tmp_path) == {
        "service.registry.records",
        "service.registry.records.StoredModel",
        "service.errors",
        "service.errors.NotFound",
    }
