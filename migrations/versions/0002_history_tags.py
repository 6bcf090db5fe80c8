"""Registry history (every write, with its actor) and version tags.

Existing versions and aliases get `register` and `set_alias` events dated when they were made,
with the actor `unknown`: the history of a registry that predates it starts complete, not empty.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("alias", sa.String(64), nullable=True),
        sa.Column("previous_version", sa.Integer, nullable=True),
        sa.Column("detail", sa.JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_registry_events"),
    )
    op.create_index("ix_registry_events_model_id", "registry_events", ["model", "id"])
    op.create_table(
        "version_tags",
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("version_id", "key", name="pk_version_tags"),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["versions.id"],
            name="fk_version_tags_version_id_versions",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_version_tags_key_value", "version_tags", ["key", "value"])
    # The past, as far as the tables know it, in the order it happened.
    op.execute(
        "INSERT INTO registry_events (model, at, actor, action, version) "
        "SELECT m.name, v.created_at, 'unknown', 'register', v.number "
        "FROM versions v JOIN models m ON m.id = v.model_id ORDER BY v.created_at, v.id"
    )
    op.execute(
        "INSERT INTO registry_events (model, at, actor, action, version, alias) "
        "SELECT m.name, a.updated_at, 'unknown', 'set_alias', v.number, a.name "
        "FROM aliases a JOIN versions v ON v.id = a.version_id JOIN models m ON m.id = a.model_id "
        "ORDER BY a.updated_at"
    )


def downgrade() -> None:
    op.drop_table("version_tags")
    op.drop_table("registry_events")
