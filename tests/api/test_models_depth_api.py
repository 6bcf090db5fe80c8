"""History, safe alias moves, tags, descriptions and diffs over HTTP (SQLite and PostgreSQL)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from service.architecture import Architecture
from service.weights import dump_npz, load_npz
from tests.helpers import ROOT, lenet_weights, load_model_spec
from tests.helpers.http import assert_problem, register


def variant(change) -> dict:
    spec = copy.deepcopy(load_model_spec("lenet"))
    change(spec)
    return spec


def five_classes(spec):
    spec["labels"] = spec["labels"][:5]
    spec["layers"][-2]["out_features"] = 5


def colour_input(spec):
    spec["input"]["shape"] = [3, 32, 32]
    spec["input"]["preprocess"].update(color="RGB", mean=[0.5] * 3, std=[0.5] * 3)
    spec["layers"][0]["in_channels"] = 3


def weights_for(spec, seed=0) -> bytes:
    return dump_npz(Architecture.from_spec(spec).random_weights(seed))


def history(client, name="lenet", **params):
    resp = client.get(f"/v1/models/{name}/history", query_string=params)
    assert resp.status_code == 200, resp.data
    return resp.get_json()


# -- history ---------------------------------------------------------------------------------


def test_history_over_http_newest_first_and_after_deletion(client):
    register(client)
    register(client, weights=lenet_weights(1))
    client.put("/v1/models/lenet/aliases/production", json={"version": 1})
    client.put("/v1/models/lenet/aliases/production", json={"version": 2})
    assert client.delete("/v1/models/lenet").status_code == 204
    doc = history(client)
    assert doc["model"] == "lenet" and doc["next_cursor"] is None
    assert [
        (e["action"], e["version"], e["alias"], e["previous_version"]) for e in doc["events"]
    ] == [
        ("delete_model", None, None, None),
        ("set_alias", 2, "production", 1),
        ("set_alias", 1, "production", None),
        ("register", 2, None, None),
        ("register", 1, None, None),
    ]
    assert {e["actor"] for e in doc["events"]} == {"anonymous"}  # loopback, no tokens
    assert set(doc["events"][0]) == {
        "at", "actor", "action", "version", "alias", "previous_version", "detail"
    }  # fmt: skip
    assert all(e["at"].endswith("Z") for e in doc["events"])  # ISO 8601, UTC written as Z


def test_history_of_one_alias_says_which_version_it_served_when(client):
    for i in range(3):
        register(client, weights=lenet_weights(i))
    for version in (1, 3, 2):
        client.put("/v1/models/lenet/aliases/production", json={"version": version})
    client.put("/v1/models/lenet/aliases/canary", json={"version": 3})
    client.delete("/v1/models/lenet/aliases/production")
    events = history(client, alias="production")["events"]
    assert [(e["action"], e["version"], e["previous_version"]) for e in events] == [
        ("delete_alias", None, 2),
        ("set_alias", 2, 3),
        ("set_alias", 3, 1),
        ("set_alias", 1, None),
    ]
    page = history(client, alias="production", action="set_alias", limit=2)
    assert [e["version"] for e in page["events"]] == [2, 3]
    rest = history(client, alias="production", action="set_alias", cursor=page["next_cursor"])
    assert [e["version"] for e in rest["events"]] == [1]
    assert_problem(client.get("/v1/models/lenet/history?action=explode"), 400, "set_alias")


def test_history_pagination_and_bad_cursors(client):
    for i in range(3):
        register(client, weights=lenet_weights(i))
    page = history(client, limit=2)
    assert [e["version"] for e in page["events"]] == [3, 2]
    rest = history(client, limit=2, cursor=page["next_cursor"])
    assert [e["version"] for e in rest["events"]] == [1] and rest["next_cursor"] is None
    assert_problem(
        client.get("/v1/models/lenet/history?cursor=garbage!"), 400, "not one this server"
    )
    assert_problem(client.get("/v1/models/ghost/history"), 404, "ghost")


def test_a_rejected_write_leaves_no_event(client):
    register(client)
    before = history(client)["events"]
    assert_problem(client.put("/v1/models/lenet/aliases/production", json={"version": 9}), 404)
    assert_problem(register(client, spec={"input": {}, "layers": []}), 422)
    assert_problem(client.delete("/v1/models/lenet/aliases/none"), 404)
    assert history(client)["events"] == before


# -- safe alias moves -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (five_classes, ["number of classes 10 → 5"]),
        (colour_input, ["input shape 1×32×32 → 3×32×32"]),
    ],
)
def test_moving_an_alias_across_interfaces_is_409_unless_forced(client, change, fragments):
    register(client)
    other = variant(change)
    assert register(client, spec=other, weights=weights_for(other)).status_code == 201
    assert client.put("/v1/models/lenet/aliases/production", json={"version": 1}).status_code == 200
    resp = client.put("/v1/models/lenet/aliases/production", json={"version": 2})
    assert_problem(resp, 409, "production", "version 1", "version 2", "force=true", *fragments)
    assert client.get("/v1/models/lenet").get_json()["aliases"] == {"production": 1}
    forced = client.put("/v1/models/lenet/aliases/production?force=true", json={"version": 2})
    assert forced.status_code == 200
    assert forced.get_json()["previous_version"] == 1
    assert client.get("/v1/models/lenet").get_json()["aliases"] == {"production": 2}
    last = history(client)["events"][0]
    assert last["action"] == "set_alias" and last["detail"] == {"forced": fragments}


def test_a_new_alias_or_a_compatible_move_needs_no_force(client):
    register(client)
    five = variant(five_classes)
    register(client, spec=five, weights=weights_for(five))
    register(client, weights=lenet_weights(2))
    assert client.put("/v1/models/lenet/aliases/canary", json={"version": 2}).status_code == 200
    assert client.put("/v1/models/lenet/aliases/production", json={"version": 1}).status_code == 200
    assert client.put("/v1/models/lenet/aliases/production", json={"version": 3}).status_code == 200


# -- tags and descriptions --------------------------------------------------------------------


def test_tags_are_set_listed_searched_and_removed(client):
    register(client)
    register(client, weights=lenet_weights(1))
    other = load_model_spec("digits")
    register(client, name="digits", spec=other, weights=(ROOT / "models/digits.npz").read_bytes())
    put = client.put("/v1/models/lenet/versions/2/tags/stage", json={"value": "qa"})
    assert put.status_code == 200 and put.get_json() == {"tags": {"stage": "qa"}}
    client.put("/v1/models/lenet/versions/2/tags/dataset", json={"value": "mnist"})
    client.put("/v1/models/digits/versions/1/tags/stage", json={"value": "prod"})
    version = client.get("/v1/models/lenet/versions/2").get_json()
    assert version["tags"] == {"dataset": "mnist", "stage": "qa"}
    assert client.get("/v1/models/lenet/versions/1").get_json()["tags"] == {}

    def found(*tags):
        body = client.get("/v1/models", query_string=[("tag", t) for t in tags]).get_json()
        return {m["name"]: m["tagged_versions"] for m in body["models"]}

    assert found("stage:qa") == {"lenet": [2]}
    assert found("stage") == {"digits": [1], "lenet": [2]}
    assert found("stage:qa", "dataset:mnist") == {"lenet": [2]}
    assert found("stage:prod", "dataset:mnist") == {}
    assert client.delete("/v1/models/lenet/versions/2/tags/stage").status_code == 204
    assert found("stage") == {"digits": [1]}
    assert_problem(client.delete("/v1/models/lenet/versions/2/tags/stage"), 404, "no tag 'stage'")
    assert_problem(
        client.put("/v1/models/lenet/versions/2/tags/bad key!", json={"value": "x"}), 400, "tag key"
    )
    assert_problem(
        client.put("/v1/models/lenet/versions/2/tags/k", json={"value": "x" * 300}), 400, "value"
    )
    assert_problem(client.get("/v1/models?tag=:x"), 400, "tag key")
    actions = [(e["action"], e["detail"]) for e in history(client)["events"][:2]]
    assert actions[0] == ("delete_tag", {"key": "stage", "previous_value": "qa"})


def test_tags_at_registration(client):
    resp = register(client, tags='{"stage": "qa"}')
    assert resp.status_code == 201 and resp.get_json()["tags"] == {"stage": "qa"}
    assert_problem(register(client, tags='["stage"]'), 400, "tags")


def test_descriptions_are_editable_and_recorded(client):
    register(client, description="first")
    resp = client.patch("/v1/models/lenet", json={"description": "LeNet for digits"})
    assert resp.status_code == 200 and resp.get_json()["description"] == "LeNet for digits"
    resp = client.patch("/v1/models/lenet/versions/1", json={"description": "trained 3 epochs"})
    assert resp.get_json()["description"] == "trained 3 epochs"
    assert client.get("/v1/models/lenet/versions/1").get_json()["description"] == "trained 3 epochs"
    events = history(client)["events"]
    assert [(e["action"], e["version"]) for e in events[:2]] == [
        ("set_description", 1),
        ("set_description", None),
    ]
    assert events[0]["detail"] == {"description": "trained 3 epochs", "previous": "first"}
    assert_problem(client.patch("/v1/models/lenet", json={"text": "x"}), 400, "description")


# -- diff -------------------------------------------------------------------------------------


def test_diff_of_two_zoo_versions_names_exactly_the_changed_layer(client):
    spec = load_model_spec("digits")
    trained = (ROOT / "models/digits.npz").read_bytes()
    arrays = load_npz(trained)
    arrays["conv2.weight"] = arrays["conv2.weight"] * 1.25  # one layer retrained
    register(client, name="digits", spec=spec, weights=trained)
    register(client, name="digits", spec=spec, weights=dump_npz(arrays))
    resp = client.get("/v1/models/digits/diff?from=1&to=latest")
    assert resp.status_code == 200, resp.data
    doc = resp.get_json()
    assert doc["versions"] == {"from": 1, "to": 2}
    changed = [layer["name"] for layer in doc["layers"] if layer["change"] != "same"]
    assert changed == ["conv2"]
    conv2 = next(layer for layer in doc["layers"] if layer["name"] == "conv2")
    assert conv2["fields"] == ["weights"]
    # only the kernel moved (bias too is conv2's): ‖0.25·W‖ / ‖(W, b)‖
    original = load_npz(trained)
    w = original["conv2.weight"].astype(np.float64)
    b = original.get("conv2.bias", np.zeros(1)).astype(np.float64)
    expected = 0.25 * np.sqrt(np.sum(w**2) / (np.sum(w**2) + np.sum(b**2)))
    assert conv2["weight_change"] == pytest.approx(expected, rel=1e-5)
    table = client.get("/v1/models/digits/versions/1/layers").get_json()
    assert [layer["name"] for layer in doc["layers"]] == [r["name"] for r in table["layers"]]
    assert conv2["from"] == conv2["to"] == table["layers"][4]
    assert {layer["weight_change"] for layer in doc["layers"] if layer["name"] != "conv2"} <= {
        0.0,
        None,
    }
    assert doc["totals"]["from"] == doc["totals"]["to"] == table["totals"]


def test_diff_of_architectures_names_fields_added_and_removed(client):
    register(client)
    wider = variant(lambda s: None)
    wider["layers"][7]["out_features"] = 120  # fc1 100 → 120, so fc2 takes 120
    wider["layers"][9]["in_features"] = 120
    wider["layers"].insert(9, {"name": "drop", "type": "dropout", "p": 0.5})
    del wider["layers"][1]  # relu1 goes
    register(client, spec=wider, weights=weights_for(wider, seed=5))
    doc = client.get("/v1/models/lenet/diff?from=1&to=2").get_json()
    summary = {layer["name"]: (layer["change"], layer["fields"]) for layer in doc["layers"]}
    assert summary["relu1"] == ("removed", [])
    assert summary["drop"] == ("added", [])
    assert summary["fc1"] == ("changed", ["out_features", "output_shape", "weights"])
    assert summary["fc2"][0] == "changed" and "in_features" in summary["fc2"][1]
    assert summary["relu3"] == ("changed", ["input_shapes", "output_shape"])
    assert summary["conv1"][0] == "changed" and summary["conv1"][1] == ["weights"]  # reseeded
    names = [layer["name"] for layer in doc["layers"]]
    assert names.index("relu1") == 1 and names.index("drop") == names.index("relu3") + 1
    removed = next(layer for layer in doc["layers"] if layer["name"] == "relu1")
    assert removed["to"] is None and removed["from"]["type"] == "relu"
    fc1 = next(layer for layer in doc["layers"] if layer["name"] == "fc1")
    assert fc1["weight_change"] is None  # 100×150 against 120×150: no norm of a difference
    assert doc["totals"]["to"]["params"] > doc["totals"]["from"]["params"]


def test_diff_of_one_version_with_itself_is_all_same(client):
    register(client)
    doc = client.get("/v1/models/lenet/diff?from=1&to=1").get_json()
    assert {layer["change"] for layer in doc["layers"]} == {"same"}
    assert_problem(client.get("/v1/models/lenet/diff?from=1"), 400, "to")
    assert_problem(client.get("/v1/models/lenet/diff?from=1&to=7"), 404, "no version 7")


def test_weight_change_is_relative_and_undefined_from_zero():
    from service.registry.diff import weight_change

    w = {"weight": np.array([[3.0, 4.0]]), "bias": np.zeros(1)}
    moved = {"weight": np.array([[3.0, 4.5]]), "bias": np.zeros(1)}
    assert weight_change(w, w) == 0.0
    assert weight_change(w, moved) == pytest.approx(0.5 / 5.0)
    assert weight_change({"bias": np.zeros(2)}, {"bias": np.ones(2)}) is None
    assert weight_change(w, {"weight": np.zeros((2, 2)), "bias": np.zeros(1)}) is None
