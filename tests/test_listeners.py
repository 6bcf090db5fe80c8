"""Token-less writes are decided from the sockets the server bound, not from HOST."""

from __future__ import annotations

import socket

import pytest
import requests

from service import listeners
from service.listeners import Listener, Listeners, tokenless_writes
from tests.helpers import ROOT, lenet_weights
from tests.helpers.http import assert_problem, register
from tests.helpers.live import live_server


def bound_socket(family: int, address: object) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind(address)
    return s


def test_loopback_and_unix_sockets_are_local_others_are_not(tmp_path):
    socks = [
        bound_socket(socket.AF_INET, ("127.0.0.1", 0)),
        bound_socket(socket.AF_INET, ("0.0.0.0", 0)),
        bound_socket(socket.AF_UNIX, str(tmp_path / "s.sock")),
    ]
    try:
        if socket.has_ipv6:
            socks.append(bound_socket(socket.AF_INET6, ("::", 0)))
        found = Listeners.of_sockets(socks)
    finally:
        for s in socks:
            s.close()
    local = [s.local for s in found.sockets]
    assert local[:3] == [True, False, True]
    assert all(not x for x in local[3:])  # "::" is every interface
    assert found.sockets[2].address == f"unix:{tmp_path / 's.sock'}"
    assert not found.local_only
    assert found.exposed[0].startswith("0.0.0.0:")


@pytest.mark.parametrize(
    ("host", "local"),
    [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("localhost", False)],
)  # fmt: skip
def test_only_loopback_addresses_count_as_local(host, local):
    assert listeners.is_loopback_address(host) is local


def test_writes_without_a_token_fail_closed():
    assert tokenless_writes(None)[0] is False  # nobody said where the server listens
    assert tokenless_writes(Listeners(()))[0] is False
    mixed = Listeners((Listener("127.0.0.1:8000", True), Listener("0.0.0.0:8001", False)))
    allowed, why = tokenless_writes(mixed)
    assert not allowed and "0.0.0.0:8001" in why
    assert tokenless_writes(Listeners((Listener("127.0.0.1:8000", True),)))[0] is True


def test_an_app_that_does_not_know_its_sockets_refuses_tokenless_writes(make_app):
    client = make_app().test_client()
    listeners.record(None)
    assert_problem(register(client), 403, "cannot tell which addresses it listens on")
    assert client.get("/v1/models").status_code == 200


def test_an_app_with_a_public_socket_refuses_tokenless_writes(make_app):
    client = make_app().test_client()
    listeners.record(Listeners((Listener("127.0.0.1:8000", True), Listener("[::]:8000", False))))
    body = assert_problem(register(client), 403, "[::]:8000, which is not loopback")
    assert body["detail"] == (
        "changing the registry needs a token here: the server listens on [::]:8000, which is "
        "not loopback, and neither CONVSERVE_ADMIN_TOKEN nor CONVSERVE_TOKEN_FILE is set"
    )


def test_host_alone_decides_nothing(make_app):
    """HOST=127.0.0.1 while the sockets are public: refused (HOST is only a bind default)."""
    client = make_app(host="127.0.0.1").test_client()
    listeners.record(Listeners((Listener("0.0.0.0:8000", False),)))
    assert_problem(register(client), 403, "0.0.0.0:8000")


# -- the real server ----------------------------------------------------------------------


def post_version(base: str) -> requests.Response:
    spec = (ROOT / "models" / "lenet.json").read_bytes()
    files = {"spec": ("lenet.json", spec), "weights": ("w.npz", lenet_weights())}
    return requests.post(f"{base}/v1/models/lenet/versions", files=files, timeout=60)


def gunicorn_bound_everywhere(port: int) -> list[str]:
    gunicorn = str(ROOT / ".venv" / "bin" / "gunicorn")
    conf = str(ROOT / "deploy" / "gunicorn.conf.py")
    return [gunicorn, "-c", conf, "-b", f"0.0.0.0:{port}", "service.wsgi:app"]


def assert_writes_refused(base: str, log) -> None:  # noqa: ANN001
    resp = post_version(base)
    assert resp.status_code == 403, resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert "which is not loopback" in resp.json()["detail"]
    log.seek(0)
    text = log.read()
    assert "registry writes are refused (403)" in text
    assert "accepted without a token" not in text


def test_gunicorn_bound_to_every_interface_with_b_refuses_tokenless_writes(db_url, tmp_path):
    with live_server(
        db_url, tmp_path, command=gunicorn_bound_everywhere, unset=("HOST",), WEB_CONCURRENCY="1"
    ) as (base, log):
        assert_writes_refused(base, log)


def test_gunicorn_cmd_args_bind_refuses_tokenless_writes(db_url, tmp_path):
    # make serve runs gunicorn with deploy/gunicorn.conf.py; GUNICORN_CMD_ARGS overrides its bind.
    with live_server(
        db_url,
        tmp_path,
        unset=("HOST",),
        WEB_CONCURRENCY="1",
        GUNICORN_CMD_ARGS="--bind 0.0.0.0:{port}",
    ) as (base, log):
        assert_writes_refused(base, log)
