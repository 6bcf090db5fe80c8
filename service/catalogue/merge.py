"""add (residual connections) and concat (inception branches, along channels)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .base import (
    Layer,
    LayerError,
    LayerType,
    Op,
    ReceptiveField,
    Shape,
    Source,
    fmt_shape,
    spec_example,
)
from .index import CATALOGUE, register
from .onnx_graph import OnnxGraph, OnnxRefusal, node_name


def _listing(sources: Sequence[Source]) -> str:
    return ", ".join(f"{s} produces {fmt_shape(s.shape)}" for s in sources)


class Merge(LayerType):
    """Combines two or more inputs into one output."""

    family = "merge"
    arity = (2, None)

    def example(self) -> dict[str, Any]:
        branch = {"name": "branch", "type": "conv2d", "in_channels": 3, "out_channels": 3,
                  "kernel_size": 3, "padding": 1}  # fmt: skip
        return spec_example([3, 16, 16], {"inputs": ["image", "branch"]}, before=[branch])

    def receptive_field(
        self, layer: Layer, in_rfs: Sequence[ReceptiveField], in_shapes: Sequence[Shape]
    ) -> ReceptiveField:
        """An output that combines several paths sees as far as the widest of them."""
        return ReceptiveField(
            tuple(max(sizes) for sizes in zip(*(r.size for r in in_rfs), strict=True)),
            tuple(max(strides) for strides in zip(*(r.stride for r in in_rfs), strict=True)),
        )


@register
class Add(Merge):
    type_name = "add"
    inplace = True  # may write the sum over its first input
    onnx_ops = {"Add": ""}

    def output_shape(self, layer: Layer, sources: Sequence[Source]) -> Shape:
        shapes = {s.shape for s in sources}
        if len(shapes) > 1:
            raise LayerError(
                (
                    "inputs",
                    f"{layer.name} adds its inputs value by value, so they must have the same "
                    f"shape, but {_listing(sources)}",
                )
            )
        return sources[0].shape

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        return f"sums {len(in_shapes)} inputs of {fmt_shape(out_shape)} value by value"

    def compile(
        self, layer: Layer, weights: Mapping[str, np.ndarray], in_shapes: Sequence[Shape]
    ) -> Op:
        def add(*xs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
            y = np.add(xs[0], xs[1], out=out)
            for x in xs[2:]:
                y += x
            return y

        return add

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        """Tensors added: an add layer. A constant added: the bias of the layer just before
        (x·W + b as exported by MatMul then Add), when that layer can take one."""
        consts = [t for t in node.input if t in g.consts]
        if not consts:
            g.layer(node, self, list(node.input))
            return
        (bias_name,) = consts
        (x,) = [t for t in node.input if t != bias_name]
        prev = g.layers[-1] if g.layers else None
        if (
            prev is None
            or g.producer.get(x) != prev["name"]
            or not CATALOGUE[prev["type"]].absorb_onnx_bias(g, prev, g.consts[bias_name])
        ):
            raise OnnxRefusal(
                f"Add {node_name(node)!r} adds a constant; convserve supports that only as the "
                f"bias of the MatMul just before it",
            )
        g.producer[node.output[0]] = prev["name"]


@register
class Concat(Merge):
    type_name = "concat"
    onnx_ops = {"Concat": "(along the channels)"}

    def output_shape(self, layer: Layer, sources: Sequence[Source]) -> Shape:
        rest = {s.shape[1:] for s in sources}
        if len({len(s.shape) for s in sources}) > 1 or len(rest) > 1:
            raise LayerError(
                (
                    "inputs",
                    f"{layer.name} stacks its inputs along channels, so all but the channel "
                    f"count must match, but {_listing(sources)}",
                )
            )
        return (sum(s.shape[0] for s in sources), *sources[0].shape[1:])

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        parts = "+".join(str(s[0]) for s in in_shapes)
        return f"stacks {parts} channels → {fmt_shape(out_shape)}"

    def compile(
        self, layer: Layer, weights: Mapping[str, np.ndarray], in_shapes: Sequence[Shape]
    ) -> Op:
        def concat(*xs: np.ndarray) -> np.ndarray:
            return np.concatenate(xs, axis=1)

        return concat

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        axis = int(attrs.get("axis", 1))
        rank = len(g.shapes.get(node.input[0]) or [])
        if axis != 1 and not (rank and axis == 1 - rank):
            raise OnnxRefusal(f"Concat {node_name(node)!r} joins along axis {axis}, not channels")
        g.layer(node, self, list(node.input))
