"""NumPy execution: compile a validated architecture and its weights into a plan, run batches.

`compile_plan` and `Plan` are loaded on first use so that `service.engine.kernels`, which the
layer catalogue uses, stays a leaf module with no imports back into the catalogue.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Plan", "compile_plan", "tune_process"]


def tune_process() -> None:
    """What a serving process does for the engine (an opt-in: importing convserve changes
    nothing): OpenBLAS's AVX-512 kernels where the CPU has them (only before NumPy is imported)
    and glibc's reuse of freed activation memory. See blas.py and allocator.py."""
    from .allocator import keep_freed_memory
    from .blas import prefer_avx512_kernels

    prefer_avx512_kernels()
    keep_freed_memory()


def __getattr__(name: str) -> Any:
    if name in ("Plan", "compile_plan"):
        from . import plan

        return getattr(plan, name)
    raise AttributeError(name)
