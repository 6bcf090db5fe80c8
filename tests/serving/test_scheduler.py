"""Dynamic batching: requests waiting together run as one engine batch, each gets its own rows
back in order, and the queue's bounds answer 503."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.errors import InvalidInput, Unavailable
from service.serving.batching import DynamicBatching, ModelConfig
from service.serving.scheduler import Scheduler


class Model:
    """Stands in for a LoadedModel: the scheduler only hands it back to `execute`."""

    name, number = "m", 1


class Engine:
    """Records every batch; each output row is its input row times ten. `gate` holds the first
    batch until released, so that later requests pile up in the queue meanwhile."""

    def __init__(self, hold_first: bool = False):
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.started = threading.Event()
        if not hold_first:
            self.gate.set()

    def __call__(self, model, x, layer=None):  # noqa: ANN001, ANN204
        self.started.set()
        self.gate.wait(10)
        self.batches.append(len(x))
        return x * 10


def config(mbs=8, delay_us=0, preferred=(), queue=1024, timeout_us=0) -> ModelConfig:
    return ModelConfig(mbs, DynamicBatching(delay_us, tuple(preferred), queue, timeout_us))


def submit_many(sched, cfg, sizes, key="k"):
    """One thread per request; returns each request's result in submission order."""
    with ThreadPoolExecutor(len(sizes)) as pool:
        futs = []
        for i, n in enumerate(sizes):
            x = np.full((n, 2), float(i), np.float32)
            futs.append(pool.submit(lambda x=x: sched.submit(key, Model(), x, cfg)))
            time.sleep(0.01)  # submission order = queue order
        return [f.result(timeout=20) for f in futs]


def wait_until(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_requests_waiting_together_run_as_one_batch_and_get_their_own_rows():
    engine = Engine(hold_first=True)
    sched = Scheduler(engine, lambda m: ("m", "1"))
    cfg = config(mbs=8)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(sched.submit, "k", Model(), np.zeros((1, 2), np.float32), cfg)
        engine.started.wait(5)  # the first request is running alone; the rest queue behind it
        rest = [
            pool.submit(sched.submit, "k", Model(), np.full((n, 2), i, np.float32), cfg)
            for i, n in enumerate([1, 2, 3, 1], start=1)
        ]
        wait_until(lambda: sched.waiting == 7)
        engine.gate.set()
        results = [first.result(10)] + [f.result(10) for f in rest]
    assert engine.batches == [1, 7]
    for i, (req, n) in enumerate(zip(results, [1, 1, 2, 3, 1], strict=True)):
        np.testing.assert_array_equal(req.result, np.full((n, 2), 10.0 * i))
        assert req.compute_seconds >= 0 and req.queue_seconds >= 0


def test_a_batch_never_exceeds_max_batch_size_nor_mixes_models():
    engine = Engine(hold_first=True)
    sched = Scheduler(engine, lambda m: ("m", "1"))
    cfg = config(mbs=4)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(sched.submit, "a", Model(), np.zeros((1, 2), np.float32), cfg)
        engine.started.wait(5)
        futs = [
            pool.submit(sched.submit, key, Model(), np.ones((n, 2), np.float32), cfg)
            for key, n in [("a", 3), ("b", 2), ("a", 2), ("a", 1), ("b", 1)]
        ]
        wait_until(lambda: sched.waiting == 9)
        engine.gate.set()
        first.result(10)
        for f in futs:
            f.result(10)
    # a: 3 then (2+1); b: 2+1 — in queue order of each model's first waiting request.
    assert engine.batches == [1, 3, 3, 3]


def test_a_request_bigger_than_max_batch_size_runs_alone():
    engine = Engine()
    sched = Scheduler(engine, lambda m: ("m", "1"))
    (req,) = submit_many(sched, config(mbs=2), [5])
    assert engine.batches == [5] and req.result.shape == (5, 2)


def test_the_queue_delay_gathers_requests_that_arrive_meanwhile():
    engine = Engine()
    sched = Scheduler(engine, lambda m: ("m", "1"))
    submit_many(sched, config(mbs=4, delay_us=2_000_000), [1, 1, 1, 1])
    assert engine.batches == [4]  # released when full, long before the 2 s delay


def test_without_delay_nothing_waits_for_more_requests():
    engine = Engine()
    sched = Scheduler(engine, lambda m: ("m", "1"))
    start = time.perf_counter()
    submit_many(sched, config(mbs=8, delay_us=0), [1])
    assert engine.batches == [1] and time.perf_counter() - start < 1.0


def test_a_preferred_batch_size_is_formed_when_it_can_be():
    engine = Engine(hold_first=True)
    sched = Scheduler(engine, lambda m: ("m", "1"))
    cfg = config(mbs=8, preferred=[2, 4])
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(sched.submit, "k", Model(), np.zeros((1, 2), np.float32), cfg)
        engine.started.wait(5)
        futs = [
            pool.submit(sched.submit, "k", Model(), np.ones((1, 2), np.float32), cfg)
            for _ in range(5)
        ]
        wait_until(lambda: sched.waiting == 5)
        engine.gate.set()
        first.result(10)
        for f in futs:
            f.result(10)
    assert engine.batches == [1, 4, 1]


def test_a_full_queue_answers_unavailable_with_retry_after():
    engine = Engine(hold_first=True)
    sched = Scheduler(engine, lambda m: ("m", "1"))
    cfg = config(mbs=8, queue=3)
    with ThreadPoolExecutor(4) as pool:
        running = pool.submit(sched.submit, "k", Model(), np.zeros((1, 2), np.float32), cfg)
        engine.started.wait(5)
        waiting = pool.submit(sched.submit, "k", Model(), np.zeros((3, 2), np.float32), cfg)
        wait_until(lambda: sched.waiting == 3)
        with pytest.raises(Unavailable, match="max_queue_size") as err:
            sched.submit("k", Model(), np.zeros((1, 2), np.float32), cfg)
        assert err.value.retry_after >= 1
        engine.gate.set()
        running.result(10), waiting.result(10)


def test_a_request_that_waited_past_its_timeout_fails_without_running():
    engine = Engine(hold_first=True)
    sched = Scheduler(engine, lambda m: ("m", "1"))
    cfg = config(mbs=8, timeout_us=50_000)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(sched.submit, "k", Model(), np.zeros((1, 2), np.float32), cfg)
        engine.started.wait(5)
        late = pool.submit(sched.submit, "k", Model(), np.zeros((1, 2), np.float32), cfg)
        wait_until(lambda: sched.waiting == 1)
        time.sleep(0.2)
        engine.gate.set()
        running.result(10)
        with pytest.raises(Unavailable, match="default_timeout_microseconds"):
            late.result(10)
    assert engine.batches == [1]


def test_an_engine_error_reaches_every_request_of_the_batch_and_the_scheduler_goes_on():
    calls = []

    def engine(model, x, layer=None):  # noqa: ANN001, ANN202
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("engine failed")
        return x

    sched = Scheduler(engine, lambda m: ("m", "1"))
    with pytest.raises(RuntimeError, match="engine failed"):
        sched.submit("k", Model(), np.zeros((1, 2), np.float32), config())
    assert sched.submit("k", Model(), np.ones((1, 2), np.float32), config()).result.sum() == 2


def test_config_parsing_names_the_wrong_field_and_keeps_unsent_fields():
    base = config(mbs=16, delay_us=100)
    cfg = ModelConfig.parse({"dynamic_batching": {"preferred_batch_size": [4, 8]}}, base)
    assert cfg.max_batch_size == 16
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 100
    assert cfg.dynamic_batching.preferred_batch_size == (4, 8)
    assert ModelConfig.parse(cfg.to_dict()) == cfg
    bad = [
        ({"max_batch_size": 0}, "max_batch_size must be between 1"),
        ({"max_batch_size": "8"}, "max_batch_size must be an integer"),
        ({"max_batch_size": 2**70}, "max_batch_size must be between"),
        ({"max_batch_size": True}, "max_batch_size must be an integer"),
        ({"batch": 1}, "unknown config field"),
        ({"dynamic_batching": {"delay": 1}}, "unknown dynamic_batching field"),
        ({"dynamic_batching": {"max_queue_size": -1}}, "max_queue_size must be between 0"),
        ({"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": [8]}}, "above"),
        ({"dynamic_batching": []}, "must be a JSON object"),
        ([], "must be a JSON object"),
    ]
    for doc, message in bad:
        with pytest.raises(InvalidInput, match=message):
            ModelConfig.parse(doc)


def test_server_wide_defaults_come_from_the_environment():
    env = {
        "CONVSERVE_MAX_BATCH_SIZE": "16",
        "CONVSERVE_MAX_QUEUE_DELAY_US": "500",
        "CONVSERVE_PREFERRED_BATCH_SIZE": "4, 8",
        "CONVSERVE_MAX_QUEUE_SIZE": "64",
        "CONVSERVE_DEFAULT_TIMEOUT_US": "2000000",
    }
    assert ModelConfig.from_env(env) == config(16, 500, (4, 8), 64, 2_000_000)
    assert ModelConfig.from_env({}) == ModelConfig()
    with pytest.raises(ValueError, match="CONVSERVE_MAX_BATCH_SIZE must be an integer"):
        ModelConfig.from_env({"CONVSERVE_MAX_BATCH_SIZE": "many"})


def test_the_scheduler_gauge_counts_requests_waiting_and_running_then_falls_to_zero():
    from prometheus_client import REGISTRY

    def in_scheduler() -> float:
        labels = {"model": "gauge-m", "version": "1"}
        return REGISTRY.get_sample_value("convserve_scheduler_requests", labels) or 0.0

    engine = Engine(hold_first=True)
    sched = Scheduler(engine, lambda m: ("gauge-m", "1"))
    cfg = config(mbs=1)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(sched.submit, "k", Model(), np.zeros((1, 2), np.float32), cfg)
        engine.started.wait(5)
        waiting = pool.submit(sched.submit, "k", Model(), np.zeros((1, 2), np.float32), cfg)
        wait_until(lambda: in_scheduler() == 2)  # one running, one waiting for the next batch
        engine.gate.set()
        running.result(10), waiting.result(10)
    assert in_scheduler() == 0
    with pytest.raises(Unavailable):  # refused requests never count
        sched.submit("k", Model(), np.zeros((2, 2), np.float32), config(mbs=1, queue=1))
    assert in_scheduler() == 0


def test_a_request_that_finds_the_scheduler_idle_runs_on_its_own_thread():
    """Nothing waiting and no delay to honour: the batch runs at once on the caller's thread (no
    hand-off); a request arriving meanwhile queues and runs next, on the scheduler's thread,
    never beside it."""
    threads, running = [], []

    class Recording(Engine):
        def __call__(self, model, x, layer=None):  # noqa: ANN001, ANN204
            running.append(1)
            assert len(running) == 1, "two batches at once"
            threads.append(threading.current_thread().name)
            try:
                return super().__call__(model, x, layer)
            finally:
                running.pop()

    engine = Recording(hold_first=True)
    sched = Scheduler(engine, lambda m: ("m", "1"))
    cfg = config(mbs=8)
    with ThreadPoolExecutor(2, thread_name_prefix="request") as pool:
        first = pool.submit(sched.submit, "k", Model(), np.zeros((1, 2), np.float32), cfg)
        engine.started.wait(5)
        second = pool.submit(sched.submit, "k", Model(), np.ones((1, 2), np.float32), cfg)
        wait_until(lambda: sched.waiting == 1)
        engine.gate.set()
        first.result(10), second.result(10)
    assert threads[0].startswith("request") and threads[1] == "scheduler"
    with_delay = config(mbs=8, delay_us=1000)  # a delay to honour: always the scheduler's thread
    sched.submit("k", Model(), np.zeros((1, 2), np.float32), with_delay)
    assert threads[2] == "scheduler"
