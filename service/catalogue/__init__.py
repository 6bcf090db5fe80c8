"""The layer catalogue: every layer type convserve knows, each defined once in its family module.

from service.catalogue import get, known_types
conv = get("conv2d")
"""

from __future__ import annotations

from . import activation, conv, dense, merge, norm, pool  # noqa: F401 - registers the types
from .base import Layer, LayerError, LayerType, ReceptiveField, Shape, Source, WeightSpec
from .index import CATALOGUE, ONNX_OPS

__all__ = [
    "CATALOGUE",
    "ONNX_OPS",
    "Layer",
    "LayerError",
    "LayerType",
    "ReceptiveField",
    "Shape",
    "Source",
    "WeightSpec",
    "get",
    "known_types",
]


def get(type_name: str) -> LayerType | None:
    return CATALOGUE.get(type_name)


def known_types() -> list[str]:
    return sorted(CATALOGUE)
