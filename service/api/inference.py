"""/v1 predict and activations: read images or instances, call the data plane, answer."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from flask import Response, current_app, request

from service.errors import Malformed, UnsupportedMedia
from service.serving.dataplane import DataPlane, LoadedModel

from . import bodies, multipart
from .parsing import ApiBlueprint
from .schemas import (
    ActivationArgs,
    ActivationsSchema,
    PredictArgs,
    PredictResponseSchema,
    bodies_doc,
)
from .security import requires

blp = ApiBlueprint(
    "inference",
    __name__,
    url_prefix="/v1/models",
    description="Classify images or arrays; draw a layer's feature maps.",
)

NPY = "application/x-npy"
BODIES = (
    "multipart/form-data with one or more files in field `image`, one image as a raw `image/*` "
    'body, or application/json `{"instances": [...]}` of arrays in input.shape'
)


def data_plane() -> DataPlane:
    return current_app.extensions["convserve"].serving


def read_inputs(dp: DataPlane, model: LoadedModel) -> np.ndarray:
    """The request body as the model's input batch, whichever of the three forms it takes."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        parts = multipart.parse(
            request.get_data(cache=False), request.mimetype_params.get("boundary")
        )
        files = [p for p in parts if p.name == "image"]
        if not files:
            sent = sorted({p.name for p in parts})
            raise Malformed(
                "send images in the multipart field 'image' (curl -F image=@digit.png)"
                + (f"; the request has {', '.join(map(repr, sent))}" if sent else "")
            )
        named = [(f.filename or f"image {i + 1}", f.data) for i, f in enumerate(files)]
        return dp.images(model, named)
    if mimetype.startswith("image/"):
        return dp.images(model, [("the request body", request.get_data())])
    if mimetype == "application/json":
        per_input = int(np.prod(model.arch.input_shape))
        bodies.check_instance_values(
            request.get_data(cache=True),
            dp.max_batch * per_input,
            f"and model {model.name!r} takes at most {dp.max_batch} instances of {per_input:,} "
            f"values per request (CONVSERVE_MAX_BATCH)",
        )
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "instances" not in body:
            raise Malformed('the JSON body must be an object {"instances": [...]}')
        return dp.instances(model, body["instances"])
    raise UnsupportedMedia(f"send {BODIES}; got {mimetype or 'no Content-Type'}")


def _predict(name: str, ref: str | None, top_k: int) -> Response:
    dp = data_plane()
    model, predictions = dp.predict(name, ref, lambda m: read_inputs(dp, m), top_k)
    doc = {"model": model.name, "version": model.number, "predictions": predictions}
    # Already plain JSON types in PredictResponseSchema's shape (a test holds them to it): dumped
    # directly, because the schema's dump and jsonify cost ~40 µs of a ~650 µs request.
    return Response(json.dumps(doc, separators=(",", ":")), mimetype="application/json")


@blp.route("/<name>/predict", methods=["POST"])
@requires("predict")
@blp.arguments(PredictArgs, location="query")
@blp.doc(requestBody=bodies_doc("the images or instances to classify"))
@blp.response(200, PredictResponseSchema)
def predict(args: dict[str, Any], name: str) -> Response:
    """Classify with the version alias `default` names, else the newest.

    Images are decoded and preprocessed as the version's `input.preprocess` says; all inputs of
    one request run as one batch. Probabilities are the softmax of the output (as they are when
    the last layer is a softmax).
    """
    return _predict(name, None, args["top_k"])


@blp.route("/<name>/versions/<ref>/predict", methods=["POST"])
@requires("predict")
@blp.arguments(PredictArgs, location="query")
@blp.doc(requestBody=bodies_doc("the images or instances to classify"))
@blp.response(200, PredictResponseSchema)
def predict_version(args: dict[str, Any], name: str, ref: str) -> Response:
    """Classify with one version (`ref`: a number, an alias or `latest`)."""
    return _predict(name, ref, args["top_k"])


@blp.route("/<name>/versions/<ref>/activations", methods=["POST"])
@requires("predict")
@blp.arguments(ActivationArgs, location="query")
@blp.doc(requestBody=bodies_doc("one image or instance"))
@blp.response(200, ActivationsSchema)
def activations(args: dict[str, Any], name: str, ref: str) -> Any:
    """One layer's output for one input, to draw its feature maps.

    JSON by default; `.npy` bytes with `Accept: application/x-npy`. `layer` may also be the
    input's name, giving the preprocessed input the model saw.
    """
    dp = data_plane()
    model, maps = dp.activations(name, ref, lambda m: read_inputs(dp, m), args["layer"])
    if request.accept_mimetypes.best_match(["application/json", NPY]) == NPY:
        buf = io.BytesIO()
        np.save(buf, maps, allow_pickle=False)
        resp = Response(buf.getvalue(), mimetype=NPY)
        resp.headers["Content-Disposition"] = (
            f'attachment; filename="{name}-v{model.number}-{args["layer"]}.npy"'
        )
        return resp
    return {
        "model": model.name,
        "version": model.number,
        "layer": args["layer"],
        "shape": list(maps.shape),
        "data": maps.tolist(),
    }
