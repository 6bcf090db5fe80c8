"""Two versions of a model compared layer by layer.

Layers are matched by name. A layer is `changed` when anything a user would notice differs: its
type, inputs or fields as validated (defaults filled in, so `stride: 1` and no stride are the
same), its weights, or the shapes flowing in and out of it. `fields` names each of those;
`weight_change` is ‖to − from‖ / ‖from‖ over all of the layer's arrays where every shape matches.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from service.architecture import Architecture, Node

from .records import LayerChange

Arrays = Mapping[str, np.ndarray]


def _layer_fields(node: Node) -> dict[str, Any]:
    return {"type": node.layer.type, "inputs": list(node.inputs), **dict(node.layer.cfg)}


def _arrays_of(node: Node, arrays: Arrays) -> dict[str, np.ndarray]:
    out = {}
    for suffix in node.weights:
        key = f"{node.name}.{suffix}"
        if key in arrays:
            out[suffix] = np.asarray(arrays[key], dtype=np.float64)
    return out


def weight_change(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float | None:
    """Relative L2 norm of the change; None when the layer has no weights, shapes differ, or
    the old weights are all zero (a relative change of something from nothing is undefined)."""
    if not a or a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return None
    delta = sum(float(np.sum((b[k] - a[k]) ** 2)) for k in a)
    base = sum(float(np.sum(a[k] ** 2)) for k in a)
    if delta == 0.0:
        return 0.0
    return float(np.sqrt(delta / base)) if base > 0 else None  # from all zeros: no ratio


def _order(old: list[str], new: list[str]) -> list[str]:
    """Every name once, in the new order, removed layers where they stood in the old one."""
    new_set = set(new)
    out: list[str] = []
    seen: set[str] = set()
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for _tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for name in old[i1:i2]:
            if name not in new_set and name not in seen:
                out.append(name)
                seen.add(name)
        for name in new[j1:j2]:
            if name not in seen:
                out.append(name)
                seen.add(name)
    return out


def diff(
    old: Architecture,
    new: Architecture,
    old_arrays: Callable[[], Arrays],
    new_arrays: Callable[[], Arrays],
    same_weights: bool = False,
) -> list[LayerChange]:
    """The layers of `old` against `new`. The arrays are loaded only when needed (not at all
    when `same_weights`: both versions share one weights file)."""
    a_arrays: Arrays = {} if same_weights else old_arrays()
    b_arrays: Arrays = {} if same_weights else new_arrays()
    layers = []
    for name in _order([n.name for n in old.nodes], [n.name for n in new.nodes]):
        a, b = old.by_name.get(name), new.by_name.get(name)
        from_row, to_row = (a.row() if a else None), (b.row() if b else None)
        if a is None or b is None:
            change = "added" if a is None else "removed"
            layers.append(LayerChange(name, change, [], from_row, to_row, None))
            continue
        fa, fb = _layer_fields(a), _layer_fields(b)
        changed = sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))
        if a.in_shapes != b.in_shapes:
            changed.append("input_shapes")
        if a.out_shape != b.out_shape:
            changed.append("output_shape")
        moved: float | None = None
        if a.weights:
            if same_weights:
                wa = {k: w.shape for k, w in a.weights.items()}
                wb = {k: w.shape for k, w in b.weights.items()}
                moved = 0.0 if wa == wb else None
                if wa != wb:
                    changed.append("weights")
            else:
                xa, xb = _arrays_of(a, a_arrays), _arrays_of(b, b_arrays)
                moved = weight_change(xa, xb)
                if moved != 0.0 and (xa or xb):
                    changed.append("weights")
        change = "changed" if changed else "same"
        layers.append(LayerChange(name, change, changed, from_row, to_row, moved))
    return layers
