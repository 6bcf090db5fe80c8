"""Dynamic batching, with Triton's semantics: requests for the same version that wait together
run as one engine batch, and each result goes back to its own request.

One scheduler per worker process runs one batch at a time, so the engine (which cuts each call
into pieces for its own threads) always has the whole CPU share of the process and requests never
compete for it. A batch runs on the scheduler's thread, except when a request finds the
scheduler idle with nothing waiting and no queue delay to honour: then it runs at once on the
request's own thread (a batch of one either way), which saves two thread hand-offs — each a wait
for the GIL, measured at a quarter of a worker's GIL time under LeNet load. Requests arriving
meanwhile queue and run together as the next batch. A batch is released
when it is full (`max_batch_size` inputs), when a `preferred_batch_size` can be formed, or when
the oldest request has waited `max_queue_delay_microseconds` (default 0: take what is already
waiting, never wait for more). `max_queue_size` bounds the inputs waiting per model (beyond it,
503 with Retry-After) and `default_timeout_microseconds` fails a request that waited too long.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import metrics
from ..errors import Unavailable
from ..kernels import parallel
from .batching import ModelConfig


@dataclass(eq=False)
class _Request:
    key: Hashable
    model: Any
    x: np.ndarray
    config: ModelConfig
    task: Any = None
    enqueued: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None
    queue_seconds: float = 0.0
    compute_seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self.x)


Execute = Callable[[Any, np.ndarray, Any], np.ndarray]


class Scheduler:
    """Forms batches from waiting requests and runs them, one at a time, on its own thread."""

    def __init__(self, execute: Execute, labels: Callable[[Any], tuple[str, str]]):
        self._execute = execute
        self._labels = labels
        self._cond = threading.Condition()
        self._queue: deque[_Request] = deque()
        self._waiting: dict[Hashable, int] = {}  # inputs waiting, per model
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._busy = False  # a batch is running (on the scheduler thread or a request's own)

    def submit(
        self, key: Hashable, model: Any, x: np.ndarray, config: ModelConfig, task: Any = None
    ) -> _Request:
        """Queue `x` (a batch of inputs) and wait for its output; raises what the run raised.

        Requests with the same `key` may share a batch; `key` must tell apart requests that
        `execute(model, x, task)` runs differently (another version, another `task`).
        """
        req = _Request(key, model, x, config, task)
        with self._cond:
            limit = config.dynamic_batching.max_queue_size
            waiting = self._waiting.get(key, 0)
            if limit and waiting + req.n > limit:
                raise Unavailable(
                    f"{waiting} inputs are already waiting for this model and its queue holds "
                    f"{limit} (max_queue_size): try again shortly"
                )
            inline = (
                not self._busy
                and not self._queue
                and not config.dynamic_batching.max_queue_delay_microseconds
            )
            if inline:
                self._busy = True
            else:
                self._ensure_thread()
                self._waiting[key] = waiting + req.n
                self._queue.append(req)
                self._cond.notify()
        gauge = metrics.IN_SCHEDULER.labels(*self._labels(model))
        gauge.inc()
        try:
            if inline:
                self._run_guarded([req])
            else:
                req.done.wait()
        finally:
            gauge.dec()
        if req.error is not None:
            raise req.error
        return req

    @property
    def waiting(self) -> int:
        with self._cond:
            return sum(self._waiting.values())

    def _ensure_thread(self) -> None:
        # Started on first use in each process (a thread does not survive gunicorn's fork).
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            self._run_guarded(self._next_batch())

    def _run_guarded(self, batch: list[_Request]) -> None:
        """Run a batch taken while marking the scheduler busy; then it is idle again."""
        try:
            self._run(batch)
        except BaseException as err:  # noqa: BLE001 - every waiter must be released
            for req in batch:
                if not req.done.is_set():
                    req.error = err
                    req.done.set()
        finally:
            with self._cond:
                self._busy = False
                if self._queue:
                    self._ensure_thread()
                    self._cond.notify()

    def _next_batch(self) -> list[_Request]:
        """The next batch, once the scheduler is idle; marks it busy."""
        with self._cond:
            while True:
                while not self._queue or self._busy:
                    self._cond.wait()
                head = self._queue[0]
                cfg = head.config
                delay = cfg.dynamic_batching.max_queue_delay_microseconds / 1e6
                deadline = head.enqueued + delay
                while True:
                    available = self._available(head.key, cfg.max_batch_size)
                    now = time.perf_counter()
                    if (
                        available >= cfg.max_batch_size
                        or now >= deadline
                        or available in cfg.dynamic_batching.preferred_batch_size
                        and available == max(cfg.dynamic_batching.preferred_batch_size)
                    ):
                        break
                    self._cond.wait(deadline - now)
                    if not self._queue or self._queue[0] is not head:
                        break  # the head was taken meanwhile (cannot happen with one thread)
                if self._queue and self._queue[0] is head and not self._busy:
                    self._busy = True
                    return self._take(head.key, cfg)

    def _available(self, key: Hashable, limit: int) -> int:
        """Inputs of whole waiting requests for `key` that fit one batch of `limit`."""
        total = 0
        for req in self._queue:
            if req.key != key:
                continue
            if total and total + req.n > limit:
                break
            total += req.n
        return total

    def _take(self, key: Hashable, cfg: ModelConfig) -> list[_Request]:
        """Remove the next batch for `key` from the queue: as many waiting requests as fit
        max_batch_size, cut back to the largest preferred size that can be formed."""
        chosen: list[_Request] = []
        total = 0
        for req in self._queue:
            if req.key != key:
                continue
            if chosen and total + req.n > cfg.max_batch_size:
                break
            chosen.append(req)
            total += req.n
        preferred = [p for p in cfg.dynamic_batching.preferred_batch_size if p <= total]
        if preferred and total not in cfg.dynamic_batching.preferred_batch_size:
            target, running, cut = max(preferred), 0, []
            for req in chosen:
                if running + req.n > target:
                    break
                cut.append(req)
                running += req.n
            if cut:
                chosen = cut
        taken = {id(r) for r in chosen}
        self._queue = deque(r for r in self._queue if id(r) not in taken)
        self._waiting[key] -= sum(r.n for r in chosen)
        if not self._waiting[key]:
            del self._waiting[key]
        return chosen

    def _run(self, batch: list[_Request]) -> None:
        start = time.perf_counter()
        live = []
        for req in batch:
            req.queue_seconds = start - req.enqueued
            timeout = req.config.dynamic_batching.default_timeout_microseconds / 1e6
            if timeout and req.queue_seconds > timeout:
                req.error = Unavailable(
                    f"the request waited {req.queue_seconds * 1000:.0f} ms in the queue, longer "
                    f"than default_timeout_microseconds allows ({timeout * 1000:.0f} ms)"
                )
                req.done.set()
            else:
                live.append(req)
        if not live:
            return
        model = live[0].model
        labels = self._labels(model)
        for req in live:
            metrics.QUEUE_DURATION.labels(*labels).observe(req.queue_seconds)
        x = live[0].x if len(live) == 1 else np.concatenate([r.x for r in live])
        with parallel.engaged():  # the server's other workers leave this one its cores
            y = self._execute(model, x, live[0].task)  # times itself into the inference metrics
        elapsed = time.perf_counter() - start
        metrics.BATCH_EXECUTIONS.labels(*labels).inc()
        metrics.INFERENCES.labels(*labels).inc(len(x))
        i = 0
        for req in live:
            req.result = y[i : i + req.n]
            req.compute_seconds = elapsed
            i += req.n
            req.done.set()
