"""The real thing: `make serve` (migrations, then gunicorn with 2 workers) on a free port."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.helpers import ROOT, lenet_weights, load_model_spec
from tests.helpers.live import live_server

PARALLEL = 20


@pytest.fixture
def server(db_url, tmp_path):
    with live_server(db_url, tmp_path) as running:
        yield running


def test_make_serve_registers_and_inspects_over_http(server):
    base, log = server
    spec = (ROOT / "models" / "lenet.json").read_bytes()
    resp = requests.post(
        f"{base}/v1/models/lenet/versions",
        files={"spec": ("lenet.json", spec), "weights": ("w.npz", lenet_weights())},
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["Location"] == "/v1/models/lenet/versions/1"
    table = requests.get(f"{base}/v1/models/lenet/versions/1/layers", timeout=10).json()
    assert [r["params"] for r in table["layers"] if r["params"]] == [78, 456, 15_100, 1_010]
    assert requests.get(f"{base}/openapi.json", timeout=10).json()["info"]["title"] == "convserve"
    log.seek(0)
    assert "registry writes are accepted without a token" in log.read()


def test_parallel_registrations_across_workers(server):
    base, _ = server
    spec = (ROOT / "models" / "lenet.json").read_bytes()

    def post(i: int) -> requests.Response:
        files = {"spec": ("lenet.json", spec), "weights": ("w.npz", lenet_weights(i))}
        return requests.post(f"{base}/v1/models/race/versions", files=files, timeout=60)

    with ThreadPoolExecutor(PARALLEL) as pool:
        responses = list(pool.map(post, range(PARALLEL)))
    assert [r.status_code for r in responses] == [201] * PARALLEL, [r.text for r in responses]
    assert sorted(r.json()["version"] for r in responses) == list(range(1, PARALLEL + 1))
    listed = requests.get(f"{base}/v1/models/race/versions?limit=100", timeout=10).json()
    assert len(listed["versions"]) == PARALLEL
    assert (
        load_model_spec("lenet") == requests.get(f"{base}/v1/models/race/versions/7").json()["spec"]
    )


def test_the_access_log_names_the_actor_and_never_the_token(db_url, tmp_path):
    from service.tokens import Entry, hash_token, write_file

    token = "cvs_live-secret-token-4242"
    write_file(tmp_path / "tokens", [Entry("ci", "write", hash_token(token))])
    with live_server(db_url, tmp_path, CONVSERVE_TOKEN_FILE=str(tmp_path / "tokens")) as (
        base,
        log,
    ):
        spec = (ROOT / "models" / "lenet.json").read_bytes()
        files = {"spec": ("lenet.json", spec), "weights": ("w.npz", lenet_weights())}
        anonymous = requests.post(f"{base}/v1/models/lenet/versions", files=files, timeout=30)
        assert anonymous.status_code == 401
        resp = requests.post(
            f"{base}/v1/models/lenet/versions",
            files=files,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert resp.status_code == 201, resp.text
        history = requests.get(f"{base}/v1/models/lenet/history", timeout=10).json()
        assert [(e["actor"], e["action"]) for e in history["events"]] == [("ci", "register")]
        requests.get(f"{base}/healthz", timeout=10)  # the access log line above is written
        log.seek(0)
        lines = [json.loads(line) for line in log if line.startswith("{")]
    posts = [x for x in lines if x.get("method") == "POST"]
    assert [(x["status"], x.get("actor")) for x in posts] == [(401, None), (201, "ci")]
    assert token not in json.dumps(lines)


def test_gunicorns_own_errors_are_problem_json(server):
    """A request gunicorn refuses itself (request line over its limit, a bad header) answers
    problem+json like every other error, not gunicorn's HTML page."""
    base, _ = server
    long_line = requests.get(f"{base}/v1/models/{'x' * 5000}", timeout=10)
    assert long_line.status_code == 414
    assert long_line.headers["Content-Type"] == "application/problem+json"
    body = long_line.json()
    assert body["status"] == 414 and "too large" in body["detail"]
    bad_header = requests.get(f"{base}/healthz", headers={"Bad\x01Name": "1"}, timeout=10)
    assert bad_header.status_code == 400
    assert bad_header.headers["Content-Type"] == "application/problem+json"
    assert bad_header.json()["title"] == "Bad Request"
