"""The registry's history: one event per write, recorded inside the write's own transaction.

A write that fails rolls its event back with it, so the history never shows what did not happen.
Callers hold the model's row lock (`Registry._model_row(..., lock=True)` or the `next_version`
bump) while they record, so event ids follow the order in which writes to one model took effect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .records import StoredEvent, utc
from .tables import events

#: Every action an event can record (docs/registry.md says what each records).
ACTIONS = (
    "register",
    "delete_version",
    "set_alias",
    "delete_alias",
    "delete_model",
    "set_config",
    "set_tag",
    "delete_tag",
    "set_description",
)

#: The actor of writes made without a token (allowed only while the server is loopback-only).
ANONYMOUS = "anonymous"


def record_event(
    conn: Connection,
    model: str,
    action: str,
    actor: str,
    *,
    version: int | None = None,
    alias: str | None = None,
    previous_version: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record one registry write in the transaction `conn` is in (it commits or rolls back
    with the write). Hold the model's row lock first, so concurrent writers' events keep order."""
    if action not in ACTIONS:
        raise ValueError(f"unknown history action {action!r}")
    conn.execute(
        sa.insert(events).values(
            model=model,
            at=datetime.now(UTC),
            actor=actor[:64],
            action=action,
            version=version,
            alias=alias,
            previous_version=previous_version,
            detail=detail,
        )
    )


def record_set_config(
    conn: Connection,
    model: str,
    actor: str,
    config: dict[str, Any],
    previous: dict[str, Any] | None = None,
) -> None:
    """Record a change of a model's config (`PUT /v1/models/{name}/config`) as a `set_config`
    event, inside the transaction that writes the config: `config` is the new one, `previous`
    the one it replaced (None when there was none). Both land in the event's `detail`."""
    record_event(conn, model, "set_config", actor, detail={"config": config, "previous": previous})


def stored_event(row: Any) -> StoredEvent:
    """An event row as the registry hands it out."""
    return StoredEvent(
        at=utc(row["at"]),
        actor=row["actor"],
        action=row["action"],
        version=row["version"],
        alias=row["alias"],
        previous_version=row["previous_version"],
        detail=row["detail"],
    )


def read_events(
    conn: Connection,
    model: str,
    limit: int,
    before_id: int | None,
    action: str | None = None,
    alias: str | None = None,
) -> list[sa.RowMapping]:
    """Up to `limit` events of `model`, newest first, older than event `before_id` if given,
    only of `action` and only about `alias` when given."""
    q = sa.select(events).where(events.c.model == model)
    if action is not None:
        q = q.where(events.c.action == action)
    if alias is not None:
        q = q.where(events.c.alias == alias)
    if before_id is not None:
        q = q.where(events.c.id < before_id)
    return list(conn.execute(q.order_by(events.c.id.desc()).limit(limit)).mappings())
