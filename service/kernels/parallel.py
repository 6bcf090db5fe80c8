"""The engine's own threads: one call's independent pieces of work shared among them.

A leaf module (it imports nothing of the project). Convolutions cut their output into pieces
(bands of rows, groups of images, ranges of Winograd tiles); `run_all` hands the pieces out one
at a time to whichever thread is free, the calling thread included, and returns when all are
done. NumPy releases the GIL inside its copies and GEMMs, so the pieces really run at once.

Why not let BLAS do it: OpenBLAS' threads spin while they wait for work, so when another process
takes one of the cores, every GEMM waits for the thread that is not running, and the whole call
slows several-fold. Pieces handed out on demand degrade gracefully instead: the thread on the
busy core simply takes fewer of them. So a serving process runs BLAS on one thread and gives the
engine the CPUs (`set_threads`, `CONVSERVE_ENGINE_THREADS`).

Threads are shared by every call in the process: concurrent calls each make progress on their own
thread and take help when a pool thread is free, so nothing waits on anything but work.

Between processes (gunicorn's workers) the CPUs are shared by `CoreShare`: each worker owns its
share, and borrows the shares of workers that are idle at that moment, layer by layer. So a lone
request gets every core, and workers that are all busy never run more threads than there are.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

THREADS_ENV = "CONVSERVE_ENGINE_THREADS"

_lock = threading.Lock()
_threads = 0  # 0: not decided yet (see threads())
_executor: ThreadPoolExecutor | None = None
_inside = threading.local()  # set on pool threads: work they start runs inline, never nested
_share: CoreShare | None = None  # set in a server's worker processes (CoreShare.join)


def default_threads() -> int:
    """CONVSERVE_ENGINE_THREADS, else this process' CPUs when its BLAS is single-threaded, else 1
    (a multithreaded BLAS already uses the cores, and two kinds of threads would fight)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"{THREADS_ENV} must be an integer, got {value!r}") from None
    blas = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    if blas == "1":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            return max(1, os.cpu_count() or 1)
    return 1


def threads() -> int:
    """Threads one engine call may use at most (the caller's own included)."""
    global _threads
    if _threads == 0:
        with _lock:
            if _threads == 0:
                _threads = default_threads()
    return _threads


def set_threads(n: int) -> None:
    """Use `n` threads per engine call from now on (1: everything on the caller's thread)."""
    global _threads, _executor
    n = max(1, int(n))
    with _lock:
        old, _executor = _executor, None
        _threads = n
    if old is not None:
        old.shutdown(wait=False)


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=max(1, _threads - 1),
                thread_name_prefix="engine",
                initializer=_mark_inside,
            )
        return _executor


def _mark_inside() -> None:
    _inside.active = True


def threads_now() -> int:
    """Threads the next piece of work may use: `threads()`, less the shares of the other worker
    processes that are busy right now (see CoreShare)."""
    n = threads()
    return n if _share is None else _share.threads_now(n)


def pieces() -> int:
    """How many pieces a call should cut its work into: a few per thread, so that a thread that
    falls behind (its core taken by another process) leaves its share to the others."""
    n = threads_now()
    return 1 if n == 1 or getattr(_inside, "active", False) else 3 * n


def run_all(tasks: Sequence[Callable[[], object]]) -> None:
    """Run every task once, spread over the engine's threads; return when all have finished.

    Tasks must be independent (they write disjoint memory). The first error is raised after
    every started task has stopped.
    """
    count = len(tasks)
    helpers = min(threads_now(), count) - 1
    if helpers <= 0 or getattr(_inside, "active", False):
        for task in tasks:
            task()
        return
    state = {"next": 0, "error": None}
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = state["next"]
                if i >= count or state["error"] is not None:
                    return
                state["next"] = i + 1
            try:
                tasks[i]()
            except BaseException as err:  # noqa: BLE001 - handed to the caller below
                with lock:
                    if state["error"] is None:
                        state["error"] = err
                return

    pool = _pool()
    futures = [pool.submit(work) for _ in range(helpers)]
    work()  # the caller works too, so a busy pool never leaves it waiting idle
    for f in futures:
        f.result()
    if state["error"] is not None:
        raise state["error"]


class CoreShare:
    """The CPUs of one server, shared by its worker processes without oversubscribing them.

    Each of `workers` processes owns `cpus // workers` of them (at least one) and marks itself
    busy while it runs a batch (`busy()`). Before each piece of parallel work (one layer), a
    process counts the others that are busy and uses every CPU they do not own: alone, a request
    runs on all the cores; with every worker busy, each runs on its own share. A worker that gets
    busy while another has borrowed its core waits at most for the end of that layer's pieces,
    which are handed out on demand. The flags live in anonymous shared memory made by the
    server's master before it forks (`CoreShare(...)`); the master picks each new worker's slot
    (`free_slot`), and the worker `join`s it after the fork. One byte per slot: a worker writes
    only its own, so no lock is needed.
    """

    def __init__(self, workers: int, cpus: int):
        self.workers = max(1, int(workers))
        self.cpus = max(1, int(cpus))
        self.own = max(1, self.cpus // self.workers)
        self._flags = mmap.mmap(-1, self.workers)  # MAP_SHARED | MAP_ANONYMOUS: kept over fork
        self.slot: int | None = None

    def free_slot(self, taken: Iterable[int | None]) -> int | None:
        """The lowest slot no live worker holds (None: all held, e.g. during a reload)."""
        used = set(taken)
        return next((i for i in range(self.workers) if i not in used), None)

    def join(self, slot: int | None) -> None:
        """In a worker after the fork: take `slot` and make this the process's share. Without a
        slot (more workers than slots) the worker uses its own share only."""
        global _share
        self.slot = slot
        if slot is not None:
            self._flags[slot] = 0  # a worker that died busy left its flag set
        set_threads(self.cpus)
        _share = self

    def busy_others(self) -> int:
        flags = self._flags[:]
        return sum(flags) - (flags[self.slot] if self.slot is not None else 0)

    def threads_now(self, limit: int) -> int:
        if self.slot is None:
            return min(limit, self.own)
        return max(1, min(limit, self.cpus - self.own * self.busy_others()))

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Mark this worker busy while the block runs (one engine batch)."""
        if self.slot is None:
            yield
            return
        self._flags[self.slot] = 1
        try:
            yield
        finally:
            self._flags[self.slot] = 0


@contextmanager
def engaged() -> Iterator[None]:
    """Mark this process busy for the server's other workers while the block runs (one engine
    batch); nothing when the process shares no cores (a notebook, a test, the CLI)."""
    if _share is None:
        yield
    else:
        with _share.busy():
            yield
