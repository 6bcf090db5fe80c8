"""conv1d, conv2d, conv3d: one N-d definition (`ConvNd`), a small class per rank."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from marshmallow import fields

from service.kernels import conv_kernel, conv_out_size

from .base import (
    Checks,
    Int,
    IntTuple,
    Layer,
    LayerError,
    LayerSchema,
    LayerType,
    Op,
    Padding,
    ReceptiveField,
    Shape,
    Source,
    WeightSpec,
    fmt_int,
    fmt_shape,
    plural,
    prod,
    spatial_rank_error,
    spec_example,
    window_rf,
)
from .index import find, register
from .onnx_graph import OnnxGraph, OnnxRefusal, decode, node_name


def conv_schema(rank: int) -> type[LayerSchema]:
    ones = (1,) * rank
    return LayerSchema.from_dict(
        {
            "in_channels": Int(required=True),
            "out_channels": Int(required=True),
            "kernel_size": IntTuple(rank, required=True),
            "stride": IntTuple(rank, load_default=ones),
            "padding": Padding(rank, load_default=(0,) * rank),
            "dilation": IntTuple(rank, load_default=ones),
            "groups": Int(load_default=1),
            "bias": fields.Boolean(load_default=True),
        },
        name=f"Conv{rank}dSchema",
    )


def batch_hint(src: Source, rank: int) -> str:
    """For an input one dimension too many that starts with 1: the batch dimension, kept."""
    shape = list(src.shape)
    if src.is_model_input and len(shape) == rank + 2 and shape[0] == 1:
        return (
            f". input.shape leaves out the batch dimension (requests carry any number of "
            f"images): write {shape[1:]}, not {shape}"
        )
    return ""


def layout_hint(src: Source, in_channels: int) -> str:
    """For an image input given channels-last ([H, W, C], as PIL and TensorFlow lay it out)."""
    shape = list(src.shape)
    if src.is_model_input and len(shape) >= 3 and shape[-1] == in_channels != shape[0]:
        first = [shape[-1], *shape[:-1]]
        return (
            f". input.shape is channels-first, as PyTorch's: {shape} reads as {shape[0]} "
            f"channels of {fmt_shape(shape[1:])}; {in_channels}-channel "
            f"{fmt_shape(shape[:-1])} images are {first}"
        )
    return ""


def same_padding(kernel: Sequence[int], dilation: Sequence[int]) -> tuple[tuple, tuple]:
    """PyTorch's padding='same': total d·(k-1) per axis, the odd pixel on the high side."""
    total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    lo = tuple(t // 2 for t in total)
    return lo, tuple(t - a for t, a in zip(total, lo, strict=True))


class ConvNd(LayerType):
    rank: ClassVar[int]
    family = "convolution"
    takes_epilogue = True
    inferable = ("in_channels",)
    onnx_ops = {"Conv": "(1-3-D)"}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "rank" in cls.__dict__:  # a conv of one rank: its fields follow from the rank
            cls.schema = conv_schema(cls.rank)

    def example(self) -> dict[str, Any]:
        return spec_example(
            [3, *[16] * self.rank],
            {"in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": 1},
        )

    def infer(self, field: str, sources: Sequence[Source]) -> tuple[int, str] | None:
        src = sources[0]
        if field != "in_channels" or len(src.shape) != self.rank + 1:
            return None
        c = src.shape[0]
        return c, f"{src} produces {plural(c, 'feature map')} ({fmt_shape(src.shape)})"

    def pads(self, layer: Layer) -> tuple[tuple, tuple]:
        """(before, after) padding per spatial axis."""
        padding = layer["padding"]
        if padding == "same":
            return same_padding(layer["kernel_size"], layer["dilation"])
        if isinstance(padding[0], tuple):  # asymmetric [before, after] pairs
            return tuple(p[0] for p in padding), tuple(p[1] for p in padding)
        return tuple(padding), tuple(padding)

    def output_shape(self, layer: Layer, sources: Sequence[Source]) -> Shape:
        src = sources[0]
        if len(src.shape) != self.rank + 1:
            field, message = spatial_rank_error(layer, src, self.rank, self.type_name)
            raise LayerError((field, message + batch_hint(src, self.rank)))
        channels, spatial = src.shape[0], src.shape[1:]
        ic, oc, groups = layer["in_channels"], layer["out_channels"], layer["groups"]
        k = layer["kernel_size"]
        chk = Checks()
        if ic % groups:
            chk.fail(
                "groups",
                f"{layer.name} has in_channels={ic}, which groups={groups} does not divide: "
                f"each of the {groups} groups must read an equal share of the input channels",
            )
        if oc % groups:
            chk.fail(
                "groups",
                f"{layer.name} has out_channels={oc}, which groups={groups} does not divide: "
                f"each of the {groups} groups must produce an equal share of the output channels",
            )
        if ic != channels:
            chk.fail("in_channels", self._depth_message(layer, src) + layout_hint(src, ic))
        if layer["padding"] == "same" and any(s != 1 for s in layer["stride"]):
            chk.fail(
                "padding",
                f"{layer.name} uses padding='same', which keeps the output as large as the input "
                f"and so needs stride 1, but its stride is {fmt_shape(layer['stride'])}",
            )
        lo, hi = self.pads(layer)
        dil, stride = layer["dilation"], layer["stride"]
        span = tuple(d * (kk - 1) + 1 for d, kk in zip(dil, k, strict=True))
        out = [
            conv_out_size(length, k[i], stride[i], dil[i], lo[i], hi[i])
            for i, length in enumerate(spatial)
        ]
        if min(out) < 1:
            pads = tuple(a + b for a, b in zip(lo, hi, strict=True))
            chk.fail(
                "kernel_size",
                f"{layer.name}'s {fmt_shape(k)} kernel spans {fmt_shape(span)} pixels but {src} "
                f"gives {fmt_shape(spatial)} (+{fmt_shape(pads)} padding): it does not fit, so "
                f"there is no output",
            )
        shape = (oc, *out)
        chk.raise_if_any(shape if min(out) >= 1 else None)
        return shape

    def _depth_message(self, layer: Layer, src: Source) -> str:
        name, ic, oc, groups = (
            layer.name,
            layer["in_channels"],
            layer["out_channels"],
            layer["groups"],
        )
        c = src.shape[0]
        k = fmt_shape(layer["kernel_size"])
        head = (
            f"{name} expects in_channels={ic} but {src} produces "
            f"{plural(c, 'feature map')} ({fmt_shape(src.shape)})"
        )
        if groups == 1:
            spans = "the single input channel" if c == 1 else f"all {c} input channels"
            return f"{head}: every {name} filter must span {spans}, so its weight is {oc}×{c}×{k}"
        if c % groups:
            return (
                f"{head}, and with groups={groups} each filter spans one group's share of the "
                f"input channels, but {c} channels do not split into {groups} equal groups"
            )
        return (
            f"{head}: with groups={groups} every {name} filter spans the {c // groups} channels "
            f"of its group, so its weight is {oc}×{c // groups}×{k}"
        )

    def weights(self, layer: Layer) -> dict[str, WeightSpec]:
        oc, ic, groups = layer["out_channels"], layer["in_channels"], layer["groups"]
        specs = {
            "weight": WeightSpec(
                (oc, ic // groups, *layer["kernel_size"]),
                init="he",
                meaning="out_channels × in_channels/groups × kernel_size",
            )
        }
        if layer["bias"]:
            specs["bias"] = WeightSpec((oc,), meaning="one per output channel")
        return specs

    def macs(self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        return (
            prod(out_shape) * (layer["in_channels"] // layer["groups"]) * prod(layer["kernel_size"])
        )

    def receptive_field(
        self, layer: Layer, in_rfs: Sequence[ReceptiveField], in_shapes: Sequence[Shape]
    ) -> ReceptiveField:
        return window_rf(in_rfs[0], layer["kernel_size"], layer["stride"], layer["dilation"])

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        ic, oc, groups = layer["in_channels"], layer["out_channels"], layer["groups"]
        k = fmt_shape(layer["kernel_size"])
        maps = f"{plural(oc, 'map')} of {fmt_shape(out_shape[1:])}"
        tail = f"{maps}; {fmt_int(params)} params"
        if prod(layer["kernel_size"]) == 1 and groups == 1:
            return f"1×1 conv: {ic}→{oc} channel mix per pixel → {tail}"
        if groups == 1:
            spans = "the input map" if ic == 1 else f"all {ic} input maps"
            return f"{plural(oc, 'filter')} of {ic}×{k}, each spanning {spans} → {tail}"
        if groups == ic:
            return (
                f"depthwise: {plural(oc, 'filter')} of 1×{k}, each over one of the {ic} "
                f"input maps → {tail}"
            )
        cg = ic // groups
        return (
            f"{plural(oc, 'filter')} of {cg}×{k} in {groups} groups, each spanning the {cg} "
            f"maps of its group → {tail}"
        )

    def compile(
        self,
        layer: Layer,
        weights: Mapping[str, np.ndarray],
        in_shapes: Sequence[Shape],
        epilogue: Callable[[np.ndarray], object] | None = None,
    ) -> Op:
        lo, hi = self.pads(layer)
        return conv_kernel(
            weights["weight"],
            weights.get("bias"),
            layer["stride"],
            layer["dilation"],
            lo,
            hi,
            layer["groups"],
            in_shapes[0][1:],
            epilogue=epilogue,
        )

    def absorb_affine(
        self, layer: Layer, weights: Mapping[str, np.ndarray], scale: np.ndarray, shift: Any
    ) -> dict[str, np.ndarray]:
        w = weights["weight"]
        b = weights.get("bias")
        new_w = (w * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
        new_b = shift if b is None else b * scale + shift
        return {"weight": new_w, "bias": np.asarray(new_b, dtype=np.float32)}

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        """The conv of the weight's rank; `pads` / `auto_pad` as (asymmetric) padding."""
        w = g.const(node, node.input[1], "weight")
        rank = w.ndim - 2
        kind = find(ConvNd, lambda k: k.rank == rank)
        if kind is None:
            raise OnnxRefusal(f"{node.op_type} {node_name(node)!r} is {rank}-D")
        # ONNX's defaults are PyTorch's, so the schema's.
        group = int(attrs.get("group", kind.default("groups")))
        kernel = list(w.shape[2:])
        stride = list(attrs.get("strides", kind.default("stride")))
        dilation = list(attrs.get("dilations", kind.default("dilation")))
        padding = onnx_padding(g, node, attrs, kernel, stride, dilation, rank)
        layer = g.layer(
            node,
            kind,
            [node.input[0]],
            in_channels=int(w.shape[1]) * group,
            out_channels=int(w.shape[0]),
            kernel_size=kernel,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=group,
            bias=len(node.input) > 2 and bool(node.input[2]),
        )
        g.weights[f"{layer['name']}.weight"] = w
        if layer["bias"]:
            g.weights[f"{layer['name']}.bias"] = g.const(node, node.input[2], "bias")


@register
class Conv1d(ConvNd):
    type_name = "conv1d"
    rank = 1


@register
class Conv2d(ConvNd):
    type_name = "conv2d"
    rank = 2


@register
class Conv3d(ConvNd):
    type_name = "conv3d"
    rank = 3


def onnx_padding(
    g: OnnxGraph,
    node: Any,
    attrs: Mapping[str, Any],
    kernel: list[int],
    stride: list[int],
    dilation: list[int],
    rank: int,
) -> Any:
    """ONNX pads/auto_pad as a spec padding: symmetric ints, or [before, after] pairs."""
    auto = decode(attrs.get("auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        spatial = g.shapes.get(node.input[0], [])[2:]
        if len(spatial) != rank or any(d is None for d in spatial):
            raise OnnxRefusal(
                f"{node_name(node)!r} uses auto_pad={auto}, which needs the input's size; "
                f"give the model a fixed input shape",
            )
        lo, hi = [], []
        for n, k, s, d in zip(spatial, kernel, stride, dilation, strict=True):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small, big = total // 2, total - total // 2
            lo.append(small if auto == "SAME_UPPER" else big)
            hi.append(big if auto == "SAME_UPPER" else small)
    elif auto == "VALID":
        lo = hi = [0] * rank
    else:
        pads = list(attrs.get("pads", [0] * 2 * rank))
        lo, hi = pads[:rank], pads[rank:]
    if lo == hi:
        return lo
    return [[b, e] for b, e in zip(lo, hi, strict=True)]
