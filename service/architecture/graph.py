"""A validated architecture: the spec's layers as a DAG in topological order, every shape known.

`Architecture.from_spec(spec)` parses and checks a spec (builder.py) and raises `SpecError` with
every problem found; what it returns knows each layer's input and output shapes, weights,
params, multiply-adds and receptive field, renders the layer table, checks weights
(weight_checks.py) and makes random ones (random_init.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..catalogue.base import Shape, WeightSpec, prod
from ..kernels import softmax
from .builder import Limits, Node, build
from .preprocessing import image_preprocess
from .random_init import random_weights
from .weight_checks import check_weights

#: Bytes of one value: weights and activations are float32.
FLOAT_BYTES = 4


class Architecture:
    """A spec that passed validation. Build with `Architecture.from_spec`."""

    def __init__(
        self,
        spec: dict[str, Any],
        nodes: list[Node],
        input_name: str,
        input_shape: Shape,
        output: str,
    ):
        self.spec = spec
        self.nodes = nodes
        self.input_name = input_name
        self.input_shape = input_shape
        self.output = output
        self.by_name = {n.name: n for n in nodes}
        self.consumers: dict[str, list[str]] = {input_name: []}
        for n in nodes:
            self.consumers.setdefault(n.name, [])
            for i in n.inputs:
                self.consumers[i].append(n.name)

    @classmethod
    def from_spec(cls, spec: Any, limits: Limits | None = None) -> Architecture:
        return cls(*build(spec, limits or Limits()))

    # -- facts -------------------------------------------------------------------------

    @property
    def labels(self) -> list[str] | None:
        return self.spec.get("labels")

    @property
    def image_preprocess(self) -> dict[str, Any] | None:
        """The full image pipeline (see `image_preprocess`), or None when inputs are not images."""
        return image_preprocess(self.spec["input"])

    @property
    def output_shape(self) -> Shape:
        return self.by_name[self.output].out_shape

    @property
    def num_classes(self) -> int | None:
        """K when the output is a vector of K class scores (K, or K×1×…×1); else None."""
        shape = self.output_shape
        return shape[0] if all(d == 1 for d in shape[1:]) else None

    @property
    def yields_probabilities(self) -> bool:
        """The output layer already gives probabilities (it is a softmax)."""
        return self.by_name[self.output].kind.yields_probabilities

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Class probabilities per row of `scores` (N × K outputs): the outputs themselves when
        the output layer is a softmax, else their softmax."""
        return scores if self.yields_probabilities else softmax(scores, axis=1)

    @property
    def input_bytes(self) -> int:
        """Bytes of one input (float32)."""
        return prod(self.input_shape) * FLOAT_BYTES

    def weight_specs(self) -> dict[str, WeightSpec]:
        """Every array the weights file holds, by its name `<layer>.<suffix>`."""
        return {f"{n.name}.{k}": w for n in self.nodes for k, w in n.weights.items()}

    def totals(self) -> dict[str, int]:
        specs = self.weight_specs().values()
        return {
            "params": sum(n.params for n in self.nodes),
            "macs": sum(n.macs for n in self.nodes),
            "weight_bytes": sum(prod(w.shape) * FLOAT_BYTES for w in specs if w.required),
            "activation_bytes": sum(prod(n.out_shape) * FLOAT_BYTES for n in self.nodes),
        }

    def table(self) -> dict[str, Any]:
        """The layer table (`POST /v1/inspect`): input shape, one row per layer, totals."""
        return {
            "input_shape": list(self.input_shape),
            "output": self.output,
            "layers": [n.row() for n in self.nodes],
            "totals": self.totals(),
        }

    # -- weights -----------------------------------------------------------------------

    def check_weights(
        self, arrays: Mapping[str, np.ndarray], keep: bool = True
    ) -> dict[str, np.ndarray]:
        """Every expected array present with its exact shape, nothing unexpected, all finite.

        Returns the arrays as float32 (PyTorch's integer `num_batches_tracked` dropped); raises
        WeightsError listing every problem, each naming the array and the expected shape. With
        keep=False none is kept, so a lazy mapping (an open .npz) is checked holding one array
        at a time, and {} is returned.
        """
        return check_weights(self.weight_specs(), self.by_name, arrays, keep)

    def random_weights(self, seed: int = 0) -> dict[str, np.ndarray]:
        """He-initialised weights (zeros for biases, identity statistics for batch norm)."""
        return random_weights(self.weight_specs(), seed)
