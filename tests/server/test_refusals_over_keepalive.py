"""A write refused before its body is read (401 to an upload without a token) reaches a
keep-alive client as the 401, every time, not as a reset connection."""

from __future__ import annotations

import os

import requests

from tests.helpers.live import live_server


def test_refused_uploads_answer_401_on_a_kept_alive_connection(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'registry.db'}"
    body = os.urandom(200_000)
    statuses = []
    with (
        live_server(db_url, tmp_path, WEB_CONCURRENCY="1", CONVSERVE_ADMIN_TOKEN="t") as (base, _),
        requests.Session() as session,  # one connection, reused
    ):
        for _ in range(40):
            try:
                resp = session.post(
                    f"{base}/v1/models/x/versions",
                    files={"spec": ("s.json", b"{}"), "weights": ("w.npz", body)},
                    timeout=30,
                )
                statuses.append(resp.status_code)
            except requests.ConnectionError as err:
                statuses.append(type(err).__name__)
    assert statuses == [401] * 40
