"""A validated architecture: the spec's layers as a DAG in topological order, every shape known.

`Architecture.from_spec(spec)` parses and checks a spec (API.md's JSON) and raises `SpecError`
with every problem found, each naming its layer and explaining in words; what it returns knows
each layer's input and output shapes, weights, params, multiply-adds and receptive field, and
renders the layer table. Nothing here imports Flask or SQLAlchemy.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from . import catalogue
from .catalogue.base import (
    NAME_PATTERN,
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
from .errors import Problem, SpecError, WeightsError

FLOAT_BYTES = 4


@dataclass(frozen=True)
class Limits:
    """Bounds on what a spec may ask for; None means unbounded (the library default)."""

    max_layers: int | None = None
    max_tensor_elements: int | None = None  # per image, any one layer's output
    max_macs: int | None = None  # per image, whole network


# ---------------------------------------------------------------------------------- schemas

#: Resampling filters a spec may name for its resize (Pillow's; torchvision's default first).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")


def _ints(n: int) -> fields.List:
    return fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1)),
        validate=validate.Length(equal=n),
    )


class PreprocessSchema(Schema):
    class Meta:
        unknown = RAISE

    color = fields.String(validate=validate.OneOf(["L", "RGB"]))
    resize = _ints(2)
    interpolation = fields.String(validate=validate.OneOf(list(INTERPOLATIONS)))
    resize_shorter = fields.Integer(strict=True, validate=validate.Range(min=1))
    center_crop = _ints(2)
    scale = fields.Float(allow_nan=False)
    mean = fields.List(fields.Float(allow_nan=False), validate=validate.Length(min=1))
    std = fields.List(
        fields.Float(allow_nan=False, validate=validate.Range(min=0, min_inclusive=False)),
        validate=validate.Length(min=1),
    )

    @validates_schema
    def _one_resize(self, data: dict, **kwargs: Any) -> None:
        if "resize" in data and "resize_shorter" in data:
            raise ValidationError(
                "give either resize [H, W] or resize_shorter (then center_crop), not both",
                "resize_shorter",
            )


class InputSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(
        load_default="input",
        validate=validate.Regexp(NAME_PATTERN, error="input names follow layer names' rules"),
    )
    shape = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1)),
        required=True,
        validate=validate.Length(
            min=1, max=4, error="shape is [C], [C, L], [C, H, W] or [C, D, H, W] (no batch)"
        ),
    )
    preprocess = fields.Nested(PreprocessSchema)


class SpecSchema(Schema):
    class Meta:
        unknown = RAISE

    input = fields.Nested(InputSchema, required=True)
    labels = fields.List(fields.String())
    layers = fields.List(fields.Raw(), required=True, validate=validate.Length(min=1))
    output = fields.String()
    description = fields.String()
    metadata = fields.Dict(keys=fields.String())


#: marshmallow's message for a required field that is absent
MISSING = "Missing data for required field."


def _not_finite(a: np.ndarray, chunk: int = 1 << 22) -> int:
    """How many values are NaN or infinite, a few MB at a time (not a mask as big as `a`)."""
    flat = np.ravel(a, order="K")
    return sum(
        int(part.size - np.count_nonzero(np.isfinite(part)))
        for part in (flat[i : i + chunk] for i in range(0, flat.size, chunk))
    )


def image_preprocess(input_: Mapping[str, Any]) -> dict[str, Any] | None:
    """The full image pipeline of a validated `input`, every default filled in; None when the
    input is not an image ([1 or 3, H, W]).

    Steps, in order: decode, apply EXIF orientation, convert to `color`, `resize` to [H, W] (or
    `resize_shorter` keeping the aspect ratio), `center_crop`, multiply by `scale`, subtract
    `mean` and divide by `std` per channel, channels first. Without `preprocess`, images must
    already have the input's size and are scaled to [0, 1], as torchvision's ToTensor does.
    """
    shape = list(input_["shape"])
    if len(shape) != 3 or shape[0] not in (1, 3):
        return None
    pre = dict(input_.get("preprocess") or {})
    c = shape[0]
    out: dict[str, Any] = {"color": pre.get("color") or ("L" if c == 1 else "RGB")}
    for key in ("resize", "resize_shorter", "center_crop"):
        if key in pre:
            out[key] = pre[key]
    if "resize" in out or "resize_shorter" in out:
        out["interpolation"] = pre.get("interpolation", INTERPOLATIONS[0])
    out["scale"] = pre.get("scale", 1 / 255)
    out["mean"] = _per_channel(pre.get("mean"), 0.0, c)
    out["std"] = _per_channel(pre.get("std"), 1.0, c)
    out["size"] = shape[1:]
    out["layout"] = "CHW"
    return out


def _per_channel(values: list[float] | None, default: float, channels: int) -> list[float]:
    vals = [float(v) for v in values or [default]]
    return vals * channels if len(vals) == 1 else vals


def _flatten_messages(messages: Any, prefix: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested {field: [msg]} into (dotted.field, msg) pairs."""
    out: list[tuple[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.extend(_flatten_messages(value, name))
    elif isinstance(messages, list | tuple):
        for value in messages:
            out.extend(_flatten_messages(value, prefix))
    else:
        out.append((prefix, str(messages)))
    return out


# ------------------------------------------------------------------------------------ nodes


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


# ----------------------------------------------------------------------------- architecture


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
        return _Builder(spec, limits or Limits()).build()

    # -- facts -------------------------------------------------------------------------

    @property
    def labels(self) -> list[str] | None:
        return self.spec.get("labels")

    @property
    def preprocess(self) -> dict[str, Any] | None:
        return self.spec["input"].get("preprocess")

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
        """The layer table of API.md: input shape, one row per layer, totals."""
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
        WeightsError listing every problem, each naming the array and the expected shape. Each
        array is read from `arrays` once; with keep=False none is kept, so a lazy mapping (an
        open .npz) is checked holding one array at a time, and {} is returned.
        """
        expected = self.weight_specs()
        problems: list[Problem] = []
        out: dict[str, np.ndarray] = {}
        for key, spec in expected.items():
            layer, suffix = key.rsplit(".", 1)
            if key not in arrays:
                if spec.required:
                    problems.append(
                        Problem(
                            layer,
                            suffix,
                            f"the weights lack '{key}': {layer} needs a {fmt_shape(spec.shape)} "
                            f"array ({spec.meaning})",
                        )
                    )
                continue
            a = np.asarray(arrays[key])
            want = "an integer" if spec.dtype == "int" else "a floating-point"
            kind_ok = a.dtype.kind in ("iu" if spec.dtype == "int" else "f")
            if not kind_ok:
                problems.append(
                    Problem(
                        layer, suffix, f"'{key}' holds {a.dtype} values; it must be {want} array"
                    )
                )
                continue
            if tuple(a.shape) != tuple(spec.shape):
                problems.append(
                    Problem(
                        layer,
                        suffix,
                        f"'{key}' has shape {fmt_shape(a.shape) if a.ndim else 'scalar'} but "
                        f"{layer} needs {fmt_shape(spec.shape) if spec.shape else 'a scalar'}"
                        + (f" ({spec.meaning})" if spec.meaning else ""),
                    )
                )
                continue
            if spec.dtype == "int":
                continue
            if a.dtype == np.float32:
                f32 = a
            else:
                with np.errstate(over="ignore"):  # too large for float32 becomes inf, reported
                    f32 = a.astype(np.float32)
            bad = _not_finite(f32)
            if bad:
                problems.append(
                    Problem(
                        layer,
                        suffix,
                        f"'{key}' holds {plural(bad, 'value')} that are not finite in float32 "
                        f"(NaN, infinite, or too large)",
                    )
                )
                continue
            if keep:
                out[key] = f32
            del a, f32
        for key in arrays:
            if key not in expected:
                problems.append(self._unexpected(key))
        if problems:
            raise WeightsError(problems)
        return out

    def _unexpected(self, key: str) -> Problem:
        layer = key.rsplit(".", 1)[0] if "." in key else key
        if layer in self.by_name:
            node = self.by_name[layer]
            has = ", ".join(node.weights) or "no weights"
            return Problem(
                layer, None, f"'{key}' is not a weight of {layer}: a {node.layer.type} stores {has}"
            )
        return Problem(None, key, f"'{key}' belongs to no layer: no layer is named '{layer}'")

    def random_weights(self, seed: int = 0) -> dict[str, np.ndarray]:
        """He-initialised weights (zeros for biases, identity statistics for batch norm)."""
        rng = np.random.default_rng(seed)
        out: dict[str, np.ndarray] = {}
        for key, spec in self.weight_specs().items():
            if not spec.required:
                continue
            if spec.init == "he":
                fan_in = max(1, prod(spec.shape[1:]))
                a = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=spec.shape)
            elif spec.init == "ones":
                a = np.ones(spec.shape)
            else:
                a = np.zeros(spec.shape)
            out[key] = a.astype(np.float32)
        return out


# ---------------------------------------------------------------------------------- builder


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

    def build(self) -> Architecture:
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
            self._preprocess(top["input"])
            self._macs(nodes)
        if self.problems:
            raise SpecError(self.problems)
        assert output is not None
        return Architecture(top, nodes, input_name, tuple(top["input"]["shape"]), output)

    # -- pass 1: the top level and each layer's fields ------------------------------------

    def _top(self) -> dict[str, Any]:
        try:
            return SpecSchema().load(self.raw)
        except ValidationError as err:
            for field, msg in _flatten_messages(err.messages):
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
            found = _flatten_messages(err.messages)
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

    def _preprocess(self, inp: dict[str, Any]) -> None:
        pre = inp.get("preprocess")
        if pre is None:
            return
        shape = tuple(inp["shape"])
        if len(shape) != 3:
            self.fail(
                None,
                "input.preprocess",
                f"preprocess describes images, so input.shape must be [C, H, W], not {list(shape)}",
            )
            return
        c, h, w = shape
        color = pre.get("color") or {1: "L", 3: "RGB"}.get(c)
        if color is None or {"L": 1, "RGB": 3}[color] != c:
            self.fail(
                None,
                "input.preprocess.color",
                f"images decode to 1 channel (L) or 3 (RGB), but input.shape has {c} channels"
                + (f" and color is {pre['color']}" if "color" in pre else ""),
            )
        for key in ("mean", "std"):
            if key in pre and len(pre[key]) not in (1, c):
                self.fail(
                    None,
                    f"input.preprocess.{key}",
                    f"{key} has {len(pre[key])} values; give 1 or one per channel ({c})",
                )
        final = pre.get("center_crop") or pre.get("resize")
        if "resize_shorter" in pre and "center_crop" not in pre:
            self.fail(
                None,
                "input.preprocess.center_crop",
                "resize_shorter keeps the aspect ratio, so the size is only fixed by a "
                f"center_crop: add center_crop [{h}, {w}]",
            )
        elif final is not None and tuple(final) != (h, w):
            self.fail(
                None,
                "input.preprocess",
                f"preprocessing yields {final[0]}×{final[1]} images but input.shape is "
                f"{fmt_shape(shape)}",
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
