"""gunicorn settings, from the environment as the README's Configuration table says."""

import gc
import os
import shutil
import tempfile
from pathlib import Path

from service.runtime.blas import prefer_avx512_kernels, share_cpus_between

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Before anything loads NumPy (service.config does): BLAS on one thread, and each worker's engine
# gets its share of the CPUs as its own threads (CONVSERVE_ENGINE_THREADS; see the function).
_fixed_engine_threads = "CONVSERVE_ENGINE_THREADS" in os.environ
share_cpus_between(workers)
prefer_avx512_kernels()  # OpenBLAS's AVX-512 kernels where the CPU has them (see the function)

from service.config import Settings  # noqa: E402 - after the BLAS thread count is set
from service.kernels.parallel import CoreShare  # noqa: E402
from service.runtime.blas import available_cpus  # noqa: E402

# Workers lend their cores to each other while idle, so a lone request runs on every core and
# busy workers never oversubscribe them (see CoreShare). A CONVSERVE_ENGINE_THREADS set by hand
# is taken as a fixed number of threads per worker instead.
_cores = None if _fixed_engine_threads else CoreShare(workers, available_cpus())

_settings = Settings.from_env()

# Prometheus multiprocess mode: every worker writes its metrics under this directory and /metrics
# adds them up. It must be in the environment before a worker imports the app, so it is set here,
# in the master, and emptied at start (values of a previous run would be counted again).
_owned_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _owned_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="convserve-metrics-")
_metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

bind = f"{_settings.host}:{_settings.port}"
# gthread plus a deadline on reading each request (service/worker.py): slow clients are cut off.
worker_class = "service.worker.Worker"
# Request threads per worker: they decode, submit to the worker's scheduler (which batches what
# they bring and runs one batch at a time, service/serving/scheduler.py) and encode. The probes
# and /metrics have two control threads of their own (service/worker.py), so these are sized
# for throughput alone: every thread that decodes at once competes for the worker's GIL, and at
# 16 LeNet clients 4 threads answered 1,449-1,487 requests/s with p99 26-36 ms, 8 threads
# 1,084-1,402 with p99 32-49 ms; ResNet-18 images/s were alike (41-46), README "Performance".
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
accesslog = "-"
errorlog = "-"
logger_class = "service.logs.GunicornLogger"  # JSON lines with the request id
# gunicorn ≥ 24's control socket lives in $HOME, which a container's read-only root lacks.
control_socket_disable = True
wsgi_app = "service.wsgi:app"


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in _metrics_dir.glob("*.db"):  # the directory may be a mount: empty, don't remove
        stale.unlink()


def post_worker_init(worker):  # noqa: ANN001, ANN201
    """The app is loaded: its ~100,000 long-lived objects (Flask, SQLAlchemy, marshmallow, NumPy)
    leave the garbage collector's view. Otherwise every full collection walks them all, stalling
    the worker for ~46 ms every few thousand requests, long enough to set the p99 latency under
    load; frozen, a full collection takes ~0.5 ms."""
    gc.freeze()


def child_exit(server, worker):  # noqa: ANN001, ANN201
    """A worker is gone: its live gauges (cache entries, bytes, workers) stop counting."""
    # prometheus_client itself, not service.metrics: importing that here would define its
    # metrics in the master, whose own gauge files would then report a phantom worker (pid of
    # the master, start time 0) under the liveall gauges.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# -- convserve's security and error contract (service/gunicorn_hooks.py) ---------------------
# Token-less writes are decided from the sockets bound here, never from HOST (which -b or
# GUNICORN_CMD_ARGS override); gunicorn's own errors answer problem+json.
from service import gunicorn_hooks  # noqa: E402

gunicorn_hooks.answer_errors_as_problems()


def when_ready(server):  # noqa: ANN001, ANN201
    gunicorn_hooks.announce_write_policy(server, _settings)


def pre_fork(server, worker):  # noqa: ANN001, ANN201
    if _cores is not None:  # in the master: the new worker's slot in the core share
        worker.core_slot = _cores.free_slot(w.core_slot for w in server.WORKERS.values())


def post_fork(server, worker):  # noqa: ANN001, ANN201
    gunicorn_hooks.record_listeners(worker.sockets)
    if _cores is not None:
        _cores.join(worker.core_slot)


def on_exit(server):  # noqa: ANN001, ANN201
    if _owned_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
