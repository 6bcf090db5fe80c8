"""schemathesis over every operation of /openapi.json, against the real server (gunicorn), with
the admin token and every check: no 5xx, and no answer that contradicts the document.

Bounded for `make test` (a fixed seed and a small case budget, about a minute); the README says
how to run it longer against a running server.
"""

from __future__ import annotations

import subprocess

from tests.helpers import ROOT
from tests.helpers.live import live_server

TOKEN = "schemathesis-token"
SEED = 1
CASES_PER_OPERATION = 10


def test_schemathesis_finds_no_server_error_and_no_contradiction(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'registry.db'}"
    with live_server(db_url, tmp_path, WEB_CONCURRENCY="1", CONVSERVE_ADMIN_TOKEN=TOKEN) as (
        base,
        _,
    ):
        run = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "st"), "--config-file", str(ROOT / "schemathesis.toml"),
             "--no-color", "run", f"{base}/openapi.json", "--checks", "all",
             "--header", f"Authorization: Bearer {TOKEN}", "--seed", str(SEED),
             "--max-examples", str(CASES_PER_OPERATION), "--generation-deterministic",
             "--request-timeout", "30"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20_000:]
    assert "Selected: " in report and "Tested: " in report, report
