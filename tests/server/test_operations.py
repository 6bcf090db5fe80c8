"""Operating the real server: metrics across workers, JSON logs, draining on SIGTERM, readiness
that follows the database."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ROOT, lenet_weights
from tests.helpers.live import live_server

SEVEN = (ROOT / "models" / "examples" / "7.png").read_bytes()
PREDICTIONS = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ops")
    metrics_dir = tmp / "metrics"
    with live_server(
        f"sqlite:///{tmp / 'registry.db'}", tmp, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)
    ) as (base, log):
        spec = (ROOT / "models" / "lenet.json").read_bytes()
        files = {"spec": ("lenet.json", spec), "weights": ("w.npz", lenet_weights())}
        assert requests.post(f"{base}/v1/models/lenet/versions", files=files).status_code == 201
        # /readyz answers once one worker is up; the tests below need both.
        deadline = time.monotonic() + 30
        while (
            samples(requests.get(f"{base}/metrics", timeout=10).text).get(
                ("convserve_workers", frozenset())
            )
            != 2
        ):
            assert time.monotonic() < deadline, "the second worker never started"
            time.sleep(0.1)
        yield base, log, metrics_dir


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_add_up_across_workers(server):
    base, _, metrics_dir = server

    def post(_):
        return requests.post(
            f"{base}/v1/models/lenet/predict", files={"image": ("7.png", SEVEN)}, timeout=30
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(post, range(PREDICTIONS))) == {200}
    requests.get(f"{base}/v1/models/ghost-{os.getpid()}", timeout=10)

    text = requests.get(f"{base}/metrics", timeout=10).text
    got = samples(text)
    route = "/v1/models/<name>/predict"
    key = frozenset({"method": "POST", "route": route, "status": "200"}.items())
    assert got[("convserve_http_requests_total", key)] == PREDICTIONS
    lenet = frozenset({"model": "lenet", "version": "1"}.items())
    # Requests waiting together were batched: every input counted once, in fewer executions.
    assert got[("convserve_inferences_total", lenet)] == PREDICTIONS
    assert got[("convserve_inference_batch_size_sum", lenet)] == PREDICTIONS
    executions = got[("convserve_batch_executions_total", lenet)]
    assert 1 <= executions <= PREDICTIONS
    assert got[("convserve_inference_batch_size_count", lenet)] == executions
    assert got[("convserve_inference_duration_seconds_count", lenet)] == executions
    assert got[("convserve_queue_duration_seconds_count", lenet)] == PREDICTIONS
    predicted = sum(
        v for (n, labels), v in got.items()
        if n == "convserve_predictions_total" and ("model", "lenet") in labels
    )  # fmt: skip
    assert predicted == PREDICTIONS
    assert got[("convserve_workers", frozenset())] == 2
    # The requests really were spread over both workers: each wrote its own counter file.
    counter_files = list(metrics_dir.glob("counter_*.db"))
    assert len(counter_files) >= 2, counter_files
    assert f"ghost-{os.getpid()}" not in text  # route templates, not raw paths


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing (Debian: prometheus)"
)
def test_promtool_accepts_the_exposition(server):
    base = server[0]
    text = requests.get(f"{base}/metrics", timeout=10).text
    out = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_access_and_error_logs_are_json_with_the_request_id(server):
    base, log, _ = server
    resp = requests.get(f"{base}/v1/models/ghost", headers={"X-Request-ID": "ops-42"}, timeout=10)
    assert resp.headers["X-Request-ID"] == "ops-42"
    time.sleep(0.5)
    log.seek(0)
    lines = [json.loads(line) for line in log if line.startswith("{")]
    access = [d for d in lines if d.get("request_id") == "ops-42"]
    assert access and access[0]["status"] == 404 and access[0]["path"] == "/v1/models/ghost"
    assert access[0]["logger"] == "gunicorn.access" and access[0]["duration_ms"] >= 0
    assert any(d["logger"] == "gunicorn.error" and "Booting worker" in d["message"] for d in lines)


def test_sigterm_drains_a_request_in_flight(tmp_path):
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    with live_server(db, tmp_path) as (base, log):
        spec = (ROOT / "models" / "lenet.json").read_bytes()
        files = {"spec": ("lenet.json", spec), "weights": ("w.npz", lenet_weights())}
        assert requests.post(f"{base}/v1/models/lenet/versions", files=files).status_code == 201
        log.seek(0)
        master = int(re.search(r"Listening at: \S+ \((\d+)\)", log.read()).group(1))
        host, port = base[7:].split(":")
        sock = socket.create_connection((host, int(port)), timeout=30)
        head = (
            f"POST /v1/models/lenet/predict HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: image/png\r\nContent-Length: {len(SEVEN)}\r\nConnection: close\r\n\r\n"
        ).encode()
        half = len(SEVEN) // 2
        sock.sendall(head + SEVEN[:half])  # the worker is now reading this request's body
        time.sleep(0.5)
        os.kill(master, signal.SIGTERM)  # graceful shutdown begins
        time.sleep(0.5)
        sock.sendall(SEVEN[half:])
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        sock.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert b'"predictions"' in reply


class Proxy:
    """A TCP proxy to PostgreSQL that can be cut and restored, standing for a database outage."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.listen()
        self.conns: list[socket.socket] = []
        self.up = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        self.conns.clear()

    def restore(self) -> None:
        self.up = True


def test_readiness_follows_the_database_without_a_restart(db_url, make_app):
    from sqlalchemy.engine import make_url

    if db_url.startswith("sqlite"):
        pytest.skip("an embedded SQLite file cannot go away; the outage is a PostgreSQL one")
    url = make_url(db_url)  # this test's own schema, reached through the proxy
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    app = make_app(database_url=via_proxy)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    proxy.cut()
    down = client.get("/readyz")
    assert down.status_code == 503 and "does not answer" in down.get_json()["detail"]
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/healthz").status_code == 200  # alive all along: no restart wanted
    proxy.restore()
    assert client.get("/readyz").status_code == 200
