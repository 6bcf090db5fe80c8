"""Per-request telemetry: a request id on every response, and the HTTP metrics.

The id is the client's `X-Request-ID` when it is a sane token, else a new one; it is echoed on the
response, written in the access log and attached to log records made while serving the request.
Metrics are labelled by the matched route's *template*, never the raw path, so model names and
mistyped URLs cannot multiply the series.
"""

from __future__ import annotations

import re
import time
import uuid

from flask import Flask, Response, g, request

from service import metrics

HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
UNMATCHED = "<unmatched>"


def init_app(app: Flask) -> None:
    metrics.start_worker()

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        given = request.headers.get(HEADER, "")
        g.request_id = given if _SANE_ID.match(given) else uuid.uuid4().hex

    @app.after_request
    def _finish(resp: Response) -> Response:
        resp.headers[HEADER] = g.get("request_id") or uuid.uuid4().hex
        started = g.get("started")
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        method = request.method if request.method in _METHODS else "OTHER"
        metrics.HTTP_REQUESTS.labels(method, route, str(resp.status_code)).inc()
        if started is not None:
            metrics.HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)
        return resp
