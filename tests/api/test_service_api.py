"""Security, introspection, health and the OpenAPI document."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from service import listeners
from service.architecture import Architecture
from service.listeners import Listener, Listeners
from tests.helpers import lenet_weights, load_model_spec, upload
from tests.helpers.http import assert_problem, register

TOKEN = "s3cret-token"


@pytest.fixture
def guarded(make_app):
    return make_app(admin_token=TOKEN).test_client()


def test_writes_need_the_bearer_token_when_one_is_set(guarded):
    assert_problem(register(guarded), 401, "Authorization: Bearer")
    resp = guarded.post(
        "/v1/models/lenet/versions",
        headers={"Authorization": "Bearer wrong"},
        data=upload(load_model_spec("lenet"), lenet_weights()),
    )
    body = assert_problem(resp, 401, "not one this server knows")
    assert body["type"].endswith("unauthorized")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_every_write_is_guarded_and_reads_are_not(guarded):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    ok = guarded.post(
        "/v1/models/lenet/versions",
        data=upload(load_model_spec("lenet"), lenet_weights()),
        headers=auth,
    )
    assert ok.status_code == 201
    for method, path in [
        ("put", "/v1/models/lenet/aliases/production"),
        ("delete", "/v1/models/lenet/aliases/production"),
        ("delete", "/v1/models/lenet/versions/1"),
        ("delete", "/v1/models/lenet"),
    ]:
        assert_problem(getattr(guarded, method)(path, json={"version": 1}), 401)
    assert guarded.get("/v1/models/lenet").status_code == 200
    assert guarded.get("/v1/models/lenet/versions/1/weights").status_code == 200
    assert (
        guarded.put(
            "/v1/models/lenet/aliases/production", json={"version": 1}, headers=auth
        ).status_code
        == 200
    )


def test_without_a_token_writes_are_refused_off_loopback(make_app):
    client = make_app().test_client()
    listeners.record(Listeners((Listener("0.0.0.0:8000", False),)))
    refused = "neither CONVSERVE_ADMIN_TOKEN nor CONVSERVE_TOKEN_FILE is set"
    assert_problem(register(client), 403, refused)
    assert client.get("/v1/models").status_code == 200


def test_without_a_token_writes_are_open_on_loopback(make_app):
    for address in ("127.0.0.1:8000", "[::1]:8000", "unix:/run/convserve.sock"):
        listeners.record(Listeners((Listener(address, True),)))
        assert register(make_app().test_client()).status_code == 201


def test_inspect_returns_the_table_and_stores_nothing(client):
    spec = load_model_spec("lenet")
    resp = client.post("/v1/inspect", json=spec)
    assert resp.status_code == 200
    assert resp.get_json() == Architecture.from_spec(spec).table()
    assert client.get("/v1/models").get_json()["models"] == []


def test_inspect_reports_every_problem(client):
    spec = load_model_spec("lenet")
    spec["layers"][3]["in_channels"] = 1
    spec["layers"][7]["in_features"] = 120
    body = assert_problem(client.post("/v1/inspect", json=spec), 422, "6×3×5×5")
    assert [e["layer"] for e in body["errors"]] == ["conv2", "fc1"]
    assert body["type"].endswith("invalid-spec")


def test_inspect_bad_bodies(client):
    assert_problem(client.post("/v1/inspect", data="x", content_type="text/plain"), 415)
    assert_problem(
        client.post("/v1/inspect", data="{nope", content_type="application/json"), 400, "JSON"
    )
    assert_problem(client.post("/v1/inspect", json=[1, 2]), 422, "a spec is a JSON object")


def test_inspect_applies_the_configured_limits(make_app):
    from service.architecture import Limits

    client = make_app(limits=Limits(max_macs=1000)).test_client()
    assert_problem(
        client.post("/v1/inspect", json=load_model_spec("lenet")), 422, "the limit is 1,000"
    )


def test_health_and_readiness(make_app):
    fresh = make_app(migrate=False).test_client()
    assert fresh.get("/healthz").get_json() == {"status": "ok"}
    assert_problem(fresh.get("/readyz"), 503, "run 'convserve db upgrade'")
    ready = make_app().test_client()
    assert ready.get("/readyz").get_json() == {"status": "ready"}


def test_readiness_across_a_rolling_update(make_app):
    """A schema one migration behind this release is not ready; one a newer release migrated
    (a revision this code has never heard of) is, so the old pods keep serving mid-rollout."""
    from sqlalchemy import text

    from service.registry.migrate import head_revision

    app = make_app()
    engine = app.extensions["convserve"].registry.engine
    client = app.test_client()
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    assert_problem(client.get("/readyz"), 503, "run 'convserve db upgrade'")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    assert client.get("/readyz").get_json() == {"status": "ready"}
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head_revision()})
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_readiness_when_the_database_is_gone(make_app, tmp_path):
    client = make_app(migrate=False, database_url="postgresql+psycopg://nobody@127.0.0.1:1/x")
    assert_problem(client.test_client().get("/readyz"), 503, "does not answer")


def test_openapi_document_is_valid_and_complete(client):
    doc = client.get("/openapi.json").get_json()
    validate(doc)
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, methods in {
        "/v1/models": {"get"},
        "/v1/models/{name}": {"get", "delete"},
        "/v1/models/{name}/versions": {"get", "post"},
        "/v1/models/{name}/versions/{ref}": {"get", "delete"},
        "/v1/models/{name}/versions/{ref}/weights": {"get"},
        "/v1/models/{name}/versions/{ref}/layers": {"get"},
        "/v1/models/{name}/aliases/{alias}": {"put", "delete"},
        "/v1/inspect": {"post"},
        "/healthz": {"get"},
        "/readyz": {"get"},
    }.items():
        assert methods <= set(paths[path]), path
    post = paths["/v1/models/{name}/versions"]["post"]
    multipart = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert multipart  # spec + weights documented as a multipart body
    assert "Spec" in doc["components"]["schemas"]


def test_docs_page_loads_swagger_ui_from_this_server(client):
    resp = client.get("/docs")
    assert resp.status_code == 200 and b"swagger" in resp.data.lower()
    page = resp.get_data(as_text=True)
    assert "http" not in page.replace('"/openapi.json"', "")  # no asset from another host
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert f"/docs/assets/{asset}" in page
        got = client.get(f"/docs/assets/{asset}")
        assert got.status_code == 200 and len(got.data) > 10_000, asset
    assert client.get("/docs/assets/../../__init__.py").status_code == 404
