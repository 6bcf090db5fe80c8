"""The spec vocabulary, written from the catalogue itself: docs/spec.md is this module's output.

    .venv/bin/python -m service.architecture.reference > docs/spec.md

What a spec is (its fields, image preprocessing, the graph, weights, validation; the example is
models/lenet.json), then every layer type's fields (with their defaults), weights (names, shapes,
what the axes mean) and one example, validated and run through the layer table, so the reference
cannot drift from what the service accepts (tests/architecture/test_reference.py checks the file is
current, and that every field the OpenAPI schemas accept has its row).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

from marshmallow import fields, missing, validate

from ..catalogue import CATALOGUE
from ..catalogue.base import IntTuple, LayerSchema, LayerType
from .graph import Architecture
from .preprocessing import (
    COLORS,
    DEFAULT_INTERPOLATION,
    DEFAULT_MEAN,
    DEFAULT_SCALE,
    DEFAULT_STD,
    INTERPOLATIONS,
)

#: The order the reference lists families in, and a line about each.
FAMILIES = {
    "convolution": "Filters that slide over the input, each spanning every input channel of its "
    "group.",
    "pooling": "Windows reduced to one value each, channel by channel; no weights.",
    "dense": "Fully connected layers, and the layers that only reshape or pass values through.",
    "normalisation": "Per-channel normalisation with stored statistics.",
    "activation": "Functions applied value by value (softmax: over the channels or classes).",
    "merge": "Layers that combine the outputs of several layers (they take `inputs`).",
}

COMMON = {name for name in LayerSchema._declared_fields}


def _field_type(field: fields.Field) -> str:
    if isinstance(field, IntTuple):
        return field.describe()
    lower = next(
        (v.min for v in _validators(field) if isinstance(v, validate.Range) and v.min is not None),
        None,
    )
    names = {
        fields.Boolean: "bool",
        fields.Integer: "int",
        fields.Float: "number",
        fields.String: "string",
        fields.List: "list",
    }
    kind = next((n for cls, n in names.items() if isinstance(field, cls)), type(field).__name__)
    if lower is not None and kind in ("int", "number"):
        strict = any(
            isinstance(v, validate.Range) and not v.min_inclusive for v in _validators(field)
        )
        kind += f" {'>' if strict else '≥'} {lower:g}"
    return kind


def _validators(field: fields.Field) -> list[Any]:
    return list(field.validators or [])


def _default(field: fields.Field) -> str:
    if field.required:
        return "required"
    value = field.load_default
    if value is missing or value is None:
        return field.metadata.get("default_doc", "optional")
    return f"`{json.dumps(_plain(value))}`"


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value


def layer_fields(kind: LayerType) -> list[tuple[str, fields.Field]]:
    """A type's own fields (beyond name, type and inputs), in declaration order."""
    return [(n, f) for n, f in kind.schema._declared_fields.items() if n not in COMMON]


def _section(kind: LayerType) -> list[str]:
    spec = kind.example_spec()
    arch = Architecture.from_spec(spec)
    row = next(r for r in arch.table()["layers"] if r["name"] == "example")
    node = arch.by_name["example"]
    out = [f"### `{kind.type_name}`", ""]
    doc = (type(kind).__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    if doc and doc != (LayerType.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "):
        out += [doc, ""]
    own = layer_fields(kind)
    if own:
        out += ["| field | type | default |", "|---|---|---|"]
        out += [f"| `{n}` | {_field_type(f)} | {_default(f)} |" for n, f in own]
    else:
        out += ["No fields beyond `name`, `type` and `inputs`."]
    out.append("")
    if node.weights:
        out += ["| weight | shape in the example | axes |", "|---|---|---|"]
        for suffix, ws in node.weights.items():
            shape = "×".join(str(d) for d in ws.shape) or "scalar"
            note = ws.meaning or ""
            if not ws.required:
                note = (note + "; " if note else "") + "optional"
            if not ws.trainable:
                note = (note + "; " if note else "") + "not a parameter"
            out.append(f"| `<name>.{suffix}` | {shape} | {note} |")
    else:
        out += ["No weights."]
    inputs = " and ".join("×".join(map(str, s)) for s in row["input_shapes"])
    output = "×".join(map(str, row["output_shape"]))
    out += [
        "",
        f"Example, on {inputs} → {output}: *{row['explain']}*",
        "",
        "```json",
        json.dumps(spec["layers"][-1]),
        "```",
        "",
    ]
    return out


#: The example spec of the reference: the zoo's LeNet-5 (this is a tool run in a checkout).
EXAMPLE_PATH = Path(__file__).resolve().parents[2] / "models" / "lenet.json"


def example() -> dict[str, Any]:
    """models/lenet.json without its description."""
    spec = json.loads(EXAMPLE_PATH.read_text())
    spec.pop("description", None)
    return spec


#: The spec's own fields: (field, type, default, meaning).
SPEC_FIELDS = [
    (
        "input.name",
        "a layer name",
        '`"input"`',
        "the input's name: what `inputs` and `…/activations?layer=` may name, and the name "
        "of the `/v2` input tensor",
    ),
    (
        "input.shape",
        "list of 1-4 ints ≥ 1",
        "required",
        "`[C]`, `[C, L]`, `[C, H, W]` or `[C, D, H, W]`: the batch dimension is excluded",
    ),
    (
        "input.preprocess",
        "object",
        "none",
        "how an image becomes the input (below); only for `[1 or 3, H, W]` inputs",
    ),
    (
        "labels",
        "list of strings",
        "none",
        "one name per class of the output; without them predictions give the index as label",
    ),
    (
        "layers",
        "list of at least one layer",
        "required",
        'each `{"name", "type", ...}`: the types are below',
    ),
    (
        "output",
        "a layer name",
        "the last layer",
        "the layer whose values are the model's output; every other layer must lead to it",
    ),
    ("description", "string", "none", "free text, stored with the spec"),
    ("metadata", "object", "none", "free key/value data, stored with the spec"),
]


def _one_of(words: list[str]) -> str:
    """`a`, `b` or `c`."""
    quoted = [f"`{w}`" for w in words]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


#: `input.preprocess`'s fields, in the order they apply (vocabulary and defaults from
#: preprocessing.py).
PREPROCESS_FIELDS = [
    (
        "color",
        _one_of([f'"{mode}"' for mode in COLORS]),
        ", ".join(
            f"`{mode}` for {n}" + (" channel" if i == 0 else "")
            for i, (mode, n) in enumerate(COLORS.items())
        ),
        "the mode images convert to",
    ),
    (
        "resize",
        "`[H, W]`",
        "none: images must already have the input's size",
        "resize to exactly this size",
    ),
    (
        "resize_shorter",
        "int ≥ 1",
        "none",
        "resize so the shorter side has this length, keeping the aspect ratio (not with `resize`)",
    ),
    (
        "center_crop",
        "`[H, W]`",
        "none",
        "the centre window of this size, zero-padded where the image is smaller",
    ),
    (
        "interpolation",
        _one_of(list(INTERPOLATIONS)),
        f"`{DEFAULT_INTERPOLATION}` (antialiased)",
        "Pillow's resampling filter for the resize",
    ),
    (
        "scale",
        "number",
        f"`{Fraction(DEFAULT_SCALE).limit_denominator(1 << 16)}`",
        "multiplies the 0-255 values",
    ),
    (
        "mean`, `std",
        "lists of numbers (`std` > 0)",
        f"`[{DEFAULT_MEAN:g}]`, `[{DEFAULT_STD:g}]`",
        "per channel (one value for all, or one per channel), applied after `scale`",
    ),
]


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{f}` | {t} | {d} | {m} |" for f, t, d, m in rows]
    return "\n".join(lines)


#: What a spec is, before the layer types: its fields, images, the graph, weights, validation.
FORMAT = """\
A model version is an architecture spec (JSON, PyTorch's vocabulary) plus weights (`.npz`,
PyTorch's layouts). This page is the reference for both: the spec's fields, then every layer
type with its fields, defaults, weights and an example. How to send them is in
[api.md](api.md); `/openapi.json` has the same vocabulary as one schema per layer type.

## A spec

LeNet-5 for 32×32 grey digits (`models/lenet.json`):

```json
{example}
```

{spec_fields}

Nothing else is accepted: an unknown field anywhere is a problem named in the `422`.

### Images: `input.preprocess`

Applied in this order, as torchvision's `Resize → CenterCrop → ToTensor → Normalize` would:
decode, apply the EXIF orientation, convert to `color`, resize, crop, multiply by `scale`,
subtract `mean` and divide by `std` per channel, channels first. Every field is optional.

{preprocess_fields}

The version document (`GET /v1/models/{{name}}/versions/{{ref}}`) carries the whole pipeline with
every default filled in, as `preprocess`, so a client can reproduce it exactly.

### Layers and the graph

- Every layer has a `name`, unique, also unlike the input's (letters, digits, `_`, `.`, `-`, up to
  128, not starting with `.` or `-`): dots are welcome, as in PyTorch's module paths
  (`layer1.0.conv1`).
- A layer reads the layer before it (the input, for the first), or the layers it names in
  `"inputs": [...]`: the layers form a graph without cycles, so residual `add`s and inception
  `concat`s (along channels) are written as they are drawn.
- The model's output is the last layer unless `output` names another; a layer whose output
  reaches neither the output nor a layer that does is a problem.
- Shapes exclude the batch dimension; a layer's fields and defaults are PyTorch's.

### Weights

A `.npz` file (`numpy.savez`) of arrays named `<layer>.<weight>` (`conv1.weight`, `conv1.bias`;
batch norm's `running_mean` and `running_var` too) in PyTorch's layouts, so a `state_dict` saved
with `numpy.savez(path, **{{k: v.numpy() for k, v in sd.items()}})` loads as it is when the
layer names are the module paths. Each layer type below lists its arrays and their shapes.
The file is stored byte for byte; its arrays are read without unpickling and computed in
float32. Batch norm's `num_batches_tracked` is ignored; a missing array, an array no layer owns,
a wrong shape or a value that is not finite is a problem.

### Validation

A spec is checked completely before anything is stored: every layer's declared input width must
equal what actually reaches it (a conv's `in_channels` the channels of its input, a `linear`'s
`in_features` the flattened size), and every weight array the shape its layer implies. A spec
that fails is answered `422` with every problem found, each naming its layer and field and saying
what was expected and why:

```json
{{"type": "urn:convserve:problem:invalid-spec", "title": "Invalid model specification",
 "status": 422, "detail": "conv2 expects in_channels=1 but pool1 ...",
 "errors": [{{"layer": "conv2", "field": "in_channels", "message": "conv2 expects in_channels=1
   but pool1 produces 3 feature maps (3×14×14): every conv2 filter must span all 3 input
   channels, so its weight is 6×3×5×5"}}]}}
```

Problems with the weights alone are titled *Invalid weights*. The server also bounds what a spec
may ask for: `CONVSERVE_MAX_LAYERS` layers, `CONVSERVE_MAX_TENSOR_ELEMENTS` values in any one
layer's output and `CONVSERVE_MAX_MACS` multiply-adds per image (the README's Configuration).

### The layer table's conventions

`macs` are multiply-accumulates per image: a conv's are `output elements × in_channels/groups ×
kernel volume`, a linear's `in_features × out_features`; bias, activations, pooling and batch norm
count 0, as torchvision's published figures. `params` counts trained parameters (batch norm's
running statistics are stored but are not parameters). `weight_bytes` is the float32 size of
every stored array; `activation_bytes` the float32 size of every layer's output for one image.
The receptive field is the input window, per spatial axis, that one output value depends on
(`size`), and how far apart neighbouring outputs' windows are (`stride`).

## Layer types

{index}
"""


def _example_json() -> str:
    """The example as JSON, one layer a line."""
    d = json.dumps
    spec = example()
    inp = spec["input"]
    layers = ",\n".join(f"    {d(layer)}" for layer in spec["layers"])
    return "\n".join(
        [
            "{",
            '  "input": {',
            f'    "name": {d(inp["name"])},',
            f'    "shape": {d(inp["shape"])},',
            f'    "preprocess": {d(inp["preprocess"])}',
            "  },",
            f'  "labels": {d(spec["labels"])},',
            '  "layers": [',
            layers,
            "  ]",
            "}",
        ]
    )


def _families() -> list[tuple[str, list[LayerType]]]:
    """The layer types by family, in the reference's order."""
    by_family: dict[str, list[LayerType]] = {}
    for kind in CATALOGUE.values():
        by_family.setdefault(kind.family, []).append(kind)
    order = [*FAMILIES, *sorted(set(by_family) - set(FAMILIES))]
    return [(f, sorted(by_family[f], key=lambda k: k.type_name)) for f in order if f in by_family]


def _index() -> str:
    """One line per family, naming its types."""
    return "\n".join(
        f"- {family.capitalize()}: " + ", ".join(f"`{k.type_name}`" for k in kinds)
        for family, kinds in _families()
    )


def markdown() -> str:
    """docs/spec.md."""
    lines = [
        "<!-- Written by `python -m service.architecture.reference > docs/spec.md`; "
        "do not edit. -->",
        "",
        "# The spec vocabulary",
        "",
        FORMAT.format(
            example=_example_json(),
            spec_fields=_table(SPEC_FIELDS),
            preprocess_fields=_table(PREPROCESS_FIELDS),
            index=_index(),
        ),
    ]
    for family, kinds in _families():
        lines += [f"## {family.capitalize()}", "", FAMILIES.get(family, ""), ""]
        for kind in kinds:
            lines += _section(kind)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
