"""Scaling out, shown: two gunicorn instances on their own ports, as two pods would be, share one
PostgreSQL database and nothing else. What one instance writes, the other serves on its next
request; concurrent writes through both never collide.

Runs only when TEST_DATABASE_URL is PostgreSQL (SQLite is one machine's file, not a database
pods share). The instances get a schema of their own, dropped afterwards, so parallel runs of
the suite never see each other's models.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
import requests
import sqlalchemy as sa

from tests.helpers import PG_URL, ROOT, lenet_weights, pg_schema_url
from tests.helpers.live import gunicorn_server

pytestmark = pytest.mark.skipif(
    not (PG_URL or "").startswith("postgresql"),
    reason="scale-out needs a shared PostgreSQL: set TEST_DATABASE_URL",
)

SPEC = (ROOT / "models" / "lenet.json").read_bytes()
IMAGE = (ROOT / "models" / "examples" / "7.png").read_bytes()
RACERS = 16


@pytest.fixture(scope="module")
def shared_db():
    """A schema of its own in the test database, migrated as a release's Job would do it."""
    schema = f"t_scale_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = pg_schema_url(PG_URL, schema)
    try:
        subprocess.run(
            [sys.executable, "-m", "service.cli", "db", "upgrade"],
            cwd=ROOT, env={**os.environ, "DATABASE_URL": url}, check=True,
            capture_output=True, timeout=120,
        )  # fmt: skip
        yield url
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(scope="module")
def instances(shared_db, tmp_path_factory):
    """Base URLs of two independent servers (one worker each) on the shared database."""
    logs = tmp_path_factory.mktemp("scale-out")
    with ExitStack() as stack:
        a, _ = stack.enter_context(gunicorn_server(shared_db, logs / "a.log"))
        b, _ = stack.enter_context(gunicorn_server(shared_db, logs / "b.log"))
        assert a != b
        yield a, b


def register(base: str, model: str, seed: int) -> requests.Response:
    files = {"spec": ("lenet.json", SPEC), "weights": ("w.npz", lenet_weights(seed))}
    return requests.post(f"{base}/v1/models/{model}/versions", files=files, timeout=60)


def predict(base: str, path: str) -> dict:
    resp = requests.post(f"{base}{path}", files={"image": ("7.png", IMAGE)}, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


def top(answer: dict) -> list[tuple[int, float]]:
    return [(t["index"], round(t["probability"], 6)) for t in answer["predictions"][0]["top"]]


def test_what_one_instance_writes_the_other_serves_on_its_next_request(instances):
    a, b = instances
    model = "handover"
    assert register(a, model, seed=1).status_code == 201
    first = predict(b, f"/v1/models/{model}/predict")  # B compiles and caches version 1
    assert first["version"] == 1

    # a new version through A: B's next "newest" is it, with its weights, not B's cached plan
    assert register(a, model, seed=2).status_code == 201
    second = predict(b, f"/v1/models/{model}/predict")
    assert second["version"] == 2
    assert top(second) == top(predict(a, f"/v1/models/{model}/versions/2/predict"))
    assert top(second) != top(first)

    # an alias moved through A: B follows it on the very next request, each way
    resp = requests.put(f"{a}/v1/models/{model}/aliases/default", json={"version": 1}, timeout=10)
    assert resp.status_code == 200, resp.text
    back = predict(b, f"/v1/models/{model}/predict")
    assert back["version"] == 1 and top(back) == top(first)
    resp = requests.put(f"{a}/v1/models/{model}/aliases/default", json={"version": 2}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert predict(b, f"/v1/models/{model}/predict")["version"] == 2
    assert predict(b, f"/v1/models/{model}/versions/default/predict")["version"] == 2

    # and a deletion through B is seen by A
    assert requests.delete(f"{b}/v1/models/{model}/aliases/default", timeout=10).status_code == 204
    assert requests.delete(f"{b}/v1/models/{model}/versions/1", timeout=10).status_code == 204
    gone = requests.post(
        f"{a}/v1/models/{model}/versions/1/predict", files={"image": ("7.png", IMAGE)}, timeout=60
    )
    assert gone.status_code == 404
    assert gone.headers["Content-Type"].startswith("application/problem+json")


def test_concurrent_registrations_through_both_get_distinct_versions(instances):
    a, b = instances
    model = "race"

    def post(i: int) -> requests.Response:
        return register((a, b)[i % 2], model, seed=i)

    with ThreadPoolExecutor(RACERS) as pool:
        responses = list(pool.map(post, range(RACERS)))
    assert [r.status_code for r in responses] == [201] * RACERS, [r.text for r in responses]
    versions = [r.json()["version"] for r in responses]  # in the order of the seeds
    assert sorted(versions) == list(range(1, RACERS + 1))
    for base in (a, b):  # each instance lists every version, whichever one registered it
        listed = requests.get(f"{base}/v1/models/{model}/versions?limit=100", timeout=10).json()
        assert sorted(v["version"] for v in listed["versions"]) == sorted(versions)
    for seed, version in enumerate(versions):  # each number holds the upload it was given
        base = (b, a)[seed % 2]  # asked of the instance that did not register it
        weights = requests.get(f"{base}/v1/models/{model}/versions/{version}/weights", timeout=10)
        assert weights.content == lenet_weights(seed), (seed, version)
    path = f"/v1/models/{model}/versions/{versions[0]}/predict"
    assert top(predict(a, path)) == top(predict(b, path))
