"""Shared fixtures: the test database (SQLite, and PostgreSQL when TEST_DATABASE_URL is set), apps
and clients on it. Helpers test modules import are in tests/helpers/."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import PG_URL, load_model_spec, pg_schema_url


@pytest.fixture
def lenet_spec() -> dict[str, Any]:
    return copy.deepcopy(load_model_spec("lenet"))


@pytest.fixture(autouse=True)
def listening_on_loopback():
    """In-process tests run as a server whose every socket is loopback would (the test client has
    no socket; a test that needs other listeners records them itself)."""
    from service import listeners

    listeners.record(listeners.Listeners((listeners.Listener("127.0.0.1:8000", True),)))
    yield
    listeners.record(None)


# ----------------------------------------------------------------------------- databases


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
        yield pg_schema_url(PG_URL, schema)
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
