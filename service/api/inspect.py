"""POST /v1/inspect: the layer table of a spec in the body; nothing is stored."""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from service.architecture import Architecture
from service.errors import Malformed, UnsupportedMedia

from .parsing import ApiBlueprint
from .schemas import LayerTableSchema
from .security import requires

blp = ApiBlueprint("inspect", __name__, url_prefix="/v1", description="Introspect unsaved specs.")


@blp.route("/inspect", methods=["POST"])
@requires("read")  # computes a table, stores nothing: no more than reading
@blp.doc(
    requestBody={
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Spec"}}},
    }
)
@blp.response(200, LayerTableSchema)
def inspect_spec() -> dict[str, Any]:
    """Validate a spec (JSON body) and return its layer table; 422 with every problem found."""
    if not request.is_json:
        raise UnsupportedMedia(
            f"send the spec as application/json, not {request.mimetype or 'no type'}"
        )
    spec = request.get_json(silent=True)
    if spec is None:
        raise Malformed("the body is not valid JSON")
    limits = current_app.extensions["convserve"].settings.limits
    return Architecture.from_spec(spec, limits).table()
