"""Random weights for an architecture: a model to try before it is trained."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..catalogue.base import WeightSpec, prod


def random_weights(specs: Mapping[str, WeightSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Every required array of `specs` as float32, as each spec's `init` says: He-initialised
    ("he": normal with variance 2 / fan-in), "ones" (batch norm's scale and running variance),
    else zeros (biases, running means)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, spec in specs.items():
        if not spec.required:
            continue
        if spec.init == "he":
            fan_in = max(1, prod(spec.shape[1:]))
            a = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=spec.shape)
        elif spec.init == "ones":
            a = np.ones(spec.shape)
        else:
            a = np.zeros(spec.shape)
        out[key] = a.astype(np.float32)
    return out
