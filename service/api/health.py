"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from sqlalchemy.exc import SQLAlchemyError

from service import metrics
from service.errors import ConvserveError
from service.registry.migrate import current_revision, head_revision

from .parsing import ApiBlueprint
from .problems import register_status
from .schemas import StatusSchema

blp = ApiBlueprint("health", __name__, description="Liveness, readiness and Prometheus metrics.")


class NotReady(ConvserveError):
    title = "Not ready"


register_status(NotReady, 503, "not-ready")


@blp.route("/healthz", methods=["GET"])
@blp.response(200, StatusSchema)
def healthz() -> dict[str, Any]:
    """200 while the process lives."""
    return {"status": "ok"}


@blp.route("/readyz", methods=["GET"])
@blp.response(200, StatusSchema)
def readyz() -> dict[str, Any]:
    """200 once the database answers and its schema is at the newest migration, else 503."""
    check_ready()
    return {"status": "ready"}


def check_ready() -> None:
    """Raise NotReady unless the database answers and its schema is the newest."""
    registry = current_app.extensions["convserve"].registry
    try:
        registry.ping()
        current = current_revision(registry.engine)
    except SQLAlchemyError as err:
        raise NotReady(f"the database does not answer: {type(err).__name__}") from None
    head = head_revision()
    if current != head:
        raise NotReady(
            f"the database schema is at revision {current or 'none'}, not {head}: "
            f"run 'convserve db upgrade'"
        )


@blp.route("/metrics", methods=["GET"])
@blp.response(200, content_type="text/plain; version=0.0.4", description="Prometheus text format")
def prometheus_metrics() -> Response:
    """Every metric of every worker, in Prometheus' text exposition format."""
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
