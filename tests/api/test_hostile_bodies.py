"""Hostile bodies: compressed bombs, oversized data arrays, JSON nested without limit."""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
import zlib

import numpy as np
import pytest

from service.api import bodies
from service.errors import InvalidInput, Malformed, TooLarge
from tests.helpers.http import assert_problem, batch, error_of, expected, json_request, register

INFER = "/v2/models/lenet/infer"


@pytest.fixture
def lenet(client):
    assert register(client).status_code == 201
    return client


class FakeRequest:
    """What read_body uses of a Flask request: headers and a stream."""

    def __init__(self, body: bytes, encoding: str | None = None):
        self.headers = {"Content-Encoding": encoding} if encoding else {}
        self.stream = io.BytesIO(body)
        self.reads = 0
        read = self.stream.read

        def counted(n: int = -1) -> bytes:
            self.reads += 1
            return read(n)

        self.stream.read = counted  # type: ignore[method-assign]


def gzip_of_zeros(n: int) -> bytes:
    """A gzip body that inflates to `n` bytes of "0,", compressed in pieces (little memory)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb") as gz:
        piece = b"0," * (1 << 20)
        for _ in range(n // len(piece)):
            gz.write(piece)
    return out.getvalue()


# -- inflating -------------------------------------------------------------------------------


def test_inflation_stops_at_the_limit_while_reading(monkeypatch):
    monkeypatch.setattr(bodies, "CHUNK", 4096)
    bomb = gzip_of_zeros(64 << 20)  # 64 MiB inflated, ~64 KB compressed
    req = FakeRequest(bomb, "gzip")
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge, match="decompresses to more than 1048576 bytes"):
            bodies.read_body(req, 1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Refused after the first chunks, not after inflating the whole body; memory near the limit.
    assert req.stream.tell() < len(bomb) // 4
    assert peak < 3 << 20


def test_inflation_keeps_the_exact_bytes_and_every_gzip_member():
    data = json.dumps({"x": list(range(1000))}).encode()
    assert bytes(bodies.read_body(FakeRequest(gzip.compress(data), "gzip"), 1 << 20)) == data
    two = gzip.compress(data[:100]) + gzip.compress(data[100:])
    assert bytes(bodies.read_body(FakeRequest(two, "gzip"), 1 << 20)) == data
    exact = bodies.read_body(FakeRequest(zlib.compress(data), "deflate"), len(data))
    assert bytes(exact) == data  # exactly the limit is allowed
    with pytest.raises(TooLarge):
        bodies.read_body(FakeRequest(zlib.compress(data), "deflate"), len(data) - 1)


def test_cut_short_or_damaged_streams_are_malformed():
    whole = gzip.compress(b"x" * 10_000)
    with pytest.raises(Malformed, match="cut short"):
        bodies.read_body(FakeRequest(whole[: len(whole) // 2], "gzip"), 1 << 20)
    with pytest.raises(Malformed, match="cannot be decompressed"):
        bodies.read_body(FakeRequest(b"not gzip at all", "gzip"), 1 << 20)


def test_a_json_body_with_more_values_than_allowed_is_refused_while_inflating(monkeypatch):
    monkeypatch.setattr(bodies, "CHUNK", 4096)
    bomb = gzip_of_zeros(64 << 20)
    req = FakeRequest(bomb, "gzip")
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge, match="more than 1,000 JSON values"):
            bodies.read_body(req, 128 << 20, bodies.ValueBudget(1_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert req.stream.tell() < len(bomb) // 4
    assert peak < 1 << 20  # one step inflated, not the 64 MiB the body holds


def test_the_value_budget_counts_only_the_json_before_binary_tensors():
    header = b'{"inputs": [1, 2, 3]}'
    budget = bodies.ValueBudget(5, json_bytes=len(header))
    budget.feed(header[:10])
    budget.feed(header[10:] + b"," * 1000)  # binary data after the JSON: not values
    with pytest.raises(TooLarge):
        bodies.ValueBudget(5).feed(header + b"," * 10)


# -- JSON nesting ----------------------------------------------------------------------------


def test_json_nested_too_deep_is_malformed_not_a_recursion_error():
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(Malformed, match="100000 levels deep"):
        bodies.loads(deep)
    nested = b'{"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"[["}'
    assert bodies.loads(nested)["s"].startswith("[[[")  # brackets in strings are not nesting
    ok = "[" * bodies.MAX_JSON_DEPTH + "]" * bodies.MAX_JSON_DEPTH
    bodies.loads(ok)
    assert bodies.json_depth(("[{" * 40 + "}]" * 40).encode()) == 80
    with pytest.raises(Malformed):
        bodies.loads("[" + ok + "]")


# -- inference requests ----------------------------------------------------------------------


def test_data_arrays_are_read_as_text_into_float32():
    doc = (
        b'{"id": "a", "inputs": [{"name": "x", "shape": [2, 2], "data": [[1, -2.5e0],[3 ,4e-1]]}]}'
    )
    req = bodies.infer_request(doc, None, 100)
    data = req.doc["inputs"][0]["data"]
    assert isinstance(data, bodies.NumericText) and data.count == 4
    got = bodies.tensor(data, [2, 2], "x")
    assert got.dtype == np.float32
    assert got.tolist() == np.asarray([[1, -2.5], [3, 0.4]], np.float32).tolist()
    assert req.doc["id"] == "a"


@pytest.mark.parametrize(
    "data",
    [b"[1, 2 3, 4]", b"[1, 2, 3, 4,]", b"[1,,2,3]", b"[1e5e5, 2, 3, 4]", b"[[1,2][3,4]]",
     b"[1, 2, 3, 4e]", b"[1, 2, 3, 1e5e5]"],
)  # fmt: skip
def test_data_that_is_not_numbers_and_commas_is_refused(data):
    doc = b'{"inputs": [{"name": "x", "shape": [4], "data": ' + data + b"}]}"
    try:
        parsed = bodies.infer_request(doc, None, 100)
    except Malformed:
        return  # not JSON at all
    with pytest.raises(InvalidInput):
        bodies.tensor(parsed.doc["inputs"][0]["data"], [4], "x")


def test_data_with_other_things_than_numbers_is_parsed_as_json():
    doc = b'{"inputs": [{"name": "x", "shape": [2], "data": [true, 1]}]}'
    data = bodies.infer_request(doc, None, 100).doc["inputs"][0]["data"]
    assert data == [True, 1]  # the usual JSON path, bounded
    trick = (
        b'{"inputs": [{"name": "x", "data": "\\"data\\": [1, 2]"}], "parameters": {"data": [3]}}'
    )
    parsed = bodies.infer_request(trick, None, 100).doc
    assert parsed["inputs"][0]["data"] == '"data": [1, 2]' and parsed["parameters"]["data"] == [3]


def test_more_values_than_the_shape_needs_are_refused_before_being_read(monkeypatch):
    text = b"[" + b"0," * 1_000_000 + b"0]"
    doc = b'{"inputs": [{"name": "x", "shape": [4], "data": ' + text + b"}]}"
    data = bodies.infer_request(doc, None, 100).doc["inputs"][0]["data"]
    monkeypatch.setattr(np, "fromstring", None)  # reading the values would fail the test
    with pytest.raises(InvalidInput, match="so 4 values, but data holds 1000001"):
        bodies.tensor(data, [4], "x")


def test_infer_with_json_data_matches_the_engine(lenet):
    x = batch(3)
    resp = lenet.post(INFER, data=json_request(x))
    assert resp.status_code == 200, resp.data
    y = np.asarray(resp.get_json()["outputs"][0]["data"], np.float32).reshape(3, -1)
    np.testing.assert_allclose(y, expected(x), rtol=1e-5, atol=1e-6)
    nested = json.loads(json_request(x))
    nested["inputs"][0]["data"] = x.tolist()
    resp = lenet.post(INFER, data=json.dumps(nested))
    assert resp.status_code == 200, resp.data
    assert np.allclose(np.asarray(resp.get_json()["outputs"][0]["data"]).reshape(3, -1), y)


def test_a_gzip_bomb_of_values_is_refused_quickly(lenet):
    bomb = gzip_of_zeros(64 << 20)
    resp = lenet.post(INFER, data=bomb, headers={"Content-Encoding": "gzip"})
    error_of(resp, 413, "JSON values", "at most 256 inputs of 1,024 values", "before being parsed")


def test_a_data_array_longer_than_its_shape_is_refused(lenet):
    doc = json.loads(json_request(batch(1)))
    doc["inputs"][0]["data"] += [0.0] * 5000
    error_of(lenet.post(INFER, data=json.dumps(doc)), 400, "so 1024 values, but data holds 6024")


def test_inference_json_nested_too_deep_is_a_400(lenet):
    deep = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    error_of(lenet.post(INFER, data=deep), 400, "levels deep")
    error_of(lenet.post(INFER, data=gzip.compress(deep), headers={"Content-Encoding": "gzip"}),
             400, "levels deep")  # fmt: skip


@pytest.mark.parametrize(
    "where",
    [
        lambda d: d.update(parameters=[1]),
        lambda d: d["inputs"][0].update(parameters="x"),
        lambda d: d.update(outputs=[{"name": "output", "parameters": [2]}]),
    ],
)
def test_parameters_that_are_not_objects_are_a_400(lenet, where):
    doc = json.loads(json_request(batch(1)))
    where(doc)
    error_of(lenet.post(INFER, data=json.dumps(doc)), 400, '"parameters" must be an object')


def test_v1_problem_for_the_same_bodies(lenet):
    deep = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    resp = lenet.post("/v1/models/lenet/predict", data=deep, content_type="application/json")
    assert_problem(resp, 400, "levels deep")


def test_a_gzip_bomb_of_values_is_refused_while_inflating_over_http(lenet):
    bomb = gzip_of_zeros(64 << 20)  # 64 MiB of "0," inflated; LeNet takes 262,144 values at most
    tracemalloc.start()
    try:
        resp = lenet.post(INFER, data=bomb, headers={"Content-Encoding": "gzip"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    error_of(resp, 413, "JSON values", "before being parsed")
    assert peak < 16 << 20, f"{peak:,} bytes held for a refused request"
