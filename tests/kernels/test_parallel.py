"""The engine's own threads: work cut into pieces gives the same numbers as one thread, errors
reach the caller, and threads never nest."""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np
import pytest

from service import kernels
from service.kernels import parallel


@pytest.fixture
def engine_threads():
    """Set the engine's thread count for a test; restored afterwards."""
    before = parallel.threads()
    yield parallel.set_threads
    parallel.set_threads(before)


def _conv_case(rng, channels, out_ch, size, k, stride=1, groups=1, pad=1):
    w = rng.standard_normal((out_ch, channels // groups, k, k)).astype(np.float32)
    b = rng.standard_normal(out_ch).astype(np.float32)
    return w, b, (stride, stride), (1, 1), (pad, pad), (pad, pad), groups, (size, size)


CONVS = {
    "winograd": dict(channels=64, out_ch=64, size=28, k=3),
    # More output channels than tiles or columns: the threads share out the output channels
    # (Winograd at batch 8, im2col at batches 1 and 3; grouped: within each group).
    "deep": dict(channels=128, out_ch=256, size=8, k=3),
    "grouped-deep": dict(channels=256, out_ch=256, size=7, k=3, groups=4),
    "im2col-bands": dict(channels=32, out_ch=48, size=56, k=3, stride=2),
    "im2col-merged": dict(channels=128, out_ch=128, size=7, k=3, stride=1),
    "pointwise-grouped": dict(channels=96, out_ch=192, size=28, k=1, groups=3, pad=0),
    "depthwise": dict(channels=64, out_ch=64, size=56, k=3, groups=64),
}


@pytest.mark.parametrize("case", sorted(CONVS))
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_parallel_conv_matches_one_thread(engine_threads, case, batch):
    rng = np.random.default_rng(0)
    args = _conv_case(rng, **CONVS[case])
    x = rng.standard_normal((batch, CONVS[case]["channels"], *args[-1])).astype(np.float32)
    relu = lambda a: np.maximum(a, 0, out=a)  # noqa: E731 - the fused epilogue

    engine_threads(1)
    one = kernels.conv_kernel(*args, epilogue=relu)(x)
    engine_threads(3)
    assert parallel.pieces() > 1
    many = kernels.conv_kernel(*args, epilogue=relu)(x)
    # Other cuts sum in another order: float32 rounding, relative to the largest output.
    np.testing.assert_allclose(many, one, rtol=0, atol=1e-5 * np.abs(one).max())


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_parallel_pool_matches_one_thread(engine_threads, mode):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 64, 56, 56)).astype(np.float32)
    div = kernels.avg_pool_divisor((56, 56), (3, 3), (2, 2), (1, 1), (28, 28), True)
    pool = dict(kernel=(3, 3), stride=(2, 2), pad_lo=(1, 1), out_sp=(28, 28), mode=mode)
    pool["divisor"] = div if mode == "avg" else None
    engine_threads(1)
    one = kernels.pool_kernel((56, 56), scratch_bytes=1 << 16, **pool)(x)
    engine_threads(4)
    many = kernels.pool_kernel((56, 56), scratch_bytes=1 << 16, **pool)(x)
    np.testing.assert_array_equal(many, one)


def test_run_all_uses_several_threads_and_runs_every_task_once(engine_threads):
    engine_threads(3)
    seen: list[tuple[int, str]] = []
    barrier = threading.Barrier(3, timeout=10)  # only passes if three threads work at once

    def task(i: int) -> None:
        if i < 3:
            barrier.wait()
        seen.append((i, threading.current_thread().name))

    parallel.run_all([lambda i=i: task(i) for i in range(12)])
    assert sorted(i for i, _ in seen) == list(range(12))
    assert len({name for _, name in seen}) == 3


def test_run_all_raises_the_first_error_after_all_pieces_stop(engine_threads):
    engine_threads(2)
    done: list[int] = []

    def task(i: int) -> None:
        if i == 1:
            raise ValueError("piece 1 failed")
        done.append(i)

    with pytest.raises(ValueError, match="piece 1 failed"):
        parallel.run_all([lambda i=i: task(i) for i in range(4)])


def test_work_started_on_a_pool_thread_runs_inline(engine_threads):
    engine_threads(2)
    inner_threads: set[str] = set()

    def outer() -> None:
        parallel.run_all(
            [lambda: inner_threads.add(threading.current_thread().name) for _ in range(4)]
        )

    # Each outer piece starts more work; on a pool thread it must not wait for the pool itself.
    parallel.run_all([outer for _ in range(4)])
    assert inner_threads  # ran, and did not deadlock


def test_default_threads_follow_the_environment(monkeypatch):
    monkeypatch.setenv("CONVSERVE_ENGINE_THREADS", "5")
    assert parallel.default_threads() == 5
    monkeypatch.delenv("CONVSERVE_ENGINE_THREADS")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    assert parallel.default_threads() == 1  # BLAS already uses the cores
    monkeypatch.setenv("CONVSERVE_ENGINE_THREADS", "two")
    with pytest.raises(ValueError, match="CONVSERVE_ENGINE_THREADS"):
        parallel.default_threads()


@pytest.fixture
def core_share():
    """A CoreShare joined by this process for one test; the process' own setting restored."""
    before = parallel.threads()
    made: list[parallel.CoreShare] = []

    def make(workers: int, cpus: int) -> parallel.CoreShare:
        made.append(parallel.CoreShare(workers, cpus))
        return made[-1]

    yield make
    parallel._share = None
    parallel.set_threads(before)


def _in_child(share: parallel.CoreShare, slot: int, busy: bool) -> tuple[int, int]:
    """Fork a worker that joins `slot` (busy or idle) and waits; returns (pid, fd to release it)."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: hold the flag until told to go
        try:
            share.join(slot)
            with share.busy() if busy else contextlib.nullcontext():
                os.write(ready_w, b"x")
                os.read(go_r, 1)
        finally:
            os._exit(0)
    os.read(ready_r, 1)
    return pid, go_w


def _release(pid: int, go: int) -> None:
    os.write(go, b"x")
    os.waitpid(pid, 0)


def test_an_idle_worker_lends_its_cores_and_a_busy_one_keeps_them(core_share):
    share = core_share(workers=2, cpus=4)
    assert share.free_slot([]) == 0 and share.free_slot([0]) == 1
    assert share.free_slot([0, 1]) is None
    share.join(0)
    assert parallel.threads() == 4
    assert parallel.threads_now() == 4  # the other worker is idle: every core
    assert parallel.pieces() == 12

    pid, go = _in_child(share, slot=1, busy=True)
    try:
        assert parallel.threads_now() == 2  # it is busy: only this worker's own share
        ran_on: set[str] = set()
        parallel.run_all([lambda: ran_on.add(threading.current_thread().name)] * 50)
        assert len(ran_on) <= 2
    finally:
        _release(pid, go)
    assert parallel.threads_now() == 4  # it went idle again (its flag is cleared on the way out)


def test_a_worker_that_died_busy_does_not_hold_its_cores(core_share):
    share = core_share(workers=2, cpus=2)
    share.join(0)
    share._flags[1] = 1  # what a worker killed inside a batch leaves behind
    assert parallel.threads_now() == 1
    pid, go = _in_child(share, slot=1, busy=False)  # its replacement takes the slot
    try:
        assert parallel.threads_now() == 2
    finally:
        _release(pid, go)


def test_a_worker_without_a_slot_uses_its_own_share_only(core_share):
    share = core_share(workers=3, cpus=6)
    share.join(None)  # a fourth worker during a reload
    assert parallel.threads() == 6 and parallel.threads_now() == 2
    with parallel.engaged():  # and marks nothing
        assert sum(share._flags[:]) == 0


def test_gunicorn_gives_each_worker_its_own_slot(monkeypatch, tmp_path):
    """deploy/gunicorn.conf.py's hooks, as gunicorn's master calls them before each fork."""
    import runpy
    from pathlib import Path
    from types import SimpleNamespace

    monkeypatch.delenv("CONVSERVE_ENGINE_THREADS", raising=False)
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the file sets it otherwise
    conf = runpy.run_path(str(Path(__file__).parents[2] / "deploy" / "gunicorn.conf.py"))
    server = SimpleNamespace(WORKERS={})
    for pid in (101, 102, 103):
        worker = SimpleNamespace()
        conf["pre_fork"](server, worker)
        server.WORKERS[pid] = worker
    assert sorted(w.core_slot for w in server.WORKERS.values()) == [0, 1, 2]
    dead = server.WORKERS.pop(102)  # a worker exits; its replacement gets its slot
    replacement = SimpleNamespace()
    conf["pre_fork"](server, replacement)
    assert replacement.core_slot == dead.core_slot
