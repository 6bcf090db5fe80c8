"""The catalogue's index of layer types, filled by the family modules as they are imported: by
type name, and by the ONNX op each type is imported from."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .base import LayerType

    T = TypeVar("T", bound=LayerType)

CATALOGUE: dict[str, LayerType] = {}

#: ONNX op type → the layer type whose `from_onnx` converts it (see `LayerType.onnx_ops`).
ONNX_OPS: dict[str, LayerType] = {}


def register(cls: type[LayerType]) -> type[LayerType]:
    if cls.type_name in CATALOGUE:
        raise ValueError(f"layer type {cls.type_name!r} is defined twice")
    kind = cls()
    CATALOGUE[cls.type_name] = kind
    for op in cls.onnx_ops:
        # The types of one family (conv1d/2d/3d) share one converter, which picks the variant a
        # node needs; two different converters for one op would be ambiguous.
        have = ONNX_OPS.setdefault(op, kind)
        if type(have).from_onnx is not cls.from_onnx:
            raise ValueError(f"ONNX op {op!r} is converted by both {have.type_name} and {cls}")
    return cls


def find(cls: type[T], test: Callable[[T], bool] = lambda k: True) -> T | None:
    """The registered type of class `cls` that passes `test` (the conv whose rank is 2)."""
    return next((k for k in CATALOGUE.values() if isinstance(k, cls) and test(k)), None)
