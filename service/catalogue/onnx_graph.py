"""What a layer type's ONNX mapping (`LayerType.from_onnx`) sees of the model being imported.

service.onnx_import walks the graph and owns it (`_Graph`); each node of an op in a type's
`onnx_ops` is handed to that type, which reads the node's attributes and initializers and adds
the layer(s) and weights it becomes, or refuses it with `OnnxRefusal`. Nodes are ONNX NodeProtos,
read by their plain fields (`op_type`, `input`, `output`); the catalogue never imports onnx.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


class OnnxRefusal(Exception):
    """The node cannot become a convserve layer; the message says why (the importer names the
    node)."""


class OnnxGraph(Protocol):
    """The graph being converted (service.onnx_import._Graph)."""

    opset: int
    #: initializers and folded constants, by tensor name
    consts: dict[str, np.ndarray]
    #: tensor shapes from ONNX's shape inference, None for a dimension it could not tell
    shapes: dict[str, list[int | None]]
    #: constants computed from the run-time batch size (-1 standing for it)
    dynamic: set[str]
    producer: dict[str, str]
    layers: list[dict[str, Any]]
    weights: dict[str, np.ndarray]

    #: layer(node, kind, inputs, base_name=None, **fields) appends a layer of `kind` reading the
    #: tensors `inputs` and computing the node's output, named after the node's module path or
    #: `base_name`, and returns it (the spec's dict, which a later node may still amend).
    layer: Callable[..., dict[str, Any]]

    def const(self, node: Any, tensor: str, what: str) -> np.ndarray:
        """A stored tensor the node reads (its `what`: weight, bias…), as float32."""
        ...

    def alias(self, node: Any) -> None:
        """The node's output is its input: no layer."""
        ...


def node_name(node: Any) -> str:
    return node.name or node.output[0]


def decode(v: Any) -> Any:
    """A string attribute (onnx returns bytes) as str."""
    return v.decode() if isinstance(v, bytes) else v
