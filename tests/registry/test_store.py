"""The registry's guarantees under concurrency and failure, on real databases."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from service.registry.db import make_engine
from service.registry.migrate import upgrade
from service.registry.store import Registry
from service.registry.tables import blobs, models, versions
from tests.helpers import lenet_weights, load_model_spec

PARALLEL = 24


@pytest.fixture
def store(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    yield Registry(engine)
    engine.dispose()


def rows(store, table):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_parallel_registrations_get_distinct_consecutive_numbers(store, db_url):
    """24 writers, each with its own engine (as gunicorn workers are), register at once; the
    first of them creates the model."""
    spec = load_model_spec("lenet")
    payloads = [lenet_weights(i) for i in range(PARALLEL)]
    engines = [make_engine(db_url) for _ in range(PARALLEL)]
    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            stored = list(
                pool.map(
                    lambda i: Registry(engines[i]).register("race", spec, payloads[i]),
                    range(PARALLEL),
                )
            )
    finally:
        for e in engines:
            e.dispose()
    numbers = sorted(v.number for v in stored)
    assert numbers == list(range(1, PARALLEL + 1))
    assert rows(store, models) == 1
    assert rows(store, versions) == rows(store, blobs) == PARALLEL
    for sent, version in zip(payloads, stored, strict=True):  # each version holds its own weights
        assert store.weights("race", str(version.number))[1] == sent


def test_a_failure_mid_registration_leaves_nothing(store):
    """The version insert fails after the model row, the counter bump and the blob were written:
    the transaction takes all of them back."""

    def fail_on_version_insert(conn, clauseelement, multiparams, params, execution_options):
        if isinstance(clauseelement, sa.Insert) and clauseelement.table is versions:
            raise RuntimeError("the worker died here")

    event.listen(store.engine, "before_execute", fail_on_version_insert)
    with pytest.raises(RuntimeError, match="died"):
        store.register("crashy", load_model_spec("lenet"), lenet_weights())
    event.remove(store.engine, "before_execute", fail_on_version_insert)
    assert rows(store, models) == rows(store, versions) == rows(store, blobs) == 0
    assert store.register("crashy", load_model_spec("lenet"), lenet_weights()).number == 1


def test_a_failed_registration_of_an_existing_model_keeps_its_numbering(store):
    spec = load_model_spec("lenet")
    store.register("m", spec, lenet_weights(0))

    def fail(conn, clauseelement, *args):
        if isinstance(clauseelement, sa.Insert) and clauseelement.table is versions:
            raise RuntimeError("disconnect")

    event.listen(store.engine, "before_execute", fail)
    with pytest.raises(RuntimeError):
        store.register("m", spec, lenet_weights(1))
    event.remove(store.engine, "before_execute", fail)
    assert store.register("m", spec, lenet_weights(2)).number == 2
    assert rows(store, blobs) == 2
