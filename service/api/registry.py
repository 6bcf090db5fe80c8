"""/v1/models: register versions, read them, alias and delete them. HTTP in, registry call, out."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Response, current_app

from service import metrics
from service.architecture import Architecture
from service.errors import Malformed
from service.onnx_import import import_onnx, unpack_upload
from service.registry.store import Registry
from service.weights import dump_npz

from .parsing import ApiBlueprint
from .problems import status_of
from .schemas import (
    AliasBody,
    AliasSchema,
    LayerTableSchema,
    ModelPageSchema,
    ModelSchema,
    PageArgs,
    RegisterForm,
    VersionPageSchema,
    VersionSchema,
)
from .security import require_write

blp = ApiBlueprint(
    "registry",
    __name__,
    url_prefix="/v1/models",
    description="Models, their immutable numbered versions, aliases and weights.",
)


def registry() -> Registry:
    return current_app.extensions["convserve"].registry


def counted(operation: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Count a registry write by outcome: success, rejected (4xx) or failed (5xx)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                result = view(*args, **kwargs)
            except BaseException as err:
                outcome = "rejected" if status_of(err) < 500 else "failed"
                metrics.REGISTRY_OPERATIONS.labels(operation, outcome).inc()
                raise
            metrics.REGISTRY_OPERATIONS.labels(operation, "success").inc()
            return result

        return wrapper

    return decorate


@blp.route("", methods=["GET"])
@blp.arguments(PageArgs, location="query")
@blp.response(200, ModelPageSchema)
def list_models(args: dict[str, Any]) -> dict[str, Any]:
    """List models, by name (paginated: pass `next_cursor` back as `cursor`)."""
    page = registry().list_models(args["limit"], args.get("cursor"))
    return {"models": page.items, "next_cursor": page.next_cursor}


@blp.route("/<name>", methods=["GET"])
@blp.response(200, ModelSchema)
def get_model(name: str) -> dict[str, Any]:
    """A model: its description, versions and aliases."""
    return registry().model(name)


@blp.route("/<name>", methods=["DELETE"])
@counted("delete_model")
@require_write
@blp.response(204)
def delete_model(name: str) -> None:
    """Delete a model with all its versions and aliases."""
    registry().delete_model(name)


@blp.route("/<name>/versions", methods=["GET"])
@blp.arguments(PageArgs, location="query")
@blp.response(200, VersionPageSchema)
def list_versions(args: dict[str, Any], name: str) -> dict[str, Any]:
    """A model's versions, oldest first (paginated)."""
    page = registry().list_versions(name, args["limit"], args.get("cursor"))
    return {"model": name, "versions": page.items, "next_cursor": page.next_cursor}


@blp.route("/<name>/versions", methods=["POST"])
@counted("register")
@require_write
@blp.arguments(RegisterForm, location="form_and_files")
@blp.response(201, VersionSchema)
def register_version(form: dict[str, Any], name: str) -> Any:
    """Register a new version: multipart `spec` (JSON) and `weights` (.npz), or an `onnx` model.

    An ONNX model comes as the .onnx file in part `onnx` with its external data file(s) in parts
    `onnx_data`, or as one .zip of them all in part `onnx`. The model is created on first use.
    The spec and the weights are validated first (422 with every problem, each naming its
    layer); an ONNX graph is converted first, and a node convserve cannot run is a 422 naming it.
    The version number is assigned by the server.
    """
    if "onnx" in form:
        spec, arrays = import_onnx(*onnx_upload(form))
        spec_json, weights = spec, dump_npz(arrays)
    else:
        spec_json, weights = form["spec"], form["weights"].read()
    doc = registry().register(name, spec_json, weights, form["description"])
    return doc, 201, {"Location": f"/v1/models/{name}/versions/{doc['version']}"}


def onnx_upload(form: dict[str, Any]) -> tuple[bytes, dict[str, bytes]]:
    """The model and its external data files, by name, from parts onnx and onnx_data."""
    parts: dict[str, bytes] = {}
    for upload in form.get("onnx_data", []):
        name = upload.filename or ""
        if not name:
            raise Malformed(
                "an onnx_data part has no filename: send it as a file, named as the model refers "
                "to it (curl -F onnx_data=@model.onnx.data)"
            )
        if name in parts:
            raise Malformed(f"two onnx_data parts are named {name!r}")
        parts[name] = upload.read()
    limit = current_app.extensions["convserve"].settings.max_upload_bytes
    return unpack_upload(form["onnx"].read(), parts, limit)


@blp.route("/<name>/versions/<ref>", methods=["GET"])
@blp.response(200, VersionSchema)
def get_version(name: str, ref: str) -> dict[str, Any]:
    """One version (`ref` is a number, an alias or `latest`): spec, labels, hashes, totals."""
    return registry().version(name, ref)


@blp.route("/<name>/versions/<ref>", methods=["DELETE"])
@counted("delete_version")
@require_write
@blp.response(204)
def delete_version(name: str, ref: str) -> None:
    """Delete a version; 409 while an alias points at it."""
    registry().delete_version(name, ref)


@blp.route("/<name>/versions/<ref>/weights", methods=["GET"])
@blp.response(
    200,
    content_type="application/octet-stream",
    description="the .npz exactly as registered",
)
def get_weights(name: str, ref: str) -> Response:
    """The weights file as stored, byte for byte (checked against its sha256 first)."""
    number, data, digest = registry().weights(name, ref)
    resp = Response(data, mimetype="application/octet-stream")
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}-v{number}.npz"'
    resp.headers["ETag"] = f'"{digest}"'
    resp.headers["X-Content-SHA256"] = digest
    return resp


@blp.route("/<name>/versions/<ref>/layers", methods=["GET"])
@blp.response(200, LayerTableSchema)
def get_layers(name: str, ref: str) -> dict[str, Any]:
    """The layer table of a stored version: shapes, weights, params, MACs, receptive fields."""
    return Architecture.from_spec(registry().spec(name, ref)).table()


@blp.route("/<name>/aliases/<alias>", methods=["PUT"])
@counted("set_alias")
@require_write
@blp.arguments(AliasBody)
@blp.response(200, AliasSchema)
def put_alias(body: dict[str, Any], name: str, alias: str) -> dict[str, Any]:
    """Point an alias (such as `production`) at a version."""
    return registry().set_alias(name, alias, body["version"])


@blp.route("/<name>/aliases/<alias>", methods=["DELETE"])
@counted("delete_alias")
@require_write
@blp.response(204)
def delete_alias(name: str, alias: str) -> None:
    """Remove an alias (the version stays)."""
    registry().delete_alias(name, alias)
