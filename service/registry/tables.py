"""The registry's tables (SQLAlchemy Core). Alembic owns the schema: see migrations/."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
    }
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    # The next version number to hand out; only ever grows, so numbers are never reused.
    sa.Column("next_version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Weights files, content-addressed: versions with identical weights share one blob. The bytes
# are in blob_chunks; `data` is empty since migration 0004 (kept so that migration is a copy,
# not a rebuild of the table versions refer to).
blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

# A blob's bytes in order, in pieces of weights.CHUNK_BYTES: PostgreSQL caps a bytea value at
# 1 GB and reads and writes a value whole, so one row per file would bound model size and memory.
blob_chunks = sa.Table(
    "blob_chunks",
    metadata,
    sa.Column(
        "sha256",
        sa.String(64),
        sa.ForeignKey("blobs.sha256", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("spec_sha256", sa.String(64), nullable=False),
    sa.Column(
        "weights_sha256", sa.String(64), sa.ForeignKey("blobs.sha256"), nullable=False, index=True
    ),
    sa.Column("totals", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("model_id", "number", name="uq_versions_model_number"),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column(
        "model_id",
        sa.Integer,
        sa.ForeignKey("models.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.String(64), primary_key=True),
    # RESTRICT: a version cannot disappear from under an alias.
    sa.Column(
        "version_id",
        sa.Integer,
        sa.ForeignKey("versions.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Every registry write, recorded in the write's own transaction. Keyed by the model's *name*, not
# its id, and without a foreign key: the history outlives the model (an operator can still see
# that a deleted model existed, and who deleted it). `id` orders events: writers to one model hold
# its row lock while they insert, so ids follow the order the writes took effect.
events = sa.Table(
    "registry_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("alias", sa.String(64), nullable=True),
    sa.Column("previous_version", sa.Integer, nullable=True),
    # What else the action changed: a tag's key and values, a description, a config, `forced`.
    sa.Column("detail", sa.JSON, nullable=True),
    sa.Index("ix_registry_events_model_id", "model", "id"),
)

# Free key/value labels on versions (the version itself stays immutable; its tags do not).
version_tags = sa.Table(
    "version_tags",
    metadata,
    sa.Column(
        "version_id",
        sa.Integer,
        sa.ForeignKey("versions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
    sa.Index("ix_version_tags_key_value", "key", "value"),
)

# Per-model serving state: the batching config GET/PUT /v1/models/{name}/config set (NULL: the
# server-wide defaults) and the repository state /v2/repository/.../load and unload set ("loaded":
# kept compiled in every worker; "unloaded": refused until loaded again; NULL: loaded on demand).
# Goes with its model.
model_configs = sa.Table(
    "model_configs",
    metadata,
    sa.Column(
        "model_id",
        sa.Integer,
        sa.ForeignKey("models.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("config", sa.JSON, nullable=True),
    sa.Column("state", sa.String(16), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
