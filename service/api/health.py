"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from sqlalchemy.exc import SQLAlchemyError

from service import metrics
from service.errors import ConvserveError
from service.registry.migrate import current_revision, head_revision, known_revision

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
    """200 once the database answers and its schema is at this release's newest migration (or
    a newer release's), else 503."""
    check_ready()
    return {"status": "ready"}


def check_ready() -> None:
    """Raise NotReady unless the database answers and its schema has every migration of this
    release.

    A schema a newer release has migrated (a revision this code does not know) counts as ready:
    during a rolling update the migration Job moves the database ahead while the previous
    release's pods still serve, and those must stay in the Service until new pods replace them.
    Migrations are therefore written to keep the previous release working (add first, remove a
    release later), as the README's "Releasing: the migration Job" says."""
    registry = current_app.extensions["convserve"].registry
    try:
        registry.ping()
        current = current_revision(registry.engine)
    except SQLAlchemyError as err:
        raise NotReady(f"the database does not answer: {type(err).__name__}") from None
    head = head_revision()
    if current != head and (current is None or known_revision(current)):
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
