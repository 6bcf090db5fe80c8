"""Weights in chunks: blob_chunks holds each blob's bytes in pieces; blobs.data is emptied.

PostgreSQL caps a bytea value at 1 GB and reads and writes a value whole, so one value per
weights file bounded the models the registry could hold and the memory of every read.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

blobs = sa.table(
    "blobs", sa.column("sha256", sa.String), sa.column("data", sa.LargeBinary)
)
chunks = sa.table(
    "blob_chunks",
    sa.column("sha256", sa.String),
    sa.column("seq", sa.Integer),
    sa.column("data", sa.LargeBinary),
)


def upgrade() -> None:
    op.create_table(
        "blob_chunks",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("sha256", "seq", name="pk_blob_chunks"),
        sa.ForeignKeyConstraint(
            ["sha256"], ["blobs.sha256"], name="fk_blob_chunks_sha256_blobs", ondelete="CASCADE"
        ),
    )
    # Existing files become one chunk each (any chunk size reads back the same), in SQL: no
    # file passes through the migrating process.
    op.execute(
        chunks.insert().from_select(
            ["sha256", "seq", "data"], sa.select(blobs.c.sha256, sa.literal(0), blobs.c.data)
        )
    )
    op.execute(blobs.update().values(data=b""))


def downgrade() -> None:
    conn = op.get_bind()
    for (digest,) in conn.execute(sa.select(blobs.c.sha256)).all():
        parts = conn.execute(
            sa.select(chunks.c.data).where(chunks.c.sha256 == digest).order_by(chunks.c.seq)
        ).scalars()
        conn.execute(
            blobs.update().where(blobs.c.sha256 == digest).values(data=b"".join(parts))
        )
    op.drop_table("blob_chunks")
