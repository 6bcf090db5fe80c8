"""Hostile bodies against a real server: what a compressed bomb or an oversized JSON body costs.

    flock -x /tmp/convserve-cpu.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        .venv/bin/python bench/hostile_bodies.py

Starts gunicorn (one worker, SQLite in a temporary folder, the demo model `digits`), sends each
body once to `/v2/models/digits/infer`, and prints per case: the answer, the time it took, and the
worker's peak resident memory (VmHWM) before and after. Cases:

- "0," × 295 M gzip-compressed (~590 MiB inflated, under the 600 MiB limit): counted as values
  while inflating and refused long before the end;
- 1 GiB of zeros gzip-compressed (over the limit): refused while inflating;
- a legitimate 256-image JSON request of the model's size, for comparison.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gzip_of(piece: bytes, total: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        block = piece * ((1 << 20) // len(piece))
        for _ in range(total // len(block)):
            gz.write(block)
    return out.getvalue()


def worker_pids(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="convserve-hostile-"))
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp / 'registry.db'}",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
    }
    subprocess.run([BIN / "convserve", "db", "upgrade"], env=env, cwd=ROOT, check=True)
    subprocess.run([BIN / "convserve", "db", "seed"], env=env, cwd=ROOT, check=True)
    log = open(tmp / "server.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [BIN / "gunicorn", "-c", "deploy/gunicorn.conf.py", "service.wsgi:app"],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        meta = requests.get(f"{base}/v2/models/digits", timeout=10).json()
        shape = meta["inputs"][0]["shape"][1:]
        n = 1
        for d in shape:
            n *= d
        legit = json.dumps(
            {"inputs": [{"name": meta["inputs"][0]["name"], "datatype": "FP32",
                         "shape": [256, *shape], "data": [0.5] * (256 * n)}]}
        ).encode()  # fmt: skip
        cases = [
            ('"0," x 295M, gzip', gzip_of(b"0,", 590 << 20), {"Content-Encoding": "gzip"}),
            ("zeros 1 GiB, gzip", gzip_of(b"\0", 1 << 30), {"Content-Encoding": "gzip"}),
            (f"legit JSON, 256×{shape}", legit, {}),
        ]
        worker = worker_pids(server.pid)[0]
        print(f"{'case':28} {'sent':>10} {'status':>6} {'seconds':>8} {'worker peak MiB':>16}")
        for name, body, headers in cases:
            before = peak_rss_mib(worker)
            t0 = time.perf_counter()
            resp = requests.post(f"{base}/v2/models/digits/infer", data=body, headers=headers)
            dt = time.perf_counter() - t0
            after = peak_rss_mib(worker)
            print(
                f"{name:28} {len(body):>10,} {resp.status_code:>6} {dt:>8.2f} "
                f"{before:>7.0f} → {after:<7.0f}"
            )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


if __name__ == "__main__":
    main()
