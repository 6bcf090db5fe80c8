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
)
from .pool import whole_extent_rf
from .registry import register


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


@register
class Flatten(LayerType):
    type_name = "flatten"
    family = "structure"
    view = True

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


@register
class Dropout(LayerType):
    type_name = "dropout"
    family = "structure"
    view = True
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
