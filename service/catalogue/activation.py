"""Elementwise activations and softmax."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from marshmallow import fields

from service.kernels import softmax

from .base import Layer, LayerSchema, LayerType, Op, Shape, fmt_shape, spec_example
from .index import find, register
from .onnx_graph import OnnxGraph, OnnxRefusal, node_name


class Elementwise(LayerType):
    """f applied to every value; may overwrite its input when nothing else reads it."""

    family = "activation"
    inplace = True
    words: str = ""

    def function(self, layer: Layer) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
        raise NotImplementedError

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        return f"{self.words}, value by value → {fmt_shape(out_shape)}"

    def compile(
        self, layer: Layer, weights: Mapping[str, np.ndarray], in_shapes: Sequence[Shape]
    ) -> Op:
        f = self.function(layer)

        def activation(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
            return f(x, out)

        activation.__name__ = self.type_name
        return activation

    def as_epilogue(self, layer: Layer) -> Callable[[np.ndarray], object]:
        f = self.function(layer)
        return lambda y: f(y, y)


@register
class ReLU(Elementwise):
    type_name = "relu"
    words = "max(x, 0)"
    onnx_ops = {"Relu": ""}

    def function(self, layer: Layer):
        return lambda x, out: np.maximum(x, np.float32(0), out=out)


@register
class ReLU6(Elementwise):
    type_name = "relu6"
    words = "min(max(x, 0), 6)"
    onnx_ops = {"Clip": "(0, 6)"}

    def function(self, layer: Layer):
        return lambda x, out: np.clip(x, np.float32(0), np.float32(6), out=out)

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        """Clip(0, 6), and Clip(0) as a relu."""
        if g.opset < 11:
            lo, hi = attrs.get("min"), attrs.get("max")
        else:
            lo = (
                float(g.const(node, node.input[1], "min"))
                if len(node.input) > 1 and node.input[1]
                else None
            )
            hi = (
                float(g.const(node, node.input[2], "max"))
                if len(node.input) > 2 and node.input[2]
                else None
            )
        if lo == 0 and hi == 6:
            g.layer(node, self, [node.input[0]])
        elif lo == 0 and hi is None:
            g.layer(node, find(ReLU), [node.input[0]])
        else:
            raise OnnxRefusal(
                f"Clip {node_name(node)!r} clips to [{lo}, {hi}]; convserve runs Clip(0, 6) as "
                f"relu6 and Clip(0) as relu",
            )


@register
class LeakyReLU(Elementwise):
    type_name = "leaky_relu"
    schema = LayerSchema.from_dict(
        {"negative_slope": fields.Float(allow_nan=False, load_default=0.01)},
        name="LeakyReLUSchema",
    )
    onnx_ops = {"LeakyRelu": ""}

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        # ONNX's default alpha is PyTorch's negative_slope, so the schema's.
        slope = float(attrs.get("alpha", self.default("negative_slope")))
        g.layer(node, self, [node.input[0]], negative_slope=slope)

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        return (
            f"x if x > 0 else {layer['negative_slope']}·x, value by value → {fmt_shape(out_shape)}"
        )

    def function(self, layer: Layer):
        slope = np.float32(layer["negative_slope"])

        def leaky(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
            # np.where has no out=: scale the non-positive values where they stand instead.
            y = np.copy(x) if out is None else out
            if y is not x:
                np.copyto(y, x)
            np.multiply(y, slope, out=y, where=x <= 0)
            return y

        return leaky


@register
class Sigmoid(Elementwise):
    type_name = "sigmoid"
    words = "1 / (1 + e^-x)"
    onnx_ops = {"Sigmoid": ""}

    def function(self, layer: Layer):
        def sigmoid(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
            # 0.5·(1 + tanh(x/2)) equals the logistic function and never overflows.
            y = np.multiply(x, np.float32(0.5), out=out)
            np.tanh(y, out=y)
            y += np.float32(1)
            y *= np.float32(0.5)
            return y

        return sigmoid


@register
class Tanh(Elementwise):
    type_name = "tanh"
    words = "tanh(x)"
    onnx_ops = {"Tanh": ""}

    def function(self, layer: Layer):
        return lambda x, out: np.tanh(x, out=out)


@register
class Softmax(LayerType):
    """Softmax over channels / classes (dim 1 with the batch, as nn.Softmax(dim=1))."""

    type_name = "softmax"
    family = "activation"
    onnx_ops = {"Softmax": "(over the channels)"}

    def example(self) -> dict[str, Any]:
        return spec_example([10], {})

    yields_probabilities = True

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        return f"turns {out_shape[0]} scores into probabilities that sum to 1"

    def compile(
        self, layer: Layer, weights: Mapping[str, np.ndarray], in_shapes: Sequence[Shape]
    ) -> Op:
        def softmax_op(x: np.ndarray) -> np.ndarray:
            return softmax(x, axis=1)

        return softmax_op

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        shape = g.shapes.get(node.input[0]) or []
        axis = int(attrs.get("axis", 1 if g.opset < 13 else -1))
        if axis < 0:
            axis += len(shape) if shape else 2
        if axis != 1 or (g.opset < 13 and len(shape) > 2):
            raise OnnxRefusal(
                f"Softmax {node_name(node)!r} normalises over axis {attrs.get('axis')}; "
                f"convserve's softmax is over the channels / classes (axis 1)",
            )
        g.layer(node, self, [node.input[0]])
