"""/v1/models: register versions, read them, alias and delete them. HTTP in, registry call, out.

The blueprint keeps the name "registry" (its OpenAPI tag and url_for endpoints, registry.*).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Response, current_app
from werkzeug.datastructures import FileStorage

from service import metrics
from service.architecture import Architecture
from service.errors import Malformed
from service.onnx_import import complete_spec, import_onnx, unpack_upload
from service.registry.store import Registry
from service.weights import HashingFile, WeightsFile, dump_npz

from .documents import (
    alias_document,
    diff_document,
    event_document,
    model_document,
    version_document,
    version_summary,
)
from .parsing import ApiBlueprint
from .problems import status_of
from .schemas import (
    AliasBody,
    AliasSchema,
    DescriptionBody,
    DiffArgs,
    DiffSchema,
    ForceArgs,
    HistoryArgs,
    HistoryPageSchema,
    LayerTableSchema,
    ModelListArgs,
    ModelPageSchema,
    ModelSchema,
    PageArgs,
    RegisterForm,
    TagBody,
    TagsSchema,
    VersionPageSchema,
    VersionSchema,
)
from .security import actor, requires

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
@blp.arguments(ModelListArgs, location="query")
@blp.response(200, ModelPageSchema)
def list_models(args: dict[str, Any]) -> dict[str, Any]:
    """List models, by name (paginated: pass `next_cursor` back as `cursor`).

    `?tag=key:value` (or `?tag=key` for any value), repeatable, keeps the models with a version
    that carries every such tag, and lists those versions as `tagged_versions`.
    """
    page = registry().list_models(args["limit"], args.get("cursor"), args.get("tag"))
    models = [model_document(m) for m in page.items]
    return {"models": models, "next_cursor": page.next_cursor}


@blp.route("/<name>", methods=["GET"])
@blp.response(200, ModelSchema)
def get_model(name: str) -> dict[str, Any]:
    """A model: its description, versions and aliases."""
    return model_document(registry().model(name))


@blp.route("/<name>", methods=["DELETE"])
@counted("delete_model")
@requires("admin")
@blp.response(204)
def delete_model(name: str) -> None:
    """Delete a model with all its versions, aliases and tags (its history stays). Role admin."""
    registry().delete_model(name, actor=actor())


@blp.route("/<name>/versions", methods=["GET"])
@blp.arguments(PageArgs, location="query")
@blp.response(200, VersionPageSchema)
def list_versions(args: dict[str, Any], name: str) -> dict[str, Any]:
    """A model's versions, oldest first (paginated)."""
    page = registry().list_versions(name, args["limit"], args.get("cursor"))
    versions = [version_summary(v) for v in page.items]
    return {"model": name, "versions": versions, "next_cursor": page.next_cursor}


@blp.route("/<name>/versions", methods=["POST"])
@counted("register")
@requires("write")
@blp.arguments(RegisterForm, location="form_and_files")
@blp.response(201, VersionSchema)
def register_version(form: dict[str, Any], name: str) -> Any:
    """Register a new version: multipart `spec` (JSON) and `weights` (.npz), or an `onnx` model.

    An ONNX model comes as the .onnx file in part `onnx` with its external data file(s) in parts
    `onnx_data`, or as one .zip of them all in part `onnx`; parts `labels` (a JSON list or one
    per line) and `preprocess` (JSON, as `input.preprocess`) complete it. The model is created on
    first use.
    The spec and the weights are validated first (422 with every problem, each naming its
    layer); an ONNX graph is converted first, and a node convserve cannot run is a 422 naming it.
    The version number is assigned by the server.
    """
    if "onnx" in form:
        spec, arrays = import_onnx(*onnx_upload(form))
        spec = complete_spec(spec, form.get("labels"), form.get("preprocess"))
        spec_json, weights = spec, dump_npz(arrays)
    else:
        spec_json, weights = form["spec"], uploaded(form["weights"])
    stored = registry().register(
        name, spec_json, weights, form["description"], actor=actor(), tags=form.get("tags")
    )
    location = f"/v1/models/{name}/versions/{stored.number}"
    return version_document(stored), 201, {"Location": location}


def uploaded(upload: FileStorage) -> WeightsFile:
    """An uploaded file as the request wrote it: on disk, hashed while it arrived."""
    stream = upload.stream
    if isinstance(stream, HashingFile):
        return stream.weights_file()
    return WeightsFile.from_stream(stream)  # a request class of werkzeug's own


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
    return version_document(registry().version(name, ref))


@blp.route("/<name>/versions/<ref>", methods=["DELETE"])
@counted("delete_version")
@requires("admin")
@blp.response(204)
def delete_version(name: str, ref: str) -> None:
    """Delete a version; 409 while an alias points at it. Role admin."""
    registry().delete_version(name, ref, actor=actor())


@blp.route("/<name>/versions/<ref>/weights", methods=["GET"])
@blp.response(
    200,
    content_type="application/octet-stream",
    description="the .npz exactly as registered",
)
def get_weights(name: str, ref: str) -> Response:
    """The weights file as stored, byte for byte, streamed from the database chunk by chunk.

    The bytes are hashed on the way: stored content that no longer matches its sha256 ends the
    response short of its Content-Length, so no client takes it for the file.
    """
    number, digest, size, chunks = registry().weights_stream(name, ref)
    resp = Response(chunks, mimetype="application/octet-stream")
    resp.headers["Content-Length"] = str(size)
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
@requires("write")
@blp.arguments(ForceArgs, location="query")
@blp.arguments(AliasBody)
@blp.response(200, AliasSchema)
def put_alias(args: dict[str, Any], body: dict[str, Any], name: str, alias: str) -> dict[str, Any]:
    """Point an alias (such as `production`) at a version.

    Moving an alias to a version whose input shape or number of classes differs from the one it
    points at now would break its clients: 409 naming the difference, unless `?force=true`.
    The answer and the history carry `previous_version`, so a rollback is one more PUT.
    """
    move = registry().set_alias(name, alias, body["version"], actor=actor(), force=args["force"])
    return alias_document(move)


@blp.route("/<name>/aliases/<alias>", methods=["DELETE"])
@counted("delete_alias")
@requires("write")
@blp.response(204)
def delete_alias(name: str, alias: str) -> None:
    """Remove an alias (the version stays)."""
    registry().delete_alias(name, alias, actor=actor())


@blp.route("/<name>/history", methods=["GET"])
@blp.arguments(HistoryArgs, location="query")
@blp.response(200, HistoryPageSchema)
def get_history(args: dict[str, Any], name: str) -> dict[str, Any]:
    """Every registry write to the model, newest first (paginated), kept after it is deleted.

    Each event: when (`at`), who (`actor`: the token's name, or `anonymous`), the `action`, and
    the `version`, `alias` and `previous_version` it concerned; `detail` holds the rest (a tag's
    values, a description, a config, or the differences a forced alias move overrode).
    `?alias=production` answers "which version was in production when"; `?action=` filters too.
    """
    page = registry().history(
        name, args["limit"], args.get("cursor"), args.get("action"), args.get("alias")
    )
    events = [event_document(e) for e in page.items]
    return {"model": name, "events": events, "next_cursor": page.next_cursor}


@blp.route("/<name>/diff", methods=["GET"])
@blp.arguments(DiffArgs, location="query")
@blp.response(200, DiffSchema)
def get_diff(args: dict[str, Any], name: str) -> dict[str, Any]:
    """Two versions layer by layer: added, removed, changed (naming the fields) or the same.

    `from` and `to` are version numbers, aliases or `latest`. Each layer carries its rows from
    the layer table on both sides and, where its weight shapes match, the relative L2 norm of
    the weight change, ‖to − from‖ / ‖from‖ over all of the layer's arrays.
    """
    return diff_document(registry().diff(name, args["from_"], args["to"]))


@blp.route("/<name>", methods=["PATCH"])
@counted("set_description")
@requires("write")
@blp.arguments(DescriptionBody)
@blp.response(200, ModelSchema)
def patch_model(body: dict[str, Any], name: str) -> dict[str, Any]:
    """Edit the model's description."""
    registry().set_description(name, body["description"], actor=actor())
    return model_document(registry().model(name))


@blp.route("/<name>/versions/<ref>", methods=["PATCH"])
@counted("set_description")
@requires("write")
@blp.arguments(DescriptionBody)
@blp.response(200, VersionSchema)
def patch_version(body: dict[str, Any], name: str, ref: str) -> dict[str, Any]:
    """Edit a version's description (its spec and weights never change)."""
    registry().set_description(name, body["description"], ref, actor=actor())
    return version_document(registry().version(name, ref))


@blp.route("/<name>/versions/<ref>/tags/<key>", methods=["PUT"])
@counted("set_tag")
@requires("write")
@blp.arguments(TagBody)
@blp.response(200, TagsSchema)
def put_tag(body: dict[str, Any], name: str, ref: str, key: str) -> dict[str, Any]:
    """Set a tag (`{"value": "..."}`) on a version; answers with all its tags."""
    tags = registry().set_tag(name, ref, key, body["value"], actor=actor())
    return {"tags": tags}


@blp.route("/<name>/versions/<ref>/tags/<key>", methods=["DELETE"])
@counted("delete_tag")
@requires("write")
@blp.response(204)
def delete_tag(name: str, ref: str, key: str) -> None:
    """Remove a tag from a version."""
    registry().delete_tag(name, ref, key, actor=actor())
