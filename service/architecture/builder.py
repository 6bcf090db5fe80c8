"""Spec → nodes: the spec's layers read in passes (fields, graph, shapes, what depends on the
output and input shapes), every problem collected before `SpecError` is raised, each naming its
layer and explaining in words. `Architecture.from_spec` (graph.py) wraps what `build` returns.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from marshmallow import ValidationError

from .. import catalogue
from ..catalogue.base import (
    Layer,
    LayerError,
    LayerType,
    ReceptiveField,
    Shape,
    Source,
    WeightSpec,
    fmt_int,
    fmt_shape,
    plural,
    prod,
)
from ..errors import Problem, SpecError
from .preprocessing import preprocess_problems
from .schema import MISSING, SpecSchema, flatten_messages


@dataclass(frozen=True)
class Limits:
    """Bounds on what a spec may ask for; None means unbounded (the library default)."""

    max_layers: int | None = None
    max_tensor_elements: int | None = None  # per image, any one layer's output
    max_macs: int | None = None  # per image, whole network


@dataclass(frozen=True)
class Node:
    """One layer placed in the graph, with everything its type says about it."""

    layer: Layer
    kind: LayerType
    inputs: tuple[str, ...]
    in_shapes: tuple[Shape, ...]
    out_shape: Shape
    weights: Mapping[str, WeightSpec]
    params: int
    macs: int
    rf: ReceptiveField
    explain: str

    @property
    def name(self) -> str:
        return self.layer.name

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.layer.type,
            "inputs": list(self.inputs),
            "input_shapes": [list(s) for s in self.in_shapes],
            "output_shape": list(self.out_shape),
            "weight_shapes": {k: list(w.shape) for k, w in self.weights.items() if w.required},
            "params": self.params,
            "macs": self.macs,
            "receptive_field": self.rf.to_dict(),
            "explain": self.explain,
        }


@dataclass
class _Entry:
    """A layer as read from the spec, before shapes: maybe broken, always placed if named."""

    index: int
    name: str
    type: str
    inputs: tuple[str, ...]
    layer: Layer | None  # None when its fields failed validation
    kind: LayerType | None


class Built(NamedTuple):
    """What a valid spec builds: the loaded spec, its nodes in topological order, the input's
    name and shape, and the output layer's name."""

    spec: dict[str, Any]
    nodes: list[Node]
    input_name: str
    input_shape: Shape
    output: str


def build(spec: Any, limits: Limits) -> Built:
    """The nodes of a valid spec; SpecError listing every problem of an invalid one."""
    return _Builder(spec, limits).build()


class _Builder:
    """Reads a spec in passes (fields, graph, shapes, extras), collecting every problem."""

    def __init__(self, spec: Any, limits: Limits):
        self.raw = spec
        self.limits = limits
        self.problems: list[Problem] = []
        #: layers lacking only fields their input decides (a conv's in_channels): the problem
        #: is reported once the shapes reaching them are known, with the value to write
        self.pending: dict[str, tuple[dict[str, Any], list[str]]] = {}

    def fail(self, layer: str | None, field: str | None, message: str) -> None:
        self.problems.append(Problem(layer, field, message))

    def build(self) -> Built:
        if not isinstance(self.raw, dict):
            raise SpecError(
                [Problem(None, None, "a spec is a JSON object with 'input' and 'layers'")]
            )
        top = self._top()
        raw_layers = self.raw.get("layers")
        if not isinstance(raw_layers, list) or not raw_layers:
            raise SpecError(self.problems)
        lim = self.limits.max_layers
        if lim is not None and len(raw_layers) > lim:
            self.fail(None, "layers", f"the spec has {len(raw_layers)} layers; the limit is {lim}")
            raise SpecError(self.problems)
        input_name = top.get("input", {}).get("name", "input")
        entries = self._entries(raw_layers, input_name)
        order = self._graph(entries, input_name)
        output = top.get("output") or (entries[-1].name if entries else None)
        if output is not None and output not in {e.name for e in entries}:
            self.fail(None, "output", f"output names '{output}', which is not a layer of this spec")
            output = None
        if output is not None and order is not None:
            self._dead_layers(entries, output)
        nodes: list[Node] = []
        shapes: dict[str, Shape] = {}
        if "input" in top and order is not None:
            nodes, shapes = self._shapes(order, input_name, tuple(top["input"]["shape"]))
        for label, (raw, missing) in self.pending.items():  # never reached by a shape
            for field in missing:
                self.fail(label, field, f"{label} ({raw.get('type')}): {field}: {MISSING}")
        if "input" in top and order is not None:
            if output in shapes:
                self._labels(top.get("labels"), output, shapes[output])
            self.problems.extend(preprocess_problems(top["input"]))
            self._macs(nodes)
        if self.problems:
            raise SpecError(self.problems)
        assert output is not None
        return Built(top, nodes, input_name, tuple(top["input"]["shape"]), output)

    # -- pass 1: the top level and each layer's fields ------------------------------------

    def _top(self) -> dict[str, Any]:
        try:
            return SpecSchema().load(self.raw)
        except ValidationError as err:
            for field, msg in flatten_messages(err.messages):
                self.fail(None, field, f"{field}: {msg}")
            valid = err.valid_data if isinstance(err.valid_data, dict) else {}
            return {k: v for k, v in valid.items() if k != "input" or "shape" in v}

    def _entries(self, raw_layers: list[Any], input_name: str) -> list[_Entry]:
        entries: list[_Entry] = []
        seen: dict[str, int] = {}
        previous = input_name
        for i, raw in enumerate(raw_layers):
            where = f"layers[{i}]"
            if not isinstance(raw, dict):
                self.fail(where, None, f"{where} is not an object: a layer has a name and a type")
                continue
            name = raw.get("name") if isinstance(raw.get("name"), str) else None
            label = name or where
            layer, kind = self._layer(raw, label)
            if not name:
                continue
            if name in seen or name == input_name:
                other = "the input's name" if name == input_name else f"layers[{seen[name]}]"
                self.fail(name, "name", f"layer name '{name}' is already used by {other}")
                continue
            seen[name] = i
            refs = raw.get("inputs")
            valid_refs = isinstance(refs, list) and refs and all(isinstance(r, str) for r in refs)
            inputs = tuple(refs) if valid_refs else (previous,)
            entries.append(_Entry(i, name, str(raw.get("type")), inputs, layer, kind))
            previous = name
        return entries

    def _layer(self, raw: dict[str, Any], label: str) -> tuple[Layer | None, LayerType | None]:
        type_name = raw.get("type")
        kind = catalogue.get(type_name) if isinstance(type_name, str) else None
        if kind is None:
            what = f"unknown layer type '{type_name}'" if type_name else "no layer type given"
            self.fail(
                label, "type", f"{label}: {what}; known types: {', '.join(catalogue.known_types())}"
            )
            return None, None
        try:
            cfg = kind.schema().load(raw)
        except ValidationError as err:
            found = flatten_messages(err.messages)
            missing = [field for field, msg in found if msg == MISSING]
            if found and len(missing) == len(found) and set(missing) <= set(kind.inferable):
                self.pending[label] = (raw, missing)
                return None, kind
            for field, msg in found:
                self.fail(label, field, f"{label} ({type_name}): {field}: {msg}")
            return None, kind
        name = cfg.pop("name")
        cfg.pop("type")
        inputs = cfg.pop("inputs", None)
        return Layer(name, type_name, tuple(inputs) if inputs else None, cfg), kind

    # -- pass 2: the graph ---------------------------------------------------------------

    def _graph(self, entries: list[_Entry], input_name: str) -> list[_Entry] | None:
        """Resolve inputs and sort topologically (spec order among equals); None on cycles."""
        by_name = {e.name: e for e in entries}
        ok = True
        for e in entries:
            for ref in e.inputs:
                if ref != input_name and ref not in by_name:
                    ok = False
                    self.fail(
                        e.name,
                        "inputs",
                        f"{e.name} reads '{ref}', which is neither the input '{input_name}' "
                        f"nor a layer of this spec",
                    )
            if e.kind is not None:
                lo, hi = e.kind.arity
                n = len(e.inputs)
                if n < lo or (hi is not None and n > hi):
                    ok = False
                    want = (
                        "exactly one input"
                        if (lo, hi) == (1, 1)
                        else f"at least {lo} inputs"
                        if hi is None
                        else f"{lo} to {hi} inputs"
                    )
                    self.fail(
                        e.name,
                        "inputs",
                        f"{e.name} ({e.type}) takes {want} but is given {n}: {', '.join(e.inputs)}",
                    )
        if not ok:
            return None
        indegree = {e.name: sum(1 for r in e.inputs if r != input_name) for e in entries}
        readers: dict[str, list[_Entry]] = {e.name: [] for e in entries}
        for e in entries:
            for r in e.inputs:
                if r != input_name:
                    readers[r].append(e)
        heap = [(e.index, e.name) for e in entries if indegree[e.name] == 0]
        heapq.heapify(heap)
        order: list[_Entry] = []
        while heap:
            _, name = heapq.heappop(heap)
            order.append(by_name[name])
            for r in readers[name]:
                indegree[r.name] -= 1
                if indegree[r.name] == 0:
                    heapq.heappush(heap, (r.index, r.name))
        if len(order) < len(entries):
            stuck = [e.name for e in entries if indegree[e.name] > 0]
            self.fail(
                stuck[0],
                "inputs",
                f"layers {', '.join(stuck)} depend on each other in a cycle: a network is a "
                f"directed acyclic graph, each layer reading only layers computed before it",
            )
            return None
        return order

    def _dead_layers(self, entries: list[_Entry], output: str) -> None:
        by_name = {e.name: e for e in entries}
        live, stack = set(), [output]
        while stack:
            name = stack.pop()
            if name in live or name not in by_name:
                continue
            live.add(name)
            stack.extend(by_name[name].inputs)
        for e in entries:
            if e.name not in live:
                self.fail(
                    e.name,
                    None,
                    f"{e.name}'s output is never used: it reaches neither the model output "
                    f"'{output}' nor a layer that does",
                )

    # -- pass 3: shapes ------------------------------------------------------------------

    def _shapes(
        self, order: list[_Entry], input_name: str, input_shape: Shape
    ) -> tuple[list[Node], dict[str, Shape]]:
        """Nodes for the layers that passed, and the shape of every layer that has one."""
        shapes: dict[str, Shape] = {input_name: input_shape}
        rank = len(input_shape) - 1
        rfs = {input_name: ReceptiveField((1,) * rank, (1,) * rank)}
        nodes: list[Node] = []
        max_elems = self.limits.max_tensor_elements
        for e in order:
            if e.kind is None or any(r not in shapes for r in e.inputs):
                continue  # its own fields, or a layer upstream, already failed
            sources = [Source(r, shapes[r], is_model_input=(r == input_name)) for r in e.inputs]
            if e.layer is None and e.name in self.pending:
                e.layer = self._inferred(e, sources)
            if e.layer is None:
                continue
            try:
                out = tuple(int(d) for d in e.kind.output_shape(e.layer, sources))
            except LayerError as err:
                for field, msg in err.problems:
                    self.fail(e.name, field, msg)
                if err.shape is not None:  # keep checking the layers after it
                    shapes[e.name] = err.shape
                    rfs[e.name] = rfs[e.inputs[0]]
                continue
            if max_elems is not None and prod(out) > max_elems:
                self.fail(
                    e.name,
                    None,
                    f"{e.name} produces {fmt_shape(out)} = {fmt_int(prod(out))} values per image; "
                    f"the limit is {fmt_int(max_elems)}",
                )
                continue
            in_shapes = tuple(s.shape for s in sources)
            weights = e.kind.weights(e.layer)
            params = sum(prod(w.shape) for w in weights.values() if w.trainable)
            rf = e.kind.receptive_field(e.layer, [rfs[r] for r in e.inputs], in_shapes)
            node = Node(
                layer=e.layer,
                kind=e.kind,
                inputs=e.inputs,
                in_shapes=in_shapes,
                out_shape=out,
                weights=weights,
                params=params,
                macs=e.kind.macs(e.layer, in_shapes, out),
                rf=rf,
                explain=e.kind.explain(e.layer, in_shapes, out, params),
            )
            nodes.append(node)
            shapes[e.name] = out
            rfs[e.name] = rf
        return nodes, shapes

    def _inferred(self, e: _Entry, sources: list[Source]) -> Layer | None:
        """Report the fields a layer lacks with the values its input implies, and carry on with
        those values so that the layers after it are checked too."""
        raw, missing = self.pending.pop(e.name)
        assert e.kind is not None
        values = {}
        for field in missing:
            found = e.kind.infer(field, sources)
            if found is None:
                self.fail(e.name, field, f"{e.name} ({e.type}): {field}: {MISSING}")
                continue
            value, reason = found
            values[field] = value
            self.fail(
                e.name,
                field,
                f"{e.name} ({e.type}) lacks {field}: {reason}, so {field} is {value} "
                f'(add "{field}": {value})',
            )
        if len(values) < len(missing):
            return None
        try:
            cfg = e.kind.schema().load({**raw, **values})
        except ValidationError:
            return None
        for key in ("name", "type"):
            cfg.pop(key, None)
        inputs = cfg.pop("inputs", None)
        return Layer(e.name, e.type, tuple(inputs) if inputs else None, cfg)

    # -- pass 4: what depends on the output and input shapes -----------------------------

    def _labels(self, labels: list[str] | None, output: str, out: Shape) -> None:
        if labels is None:
            return
        if any(d != 1 for d in out[1:]):  # K class scores may keep singleton axes (K×1×1)
            self.fail(
                None,
                "labels",
                f"labels name classes, but the output {output} produces {fmt_shape(out)}, "
                f"not a vector of class scores",
            )
        elif len(labels) != out[0]:
            self.fail(
                None,
                "labels",
                f"{plural(len(labels), 'label')} given but the output {output} produces "
                f"{out[0]} class scores: give one label per class",
            )

    def _macs(self, nodes: list[Node]) -> None:
        lim = self.limits.max_macs
        total = sum(n.macs for n in nodes)
        if lim is not None and total > lim:
            self.fail(
                None,
                "layers",
                f"the network needs {fmt_int(total)} multiply-adds per image; the limit is "
                f"{fmt_int(lim)}",
            )
