"""Per-model serving configuration: GET/PUT /v1/models/{name}/config (dynamic batching)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app
from marshmallow import fields

from service.serving.dataplane import DataPlane

from .parsing import ApiBlueprint
from .security import actor, requires

blp = ApiBlueprint(
    "config",
    __name__,
    url_prefix="/v1/models",
    description="How a model's requests are batched (Triton's dynamic batching).",
)


class DynamicBatchingSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    max_queue_delay_microseconds = fields.Integer(
        strict=True,
        metadata={"description": "how long a batch may wait for more requests (0: never)"},
    )
    preferred_batch_size = fields.List(
        fields.Integer(strict=True),
        metadata={"description": "batch sizes to form when enough requests wait"},
    )
    max_queue_size = fields.Integer(
        strict=True,
        metadata={
            "description": "inputs that may wait; beyond it 503 with Retry-After (0: no bound)"
        },
    )
    default_timeout_microseconds = fields.Integer(
        strict=True,
        metadata={"description": "a request waiting longer fails with 503 (0: no limit)"},
    )


class ModelConfigSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    max_batch_size = fields.Integer(
        strict=True, metadata={"description": "inputs one engine call may batch together"}
    )
    dynamic_batching = fields.Nested(DynamicBatchingSchema)


class ModelConfigResponse(ModelConfigSchema):
    model = fields.String(required=True)


def data_plane() -> DataPlane:
    return current_app.extensions["convserve"].serving


@blp.route("/<name>/config", methods=["GET"])
@blp.response(200, ModelConfigResponse)
def get_config(name: str) -> dict[str, Any]:
    """The model's batching config: what was PUT, else the server's defaults."""
    dp = data_plane()
    dp.registry.resolve(name, None)  # 404 for an unknown model
    return {"model": name, **dp.config(name).to_dict()}


@blp.route("/<name>/config", methods=["PUT"])
@requires("write")
@blp.arguments(ModelConfigSchema)
@blp.response(200, ModelConfigResponse)
def put_config(body: dict[str, Any], name: str) -> dict[str, Any]:
    """Replace the model's batching config (fields not sent take the server's defaults). Every
    worker applies it within a second."""
    config = data_plane().set_config(name, body, actor())
    return {"model": name, **config.to_dict()}
