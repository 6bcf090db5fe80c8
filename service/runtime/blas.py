"""The BLAS under NumPy: which kernels it runs, and picking OpenBLAS' AVX-512 ones.

NumPy's wheels bundle OpenBLAS built for many CPUs (DYNAMIC_ARCH), and on some AVX-512 CPUs it
still picks its AVX2 (Haswell) kernels, leaving a good part of the GEMM speed unused; where it
already picks SkylakeX by itself, asking for it changes nothing. So on AVX-512 CPUs the serving
processes set `OPENBLAS_CORETYPE=SkylakeX` (the measurements are in the README, Performance,
"Process settings"). The variable only counts if it is set before OpenBLAS loads, i.e. before
NumPy is first imported, so the serving processes call `prefer_avx512_kernels()` first thing
(deploy/gunicorn.conf.py, service.entry for the CLI; `service.runtime.tune_process()` in a
notebook). A value already in the environment always wins (set `OPENBLAS_CORETYPE=Haswell` to
opt out); CPUs without AVX-512, and NumPy builds on other BLAS libraries, are left alone.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from collections.abc import MutableMapping

CORETYPE = "OPENBLAS_CORETYPE"
#: What OpenBLAS reads for its thread count, in its order of precedence.
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
#: What the engine's thread pool reads (service.kernels.parallel).
ENGINE_THREADS = "CONVSERVE_ENGINE_THREADS"
CGROUP_V2_CPU_MAX = "/sys/fs/cgroup/cpu.max"
CGROUP_V1_CPU = "/sys/fs/cgroup/cpu"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def prefer_avx512_kernels(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Ask OpenBLAS for its SkylakeX kernels on AVX-512 CPUs, unless told otherwise.

    Returns the core type now requested (None: left to OpenBLAS).
    """
    env = os.environ if environ is None else environ
    if CORETYPE in env:
        return env[CORETYPE] or None
    if "numpy" in sys.modules and environ is None:
        return None  # too late: OpenBLAS has already chosen
    if "avx512f" in _cpu_flags():
        env[CORETYPE] = "SkylakeX"
        return "SkylakeX"
    return None


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (a container's
    `--cpus`, a Kubernetes CPU limit), rounded up."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def _cgroup_cpu_quota() -> float | None:
    try:  # cgroup v2: "<quota> <period>" or "max <period>"
        with open(CGROUP_V2_CPU_MAX) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open(f"{CGROUP_V1_CPU}/cpu.cfs_quota_us") as f:
            quota_us = int(f.read())
        with open(f"{CGROUP_V1_CPU}/cpu.cfs_period_us") as f:
            period_us = int(f.read())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def share_cpus_between(workers: int, environ: MutableMapping[str, str] | None = None) -> int:
    """Give each of `workers` server processes its share of the CPUs as engine threads, and run
    BLAS on one thread.

    OpenBLAS starts one thread per CPU in every process, and its threads spin while they wait for
    work: with two gunicorn workers on two cores, each running ResNet-18 at batch 1, the two
    processes together managed 10–15 calls/s with a p99 over 1 s, against 45–47 calls/s (p99
    48–68 ms) with one BLAS thread each. The engine's own threads (service.kernels.parallel) take
    work piece by piece instead, so they share cores gracefully. The BLAS setting counts only
    before NumPy loads (deploy/gunicorn.conf.py calls this before the master imports the app);
    values already in the environment win. Returns the engine threads per worker.
    """
    env = os.environ if environ is None else environ
    threads = max(1, available_cpus() // max(1, workers))
    if not any(v in env for v in THREAD_VARS) and (
        "numpy" not in sys.modules or environ is not None
    ):
        env["OPENBLAS_NUM_THREADS"] = "1"
    env.setdefault(ENGINE_THREADS, str(threads))
    return int(env[ENGINE_THREADS])


def blas_info() -> str:
    """NumPy's BLAS, its version and its kernels, e.g. 'scipy-openblas 0.3.31 (SkylakeX)'."""
    import numpy as np

    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except (AttributeError, KeyError, TypeError):
        name = "unknown BLAS"
    core = _openblas_corename()
    return f"{name} ({core})" if core else name


def blas_threads() -> int | None:
    """The threads NumPy's OpenBLAS runs a call on (None: not OpenBLAS, or not found).

    The service itself never asks (it sets the count through the environment, see
    `share_cpus_between`); bench/engine.py and bench/http_load.py do, to give the engine's own
    threads the cores only when BLAS is single-threaded, and tests check the setting took."""
    fn = _openblas_function("get_num_threads")
    if fn is None:
        return None
    fn.restype = ctypes.c_int
    return int(fn())


def _openblas_corename() -> str | None:
    fn = _openblas_function("get_corename")
    if fn is None:
        return None
    fn.restype = ctypes.c_char_p
    return fn().decode()


def _openblas_function(name: str) -> ctypes._CFuncPtr | None:
    """openblas_<name> of the OpenBLAS NumPy loaded, under any of the wheels' symbol names."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in (f"scipy_openblas_{name}64_", f"openblas_{name}64_", f"openblas_{name}"):
            fn = getattr(lib, symbol, None)
            if fn is not None:
                return fn
    return None
