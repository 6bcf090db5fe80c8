"""The table of layer types, filled by the family modules as they are imported."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import LayerType

CATALOGUE: dict[str, LayerType] = {}


def register(cls: type[LayerType]) -> type[LayerType]:
    if cls.type_name in CATALOGUE:
        raise ValueError(f"layer type {cls.type_name!r} is defined twice")
    CATALOGUE[cls.type_name] = cls()
    return cls
