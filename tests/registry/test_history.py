"""The history: exact, in order under concurrent writers, and never showing a failed write."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa

from service.architecture import Architecture
from service.errors import Conflict, NotFound, SpecError
from service.registry import store as store_module
from service.registry.db import make_engine
from service.registry.history import record_set_config
from service.registry.migrate import upgrade
from service.registry.store import Registry
from service.registry.tables import events, models, versions
from service.weights import dump_npz
from tests.helpers import lenet_weights, load_model_spec

WRITERS = 12


@pytest.fixture
def store(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    yield Registry(engine)
    engine.dispose()


def story(store, name="lenet"):
    """(actor, action, version, alias, previous_version) of every event, oldest first."""
    items = store.history(name, limit=500).items
    return [(e.actor, e.action, e.version, e.alias, e.previous_version) for e in reversed(items)]


def test_a_scripted_sequence_is_recorded_exactly(store):
    spec = load_model_spec("lenet")
    store.register("lenet", spec, lenet_weights(0), actor="alice")
    store.register("lenet", spec, lenet_weights(1), actor="bob")
    store.set_alias("lenet", "production", 1, actor="alice")
    store.set_alias("lenet", "production", 2, actor="carol")
    store.set_tag("lenet", "2", "stage", "qa", actor="bob")
    store.set_alias("lenet", "production", 1, actor="carol")  # the rollback
    store.delete_alias("lenet", "production", actor="carol")
    store.delete_version("lenet", "2", actor="root")
    with store.model_write("lenet") as (conn, model):
        assert model["name"] == "lenet"
        record_set_config(conn, "lenet", "lead", {"max_batch": 8})
    store.delete_model("lenet", actor="root")
    assert story(store) == [
        ("alice", "register", 1, None, None),
        ("bob", "register", 2, None, None),
        ("alice", "set_alias", 1, "production", None),
        ("carol", "set_alias", 2, "production", 1),
        ("bob", "set_tag", 2, None, None),
        ("carol", "set_alias", 1, "production", 2),
        ("carol", "delete_alias", None, "production", 1),
        ("root", "delete_version", 2, None, None),
        ("lead", "set_config", None, None, None),
        ("root", "delete_model", None, None, None),
    ]
    newest_first = store.history("lenet").items
    assert newest_first[0].detail == {"versions": [1], "aliases": {}}
    assert newest_first[1].detail == {"config": {"max_batch": 8}, "previous": None}
    assert newest_first[5].detail == {"key": "stage", "value": "qa", "previous_value": None}
    times = [e.at for e in newest_first]
    assert times == sorted(times, reverse=True)
    assert all(e.at.utcoffset() == timedelta(0) for e in newest_first)  # aware, in UTC


def test_the_history_outlives_the_model_and_a_new_life_continues_it(store):
    spec = load_model_spec("lenet")
    store.register("lenet", spec, lenet_weights(0), actor="alice")
    store.delete_model("lenet", actor="root")
    with pytest.raises(NotFound):
        store.model("lenet")
    assert [a for _, a, *_ in story(store)] == ["register", "delete_model"]
    store.register("lenet", spec, lenet_weights(0), actor="bob")  # the name is used again
    assert [(who, a, v) for who, a, v, *_ in story(store)] == [
        ("alice", "register", 1),
        ("root", "delete_model", None),
        ("bob", "register", 1),
    ]
    with pytest.raises(NotFound, match="now or in the history"):
        store.history("never-existed")


def test_history_pages_newest_first(store):
    spec = load_model_spec("lenet")
    for i in range(5):
        store.register("lenet", spec, lenet_weights(i), actor=f"w{i}")
    first = store.history("lenet", limit=2)
    assert [e.version for e in first.items] == [5, 4] and first.next_cursor
    second = store.history("lenet", limit=2, cursor=first.next_cursor)
    third = store.history("lenet", limit=2, cursor=second.next_cursor)
    assert [e.version for e in second.items + third.items] == [3, 2, 1]
    assert third.next_cursor is None


def test_concurrent_writers_leave_an_exact_ordered_history(store, db_url):
    """12 writers with their own engines (as gunicorn workers have) each register a version and
    point `production` at it, all at once: 12 register events with distinct versions, and the
    alias events chain, each one's previous_version being the version the one before set."""
    spec = load_model_spec("lenet")
    store.register("race", spec, lenet_weights(99), actor="setup")
    payloads = [lenet_weights(i) for i in range(WRITERS)]
    engines = [make_engine(db_url) for _ in range(WRITERS)]

    def work(i: int) -> int:
        reg = Registry(engines[i])
        number = reg.register("race", spec, payloads[i], actor=f"writer{i}").number
        reg.set_alias("race", "production", number, actor=f"writer{i}")
        return number

    try:
        with ThreadPoolExecutor(WRITERS) as pool:
            numbers = list(pool.map(work, range(WRITERS)))
    finally:
        for e in engines:
            e.dispose()
    assert sorted(numbers) == list(range(2, WRITERS + 2))
    events_ = story(store, "race")
    assert len(events_) == 1 + 2 * WRITERS
    registered = [(who, v) for who, action, v, *_ in events_ if action == "register"]
    assert sorted(v for _, v in registered) == list(range(1, WRITERS + 2))
    assert {f"writer{i}": n for i, n in enumerate(numbers)} == {
        who: v for who, v in registered if who != "setup"
    }
    moves = [(v, prev) for _, action, v, _, prev in events_ if action == "set_alias"]
    assert moves[0][1] is None
    for (before, _), (_, prev) in zip(moves, moves[1:], strict=False):
        assert prev == before  # every move saw the one before it
    assert store.model("race").aliases["production"] == moves[-1][0]


def five_classes(spec):
    five = {**spec, "labels": spec["labels"][:5]}
    five["layers"] = [dict(layer) for layer in spec["layers"]]
    five["layers"][-2]["out_features"] = 5
    return five


def count_events(store):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()


def test_failing_writes_leave_no_event(store):
    spec = load_model_spec("lenet")
    store.register("lenet", spec, lenet_weights(0))
    five = five_classes(spec)
    store.register("lenet", five, dump_npz(Architecture.from_spec(five).random_weights(0)))
    store.set_alias("lenet", "production", 1)
    before = count_events(store)
    for fail in (
        lambda: store.set_alias("lenet", "production", 2),  # 10 classes → 5
        lambda: store.register("lenet", {**spec, "layers": []}, lenet_weights(0)),
        lambda: store.register("lenet", spec, b"not an npz"),
        lambda: store.set_alias("lenet", "production", 7),
        lambda: store.delete_version("lenet", "1"),  # production points at it
        lambda: store.delete_alias("lenet", "staging"),
        lambda: store.delete_tag("lenet", "1", "stage"),
        lambda: store.delete_model("ghost"),
    ):
        with pytest.raises((SpecError, NotFound, Conflict)):
            fail()
    assert count_events(store) == before


def test_a_write_outside_the_store_commits_with_its_event_or_not_at_all(store):
    store.register("lenet", load_model_spec("lenet"), lenet_weights(0))
    before = count_events(store)
    with pytest.raises(RuntimeError), store.model_write("lenet") as (conn, model):
        conn.execute(sa.update(models).where(models.c.id == model["id"]).values(description="x"))
        record_set_config(conn, "lenet", "lead", {"max_batch": 8})
        raise RuntimeError("the config failed validation after all")
    assert count_events(store) == before and store.model("lenet").description == ""
    with pytest.raises(NotFound), store.model_write("ghost"):
        pass


def test_an_event_commits_or_rolls_back_with_its_write(store, monkeypatch):
    """The database fails just after the event is written: the write is undone with it."""
    spec = load_model_spec("lenet")
    store.register("lenet", spec, lenet_weights(0))
    store.register("lenet", spec, lenet_weights(1))
    before = count_events(store)
    real = store_module.record_event

    def record_then_fail(*args, **kwargs):
        real(*args, **kwargs)
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(store_module, "record_event", record_then_fail)
    with pytest.raises(sa.exc.OperationalError):
        store.delete_version("lenet", "2")
    with pytest.raises(sa.exc.OperationalError):
        store.set_alias("lenet", "production", 1)
    monkeypatch.undo()
    assert count_events(store) == before
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(versions)).scalar_one() == 2
    assert store.model("lenet").aliases == {}


def test_the_migration_dates_what_existed_before_the_history(db_url):
    """A registry made before migration 0002 gets `register` and `set_alias` events for what it
    holds, by the actor `unknown`; the schema then matches the tables the code declares."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from service.registry.migrate import alembic_config
    from service.registry.tables import metadata

    engine = make_engine(db_url)
    try:
        cfg = alembic_config(db_url)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
        old = Registry(engine)
        spec = load_model_spec("lenet")
        with engine.begin() as conn:  # what 0001's code wrote: no events, no tags
            conn.execute(
                sa.text(
                    "INSERT INTO models (name, description, next_version, created_at) "
                    "VALUES ('old', '', 3, :t)"
                ),
                {"t": "2026-11-01 10:00:00"},
            )
        for seed, number in ((0, 1), (1, 2)):
            data = lenet_weights(seed)
            with engine.begin() as conn:
                model_id = conn.execute(sa.text("SELECT id FROM models")).scalar_one()
                digest = store_module.sha256(data)
                conn.execute(
                    sa.text("INSERT INTO blobs (sha256, size, data) VALUES (:s, :n, :d)"),
                    {"s": digest, "n": len(data), "d": data},
                )
                conn.execute(
                    sa.insert(versions).values(
                        model_id=model_id,
                        number=number,
                        description="",
                        spec=spec,
                        spec_sha256="x" * 64,
                        weights_sha256=digest,
                        totals={},
                        created_at=sa.func.now(),
                    )
                )
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO aliases (model_id, name, version_id, updated_at) "
                    "SELECT model_id, 'production', id, created_at FROM versions WHERE number = 2"
                )
            )
        upgrade(engine)
        assert story(old, "old") == [
            ("unknown", "register", 1, None, None),
            ("unknown", "register", 2, None, None),
            ("unknown", "set_alias", 2, "production", None),
        ]
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()
