"""What every layer type answers, and the field types and helpers they share.

A layer type is defined once, in one family module, as a subclass of `LayerType`. Everything the
service says about a layer (its fields, its output shape and the checks behind it, its weights,
params, multiply-adds, receptive field, a plain-words explanation, its forward pass, and the ONNX
ops it is imported from) comes from that one class, so nothing elsewhere switches on the type name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from .onnx_graph import OnnxGraph

Shape = tuple[int, ...]
Op = Callable[..., np.ndarray]

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$"


# ----------------------------------------------------------------------------------------- text


def fmt_shape(shape: Sequence[int]) -> str:
    """(3, 14, 14) -> '3×14×14'."""
    return "×".join(str(int(d)) for d in shape) if len(shape) else "scalar"


def fmt_int(n: int) -> str:
    return f"{n:,}"


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


# --------------------------------------------------------------------------------- structures


@dataclass(frozen=True)
class Layer:
    """A parsed layer: its name, type, explicit inputs (None = the layer before) and fields."""

    name: str
    type: str
    inputs: tuple[str, ...] | None
    cfg: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.cfg[key]


@dataclass(frozen=True)
class Source:
    """Where an input of a layer comes from: a layer's output or the model input."""

    name: str
    shape: Shape
    is_model_input: bool = False

    def __str__(self) -> str:
        return f"the input '{self.name}'" if self.is_model_input else self.name


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field per spatial axis of the model input, in input pixels."""

    size: tuple[int, ...]
    stride: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"size": list(self.size), "stride": list(self.stride)}


@dataclass
class WeightSpec:
    """One array a layer stores: its shape, and whether it is a trained parameter."""

    shape: Shape
    trainable: bool = True
    required: bool = True
    dtype: str = "float"
    init: str = "zeros"  # he | zeros | ones
    #: The axes in words, for error messages ("out_channels × in_channels/groups × kernel").
    meaning: str = ""


class LayerError(Exception):
    """Raised by a layer type's shape rule; carries one or more (field, message) pairs."""

    def __init__(self, *problems: tuple[str | None, str], shape: Shape | None = None):
        super().__init__("; ".join(m for _, m in problems))
        self.problems = list(problems)
        #: The output shape the layer would still have (its declared widths), so that the layers
        #: after it are checked too; None when it has none.
        self.shape = shape


@dataclass
class Checks:
    """Collects every problem of one layer before raising them together."""

    problems: list[tuple[str | None, str]] = field(default_factory=list)

    def fail(self, field_name: str | None, message: str) -> None:
        self.problems.append((field_name, message))

    def raise_if_any(self, shape: Shape | None = None) -> None:
        if self.problems:
            raise LayerError(*self.problems, shape=shape)


# ------------------------------------------------------------------------------------- fields


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


class IntTuple(fields.Field):
    """An int, or a list of `rank` ints, loaded as a tuple of `rank` ints (PyTorch's `_ntuple`)."""

    def __init__(self, rank: int, minimum: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        self.rank = rank
        self.minimum = minimum

    def json_schema(self) -> dict[str, Any]:
        """The values it takes, as JSON Schema (for /openapi.json)."""
        one = {"type": "integer", "minimum": self.minimum}
        many = {"type": "array", "items": one, "minItems": self.rank, "maxItems": self.rank}
        return {"oneOf": [one, many]}

    def describe(self) -> str:
        """The values it takes, in words (for docs/spec.md)."""
        return f"int ≥ {self.minimum}, or a list of {self.rank}"

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> tuple[int, ...]:
        want = f"an integer ≥ {self.minimum} or a list of {self.rank} such integers"
        if _is_int(value):
            values = (int(value),) * self.rank
        elif isinstance(value, list | tuple):
            if len(value) != self.rank or not all(_is_int(v) for v in value):
                raise ValidationError(f"expected {want}, got {value!r}")
            values = tuple(int(v) for v in value)
        else:
            raise ValidationError(f"expected {want}, got {value!r}")
        if any(v < self.minimum for v in values):
            raise ValidationError(f"expected {want}, got {value!r}")
        return values

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        return list(value) if value is not None else None


class Padding(IntTuple):
    """Like IntTuple (from 0), or the strings 'same' / 'valid', or one [before, after] pair per
    spatial axis for asymmetric padding (as ONNX and TensorFlow models have)."""

    def __init__(self, rank: int, **kwargs: Any):
        super().__init__(rank, minimum=0, **kwargs)

    def json_schema(self) -> dict[str, Any]:
        pair = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2,
                "maxItems": 2}  # fmt: skip
        pairs = {"type": "array", "items": pair, "minItems": self.rank, "maxItems": self.rank}
        words = {"type": "string", "enum": ["same", "valid"]}
        return {"oneOf": [*super().json_schema()["oneOf"], words, pairs]}

    def describe(self) -> str:
        return (
            f'int ≥ 0, a list of {self.rank}, "same", "valid", or {self.rank} [before, after] pairs'
        )

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if value == "valid":
            return (0,) * self.rank
        if value == "same":
            return "same"
        if isinstance(value, str):
            raise ValidationError(f"expected 'same', 'valid', or integers ≥ 0, got {value!r}")
        if isinstance(value, list | tuple) and value and isinstance(value[0], list | tuple):
            pairs = tuple(tuple(v) for v in value if isinstance(v, list | tuple))
            if (
                len(value) != self.rank
                or len(pairs) != self.rank
                or not all(len(p) == 2 and all(_is_int(x) and x >= 0 for x in p) for p in pairs)
            ):
                raise ValidationError(
                    f"asymmetric padding is one [before, after] pair of integers ≥ 0 per axis "
                    f"({self.rank} pairs), got {value!r}"
                )
            return tuple((int(a), int(b)) for a, b in pairs)
        return super()._deserialize(value, attr, data, **kwargs)

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        if value == "same" or value is None:
            return value
        return [list(v) if isinstance(v, tuple) else v for v in value]


def Int(minimum: int = 1, **kwargs: Any) -> fields.Integer:  # noqa: N802 - reads like a field
    return fields.Integer(strict=True, validate=validate.Range(min=minimum), **kwargs)


def Number(minimum: float | None = None, **kwargs: Any) -> fields.Float:  # noqa: N802
    v = validate.Range(min=minimum, min_inclusive=False) if minimum is not None else None
    return fields.Float(allow_nan=False, validate=v, **kwargs)


class LayerSchema(Schema):
    """Fields every layer has. Each layer type's schema extends this one."""

    class Meta:
        unknown = RAISE

    name = fields.String(
        required=True,
        validate=validate.Regexp(
            NAME_PATTERN,
            error="layer names are 1-128 letters, digits, '_', '.' or '-', not starting with . -",
        ),
    )
    type = fields.String(required=True)
    inputs = fields.List(fields.String(), validate=validate.Length(min=1))


# ----------------------------------------------------------------------------------- the type


class LayerType:
    """The base of every layer type. Subclasses set `type_name`, `schema` and override rules."""

    type_name: ClassVar[str]
    schema: ClassVar[type[Schema]] = LayerSchema
    family: ClassVar[str] = ""
    #: (minimum, maximum) number of inputs; None = unbounded.
    arity: ClassVar[tuple[int, int | None]] = (1, 1)
    #: The forward pass may write its result over its (first) input: it takes `out=`.
    inplace: ClassVar[bool] = False
    #: The output may be a view of the input (same memory), so it must not be overwritten while
    #: the input is still read elsewhere.
    view: ClassVar[bool] = False
    #: Its output along the class axis is already a probability distribution (sums to 1), so a
    #: classifier ending with it needs no softmax on top.
    yields_probabilities: ClassVar[bool] = False
    #: Its compiled forward pass takes `epilogue=`, an in-place function of an output chunk (see
    #: `as_epilogue`), and applies it to each chunk as soon as the chunk is computed.
    takes_epilogue: ClassVar[bool] = False
    #: The ONNX ops `from_onnx` converts, each with what of it convserve runs, in words ("" for
    #: all of it): the importer's list of what it runs is made of these.
    onnx_ops: ClassVar[Mapping[str, str]] = {}

    def default(self, field_name: str) -> Any:
        """The value a field takes when a spec leaves it out."""
        return self.schema._declared_fields[field_name].load_default

    # Shapes -------------------------------------------------------------------------------

    def output_shape(self, layer: Layer, sources: Sequence[Source]) -> Shape:
        """The output shape (batch excluded); raise LayerError naming what does not fit."""
        return sources[0].shape

    def example_spec(self) -> dict[str, Any]:
        """`example()` with this type's name on its last layer."""
        spec = self.example()
        spec["layers"][-1] = {
            "name": "example",
            "type": self.type_name,
            **{k: v for k, v in spec["layers"][-1].items() if k not in ("name", "type")},
        }
        return spec

    def example(self) -> dict[str, Any]:
        """A small spec whose last layer is one of this type: the reference docs show it (its
        fields, weights and layer-table row), and a test keeps it valid."""
        return spec_example([3, 16, 16], {})

    #: Required fields whose value follows from the input (see `infer`).
    inferable: ClassVar[tuple[str, ...]] = ()

    def infer(self, field: str, sources: Sequence[Source]) -> tuple[int, str] | None:
        """The value a missing `inferable` field must have given what reaches the layer, with
        the reason in words; None when the input does not tell."""
        return None

    # Weights ------------------------------------------------------------------------------

    def weights(self, layer: Layer) -> dict[str, WeightSpec]:
        """Arrays this layer stores, by suffix (`weight`, `bias`, ...), from its fields alone."""
        return {}

    def macs(self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        return 0

    def receptive_field(
        self, layer: Layer, in_rfs: Sequence[ReceptiveField], in_shapes: Sequence[Shape]
    ) -> ReceptiveField:
        return in_rfs[0]

    def explain(
        self, layer: Layer, in_shapes: Sequence[Shape], out_shape: Shape, params: int
    ) -> str:
        return f"{layer.type} → {fmt_shape(out_shape)}"

    # Forward ------------------------------------------------------------------------------

    def compile(
        self, layer: Layer, weights: Mapping[str, np.ndarray], in_shapes: Sequence[Shape]
    ) -> Op:
        """A function of the batched input arrays (float32, N first) returning the output."""
        raise NotImplementedError(self.type_name)

    def as_epilogue(self, layer: Layer) -> Callable[[np.ndarray], object] | None:
        """This layer as an in-place function of any part of its input, when it works value by
        value (a ReLU): the plan then lets the producer of its input apply it (see
        `takes_epilogue`). None when it is not such a layer."""
        return None

    # Batch-norm folding: a layer that is a per-channel affine map can be folded into a producer
    # that can absorb one, so y = producer(x) * scale + shift costs nothing at run time.
    def as_affine(
        self, layer: Layer, weights: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        return None

    def absorb_affine(
        self,
        layer: Layer,
        weights: Mapping[str, np.ndarray],
        scale: np.ndarray,
        shift: np.ndarray,
    ) -> dict[str, np.ndarray] | None:
        return None

    # ONNX ---------------------------------------------------------------------------------

    def from_onnx(self, g: OnnxGraph, node: Any, attrs: Mapping[str, Any]) -> None:
        """Add what an ONNX node of one of `onnx_ops` becomes to `g`, or raise OnnxRefusal.

        By default the node reads one tensor and has no attribute convserve reads: one layer of
        this type."""
        g.layer(node, self, [node.input[0]])

    def absorb_onnx_bias(self, g: OnnxGraph, layer: dict[str, Any], bias: np.ndarray) -> bool:
        """Take a constant the ONNX graph adds to this layer's output as its bias (MatMul then
        Add); False when it cannot."""
        return False


def spec_example(
    input_shape: list[int],
    fields: dict[str, Any],
    before: list[dict[str, Any]] | None = None,
    type_name: str | None = None,
) -> dict[str, Any]:
    """A spec of `input_shape` whose last layer is `{"type": type_name, **fields}`, named
    "example", after the layers `before`; the type is filled in by `LayerType.example_spec`."""
    layer = {"name": "example", **({"type": type_name} if type_name else {}), **fields}
    return {"input": {"name": "image", "shape": input_shape}, "layers": [*(before or []), layer]}


def spatial_rank_error(layer: Layer, src: Source, rank: int, what: str) -> tuple[str, str]:
    ndims = len(src.shape) - 1
    want = "C×" + "×".join("DHW"[-rank:] if rank <= 3 else "S" * rank)
    got = f"{fmt_shape(src.shape)} ({plural(ndims, 'spatial dimension')})"
    return (
        "inputs",
        f"{layer.name} is a {what} and needs a {want} input ({plural(rank, 'spatial dimension')}) "
        f"but {src} produces {got}",
    )


def prod(xs: Sequence[int]) -> int:
    return math.prod(int(x) for x in xs)


def window_rf(
    rf: ReceptiveField, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> ReceptiveField:
    """A window of k taps, d apart, moving s at a time; each tap sees rf.size, rf.stride apart."""
    size = tuple(
        sz + d * (k - 1) * j
        for sz, j, k, d in zip(rf.size, rf.stride, kernel, dilation, strict=True)
    )
    return ReceptiveField(size, tuple(j * s for j, s in zip(rf.stride, stride, strict=True)))


def whole_extent_rf(rf: ReceptiveField, spatial: Sequence[int]) -> ReceptiveField:
    """A layer that sees its whole input at once: one window as wide as the input (the stride
    no longer means anything there and is carried over unchanged)."""
    if not spatial:
        return rf
    ones = (1,) * len(spatial)
    return window_rf(rf, spatial, ones, ones)
