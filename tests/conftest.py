"""Shared fixtures: the zoo's specs and small helpers for building specs in tests."""

from __future__ import annotations

import copy
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from service.architecture import Architecture, Limits
from service.errors import Problem, SpecError

ROOT = Path(__file__).resolve().parents[1]


def load_model_spec(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "models" / f"{name}.json").read_text())


@pytest.fixture
def lenet_spec() -> dict[str, Any]:
    return copy.deepcopy(load_model_spec("lenet"))


def spec_of(input_shape: list[int], *layers: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A spec with an input named 'image' and the given layers."""
    return {"input": {"name": "image", "shape": input_shape}, "layers": list(layers), **top}


def problems_of(spec: Any, limits: Limits | None = None) -> list[Problem]:
    """The problems validation reports; fails the test if the spec is accepted."""
    with pytest.raises(SpecError) as info:
        Architecture.from_spec(spec, limits)
    assert info.value.problems, "a SpecError must say what is wrong"
    return info.value.problems


def only_problem(spec: Any, limits: Limits | None = None) -> Problem:
    found = problems_of(spec, limits)
    assert len(found) == 1, [p.message for p in found]
    return found[0]


@pytest.fixture(autouse=True)
def listening_on_loopback():
    """In-process tests run as a server whose every socket is loopback would (the test client has
    no socket; a test that needs other listeners records them itself)."""
    from service import listeners

    listeners.record(listeners.Listeners((listeners.Listener("127.0.0.1:8000", True),)))
    yield
    listeners.record(None)


# ----------------------------------------------------------------------------- databases

PG_URL = os.environ.get("TEST_DATABASE_URL")


def _pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, and PostgreSQL when TEST_DATABASE_URL is set
    (a schema of its own per test, dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL (.ci/run sets it)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield _pg_schema_url(PG_URL, schema)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def make_app(db_url):
    """Build an app on the test database (migrated unless told otherwise)."""
    from service.app import create_app
    from service.config import Settings
    from service.registry.migrate import upgrade

    apps = []

    def build(migrate: bool = True, **overrides):
        app = create_app(Settings.from_env({}, **{"database_url": db_url, **overrides}))
        app.config["TESTING"] = True
        if migrate:
            upgrade(app.extensions["convserve"].registry.engine)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["convserve"].registry.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def registry(app):
    return app.extensions["convserve"].registry


def lenet_weights(seed: int = 0) -> bytes:
    from service.weights import dump_npz

    return dump_npz(Architecture.from_spec(load_model_spec("lenet")).random_weights(seed))


def upload(spec: Any, weights: bytes, **extra: Any) -> dict[str, Any]:
    """A multipart body for POST .../versions."""
    text = spec if isinstance(spec, str) else json.dumps(spec)
    return {
        "spec": (io.BytesIO(text.encode()), "spec.json"),
        "weights": (io.BytesIO(weights), "weights.npz"),
        **extra,
    }
