"""Deleting a version while an alias moves onto it, and `latest` while versions come and go:
409 or 404, never a foreign-key violation, and `latest` always finds a version."""

from __future__ import annotations

import re
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from service.errors import Conflict, NotFound
from service.registry.db import make_engine
from service.registry.migrate import upgrade
from service.registry.store import Registry
from service.serving.dataplane import DataPlane
from tests.helpers import lenet_weights, load_model_spec


@pytest.fixture
def engines(db_url):
    made = []

    def engine():
        e = make_engine(db_url)
        made.append(e)
        return e

    upgrade(engine())
    yield engine
    for e in made:
        e.dispose()


def pause_before(engine, fragment: str, reached: threading.Event, go_on: threading.Event) -> None:
    """Stop the engine's first statement containing `fragment` until `go_on` (or 1 s) is set."""
    fired = []

    @event.listens_for(engine, "before_cursor_execute")
    def _pause(conn, cursor, statement, params, context, executemany):  # noqa: ANN001
        if fragment in statement and not fired:
            fired.append(True)
            reached.set()
            go_on.wait(timeout=1.0)


def run(fn, results: dict, key: str) -> threading.Thread:
    def target():
        try:
            results[key] = fn()
        except Exception as err:  # noqa: BLE001 - the test looks at what came out
            results[key] = err

    t = threading.Thread(target=target)
    t.start()
    return t


@pytest.mark.parametrize("alias_first", [True, False])
def test_deleting_a_version_while_an_alias_moves_onto_it(engines, alias_first):
    setup = Registry(engines())
    spec = load_model_spec("lenet")
    for seed in (0, 1):
        setup.register("m", spec, lenet_weights(seed))
    mover, deleter = Registry(engines()), Registry(engines())
    reached, go_on = threading.Event(), threading.Event()
    results: dict = {}
    if alias_first:  # the alias write has resolved version 1 and is about to point at it
        pause_before(mover.engine, "INSERT INTO aliases", reached, go_on)
        a = run(lambda: mover.set_alias("m", "prod", 1), results, "alias")
        assert reached.wait(10)
        d = run(lambda: deleter.delete_version("m", "1"), results, "delete")
    else:  # the delete has checked the aliases and is about to remove the row
        pause_before(deleter.engine, "DELETE FROM versions", reached, go_on)
        d = run(lambda: deleter.delete_version("m", "1"), results, "delete")
        assert reached.wait(10)
        a = run(lambda: mover.set_alias("m", "prod", 1), results, "alias")
    d.join(0.5) if alias_first else a.join(0.5)
    go_on.set()
    a.join(30)
    d.join(30)
    alias, delete = results["alias"], results["delete"]
    # Exactly one wins, and the loser's answer is a 409 or a 404, never an IntegrityError.
    if isinstance(delete, Exception):
        assert isinstance(delete, Conflict), repr(delete)
        assert alias.alias == "prod" and alias.version == 1
        assert setup.version("m", "prod").number == 1
    else:
        assert isinstance(alias, NotFound), repr(alias)
        assert setup.version_numbers("m") == [2]
        assert setup.model("m").aliases == {}


#: The statement Registry.load_file starts with: the resolved version's spec, by id.
LOADING = re.compile(r"SELECT versions\.spec\s+FROM versions\s+WHERE versions\.id")


def test_latest_never_404s_while_versions_come_and_go(engines):
    """A version is resolved as `latest`, then deleted (a newer one registered first) before it
    is loaded: the data plane resolves again instead of answering 404."""
    writer = Registry(engines())
    spec = load_model_spec("lenet")
    writer.register("m", spec, lenet_weights(0))
    reader_engine = engines()
    plane = DataPlane(Registry(reader_engine))
    seed = iter(range(1, 1000))
    armed = []

    @event.listens_for(reader_engine, "before_cursor_execute")
    def _churn(conn, cursor, statement, params, context, executemany):  # noqa: ANN001
        if LOADING.match(statement) and armed:  # loading the version it just resolved
            armed.clear()
            newest = writer.version("m", "latest").number
            writer.register("m", spec, lenet_weights(next(seed)))
            writer.delete_version("m", str(newest))

    for _ in range(3):
        before = writer.register("m", spec, lenet_weights(next(seed))).number  # not cached
        armed.append(True)
        model = plane.model("m", "latest")
        assert model.number > before  # the one registered while loading, not a 404
        assert model.number not in writer.version_numbers("m")[:-1]
    number = writer.register("m", spec, lenet_weights(next(seed))).number
    armed.append(True)
    with pytest.raises(NotFound, match=f"no version {number}"):  # a number deleted meanwhile
        plane.model("m", str(number))
    with reader_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
