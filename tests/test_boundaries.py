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
