"""The gunicorn worker's routing of probes (the rest of it runs in tests/server/)."""

from __future__ import annotations

import pytest

from service.worker import is_control


@pytest.mark.parametrize(
    ("head", "control"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"HEAD /readyz HTTP/1.1\r\n\r\n", True),
        (b"GET /metrics?name=x HTTP/1.1\r\n\r\n", True),
        (b"GET /v2/health/ready HTTP/1.1\r\n\r\n", True),
        (b"POST /healthz HTTP/1.1\r\n\r\n", False),
        (b"GET /healthz/more HTTP/1.1\r\n\r\n", False),
        (b"GET /v1/models HTTP/1.1\r\n\r\n", False),
        (b"POST /v1/models/m/predict HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", False),
        (b"garbage\r\n\r\n", False),
    ],
)
def test_only_probes_and_metrics_go_to_the_control_threads(head, control):
    assert is_control(head) is control
