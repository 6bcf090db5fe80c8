"""ONNX graph → convserve spec + weights (the `onnx` extra).

Each supported node becomes one layer of the catalogue, converted by the layer type whose
`onnx_ops` list its op (`LayerType.from_onnx`: this module walks the graph and names no type);
initializers become the weights, and pure plumbing (Identity, Dropout) disappears. Shapes come
from ONNX's own shape inference, which resolves `auto_pad` and tells Reshape-to-2-D apart from
other reshapes. Anything the engine cannot
run is refused with the node's name and op type, before anything is stored; the result is then
validated like any uploaded spec.

An ONNX file never makes the server read its own disk: a tensor kept in an external data file is
read only from the uploaded files given to `import_onnx` (by the name the model refers to), and a
file not given is a 422 naming it.
"""

from __future__ import annotations

import contextlib
import io
import json
import posixpath
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .catalogue import ONNX_OPS, LayerType
from .catalogue.onnx_graph import OnnxRefusal, node_name
from .errors import Problem, SpecError, UnsupportedMedia

MIN_OPSET = 11


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - the dev and serve installs include it
        raise UnsupportedMedia(
            "ONNX import needs the onnx extra: pip install 'convserve[onnx]'"
        ) from None
    return onnx


def _fail(node: str | None, message: str, field: str = "onnx") -> SpecError:
    return SpecError([Problem(node, field, message)])


@dataclass
class _Graph:
    """What the conversion walks through: tensors by name and who produces them."""

    consts: dict[str, np.ndarray]
    shapes: dict[str, list[int | None]]
    opset: int
    dtypes: dict[str, np.dtype]
    producer: dict[str, str] = field(default_factory=dict)  # tensor → layer name
    layers: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    #: tensors whose node was refused: what reads them is not reported again
    failed: set[str] = field(default_factory=set)
    #: constants computed from a size known only at run time (the batch), -1 standing for it:
    #: good for a Reshape's target ([N, -1]), for nothing else
    dynamic: set[str] = field(default_factory=set)

    def layer(
        self,
        node: Any,
        kind: LayerType,
        inputs: Sequence[str],
        base_name: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Append a layer of `kind` reading the tensors `inputs`, computing the node's output;
        named after the node's module path, or `base_name` when given."""
        name = self.unique(base_name) if base_name else self._name(node)
        layer = {"name": name, "type": kind.type_name, **fields}
        srcs = [self.source(node, t) for t in inputs]
        if not (len(srcs) == 1 and self.layers and srcs[0] == self.layers[-1]["name"]):
            layer["inputs"] = srcs
        self.layers.append(layer)
        self.producer[node.output[0]] = name
        return layer

    def source(self, node: Any, tensor: str) -> str:
        if tensor in self.failed:
            raise _FollowOn()
        if tensor not in self.producer:
            what = "a constant" if tensor in self.consts else "not computed by any earlier node"
            raise _fail(
                node_name(node),
                f"ONNX node {node_name(node)!r} ({node.op_type}) reads {tensor!r}, which is "
                f"{what}; convserve layers read one tensor flowing through the network",
            )
        return self.producer[tensor]

    def const(self, node: Any, tensor: str, what: str) -> np.ndarray:
        if tensor not in self.consts or tensor in self.dynamic:
            raise _fail(
                node_name(node),
                f"ONNX node {node_name(node)!r} ({node.op_type}) computes its {what} at run "
                f"time; convserve needs it stored in the model (an initializer)",
            )
        return np.asarray(self.consts[tensor], dtype=np.float32)

    def alias(self, node: Any) -> None:
        """The node's output is its input (Identity, Dropout at inference): no layer."""
        self.producer[node.output[0]] = self.source(node, node.input[0])

    def _name(self, node: Any) -> str:
        return self.unique(_module_path(node, self))

    def unique(self, base: str) -> str:
        """`base`, or `base_1`, `base_2`… when taken (PyTorch's own way of numbering calls)."""
        base = _sanitize(base)
        name, i = base, 0
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name


class _FollowOn(Exception):
    """A node reads what a refused node computes: that node's problem already says why."""


def _op(node: Any) -> str:
    return f"{node.domain}.{node.op_type}" if node.domain else node.op_type


def _param_prefix(node: Any, g: _Graph) -> str | None:
    """PyTorch exports name weights `<module path>.weight`: the module path is the best name."""
    for tensor in node.input[1:]:
        if tensor in g.consts and "." in tensor and not tensor.startswith("onnx::"):
            return tensor.rsplit(".", 1)[0]
    return None


_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")


def _name_scopes(node: Any) -> list[str]:
    """PyTorch's dynamo exporter records the module path of every node: `['', 'layer1',
    'layer1.0', 'layer1.0.relu', 'relu_1']` (each scope the full path, then the call)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes" and len(prop.value) < 10_000:
            return [a or b for a, b in _QUOTED.findall(prop.value)]
    return []


def _module_path(node: Any, g: _Graph) -> str:
    """A readable layer name: the PyTorch module path the node came from.

    From the weights' names (`layer1.0.conv1.weight`), else the dynamo exporter's name scopes
    (the innermost module, or the call's name for a function called at the top level), else the
    TorchScript exporter's node name (`/layer1/layer1.0/relu/Relu` → `layer1.0.relu`).
    """
    prefix = _param_prefix(node, g)
    if prefix:
        return prefix
    scopes = _name_scopes(node)
    if len(scopes) >= 2:
        return scopes[-2] or scopes[-1]
    parts = [p for p in (node.name or "").split("/") if p]
    if node.name.startswith("/") and len(parts) >= 2:
        return parts[-2]
    return node.name or node.output[0]


def _sanitize(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", ".", text).strip(".-") or "layer"
    name = re.sub(r"\.{2,}", ".", name)
    return name[:128]


def _attrs(node: Any) -> dict[str, Any]:
    onnx = _onnx()
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


# -- conversion: by the layer types, but for plumbing ---------------------------------------


def _identity(g: _Graph, node: Any, a: dict[str, Any]) -> None:
    g.alias(node)


#: ONNX op → what converts its nodes: the layer type that maps it (`LayerType.onnx_ops`), and
#: Identity, which is no layer.
CONVERTERS: dict[str, Callable[[_Graph, Any, dict[str, Any]], None]] = {
    **{op: kind.from_onnx for op, kind in ONNX_OPS.items()},
    "Identity": _identity,
}

SUPPORTED = (
    ", ".join(
        sorted(
            (f"{op} {ONNX_OPS[op].onnx_ops[op]}" if op in ONNX_OPS else op).rstrip()
            for op in CONVERTERS
        )
    )
    + ", and constant subgraphs (Constant, Shape, Cast, Reshape, Concat, … of constants), "
    "which are folded"
)


# -- constant folding --------------------------------------------------------------------------

#: Largest tensor a folded node may make (a constant the exporter did not fold itself is a bias
#: or a shape, not a weight-sized array; this keeps a hostile graph from asking for gigabytes).
FOLD_MAX_ELEMENTS = 1 << 24


def _np_dtype(onnx_type: int) -> np.dtype:
    return np.dtype(_onnx().helper.tensor_dtype_to_np_dtype(onnx_type))


def _bounded(shape: Any) -> tuple[int, ...]:
    dims = tuple(int(d) for d in np.ravel(shape))
    if any(d < 0 for d in dims) or np.prod(dims, dtype=np.float64) > FOLD_MAX_ELEMENTS:
        raise ValueError(f"a folded constant of shape {list(dims)} is too large")
    return dims


def _axes(node: Any, a: dict[str, Any], v: list[Any], index: int) -> list[int] | None:
    if "axes" in a:
        return [int(x) for x in a["axes"]]
    if len(v) > index and v[index] is not None:
        return [int(x) for x in np.ravel(v[index])]
    return None


def _broadcast(op: Callable[..., np.ndarray], values: list[Any]) -> np.ndarray:
    """An elementwise op of constants, refused before computing when the broadcast is huge."""
    _bounded(np.broadcast_shapes(*(np.shape(x) for x in values)))
    return op(*values)


def _squeezed(node: Any, a: dict[str, Any], v: list[Any]) -> tuple[int, ...] | None:
    axes = _axes(node, a, v, 1)
    return None if axes is None else tuple(axes)


def _range(start: Any, limit: Any, delta: Any) -> np.ndarray:
    count = np.ceil((float(limit) - float(start)) / float(delta)) if float(delta) else np.inf
    _bounded([max(count, 0)])
    return np.arange(start, limit, delta, dtype=np.result_type(start, limit, delta))


def _reshape_const(x: np.ndarray, shape: np.ndarray, allowzero: int) -> np.ndarray:
    dims = [int(d) for d in np.ravel(shape)]
    if not allowzero:
        dims = [x.shape[i] if d == 0 and i < x.ndim else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def _slice(x: np.ndarray, node: Any, a: dict[str, Any], v: list[Any]) -> np.ndarray:
    if "starts" in a:  # opset < 10
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:
        starts, ends = np.ravel(v[1]), np.ravel(v[2])
        axes = np.ravel(v[3]) if len(v) > 3 and v[3] is not None else None
        steps = np.ravel(v[4]) if len(v) > 4 and v[4] is not None else None
    axes = list(range(len(starts))) if axes is None else [int(i) for i in axes]
    steps = [1] * len(starts) if steps is None else [int(i) for i in steps]
    index = [slice(None)] * x.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
        big = np.iinfo(np.int64).max // 2
        index[axis] = slice(max(min(int(start), big), -big), max(min(int(end), big), -big), step)
    return x[tuple(index)]


def _cast_like(g: _Graph, node: Any, a: dict[str, Any], v: list[Any]) -> np.ndarray:
    like = v[1] if v[1] is not None else np.empty(0, g.dtypes.get(node.input[1], np.float32))
    return v[0].astype(like.dtype)


def _shape_of(g: _Graph, node: Any, a: dict[str, Any], v: list[Any]) -> np.ndarray:
    dims = list(v[0].shape) if v[0] is not None else g.shapes.get(node.input[0])
    if dims is None:
        raise _fail(
            node_name(node),
            f"Shape {node_name(node)!r} reads the size of {node.input[0]!r}, which ONNX's shape "
            f"inference could not tell",
        )
    start, end = int(a.get("start", 0)), a.get("end")
    dims = dims[start : None if end is None else int(end)]
    if None in dims:  # the batch axis of a dynamic export: only a Reshape target may use it
        g.dynamic.add(node.output[0])
    return np.array([-1 if d is None else d for d in dims], np.int64)


_FOLDERS: dict[str, Callable[[_Graph, Any, dict[str, Any], list[Any]], np.ndarray]] = {
    "Identity": lambda g, n, a, v: v[0],
    "Cast": lambda g, n, a, v: v[0].astype(_np_dtype(int(a["to"]))),
    "CastLike": _cast_like,
    "Shape": _shape_of,
    "Size": lambda g, n, a, v: np.array(v[0].size, np.int64),
    "Reshape": lambda g, n, a, v: _reshape_const(v[0], v[1], int(a.get("allowzero", 0))),
    "Flatten": lambda g, n, a, v: v[0].reshape(
        int(np.prod(v[0].shape[: int(a.get("axis", 1))])), -1
    ),
    "Concat": lambda g, n, a, v: np.concatenate(v, axis=int(a["axis"])),
    "Gather": lambda g, n, a, v: np.take(v[0], v[1], axis=int(a.get("axis", 0))),
    "Unsqueeze": lambda g, n, a, v: np.expand_dims(v[0], tuple(_axes(n, a, v, 1) or ())),
    "Squeeze": lambda g, n, a, v: np.squeeze(v[0], _squeezed(n, a, v)),
    "Slice": lambda g, n, a, v: _slice(v[0], n, a, v),
    "Transpose": lambda g, n, a, v: np.transpose(v[0], a.get("perm")),
    "Expand": lambda g, n, a, v: np.broadcast_to(
        v[0], _bounded(np.broadcast_shapes(v[0].shape, _bounded(v[1])))
    ).copy(),
    "ConstantOfShape": lambda g, n, a, v: np.full(
        _bounded(v[0]),
        _array(a["value"]).ravel()[0] if "value" in a else np.float32(0),
    ),
    "Range": lambda g, n, a, v: _range(v[0], v[1], v[2]),
    "Add": lambda g, n, a, v: _broadcast(np.add, v),
    "Sub": lambda g, n, a, v: _broadcast(np.subtract, v),
    "Mul": lambda g, n, a, v: _broadcast(np.multiply, v),
    "Div": lambda g, n, a, v: _broadcast(
        np.floor_divide if v[0].dtype.kind in "iu" else np.divide, v
    ),
    "Neg": lambda g, n, a, v: np.negative(v[0]),
    "Sqrt": lambda g, n, a, v: np.sqrt(v[0]),
    "Reciprocal": lambda g, n, a, v: np.reciprocal(v[0]),
    "Equal": lambda g, n, a, v: _broadcast(np.equal, v),
    "Where": lambda g, n, a, v: _broadcast(np.where, v),
}

#: Ops folded even though an input is computed at run time: only its type or size is read.
_READS_ONLY_METADATA = {"Shape": 0, "Size": 0, "CastLike": 1}


def _constant(node: Any, a: dict[str, Any]) -> np.ndarray:
    if "value" in a:
        return _array(a["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):  # fmt: skip
        if key in a:
            return np.array(a[key], dtype)
    raise _fail(node_name(node), f"Constant {node_name(node)!r} holds no numeric value")


def _fold(g: _Graph, node: Any, a: dict[str, Any]) -> bool:
    """Evaluate a node whose inputs are all constants (leftovers of an export that did not fold
    them: shape arithmetic, casts, expanded biases); False when it reads run-time values."""
    if node.op_type == "Constant":
        g.consts[node.output[0]] = _constant(node, a)
        return True
    fold = _FOLDERS.get(node.op_type)
    if fold is None or len(node.output) != 1:
        return False
    metadata_only = _READS_ONLY_METADATA.get(node.op_type)
    values: list[Any] = []
    for i, tensor in enumerate(node.input):
        if not tensor:
            values.append(None)
        elif tensor in g.consts:
            values.append(g.consts[tensor])
        elif i == metadata_only and tensor not in g.failed:
            values.append(None)
        else:
            return False
    value = np.asarray(fold(g, node, a, values))
    if value.size > FOLD_MAX_ELEMENTS:
        raise ValueError(f"a folded constant of {value.size:,} values is too large")
    g.consts[node.output[0]] = value
    if any(t in g.dynamic for t in node.input):
        g.dynamic.add(node.output[0])
    return True


# -- tensors and their external data ----------------------------------------------------------


def _graph_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto a graph holds: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Any) -> Iterator[Any]:
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            sparse = [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
            for sp in [*sparse, *attr.sparse_tensors]:
                yield from (sp.values, sp.indices)
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for sub in attr.graphs:
                yield from _graph_tensors(sub)


def _model_tensors(model: Any) -> Iterator[Any]:
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _node_tensors(function.node)


def _uploaded(external: Mapping[str, bytes], location: str) -> bytes | None:
    """The uploaded file a tensor's `location` names: by that exact name, else by its last
    path component (clients upload `f.onnx.data`, never a path)."""
    if location in external:
        return external[location]
    base = posixpath.basename(location.replace("\\", "/"))
    return external.get(base) if base else None


def _inline_external_data(model: Any, external: Mapping[str, bytes]) -> None:
    """Copy every external tensor's bytes from the uploaded files into the model, in place.

    The `location` an ONNX file names is only ever a key into `external`: never a path opened on
    the server (onnx's own loader would resolve it against the working directory).
    """
    onnx = _onnx()
    missing: dict[str, list[str]] = {}
    problems: list[Problem] = []
    for tensor in _model_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        blob = _uploaded(external, location) if location else None
        if blob is None:
            missing.setdefault(location, []).append(tensor.name)
            continue
        try:
            offset = int(info.get("offset") or 0)
            length = int(info["length"]) if info.get("length") else len(blob) - offset
        except ValueError:
            problems.append(
                Problem(tensor.name, "onnx_data", f"tensor {tensor.name!r} names an offset or "
                        f"length in {location!r} that is not a number")
            )  # fmt: skip
            continue
        if offset < 0 or length < 0 or offset + length > len(blob):
            problems.append(
                Problem(
                    tensor.name,
                    "onnx_data",
                    f"tensor {tensor.name!r} is stored at bytes {offset:,} to {offset + length:,} "
                    f"of {location!r}, which holds {len(blob):,} bytes: is it the data file "
                    f"exported with this model?",
                )
            )
            continue
        tensor.raw_data = blob[offset : offset + length]
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    for location, names in missing.items():
        shown = ", ".join(repr(n) for n in names[:3]) + (" and more" if len(names) > 3 else "")
        if not location:
            message = f"tensor(s) {shown} are stored externally but name no data file"
        else:
            given = ", ".join(repr(k) for k in sorted(external)) or "none"
            message = (
                f"the model keeps tensor(s) {shown} in the external data file {location!r}, "
                f"which was not uploaded (uploaded: {given}): send it beside the model as part "
                f"onnx_data (curl -F onnx=@model.onnx -F onnx_data=@{posixpath.basename(location)}"
                f"), or zip the .onnx with its data file(s) and send the zip as part onnx"
            )
        problems.append(Problem(None, "onnx_data", message))
    if problems:
        raise SpecError(problems)


def external_locations(data: bytes) -> set[str]:
    """The external data file names an ONNX model's tensors refer to (none for a zip or junk)."""
    onnx = _onnx()
    try:
        model = onnx.load_from_string(data)
    except Exception:  # not a model: import_onnx says so
        return set()
    return {
        entry.value
        for tensor in _model_tensors(model)
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }


def parse_labels(text: str) -> list[str]:
    """Class names from a JSON list of strings, or from text with one label per line."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            labels = json.loads(stripped)
        except ValueError as err:
            raise ValueError(f"labels look like JSON but are not valid JSON: {err}") from None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ValueError("labels given as JSON must be a list of strings")
        return labels
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ValueError("labels are empty: give one label per line, or a JSON list")
    return lines


def complete_spec(
    spec: dict[str, Any], labels: list[str] | None = None, preprocess: Any = None
) -> dict[str, Any]:
    """An imported spec with the class names and image preprocessing ONNX does not carry
    (validated with the rest of the spec: a label per class, a mean per channel)."""
    if labels is not None:
        spec["labels"] = labels
    if preprocess is not None:
        spec["input"] = {**spec["input"], "preprocess": preprocess}
    return spec


ZIP_MAGIC = b"PK\x03\x04"


def unpack_upload(
    data: bytes, parts: Mapping[str, bytes] | None = None, max_bytes: int | None = None
) -> tuple[bytes, dict[str, bytes]]:
    """(model bytes, external data files by name) of an upload: the `.onnx` itself with its data
    files as separate parts, or one zip holding the `.onnx` and its data files.

    A zip's files are named relative to the folder of its `.onnx`, as the model refers to them;
    they are read into memory only (never extracted), up to `max_bytes` unpacked in all.
    """
    external = dict(parts or {})
    if not data.startswith(ZIP_MAGIC):
        return data, external
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = [
                i for i in zf.infolist()
                if not i.is_dir() and not i.filename.startswith("__MACOSX/")
            ]  # fmt: skip
            models = [i for i in infos if i.filename.lower().endswith(".onnx")]
            if len(models) != 1:
                found = ", ".join(i.filename for i in models) or "none"
                raise _fail(
                    None,
                    f"the zip in part onnx must hold exactly one .onnx file (found {found})",
                    "onnx",
                )
            total = sum(i.file_size for i in infos)
            if max_bytes is not None and total > max_bytes:
                raise _fail(
                    None,
                    f"the zip unpacks to {total:,} bytes; the limit is {max_bytes:,} bytes",
                    "onnx",
                )
            (main,) = models
            folder = posixpath.dirname(main.filename)
            for info in infos:
                if info is not main:
                    name = posixpath.relpath(info.filename, folder or ".")
                    external.setdefault(name, zf.read(info))
            return zf.read(main), external
    # NotImplementedError: an unsupported compression; RuntimeError: an encrypted entry
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, RuntimeError) as err:
        raise _fail(None, f"the zip in part onnx could not be read: {err}", "onnx") from None


def _array(tensor: Any) -> np.ndarray:
    """A tensor's values, from the model's own bytes only (external data was inlined first)."""
    onnx = _onnx()
    from onnx import numpy_helper

    if tensor.data_location == onnx.TensorProto.EXTERNAL:  # never reached: refused before
        raise _fail(tensor.name, f"tensor {tensor.name!r} has its data outside the model")
    return numpy_helper.to_array(tensor)


def _unsupported(node: Any) -> Problem:
    hint = _HINTS.get(node.op_type, "")
    return Problem(
        node_name(node),
        "op_type",
        f"ONNX node {node_name(node)!r} is a {_op(node)}, which convserve cannot run{hint} "
        f"(it runs {SUPPORTED})",
    )


#: A way out for ops people meet in CNN exports.
_HINTS = {
    "Resize": ": upsampling is not in convserve's vocabulary",
    "Upsample": ": upsampling is not in convserve's vocabulary",
    "HardSigmoid": ": hard-sigmoid / hard-swish (MobileNet v3) are not in convserve's vocabulary",
    "HardSwish": ": hard-sigmoid / hard-swish (MobileNet v3) are not in convserve's vocabulary",
    "Erf": ": GELU is not in convserve's vocabulary",
    "Gelu": ": GELU is not in convserve's vocabulary",
}


# -- the whole model -----------------------------------------------------------------------


def import_onnx(
    data: bytes, external: Mapping[str, bytes] | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(spec, weights) for an ONNX model's bytes; SpecError naming the node for what cannot run.

    `external` holds the model's external data files by the name the model refers to them
    (`f.onnx.data`, as PyTorch's exporter writes it beside `f.onnx`); nothing else is read.
    """
    onnx = _onnx()

    try:
        model = onnx.load_from_string(data)
    except Exception as err:  # protobuf raises DecodeError and friends
        raise _fail(None, f"the file is not an ONNX model ({type(err).__name__})") from None
    _inline_external_data(model, external or {})
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    newest = onnx.defs.onnx_opset_version()
    if opset is None or not MIN_OPSET <= opset <= newest:
        raise _fail(
            None, f"the model uses opset {opset}; convserve imports opsets {MIN_OPSET} to {newest}"
        )
    with contextlib.suppress(Exception):  # shapes are a help, not a requirement
        model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    consts = {t.name: _array(t) for t in graph.initializer}
    infos = [*graph.input, *graph.value_info, *graph.output]
    shapes = {
        vi.name: [
            d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim
        ]
        for vi in infos
    }
    dtypes = {}
    for vi in infos:
        with contextlib.suppress(Exception):  # an undefined or unknown element type
            dtypes[vi.name] = _np_dtype(vi.type.tensor_type.elem_type)
    g = _Graph(consts, shapes, opset, dtypes)

    inputs = [vi for vi in graph.input if vi.name not in consts]
    if len(inputs) != 1:
        raise _fail(None, f"the model has {len(inputs)} inputs; convserve models have one")
    (inp,) = inputs
    dims = shapes.get(inp.name) or []
    if len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
        raise _fail(
            None,
            f"input {inp.name!r} has shape {dims}; convserve needs [N, C, ...] with every "
            f"dimension but the batch fixed",
        )
    input_name = _sanitize(inp.name)
    g.producer[inp.name] = input_name
    g.names.add(input_name)

    problems: list[Problem] = []
    for node in graph.node:
        standard = node.domain in ("", "ai.onnx")
        convert = CONVERTERS.get(node.op_type) if standard else None
        try:
            a = _attrs(node)
            if standard and _fold(g, node, a):
                continue
            if convert is None:  # listed even after a refused node: every op that cannot run
                raise SpecError([_unsupported(node)])
            if any(t in g.failed for t in node.input):
                raise _FollowOn()
            convert(g, node, a)
        except OnnxRefusal as err:
            problems.append(Problem(node_name(node), "onnx", str(err)))
            g.failed.update(node.output)
        except _FollowOn:
            g.failed.update(node.output)
        except SpecError as err:
            problems.extend(err.problems)
            g.failed.update(node.output)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as err:
            problems.append(
                Problem(
                    node_name(node),
                    "onnx",
                    f"ONNX node {node_name(node)!r} ({node.op_type}) could not be read: {err}",
                )
            )
            g.failed.update(node.output)
    if problems:
        raise SpecError(problems)
    if len(graph.output) != 1:
        raise _fail(None, f"the model has {len(graph.output)} outputs; convserve models have one")
    if not g.layers:
        raise _fail(None, "the model has no layers convserve can run")
    out = g.producer.get(graph.output[0].name)
    spec: dict[str, Any] = {
        "description": f"imported from ONNX ({model.producer_name or 'unknown producer'}, "
        f"opset {opset})",
        "input": {"name": input_name, "shape": [int(d) for d in dims[1:]]},
        "layers": g.layers,
    }
    if out is not None and out != g.layers[-1]["name"]:
        spec["output"] = out
    weights = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in g.weights.items()}
    return spec, weights
