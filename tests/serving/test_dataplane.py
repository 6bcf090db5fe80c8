"""The data plane: resolution per request, the compiled-model cache, chunked batches, top-k."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.architecture import Architecture
from service.engine import compile_plan
from service.errors import InvalidInput, NotFound, TooLarge
from service.registry.store import Resolved
from service.serving.dataplane import DataPlane, LoadedModel, ModelCache
from service.weights import dump_npz, load_npz
from tests.helpers import lenet_weights, load_model_spec, spec_of


@pytest.fixture
def plane(registry):
    return DataPlane(registry)


def fake(nbytes: int) -> LoadedModel:
    """A cache entry of a given size (the cache looks at nothing else)."""
    version = Resolved("m", 1, 1, "s", "w")
    return LoadedModel(version, None, None, None, nbytes, 1)  # type: ignore[arg-type]


# -- cache -------------------------------------------------------------------------------


def test_cache_evicts_least_recently_used_beyond_its_budget():
    cache = ModelCache(budget_bytes=100)
    for key in "abc":
        cache.get(key, lambda: fake(40))
    assert "a" not in cache and cache.entries == 2 and cache.bytes == 80
    assert cache.evictions == 1
    cache.get("b", lambda: pytest.fail("b is cached"))  # b is now the most recent
    cache.get("d", lambda: fake(40))
    assert "c" not in cache and "b" in cache and "d" in cache


def test_a_model_bigger_than_the_budget_is_still_served_alone():
    cache = ModelCache(budget_bytes=100)
    cache.get("a", lambda: fake(40))
    big = cache.get("big", lambda: fake(500))
    assert big.nbytes == 500 and "big" in cache and "a" not in cache and cache.entries == 1


def test_concurrent_first_requests_compile_once():
    cache = ModelCache(budget_bytes=1 << 30)
    calls = []

    def load():
        calls.append(1)
        time.sleep(0.2)
        return fake(1)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: cache.get("k", load), range(8)))
    assert len(calls) == 1 and all(m is got[0] for m in got)


def test_a_failed_load_is_retried_by_the_next_request():
    cache = ModelCache(budget_bytes=1 << 30)

    def broken():
        raise NotFound("gone")

    with pytest.raises(NotFound):
        cache.get("k", broken)
    assert cache.get("k", lambda: fake(1)).nbytes == 1


# -- resolution ----------------------------------------------------------------------------


def test_unversioned_requests_follow_alias_default_else_the_newest(plane, registry):
    spec = load_model_spec("lenet")
    for seed in range(3):
        registry.register("lenet", spec, lenet_weights(seed))
    assert plane.model("lenet").number == 3
    registry.set_alias("lenet", "default", 1)
    assert plane.model("lenet").number == 1
    registry.set_alias("lenet", "default", 2)  # an alias move is seen by the very next request
    assert plane.model("lenet").number == 2
    registry.delete_alias("lenet", "default")
    assert plane.model("lenet").number == 3
    assert plane.model("lenet", "1").number == 1
    with pytest.raises(NotFound, match="no model named 'nope'"):
        plane.model("nope")


def test_each_worker_sees_an_alias_move_at_once(registry):
    """Two data planes on one database stand for two gunicorn workers."""
    spec = load_model_spec("lenet")
    for seed in range(2):
        registry.register("lenet", spec, lenet_weights(seed))
    registry.set_alias("lenet", "production", 1)
    workers = [DataPlane(registry), DataPlane(registry)]
    assert [w.model("lenet", "production").number for w in workers] == [1, 1]
    registry.set_alias("lenet", "production", 2)
    assert [w.model("lenet", "production").number for w in workers] == [2, 2]


def test_the_cached_plan_is_the_stored_versions(plane, registry):
    spec = load_model_spec("lenet")
    registry.register("lenet", spec, lenet_weights(7))
    m = plane.model("lenet")
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    arch = Architecture.from_spec(spec)
    want = compile_plan(arch, arch.check_weights(load_npz(lenet_weights(7)))).run(x)
    np.testing.assert_array_equal(plane.run(m, x), want)
    assert plane.model("lenet") is m  # a second request reuses the compiled plan
    assert m.nbytes == sum(a.nbytes for a in load_npz(lenet_weights(7)).values())


def test_a_deleted_and_reused_row_id_does_not_serve_stale_weights(plane, registry):
    spec = load_model_spec("lenet")
    registry.register("lenet", spec, lenet_weights(1))
    old = plane.model("lenet", "1")
    registry.delete_model("lenet")
    registry.register("lenet", spec, lenet_weights(2))  # SQLite may give it the same row id
    new = plane.model("lenet", "1")
    assert new is not old
    x = np.ones((1, 1, 32, 32), np.float32)
    assert not np.array_equal(plane.run(new, x), plane.run(old, x))


# -- running -------------------------------------------------------------------------------


def test_batches_run_in_chunks_that_fit_the_budget(registry):
    registry.register("lenet", load_model_spec("lenet"), lenet_weights())
    small = DataPlane(registry, batch_bytes=1)  # one image per engine call
    whole = DataPlane(registry)
    x = np.random.default_rng(1).standard_normal((5, 1, 32, 32)).astype(np.float32)
    m_small, m_whole = small.model("lenet"), whole.model("lenet")
    assert m_small.chunk == 1 and m_whole.chunk >= 5
    calls = []
    run = m_small.plan.run
    m_small.plan.run = lambda batch: calls.append(len(batch)) or run(batch)  # type: ignore
    np.testing.assert_allclose(small.run(m_small, x), whole.run(m_whole, x), rtol=1e-5)
    assert calls == [1] * 5


def register_tiny(registry, name, last, labels=None, out=3):
    """Input [4] → linear to `out` scores → optional `last` layer."""
    layers = [{"name": "fc", "type": "linear", "in_features": 4, "out_features": out}]
    if last:
        layers.append({"name": "out", "type": last})
    spec = spec_of([4], *layers, **({"labels": labels} if labels else {}))
    w = {
        "fc.weight": np.eye(out, 4, dtype=np.float32),
        "fc.bias": np.zeros(out, np.float32),
    }
    registry.register(name, spec, dump_npz(w))


def test_top_k_is_best_first_with_softmax_of_logits(plane, registry):
    register_tiny(registry, "logits", None, labels=["cat", "dog", "eel"])
    x = np.array([[1.0, 3.0, 2.0, 0.0]], np.float32)
    _, (pred,) = plane.predict("logits", None, lambda m: x, top_k=5)  # clamped to 3 classes
    p = np.exp([1.0, 3.0, 2.0]) / np.exp([1.0, 3.0, 2.0]).sum()
    assert [t["label"] for t in pred["top"]] == ["dog", "eel", "cat"]
    assert [t["index"] for t in pred["top"]] == [1, 2, 0]
    np.testing.assert_allclose([t["probability"] for t in pred["top"]], p[[1, 2, 0]], rtol=1e-6)


def test_a_softmax_output_is_taken_as_it_is_and_labels_default_to_indices(plane, registry):
    register_tiny(registry, "probs", "softmax")
    x = np.array([[0.0, 0.0, 5.0, 0.0]], np.float32)
    _, (pred,) = plane.predict("probs", None, lambda m: x, top_k=1)
    p = np.exp(5.0) / (np.exp(5.0) + 2)
    assert pred["top"] == [{"index": 2, "label": "2", "probability": pytest.approx(p, rel=1e-6)}]


def test_a_non_classifier_output_is_refused_for_predict(plane, registry):
    spec = spec_of([1, 4, 4], {"name": "r", "type": "relu"})
    registry.register("maps", spec, dump_npz({}))
    with pytest.raises(InvalidInput, match=r"outputs 1×4×4 values per input, not a vector"):
        plane.predict("maps", None, lambda m: np.zeros((1, 1, 4, 4), np.float32), 1)


def test_instances_are_checked(plane, registry):
    registry.register("lenet", load_model_spec("lenet"), lenet_weights())
    m = plane.model("lenet")
    assert plane.instances(m, np.zeros((2, 32, 32)).tolist()).shape == (2, 1, 32, 32)
    with pytest.raises(InvalidInput, match=r"shape \[1, 32, 32\] .*instance 0 has shape \[1, 8\]"):
        plane.instances(m, [[[0.0] * 8]])
    with pytest.raises(InvalidInput, match="ragged"):
        plane.instances(m, [[[0.0] * 32] * 31 + [[0.0]]])
    with pytest.raises(InvalidInput, match="NaN or infinity"):
        plane.instances(m, [[[float("nan")] * 32] * 32])
    with pytest.raises(InvalidInput, match="no instances"):
        plane.instances(m, [])
    with pytest.raises(TooLarge, match="at most 256"):
        plane.instances(m, [[[0.0] * 32] * 32] * 257)


def test_activations_of_a_layer_and_of_the_input(plane, registry):
    registry.register("lenet", load_model_spec("lenet"), lenet_weights())
    m = plane.model("lenet")
    x = np.random.default_rng(2).standard_normal((1, 1, 32, 32)).astype(np.float32)
    _, conv1 = plane.activations("lenet", None, lambda m: x, "conv1")
    _, want = m.plan.run(x, capture=["conv1"])
    np.testing.assert_array_equal(conv1, want["conv1"][0])
    assert conv1.shape == (3, 28, 28)
    np.testing.assert_array_equal(plane.activations("lenet", "1", lambda m: x, "image")[1], x[0])
    with pytest.raises(NotFound, match="no layer 'conv9'; its layers are image, conv1, relu1"):
        plane.activations("lenet", None, lambda m: x, "conv9")
    with pytest.raises(InvalidInput, match="one input at a time, not 2"):
        plane.activations("lenet", None, lambda m: np.concatenate([x, x]), "conv1")


def test_warm_up_loads_models_and_survives_missing_ones(plane, registry, caplog):
    registry.register("lenet", load_model_spec("lenet"), lenet_weights())
    plane.warm_up(["lenet:1", "ghost"])
    assert plane.cache.entries == 1
    assert "warm-up: ghost not loaded" in caplog.text


def test_plans_are_safe_to_share_between_threads(plane, registry):
    registry.register("lenet", load_model_spec("lenet"), lenet_weights())
    m = plane.model("lenet")
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((4, 1, 32, 32)).astype(np.float32) for _ in range(16)]
    want = [m.plan.run(x) for x in xs]
    barrier = threading.Barrier(4)

    def work(i):
        barrier.wait() if i < 4 else None
        return m.plan.run(xs[i], capture=["conv1"] if i % 2 else ())

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(work, range(16)))
    for i, g in enumerate(got):
        np.testing.assert_allclose(g[0] if i % 2 else g, want[i], rtol=1e-5)
