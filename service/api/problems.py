"""One error handler: every failure becomes RFC 9457 application/problem+json, never a trace."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from service import errors as e

from .bodies import drain_unread

log = logging.getLogger("convserve")

#: Domain exception → (HTTP status, problem type slug).
STATUS: dict[type[e.ConvserveError], tuple[int, str]] = {
    e.Malformed: (400, "malformed-request"),
    e.Unauthorized: (401, "unauthorized"),
    e.Forbidden: (403, "forbidden"),
    e.NotFound: (404, "not-found"),
    e.Conflict: (409, "conflict"),
    e.TooLarge: (413, "payload-too-large"),
    e.UnsupportedMedia: (415, "unsupported-media-type"),
    e.SpecError: (422, "invalid-spec"),
    e.WeightsError: (422, "invalid-weights"),
    e.InvalidInput: (422, "invalid-input"),
    e.RequestTimeout: (408, "request-timeout"),
    e.Unavailable: (503, "unavailable"),
    e.IntegrityFailure: (500, "integrity-failure"),
}


def register_status(cls: type[e.ConvserveError], status: int, slug: str) -> None:
    """Map another domain exception (defined beside the code that raises it) to a status."""
    STATUS[cls] = (status, slug)


PROBLEM_TYPE = "urn:convserve:problem:"

#: Builds the error response: (status, title, detail, slug, errors, headers) → Response.
Renderer = Callable[..., Response]
RENDERERS: dict[str, Renderer] = {}


def register_renderer(prefix: str, renderer: Renderer) -> None:
    """Answer errors under `prefix` (e.g. "/v2") with `renderer` instead of problem+json."""
    RENDERERS[prefix.rstrip("/")] = renderer


def _renderer() -> Renderer:
    path = request.path
    for prefix, renderer in RENDERERS.items():
        if path == prefix or path.startswith(prefix + "/"):
            return renderer
    return problem


def problem(
    status: int,
    title: str,
    detail: str,
    slug: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + slug if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    resp = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _status_of(err: e.ConvserveError) -> tuple[int, str]:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500, "internal"


def status_of(err: BaseException) -> int:
    """The HTTP status any exception will be answered with."""
    if isinstance(err, e.ConvserveError):
        return _status_of(err)[0]
    if isinstance(err, HTTPException):
        return err.code or 500
    return 500


def _webargs_errors(messages: Any) -> list[dict[str, Any]]:
    """webargs' {location: {field: [msg]}} as the problem's errors list.

    A location may also map straight to messages (webargs' {"json": ["Invalid JSON body."]}),
    and a field's messages may nest (a list field's {index: [msg]}): each becomes one entry.
    """
    out: list[dict[str, Any]] = []

    def add(field: str | None, msgs: Any) -> None:
        if isinstance(msgs, dict):
            for key, inner in msgs.items():
                add(f"{field}.{key}" if field else str(key), inner)
        elif isinstance(msgs, list | tuple):
            for msg in msgs:
                add(field, msg)
        else:
            text = f"{field}: {msgs}" if field else str(msgs)
            out.append({"layer": None, "field": field, "message": text})

    if isinstance(messages, dict):
        for location_messages in messages.values():
            add(None, location_messages)
    else:
        add(None, messages)
    return out


def init_app(app: Flask) -> None:
    @app.after_request
    def _drain(resp: Response) -> Response:
        if resp.status_code >= 400 and request.method in ("POST", "PUT", "PATCH", "DELETE"):
            drain_unread(request.environ)
        return resp

    @app.errorhandler(e.ConvserveError)
    def _domain(err: e.ConvserveError) -> Response:
        status, slug = _status_of(err)
        errors = [p.to_dict() for p in err.problems] if isinstance(err, e.SpecError) else None
        headers = {"WWW-Authenticate": 'Bearer realm="convserve"'} if status == 401 else None
        if isinstance(err, e.Unavailable):
            headers = {"Retry-After": str(err.retry_after)}
        if isinstance(err, e.RequestTimeout):
            headers = {"Connection": "close"}
        if status == 500:
            log.error("%s: %s", type(err).__name__, err.detail)
        return _renderer()(status, err.title, err.detail, slug, errors, headers)

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException) -> Response:
        status = err.code or 500
        data = getattr(err, "data", None) or {}
        errors = _webargs_errors(data.get("messages")) if "messages" in data else None
        detail = err.description or err.name
        if errors:
            detail = "; ".join(x["message"] for x in errors)
        allow = err.get_response().headers.get("Allow") if status == 405 else None
        headers = {"Allow": allow} if allow else None
        return _renderer()(status, err.name, detail, None, errors, headers)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        log.exception("unhandled error")
        return _renderer()(
            500, "Internal Server Error", "the server failed; the error is logged", None, None, None
        )
