"""GET …/layers/{layer}/weights and …/profile: what the web interface draws from."""

from __future__ import annotations

import numpy as np

from service.architecture import Architecture
from service.engine import compile_plan
from service.weights import load_npz
from tests.helpers import lenet_weights, load_model_spec
from tests.helpers.http import assert_problem, register


def test_layer_weights_as_json(client):
    assert register(client).status_code == 201
    stored = load_npz(lenet_weights())
    body = client.get("/v1/models/lenet/versions/1/layers/conv2/weights").get_json()
    assert body["layer"] == "conv2" and body["type"] == "conv2d" and body["version"] == 1
    w = body["arrays"]["weight"]
    assert w["shape"] == [6, 3, 5, 5] and not w["truncated"]  # each filter spans all 3 maps
    np.testing.assert_array_equal(np.asarray(w["data"], np.float32), stored["conv2.weight"])
    assert body["arrays"]["bias"]["shape"] == [6]


def test_layer_weights_truncated_to_max_filters(client):
    assert register(client).status_code == 201
    body = client.get("/v1/models/lenet/versions/1/layers/fc1/weights?max_filters=4").get_json()
    w = body["arrays"]["weight"]
    assert w["shape"] == [100, 150] and w["truncated"]
    assert np.asarray(w["data"]).shape == (4, 150)
    assert client.get("/v1/models/lenet/versions/1/layers/relu1/weights").get_json()["arrays"] == {}


def test_layer_weights_errors(client):
    assert register(client).status_code == 201
    assert_problem(
        client.get("/v1/models/lenet/versions/1/layers/conv9/weights"), 404, "no layer 'conv9'"
    )
    assert_problem(
        client.get("/v1/models/lenet/versions/1/layers/conv1/weights?max_filters=0"),
        400,
        "max_filters",
    )
    assert_problem(client.get("/v1/models/nope/versions/1/layers/conv1/weights"), 404, "nope")


def test_profile_times_every_step_and_is_cached(client):
    assert register(client).status_code == 201
    first = client.get("/v1/models/lenet/versions/1/profile").get_json()
    assert first["batch"] == 1 and first["runs"] >= 3 and not first["cached"]
    covered = [name for step in first["steps"] for name in step["layers"]]
    layers = [row["name"] for row in load_model_spec("lenet")["layers"]]
    assert sorted(covered) == sorted(layers)  # every layer timed once, fused ones with their conv
    assert ["conv1", "relu1"] in [s["layers"] for s in first["steps"]]
    assert all(s["ms"] >= 0 for s in first["steps"])
    assert abs(sum(s["ms"] for s in first["steps"]) - first["total_ms"]) < 1e-6
    assert abs(sum(s["share"] for s in first["steps"]) - 1) < 1e-6
    again = client.get("/v1/models/lenet/versions/latest/profile").get_json()
    assert again["cached"] and again["steps"] == first["steps"]
    fresh = client.get("/v1/models/lenet/versions/1/profile?refresh=true").get_json()
    assert not fresh["cached"]
    assert_problem(client.get("/v1/models/lenet/versions/9/profile"), 404)


def test_plan_profile_steps_name_the_layers_they_compute():
    spec = load_model_spec("digits")
    arch = Architecture.from_spec(spec)
    plan = compile_plan(arch)
    timed = plan.profile(np.zeros((1, 1, 32, 32), np.float32), 2)
    assert [s.layers for s, _ in timed][:2] == [("conv1", "bn1", "relu1"), ("pool1",)]
    assert all(t > 0 for _, t in timed)
    unfused = compile_plan(arch, fold_batchnorm=False, fuse_activations=False)
    assert all(len(s.layers) == 1 for s in unfused.steps)


def test_openapi_documents_the_explore_endpoints(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert "get" in paths["/v1/models/{name}/versions/{ref}/layers/{layer}/weights"]
    assert "get" in paths["/v1/models/{name}/versions/{ref}/profile"]
