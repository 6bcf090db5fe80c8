"""Engines for SQLite (embedded default) and PostgreSQL, configured for concurrent writers."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

#: Execution option marking a transaction that will write.
WRITE = {"convserve_write": True}
#: Execution option for a connection that runs one read statement: on SQLite no BEGIN is sent
#: (the statement is its own snapshot), sparing a round trip on every prediction.
SINGLE_READ = {"convserve_single_read": True}


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
        if options.get("convserve_single_read"):
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("convserve_write") else "BEGIN")
