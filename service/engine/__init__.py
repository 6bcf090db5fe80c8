"""NumPy execution: compile a validated architecture and its weights into a plan, run batches.

The kernels the plan's steps call (service.kernels) are a leaf that imports nothing of the
project, so the layer catalogue builds on them without a cycle through this package.
"""

from __future__ import annotations

from .plan import Plan, compile_plan

__all__ = ["Plan", "compile_plan"]
