"""The BLAS under NumPy: which kernels it runs, and picking OpenBLAS' AVX-512 ones.

NumPy's wheels bundle OpenBLAS built for many CPUs (DYNAMIC_ARCH). On a 2-core AVX-512 Xeon VM
it still picked its Haswell (AVX2) kernels; `OPENBLAS_CORETYPE=SkylakeX` made it use AVX-512 and
raised NumPy's float32 GEMM from 130–139 to 186 GFLOP/s there (2048³, two threads, quiet machine;
see bench/engine.py). On a 2-core AMD EPYC (Zen 4) VM OpenBLAS 0.3.31 picks SkylakeX by itself,
and Haswell, Zen, SkylakeX and SapphireRapids kernels measured alike (191–213 GFLOP/s), so the
setting changes nothing there. The variable only counts if it is set before
OpenBLAS loads, i.e. before NumPy is first imported, so `service/__init__.py` calls
`prefer_avx512_kernels()` first thing. A value already in the environment always wins (set
`OPENBLAS_CORETYPE=Haswell` to opt out); CPUs without AVX-512, and NumPy builds on other BLAS
libraries, are left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import MutableMapping

CORETYPE = "OPENBLAS_CORETYPE"


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


def _openblas_corename() -> str | None:
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
        for symbol in ("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                       "openblas_get_corename"):  # fmt: skip
            fn = getattr(lib, symbol, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return None
