"""A real `make serve` (migrations, then gunicorn with 2 workers) on a free port, for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest
import requests

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(db_url: str, log_dir: Path, **env_extra: str) -> Iterator[tuple[str, IO[str]]]:
    """(base URL, log file) of `make -s serve` on `db_url`, stopped (SIGTERM) afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATABASE_URL": db_url,
        "WEB_CONCURRENCY": "2",
        **env_extra,
    }
    env.pop("CONVSERVE_ADMIN_TOKEN", None)
    log = open(log_dir / "server.log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["make", "-s", "serve"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or a worker still booting
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"make serve did not become ready:\n{log.read()[-3000:]}")
            time.sleep(0.2)
        yield base, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
