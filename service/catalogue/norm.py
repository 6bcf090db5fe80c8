"""batchnorm1d/2d/3d (inference: running statistics) and AlexNet's local response norm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from marshmallow import fields

from service.kernels import local_response_norm

from .base import (
    Int,
    Layer,
    LayerError,
    LayerSchema,
    LayerType,
    Number,
    Op,
    Shape,
    Source,
    WeightSpec,
    fmt_int,
    fmt_shape,
    plural,
    spec_example,
)
from .index import find, register
from .onnx_graph import OnnxGraph, OnnxRefusal, node_name

BatchNormSchema = LayerSchema.from_dict(
    {
        "num_features": Int(required=True),
        "eps": Number(minimum=0.0, load_default=1e-5),
        "momentum": fields.Float(allow_none=True, load_default=0.1),  # training only; kept as given
        "affine": fields.Boolean(load_default=True),
    },
    name="BatchNormSchema",
)


class BatchNormNd(LayerType):
    #: spatial ranks accepted: batchnorm1d takes (C,) or (C, L), as PyTorch's BatchNorm1d.
    ranks: ClassVar[tuple[int, ...]]
    schema = BatchNormSchema
    family = "normalisation"
    inplace = True
    inferable = ("num_features",)
    onnx_ops = {"BatchNormalization": ""}

    def example(self) -> dict[str, Any]:
        return spec_example([3, *[16] * max(self.ranks)], {"num_features": 3})

    def infer(self, field: str, sources: Sequence[Source]) -> tuple[int, str] | None:
        src = sources[0]
        if field != "num_features" or len(src.shape) - 1 not in self.ranks:
            return None
        c = src.shape[0]
        return c, f"{src} produces {plural(c, 'channel')} ({fmt_shape(src.shape)})"

    def output_shape(self, layer: Layer, sources: Sequence[Source]) -> Shape:
        src = sources[0]
        if len(src.shape) - 1 not in self.ranks:
            want = " or ".join(plural(r, "spatial dimension") for r in self.ranks)
            raise LayerError(
                (
                    "inputs",
                    f"{layer.name} is a {self.type_name} and needs an input with {want} but {src} "
                    f"produces {fmt_shape(src.shape)}",
                )
            )
        n, c = layer["num_features"], src.shape[0]
        if n != c:
            raise LayerError(
                (
                    "num_features",
                    f"{layer.name} expects num_features={n} but {src} produces "
                    f"{plural(c, 'channel')} ({fmt_shape(src.shape)}): batch norm keeps one mean, "
                    f"variance, scale and shift per channel, so it needs num_features={c}",
                ),
                shape=src.shape,
            )
        return src.shape

    def weights(self, layer: Layer) -> dict[str, WeightSpec]:
        c = (layer["num_features"],)
        per = "one per channel (num_features)"
        specs = {}
        if layer["affine"]:
            specs["weight"] = WeightSpec(c, init="ones", meaning=per)
            specs["bias"] = WeightSpec(c, meaning=per)
        specs["running_mean"] = WeightSpec(c, trainable=False, meaning=per)
        specs["running_var"] = WeightSpec(c, trainable=False, init="ones", meaning=per)
        # PyTorch's state_dict carries this counter; accepted and ignored at inference.
        specs["num_batches_tracked"] = WeightSpec((), trainable=False, required=False, dtype="int")
        return specs

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        return (
            f"normalises each of the {out_shape[0]} channels with its stored mean and variance, "
            f"then scales and shifts; {fmt_int(params)} params"
        )

    def as_affine(
        self, layer: Layer, weights: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        var = weights["running_var"].astype(np.float64)
        scale = 1.0 / np.sqrt(var + layer["eps"])
        if "weight" in weights:
            scale = scale * weights["weight"]
        shift = -weights["running_mean"] * scale
        if "bias" in weights:
            shift = shift + weights["bias"]
        return scale.astype(np.float32), shift.astype(np.float32)

    def compile(
        self, layer: Layer, weights: Mapping[str, np.ndarray], in_shapes: Sequence[Shape]
    ) -> Op:
        scale, shift = self.as_affine(layer, weights)
        bshape = (1, -1) + (1,) * (len(in_shapes[0]) - 1)
        scale, shift = scale.reshape(bshape), shift.reshape(bshape)

        def batchnorm(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
            y = np.multiply(x, scale, out=out)
            y += shift
            return y

        return batchnorm

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        """The batch norm of the input's spatial rank, its four arrays the weights."""
        rank = len(g.shapes.get(node.input[0]) or [None, None, None, None]) - 2
        kind = find(BatchNormNd, lambda k: rank in k.ranks)
        if kind is None:
            raise OnnxRefusal(f"BatchNormalization {node_name(node)!r} on {rank}-D maps")
        scale, bias, mean, var = (
            g.const(node, t, what)
            for t, what in zip(node.input[1:5], ("scale", "bias", "mean", "variance"), strict=True)
        )
        layer = g.layer(
            node,
            kind,
            [node.input[0]],
            num_features=int(scale.shape[0]),
            eps=float(attrs.get("epsilon", kind.default("eps"))),  # ONNX's default is PyTorch's
        )
        for suffix, arr in (
            ("weight", scale),
            ("bias", bias),
            ("running_mean", mean),
            ("running_var", var),
        ):
            g.weights[f"{layer['name']}.{suffix}"] = arr


@register
class BatchNorm1d(BatchNormNd):
    type_name = "batchnorm1d"
    ranks = (0, 1)


@register
class BatchNorm2d(BatchNormNd):
    type_name = "batchnorm2d"
    ranks = (2,)


@register
class BatchNorm3d(BatchNormNd):
    type_name = "batchnorm3d"
    ranks = (3,)


@register
class LocalResponseNorm(LayerType):
    type_name = "lrn"
    onnx_ops = {"LRN": ""}

    def example(self) -> dict[str, Any]:
        return spec_example([8, 16, 16], {"size": 5})

    family = "normalisation"
    schema = LayerSchema.from_dict(
        {
            "size": Int(required=True),
            "alpha": fields.Float(allow_nan=False, load_default=1e-4),
            "beta": fields.Float(allow_nan=False, load_default=0.75),
            "k": fields.Float(allow_nan=False, load_default=1.0),
        },
        name="LocalResponseNormSchema",
    )

    def output_shape(self, layer: Layer, sources: Sequence[Source]) -> Shape:
        src = sources[0]
        if len(src.shape) < 2:
            raise LayerError(
                (
                    "inputs",
                    f"{layer.name} normalises across neighbouring channels of feature maps but "
                    f"{src} produces {fmt_shape(src.shape)}, which has no spatial dimensions",
                )
            )
        return src.shape

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        return (
            f"divides each value by the energy of {layer['size']} neighbouring channels at the "
            f"same pixel → {fmt_shape(out_shape)}"
        )

    def compile(
        self, layer: Layer, weights: Mapping[str, np.ndarray], in_shapes: Sequence[Shape]
    ) -> Op:
        size, alpha, beta, k = layer["size"], layer["alpha"], layer["beta"], layer["k"]

        def lrn(x: np.ndarray) -> np.ndarray:
            return local_response_norm(x, size, alpha, beta, k)

        return lrn

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        # ONNX's defaults are PyTorch's, so the schema's; ONNX calls k `bias`.
        fields = {"alpha": "alpha", "beta": "beta", "k": "bias"}
        g.layer(
            node,
            self,
            [node.input[0]],
            size=int(attrs["size"]),
            **{f: float(attrs.get(onnx, self.default(f))) for f, onnx in fields.items()},
        )
