"""Structured logs: one JSON object per line, for the access log and every error/app message.

gunicorn uses `GunicornLogger` (deploy/gunicorn.conf.py sets `logger_class`): access lines carry
method, path, status, bytes, duration and the request id; error and application records carry
level, logger, message and, inside a request, its id.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from gunicorn import glogging


class RequestIdFilter(logging.Filter):
    """Adds the current request's id (set by service.api.telemetry) to a record, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            try:
                from flask import g, has_request_context

                record.request_id = g.get("request_id") if has_request_context() else None
            except ImportError:  # logging outside the web app
                record.request_id = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", None):
            doc["request_id"] = record.request_id
        doc.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class GunicornLogger(glogging.Logger):
    """gunicorn's logger, writing JSON lines; the app's `convserve` loggers share its handlers."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        formatter, request_ids = JsonFormatter(), RequestIdFilter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)
                handler.addFilter(request_ids)
        app_log = logging.getLogger("convserve")
        app_log.handlers = list(self.error_log.handlers)
        app_log.setLevel(logging.INFO)
        app_log.propagate = False

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        request_id = next((v for k, v in resp.headers if k.lower() == "x-request-id"), None)
        fields = {
            "remote": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": environ.get("QUERY_STRING") or None,
            "status": int(status),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "request_id": request_id,
            # the token's name (never the token itself); absent for anonymous requests
            "actor": environ.get("convserve.actor"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        self.access_log.info("request", extra={"fields": fields})
