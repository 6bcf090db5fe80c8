"""Request and response schemas: the HTTP contract, and the OpenAPI document's components."""

from __future__ import annotations

import json
from typing import Any

import marshmallow as ma
from flask_smorest.fields import Upload
from marshmallow import fields, validate
from werkzeug.datastructures import FileStorage

from service.errors import Malformed
from service.onnx_import import parse_labels
from service.registry.history import ACTIONS
from service.registry.store import MAX_VERSION

from . import bodies


class SpecPart(fields.Field):
    """The `spec` part of a registration: a JSON file (curl -F spec=@x.json) or JSON text."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("metadata", {"type": "string", "format": "binary"})
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        raw = value.read() if isinstance(value, FileStorage) else value
        if not isinstance(raw, str | bytes):
            raise ma.ValidationError("not valid JSON: send the spec as a file or as text")
        try:
            bodies.check_depth(raw.encode() if isinstance(raw, str) else raw, "the spec")
            return json.loads(raw)
        except Malformed as err:
            raise ma.ValidationError(err.detail) from None
        except (ValueError, RecursionError) as err:
            raise ma.ValidationError(f"not valid JSON: {err}") from None


class LabelsPart(fields.Field):
    """The `labels` part: a JSON list of strings, or text with one label per line."""

    def __init__(self, metadata: dict[str, Any] | None = None, **kwargs: Any):
        binary = {"type": "string", "format": "binary"}
        super().__init__(metadata={**binary, **(metadata or {})}, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        raw = value.read() if isinstance(value, FileStorage) else value
        try:
            return parse_labels(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
        except UnicodeDecodeError:
            raise ma.ValidationError("labels must be UTF-8 text") from None
        except ValueError as err:
            raise ma.ValidationError(str(err)) from None


class RegisterForm(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    spec = SpecPart()  # the architecture spec (JSON), with `weights`
    weights = Upload(metadata={"description": ".npz of the arrays (numpy.savez); with `spec`"})
    onnx = Upload(
        metadata={
            "description": "an ONNX model instead of `spec` and `weights`: the .onnx file, or one "
            ".zip holding it with its external data file(s)"
        }
    )
    onnx_data = fields.List(
        Upload(),
        metadata={
            "description": "with `onnx`: the model's external data file(s) (`f.onnx.data` as "
            "PyTorch's exporter writes it), each named as the model refers to it; the server "
            "never reads external data from anywhere else"
        },
    )
    labels = LabelsPart(
        metadata={
            "description": "with `onnx`: the class names, a JSON list or one label per line "
            "(a spec carries its own `labels`)"
        }
    )
    preprocess = SpecPart(
        metadata={
            "type": "string",
            "description": "with `onnx`: the image preprocessing as JSON, the spec's "
            "`input.preprocess` (color, resize, scale, mean, std, …)",
        }
    )
    description = fields.String(load_default="", validate=validate.Length(max=10_000))
    tags = SpecPart(
        metadata={
            "type": "string",
            "description": 'optional JSON object of tags for the version: {"key": "value"}',
        }
    )

    @ma.validates_schema
    def _tags_are_strings(self, data: dict[str, Any], **kwargs: Any) -> None:
        tags = data.get("tags")
        if tags is not None and not (
            isinstance(tags, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
        ):
            raise ma.ValidationError('a JSON object of strings, such as {"stage": "qa"}', "tags")

    @ma.validates_schema
    def _one_form(self, data: dict[str, Any], **kwargs: Any) -> None:
        for part in ("onnx_data", "labels", "preprocess"):
            if part in data and "onnx" not in data:
                where = {"labels": "`labels`", "preprocess": "`input.preprocess`"}.get(part)
                also = f"; a spec carries its own {where}" if where else ""
                raise ma.ValidationError(f"{part} parts come with an onnx part{also}", part)
        if "onnx" in data:
            extra = [k for k in ("spec", "weights") if k in data]
            if extra:
                raise ma.ValidationError(
                    f"send either an onnx file or spec and weights, not both ({', '.join(extra)})",
                    "onnx",
                )
            return
        missing = [k for k in ("spec", "weights") if k not in data]
        if missing:
            raise ma.ValidationError(
                "Missing data for required field (send spec and weights, or one onnx file).",
                missing[0],
            )


class PageArgs(ma.Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String()


class ModelListArgs(PageArgs):
    tag = fields.List(
        fields.String(),
        metadata={"description": "key:value or key; repeat for more (all must match)"},
    )


class HistoryArgs(PageArgs):
    action = fields.String(metadata={"description": "only events of this action"})
    alias = fields.String(
        metadata={"description": "only events about this alias: where it pointed, and when"}
    )


class ForceArgs(ma.Schema):
    force = fields.Boolean(
        load_default=False,
        metadata={"description": "move the alias even if the input shape or classes differ"},
    )


class DescriptionBody(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    description = fields.String(required=True, validate=validate.Length(max=10_000))


class TagBody(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    value = fields.String(required=True, validate=validate.Length(max=256))


class TagsSchema(ma.Schema):
    tags = fields.Dict(keys=fields.String(), values=fields.String())


class DiffArgs(ma.Schema):
    from_ = fields.String(
        required=True, data_key="from", metadata={"description": "a version, alias or latest"}
    )
    to = fields.String(required=True, metadata={"description": "a version, alias or latest"})


class AliasBody(ma.Schema):
    version = fields.Integer(
        strict=True, required=True, validate=validate.Range(min=1, max=MAX_VERSION)
    )


class TotalsSchema(ma.Schema):
    params = fields.Integer()
    macs = fields.Integer(metadata={"description": "multiply-accumulates per image"})
    weight_bytes = fields.Integer()
    activation_bytes = fields.Integer(metadata={"description": "float32, per image"})


class VersionSummarySchema(ma.Schema):
    version = fields.Integer()
    description = fields.String()
    created_at = fields.String(metadata={"format": "date-time"})
    spec_sha256 = fields.String()
    weights_sha256 = fields.String()
    totals = fields.Nested(TotalsSchema)
    aliases = fields.List(fields.String())
    tags = fields.Dict(keys=fields.String(), values=fields.String())


class VersionSchema(VersionSummarySchema):
    model = fields.String()
    spec = fields.Dict()
    labels = fields.List(fields.String(), allow_none=True)
    input = fields.Dict(metadata={"description": "input name, shape and preprocessing"})
    preprocess = fields.Dict(
        allow_none=True,
        metadata={
            "description": "the full image pipeline with every default filled in (color, "
            "resize, center_crop, interpolation, scale, per-channel mean and std, size, "
            "layout), so a client can reproduce it; null when inputs are not images"
        },
    )


class ModelSummarySchema(ma.Schema):
    name = fields.String()
    description = fields.String()
    created_at = fields.String(metadata={"format": "date-time"})
    version_count = fields.Integer()
    latest_version = fields.Integer(allow_none=True)
    aliases = fields.Dict(keys=fields.String(), values=fields.Integer())
    tagged_versions = fields.List(
        fields.Integer(),
        metadata={"description": "with ?tag: the versions that carry every tag asked for"},
    )


class ModelSchema(ModelSummarySchema):
    versions = fields.List(fields.Nested(VersionSummarySchema))


class ModelPageSchema(ma.Schema):
    models = fields.List(fields.Nested(ModelSummarySchema))
    next_cursor = fields.String(allow_none=True)


class VersionPageSchema(ma.Schema):
    model = fields.String()
    versions = fields.List(fields.Nested(VersionSummarySchema))
    next_cursor = fields.String(allow_none=True)


class AliasSchema(ma.Schema):
    model = fields.String()
    alias = fields.String()
    version = fields.Integer()
    previous_version = fields.Integer(
        allow_none=True, metadata={"description": "where the alias pointed before (a rollback)"}
    )


class EventSchema(ma.Schema):
    at = fields.String(metadata={"format": "date-time"})
    actor = fields.String(metadata={"description": "the token's name, or anonymous"})
    action = fields.String(metadata={"enum": list(ACTIONS)})
    version = fields.Integer(allow_none=True)
    alias = fields.String(allow_none=True)
    previous_version = fields.Integer(allow_none=True)
    detail = fields.Dict(allow_none=True)


class HistoryPageSchema(ma.Schema):
    model = fields.String()
    events = fields.List(fields.Nested(EventSchema), metadata={"description": "newest first"})
    next_cursor = fields.String(allow_none=True)


class ReceptiveFieldSchema(ma.Schema):
    size = fields.List(fields.Integer())
    stride = fields.List(fields.Integer())


class LayerRowSchema(ma.Schema):
    name = fields.String()
    type = fields.String()
    inputs = fields.List(fields.String())
    input_shapes = fields.List(fields.List(fields.Integer()))
    output_shape = fields.List(fields.Integer())
    weight_shapes = fields.Dict(keys=fields.String(), values=fields.List(fields.Integer()))
    params = fields.Integer()
    macs = fields.Integer()
    receptive_field = fields.Nested(ReceptiveFieldSchema)
    explain = fields.String()


class LayerTableSchema(ma.Schema):
    input_shape = fields.List(fields.Integer())
    output = fields.String()
    layers = fields.List(fields.Nested(LayerRowSchema))
    totals = fields.Nested(TotalsSchema)


# "from" and "fields" are not attribute names a class body can use: built from dicts.
LayerDiffSchema = ma.Schema.from_dict(
    {
        "name": fields.String(),
        "change": fields.String(metadata={"enum": ["added", "removed", "changed", "same"]}),
        "fields": fields.List(
            fields.String(),
            metadata={
                "description": "what changed: spec fields, weights, input_shapes, output_shape"
            },
        ),
        "from": fields.Nested(LayerRowSchema, allow_none=True),
        "to": fields.Nested(LayerRowSchema, allow_none=True),
        "weight_change": fields.Float(
            allow_none=True,
            metadata={
                "description": "‖to − from‖ / ‖from‖ over the layer's arrays, where shapes match"
            },
        ),
    },
    name="LayerDiff",
)
DiffTotalsSchema = ma.Schema.from_dict(
    {"from": fields.Nested(TotalsSchema), "to": fields.Nested(TotalsSchema)}, name="DiffTotals"
)


class DiffSchema(ma.Schema):
    model = fields.String()
    versions = fields.Dict(keys=fields.String(), values=fields.Integer())
    layers = fields.List(fields.Nested(LayerDiffSchema))
    totals = fields.Nested(DiffTotalsSchema)


class StatusSchema(ma.Schema):
    status = fields.String()


# -- inference ---------------------------------------------------------------------------


class PredictArgs(ma.Schema):
    top_k = fields.Integer(
        load_default=5,
        validate=validate.Range(min=1),
        metadata={"description": "classes per prediction, best first (clamped to the classes)"},
    )


class ActivationArgs(ma.Schema):
    layer = fields.String(
        required=True,
        metadata={"description": "a layer name, or the input's name for the preprocessed input"},
    )


class ClassScoreSchema(ma.Schema):
    index = fields.Integer()
    label = fields.String()
    probability = fields.Float()


class PredictionSchema(ma.Schema):
    top = fields.List(fields.Nested(ClassScoreSchema))


class PredictResponseSchema(ma.Schema):
    model = fields.String()
    version = fields.Integer()
    predictions = fields.List(
        fields.Nested(PredictionSchema),
        metadata={"description": "one per image or instance, in request order"},
    )


class ActivationsSchema(ma.Schema):
    model = fields.String()
    version = fields.Integer()
    layer = fields.String()
    shape = fields.List(fields.Integer(), metadata={"description": "batch axis excluded"})
    data = fields.Raw(metadata={"description": "float32 values as nested lists of `shape`"})


class InstancesSchema(ma.Schema):
    instances = fields.List(
        fields.Raw(),
        required=True,
        metadata={"description": "arrays in input.shape ([H, W] also for one-channel inputs)"},
    )


def bodies_doc(what: str) -> dict[str, Any]:
    """The request bodies predict and activations accept, for the OpenAPI document."""
    binary = {"type": "string", "format": "binary"}
    return {
        "required": True,
        "description": what,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "array", "items": binary, "minItems": 1}},
                    "required": ["image"],
                }
            },
            "image/*": {"schema": binary},
            "application/json": {"schema": InstancesSchema},
        },
    }
