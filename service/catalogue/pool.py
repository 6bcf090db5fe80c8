"""maxpool1d/2d/3d, avgpool1d/2d/3d and the global pools."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from marshmallow import fields

from service.kernels import avg_pool_divisor, pool_kernel

from .base import (
    Checks,
    IntTuple,
    Layer,
    LayerError,
    LayerSchema,
    LayerType,
    Op,
    ReceptiveField,
    Shape,
    Source,
    fmt_shape,
    plural,
    spatial_rank_error,
    spec_example,
    whole_extent_rf,
    window_rf,
)
from .conv import onnx_padding
from .dense import Flatten
from .index import find, register
from .onnx_graph import OnnxGraph, OnnxRefusal, node_name


def pool_out_size(
    length: int, k: int, stride: int, pad: int, dilation: int, ceil_mode: bool
) -> int:
    """PyTorch's pooling_output_shape, including ceil_mode's rule that the last window must
    start inside the input or its left padding."""
    span = dilation * (k - 1) + 1
    num = length + 2 * pad - span + (stride - 1 if ceil_mode else 0)
    n = num // stride + 1
    if ceil_mode and (n - 1) * stride >= length + pad:
        n -= 1
    return n


def pool_schema(rank: int, mode: str) -> type[LayerSchema]:
    spec: dict[str, fields.Field] = {
        "kernel_size": IntTuple(rank, required=True),
        "stride": IntTuple(rank, load_default=None, metadata={"default_doc": "`kernel_size`"}),
        "padding": IntTuple(rank, minimum=0, load_default=(0,) * rank),
        "ceil_mode": fields.Boolean(load_default=False),
    }
    if mode == "max":
        spec["dilation"] = IntTuple(rank, load_default=(1,) * rank)
    else:
        spec["count_include_pad"] = fields.Boolean(load_default=True)
    return LayerSchema.from_dict(spec, name=f"{mode.title()}Pool{rank}dSchema")


class PoolNd(LayerType):
    rank: ClassVar[int]
    mode: ClassVar[str]
    family = "pooling"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "rank" in cls.__dict__:  # a pool of one rank: its fields follow from rank and mode
            cls.schema = pool_schema(cls.rank, cls.mode)

    def example(self) -> dict[str, Any]:
        return spec_example([3, *[16] * self.rank], {"kernel_size": 2})

    def _geometry(self, layer: Layer) -> tuple[tuple, tuple, tuple, tuple]:
        k = layer["kernel_size"]
        stride = layer["stride"] or k
        dilation = layer.cfg.get("dilation") or (1,) * self.rank
        return k, stride, layer["padding"], dilation

    def _out(self, layer: Layer, spatial: Sequence[int]) -> tuple[int, ...]:
        k, stride, pad, dil = self._geometry(layer)
        return tuple(
            pool_out_size(length, k[i], stride[i], pad[i], dil[i], layer["ceil_mode"])
            for i, length in enumerate(spatial)
        )

    def output_shape(self, layer: Layer, sources: Sequence[Source]) -> Shape:
        src = sources[0]
        if len(src.shape) != self.rank + 1:
            raise LayerError(spatial_rank_error(layer, src, self.rank, self.type_name))
        k, _, pad, dil = self._geometry(layer)
        chk = Checks()
        if any(p > kk // 2 for p, kk in zip(pad, k, strict=True)):
            half = tuple(kk // 2 for kk in k)
            chk.fail(
                "padding",
                f"{layer.name} pads {fmt_shape(pad)} pixels but its window is {fmt_shape(k)}: "
                f"padding may be at most half the kernel ({fmt_shape(half)}, as in PyTorch), or "
                f"a window could lie entirely in the padding",
            )
        out = self._out(layer, src.shape[1:])
        if min(out) < 1:
            chk.fail(
                "kernel_size",
                f"{layer.name}'s {fmt_shape(k)} window does not fit {src}'s "
                f"{fmt_shape(src.shape[1:])} maps (+{fmt_shape(pad)} padding per side), so there "
                f"is no output",
            )
        chk.raise_if_any()
        return (src.shape[0], *out)

    def receptive_field(
        self, layer: Layer, in_rfs: Sequence[ReceptiveField], in_shapes: Sequence[Shape]
    ) -> ReceptiveField:
        k, stride, _, dil = self._geometry(layer)
        return window_rf(in_rfs[0], k, stride, dil)

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        k, stride, _, _ = self._geometry(layer)
        what = "max" if self.mode == "max" else "average"
        return (
            f"{fmt_shape(k)} {what} over each map, stride {fmt_shape(stride)} → "
            f"{plural(out_shape[0], 'map')} of {fmt_shape(out_shape[1:])}"
        )

    def compile(
        self, layer: Layer, weights: Mapping[str, np.ndarray], in_shapes: Sequence[Shape]
    ) -> Op:
        k, stride, pad, dil = self._geometry(layer)
        spatial = in_shapes[0][1:]
        out = self._out(layer, spatial)
        divisor = None
        if self.mode == "avg":
            divisor = avg_pool_divisor(
                spatial, k, stride, pad, out, layer["count_include_pad"]
            ).astype(np.float32)
        return pool_kernel(spatial, k, stride, pad, out, self.mode, divisor, dil)

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        """The pool of the kernel's rank; ONNX pads both sides equally or not at all here."""
        kernel = list(attrs["kernel_shape"])
        rank = len(kernel)
        # ONNX's default stride is 1, not the kernel (nor the schema's default)
        stride = list(attrs.get("strides", [1] * rank))
        dilation = list(attrs.get("dilations", [1] * rank))
        padding = onnx_padding(g, node, attrs, kernel, stride, dilation, rank)
        if padding and isinstance(padding[0], list):
            raise OnnxRefusal(
                f"{node.op_type} {node_name(node)!r} pads {padding} (before, after): convserve's "
                f"pools pad both sides equally, as PyTorch's do",
            )
        fields: dict[str, Any] = {
            "kernel_size": kernel,
            "stride": stride,
            "padding": padding,
            "ceil_mode": bool(attrs.get("ceil_mode", self.default("ceil_mode"))),
        }
        if self.mode == "max":
            fields["dilation"] = dilation
        else:
            if any(d != 1 for d in dilation):
                raise OnnxRefusal(f"AveragePool {node_name(node)!r} is dilated")
            # ONNX leaves the padding out of the average unless told; PyTorch counts it.
            fields["count_include_pad"] = bool(attrs.get("count_include_pad", 0))
        kind = find(PoolNd, lambda k: k.mode == self.mode and k.rank == rank)
        if kind is None:
            raise OnnxRefusal(f"{node.op_type} {node_name(node)!r} is {rank}-D")
        if len(node.output) > 1 and node.output[1]:
            raise OnnxRefusal(f"MaxPool {node_name(node)!r} asks for indices")
        g.layer(node, kind, [node.input[0]], **fields)


class MaxPoolNd(PoolNd):
    mode = "max"
    onnx_ops = {"MaxPool": ""}


class AvgPoolNd(PoolNd):
    mode = "avg"
    onnx_ops = {"AveragePool": ""}


@register
class MaxPool1d(MaxPoolNd):
    type_name = "maxpool1d"
    rank = 1


@register
class AvgPool1d(AvgPoolNd):
    type_name = "avgpool1d"
    rank = 1


@register
class MaxPool2d(MaxPoolNd):
    type_name = "maxpool2d"
    rank = 2


@register
class AvgPool2d(AvgPoolNd):
    type_name = "avgpool2d"
    rank = 2


@register
class MaxPool3d(MaxPoolNd):
    type_name = "maxpool3d"
    rank = 3


@register
class AvgPool3d(AvgPoolNd):
    type_name = "avgpool3d"
    rank = 3


class GlobalPool(LayerType):
    """Reduce every map to one value, keeping singleton spatial axes (as AdaptiveAvgPool(1))."""

    mode: ClassVar[str]
    family = "pooling"

    def output_shape(self, layer: Layer, sources: Sequence[Source]) -> Shape:
        src = sources[0]
        if len(src.shape) < 2:
            raise LayerError(
                (
                    "inputs",
                    f"{layer.name} pools over spatial dimensions but {src} produces "
                    f"{fmt_shape(src.shape)}, which has none",
                )
            )
        return (src.shape[0],) + (1,) * (len(src.shape) - 1)

    def receptive_field(
        self, layer: Layer, in_rfs: Sequence[ReceptiveField], in_shapes: Sequence[Shape]
    ) -> ReceptiveField:
        return whole_extent_rf(in_rfs[0], in_shapes[0][1:])

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        what = "average" if self.mode == "avg" else "maximum"
        return f"the {what} of each {fmt_shape(in_shapes[0][1:])} map → {out_shape[0]} values"

    def compile(
        self, layer: Layer, weights: Mapping[str, np.ndarray], in_shapes: Sequence[Shape]
    ) -> Op:
        axes = tuple(range(2, len(in_shapes[0]) + 1))
        reduce = np.mean if self.mode == "avg" else np.max

        def global_pool(x: np.ndarray) -> np.ndarray:
            return reduce(x, axis=axes, keepdims=True).astype(np.float32, copy=False)

        return global_pool

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        """Global(Average|Max)Pool as it is; ReduceMean/ReduceMax over every spatial axis as
        PyTorch exports AdaptiveAvgPool2d(1) and `x.mean((2, 3))` (then flattened when
        keepdims=0)."""
        if not node.op_type.startswith("Reduce"):
            g.layer(node, self, [node.input[0]])
            return
        shape = g.shapes.get(node.input[0]) or []
        rank = len(shape)
        if "axes" in attrs:  # an attribute up to opset 17, an input since 18
            axes = [int(x) for x in attrs["axes"]]
        elif len(node.input) > 1 and node.input[1]:
            axes = [int(x) for x in np.ravel(g.const(node, node.input[1], "axes"))]
        else:
            axes = []
        axes = sorted(x + rank if x < 0 else x for x in axes)
        spatial = list(range(2, rank))
        if not rank or not spatial or axes != spatial:
            over = f"axes {axes}" if axes else "every axis"
            raise OnnxRefusal(
                f"{node.op_type} {node_name(node)!r} reduces over {over} of a rank-{rank or '?'} "
                f"tensor; convserve runs it over all spatial axes ({spatial or '2, 3, …'}) as a "
                f"global pool, as AdaptiveAvgPool2d(1) or x.mean((2, 3)) export",
            )
        layer = g.layer(node, self, [node.input[0]])
        if not int(attrs.get("keepdims", 1)):
            flat = f"{layer['name']}.flatten"
            g.layer(node, find(Flatten), [node.output[0]], base_name=flat)


@register
class GlobalAvgPool(GlobalPool):
    type_name = "global_avgpool"
    mode = "avg"
    onnx_ops = {"GlobalAveragePool": "", "ReduceMean": "(over the spatial axes)"}


@register
class GlobalMaxPool(GlobalPool):
    type_name = "global_maxpool"
    mode = "max"
    onnx_ops = {"GlobalMaxPool": "", "ReduceMax": "(over the spatial axes)"}
