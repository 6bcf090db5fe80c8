"""The Open Inference Protocol, byte by byte: JSON and binary bodies, outputs, errors."""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import numpy as np
import pytest

from tests.helpers import lenet_weights
from tests.helpers.http import (
    HEADER,
    batch,
    binary_request,
    error_of,
    expected,
    json_request,
    register,
)


@pytest.fixture
def lenet(client):
    assert register(client).status_code == 201
    return client


def test_health_and_server_metadata(lenet):
    assert lenet.get("/v2/health/live").get_json() == {"live": True}
    assert lenet.get("/v2/health/ready").status_code == 200
    meta = lenet.get("/v2").get_json()
    assert meta["name"] == "convserve" and "binary_tensor_data" in meta["extensions"]


def test_not_ready_until_migrated(make_app):
    client = make_app(migrate=False).test_client()
    error_of(client.get("/v2/health/ready"), 503, "convserve db upgrade")


def test_model_metadata_and_readiness(lenet):
    register(lenet, weights=lenet_weights(1))
    meta = lenet.get("/v2/models/lenet").get_json()
    assert meta == {
        "name": "lenet",
        "versions": ["1", "2"],
        "platform": "convserve_numpy",
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 32, 32]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}],
    }
    assert lenet.get("/v2/models/lenet/versions/1").get_json()["versions"] == ["1"]
    ready = lenet.get("/v2/models/lenet/versions/2/ready")
    assert ready.status_code == 200 and ready.get_json()["ready"] is True
    error_of(lenet.get("/v2/models/lenet/versions/3/ready"), 404, "no version 3")
    error_of(lenet.get("/v2/models/ghost"), 404, "ghost")


def test_infer_json(lenet):
    x = batch(3)
    resp = lenet.post("/v2/models/lenet/infer", data=json_request(x, id="req-1"))
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.get_json()
    assert body["model_name"] == "lenet" and body["model_version"] == "1" and body["id"] == "req-1"
    (out,) = body["outputs"]
    assert out["name"] == "output" and out["datatype"] == "FP32" and out["shape"] == [3, 10]
    got = np.array(out["data"], np.float32).reshape(3, 10)
    np.testing.assert_array_equal(got, expected(x))  # float32 round-trips exactly through JSON


def test_infer_binary_in_and_out(lenet):
    x = batch(2, seed=1)
    body, headers = binary_request(x, parameters={"binary_data_output": True})
    resp = lenet.post("/v2/models/lenet/versions/1/infer", data=body, headers=headers)
    assert resp.status_code == 200, resp.data
    n = int(resp.headers[HEADER])
    doc = json.loads(resp.data[:n])
    (out,) = doc["outputs"]
    assert out["parameters"] == {"binary_data_size": 2 * 10 * 4} and "data" not in out
    got = np.frombuffer(resp.data[n:], "<f4").reshape(out["shape"])
    np.testing.assert_array_equal(got, expected(x))


def test_outputs_requested_one_by_one(lenet):
    x = batch(1)
    body, headers = binary_request(
        x, outputs=[{"name": "output", "parameters": {"binary_data": False}}]
    )
    resp = lenet.post("/v2/models/lenet/infer", data=body, headers=headers)
    assert HEADER not in resp.headers
    np.testing.assert_array_equal(
        np.array(resp.get_json()["outputs"][0]["data"], np.float32), expected(x)[0]
    )


def test_classification_extension(lenet):
    x = batch(2, seed=2)
    req = json_request(x, outputs=[{"name": "output", "parameters": {"classification": 3}}])
    (out,) = lenet.post("/v2/models/lenet/infer", data=req).get_json()["outputs"]
    assert out["datatype"] == "BYTES" and out["shape"] == [2, 3]
    want = expected(x)
    for i, row in enumerate(np.array(out["data"]).reshape(2, 3)):
        idx = np.argsort(-want[i], kind="stable")[:3]
        assert [int(s.split(":")[1]) for s in row] == idx.tolist()
        assert [s.split(":")[2] for s in row] == [str(j) for j in idx]
        np.testing.assert_allclose([float(s.split(":")[0]) for s in row], want[i][idx], atol=1e-6)
    binary = json_request(
        x, outputs=[{"name": "output", "parameters": {"classification": 1, "binary_data": True}}]
    )
    resp = lenet.post("/v2/models/lenet/infer", data=binary)
    n = int(resp.headers[HEADER])
    rest, first = resp.data[n:], []
    while rest:
        (size,) = struct.unpack("<I", rest[:4])
        first.append(rest[4 : 4 + size].decode())
        rest = rest[4 + size :]
    assert [int(s.split(":")[1]) for s in first] == np.argmax(want, axis=1).tolist()


@pytest.mark.parametrize(
    "encoding, compress", [("gzip", gzip.compress), ("deflate", zlib.compress)]
)
def test_compressed_requests(lenet, encoding, compress):
    x = batch(1, seed=3)
    body, headers = binary_request(x)
    resp = lenet.post(
        "/v2/models/lenet/infer",
        data=compress(body),
        headers={**headers, "Content-Encoding": encoding},
    )
    assert resp.status_code == 200, resp.data
    np.testing.assert_array_equal(
        np.array(resp.get_json()["outputs"][0]["data"], np.float32), expected(x)[0]
    )


def test_unversioned_infer_follows_alias_default(lenet):
    register(lenet, weights=lenet_weights(1))
    url = "/v2/models/lenet/infer"
    assert lenet.post(url, data=json_request(batch(1))).get_json()["model_version"] == "2"
    lenet.put("/v1/models/lenet/aliases/default", json={"version": 1})
    assert lenet.post(url, data=json_request(batch(1))).get_json()["model_version"] == "1"


def infer_input(**changes) -> dict:
    inp = {"name": "image", "datatype": "FP32", "shape": [1, 1, 32, 32], "data": [0.0] * 1024}
    inp.update(changes)
    return {"inputs": [inp]}


@pytest.mark.parametrize(
    "doc, status, fragment",
    [
        ({"inputs": []}, 400, "a list of one tensor, 'image'"),
        (infer_input(name="x"), 400, "unexpected inference input 'x' for model 'lenet'"),
        (infer_input(datatype="FP64"), 400, "datatype 'FP64'; the model takes FP32"),
        (infer_input(shape=[1, 3, 32, 32]), 400, "takes [N, 1, 32, 32]"),
        (infer_input(shape=[1, 1, 32]), 400, "takes [N, 1, 32, 32]"),
        (infer_input(data=[0.0] * 10), 400, "so 1024 values, but data holds 10"),
        (infer_input(data=["a"] * 1024), 400, "data must be numbers"),
        (infer_input(data=[float("inf")] * 1024), 400, "NaN or infinity"),
        ({**infer_input(), "outputs": [{"name": "probs"}]}, 400, "unexpected inference output"),
        ({**infer_input(), "outputs": [{"name": "output", "parameters": {"classification": -1}}]},
         400, "classification must be a class count"),
        (
            infer_input(parameters={"shared_memory_region": "r", "shared_memory_byte_size": 4}),
            400,
            "shared-memory",
        ),
        ({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 32, 32]}]}, 400,
         "neither data nor"),
        (infer_input(shape=[300, 1, 32, 32], data=[0.0] * 300 * 1024), 413, "at most 256"),
    ],
)  # fmt: skip
def test_infer_errors(lenet, doc, status, fragment):
    resp = lenet.post("/v2/models/lenet/infer", data=json.dumps(doc))
    error_of(resp, status, fragment)


def test_malformed_bodies(lenet):
    url = "/v2/models/lenet/infer"
    error_of(lenet.post(url, data=b"{not json"), 400, "not valid JSON")
    error_of(lenet.post(url, data=b"[1, 2]"), 400, "JSON object")
    body, _ = binary_request(batch(1))
    error_of(lenet.post(url, data=body, headers={HEADER: "abc"}), 400, "must be an integer")
    error_of(lenet.post(url, data=body, headers={HEADER: str(10**9)}), 400, "the body has")
    header_len = len(body) - 4096
    short = body[:-4]  # one value missing
    error_of(
        lenet.post(url, data=short, headers={HEADER: str(header_len)}), 400, "needs 4096 bytes"
    )
    extra = json_request(batch(1)) + b"\x00" * 8
    n = len(extra) - 8
    error_of(lenet.post(url, data=extra, headers={HEADER: str(n)}), 400, "8 bytes follow")
    error_of(lenet.post(url, data=b"xx", headers={"Content-Encoding": "br"}), 400, "not supported")
    error_of(
        lenet.post(url, data=b"not gzip", headers={"Content-Encoding": "gzip"}),
        400,
        "cannot be decompressed",
    )
    error_of(lenet.get(url), 405)
    error_of(lenet.get("/v2/nothing/here"), 404)


def test_a_decompression_bomb_is_refused(make_app):
    assert register(make_app().test_client()).status_code == 201
    client = make_app(max_upload_bytes=10_000).test_client()  # the same database
    bomb = gzip.compress(b"0" * 1_000_000)
    assert len(bomb) < 10_000
    error_of(
        client.post("/v2/models/lenet/infer", data=bomb, headers={"Content-Encoding": "gzip"}),
        413,
        "decompresses to more than 10000 bytes",
    )


def test_v1_errors_stay_problem_json(lenet):
    resp = lenet.post("/v1/models/ghost/predict", json={"instances": [[0]]})
    assert resp.mimetype == "application/problem+json"
