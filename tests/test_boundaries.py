"""The core is a library: catalogue, architecture and engine import neither Flask nor SQLAlchemy."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from service.catalogue.base import LayerType
from service.catalogue.index import CATALOGUE
from tests.helpers import ROOT


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
                if node.module == "service":  # from service import metrics: a module
                    names |= {f"service.{a.name}" for a in node.names}
                else:
                    names.add(node.module or "")
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1])
                if node.module:
                    names.add(f"{base}.{node.module}")
                else:  # from .. import catalogue: the names are modules
                    names |= {f"{base}.{a.name}" for a in node.names}
        found[str(path.relative_to(top))] = names
    return found


def test_the_process_settings_load_before_numpy():
    """service.runtime must be importable before NumPy (OpenBLAS reads its kernels on load)."""
    code = (
        "import sys\n"
        "import service, service.runtime, service.runtime.blas, service.runtime.allocator\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


#: The house's one direction of imports (docs/architecture.md): for each room of `service/` (a
#: package or a top-level module), the rooms it may import. Leaves first; a room only names rooms
#: listed above it, so the table itself has no cycle. "service" is the package's own __init__
#: (the version). api, web → serving, registry → architecture, engine → catalogue → kernels.
ROOMS: dict[str, set[str]] = {
    "service": set(),
    "errors": set(),
    "kernels": set(),
    "runtime": set(),
    "listeners": set(),
    "logs": set(),
    "tokens": set(),
    "metrics": {"service"},
    "catalogue": {"kernels"},
    "architecture": {"catalogue", "kernels", "errors"},
    "engine": {"architecture", "catalogue", "errors"},
    "weights": {"architecture", "errors"},
    "imaging": {"architecture", "errors"},
    "onnx_import": {"catalogue", "errors"},
    "render": {"catalogue"},
    "registry": {"architecture", "weights", "errors"},
    # kernels: the scheduler marks its worker busy in the cores workers share (kernels.parallel)
    "serving": {
        "registry",
        "engine",
        "architecture",
        "kernels",
        "imaging",
        "weights",
        "metrics",
        "errors",
    },
    "config": {"serving", "architecture", "imaging"},
    "worker": {"errors"},
    "gunicorn_hooks": {"config", "listeners"},
    "api": {
        "serving",
        "registry",
        "architecture",
        "catalogue",
        "onnx_import",
        "weights",
        "metrics",
        "tokens",
        "listeners",
        "errors",
        "service",
    },
    "web": {"api", "registry", "architecture", "errors"},
    "app": {"api", "web", "serving", "registry", "config", "imaging", "tokens", "service"},
    "cli": {
        "registry",
        "architecture",
        "onnx_import",
        "weights",
        "render",
        "tokens",
        "config",
        "errors",
        "service",
    },
    "entry": {"cli", "runtime"},
    "wsgi": {"app", "runtime"},
}
WEB = {"flask", "flask_smorest", "werkzeug"}
DATABASE = {"sqlalchemy", "alembic"}
#: Frameworks a room must not import although ROOMS would let it: the core is a library (a
#: notebook uses it without a web server or a database; the import-time check at the top of
#: this file says the same of whole processes), and the registry hands out records, never HTTP.
FORBIDDEN = {
    **dict.fromkeys(
        ("kernels", "runtime", "catalogue", "architecture", "engine", "weights", "imaging"),
        WEB | DATABASE,
    ),
    "registry": WEB,
}


def _room(name: str) -> str | None:
    """The room of an imported module's absolute name: service.serving.scheduler → serving,
    service.__version__ → service (the package itself); None outside the project."""
    parts = name.split(".")
    if parts[0] != "service":
        return None
    if len(parts) == 1 or parts[1].startswith("__"):
        return "service"
    return parts[1]


def _room_of(module: str) -> str:
    """The room of a module by its path: service/serving/scheduler.py → serving,
    service/__init__.py → service."""
    part = Path(module).parts[1]
    return "service" if part == "__init__.py" else part.removesuffix(".py")


def room_overreach(top: Path = ROOT) -> dict[str, set[str]]:
    """Per module of service/ under `top`, what it imports against ROOMS: a room its own room
    may not import (or a room ROOMS does not know), or a framework FORBIDDEN to it."""
    found = {}
    for module, names in _imports(top / "service", top).items():
        own = _room_of(module)
        allowed = ROOMS.get(own, set()) | {own}
        bad = {
            n
            for n in names
            if (_room(n) is not None and _room(n) not in allowed)
            or n.split(".")[0] in FORBIDDEN.get(own, set())
        }
        if bad or own not in ROOMS:
            found[module] = bad or {f"(room {own!r} is not in ROOMS)"}
    return found


def _room_imports(top: Path = ROOT) -> dict[str, set[str]]:
    """Per room of service/, the other rooms its modules import."""
    used: dict[str, set[str]] = {}
    for module, names in _imports(top / "service", top).items():
        own = _room_of(module)
        used.setdefault(own, set()).update(r for n in names if (r := _room(n)) not in (None, own))
    return used


def test_kernels_and_runtime_are_leaves():
    """The NumPy kernels (and their thread pool) and the process settings import nothing of the
    project: the catalogue and the engine build on them, never the other way round."""
    assert ROOMS["kernels"] == ROOMS["runtime"] == set()
    leaves = ("kernels", "runtime")
    assert {_room_of(m) for m in _imports(ROOT / "service")} >= set(leaves)
    assert {m: bad for m, bad in room_overreach().items() if _room_of(m) in leaves} == {}


def test_imports_go_one_way():
    """Every module imports only the rooms its room may: api, web → serving, registry →
    architecture, engine → catalogue → kernels. A new module or package needs a line in ROOMS
    (and in docs/architecture.md)."""
    assert room_overreach() == {}


def test_the_rooms_table_has_one_direction():
    """Each room lists only rooms above it in ROOMS, so no two rooms can import each other."""
    seen: set[str] = set()
    for room, allowed in ROOMS.items():
        assert allowed <= seen, (room, allowed - seen)
        seen.add(room)


def test_the_rooms_table_matches_the_package():
    rooms = {
        p.stem if p.is_file() else p.name
        for p in (ROOT / "service").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or any(p.glob("*.py"))
    }
    assert rooms | {"service"} == set(ROOMS)


def test_the_rooms_check_resolves_relative_imports(tmp_path):
    package = tmp_path / "service" / "architecture"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from .graph import Architecture\n")
    (package / "graph.py").write_text(
        "import numpy\nimport flask\nfrom . import schema\nfrom .. import catalogue, engine\n"
        "from ..errors import SpecError\nfrom ..registry.store import Registry\n"
        "from service.kernels import softmax\nfrom service import api\n"
    )
    (tmp_path / "service" / "newroom.py").write_text("import os\n")
    registry = tmp_path / "service" / "registry"
    registry.mkdir()
    (registry / "store.py").write_text(
        "import sqlalchemy\nfrom .records import StoredModel\nfrom ..api import documents\n"
        "from service import web\n\n\ndef f():\n    from werkzeug.exceptions import NotFound\n"
    )
    assert room_overreach(tmp_path) == {
        "service/registry/store.py": {
            "service.api",
            "service.web",
            "werkzeug.exceptions",
        },
        "service/architecture/graph.py": {
            "flask",
            "service.engine",
            "service.registry.store",
            "service.api",
        },
        "service/newroom.py": {"(room 'newroom' is not in ROOMS)"},
    }


#: Test folders that are not a room of service/: shared helpers, data, and the tests that start
#: real gunicorn servers (they test the processes, not one room).
TEST_FOLDERS_OF_THEIR_OWN = {"helpers", "fixtures", "golden", "server"}


def test_the_tests_mirror_the_package():
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and p.name[0] not in "_."}
    assert folders - TEST_FOLDERS_OF_THEIR_OWN <= set(ROOMS), folders - set(ROOMS)


def test_test_modules_import_helpers_not_each_other():
    """What test modules share lives in tests/helpers/ (fixtures in conftest.py, which pytest
    loads): importing another test module runs its tests' module code and ties the two."""
    found = {}
    for module, names in _imports(ROOT / "tests").items():
        if module.startswith("tests/fixtures/"):
            continue
        bad = {
            n
            for n in names
            if n.split(".")[0] == "tests"
            and not (n == "tests.helpers" or n.startswith("tests.helpers."))
        }
        if bad:
            found[module] = bad
    assert found == {}


def test_the_rooms_table_allows_only_what_is_used():
    """A room's allowance that no module uses is a door left open: the table says exactly what
    each room imports, so a new dependency is a decision someone writes down."""
    used = _room_imports()
    assert {room: allowed - used.get(room, set()) for room, allowed in ROOMS.items()} == {
        room: set() for room in ROOMS
    }


def _documented_rooms() -> dict[str, set[str]]:
    """docs/architecture.md's import table: `room` → the rooms it may import."""
    table: dict[str, set[str]] = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not re.fullmatch(r"`[a-z_]+`", cells[0]):
            continue
        names = re.sub(r"\(.*?\)", "", cells[1]).replace("the version", "service")
        table[cells[0].strip("`")] = {
            n.strip() for n in names.split(",") if n.strip() and n.strip() != "nothing"
        }
    return table


def test_docs_architecture_has_the_rooms_table():
    """The import table in docs/architecture.md is ROOMS, room for room: a new room must be
    placed there too."""
    assert _documented_rooms() == {room: allowed for room, allowed in ROOMS.items()}
