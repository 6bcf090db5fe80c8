"""linear, and the layers that only reshape or pass through: flatten, dropout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from marshmallow import fields, validate

from .base import (
    Int,
    Layer,
    LayerError,
    LayerSchema,
    LayerType,
    Op,
    ReceptiveField,
    Shape,
    Source,
    WeightSpec,
    fmt_int,
    fmt_shape,
    prod,
    spec_example,
    whole_extent_rf,
)
from .index import register
from .onnx_graph import OnnxGraph, OnnxRefusal, node_name


@register
class Linear(LayerType):
    type_name = "linear"
    family = "dense"
    schema = LayerSchema.from_dict(
        {
            "in_features": Int(required=True),
            "out_features": Int(required=True),
            "bias": fields.Boolean(load_default=True),
        },
        name="LinearSchema",
    )

    inferable = ("in_features",)
    onnx_ops = {"Gemm": "", "MatMul": "(+ Add as its bias)"}

    def example(self) -> dict[str, Any]:
        return spec_example(
            [3, 4, 4],
            {"in_features": 48, "out_features": 10},
            before=[{"name": "flatten", "type": "flatten"}],
        )

    def infer(self, field: str, sources: Sequence[Source]) -> tuple[int, str] | None:
        src = sources[0]
        if field != "in_features" or len(src.shape) != 1:
            return None
        return src.shape[0], f"{src} produces {fmt_int(src.shape[0])} values"

    def output_shape(self, layer: Layer, sources: Sequence[Source]) -> Shape:
        src = sources[0]
        i, o = layer["in_features"], layer["out_features"]
        size = prod(src.shape)
        if len(src.shape) != 1:
            raise LayerError(
                (
                    "inputs",
                    f"{layer.name} needs a flat vector of in_features={i} values but {src} "
                    f"produces {fmt_shape(src.shape)}: add a flatten layer before {layer.name} "
                    f"({fmt_shape(src.shape)} flattens to {fmt_int(size)} values)",
                )
            )
        if i != size:
            raise LayerError(
                (
                    "in_features",
                    f"{layer.name} expects in_features={i} but {src} produces {fmt_int(size)} "
                    f"values: each of its {o} units has one weight per input value, so its weight "
                    f"is {o}×{size}",
                ),
                shape=(o,),
            )
        return (o,)

    def weights(self, layer: Layer) -> dict[str, WeightSpec]:
        o = layer["out_features"]
        specs = {
            "weight": WeightSpec(
                (o, layer["in_features"]), init="he", meaning="out_features × in_features"
            )
        }
        if layer["bias"]:
            specs["bias"] = WeightSpec((o,), meaning="one per output feature")
        return specs

    def macs(self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        return layer["in_features"] * layer["out_features"]

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        i, o = layer["in_features"], layer["out_features"]
        return (
            f"fully connected: each of {o} units weighs all {fmt_int(i)} inputs; "
            f"{fmt_int(params)} params"
        )

    def compile(
        self, layer: Layer, weights: Mapping[str, np.ndarray], in_shapes: Sequence[Shape]
    ) -> Op:
        wt = np.ascontiguousarray(weights["weight"].T)
        b = weights.get("bias")

        def linear(x: np.ndarray) -> np.ndarray:
            y = x @ wt
            if b is not None:
                y += b
            return y

        return linear

    def absorb_affine(
        self, layer: Layer, weights: Mapping[str, np.ndarray], scale: np.ndarray, shift: Any
    ) -> dict[str, np.ndarray]:
        b = weights.get("bias")
        return {
            "weight": (weights["weight"] * scale[:, None]).astype(np.float32),
            "bias": np.asarray(shift if b is None else b * scale + shift, dtype=np.float32),
        }

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        """Gemm (B transposed or not, alpha and beta folded in), or MatMul by a stored matrix."""
        if node.op_type == "MatMul":
            w = g.const(node, node.input[1], "weight")
            if w.ndim != 2:
                raise OnnxRefusal(f"MatMul {node_name(node)!r} multiplies by a {w.ndim}-D array")
            self._onnx_layer(g, node, w.T, None)
            return
        if attrs.get("transA", 0):
            raise OnnxRefusal(f"Gemm {node_name(node)!r} transposes its input")
        b = g.const(node, node.input[1], "weight")
        w = b if attrs.get("transB", 0) else b.T
        w = w * np.float32(attrs.get("alpha", 1.0))
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = g.const(node, node.input[2], "bias") * np.float32(attrs.get("beta", 1.0))
            bias = np.broadcast_to(bias, (w.shape[0],)).copy()
        self._onnx_layer(g, node, w, bias)

    def _onnx_layer(self, g: OnnxGraph, node: Any, w: np.ndarray, bias: np.ndarray | None) -> None:
        layer = g.layer(
            node,
            self,
            [node.input[0]],
            in_features=int(w.shape[1]),
            out_features=int(w.shape[0]),
            bias=bias is not None,
        )
        g.weights[f"{layer['name']}.weight"] = np.ascontiguousarray(w)
        if bias is not None:
            g.weights[f"{layer['name']}.bias"] = bias

    def absorb_onnx_bias(self, g: OnnxGraph, layer: dict[str, Any], bias: np.ndarray) -> bool:
        if layer["bias"]:
            return False
        bias = np.broadcast_to(bias, (layer["out_features"],)).astype(np.float32)
        layer["bias"] = True
        g.weights[f"{layer['name']}.bias"] = bias.copy()
        return True


@register
class Flatten(LayerType):
    type_name = "flatten"
    family = "structure"
    view = True
    onnx_ops = {"Flatten": "", "Reshape": "(to 2-D)"}

    def output_shape(self, layer: Layer, sources: Sequence[Source]) -> Shape:
        return (prod(sources[0].shape),)

    def receptive_field(
        self, layer: Layer, in_rfs: Sequence[ReceptiveField], in_shapes: Sequence[Shape]
    ) -> ReceptiveField:
        return whole_extent_rf(in_rfs[0], in_shapes[0][1:])

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        return (
            f"lays the {fmt_shape(in_shapes[0])} block out as one vector of "
            f"{fmt_int(out_shape[0])} values (channel by channel, rows in order)"
        )

    def compile(
        self, layer: Layer, weights: Mapping[str, np.ndarray], in_shapes: Sequence[Shape]
    ) -> Op:
        def flatten(x: np.ndarray) -> np.ndarray:
            return x.reshape(x.shape[0], -1)

        return flatten

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        """Flatten from axis 1, or a Reshape to [N, features]."""
        if node.op_type == "Flatten":
            if int(attrs.get("axis", 1)) != 1:
                raise OnnxRefusal(f"Flatten {node_name(node)!r} keeps axis {attrs['axis']}")
            g.layer(node, self, [node.input[0]])
            return
        out = g.shapes.get(node.output[0])
        target = g.consts.get(node.input[1]) if len(node.input) > 1 else None
        if len(node.input) > 1 and node.input[1] in g.dynamic:  # [N, -1] and the like: its length
            target = np.full(len(target), -1) if target is not None else None
        to_2d = (out is not None and len(out) == 2) or (target is not None and len(target) == 2)
        dims = g.shapes.get(node.input[0]) or []
        features = int(np.prod(dims[1:])) if dims and None not in dims[1:] else None
        second = [d for d in (out[1] if out and len(out) == 2 else None,
                              int(target[1]) if target is not None and len(target) == 2 else None)
                  if d is not None and d > 0]  # fmt: skip
        if to_2d and features is not None and any(d != features for d in second):
            to_2d = False  # [N, C, H, W] → [N·C, H·W] and the like are not a flatten
        if not to_2d:
            raise OnnxRefusal(
                f"Reshape {node_name(node)!r} reshapes to {out or target}; convserve supports "
                f"reshaping to [N, features] (a flatten)",
            )
        g.layer(node, self, [node.input[0]])


@register
class Dropout(LayerType):
    type_name = "dropout"
    family = "structure"
    view = True
    onnx_ops = {"Dropout": ""}
    schema = LayerSchema.from_dict(
        {"p": fields.Float(load_default=0.5, validate=validate.Range(min=0.0, max=1.0))},
        name="DropoutSchema",
    )

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        return "passes values through unchanged at inference (drops only while training)"

    def compile(
        self, layer: Layer, weights: Mapping[str, np.ndarray], in_shapes: Sequence[Shape]
    ) -> Op:
        def dropout(x: np.ndarray) -> np.ndarray:
            return x

        return dropout

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        """At inference a Dropout node's output is its input: no layer, as PyTorch exports it."""
        g.alias(node)
