"""The data plane: whole requests (`predict`, `infer`, `activations`) → model cache → batching
scheduler → engine → results; the one path /v1 and /v2 share, with its metrics and statistics.

dataplane.py holds DataPlane and the model cache, scheduler.py the dynamic batcher, batching.py
the per-model configuration it applies (`/v1/models/{name}/config`).
"""

from __future__ import annotations

from .batching import DynamicBatching, ModelConfig
from .dataplane import DataPlane, LoadedModel, ModelCache, best_first
from .scheduler import Scheduler

__all__ = [
    "DataPlane",
    "DynamicBatching",
    "LoadedModel",
    "ModelCache",
    "ModelConfig",
    "Scheduler",
    "best_first",
]
