"""Process-wide settings for a process that runs the engine: OpenBLAS's kernels and threads,
glibc's reuse of freed memory. Importing convserve never applies them; the serving processes do
(deploy/gunicorn.conf.py, service.wsgi, the `convserve` command) and a notebook may opt in.

A leaf: it imports neither NumPy nor the rest of the project, so it can run before NumPy loads.
"""

from __future__ import annotations

__all__ = ["tune_process"]


def tune_process() -> None:
    """What a serving process does for the engine: OpenBLAS's AVX-512 kernels where the CPU has
    them (only counts before NumPy is imported) and glibc's reuse of freed activation memory.
    See blas.py and allocator.py."""
    from .allocator import keep_freed_memory
    from .blas import prefer_avx512_kernels

    prefer_avx512_kernels()
    keep_freed_memory()
