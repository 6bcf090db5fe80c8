"""NumPy execution: compile a validated architecture and its weights into a plan, run batches.

`compile_plan` and `Plan` are loaded on first use so that `service.engine.kernels`, which the
layer catalogue uses, stays a leaf module with no imports back into the catalogue.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Plan", "compile_plan"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import plan

        return getattr(plan, name)
    raise AttributeError(name)
