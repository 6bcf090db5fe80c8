"""The spec's layers in /openapi.json: one schema per layer type, from the catalogue, and the
spec's `layers` as a `oneOf` of them discriminated by `type` (what docs/spec.md says in words)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Api
from marshmallow import fields

from service.architecture import Architecture, SpecSchema
from service.catalogue import CATALOGUE
from service.catalogue.base import IntTuple, LayerType


def _int_tuple(self: Any, field: fields.Field, **kwargs: Any) -> dict[str, Any]:
    """apispec attribute function: what an IntTuple or Padding field takes, as JSON Schema."""
    return field.json_schema() if isinstance(field, IntTuple) else {}


def component_name(kind: LayerType) -> str:
    return f"Layer_{kind.type_name}"


def layer_schema(api: Api, kind: LayerType) -> dict[str, Any]:
    schema = api.ma_plugin.converter.schema2jsonschema(kind.schema)
    schema["properties"]["type"] = {"type": "string", "enum": [kind.type_name]}
    example = kind.example_spec()
    row = next(r for r in Architecture.from_spec(example).table()["layers"]
               if r["name"] == "example")  # fmt: skip
    schema["description"] = (
        f"A {kind.type_name} layer ({kind.family}). Example, on "
        f"{' and '.join('×'.join(map(str, s)) for s in row['input_shapes'])}: {row['explain']}"
    )
    schema["example"] = example["layers"][-1]
    return schema


def register_spec_schemas(api: Api) -> None:
    api.ma_plugin.converter.add_attribute_function(_int_tuple)
    refs = {}
    for type_name in sorted(CATALOGUE):
        kind = CATALOGUE[type_name]
        api.spec.components.schema(component_name(kind), component=layer_schema(api, kind))
        refs[type_name] = f"#/components/schemas/{component_name(kind)}"
    spec = api.ma_plugin.converter.schema2jsonschema(SpecSchema)
    spec["properties"]["layers"]["items"] = {
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "type", "mapping": refs},
    }
    spec["description"] = (
        "An architecture spec: the input, the layers (one schema per layer type, chosen by "
        "`type`; docs/spec.md in the repository lists them with examples) and the labels."
    )
    api.spec.components.schema("Spec", component=spec)
