"""The spec vocabulary, written from the catalogue itself: docs/spec.md is this module's output.

    .venv/bin/python -m service.architecture.reference > docs/spec.md

Every layer type's fields (with their defaults), weights (names, shapes, what the axes mean) and
one example, validated and run through the layer table, so the reference cannot drift from what
the service accepts (tests/test_spec_reference.py checks the file is current).
"""

from __future__ import annotations

import json
from typing import Any

from marshmallow import fields, missing, validate

from ..catalogue import CATALOGUE
from ..catalogue.base import IntTuple, LayerSchema, LayerType
from .graph import Architecture

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


def markdown() -> str:
    """docs/spec.md."""
    lines = [
        "<!-- Written by `python -m service.architecture.reference > docs/spec.md`; "
        "do not edit. -->",
        "",
        "# The spec vocabulary",
        "",
        'A spec is `{"input": {...}, "layers": [...], "labels": [...], "output": ...}`; '
        "see the README for the whole format. Every layer has `name` (unique; letters, digits, "
        "`_`, `.`, `-`, up to 128) and `type`, and may name the layers it reads in `inputs` "
        "(default: the layer before it, or the input for the first). Fields and defaults are "
        "PyTorch's. Weights are `.npz` arrays named `<name>.<weight>`, float32, in PyTorch's "
        "layout, so a `state_dict` saved with `numpy.savez` loads as it is. Shapes exclude the "
        "batch dimension.",
        "",
    ]
    by_family: dict[str, list[LayerType]] = {}
    for kind in CATALOGUE.values():
        by_family.setdefault(kind.family, []).append(kind)
    for family in [*FAMILIES, *sorted(set(by_family) - set(FAMILIES))]:
        kinds = by_family.get(family)
        if not kinds:
            continue
        lines += [f"## {family.capitalize()}", "", FAMILIES.get(family, ""), ""]
        for kind in sorted(kinds, key=lambda k: k.type_name):
            lines += _section(kind)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
