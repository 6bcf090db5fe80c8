"""Engines for SQLite (embedded default) and PostgreSQL, configured for concurrent writers."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

#: Execution option marking a transaction that will write.
WRITE = {"convserve_write": True}


class PreparedRead:
    """One read statement compiled once for an engine and run on a pooled DB-API connection.

    For the query every prediction makes (which version does this name and alias mean now):
    SQLAlchemy's Connection, execution context and Result objects cost ~50 µs around a query
    that SQLite answers in ~8, most of a predict request's database time. The connection still
    comes from the engine's pool (pre-ping included); a single SELECT needs no BEGIN on SQLite,
    whose connections run in autocommit mode (see below), and on PostgreSQL the pool's rollback on
    return ends the transaction the driver opened.
    """

    def __init__(self, engine: Engine, statement: sa.Select):
        self.engine = engine
        self.compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(self.compiled)
        self.order = self.compiled.positiontup if self.compiled.positional else None

    def first(self, **params: object) -> tuple | None:
        """The first row, or None."""
        values = self.compiled.construct_params(params)
        args = [values[k] for k in self.order] if self.order is not None else values
        conn = self.engine.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(self.sql, args)
                return cursor.fetchone()
            finally:
                cursor.close()
        finally:
            conn.close()  # back to the pool


def make_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file's folder is created when missing."""
    u = sa.make_url(url)
    if u.get_backend_name() != "sqlite":
        # pre-ping: connections that died with the database are replaced, not handed out
        connect_args = {"connect_timeout": 5} if u.get_backend_name() == "postgresql" else {}
        return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if u.database and u.database != ":memory:":
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})
    _sqlite_for_many_processes(engine)
    return engine


def _sqlite_for_many_processes(engine: Engine) -> None:
    """Foreign keys on, WAL so readers never wait for a writer, and write transactions that take
    the lock up front (BEGIN IMMEDIATE), so two workers never deadlock upgrading a read lock."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API objects
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("convserve_write") else "BEGIN")
