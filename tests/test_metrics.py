"""Metrics in one process (the app's own registry): what traffic moves which series, and labels."""

from __future__ import annotations

import io
import json
import logging

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from service.logs import JsonFormatter
from tests.helpers import ROOT, lenet_weights
from tests.helpers.http import register

SEVEN = (ROOT / "models" / "examples" / "7.png").read_bytes()
PREDICT = "/v1/models/<name>/predict"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Values of some samples now, to compare with after the traffic."""

    def __init__(self, *samples: tuple[str, dict[str, str]]):
        self.samples = samples
        self.before = [value(n, **lab) for n, lab in samples]

    def __call__(self) -> list[float]:
        return [value(n, **lab) - b for (n, lab), b in zip(self.samples, self.before, strict=True)]


def predict(client, *images: bytes, name: str = "lenet"):
    files = {"image": [(io.BytesIO(b), f"{i}.png") for i, b in enumerate(images)]}
    return client.post(f"/v1/models/{name}/predict", data=files)


@pytest.fixture
def lenet(client):
    assert register(client).status_code == 201
    return client


def test_requests_are_counted_by_route_template_never_raw_paths(lenet):
    ok = ("convserve_http_requests_total", {"method": "POST", "route": PREDICT, "status": "200"})
    missing = (
        "convserve_http_requests_total",
        {"method": "POST", "route": PREDICT, "status": "404"},
    )
    unmatched = (
        "convserve_http_requests_total",
        {"method": "GET", "route": "<unmatched>", "status": "404"},
    )
    timed = ("convserve_http_request_duration_seconds_count", {"method": "POST", "route": PREDICT})
    delta = Delta(ok, missing, unmatched, timed)
    for _ in range(3):
        assert predict(lenet, SEVEN).status_code == 200
    assert predict(lenet, SEVEN, name="no-such-model-x7").status_code == 404
    assert lenet.get("/nothing/at/all-q9").status_code == 404
    assert delta() == [3, 1, 1, 4]
    text = lenet.get("/metrics").get_data(as_text=True)
    assert "no-such-model-x7" not in text and "all-q9" not in text


def test_inference_batches_predictions_and_cache(lenet):
    labels = {"model": "lenet", "version": "1"}
    delta = Delta(
        ("convserve_inference_batch_size_count", labels),
        ("convserve_inference_batch_size_sum", labels),
        ("convserve_inference_duration_seconds_count", labels),
    )
    before = sum(value("convserve_predictions_total", **labels, label=str(i)) for i in range(10))
    assert predict(lenet, SEVEN, SEVEN, SEVEN).status_code == 200
    assert predict(lenet, SEVEN).status_code == 200
    assert delta() == [2, 4, 2]
    after = sum(value("convserve_predictions_total", **labels, label=str(i)) for i in range(10))
    assert after - before == 4
    assert value("convserve_model_cache_entries") >= 1
    assert value("convserve_model_cache_bytes") > 0


def test_v2_infer_counts_predictions_too(lenet):
    labels = {"model": "lenet", "version": "1"}
    delta = Delta(("convserve_inference_batch_size_sum", labels))
    doc = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [2, 1, 32, 32],
                       "data": [0.0] * 2048}]}  # fmt: skip
    before = sum(value("convserve_predictions_total", **labels, label=str(i)) for i in range(10))
    assert lenet.post("/v2/models/lenet/infer", data=json.dumps(doc)).status_code == 200
    after = sum(value("convserve_predictions_total", **labels, label=str(i)) for i in range(10))
    assert delta() == [2] and after - before == 2


def test_registry_operations_by_outcome(client):
    ok = ("convserve_registry_operations_total", {"operation": "register", "outcome": "success"})
    bad = ("convserve_registry_operations_total", {"operation": "register", "outcome": "rejected"})
    alias = (
        "convserve_registry_operations_total",
        {"operation": "set_alias", "outcome": "rejected"},
    )
    delta = Delta(ok, bad, alias)
    assert register(client).status_code == 201
    assert register(client, weights=b"not an npz").status_code == 422
    assert client.put("/v1/models/lenet/aliases/prod", json={"version": 9}).status_code == 404
    assert delta() == [1, 1, 1]


def test_evictions_and_decode_failures(make_app):
    client = make_app(model_cache_bytes=1).test_client()  # room for one model at a time
    for seed in range(2):
        assert register(client, weights=lenet_weights(seed)).status_code == 201
    delta = Delta(
        ("convserve_model_cache_evictions_total", {}),
        ("convserve_image_decode_failures_total", {"reason": "undecodable"}),
    )
    for ref in ("1", "2", "1"):
        url = f"/v1/models/lenet/versions/{ref}/predict"
        assert client.post(url, data=SEVEN, content_type="image/png").status_code == 200
    assert client.post(url, data=b"junk", content_type="image/png").status_code == 422
    assert delta() == [2, 1]


def test_the_exposition_parses_and_names_follow_conventions(lenet):
    predict(lenet, SEVEN)
    resp = lenet.get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    families = {f.name: f for f in text_string_to_metric_families(resp.get_data(as_text=True))}
    for name in [
        "convserve_http_requests",
        "convserve_http_request_duration_seconds",
        "convserve_inference_duration_seconds",
        "convserve_inference_batch_size",
        "convserve_predictions",
        "convserve_registry_operations",
        "convserve_model_cache_entries",
        "convserve_model_cache_bytes",
        "convserve_model_cache_evictions",
        "convserve_image_decode_failures",
        "convserve_build_info",
    ]:
        assert name in families, name
    assert families["convserve_http_requests"].type == "counter"
    assert families["convserve_inference_duration_seconds"].type == "histogram"


def test_request_ids_are_echoed_or_made(client):
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz").headers["X-Request-ID"]
    assert len(made) == 32
    bad = client.get("/healthz", headers={"X-Request-ID": "x" * 300}).headers["X-Request-ID"]
    assert bad != "x" * 300 and len(bad) == 32
    problem = client.get("/v1/models/ghost", headers={"X-Request-ID": "r-9"})
    assert problem.status_code == 404 and problem.headers["X-Request-ID"] == "r-9"


def test_json_log_lines():
    record = logging.LogRecord(
        "convserve.serving", logging.WARNING, __file__, 1, "a %s", ("b",), None
    )
    record.request_id = "r-1"
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "warning" and doc["message"] == "a b" and doc["request_id"] == "r-1"
    assert doc["logger"] == "convserve.serving" and doc["time"].endswith("+00:00")
