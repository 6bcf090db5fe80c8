"""Serving under load, over HTTP: per-model config, Triton's statistics and repository
extensions, 501 for what is not offered, and requests batched together through one path."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.helpers import lenet_weights, load_model_spec, upload
from tests.helpers.http import batch, binary_request, error_of, expected, register

CONFIG = {
    "max_batch_size": 16,
    "dynamic_batching": {
        "max_queue_delay_microseconds": 2000,
        "preferred_batch_size": [4, 8],
        "max_queue_size": 64,
        "default_timeout_microseconds": 5_000_000,
    },
}


@pytest.fixture
def lenet(client):
    assert register(client).status_code == 201
    return client


def test_config_defaults_then_put_then_get(lenet):
    got = lenet.get("/v1/models/lenet/config")
    assert got.status_code == 200
    assert got.get_json() == {
        "model": "lenet",
        "max_batch_size": 32,
        "dynamic_batching": {
            "max_queue_delay_microseconds": 0,
            "preferred_batch_size": [],
            "max_queue_size": 1024,
            "default_timeout_microseconds": 0,
        },
    }
    put = lenet.put("/v1/models/lenet/config", json=CONFIG)
    assert put.status_code == 200, put.data
    assert put.get_json() == {"model": "lenet", **CONFIG}
    assert lenet.get("/v1/models/lenet/config").get_json() == {"model": "lenet", **CONFIG}
    # A PUT replaces: what it leaves out takes the server's defaults again.
    again = lenet.put("/v1/models/lenet/config", json={"max_batch_size": 4}).get_json()
    assert again["max_batch_size"] == 4
    assert again["dynamic_batching"]["preferred_batch_size"] == []
    # Each change is in the model's history, with the config it replaced.
    events = lenet.get("/v1/models/lenet/history").get_json()["events"]
    changes = [e for e in events if e["action"] == "set_config"]
    assert len(changes) == 2 and changes[0]["actor"] == "anonymous"


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"max_batch_size": 0}, "max_batch_size must be between 1"),
        ({"max_batch_size": "8"}, "max_batch_size"),
        ({"max_batch_size": 2**80}, "max_batch_size must be between"),
        ({"dynamic_batching": {"max_queue_size": -1}}, "max_queue_size must be between 0"),
        ({"dynamic_batching": {"nope": 1}}, "nope"),
        ({"max_batch_size": 2, "dynamic_batching": {"preferred_batch_size": [4]}}, "above"),
    ],
)
def test_a_bad_config_is_a_4xx_naming_the_field(lenet, body, fragment):
    resp = lenet.put("/v1/models/lenet/config", json=body)
    assert 400 <= resp.status_code < 500, resp.data
    assert resp.mimetype == "application/problem+json"
    assert fragment in resp.get_data(as_text=True)
    assert lenet.get("/v1/models/lenet/config").get_json()["max_batch_size"] == 32  # unchanged


def test_config_of_an_unknown_model_is_404(client):
    assert client.get("/v1/models/ghost/config").status_code == 404
    assert client.put("/v1/models/ghost/config", json={"max_batch_size": 2}).status_code == 404


def test_config_writes_need_the_token_when_one_is_set(make_app):
    app = make_app(admin_token="s3cret")
    client = app.test_client()
    auth = {"Authorization": "Bearer s3cret"}
    assert register_with_token(client, "s3cret").status_code == 201
    assert client.put("/v1/models/lenet/config", json=CONFIG).status_code == 401
    assert client.put("/v1/models/lenet/config", json=CONFIG, headers=auth).status_code == 200


def test_v2_config_is_tritons_form(lenet):
    lenet.put("/v1/models/lenet/config", json=CONFIG)
    cfg = lenet.get("/v2/models/lenet/config").get_json()
    assert cfg["name"] == "lenet" and cfg["max_batch_size"] == 16
    assert cfg["input"] == [{"name": "image", "data_type": "TYPE_FP32", "dims": [1, 32, 32]}]
    assert cfg["output"] == [{"name": "output", "data_type": "TYPE_FP32", "dims": [10]}]
    db = cfg["dynamic_batching"]
    assert db["preferred_batch_size"] == [4, 8]
    assert db["max_queue_delay_microseconds"] == 2000
    assert db["default_queue_policy"]["max_queue_size"] == 64
    assert db["default_queue_policy"]["default_timeout_microseconds"] == 5_000_000
    assert lenet.get("/v2/models/lenet/versions/1/config").status_code == 200
    error_of(lenet.get("/v2/models/ghost/config"), 404, "ghost")


def register_with_token(client, token):
    data = upload(load_model_spec("lenet"), lenet_weights())
    headers = {"Authorization": f"Bearer {token}"}
    return client.post("/v1/models/lenet/versions", data=data, headers=headers)


def _stats(client, path="/v2/models/lenet/versions/1/stats"):
    resp = client.get(path)
    assert resp.status_code == 200, resp.data
    (row,) = resp.get_json()["model_stats"]
    return row


def test_statistics_count_v1_and_v2_requests_and_their_phases(lenet):
    before = _stats(lenet)
    body, headers = binary_request(batch(3))
    assert lenet.post("/v2/models/lenet/infer", data=body, headers=headers).status_code == 200
    x = batch(2).tolist()
    assert lenet.post("/v1/models/lenet/predict", json={"instances": x}).status_code == 200
    bad = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    assert lenet.post("/v2/models/lenet/infer", json=bad).status_code == 400
    after = _stats(lenet)
    s0, s1 = before["inference_stats"], after["inference_stats"]
    assert after["name"] == "lenet" and after["version"] == "1"
    assert after["inference_count"] - before["inference_count"] == 5
    assert after["execution_count"] - before["execution_count"] == 2
    assert s1["success"]["count"] - s0["success"]["count"] == 2
    assert s1["fail"]["count"] - s0["fail"]["count"] == 1
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert s1[phase]["count"] - s0[phase]["count"] == 2, phase
        assert s1[phase]["ns"] >= s0[phase]["ns"]
    assert s1["compute_infer"]["ns"] > s0["compute_infer"]["ns"]
    assert after["last_inference"] > 0
    every = lenet.get("/v2/models/stats").get_json()["model_stats"]
    assert any(r["name"] == "lenet" and r["version"] == "1" for r in every)
    assert [r["version"] for r in _all(lenet, "/v2/models/lenet/stats")] == ["1"]
    error_of(lenet.get("/v2/models/ghost/stats"), 404, "ghost")


def _all(client, path):
    return client.get(path).get_json()["model_stats"]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(lenet):
    lenet.put(
        "/v1/models/lenet/config",
        json={"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_microseconds": 200_000}},
    )
    before = _stats(lenet)
    xs = [batch(1, seed=i) for i in range(8)]

    def infer(x):
        body, headers = binary_request(x, outputs=[{"name": "output"}])
        resp = lenet.post("/v2/models/lenet/infer", data=body, headers=headers)
        assert resp.status_code == 200, resp.data
        doc = json.loads(resp.data)
        return np.array(doc["outputs"][0]["data"], np.float32)

    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(infer, xs))
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_allclose(out, expected(x).ravel(), rtol=1e-4, atol=1e-5)
    after = _stats(lenet)
    executions = after["execution_count"] - before["execution_count"]
    assert after["inference_count"] - before["inference_count"] == 8
    assert executions < 8  # some requests shared an engine call


def test_repository_index_load_and_unload(lenet):
    assert register(lenet, name="other").status_code == 201
    index = lenet.post("/v2/repository/index")
    assert index.status_code == 200 and index.mimetype == "application/json"
    # Triton's index entries: name, version, state (and reason when unavailable).
    assert index.get_json() == [
        {"name": "lenet", "version": "1", "state": "READY"},
        {"name": "other", "version": "1", "state": "READY"},
    ]
    unloaded = lenet.post("/v2/repository/models/other/unload")
    assert (unloaded.status_code, unloaded.mimetype, unloaded.get_json()) == (
        200,
        "application/json",
        {},
    )
    assert lenet.post("/v2/repository/index").get_json()[1] == {
        "name": "other",
        "version": "1",
        "state": "UNAVAILABLE",
        "reason": "unloaded",
    }
    ready = lenet.post("/v2/repository/index", json={"ready": True}).get_json()
    assert [m["name"] for m in ready] == ["lenet"]
    body, headers = binary_request(batch(1))
    error_of(lenet.post("/v2/models/other/infer", data=body, headers=headers), 503, "unloaded")
    refused = lenet.post("/v1/models/other/predict", json={"instances": batch(1).tolist()})
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert lenet.get("/v2/models/other/ready").status_code == 503
    loaded = lenet.post("/v2/repository/models/other/load")
    assert (loaded.status_code, loaded.mimetype, loaded.get_json()) == (200, "application/json", {})
    assert lenet.post("/v2/models/other/infer", data=body, headers=headers).status_code == 200
    cache = lenet.application.extensions["convserve"].serving.cache
    assert any(m.name == "other" for m in cache._entries.values())
    error_of(lenet.post("/v2/repository/models/ghost/load"), 404, "ghost")
    error_of(lenet.post("/v2/repository/models/ghost/unload"), 404, "ghost")


def test_repository_index_names_the_version_an_unversioned_request_runs(lenet):
    assert register(lenet).status_code == 201  # version 2: the newest
    assert lenet.post("/v2/repository/index").get_json()[0]["version"] == "2"
    assert lenet.put("/v1/models/lenet/aliases/default", json={"version": 1}).status_code == 200
    assert lenet.post("/v2/repository/index").get_json()[0]["version"] == "1"
    # A model whose versions were all deleted has nothing to serve.
    assert lenet.delete("/v1/models/lenet/aliases/default").status_code == 204
    for v in (1, 2):
        assert lenet.delete(f"/v1/models/lenet/versions/{v}").status_code == 204
    index = lenet.post("/v2/repository/index")
    assert index.get_json() == [{"name": "lenet", "state": "UNAVAILABLE", "reason": "no versions"}]
    assert lenet.post("/v2/repository/index", json={"ready": True}).get_json() == []


def test_unload_reaches_another_worker_on_its_sync(make_app):
    one, two = make_app(), make_app()  # two workers on one database
    c1, c2 = one.test_client(), two.test_client()
    assert register(c1).status_code == 201
    body, headers = binary_request(batch(1))
    assert c2.post("/v2/models/lenet/infer", data=body, headers=headers).status_code == 200
    plane2 = two.extensions["convserve"].serving
    assert plane2.cache.entries == 1
    assert c1.post("/v2/repository/models/lenet/unload").status_code == 200
    plane2.sync()
    assert plane2.cache.entries == 0
    assert c1.post("/v2/repository/models/lenet/load").status_code == 200
    plane2.sync()
    assert plane2.cache.entries == 1


def test_load_and_unload_need_the_token_when_one_is_set(make_app):
    client = make_app(admin_token="s3cret").test_client()
    assert register_with_token(client, "s3cret").status_code == 201
    assert client.post("/v2/repository/models/lenet/load").status_code == 401
    assert client.post("/v2/repository/models/lenet/unload").status_code == 401


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/v2/systemsharedmemory/status"),
        ("POST", "/v2/systemsharedmemory/region/r/register"),
        ("GET", "/v2/cudasharedmemory/status"),
        ("GET", "/v2/trace/setting"),
        ("POST", "/v2/models/lenet/trace/setting"),
        ("GET", "/v2/logging"),
        ("POST", "/v2/models/lenet/generate"),
    ],
)
def test_triton_endpoints_not_offered_are_501(client, method, path):
    resp = client.open(path, method=method)
    error_of(resp, 501, "does not offer")


def test_server_metadata_lists_the_extensions(client):
    ext = client.get("/v2").get_json()["extensions"]
    assert {"statistics", "model_repository", "model_configuration"} <= set(ext)


def test_queue_metrics_are_exported(lenet):
    body, headers = binary_request(batch(2))
    assert lenet.post("/v2/models/lenet/infer", data=body, headers=headers).status_code == 200
    text = lenet.get("/metrics").get_data(as_text=True)
    for name in (
        "convserve_queue_duration_seconds_bucket",
        "convserve_batch_executions_total",
        "convserve_inferences_total",
    ):
        assert f'{name}{{model="lenet",version="1"' in text or f"{name}{{" in text, name
