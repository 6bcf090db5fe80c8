"""Weights against what an architecture expects: every array present with its exact shape and
kind, nothing unexpected, all finite in float32. Every problem is collected, each naming the
array and what its layer needs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..catalogue.base import WeightSpec, fmt_shape, plural
from ..errors import Problem, WeightsError
from .builder import Node


def check_weights(
    expected: Mapping[str, WeightSpec],
    nodes: Mapping[str, Node],
    arrays: Mapping[str, np.ndarray],
    keep: bool = True,
) -> dict[str, np.ndarray]:
    """`arrays` checked against the `expected` specs (by `<layer>.<suffix>`) of `nodes` (by name).

    Returns the arrays as float32 (integer arrays such as PyTorch's `num_batches_tracked` are
    checked, then dropped); raises WeightsError listing every problem. Each array is read from
    `arrays` once; with keep=False none is kept, so a lazy mapping (an open .npz) is checked
    holding one array at a time, and {} is returned.
    """
    problems: list[Problem] = []
    out: dict[str, np.ndarray] = {}
    for key, spec in expected.items():
        layer, suffix = key.rsplit(".", 1)
        values, problem = _check_array(key, spec, arrays)
        if problem is not None:
            problems.append(Problem(layer, suffix, problem))
        elif keep and values is not None:
            out[key] = values
        del values  # before the next array is read
    for key in arrays:
        if key not in expected:
            problems.append(_unexpected(key, nodes))
    if problems:
        raise WeightsError(problems)
    return out


def _check_array(
    key: str, spec: WeightSpec, arrays: Mapping[str, np.ndarray]
) -> tuple[np.ndarray | None, str | None]:
    """(the array as float32, None) when it passes; (None, what is wrong) when it does not;
    (None, None) when it is optional and absent, or an integer array that passes."""
    layer = key.rsplit(".", 1)[0]
    if key not in arrays:
        if not spec.required:
            return None, None
        return None, (
            f"the weights lack '{key}': {layer} needs a {fmt_shape(spec.shape)} "
            f"array ({spec.meaning})"
        )
    a = np.asarray(arrays[key])
    if a.dtype.kind not in ("iu" if spec.dtype == "int" else "f"):
        want = "an integer" if spec.dtype == "int" else "a floating-point"
        return None, f"'{key}' holds {a.dtype} values; it must be {want} array"
    if tuple(a.shape) != tuple(spec.shape):
        return None, (
            f"'{key}' has shape {fmt_shape(a.shape) if a.ndim else 'scalar'} but "
            f"{layer} needs {fmt_shape(spec.shape) if spec.shape else 'a scalar'}"
            + (f" ({spec.meaning})" if spec.meaning else "")
        )
    if spec.dtype == "int":
        return None, None
    if a.dtype == np.float32:
        f32 = a
    else:
        with np.errstate(over="ignore"):  # too large for float32 becomes inf, reported
            f32 = a.astype(np.float32)
    bad = _not_finite(f32)
    if bad:
        verb = "is" if bad == 1 else "are"
        return None, (
            f"'{key}' holds {plural(bad, 'value')} that {verb} not finite in float32 "
            f"(NaN, infinite, or too large)"
        )
    return f32, None


def _not_finite(a: np.ndarray, chunk: int = 1 << 22) -> int:
    """How many values are NaN or infinite, a few MB at a time (not a mask as big as `a`)."""
    flat = np.ravel(a, order="K")
    return sum(
        int(part.size - np.count_nonzero(np.isfinite(part)))
        for part in (flat[i : i + chunk] for i in range(0, flat.size, chunk))
    )


def _unexpected(key: str, nodes: Mapping[str, Node]) -> Problem:
    layer = key.rsplit(".", 1)[0] if "." in key else key
    if layer in nodes:
        node = nodes[layer]
        has = ", ".join(node.weights) or "no weights"
        return Problem(
            layer, None, f"'{key}' is not a weight of {layer}: a {node.layer.type} stores {has}"
        )
    return Problem(None, key, f"'{key}' belongs to no layer: no layer is named '{layer}'")
