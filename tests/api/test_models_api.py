"""The registry over HTTP, on SQLite and (with TEST_DATABASE_URL) PostgreSQL."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import sqlalchemy as sa

from service.architecture import Architecture
from service.errors import IntegrityFailure
from service.registry.store import canonical_json
from service.registry.tables import blob_chunks, blobs, models, versions
from tests.helpers import lenet_weights, load_model_spec, upload
from tests.helpers.http import assert_problem, count, register


def test_register_returns_the_version_document(client):
    spec, weights = load_model_spec("lenet"), lenet_weights()
    resp = register(client, spec=spec, weights=weights, description="first try")
    assert resp.status_code == 201
    assert resp.headers["Location"] == "/v1/models/lenet/versions/1"
    doc = resp.get_json()
    assert doc["model"] == "lenet" and doc["version"] == 1
    assert doc["description"] == "first try"
    assert doc["spec"] == spec and doc["labels"] == spec["labels"]
    assert doc["input"]["preprocess"]["resize"] == [32, 32]
    assert doc["spec_sha256"] == hashlib.sha256(canonical_json(spec)).hexdigest()
    assert doc["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert doc["totals"] == Architecture.from_spec(spec).totals()
    assert doc["created_at"].endswith("Z")
    assert client.get("/v1/models/lenet/versions/1").get_json() == doc


def test_versions_are_numbered_by_the_server_and_never_reused(client):
    assert [register(client, weights=lenet_weights(i)).get_json()["version"] for i in range(3)] == [
        1,
        2,
        3,
    ]
    assert client.delete("/v1/models/lenet/versions/3").status_code == 204
    assert register(client).get_json()["version"] == 4
    listed = client.get("/v1/models/lenet/versions").get_json()
    assert [v["version"] for v in listed["versions"]] == [1, 2, 4]
    assert client.get("/v1/models/lenet/versions/latest").get_json()["version"] == 4


def test_weights_come_back_byte_for_byte(client):
    weights = lenet_weights(7)
    register(client, weights=weights)
    resp = client.get("/v1/models/lenet/versions/1/weights")
    assert resp.status_code == 200
    assert resp.data == weights
    assert resp.mimetype == "application/octet-stream"
    assert resp.headers["ETag"] == f'"{hashlib.sha256(weights).hexdigest()}"'
    assert "lenet-v1.npz" in resp.headers["Content-Disposition"]


def test_layers_of_a_stored_version(client):
    register(client)
    resp = client.get("/v1/models/lenet/versions/latest/layers")
    assert resp.status_code == 200
    assert resp.get_json() == Architecture.from_spec(load_model_spec("lenet")).table()


def test_aliases(client):
    for i in range(2):
        register(client, weights=lenet_weights(i))
    resp = client.put("/v1/models/lenet/aliases/production", json={"version": 1})
    assert resp.get_json() == {
        "model": "lenet",
        "alias": "production",
        "version": 1,
        "previous_version": None,
    }
    assert client.get("/v1/models/lenet/versions/production").get_json()["version"] == 1
    moved = client.put("/v1/models/lenet/aliases/production", json={"version": 2})
    assert moved.get_json()["previous_version"] == 1
    assert client.get("/v1/models/lenet/versions/production").get_json()["version"] == 2
    model = client.get("/v1/models/lenet").get_json()
    assert model["aliases"] == {"production": 2}
    assert [v["aliases"] for v in model["versions"]] == [[], ["production"]]
    assert client.delete("/v1/models/lenet/aliases/production").status_code == 204
    assert_problem(client.get("/v1/models/lenet/versions/production"), 404, "no alias 'production'")
    assert_problem(client.delete("/v1/models/lenet/aliases/production"), 404, "production")


def test_an_aliased_version_cannot_be_deleted(client):
    register(client)
    client.put("/v1/models/lenet/aliases/production", json={"version": 1})
    assert_problem(client.delete("/v1/models/lenet/versions/1"), 409, "alias production")
    assert client.get("/v1/models/lenet/versions/1").status_code == 200


@pytest.mark.parametrize(
    ("alias", "body", "status", "fragment"),
    [
        ("production", {"version": 9}, 404, "no version 9"),
        ("latest", {"version": 1}, 400, "not 'latest'"),
        ("7", {"version": 1}, 400, "starting with a letter"),
        ("Prod", {"version": 1}, 400, "lowercase"),
        ("production", {"version": "one"}, 400, "version"),
        ("production", {}, 400, "version"),
    ],
)
def test_bad_alias_requests(client, alias, body, status, fragment):
    register(client)
    assert_problem(client.put(f"/v1/models/lenet/aliases/{alias}", json=body), status, fragment)


def test_delete_model_removes_everything(client, registry):
    register(client)
    register(client, weights=lenet_weights(1))
    client.put("/v1/models/lenet/aliases/production", json={"version": 2})
    assert client.delete("/v1/models/lenet").status_code == 204
    assert_problem(client.get("/v1/models/lenet"), 404, "no model named 'lenet'")
    assert count(registry, versions) == count(registry, blobs) == count(registry, models) == 0


def test_identical_weights_share_one_blob_until_the_last_version_goes(client, registry):
    weights = lenet_weights(3)
    register(client, weights=weights)
    register(client, weights=weights)
    assert count(registry, blobs) == 1
    client.delete("/v1/models/lenet/versions/1")
    assert client.get("/v1/models/lenet/versions/2/weights").data == weights
    client.delete("/v1/models/lenet/versions/2")
    assert count(registry, blobs) == 0


def test_pagination(client):
    for name in ("c", "a", "b"):
        register(client, name=name)
    first = client.get("/v1/models?limit=2").get_json()
    assert [m["name"] for m in first["models"]] == ["a", "b"]
    second = client.get(f"/v1/models?limit=2&cursor={first['next_cursor']}").get_json()
    assert [m["name"] for m in second["models"]] == ["c"]
    assert second["next_cursor"] is None
    for i in range(3):
        register(client, name="a", weights=lenet_weights(i))
    page = client.get("/v1/models/a/versions?limit=3").get_json()
    assert [v["version"] for v in page["versions"]] == [1, 2, 3]
    rest = client.get(f"/v1/models/a/versions?cursor={page['next_cursor']}").get_json()
    assert [v["version"] for v in rest["versions"]] == [4]
    assert_problem(client.get("/v1/models?limit=0"), 400, "limit")
    assert_problem(client.get("/v1/models?cursor=!!!"), 400, "cursor")


def test_invalid_spec_is_422_with_every_problem_and_stores_nothing(client, registry):
    spec = load_model_spec("lenet")
    spec["layers"][3]["in_channels"] = 1
    spec["layers"][7]["in_features"] = 120
    body = assert_problem(register(client, spec=spec), 422, "conv2 expects in_channels=1")
    assert [(e["layer"], e["field"]) for e in body["errors"]] == [
        ("conv2", "in_channels"),
        ("fc1", "in_features"),
    ]
    assert count(registry, models) == count(registry, blobs) == 0
    assert_problem(client.get("/v1/models/lenet"), 404)


def test_weights_that_do_not_fit_are_422_naming_the_array(client, registry):
    other = load_model_spec("lenet")
    other["layers"][9]["out_features"] = 5
    other["labels"] = other["labels"][:5]
    from service.weights import dump_npz

    wrong = dump_npz(Architecture.from_spec(other).random_weights())
    body = assert_problem(register(client, weights=wrong), 422, "fc2.weight")
    assert body["errors"][0]["layer"] == "fc2"
    assert count(registry, models) == 0


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"spec": "{bad json"}, "spec: not valid JSON"),
        ({"spec": None}, "spec: Missing data"),
        ({"weights": None}, "weights: Missing data"),
        ({"extra": "x"}, "extra: Unknown field"),
    ],
)
def test_malformed_registrations_are_400(client, change, fragment):
    body = upload(load_model_spec("lenet"), lenet_weights())
    for key, value in change.items():
        if value is None:
            del body[key]
        else:
            body[key] = value
    assert_problem(client.post("/v1/models/lenet/versions", data=body), 400, fragment)


def test_registration_needs_multipart(client):
    resp = client.post("/v1/models/lenet/versions", json=load_model_spec("lenet"))
    assert_problem(resp, 415, "multipart/form-data")


def test_weights_part_must_be_an_npz(client):
    assert_problem(register(client, weights=b"not a zip"), 422, "not an .npz file")


@pytest.mark.parametrize("name", ["LeNet", "-x", "a" * 65, "a b"])
def test_model_names_follow_the_pattern(client, name):
    assert_problem(register(client, name=name), 400, "not allowed")


def test_body_size_is_bounded(make_app):
    client = make_app(max_upload_bytes=10_000).test_client()
    assert_problem(register(client), 413)


def test_corrupt_stored_weights_are_detected(client, registry):
    register(client)
    with registry.engine.begin() as conn:
        conn.execute(sa.update(blob_chunks).values(data=b"tampered"))
    # a model is checked against its sha256 before it is loaded
    x = np.zeros((1, 1, 32, 32)).tolist()
    resp = client.post("/v1/models/lenet/predict", json={"instances": x})
    assert_problem(resp, 500, "do not match")
    # a download streams, hashed on the way: it stops short of its Content-Length with an error
    resp = client.get("/v1/models/lenet/versions/1/weights", buffered=False)
    assert resp.status_code == 200 and int(resp.headers["Content-Length"]) > len(b"tampered")
    with pytest.raises(IntegrityFailure, match="do not match"):
        resp.get_data()


def test_unknown_things_are_404_naming_them(client):
    assert_problem(client.get("/v1/models/ghost/versions/1"), 404, "no model named 'ghost'")
    register(client)
    assert_problem(client.get("/v1/models/lenet/versions/9"), 404, "no version 9")
    assert_problem(client.get("/v1/models/lenet/versions/nope"), 404, "no alias 'nope'")
    assert_problem(client.get("/v1/nothing/here"), 404)
    assert_problem(client.post("/v1/models/lenet"), 405)
