"""A real server never stalls: health checks are answered while inference keeps every core
busy, and clients that send their request slowly are cut off without blocking anyone."""

from __future__ import annotations

import io
import socket
import threading
import time
from urllib.parse import urlparse

import numpy as np
import pytest
import requests
from PIL import Image

from service.architecture import Architecture
from service.weights import dump_npz
from tests.helpers.live import live_server

#: A conv net heavy enough that each prediction keeps the engine busy for a while.
HEAVY = {
    "input": {"shape": [3, 64, 64], "preprocess": {"color": "RGB", "resize_shorter": 64,
              "center_crop": [64, 64], "scale": 0.00392156862745098}},
    "layers": [
        {"name": "c1", "type": "conv2d", "in_channels": 3, "out_channels": 64, "kernel_size": 3,
         "padding": 1},
        {"name": "r1", "type": "relu"},
        {"name": "c2", "type": "conv2d", "in_channels": 64, "out_channels": 64, "kernel_size": 3,
         "padding": 1},
        {"name": "r2", "type": "relu"},
        {"name": "c3", "type": "conv2d", "in_channels": 64, "out_channels": 64, "kernel_size": 3,
         "padding": 1},
        {"name": "pool", "type": "global_avgpool"},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "linear", "in_features": 64, "out_features": 10},
    ],
}  # fmt: skip


@pytest.fixture
def server(tmp_path):
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    env = {
        "WEB_CONCURRENCY": "1",
        # One request thread for four clients: it is always busy with a prediction, so the
        # probes below are answered by the worker's control threads, or wait behind the load.
        "GUNICORN_THREADS": "1",
        "CONVSERVE_REQUEST_READ_TIMEOUT": "3",
        "CONVSERVE_READ_IDLE_TIMEOUT": "1.5",
    }
    with live_server(db, tmp_path, **env) as running:
        yield running


def _heavy(base: str) -> None:
    arch = Architecture.from_spec(HEAVY)
    import json

    files = {
        "spec": ("heavy.json", json.dumps(HEAVY)),
        "weights": ("w.npz", dump_npz(arch.random_weights(0))),
    }
    resp = requests.post(f"{base}/v1/models/heavy/versions", files=files, timeout=60)
    assert resp.status_code == 201, resp.text


def test_health_is_answered_while_inference_keeps_the_cores_busy(server):
    base, _ = server
    _heavy(base)
    rng = np.random.default_rng(0)
    pngs = []
    for i in range(8):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(buf, "PNG")
        pngs.append(("image", (f"{i}.png", buf.getvalue(), "image/png")))
    stop = threading.Event()
    done = []

    def load() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                r = s.post(f"{base}/v1/models/heavy/predict", files=pngs, timeout=60)
                assert r.status_code == 200, r.text
                done.append(1)

    clients = [threading.Thread(target=load) for _ in range(4)]
    for c in clients:
        c.start()
    try:
        while len(done) < 4:  # inference is under way
            time.sleep(0.05)
        waits = []
        with requests.Session() as s:
            for _ in range(20):
                for path in ("/healthz", "/readyz", "/metrics"):
                    start = time.perf_counter()
                    assert s.get(f"{base}{path}", timeout=10).status_code == 200
                    waits.append((time.perf_counter() - start, path))
                time.sleep(0.05)
    finally:
        stop.set()
        for c in clients:
            c.join(60)
    # Kubernetes' default probe timeout is 1 s; a probe must never come near it. Answered by the
    # control threads they take ~10 ms here; queued behind the predictions, ~160 ms.
    assert max(w for w, _ in waits) < 0.1, sorted(waits)[-8:]
    assert len(done) > 4


def _open(base: str) -> socket.socket:
    url = urlparse(base)
    return socket.create_connection((url.hostname, url.port), timeout=30)


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return out
        if not chunk:
            return out
        out += chunk


def test_a_trickling_body_is_cut_off_and_blocks_no_one(server):
    base, _ = server
    socks = []
    for _ in range(8):  # more slow clients than the worker has threads
        s = _open(base)
        s.sendall(
            b"POST /v1/models/heavy/predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        )
        socks.append(s)
    start = time.monotonic()
    answers: dict[int, bytes] = {}

    def trickle(i: int, s: socket.socket) -> None:
        try:
            while time.monotonic() - start < 20:
                s.sendall(b" ")
                time.sleep(0.3)
        except OSError:  # the server closed the connection: what we want
            pass
        answers[i] = _read_all(s)

    threads = [threading.Thread(target=trickle, args=(i, s)) for i, s in enumerate(socks)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    for _ in range(10):  # meanwhile, everyone else is served at once
        t0 = time.perf_counter()
        assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
        assert time.perf_counter() - t0 < 1.0
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - start
    assert elapsed < 15, "the slow clients were not cut off"
    for s in socks:
        s.close()
    assert len(answers) == 8
    timed_out = [a for a in answers.values() if a.startswith(b"HTTP/1.1 408")]
    assert timed_out, answers
    assert all(b"application/problem+json" in a for a in timed_out)


def test_headers_that_never_finish_are_cut_off(server):
    base, _ = server
    s = _open(base)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    start = time.monotonic()
    s.settimeout(20)
    answer = _read_all(s)  # then the connection is closed
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout"), answer
    assert b"application/problem+json" in answer
    assert time.monotonic() - start < 10
    s.close()
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
