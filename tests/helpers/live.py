"""Real servers for tests: `make serve` (migrations, then gunicorn with 2 workers), or gunicorn
alone on a database migrated beforehand, each on a free port and stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest
import requests

from tests.helpers import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(
    db_url: str,
    log_dir: Path,
    command: Callable[[int], list[str]] | None = None,
    unset: tuple[str, ...] = (),
    **env_extra: str,
) -> Iterator[tuple[str, IO[str]]]:
    """(base URL, log file) of `make -s serve` on `db_url`, stopped (SIGTERM) afterwards.

    `command(port)` replaces `make -s serve` (the database is migrated first, as make serve does);
    `unset` names environment variables to remove (HOST, to let the command decide alone);
    "{port}" in a value of `env_extra` becomes the port.
    """
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if k not in ("CONVSERVE_ADMIN_TOKEN", *unset)}
    env = {
        **inherited,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATABASE_URL": db_url,
        "WEB_CONCURRENCY": "2",
        **{k: v.replace("{port}", str(port)) for k, v in env_extra.items()},
    }
    for name in unset:
        env.pop(name, None)
    if command is None:
        argv = ["make", "-s", "serve"]
    else:
        venv = ROOT / ".venv" / "bin"
        subprocess.run([venv / "convserve", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        argv = command(port)
    log = open(log_dir / "server.log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, log, "make serve")
        yield base, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def wait_ready(base: str, proc: subprocess.Popen, log: IO[str], what: str) -> None:
    """Until `base`/readyz answers 200; fails the test with the log's tail if it never does."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or a worker still booting
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            pytest.fail(f"{what} did not become ready:\n{log.read()[-3000:]}")
        time.sleep(0.2)


@contextmanager
def gunicorn_server(
    db_url: str, log_path: Path, workers: int = 1, **env_extra: str
) -> Iterator[tuple[str, IO[str]]]:
    """(base URL, log file) of gunicorn with deploy/gunicorn.conf.py, as the container runs it,
    on a database already migrated: one instance of a scaled-out deployment."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATABASE_URL": db_url,
        "WEB_CONCURRENCY": str(workers),
        **env_extra,
    }
    env.pop("CONVSERVE_ADMIN_TOKEN", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each instance its own (the config makes one)
    log = open(log_path, "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "service.wsgi:app"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, log, f"gunicorn on port {port}")
        yield base, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
