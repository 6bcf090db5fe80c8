"""The spec's top level as marshmallow schemas: `input` (with `preprocess`), `labels`, `layers`
(each layer is loaded by its type's own schema, in the builder), `output`, `description`,
`metadata`. The preprocessing vocabulary comes from `preprocessing`.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from ..catalogue.base import NAME_PATTERN
from .preprocessing import COLORS, INTERPOLATIONS

#: marshmallow's message for a required field that is absent
MISSING = "Missing data for required field."


def _ints(n: int) -> fields.List:
    return fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1)),
        validate=validate.Length(equal=n),
    )


class PreprocessSchema(Schema):
    class Meta:
        unknown = RAISE

    color = fields.String(validate=validate.OneOf(list(COLORS)))
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


def flatten_messages(messages: Any, prefix: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested {field: [msg]} into (dotted.field, msg) pairs."""
    out: list[tuple[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten_messages(value, name))
    elif isinstance(messages, list | tuple):
        for value in messages:
            out.extend(flatten_messages(value, prefix))
    else:
        out.append((prefix, str(messages)))
    return out
