"""Request and response schemas: the HTTP contract, and the OpenAPI document's components."""

from __future__ import annotations

import json
from typing import Any

import marshmallow as ma
from flask_smorest.fields import Upload
from marshmallow import fields, validate
from werkzeug.datastructures import FileStorage


class SpecPart(fields.Field):
    """The `spec` part of a registration: a JSON file (curl -F spec=@x.json) or JSON text."""

    def __init__(self, **kwargs: Any):
        super().__init__(metadata={"type": "string", "format": "binary"}, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        raw = value.read() if isinstance(value, FileStorage) else value
        try:
            return json.loads(raw)
        except (ValueError, TypeError) as err:
            raise ma.ValidationError(f"not valid JSON: {err}") from None


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
    description = fields.String(load_default="", validate=validate.Length(max=10_000))

    @ma.validates_schema
    def _one_form(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "onnx_data" in data and "onnx" not in data:
            raise ma.ValidationError("onnx_data parts come with an onnx part", "onnx_data")
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


class AliasBody(ma.Schema):
    version = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))


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
                    "properties": {"image": {"type": "array", "items": binary}},
                    "required": ["image"],
                }
            },
            "image/*": {"schema": binary},
            "application/json": {"schema": InstancesSchema},
        },
    }
