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


def _imports(root: Path, top: Path = ROOT) -> dict[str, set[str]]:
    """Per module of the package at `root` (a folder below `top`), every module it imports by
    its absolute name: relative imports are resolved (`from ..catalogue import base` in
    service/architecture/builder.py is service.catalogue.base)."""
    found: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        package = path.relative_to(top).parts[:-1]  # an __init__.py's too: its folder
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names.add(node.module or "")
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1])
                if node.module:
                    names.add(f"{base}.{node.module}")
                else:  # from .. import catalogue: the names are modules
                    names |= {f"{base}.{a.name}" for a in node.names}
        found[str(path.relative_to(top))] = names
    return found


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


def _project_imports(package: str) -> dict[str, set[str]]:
    """Per module of service/`package`, the service.* modules beyond it that it imports."""
    inside = (f"service.{package}",)
    return {
        module: {n for n in names if n.split(".")[0] == "service" and not _within(n, inside)}
        for module, names in _imports(ROOT / "service" / package).items()
    }


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


#: What the architecture may import of the project: the catalogue it builds on (and the kernels
#: and process settings beneath that) and the errors it raises; never the engine, the registry,
#: serving, the API or the web pages.
ARCHITECTURE_MAY_IMPORT = (
    "service.catalogue",
    "service.kernels",
    "service.runtime",
    "service.errors",
)
FRAMEWORKS = {"flask", "flask_smorest", "werkzeug", "sqlalchemy", "alembic"}


def _architecture_overreach(top: Path = ROOT) -> dict[str, set[str]]:
    """Per module of service/architecture/, what it imports of the project beyond itself and
    ARCHITECTURE_MAY_IMPORT, and any web or database framework."""
    allowed = ("service.architecture", *ARCHITECTURE_MAY_IMPORT)
    found = {}
    for module, names in _imports(top / "service" / "architecture", top).items():
        bad = {
            n
            for n in names
            if n.split(".")[0] in FRAMEWORKS
            or (n.split(".")[0] == "service" and not _within(n, allowed))
        }
        if bad:
            found[module] = bad
    return found


def test_the_architecture_imports_only_the_catalogue_and_the_errors():
    assert _imports(ROOT / "service" / "architecture")
    assert _architecture_overreach() == {}


def test_the_architecture_check_resolves_relative_imports(tmp_path):
    package = tmp_path / "service" / "architecture"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from .graph import Architecture\n")
    (package / "graph.py").write_text(
        "import numpy\nimport flask\nfrom . import schema\nfrom .. import catalogue, engine\n"
        "from ..errors import SpecError\nfrom ..registry.store import Registry\n"
        "from service.kernels import softmax\nfrom service.api import v2\n"
    )
    assert _architecture_overreach(tmp_path) == {
        "service/architecture/graph.py": {
            "flask",
            "service.engine",
            "service.registry.store",
            "service.api",
        }
    }
