"""Every Prometheus metric convserve exports, defined in one place.

Under gunicorn each worker is its own process. prometheus_client's multiprocess mode keeps each
worker's values in files under `PROMETHEUS_MULTIPROC_DIR` and `/metrics` adds them up; the
gunicorn config creates that directory empty at start and marks a worker dead when it exits, so
live-worker gauges drop its values. The variable must be set before this module is imported
(the gunicorn config does it). Without it (tests, a notebook), the process's own registry is used.

Only collector types that mode supports appear here: counters, histograms, and gauges with an
explicit multiprocess mode. Labels are bounded: routes are URL *templates*, models and versions
exist in the registry, labels are the model's classes.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from . import __version__

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Measured here: a LeNet prediction takes ~3 ms end to end and 0.1 ms in the engine; ResNet-sized
# models take 50 ms – 1 s per batch; registering VGG-16 takes seconds. Buckets span that range.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
INFERENCE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

HTTP_REQUESTS = Counter(
    "convserve_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "convserve_http_request_duration_seconds",
    "Time from request to response, by method and route template.",
    ["method", "route"],
    buckets=HTTP_BUCKETS,
)
INFERENCE_DURATION = Histogram(
    "convserve_inference_duration_seconds",
    "Time the engine takes for one batch execution (all chunks), by model and version.",
    ["model", "version"],
    buckets=INFERENCE_BUCKETS,
)
INFERENCE_BATCH = Histogram(
    "convserve_inference_batch_size",
    "Inputs per engine execution (requests batched together), by model and version.",
    ["model", "version"],
    buckets=BATCH_BUCKETS,
)
QUEUE_DURATION = Histogram(
    "convserve_queue_duration_seconds",
    "Time a request waited for the scheduler before its batch ran, by model and version.",
    ["model", "version"],
    buckets=INFERENCE_BUCKETS,
)
IN_SCHEDULER = Gauge(
    "convserve_scheduler_requests",
    "Inference requests in the scheduler, waiting for or running in a batch, by model and "
    "version, summed over live workers: the queue depth to scale on.",
    ["model", "version"],
    multiprocess_mode="livesum",
)
BATCH_EXECUTIONS = Counter(
    "convserve_batch_executions",
    "Engine executions (batches of one or more requests), by model and version.",
    ["model", "version"],
)
INFERENCES = Counter(
    "convserve_inferences",
    "Inputs inferred; ÷ convserve_batch_executions_total = the average batch size.",
    ["model", "version"],
)
#: Triton's statistics extension, per request phase: success, fail, queue, compute_input,
#: compute_infer, compute_output (a count and the time spent, summed over every worker).
PHASE_COUNT = Counter(
    "convserve_inference_phase",
    "Inference requests through each phase (Triton statistics), by model and version.",
    ["model", "version", "phase"],
)
PHASE_SECONDS = Counter(
    "convserve_inference_phase_seconds",
    "Time inference requests spent in each phase (Triton statistics), by model and version.",
    ["model", "version", "phase"],
)
LAST_INFERENCE = Gauge(
    "convserve_last_inference_timestamp_seconds",
    "Unix time of the last inference, by model and version.",
    ["model", "version"],
    multiprocess_mode="max",
)
PREDICTIONS = Counter(
    "convserve_predictions",
    "Top-1 predictions by class, for drift alerts.",
    ["model", "version", "label"],
)
REGISTRY_OPERATIONS = Counter(
    "convserve_registry_operations",
    "Registry writes by operation and outcome (success, rejected = 4xx, failed = 5xx).",
    ["operation", "outcome"],
)
MODEL_CACHE_ENTRIES = Gauge(
    "convserve_model_cache_entries",
    "Compiled models held in memory, summed over live workers.",
    multiprocess_mode="livesum",
)
MODEL_CACHE_BYTES = Gauge(
    "convserve_model_cache_bytes",
    "Bytes of weights the compiled models hold, summed over live workers.",
    multiprocess_mode="livesum",
)
MODEL_CACHE_EVICTIONS = Counter(
    "convserve_model_cache_evictions", "Compiled models evicted to stay within the cache budget."
)
MODEL_LOADS = Counter(
    "convserve_model_loads", "Versions compiled into a worker's cache (cache misses)."
)
IMAGE_DECODE_FAILURES = Counter(
    "convserve_image_decode_failures",
    "Uploaded images refused before inference, by reason (undecodable, too_large).",
    ["reason"],
)
BUILD_INFO = Gauge(
    "convserve_build_info",
    "Always 1; labels say which convserve, Python and NumPy run.",
    ["version", "python", "numpy"],
    multiprocess_mode="max",
)
WORKERS = Gauge(
    "convserve_workers", "Live worker processes serving requests.", multiprocess_mode="livesum"
)
WORKER_START = Gauge(
    "convserve_worker_start_time_seconds",
    "Unix time each live worker started (label pid).",
    multiprocess_mode="liveall",
)
WORKER_MEMORY = Gauge(
    "convserve_worker_resident_memory_bytes",
    "Resident memory of each live worker (label pid), sampled every 5 s.",
    multiprocess_mode="liveall",
)

_started = False
_lock = threading.Lock()


def start_worker() -> None:
    """Once per process: build info, this worker's gauges and its memory sampler."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
    BUILD_INFO.labels(__version__, platform.python_version(), np.__version__).set(1)
    WORKERS.set(1)
    WORKER_START.set(time.time())
    threading.Thread(target=_sample_memory, name="metrics-memory", daemon=True).start()


def _sample_memory() -> None:
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    while True:
        try:
            with open("/proc/self/statm") as f:
                WORKER_MEMORY.set(int(f.read().split()[1]) * page)
        except OSError:  # not Linux: no sample
            return
        time.sleep(5)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every worker's metrics (or this process's), and its type."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _collected() -> list:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return list(registry.collect())
    return list(REGISTRY.collect())


PHASES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def inference_statistics() -> dict[tuple[str, str], dict[str, Any]]:
    """Per (model, version): Triton's inference statistics, from every worker's metrics."""
    stats: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(labels: dict[str, str]) -> dict[str, Any]:
        key = (labels["model"], labels["version"])
        if key not in stats:
            stats[key] = {
                "inference_count": 0,
                "execution_count": 0,
                "last_inference": 0,
                **{p: {"count": 0, "ns": 0} for p in PHASES},
            }
        return stats[key]

    for family in _collected():
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "convserve_inference_phase_total" and labels.get("phase") in PHASES:
                entry(labels)[labels["phase"]]["count"] += int(value)
            elif (
                name == "convserve_inference_phase_seconds_total" and labels.get("phase") in PHASES
            ):
                entry(labels)[labels["phase"]]["ns"] += int(value * 1e9)
            elif name == "convserve_inferences_total":
                entry(labels)["inference_count"] += int(value)
            elif name == "convserve_batch_executions_total":
                entry(labels)["execution_count"] += int(value)
            elif name == "convserve_last_inference_timestamp_seconds" and "model" in labels:
                e = entry(labels)
                e["last_inference"] = max(e["last_inference"], int(value * 1000))
    return stats
