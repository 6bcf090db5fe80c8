"""Checks and bodies for HTTP tests: registering LeNet, problem+json answers, and /v2 requests
in JSON and binary form with the outputs they must give."""

from __future__ import annotations

import json

import numpy as np
import sqlalchemy as sa

from service.architecture import Architecture
from service.engine import compile_plan
from service.weights import load_npz

from . import lenet_weights, load_model_spec, upload

PROBLEM = "application/problem+json"
HEADER = "Inference-Header-Content-Length"


def register(client, name="lenet", spec=None, weights=None, **extra):
    spec = load_model_spec("lenet") if spec is None else spec
    weights = lenet_weights() if weights is None else weights
    return client.post(f"/v1/models/{name}/versions", data=upload(spec, weights, **extra))


def assert_problem(resp, status, *fragments):
    """`resp` is problem+json with `status`, names every fragment, and shows no traceback."""
    assert resp.status_code == status, resp.data
    assert resp.mimetype == PROBLEM
    body = resp.get_json()
    assert body["status"] == status and body["title"] and body["type"]
    text = json.dumps(body, ensure_ascii=False)
    assert "Traceback" not in text
    for f in fragments:
        assert f in text, (f, body)
    return body


def count(registry, table):
    with registry.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def batch(n: int, seed: int = 0) -> np.ndarray:
    """n random LeNet inputs."""
    return np.random.default_rng(seed).standard_normal((n, 1, 32, 32)).astype(np.float32)


def expected(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """What LeNet with lenet_weights(seed) answers for x, run in-process."""
    arch = Architecture.from_spec(load_model_spec("lenet"))
    return compile_plan(arch, arch.check_weights(load_npz(lenet_weights(seed)))).run(x)


def json_request(x: np.ndarray, **extra) -> bytes:
    inp = {"name": "image", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
    return json.dumps({"inputs": [inp], **extra}).encode()


def binary_request(x: np.ndarray, **extra) -> tuple[bytes, dict[str, str]]:
    raw = x.astype("<f4").tobytes()
    inp = {
        "name": "image",
        "datatype": "FP32",
        "shape": list(x.shape),
        "parameters": {"binary_data_size": len(raw)},
    }
    header = json.dumps({"inputs": [inp], **extra}).encode()
    return header + raw, {HEADER: str(len(header))}


def error_of(resp, status: int, *fragments: str) -> str:
    """`resp` is /v2's {"error": ...} JSON with `status`, naming every fragment."""
    assert resp.status_code == status, resp.data
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == {"error"}, body
    for f in fragments:
        assert f in body["error"], (f, body)
    return body["error"]
